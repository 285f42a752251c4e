//! The trigger API, wire-compatible with ChatBotKit's trigger integrations (as the npm
//! package `@chatbotkit/sdk` calls them), under `/api/v1/integration/trigger` and the same
//! paths without `/api`:
//!
//! - `POST create`, `GET list`, `GET {id}/fetch`, `POST {id}/update`, `POST {id}/delete`,
//!   `POST {id}/setup`, `POST {id}/invoke`: management, with the API token;
//! - `GET|POST {id}/event`: the event endpoint senders call, with the trigger's secret
//!   when the trigger authenticates. The event is on disk before `{"ok":true}` is sent;
//!   a worker runs it afterwards (see [`crate::jobs`]);
//! - `GET {id}/events`, `GET {id}/events/{eventId}`, `POST {id}/events/{eventId}/retry`
//!   (sluice's own): the trigger's queued, running, failed and finished events, and a
//!   retry of a failed one.
//!
//! Here: the routes and what the handlers share; the management routes ([`manage`]) and
//! the fields they read ([`fields`]); the event endpoint ([`ingress`]); a trigger's queued
//! events ([`events`]).

mod events;
mod fields;
mod ingress;
mod manage;

use events::{get_event, list_events, retry_event};
use fields::{Field, trigger_fields};
use ingress::receive_event;
use manage::{create, delete, fetch, invoke, list, setup, update};

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, Request, State};
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};

use super::auth::bearer_token;
use super::bodies::read_limited;
use super::errors::ApiResult;
use super::extract::{JsonBody, PathParams, json_type, query_pairs};
use super::routes::{Routes, any_raw, get, post};
use super::{ApiError, AppState};
use crate::ids::{record_id, secret_token, secrets_match};
use crate::jobs::queue::{JobSource, NewJob};
use crate::jobs::schedule::Schedule;
use crate::jobs::{Jobs, SOURCE_HEADER};
use crate::store::{Contact, TriggerQuery, TriggerRecord};
use crate::time::{iso8601, now_ms};

/// The event answer carries the queued event's id in this header.
pub const EVENT_ID_HEADER: &str = "x-sluice-event-id";

/// Set (to `true`) on the answer to an event whose idempotency key was seen before.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Default `sessionDuration`: one hour.
pub const DEFAULT_SESSION_DURATION_MS: i64 = 3_600_000;

const PREFIXES: [&str; 2] = ["/v1/integration/trigger", "/api/v1/integration/trigger"];

/// The trigger routes: management behind the API token, the event endpoint open (each
/// trigger checks its own secret).
pub fn routes(app: &AppState) -> Routes {
    let mut management = Routes::new();
    let mut events = Routes::new();
    for prefix in PREFIXES {
        management = management
            .route(&format!("{prefix}/create"), post(create))
            .route(&format!("{prefix}/list"), get(list))
            .route(&format!("{prefix}/{{id}}/fetch"), get(fetch))
            .route(&format!("{prefix}/{{id}}/update"), post(update))
            .route(&format!("{prefix}/{{id}}/delete"), post(delete))
            .route(&format!("{prefix}/{{id}}/setup"), post(setup))
            .route(&format!("{prefix}/{{id}}/invoke"), post(invoke))
            .route(&format!("{prefix}/{{id}}/events"), get(list_events))
            .route(&format!("{prefix}/{{id}}/events/{{event_id}}"), get(get_event))
            .route(&format!("{prefix}/{{id}}/events/{{event_id}}/retry"), post(retry_event));
        events = events.route(&format!("{prefix}/{{id}}/event"), any_raw(receive_event));
    }
    management
        .require_api_token(app)
        .merge(events)
        .layer(axum::middleware::map_response(chatbotkit_error_codes))
}

/// ChatBotKit's string error code for an HTTP status (what its SDK's callers compare).
fn chatbotkit_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "BAD_REQUEST",
        401 => "UNAUTHORIZED",
        403 => "FORBIDDEN",
        404 => "NOT_FOUND",
        405 => "METHOD_NOT_ALLOWED",
        408 => "REQUEST_TIMEOUT",
        409 => "CONFLICT",
        413 => "CONTENT_TOO_LARGE",
        415 => "UNSUPPORTED_MEDIA_TYPE",
        429 => "TOO_MANY_REQUESTS",
        503 => "SERVICE_UNAVAILABLE",
        504 => "GATEWAY_TIMEOUT",
        _ if status.is_server_error() => "INTERNAL_SERVER_ERROR",
        _ => "GENERIC_ERROR",
    }
}

/// The largest error body rewritten; the host's own are far smaller.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Error answers of the trigger API carry ChatBotKit's string `code` (`NOT_FOUND`), which
/// its SDK hands to callers, with the HTTP status as `status` beside the error's `type`,
/// `message` and `id`.
async fn chatbotkit_error_codes(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_ERROR_BODY).await else {
        return (status, "the error answer could not be read").into_response();
    };
    let rewritten = match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(mut error)) if error.get("code").is_some_and(Value::is_number) => {
            error.insert("status".into(), json!(status.as_u16()));
            error.insert("code".into(), json!(chatbotkit_code(status)));
            Bytes::from(Value::Object(error).to_string())
        }
        _ => bytes,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(rewritten))
}

fn jobs(app: &AppState) -> &Jobs {
    &app.jobs
}

/// A trigger as the API shows it. `with_secret`: fetch and create show the secret; list
/// shows it only for triggers that authenticate.
pub fn trigger_json(trigger: &TriggerRecord, next_trigger_at: Option<i64>, with_secret: bool) -> Value {
    let mut object = json!({
        "id": trigger.id,
        "name": trigger.name,
        "description": trigger.description,
        "botId": trigger.bot_id,
        "authenticate": trigger.authenticate,
        "triggerSchedule": trigger.schedule,
        "schedule": trigger.schedule,
        "timezone": trigger.timezone,
        "sessionDuration": trigger.session_duration_ms,
        "blueprintId": trigger.blueprint_id,
        "meta": trigger.meta,
        "lastTriggerAt": trigger.last_trigger_at,
        "nextTriggerAt": next_trigger_at,
        "createdAt": iso8601(trigger.created_at),
        "updatedAt": iso8601(trigger.updated_at),
    });
    if with_secret {
        object["secret"] = Value::String(trigger.secret.clone());
    }
    object
}

fn shown(app: &AppState, trigger: &TriggerRecord, with_secret: bool) -> Value {
    trigger_json(trigger, jobs(app).timetable.next_at(&trigger.id), with_secret)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("trigger {id} does not exist (or was deleted)"))
}

async fn stored_trigger(app: &AppState, id: &str) -> ApiResult<TriggerRecord> {
    let key = id.to_string();
    app.store.trigger(&key).await?.ok_or_else(|| not_found(id))
}
