//! Outbound HTTP for plugins: `wasi:http/outgoing-handler` calls pass through
//! [`OutboundPolicy`], which lets a request out only when its origin is on the
//! installation's `allowed-hosts` list. Anything else fails inside the plugin with
//! `HTTP-request-denied`, is logged, and sends nothing.
//!
//! The call's deadline covers outbound requests: they run inside the call, and when the
//! deadline passes the call is dropped with everything it started. A request's body stays
//! writable until the plugin is done with it, even after the answer came or sending
//! failed (see [`DrainedWhenDropped`]), so the plugin hears the outcome itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::config::HostPattern;
use crate::telemetry::{metrics, traces};

/// The outbound policy of one installation, shared by all of its calls.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    /// Each pattern with the entry it was parsed from.
    patterns: Arc<[(HostPattern, Arc<str>)]>,
}

impl AllowList {
    /// Builds the allow-list from `allowed-hosts` entries (already checked by the sidecar).
    pub fn new(entries: &[String]) -> anyhow::Result<AllowList> {
        let patterns = entries
            .iter()
            .map(|e| Ok((HostPattern::parse(e)?, Arc::from(e.as_str()))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AllowList {
            patterns: patterns.into(),
        })
    }

    /// The `allowed-hosts` entry that lets a request to this URI out, if one does.
    pub fn entry_allowing(&self, uri: &http::Uri) -> Option<&Arc<str>> {
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let host = uri.host()?;
        let port = uri.port_u16().unwrap_or_else(|| HostPattern::default_port(&scheme));
        self.patterns
            .iter()
            .find(|(pattern, _)| pattern.matches(&scheme, host, port))
            .map(|(_, entry)| entry)
    }
}

/// At most this many denied requests are held per call (see [`OutboundPolicy::held`]).
const MAX_HELD_DENIED_REQUESTS: usize = 8;

/// The `wasi:http` hooks for one call: checks each request against the allow-list.
pub struct OutboundPolicy {
    pub allow_list: AllowList,
    /// `plugin/installation` label for the log line of a denied request.
    pub label: Arc<str>,
    /// The installation's name, for metrics.
    pub installation: Arc<str>,
    /// The call's request id, for the same log line.
    pub request_id: Arc<str>,
    /// Denied requests, kept unsent until the call ends. Dropping one would close its
    /// body stream, and a plugin writing its body would then see "stream closed"
    /// instead of `HTTP-request-denied`; held, its body writes simply wait (at most
    /// one buffered chunk each) while the response resolves to the denial.
    held: Vec<http::Request<WasiBody>>,
}

impl OutboundPolicy {
    pub fn new(allow_list: AllowList, label: Arc<str>, installation: Arc<str>, request_id: Arc<str>) -> OutboundPolicy {
        OutboundPolicy {
            allow_list,
            label,
            installation,
            request_id,
            held: Vec::new(),
        }
    }
}

impl WasiHttpHooks for OutboundPolicy {
    fn is_supported_scheme(&mut self, scheme: &Scheme) -> bool {
        *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS
    }

    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), HttpError>> + Send>,
    ) -> Box<
        dyn Future<
                Output = Result<
                    (
                        http::Response<WasiBody>,
                        Box<dyn Future<Output = Result<(), HttpError>> + Send>,
                    ),
                    HttpError,
                >,
            > + Send,
    > {
        let Some(entry) = self.allow_list.entry_allowing(request.uri()).cloned() else {
            metrics().outbound_request(&self.installation, "", "denied");
            tracing::warn!(
                plugin = %self.label,
                request_id = %self.request_id,
                method = %request.method(),
                url = %request.uri(),
                "outbound request denied (HttpRequestDenied): its origin is not in this installation's allowed-hosts"
            );
            if self.held.len() < MAX_HELD_DENIED_REQUESTS {
                self.held.push(request);
            }
            return Box::new(async { Err(HttpError::HttpRequestDenied) });
        };
        tracing::debug!(plugin = %self.label, request_id = %self.request_id, method = %request.method(), url = %request.uri(), "outbound request");
        let (label, request_id) = (self.label.clone(), self.request_id.clone());
        let installation = self.installation.clone();
        // The call goes on the plugin call's trace: the receiver sees a `traceparent`.
        let span = if traces::in_trace() {
            tracing::info_span!(
                target: traces::TARGET,
                "outbound request",
                otel.name = %format!("{} {}", request.method(), entry),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                http.request.method = %request.method(),
                http.response.status_code = tracing::field::Empty,
            )
        } else {
            tracing::Span::none()
        };
        let mut request = request.map(DrainedWhenDropped::new);
        traces::inject(&span, request.headers_mut());
        let traced = span.clone();
        let call = async move {
            use http_body_util::BodyExt;
            let (method, url) = (request.method().clone(), request.uri().clone());
            let sent = wasmtime_wasi_http::default_send_request(request, options).await;
            metrics().outbound_request(&installation, &entry, if sent.is_ok() { "ok" } else { "failed" });
            let (response, io) = sent.inspect_err(|error| {
                // wasmtime-wasi-http's own line lacks the plugin and request (the
                // default log filter keeps it out): this one says whose call failed.
                tracing::warn!(plugin = %label, %request_id, %method, %url, %error, "outbound request failed");
                traced.record("otel.status_code", "ERROR");
            })?;
            traced.record("http.response.status_code", i64::from(response.status().as_u16()));
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = _> + Send>,
            ))
        };
        Box::new(tracing::Instrument::instrument(call, span))
    }
}

