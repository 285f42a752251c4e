//! Outbound HTTP for plugins: `wasi:http/outgoing-handler` calls pass through
//! [`OutboundPolicy`], which lets a request out only when its origin is on the
//! installation's `allowed-hosts` list. Anything else fails inside the plugin with
//! `HTTP-request-denied`, is logged, and sends nothing.
//!
//! What is let out goes through the installation's [`OutboundClient`], whose connections
//! its calls share. The call's deadline covers outbound requests: they run inside the
//! call, and when the deadline passes the call is dropped with everything it started. A
//! request's body stays writable until the plugin is done with it, even after the answer
//! came or sending failed (see [`DrainedWhenDropped`]), so the plugin hears the outcome
//! itself.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::Scheme;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use wasmtime_wasi_http::{Error as HttpError, RequestOptions, WasiBody, WasiHttpHooks};

use crate::causes::with_causes;
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

/// The `wasi:http` hooks for one call: checks each request against the allow-list and
/// sends what it allows through the installation's client.
pub struct OutboundPolicy {
    pub allow_list: AllowList,
    /// `None` while the host reads a plugin's definition, when nothing is allowed out.
    client: Option<OutboundClient>,
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
    pub fn new(
        allow_list: AllowList,
        client: Option<OutboundClient>,
        label: Arc<str>,
        installation: Arc<str>,
        request_id: Arc<str>,
    ) -> OutboundPolicy {
        OutboundPolicy {
            allow_list,
            client,
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
        let allowed = self.allow_list.entry_allowing(request.uri()).cloned();
        let (Some(entry), Some(client)) = (allowed, self.client.clone()) else {
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
            let (method, url) = (request.method().clone(), request.uri().clone());
            let sent = client.send(request, options).await;
            metrics().outbound_request(&installation, &entry, if sent.is_ok() { "ok" } else { "failed" });
            let response = sent.map_err(|(error, cause)| {
                // wasmtime-wasi-http's own line lacks the plugin and request (the
                // default log filter keeps it out): this one says whose call failed.
                tracing::warn!(plugin = %label, %request_id, %method, %url, error = %cause, "outbound request failed");
                traced.record("otel.status_code", "ERROR");
                error
            })?;
            traced.record("http.response.status_code", i64::from(response.status().as_u16()));
            // The pool drives the connection: nothing is left for the caller to run.
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
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
            runtime.spawn(async move { while let Some(Ok(_)) = body.frame().await {} });
        }
    }
}

/// Idle connections one installation keeps open to one origin: enough for a platform
/// called from several requests at once, few enough that many installations stay well
/// inside the descriptors the host keeps back from its clients (docs/operations.md).
const MAX_IDLE_CONNECTIONS_PER_ORIGIN: usize = 8;
/// How long an idle connection is kept for the next call.
const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// wasmtime's default for a request's timeouts when the plugin sets none.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);

/// The HTTP(S) client one installation's outbound requests share. Every request runs in
/// a fresh instance, so without a shared pool each call to the same platform would open
/// a new connection, and a new TLS session, for every API call it makes.
#[derive(Clone)]
pub struct OutboundClient {
    /// Behind one `Arc`: every call's state takes a copy, and the client's own clone
    /// counts up several.
    client: Arc<Client<HttpsConnector<HttpConnector>, DrainedWhenDropped>>,
}

impl std::fmt::Debug for OutboundClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboundClient")
    }
}

impl Default for OutboundClient {
    fn default() -> OutboundClient {
        OutboundClient::new()
    }
}

impl OutboundClient {
    /// A client trusting the public web's roots.
    pub fn new() -> OutboundClient {
        OutboundClient::trusting(&[]).expect("the public web's roots are usable")
    }

