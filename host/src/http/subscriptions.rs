//! The delivery API: webhook subscriptions (create, list, fetch, update, delete), their
//! deliveries and attempts, re-sending a dead-lettered delivery (resend) or every one of
//! a subscription since a time (recover, with its progress), and where delivery stands.
//! All under `/v1`, behind the API token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

use super::chat::page_meta;
use super::errors::ApiResult;
use super::extract::{JsonBody, PathParams, QueryParams};
use super::routes::{Routes, get, post};
use super::{ApiError, AppState};
use crate::delivery::{Resume, Resumed, SubscriptionError, SubscriptionInput};
use crate::store::{
    AttemptRecord, DeliveryQuery, DeliveryRecord, DeliveryStatus, PageRequest, RecoveryProgress, SubscriptionRecord,
};
use crate::time::iso8601;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/subscriptions", get(list).post(create))
        .route("/v1/subscriptions/{id}", get(fetch).patch(update).delete(delete))
        .route("/v1/subscriptions/{id}/deliveries", get(list_deliveries))
        .route("/v1/deliveries/{id}", get(fetch_delivery))
        .route("/v1/deliveries/{id}/attempts", get(list_attempts))
        .route("/v1/deliveries/{id}/resend", post(resend))
        .route("/v1/subscriptions/{id}/recover", post(recover))
        .route("/v1/recoveries/{id}", get(fetch_recovery))
        .route("/v1/delivery", get(status))
}

/// A subscription as the API shows it; the secret only where asked for.
pub fn subscription_json(subscription: &SubscriptionRecord, with_secret: bool) -> Value {
    let mut object = json!({
        "id": subscription.id,
        "url": subscription.url,
        "types": subscription.types,
        "enabled": subscription.enabled,
        "description": subscription.description,
        "source": subscription.source.as_str(),
        "createdAt": iso8601(subscription.created_at),
        "updatedAt": iso8601(subscription.updated_at),
        "disabledAt": subscription.disabled_at.map(iso8601),
    });
    if with_secret {
        object["secret"] = json!(subscription.secret);
    }
    object
}

pub fn delivery_json(delivery: &DeliveryRecord) -> Value {
    json!({
        "id": format!("dlv_{}", delivery.seq),
        "subscriptionId": delivery.subscription_id,
        "eventId": delivery.event_id,
        "eventType": delivery.event_type,
        "status": delivery.status.as_str(),
        "attempts": delivery.attempts,
        "round": delivery.round,
        "roundAttempts": delivery.attempts - delivery.round_start,
        "recoveryId": delivery.recovery_id,
        "nextAttemptAt": delivery.next_attempt_at.filter(|_| delivery.status == DeliveryStatus::Pending).map(iso8601),
        "lastStatusCode": delivery.last_status_code,
        "lastError": delivery.last_error,
        "createdAt": iso8601(delivery.created_at),
        "updatedAt": iso8601(delivery.updated_at),
    })
}

pub fn attempt_json(attempt: &AttemptRecord) -> Value {
    json!({
        "number": attempt.number,
        "startedAt": iso8601(attempt.started_at),
        "durationMs": attempt.duration_ms,
        "statusCode": attempt.status_code,
        "error": attempt.error,
        "outcome": match attempt.outcome {
            DeliveryStatus::Pending => "retry",
            other => other.as_str(),
        },
        "nextAttemptAt": attempt.next_attempt_at.map(iso8601),
    })
}

impl From<SubscriptionError> for ApiError {
    fn from(error: SubscriptionError) -> ApiError {
        match error {
            SubscriptionError::Invalid(message) => ApiError::bad_request(message),
            SubscriptionError::NotFound(message) => ApiError::not_found(message),
            SubscriptionError::Managed(message) | SubscriptionError::Running(message) => {
                ApiError::new(StatusCode::CONFLICT, "Conflict", message)
            }
            SubscriptionError::Internal(error) => ApiError::from(error),
        }
    }
}

/// The body of create and update. `description: null` clears it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SubscriptionBody {
    url: Option<String>,
    types: Option<Vec<String>>,
    secret: Option<String>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    /// When a disabled subscription is enabled: `backlog` (what was recorded while it
    /// was disabled is delivered; the default) or `now` (that is skipped).
    resume: Option<String>,
}

/// Tells a field given as `null` (`Some(None)`) from a field left out (`None`).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(Option::deserialize(deserializer)?))
}

fn input(body: SubscriptionBody) -> ApiResult<SubscriptionInput> {
    let resume = match body.resume.as_deref() {
        None => None,
        Some("backlog") => Some(Resume::Backlog),
        Some("now") => Some(Resume::Now),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "resume {other:?} is not one of backlog (deliver what was recorded while the subscription was disabled) and now (skip it)"
            )));
        }
    };
    Ok(SubscriptionInput {
        url: body.url,
        types: body.types,
        secret: body.secret,
        enabled: body.enabled,
        description: body.description,
        resume,
    })
}

