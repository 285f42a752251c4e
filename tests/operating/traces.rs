//! Traces: with an OTLP endpoint configured, a webhook request's spans reach a collector
//! (the harness's, decoding them with the OpenTelemetry types) as one tree under the
//! caller's `traceparent`: the request, the plugin call, its host imports, the store
//! commit, and the delivery attempt of the event it recorded, whose POST carries the
//! trace on; a plugin's outbound call carries it too, and log lines name the trace.

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};

use crate::harness::otlp::Collector;
use crate::harness::receiver::Receiver;
use crate::harness::{Host, guest};

const WAIT: Duration = Duration::from_secs(60);

fn named<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    spans.iter().find(|span| span.name == name).unwrap_or_else(|| {
        panic!(
            "no span {name} in {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

/// The trace id and the parent span id a `traceparent` header names, as bytes.
fn traceparent_ids(traceparent: &str) -> (Vec<u8>, Vec<u8>) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "{traceparent}");
    (hex::decode(parts[1]).unwrap(), hex::decode(parts[2]).unwrap())
}

#[test]
fn a_webhook_request_is_one_trace_under_its_traceparent_down_to_the_delivery_and_outbound_calls() {
    let collector = Collector::start();
    let hook = Receiver::start();
    let outside = Receiver::start();
    let host = Host::builder()
        .plugin(
            "probe",
            guest("probe"),
            // A body limit above the memory limit: a warning logged at load, in no trace.
            Some("[configuration]\nname = \"probe\"\n\n[limits]\nmax-body-bytes = 104857600\n"),
        )
        .plugin(
            "courier",
            guest("courier"),
            Some(&format!(
                "allowed-hosts = [{:?}]\n",
                outside.url("").trim_end_matches('/')
            )),
        )
        .config(&format!(
            "[telemetry]\notlp-endpoint = {:?}\nservice-name = \"sluice-test\"\n\n\
             [delivery]\nallow-loopback = true\n\n\
             [[subscriptions]]\nid = \"app\"\nurl = {:?}\ntypes = [\"probe:thing\"]\n",
            collector.endpoint(),
            hook.url("/hook")
        ))
        // Spans are sent in batches; a short delay keeps the test quick.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("SLUICE_LOG", "info,sluice=debug")
        .env("SLUICE_LOG_FORMAT", "json")
        .start();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let answer = host.send(
        host.client()
            .post(format!("{}/event/thing", host.webhook_url("probe")))
            .header("traceparent", format!("00-{trace_id}-{caller_span}-01"))
            .body(json!({ "count": 1 }).to_string()),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The delivery POST carries the trace on.
    let delivered = hook.wait_for_count(1, WAIT);
    let sent_traceparent = delivered[0]
        .header("traceparent")
        .unwrap_or_else(|| panic!("the delivery carries no traceparent: {:?}", delivered[0].headers));
    let (sent_trace, sent_parent) = traceparent_ids(sent_traceparent);
    assert_eq!(hex::encode(&sent_trace), trace_id, "{sent_traceparent}");

    let trace = hex::decode(trace_id).unwrap();
    let spans = collector.wait_for_trace(
        &trace,
        &[
            "POST /webhooks/{webhook_id}/{*path}",
            "plugin handler",
            "client.create-event",
            "store commit",
            "delivery attempt",
        ],
        WAIT,
    );
    let request = named(&spans, "POST /webhooks/{webhook_id}/{*path}");
    assert_eq!(
        hex::encode(&request.parent_span_id),
        caller_span,
        "the caller's span is the parent"
    );
    assert_eq!(request.kind, SpanKind::Server as i32);
    let call = named(&spans, "plugin handler");
    assert_eq!(call.parent_span_id, request.span_id);
    let import = named(&spans, "client.create-event");
    assert_eq!(import.parent_span_id, call.span_id);
    let commit = spans
        .iter()
        .find(|span| span.name == "store commit" && span.parent_span_id == import.span_id)
        .expect("the event's store commit, under its host import");
    let attempt = named(&spans, "delivery attempt");
    assert_eq!(
        attempt.parent_span_id, commit.span_id,
        "the delivery continues the write's trace"
    );
    assert_eq!(attempt.kind, SpanKind::Client as i32);
    assert_eq!(sent_parent, attempt.span_id, "the receiver's parent is the attempt");
    let services: Vec<String> = collector.spans().into_iter().map(|(service, _)| service).collect();
    assert!(
        services.iter().all(|service| service.contains("sluice-test")),
        "{services:?}"
    );

    // Log lines inside the trace carry its id.
    let line = host
        .output
        .wait_for("event recorded", WAIT)
        .unwrap_or_else(|| panic!("no log line for the event:\n{}", host.output.text()));
    let line: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(line["trace_id"], trace_id, "{line}");
    // Lines outside a trace keep their span context, and have no trace id.
    let line = host
        .output
        .wait_for("is more than limits.max-memory-bytes", WAIT)
        .unwrap_or_else(|| panic!("no warning about the body limit:\n{}", host.output.text()));
    let line: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(
        line["span"],
        json!({ "name": "sidecar", "file": "probe.toml" }),
        "{line}"
    );
    assert_eq!(line.get("trace_id"), None, "{line}");
    // What a span says is in its attributes; a plugin's calls at load start no trace.
    for (_, span) in collector.spans() {
        assert!(
            span.attributes.iter().all(|attribute| attribute.key != "target"),
            "{span:?}"
        );
        assert!(
            !(span.name.starts_with("plugin ") && span.parent_span_id.is_empty()),
            "a plugin call outside a trace: {span:?}"
        );
    }

    // A plugin's outbound call crosses the sandbox with the trace (a bot API call's).
    let action_trace = "0af7651916cd43dd8448eb211c80319c";
    let answer = host.send(
        host.client()
            .post(host.url("/v1/chat/actions"))
            .bearer_auth(crate::harness::API_TOKEN)
            .header("traceparent", format!("00-{action_trace}-b7ad6b7169203331-01"))
            .json(&json!({ "type": "courier:fetch", "input": { "url": outside.url("/ping") } })),
    );
    // The log says why an outbound request failed when the plugin only saw its body
    // stream closed.
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, host.output.text());
    let fetched = outside.wait_for_count(1, WAIT);
    let (fetched_trace, fetched_parent) = traceparent_ids(fetched[0].header("traceparent").expect("a traceparent"));
    assert_eq!(hex::encode(&fetched_trace), action_trace);
    // Named by method and the allowed origin it went to.
    let outbound_name = format!("GET {}", outside.url("").trim_end_matches('/'));
    let spans = collector.wait_for_trace(
        &hex::decode(action_trace).unwrap(),
        &["POST /v1/chat/actions", "plugin call-action", &outbound_name],
        WAIT,
    );
    let call = named(&spans, "plugin call-action");
    assert_eq!(call.parent_span_id, named(&spans, "POST /v1/chat/actions").span_id);
    let outbound = spans
        .iter()
        .find(|span| span.span_id == fetched_parent)
        .expect("the outbound call's span is the receiver's parent");
    assert_eq!(outbound.parent_span_id, call.span_id);
    assert_eq!(outbound.name, outbound_name);
    assert_eq!(outbound.kind, SpanKind::Client as i32);
}

#[test]
fn without_an_endpoint_nothing_is_traced_and_nothing_goes_out() {
    let hook = Receiver::start();
    let host = Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"probe\"\n"))
        .config(&format!(
            "[delivery]\nallow-loopback = true\n\n[[subscriptions]]\nid = \"app\"\nurl = {:?}\ntypes = [\"probe:thing\"]\n",
            hook.url("/hook")
        ))
        .start();
    let answer = host.send(
        host.client()
            .post(format!("{}/event/thing", host.webhook_url("probe")))
            .header("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .body(json!({ "count": 1 }).to_string()),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let delivered = hook.wait_for_count(1, WAIT);
    assert_eq!(delivered[0].header("traceparent"), None);
    assert!(!host.output.text().contains("trace_id"), "{}", host.output.text());
}