    /// A client trusting `certificates` (an installation's `trusted-certificates`)
    /// beside the public web's roots.
    pub fn trusting(certificates: &[CertificateDer<'static>]) -> anyhow::Result<OutboundClient> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        // The roots wasmtime's own client trusts (webpki's), and the installation's own;
        // no redirects are followed and no proxy is used, so a request goes exactly where
        // the allow-list let it.
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for certificate in certificates {
            roots.add(certificate.clone())?;
        }
        let tls = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_CONNECTION_TIMEOUT)
            .pool_max_idle_per_host(MAX_IDLE_CONNECTIONS_PER_ORIGIN)
            .build(https);
        Ok(OutboundClient {
            client: Arc::new(client),
        })
    }

    /// Sends a request the allow-list let out, under the plugin's timeouts: connecting and
    /// the answer's head together within the sum of `connect-timeout` and
    /// `first-byte-timeout` (those the plugin set), and each later part of the body within
    /// `between-bytes-timeout`. A failure comes with its cause, for the log.
    async fn send(
        &self,
        request: http::Request<DrainedWhenDropped>,
        options: Option<RequestOptions>,
    ) -> Result<http::Response<WasiBody>, (HttpError, String)> {
        let (connect, first_byte, between_bytes) = options
            .map(|o| (o.connect_timeout, o.first_byte_timeout, o.between_bytes_timeout))
            .unwrap_or_default();
        let head_timeout = match (connect, first_byte) {
            (None, None) => DEFAULT_REQUEST_TIMEOUT,
            (connect, first_byte) => connect
                .unwrap_or_default()
                .saturating_add(first_byte.unwrap_or_default()),
        };
        let between_bytes = between_bytes.unwrap_or(DEFAULT_REQUEST_TIMEOUT);
        let response = match tokio::time::timeout(head_timeout, self.client.request(request)).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err((wasi_error(&error), with_causes(&error.to_string(), &error))),
            Err(_) => {
                let cause = format!("no answer within {} ms", head_timeout.as_millis());
                return Err((HttpError::ConnectionReadTimeout, cause));
            }
        };
        Ok(response.map(|incoming| {
            ResponseBody {
                incoming,
                between_bytes,
                deadline: Box::pin(tokio::time::sleep(between_bytes)),
            }
            .boxed_unsync()
        }))
    }
}

/// An answer's body, each part within the plugin's `between-bytes-timeout`.
struct ResponseBody {
    incoming: hyper::body::Incoming,
    between_bytes: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        match Pin::new(&mut self.incoming).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                let next = tokio::time::Instant::now() + self.between_bytes;
                self.deadline.as_mut().reset(next);
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(error))) => Poll::Ready(Some(Err(HttpError::Hyper(error)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => match self.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.incoming.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming.size_hint()
    }
}

/// The `wasi:http` error for a request the client could not send, from its cause: a TLS
/// failure as one, an I/O error as wasmtime's own client reports it (refused, reset,
/// unreachable, a name that does not resolve), anything else from HTTP as a protocol error.
fn wasi_error(error: &hyper_util::client::legacy::Error) -> HttpError {
    // The chain goes through I/O errors that wrap others (hyper-rustls wraps
    // tokio-rustls's, which wraps rustls's); an I/O error's `source` skips the error it
    // wraps, so the walk steps into it instead, and the innermost I/O error names the kind.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut innermost_io: Option<&std::io::Error> = None;
    while let Some(current) = cause {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return match tls {
                rustls::Error::InvalidCertificate(_) => HttpError::TlsCertificateError,
                rustls::Error::AlertReceived(alert) => HttpError::TlsAlertReceived {
                    alert_id: Some(u8::from(*alert)),
                    alert_message: Some(format!("{alert:?}")),
                },
                _ => HttpError::TlsProtocolError,
            };
        }
        cause = match current.downcast_ref::<std::io::Error>() {
            Some(io) => {
                innermost_io = Some(io);
                io.get_ref().map(|inner| inner as &(dyn std::error::Error + 'static))
            }
            None => current.source(),
        };
    }
    if let Some(io) = innermost_io {
        HttpError::Connect(std::io::Error::new(io.kind(), io.to_string()))
    } else if error.is_connect() {
        HttpError::ConnectionRefused
    } else {
        HttpError::HttpProtocolError
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