/// What enabling a disabled subscription did, as the API says it.
fn resumed_json(resumed: Option<Resumed>) -> Value {
    match resumed {
        None => Value::Null,
        Some(Resumed::Backlog { pending }) => json!({ "from": "backlog", "pending": pending }),
        Some(Resumed::Now { skipped }) => json!({ "from": "now", "skipped": skipped }),
    }
}

async fn create(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> ApiResult<impl IntoResponse> {
    let subscription = app.delivery.create(input(body)?).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "subscription": subscription_json(&subscription, true) })),
    ))
}

async fn list(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let subscriptions = app.store.subscriptions().await?;
    Ok(Json(json!({
        "subscriptions": subscriptions.iter().map(|s| subscription_json(s, false)).collect::<Vec<_>>(),
    })))
}

async fn fetch(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let subscription = app
        .store
        .subscription(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("subscription {id} does not exist")))?;
    Ok(Json(json!({ "subscription": subscription_json(&subscription, true) })))
}

async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> ApiResult<Json<Value>> {
    let (subscription, resumed) = app.delivery.update(&id, input(body)?).await?;
    Ok(Json(json!({
        "subscription": subscription_json(&subscription, true),
        "resumed": resumed_json(resumed),
    })))
}

async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<StatusCode> {
    app.delivery.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeliveriesQuery {
    status: Option<String>,
    page_size: Option<usize>,
    next_token: Option<String>,
}

async fn list_deliveries(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> ApiResult<Json<Value>> {
    let status = match query.status.as_deref() {
        None | Some("") => None,
        Some(text) => Some(DeliveryStatus::parse(text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidQuery",
                format!("status {text:?} is not one of pending, delivered, dead"),
            )
        })?),
    };
    let lookup = id.clone();
    if app.store.subscription(&lookup).await?.is_none() {
        return Err(ApiError::not_found(format!("subscription {id} does not exist")));
    }
    let query = DeliveryQuery {
        subscription_id: id,
        status,
        page: PageRequest {
            size: query.page_size,
            token: query.next_token,
        },
    };
    let page = app.store.deliveries(&query).await?;
    Ok(Json(json!({
        "deliveries": page.items.iter().map(delivery_json).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

fn delivery_seq(id: &str) -> ApiResult<i64> {
    id.strip_prefix("dlv_")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::not_found(format!("delivery {id} does not exist (delivery ids look like dlv_42)")))
}

async fn fetch_delivery(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let seq = delivery_seq(&id)?;
    let (delivery, attempts) = (app.store.delivery(seq).await?, app.store.attempts(seq).await?);
    let delivery = delivery.ok_or_else(|| ApiError::not_found(format!("delivery {id} does not exist")))?;
    let mut shown = delivery_json(&delivery);
    shown["attemptList"] = attempts.iter().map(attempt_json).collect();
    Ok(Json(json!({ "delivery": shown })))
}

async fn list_attempts(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let seq = delivery_seq(&id)?;
    let (delivery, attempts) = (app.store.delivery(seq).await?, app.store.attempts(seq).await?);
    if delivery.is_none() {
        return Err(ApiError::not_found(format!("delivery {id} does not exist")));
    }
    Ok(Json(
        json!({ "attempts": attempts.iter().map(attempt_json).collect::<Vec<_>>() }),
    ))
}

async fn resend(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<impl IntoResponse> {
    let seq = delivery_seq(&id)?;
    let delivery = app.delivery.resend(seq).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "delivery": delivery_json(&delivery) })),
    ))
}

/// A recovery and its progress as the API shows it.
pub fn recovery_json(progress: &RecoveryProgress) -> Value {
    let recovery = &progress.recovery;
    json!({
        "id": recovery.id,
        "subscriptionId": recovery.subscription_id,
        "since": iso8601(recovery.since),
        "status": if progress.pending > 0 { "running" } else { "finished" },
        "deliveries": recovery.total,
        "pending": progress.pending,
        "delivered": progress.delivered,
        "dead": progress.dead,
        "createdAt": iso8601(recovery.created_at),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoverBody {
    /// ISO 8601: dead deliveries created at or after it are sent again.
    since: String,
}

async fn recover(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<RecoverBody>,
) -> ApiResult<impl IntoResponse> {
    let since = chrono::DateTime::parse_from_rfc3339(body.since.trim())
        .map_err(|e| {
            ApiError::bad_request(format!(
                "since {:?} is not an ISO 8601 time ({e}); give one like \"2024-07-01T14:00:00Z\"",
                body.since
            ))
        })?
        .timestamp_millis();
    let progress = app.delivery.recover(&id, since).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "recovery": recovery_json(&progress) })),
    ))
}

async fn fetch_recovery(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let progress = app
        .store
        .recovery(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("recovery {id} does not exist")))?;
    Ok(Json(json!({ "recovery": recovery_json(&progress) })))
}

async fn status(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(app.delivery.status().await?))
}
