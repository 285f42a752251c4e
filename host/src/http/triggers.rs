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

use axum::body::Body;
use axum::extract::{FromRequest, Path, RawQuery, Request, State};
use axum::http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::bodies::read_limited;
use super::errors::ApiResult;
use super::{ApiError, AppState, auth};
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
pub fn routes(app: AppState) -> Router<AppState> {
    let mut management = Router::new();
    let mut events = Router::new();
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
        events = events.route(&format!("{prefix}/{{id}}/event"), any(receive_event));
    }
    let management = management.route_layer(axum::middleware::from_fn_with_state(app, auth::require_api_token));
    management.merge(events)
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

/// The raw body of a management call; one that cannot be read is answered in the API's
/// error shape (413 naming the limit) rather than axum's plain text.
struct ApiBody(Bytes);

impl<S: Send + Sync> FromRequest<S> for ApiBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<ApiBody, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(ApiBody)
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::api_body_too_large(),
                _ => ApiError::bad_request(format!("the body could not be read: {}", rejection.body_text())),
            })
    }
}

/// The JSON object body of a management call (an empty body counts as `{}`).
fn object_body(body: &Bytes) -> ApiResult<Map<String, Value>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ApiError::bad_request("the body must be a JSON object")),
        Err(error) => Err(ApiError::bad_request(format!("the body is not valid JSON: {error}"))),
    }
}

/// A field that may be absent (leave unchanged), null (clear) or set.
enum Field<T> {
    Absent,
    Null,
    Set(T),
}

impl<T> Field<T> {
    fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Field::Absent => current,
            Field::Null => None,
            Field::Set(value) => Some(value),
        }
    }
}

fn text_field(body: &Map<String, Value>, key: &str, max_len: usize) -> ApiResult<Field<String>> {
    match body.get(key) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::String(text)) if text.chars().count() <= max_len => Ok(Field::Set(text.clone())),
        Some(Value::String(_)) => Err(ApiError::bad_request(format!(
            "{key} is longer than {max_len} characters"
        ))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a string (or null), not {}",
            json_type(other)
        ))),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The fields of a create or update body, checked.
struct TriggerFields {
    name: Field<String>,
    description: Field<String>,
    bot_id: Field<String>,
    authenticate: Option<bool>,
    schedule: Field<String>,
    timezone: Field<String>,
    session_duration_ms: Option<i64>,
    blueprint_id: Field<String>,
    meta: Field<Value>,
}

fn trigger_fields(body: &Map<String, Value>) -> ApiResult<TriggerFields> {
    let authenticate = match body.get("authenticate") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(flag)) => Some(*flag),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "authenticate must be true or false, not {}",
                json_type(other)
            )));
        }
    };
    let session_duration_ms = match body.get("sessionDuration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) if (0..=(1i64 << 53)).contains(&ms) => Some(ms),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "sessionDuration must be a whole number of milliseconds, 0 or more, not {n}"
                )));
            }
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sessionDuration must be a number of milliseconds, not {}",
                json_type(other)
            )));
        }
    };
    let meta = match body.get("meta") {
        None => Field::Absent,
        Some(Value::Null) => Field::Null,
        Some(Value::Object(meta)) if Value::Object(meta.clone()).to_string().len() <= 16 * 1024 => {
            Field::Set(Value::Object(meta.clone()))
        }
        Some(Value::Object(_)) => return Err(ApiError::bad_request("meta is larger than 16 KiB")),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "meta must be an object, not {}",
                json_type(other)
            )));
        }
    };
    // `schedule` is the SDK's name for the seed's `triggerSchedule`.
    let schedule = match (
        text_field(body, "triggerSchedule", 256)?,
        text_field(body, "schedule", 256)?,
    ) {
        (Field::Set(a), Field::Set(b)) if a != b => {
            return Err(ApiError::bad_request(
                "triggerSchedule and schedule name the same setting; give one, or the same value in both",
            ));
        }
        (Field::Absent, other) | (other, _) => other,
    };
    let schedule = match schedule {
        Field::Set(expression) if expression.trim().is_empty() => Field::Null,
        other => other,
    };
    Ok(TriggerFields {
        name: text_field(body, "name", 256)?,
        description: text_field(body, "description", 4096)?,
        bot_id: text_field(body, "botId", 256)?,
        authenticate,
        schedule,
        timezone: text_field(body, "timezone", 64)?,
        session_duration_ms,
        blueprint_id: text_field(body, "blueprintId", 256)?,
        meta,
    })
}

