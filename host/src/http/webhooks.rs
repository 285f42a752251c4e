//! Webhook ingress: `ANY /webhooks/{id}` and `ANY /webhooks/{id}/{*path}` run the
//! installation's `handler` in a fresh sandbox and answer with what it returns.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header::CONTENT_LENGTH};
use axum::response::{IntoResponse, Response};

use super::bodies::read_limited;
use super::extract::PathParams;
use super::request_id::RequestId;
use super::routes::{Routes, any_raw};
use super::{ApiError, AppState};
use crate::config::sidecar::DEFAULT_BODY_SHARE;
use crate::json_depth;
use crate::plugins::Installation;
use crate::runtime::{CallError, WebhookRequest, WebhookResponse};
use crate::telemetry::metrics;

pub fn routes() -> Routes {
    Routes::new()
        .route("/webhooks/{webhook_id}", any_raw(receive))
        .route("/webhooks/{webhook_id}/{*path}", any_raw(receive))
}

/// The parts of a webhook URL: `/webhooks/{webhook_id}` and `/webhooks/{webhook_id}/{*path}`.
#[derive(Debug, serde::Deserialize)]
pub struct WebhookPath {
    webhook_id: String,
    path: Option<String>,
}

/// The OpenAPI tag of the webhooks.
pub const TAG: &str = "webhooks";

/// The webhooks' part of the OpenAPI document (public; the plugin authenticates).
#[derive(utoipa::OpenApi)]
#[openapi(paths(receive_documented, receive_path))]
pub struct Api;

/// An installation's webhook URL: any method, any body, passed to the plugin's `handler`.
///
/// The answer is the plugin's, whatever its status, headers and body; the host answers
/// itself (in the error shape) only when no installation has the id (404), the
/// installation cannot serve (503), the body is over its limit (413) or the plugin fails.
#[utoipa::path(method(get, post, put, patch, delete, head, options), path = "/webhooks/{webhook_id}", tag = TAG, operation_id = "webhook",
    params(("webhook_id" = String, Path, description = "The installation's webhook id (printed at start, and in the admin API)")),
    request_body(description = "Any body, passed to the plugin as it came", content((Vec<u8> = "*/*"))),
    responses((status = "default", description = "The plugin's answer, or the host's error", headers(
        ("x-sluice-request-id" = String, description = "The request id, which the plugin's log lines carry")))))]
#[allow(dead_code, reason = "documents the webhook route, which `receive` serves")]
fn receive_documented() {}

/// The same as the webhook URL, with a path after it, passed to the plugin.
#[utoipa::path(method(get, post, put, patch, delete, head, options), path = "/webhooks/{webhook_id}/{path}", tag = TAG, operation_id = "webhookWithPath",
    params(
        ("webhook_id" = String, Path, description = "The installation's webhook id"),
        ("path" = String, Path, description = "The rest of the path, passed to the plugin"),
    ),
    request_body(description = "Any body, passed to the plugin as it came", content((Vec<u8> = "*/*"))),
    responses((status = "default", description = "The plugin's answer, or the host's error", headers(
        ("x-sluice-request-id" = String, description = "The request id, which the plugin's log lines carry")))))]
#[allow(
    dead_code,
    reason = "documents the webhook route with a path, which `receive` serves"
)]
fn receive_path() {}

/// Runs the plugin behind a webhook URL. The answer carries the request id (given by the
/// server), which the plugin's log lines carry too.
pub async fn receive(
    State(app): State<AppState>,
    PathParams(params): PathParams<WebhookPath>,
    request_id: RequestId,
    request: Request,
) -> Response {
    let started = Instant::now();
    let installation = match find(&app, &params.webhook_id) {
        Ok(installation) => installation,
        Err(error) => return error.into_response(),
    };
    let response = match handle(&installation, &params, request, request_id.as_str()).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    };
    metrics().webhook_request(installation.name(), response.status().as_u16(), started.elapsed());
    response
}

/// The installation behind a webhook id.
fn find(app: &AppState, webhook_id: &str) -> Result<Arc<Installation>, ApiError> {
    let Some(installation) = app.plugins.registry.by_webhook(webhook_id) else {
        if let Some(failure) = app.plugins.registry.failure_by_webhook(webhook_id) {
            return Err(ApiError::unavailable(format!(
                "the installation behind this webhook cannot take requests: {} could not be loaded: {}; \
                 fix it and sluice loads it again",
                failure.file, failure.reason
            )));
        }
        return Err(ApiError::not_found(
            "no installation has this webhook id; check the URL sluice printed at start-up",
        ));
    };
    Ok(installation)
}

