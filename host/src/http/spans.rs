//! A server span for every routed request while traces are exported (the layer is left
//! out otherwise): named by method and route, the child of the caller's `traceparent`.
//! The health checks and `/metrics` are not traced: probes and scrapers would fill the
//! traces with nothing.

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

use super::request_id::RequestId;
use crate::telemetry::traces;

/// Routes that get no span.
const UNTRACED: &[&str] = &["/healthz", "/readyz", "/metrics"];

pub async fn traced(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_string())
        .unwrap_or_default();
    if UNTRACED.contains(&route.as_str()) {
        return next.run(request).await;
    }
    let method = request.method().clone();
    let span = tracing::info_span!(
        target: traces::TARGET,
        "request",
        otel.name = %format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %method,
        http.route = %route,
        url.path = request.uri().path(),
        http.response.status_code = tracing::field::Empty,
        request_id = %RequestId::current_or_new(),
    );
    traces::begin(&span, traces::incoming(request.headers()));
    let response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    response
}