/// Checks a trigger's bot and schedule; the error names what is wrong.
fn check_trigger(app: &AppState, trigger: &TriggerRecord) -> ApiResult<()> {
    if app.plugins.registry.by_id_or_name(&trigger.bot_id).is_none() {
        return Err(ApiError::bad_request(unknown_bot(app, &trigger.bot_id)));
    }
    if let Some(expression) = &trigger.schedule {
        Schedule::parse(expression, trigger.timezone.as_deref()).map_err(ApiError::bad_request)?;
    } else if let Some(timezone) = &trigger.timezone {
        Schedule::parse("0 0 * * *", Some(timezone)).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

fn unknown_bot(app: &AppState, bot_id: &str) -> String {
    let snapshot = app.plugins.registry.snapshot();
    let installed: Vec<&str> = snapshot.installations.keys().map(String::as_str).collect();
    format!(
        "botId {bot_id:?} is not an installed plugin: give an installation's name or id (installed: {})",
        if installed.is_empty() {
            "none".to_string()
        } else {
            installed.join(", ")
        }
    )
}

async fn create(State(app): State<AppState>, ApiBody(body): ApiBody) -> ApiResult<Json<Value>> {
    let fields = trigger_fields(&object_body(&body)?)?;
    let Field::Set(bot_id) = fields.bot_id else {
        return Err(ApiError::bad_request(
            "botId is required: the name or id of the installed plugin that runs the trigger's events",
        ));
    };
    let now = now_ms();
    let trigger = TriggerRecord {
        id: record_id("trg"),
        name: fields.name.apply(None),
        description: fields.description.apply(None),
        bot_id,
        // 256 random bits.
        secret: secret_token(32),
        authenticate: fields.authenticate.unwrap_or(false),
        schedule: fields.schedule.apply(None),
        timezone: fields.timezone.apply(None),
        session_duration_ms: fields.session_duration_ms.unwrap_or(DEFAULT_SESSION_DURATION_MS),
        blueprint_id: fields.blueprint_id.apply(None),
        meta: fields.meta.apply(None).unwrap_or_else(|| json!({})),
        last_trigger_at: None,
        created_at: now,
        updated_at: now,
    };
    check_trigger(&app, &trigger)?;
    jobs(&app).save_trigger(trigger.clone(), true).await?;
    tracing::info!(trigger = %trigger.id, bot = %trigger.bot_id, "trigger created");
    Ok(Json(shown(&app, &trigger, true)))
}

async fn update(State(app): State<AppState>, Path(id): Path<String>, ApiBody(body): ApiBody) -> ApiResult<Json<Value>> {
    let fields = trigger_fields(&object_body(&body)?)?;
    let current = stored_trigger(&app, &id).await?;
    if matches!(fields.bot_id, Field::Null) {
        return Err(ApiError::bad_request(
            "botId cannot be removed: every trigger runs a bot",
        ));
    }
    let trigger = TriggerRecord {
        name: fields.name.apply(current.name.clone()),
        description: fields.description.apply(current.description.clone()),
        bot_id: fields.bot_id.apply(Some(current.bot_id.clone())).unwrap_or_default(),
        authenticate: fields.authenticate.unwrap_or(current.authenticate),
        schedule: fields.schedule.apply(current.schedule.clone()),
        timezone: fields.timezone.apply(current.timezone.clone()),
        session_duration_ms: fields.session_duration_ms.unwrap_or(current.session_duration_ms),
        blueprint_id: fields.blueprint_id.apply(current.blueprint_id.clone()),
        meta: fields
            .meta
            .apply(Some(current.meta.clone()))
            .unwrap_or_else(|| json!({})),
        updated_at: now_ms().max(current.updated_at),
        ..current
    };
    check_trigger(&app, &trigger)?;
    if !jobs(&app).save_trigger(trigger.clone(), false).await? {
        return Err(not_found(&id));
    }
    Ok(Json(shown(&app, &trigger, true)))
}

async fn fetch(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let trigger = stored_trigger(&app, &id).await?;
    Ok(Json(shown(&app, &trigger, true)))
}

async fn delete(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    if !jobs(&app).delete_trigger(&id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(json!({ "id": id })))
}

/// Validates the trigger and its bot binding and (re)arms its schedule. Changes nothing
/// when all is well, so it is safe to repeat.
async fn setup(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let trigger = stored_trigger(&app, &id).await?;
    let mut problems = Vec::new();
    match app.plugins.registry.by_id_or_name(&trigger.bot_id) {
        None => problems.push(unknown_bot(&app, &trigger.bot_id)),
        Some(installation) if !installation.problems.is_empty() => problems.push(format!(
            "bot {} cannot take events: {}",
            trigger.bot_id,
            installation.problems.join("; ")
        )),
        Some(installation) => {
            if !installation
                .plugin
                .definition
                .channels
                .contains_key(crate::jobs::TRIGGER_CHANNEL)
            {
                tracing::info!(trigger = %id, bot = %trigger.bot_id, "the bot declares no `trigger` channel: it can record events but not messages in trigger conversations");
            }
        }
    }
    if let Some(expression) = &trigger.schedule
        && let Err(problem) = Schedule::parse(expression, trigger.timezone.as_deref())
    {
        problems.push(problem);
    }
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TriggerNotReady",
            format!("trigger {id} is not ready: {}", problems.join("; ")),
        ));
    }
    jobs(&app).timetable.set(
        &trigger.id,
        trigger.schedule.as_deref().map(|e| (e, trigger.timezone.as_deref())),
    );
    Ok(Json(json!({ "id": id })))
}

