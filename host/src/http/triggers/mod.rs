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
use serde::Serialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};
use utoipa::{OpenApi, ToSchema};

use super::auth::bearer_token;
use super::bodies::read_limited;
use super::errors::{ApiResult, ErrorBody};
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

/// Where the trigger API is served: the OpenAPI annotations name the first; the document
/// repeats each operation under the second ([`Api::document`]).
pub const PREFIXES: [&str; 2] = ["/v1/integration/trigger", "/api/v1/integration/trigger"];

/// The operation id of the event endpoint (one per method, and per prefix).
pub const EVENT_OPERATION: &str = "sendTriggerEvent";

/// The OpenAPI tag of the trigger API.
pub const TAG: &str = "triggers";

/// The trigger API's management routes, for the OpenAPI document (behind the API token).
#[derive(OpenApi)]
#[openapi(paths(
    manage::create,
    manage::list,
    manage::fetch,
    manage::update,
    manage::delete,
    manage::setup,
    manage::invoke,
    events::list_events,
    events::get_event,
    events::retry_event,
))]
pub struct ManagementApi;

/// The trigger event endpoint, for the OpenAPI document (public).
#[derive(OpenApi)]
#[openapi(paths(ingress::receive_event))]
pub struct EventApi;

/// A trigger as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "trg_01J2Z3", "name": "Daily report", "description": null, "botId": "trigger",
    "authenticate": false, "triggerSchedule": "0 9 * * *", "schedule": "0 9 * * *",
    "timezone": "Europe/Paris", "sessionDuration": 3600000, "blueprintId": null, "meta": {},
    "lastTriggerAt": null, "nextTriggerAt": 1719824400000_i64,
    "createdAt": "2024-07-01T14:00:00.000Z", "updatedAt": "2024-07-01T14:00:00.000Z",
    "secret": "s3cr3t"
}))]
pub struct Trigger {
    pub id: String,
    #[schema(required)]
    pub name: Option<String>,
    #[schema(required)]
    pub description: Option<String>,
    /// The installation (name or id) that runs the trigger's events.
    pub bot_id: String,
    /// Whether events must carry `Authorization: Bearer <secret>`.
    pub authenticate: bool,
    /// A cron expression (five fields), or null.
    #[schema(required)]
    pub trigger_schedule: Option<String>,
    /// The same as `triggerSchedule`.
    #[schema(required)]
    pub schedule: Option<String>,
    /// An IANA time zone for the schedule (UTC when null).
    #[schema(required)]
    pub timezone: Option<String>,
    /// Milliseconds a session's conversation lasts.
    pub session_duration: i64,
    #[schema(required)]
    pub blueprint_id: Option<String>,
    /// Any object, to find triggers by (`meta.<key>=` in list).
    #[schema(value_type = Object)]
    pub meta: Value,
    /// When an event last came, in ms since the epoch.
    #[schema(required)]
    pub last_trigger_at: Option<i64>,
    /// When the schedule next fires, in ms since the epoch.
    #[schema(required)]
    pub next_trigger_at: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
    /// The trigger's secret: shown by create and fetch, and by list for triggers that
    /// authenticate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

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

/// An error as the trigger API answers it: the host's error ([`ErrorBody`]) with
/// ChatBotKit's string `code`, which its SDK hands to callers, and the HTTP status as
/// `status`.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(as = TriggerError, example = json!({
    "id": "req_01J2Z3QK8V6S1T7M5N4P3R2Q1W", "code": "NOT_FOUND", "status": 404,
    "type": "ResourceNotFound", "message": "trigger trg_1 does not exist"
}))]
pub struct TriggerErrorBody {
    /// The request id, as in the `x-sluice-request-id` header and the host's log.
    pub id: String,
    /// ChatBotKit's code for the status: `BAD_REQUEST`, `UNAUTHORIZED`, `FORBIDDEN`,
    /// `NOT_FOUND`, `METHOD_NOT_ALLOWED`, `CONFLICT`, `CONTENT_TOO_LARGE`,
    /// `UNSUPPORTED_MEDIA_TYPE`, `TOO_MANY_REQUESTS`, `INTERNAL_SERVER_ERROR`,
    /// `SERVICE_UNAVAILABLE`, `GATEWAY_TIMEOUT`, ...
    pub code: String,
    /// The HTTP status.
    pub status: u16,
    /// What kind of error, as the other APIs name it (`ResourceNotFound`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// What was wrong, for a person to read.
    pub message: String,
}

/// Error answers of the trigger API in ChatBotKit's shape ([`TriggerErrorBody`]).
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
    let rewritten = match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(error) => {
            let error = TriggerErrorBody {
                id: error.id,
                code: chatbotkit_code(status).to_string(),
                status: status.as_u16(),
                kind: error.kind,
                message: error.message,
            };
            Bytes::from(serde_json::to_vec(&error).unwrap_or_default())
        }
        Err(_) => bytes,
    };
    parts.headers.remove(axum::http::header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(rewritten))
}

fn jobs(app: &AppState) -> &Jobs {
    &app.jobs
}

/// A trigger as the API shows it. `with_secret`: fetch and create show the secret; list
/// shows it only for triggers that authenticate.
pub fn trigger_json(trigger: &TriggerRecord, next_trigger_at: Option<i64>, with_secret: bool) -> Trigger {
    Trigger {
        id: trigger.id.clone(),
        name: trigger.name.clone(),
        description: trigger.description.clone(),
        bot_id: trigger.bot_id.clone(),
        authenticate: trigger.authenticate,
        trigger_schedule: trigger.schedule.clone(),
        schedule: trigger.schedule.clone(),
        timezone: trigger.timezone.clone(),
        session_duration: trigger.session_duration_ms,
        blueprint_id: trigger.blueprint_id.clone(),
        meta: trigger.meta.clone(),
        last_trigger_at: trigger.last_trigger_at,
        next_trigger_at,
        created_at: iso8601(trigger.created_at),
        updated_at: iso8601(trigger.updated_at),
        secret: with_secret.then(|| trigger.secret.clone()),
    }
}

fn shown(app: &AppState, trigger: &TriggerRecord, with_secret: bool) -> Trigger {
    trigger_json(trigger, jobs(app).timetable.next_at(&trigger.id), with_secret)
}

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("trigger {id} does not exist (or was deleted)"))
}

async fn stored_trigger(app: &AppState, id: &str) -> ApiResult<TriggerRecord> {
    let key = id.to_string();
    app.store.trigger(&key).await?.ok_or_else(|| not_found(id))
}