async fn handle(
    installation: &Installation,
    params: &WebhookPath,
    request: Request,
    request_id: &str,
) -> Result<Response, ApiError> {
    if !installation.problems.is_empty() {
        return Err(ApiError::unavailable(format!(
            "installation {} cannot take requests: {}",
            installation.name(),
            installation.problems.join("; ")
        )));
    }

    let limit = installation.sidecar.limits.max_body_bytes;
    let too_large = || {
        ApiError::payload_too_large(format!(
            "the body is over this webhook's limit of {limit} bytes (limits.max-body-bytes in {}.toml)",
            installation.name()
        ))
    };
    let (parts, body) = request.into_parts();
    let body = read_limited(&parts.headers, body, limit)
        .await
        .map_err(|unread| unread.answer(too_large))?;
    if declares_json(&parts.headers) {
        json_depth::check(&body, json_depth::MAX_DEPTH, "the body").map_err(ApiError::bad_request)?;
    }
    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let path = match &params.path {
        Some(path) => format!("/{path}"),
        None => "/".to_string(),
    };
    let body_bytes = body.len() as u64;
    let http_request = WebhookRequest {
        method: parts.method.as_str().to_string(),
        path,
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers,
        // No copy when the body arrived in one piece.
        body: Vec::from(body),
    };

    // Boxed: the plugin call's future is large (an instance's setup, its call and the
    // deadline: 8.7 KB), and held inline it made this handler's future 18 KB, which the
    // router's layers copy whole each time they move it; boxed, this one is 0.9 KB.
    let call = Box::pin(crate::store::noting_store_losses(
        installation.handle_webhook(request_id, http_request),
    ));
    let ((result, _report), store_lost) = call.await;
    if store_lost {
        return Err(ApiError::unavailable(format!(
            "installation {} could not record this webhook: the store cannot be reached; send it again shortly",
            installation.name()
        )));
    }
    match result {
        Ok(Ok(answer)) => Ok(plugin_response(answer, installation.name())),
        Ok(Err(error)) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "PluginError",
            format!(
                "installation {} failed to handle the request: {}",
                installation.name(),
                error.message
            ),
        )),
        Err(failure) => {
            let mut message = format!("installation {}: {failure}", installation.name());
            if let CallError::MemoryLimit { limit } = failure
                && body_bytes > limit / (2 * DEFAULT_BODY_SHARE)
            {
                // Most likely the body itself (at least half what the default body limit
                // admits for this memory): say what to change.
                message.push_str(&format!(
                    "; the request's body was {body_bytes} bytes, and a plugin needs several times its body \
                     in memory: raise limits.max-memory-bytes in {0}.toml, or lower limits.max-body-bytes \
                     there so that such bodies are refused with 413 before the plugin runs",
                    installation.name()
                ));
            }
            Err(ApiError::new(
                StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                match failure.status() {
                    504 => "OperationTimeout",
                    503 => "Unavailable",
                    _ => "PluginCrashed",
                },
                message,
            ))
        }
    }
}

/// The plugin's answer as an HTTP response; headers it cannot send are dropped.
fn plugin_response(answer: WebhookResponse, installation: &str) -> Response {
    let status = StatusCode::from_u16(answer.status).unwrap_or_else(|_| {
        tracing::warn!(%installation, status = answer.status, "plugin answered an invalid status; sending 500");
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let mut response = (status, Body::from(answer.body)).into_response();
    for (name, value) in answer.headers {
        match (
            HeaderName::try_from(name.as_str()),
            HeaderValue::try_from(value.as_str()),
        ) {
            (Ok(name), Ok(value)) if name != CONTENT_LENGTH => {
                response.headers_mut().append(name, value);
            }
            _ => tracing::warn!(%installation, header = %name, "plugin answered a header that cannot be sent; dropped"),
        }
    }
    response
}

/// Whether a request says its body is JSON (`application/json` or a `+json` type): such
/// bodies are held to the JSON depth rule before the plugin runs.
fn declares_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .is_some_and(|media| media == "application/json" || media.ends_with("+json"))
}