async fn invoke(State(app): State<AppState>, Path(id): Path<String>, ApiBody(body): ApiBody) -> ApiResult<Json<Value>> {
    let object = object_body(&body)?;
    let trigger = jobs(&app).trigger(&id).ok_or_else(|| not_found(&id))?;
    let body = if object.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(Value::Object(object).to_string())
    };
    let queued = jobs(&app).invoke(&trigger, body).await?;
    Ok(Json(json!({ "id": id, "eventId": queued.id })))
}

async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery, headers: HeaderMap) -> ApiResult<Response> {
    let mut query = TriggerQuery {
        take: 20,
        ..Default::default()
    };
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "cursor" if !value.is_empty() => query.cursor = Some(value),
            "cursor" => {}
            "take" => {
                query.take = match value.parse::<usize>() {
                    Ok(take) if (1..=100).contains(&take) => take,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "take must be a number from 1 to 100, not {value:?}"
                        )));
                    }
                }
            }
            "order" => {
                query.ascending = match value.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "order must be asc or desc, not {value:?}"
                        )));
                    }
                }
            }
            "blueprintId" => query.blueprint_id = Some(value),
            other => {
                if let Some(meta_key) = other.strip_prefix("meta.") {
                    if meta_key.is_empty()
                        || !meta_key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(ApiError::bad_request(format!(
                            "meta filter {other:?}: a meta key may use letters, digits, _ and -"
                        )));
                    }
                    query.meta.push((meta_key.to_string(), value));
                }
            }
        }
    }
    let page = app.store.list_triggers(&query).await?;
    let items: Vec<Value> = page.items.iter().map(|t| shown(&app, t, t.authenticate)).collect();
    let wants_lines = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/jsonl"));
    if wants_lines {
        let mut lines = String::new();
        for item in items {
            lines.push_str(&json!({ "type": "item", "data": item }).to_string());
            lines.push('\n');
        }
        return Ok(([(CONTENT_TYPE, "application/jsonl")], lines).into_response());
    }
    let mut answer = json!({ "items": items });
    if let Some(cursor) = page.cursor {
        answer["cursor"] = Value::String(cursor);
    }
    Ok(Json(answer).into_response())
}