/// A plugin's request body as the HTTP client sees it. The client drops it when it is
/// done with the request: the answer came (a server may answer before reading the whole
/// body, as one refusing an oversize body does), or sending failed. Whatever the plugin
/// writes after that is read and thrown away, so that its writes succeed and it learns
/// the outcome from the response, the answer or the real error, instead of seeing its
/// body stream closed, which clients such as wstd report in place of both.
struct DrainedWhenDropped {
    /// `None` once read to its end (or its error): nothing left to drain.
    body: Option<WasiBody>,
}

impl DrainedWhenDropped {
    fn new(body: WasiBody) -> DrainedWhenDropped {
        DrainedWhenDropped { body: Some(body) }
    }
}

impl Body for DrainedWhenDropped {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let Some(body) = self.body.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(body).poll_frame(cx);
        if matches!(polled, Poll::Ready(None | Some(Err(_)))) {
            self.body = None;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Drop for DrainedWhenDropped {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else { return };
        // The drain ends when the plugin finishes its body or its call ends (the store's
        // drop closes the body's channel), so it never outlives the call's deadline.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                use http_body_util::BodyExt;
                while let Some(Ok(_)) = body.frame().await {}
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(entries: &[&str], url: &str) -> bool {
        let list = AllowList::new(&entries.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        list.entry_allowing(&url.parse().unwrap()).is_some()
    }

    #[test]
    fn exact_origin_with_default_port() {
        assert!(allows(&["https://slack.com"], "https://slack.com/api/chat.postMessage"));
        assert!(allows(&["https://slack.com"], "https://slack.com:443/api"));
        assert!(!allows(&["https://slack.com"], "https://slack.com:8443/api"));
        assert!(!allows(&["https://slack.com"], "http://slack.com/api"));
        assert!(!allows(&["https://slack.com"], "https://evil.com/api"));
        assert!(!allows(&["https://slack.com"], "https://slack.com.evil.com/api"));
    }

    #[test]
    fn port_and_subdomain_wildcards() {
        assert!(allows(&["http://127.0.0.1:*"], "http://127.0.0.1:39211/x"));
        assert!(!allows(&["http://127.0.0.1:*"], "http://127.0.0.2:39211/x"));
        assert!(allows(&["https://*.slack.com"], "https://hooks.slack.com/x"));
        assert!(!allows(&["https://*.slack.com"], "https://slack.com/x"));
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        assert!(!allows(&[], "https://example.com/"));
    }
}
