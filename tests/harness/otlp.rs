//! An OpenTelemetry collector for the tracing tests: a [`Receiver`] taking OTLP/HTTP
//! (protobuf) exports on `/v1/traces`, whose bodies are decoded with the OpenTelemetry
//! project's own types.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;

use super::receiver::Receiver;

/// A running collector. Dropping it stops it.
pub struct Collector {
    receiver: Receiver,
}

impl Collector {
    /// Starts on a free loopback port.
    pub fn start() -> Collector {
        Collector {
            receiver: Receiver::start(),
        }
    }

    /// The base URL to give as the OTLP endpoint (spans arrive at `<it>/v1/traces`).
    pub fn endpoint(&self) -> String {
        self.receiver.url("").trim_end_matches('/').to_string()
    }

    /// Every span received so far, with the `service.name` each came under.
    pub fn spans(&self) -> Vec<(String, Span)> {
        let mut spans = Vec::new();
        for request in self.receiver.received() {
            assert_eq!(request.path, "/v1/traces", "spans go to the traces endpoint");
            assert_eq!(request.header("content-type"), Some("application/x-protobuf"));
            let export = ExportTraceServiceRequest::decode(request.body.as_slice())
                .unwrap_or_else(|e| panic!("not an OTLP export ({e})"));
            for resource_spans in export.resource_spans {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|resource| &resource.attributes)
                    .find(|attribute| attribute.key == "service.name")
                    .and_then(|attribute| attribute.value.as_ref())
                    .map(|value| format!("{:?}", value.value))
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    spans.extend(scope.spans.into_iter().map(|span| (service.clone(), span)));
                }
            }
        }
        spans
    }

    /// Waits until the spans of trace `trace_id` include every name in `names`, and
    /// answers them; panics with what came after `timeout`.
    pub fn wait_for_trace(&self, trace_id: &[u8], names: &[&str], timeout: Duration) -> Vec<Span> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .map(|(_, span)| span)
                .filter(|span| span.trace_id == trace_id)
                .collect();
            if names.iter().all(|name| spans.iter().any(|span| span.name == *name)) {
                return spans;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the collector did not get spans {names:?} of the trace within {timeout:?}; it got {:?}",
                spans.iter().map(|span| &span.name).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