async fn list_events(
    State(app): State<AppState>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    let mut status = None;
    let mut cursor = None;
    let mut take = 20;
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "status" => {
                if !["queued", "running", "done", "failed", "cancelled"].contains(&value.as_ref()) {
                    return Err(ApiError::bad_request(format!(
                        "status must be queued, running, done, failed or cancelled, not {value:?}"
                    )));
                }
                status = Some(value.into_owned());
            }
            "cursor" => {
                cursor =
                    Some(value.parse::<i64>().map_err(|_| {
                        ApiError::bad_request(format!("cursor {value:?} is not one this list returned"))
                    })?)
            }
            "take" => {
                take = value
                    .parse::<usize>()
                    .ok()
                    .filter(|t| (1..=100).contains(t))
                    .ok_or_else(|| {
                        ApiError::bad_request(format!("take must be a number from 1 to 100, not {value:?}"))
                    })?
            }
            _ => {}
        }
    }
    let (items, next) = jobs(&app).queue.jobs(&id, status.as_deref(), cursor, take).await?;
    // A deleted trigger's events stay listed (cancelled, or as they ended) until the
    // queue forgets them.
    if items.is_empty() && cursor.is_none() && jobs(&app).trigger(&id).is_none() {
        return Err(not_found(&id));
    }
    let mut answer = json!({ "items": items });
    if let Some(next) = next {
        answer["cursor"] = Value::String(next.to_string());
    }
    Ok(Json(answer))
}

async fn find_event(app: &AppState, id: &str, event_id: &str) -> ApiResult<crate::jobs::queue::JobSummary> {
    let found = jobs(app).queue.job(event_id).await?;
    found.filter(|job| job.trigger_id == id).ok_or_else(|| {
        ApiError::not_found(format!(
            "trigger {id} has no event {event_id} (or it was forgotten after its retention)"
        ))
    })
}

async fn get_event(
    State(app): State<AppState>,
    Path((id, event_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let job = find_event(&app, &id, &event_id).await?;
    Ok(Json(json!({ "event": job })))
}

/// Puts a failed event back in the queue, with a fresh round of attempts.
async fn retry_event(
    State(app): State<AppState>,
    Path((id, event_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let job = find_event(&app, &id, &event_id).await?;
    if jobs(&app).trigger(&id).is_none() {
        return Err(not_found(&id));
    }
    let budget = jobs(&app).settings.max_attempts;
    if !jobs(&app).queue.retry_failed(&event_id, budget).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "EventNotFailed",
            format!(
                "event {event_id} is {}, not failed: only failed events can be retried",
                job.status
            ),
        ));
    }
    let job = find_event(&app, &id, &event_id).await?;
    Ok(Json(json!({ "event": job })))
}

// ---------------------------------------------------------------------------------
// The event endpoint.

/// What the query string says about the event's session and contact.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventParameters {
    pub session: Option<String>,
    pub contact: Option<Contact>,
}

fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), String> {
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{name} is empty; leave it out or give a value"));
    }
    if value.chars().count() > 256 {
        return Err(format!("{name} is longer than 256 characters"));
    }
    match slot {
        Some(existing) if *existing != value => Err(format!(
            "{name} is given twice with different values ({existing:?} and {value:?})"
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Reads `session` and `contact.name|email|phone` (or `contact_name|email|phone`).
pub fn event_parameters(query: &str) -> Result<EventParameters, String> {
    let mut session = None;
    let mut contact = Contact::default();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "session" => set_once(&mut session, "session", value)?,
            "contact.name" | "contact_name" => set_once(&mut contact.name, "the contact's name", value)?,
            "contact.email" | "contact_email" => set_once(&mut contact.email, "the contact's email", value)?,
            "contact.phone" | "contact_phone" => set_once(&mut contact.phone, "the contact's phone", value)?,
            _ => {}
        }
    }
    if let Some(email) = &mut contact.email {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(format!("the contact's email {email:?} is not an email address"));
        }
        *email = email.to_lowercase();
    }
    Ok(EventParameters {
        session,
        contact: (!contact.is_empty()).then_some(contact),
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")))
        .map(str::trim)
}

/// `GET|POST .../{id}/event`: checks the request, writes the event to the queue and
/// answers `{"ok":true}` once it is on disk.
async fn receive_event(State(app): State<AppState>, Path(id): Path<String>, request: Request) -> Response {
    match accept_event(&app, &id, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn accept_event(app: &AppState, id: &str, request: Request) -> ApiResult<Response> {
    let method = request.method().clone();
    if method != Method::GET && method != Method::POST {
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("send events with GET or POST, not {method}"),
        )
        .into_response();
        response
            .headers_mut()
            .insert("allow", HeaderValue::from_static("GET, POST"));
        return Ok(response);
    }
    let jobs = jobs(app);
    let trigger = jobs.trigger(id).ok_or_else(|| not_found(id))?;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if trigger.authenticate {
        match bearer(headers) {
            Some(given) if secrets_match(given.as_bytes(), trigger.secret.as_bytes()) => {}
            Some(_) => return Err(ApiError::unauthorized("the trigger secret is wrong")),
            None => {
                return Err(ApiError::unauthorized(
                    "this trigger authenticates its events: send Authorization: Bearer <trigger secret>",
                ));
            }
        }
    }
    let query = parts.uri.query().unwrap_or_default().to_string();
    let parameters = event_parameters(&query).map_err(ApiError::bad_request)?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if !key.trim().is_empty() && key.len() <= 255 => Some(key.trim().to_string()),
            _ => {
                return Err(ApiError::bad_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ));
            }
        },
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("the Content-Type header is not readable text"))
        })
        .transpose()?;
    let limit = jobs.settings.max_body_bytes;
    let too_large = || {
        ApiError::payload_too_large(format!(
            "the event body is over the limit of {limit} bytes (triggers.max-body-bytes in the host configuration)"
        ))
    };
    let mut kept_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "authorization" | "cookie" | "proxy-authorization"))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    kept_headers.push((SOURCE_HEADER.into(), JobSource::Event.as_str().into()));
    let body = read_limited(headers, body, limit)
        .await
        .map_err(|unread| unread.answer(too_large))?;
    check_body(content_type.as_deref(), &body)?;

    let job = NewJob {
        trigger_id: trigger.id.clone(),
        source: JobSource::Event,
        idempotency_key,
        method: method.as_str().to_string(),
        content_type,
        query,
        headers: kept_headers,
        body,
        session: parameters.session,
        contact: parameters.contact,
        received_at: now_ms(),
        budget: jobs.settings.max_attempts,
    };
    let queued = jobs.enqueue(job).await?;
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        Body::from(r#"{"ok":true}"#),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&queued.id) {
        response.headers_mut().insert(EVENT_ID_HEADER, value);
    }
    if queued.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// JSON bodies must parse and text bodies must be UTF-8; anything else is passed on as
/// bytes.
fn check_body(content_type: Option<&str>, body: &[u8]) -> ApiResult<()> {
    if body.is_empty() {
        return Ok(());
    }
    let media = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media == "application/json" || media.ends_with("+json") {
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|error| {
            ApiError::bad_request(format!(
                "the body is not valid JSON ({error}); send JSON with Content-Type: application/json, or text with text/plain"
            ))
        })?;
    } else if media.starts_with("text/") && std::str::from_utf8(body).is_err() {
        return Err(ApiError::bad_request(
            "the body is not valid UTF-8 text; fix the body or its Content-Type",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_contact_spellings_are_read() {
        let dotted = event_parameters(
            "session=s1&contact.name=John+Smith&contact.email=John@Example.com&contact.phone=555-0123",
        )
        .unwrap();
        let underscored = event_parameters(
            "session=s1&contact_name=John%20Smith&contact_email=john@example.com&contact_phone=555-0123",
        )
        .unwrap();
        assert_eq!(dotted, underscored);
        assert_eq!(dotted.session.as_deref(), Some("s1"));
        let contact = dotted.contact.unwrap();
        assert_eq!(contact.name.as_deref(), Some("John Smith"));
        assert_eq!(contact.email.as_deref(), Some("john@example.com"));
        assert_eq!(event_parameters("other=1").unwrap(), EventParameters::default());
    }

    #[test]
    fn conflicting_or_empty_parameters_are_refused() {
        assert!(
            event_parameters("contact.name=A&contact_name=B")
                .unwrap_err()
                .contains("twice")
        );
        assert!(event_parameters("contact.name=A&contact_name=A").is_ok());
        assert!(event_parameters("session=").unwrap_err().contains("session is empty"));
        assert!(
            event_parameters("contact.email=nope")
                .unwrap_err()
                .contains("not an email")
        );
    }

    #[test]
    fn bodies_are_checked_by_their_content_type() {
        assert!(check_body(Some("application/json"), b"{\"a\":1}").is_ok());
        assert!(check_body(Some("application/json; charset=utf-8"), b"{oops").is_err());
        assert!(check_body(Some("text/plain"), b"Generate daily sales report").is_ok());
        assert!(check_body(Some("text/plain"), &[0xff, 0xfe]).is_err());
        assert!(check_body(Some("application/octet-stream"), &[0xff, 0xfe]).is_ok());
        assert!(check_body(Some("application/json"), b"").is_ok());
    }
}
