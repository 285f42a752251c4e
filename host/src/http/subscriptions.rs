//! The delivery API: webhook subscriptions (create, list, fetch, update, delete), their
//! deliveries and attempts, re-sending a dead-lettered delivery (resend) or every one of
//! a subscription since a time (recover, with its progress), and where delivery stands.
//! All under `/v1`, behind the API token.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::errors::{ApiResult, ErrorBody};
use super::extract::{JsonBody, PathParams, QueryParams};
use super::routes::{Routes, get, post};
use super::shapes::PageMeta;
use super::{ApiError, AppState};
use crate::delivery::{DeliveryOverview, Resume, Resumed, SubscriptionError, SubscriptionInput};
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

/// The OpenAPI tag of the delivery API.
pub const TAG: &str = "delivery";

/// The delivery API's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    list,
    create,
    fetch,
    update,
    delete,
    list_deliveries,
    fetch_delivery,
    list_attempts,
    resend,
    recover,
    fetch_recovery,
    status,
))]
pub struct Api;

/// A webhook subscription.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "sub_01J2Z3", "url": "https://example.com/hooks/sluice", "types": ["chat:*"],
    "enabled": true, "description": null, "source": "api",
    "createdAt": "2024-07-01T14:00:00.000Z", "updatedAt": "2024-07-01T14:00:00.000Z",
    "disabledAt": null, "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
}))]
pub struct Subscription {
    pub id: String,
    /// Where deliveries are sent.
    pub url: String,
    /// The event types delivered, exact or prefixes ending in `*`; empty for every type.
    pub types: Vec<String>,
    pub enabled: bool,
    #[schema(required)]
    pub description: Option<String>,
    /// `api` (made with this API) or `config` (from the host configuration file).
    pub source: String,
    pub created_at: String,
    pub updated_at: String,
    /// When it was disabled (by a request, or after too many dead deliveries).
    #[schema(required)]
    pub disabled_at: Option<String>,
    /// The signing secret (`whsec_...`); shown by create, fetch and update.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A subscription as the API shows it; the secret only where asked for.
pub fn subscription_json(subscription: &SubscriptionRecord, with_secret: bool) -> Subscription {
    Subscription {
        id: subscription.id.clone(),
        url: subscription.url.clone(),
        types: subscription.types.clone(),
        enabled: subscription.enabled,
        description: subscription.description.clone(),
        source: subscription.source.as_str().to_string(),
        created_at: iso8601(subscription.created_at),
        updated_at: iso8601(subscription.updated_at),
        disabled_at: subscription.disabled_at.map(iso8601),
        secret: with_secret.then(|| subscription.secret.clone()),
    }
}

/// One event's delivery to one subscription.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// `dlv_<n>`.
    pub id: String,
    pub subscription_id: String,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts so far, every round.
    pub attempts: i64,
    /// Rounds of attempts (a resend or recovery starts another).
    pub round: i64,
    /// Attempts in this round.
    pub round_attempts: i64,
    /// The recovery that sent it again, if one did.
    #[schema(required)]
    pub recovery_id: Option<String>,
    /// When a pending delivery is tried next.
    #[schema(required)]
    pub next_attempt_at: Option<String>,
    #[schema(required)]
    pub last_status_code: Option<i64>,
    #[schema(required)]
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// Its attempts (fetching one delivery shows them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_list: Option<Vec<Attempt>>,
}

pub fn delivery_json(delivery: &DeliveryRecord) -> Delivery {
    Delivery {
        id: format!("dlv_{}", delivery.seq),
        subscription_id: delivery.subscription_id.clone(),
        event_id: delivery.event_id.clone(),
        event_type: delivery.event_type.clone(),
        status: delivery.status.as_str().to_string(),
        attempts: delivery.attempts,
        round: delivery.round,
        round_attempts: delivery.attempts - delivery.round_start,
        recovery_id: delivery.recovery_id.clone(),
        next_attempt_at: delivery
            .next_attempt_at
            .filter(|_| delivery.status == DeliveryStatus::Pending)
            .map(iso8601),
        last_status_code: delivery.last_status_code,
        last_error: delivery.last_error.clone(),
        created_at: iso8601(delivery.created_at),
        updated_at: iso8601(delivery.updated_at),
        attempt_list: None,
    }
}

/// One attempt at a delivery.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    /// 1 for the first.
    pub number: i64,
    pub started_at: String,
    pub duration_ms: i64,
    /// The receiver's status, when it answered.
    #[schema(required)]
    pub status_code: Option<i64>,
    /// Why it failed, when it did.
    #[schema(required)]
    pub error: Option<String>,
    /// `delivered`, `retry` or `dead`.
    pub outcome: String,
    /// When the next attempt is due, after a `retry`.
    #[schema(required)]
    pub next_attempt_at: Option<String>,
}

pub fn attempt_json(attempt: &AttemptRecord) -> Attempt {
    Attempt {
        number: attempt.number,
        started_at: iso8601(attempt.started_at),
        duration_ms: attempt.duration_ms,
        status_code: attempt.status_code,
        error: attempt.error.clone(),
        outcome: match attempt.outcome {
            DeliveryStatus::Pending => "retry",
            other => other.as_str(),
        }
        .to_string(),
        next_attempt_at: attempt.next_attempt_at.map(iso8601),
    }
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(example = json!({"url": "https://example.com/hooks/sluice", "types": ["chat:*"]}))]
struct SubscriptionBody {
    /// Where to deliver: an http or https URL (required by create).
    url: Option<String>,
    /// Event types, exact or prefixes ending in `*`; every type when left out.
    types: Option<Vec<String>>,
    /// The signing secret (`whsec_` and base64); one is made when left out.
    secret: Option<String>,
    enabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    description: Option<Option<String>>,
    /// When a disabled subscription is enabled: `backlog` (what was recorded while it
    /// was disabled is delivered; the default) or `now` (that is skipped).
    #[schema(pattern = "^(backlog|now)$")]
    resume: Option<String>,
}

/// One subscription.
#[derive(Debug, Serialize, ToSchema)]
struct SubscriptionAnswer {
    subscription: Subscription,
}

/// A subscription as updated, and what enabling it did.
#[derive(Debug, Serialize, ToSchema)]
struct SubscriptionUpdated {
    subscription: Subscription,
    /// Set when this update enabled a disabled subscription.
    #[schema(required)]
    resumed: Option<ResumedAnswer>,
}

/// What enabling a disabled subscription did.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "from", rename_all = "lowercase")]
enum ResumedAnswer {
    /// What was recorded while it was disabled is being delivered.
    Backlog {
        /// Deliveries pending for it.
        pending: i64,
    },
    /// What was recorded while it was disabled is skipped.
    Now {
        /// Events skipped.
        skipped: u64,
    },
}

/// Every subscription.
#[derive(Debug, Serialize, ToSchema)]
struct SubscriptionList {
    subscriptions: Vec<Subscription>,
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
fn resumed_json(resumed: Option<Resumed>) -> Option<ResumedAnswer> {
    resumed.map(|resumed| match resumed {
        Resumed::Backlog { pending } => ResumedAnswer::Backlog { pending },
        Resumed::Now { skipped } => ResumedAnswer::Now {
            skipped: skipped as u64,
        },
    })
}

/// The path of a subscription, delivery or recovery.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path, for the OpenAPI document")]
struct IdPath {
    /// Its id.
    id: String,
}

/// Subscribe a URL to events: every event recorded is delivered to it, signed.
#[utoipa::path(post, path = "/v1/subscriptions", tag = TAG, operation_id = "createSubscription",
    request_body = SubscriptionBody,
    responses((status = 201, description = "The subscription, with its secret", body = SubscriptionAnswer)))]
async fn create(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> ApiResult<impl IntoResponse> {
    let subscription = app.delivery.create(input(body)?).await?;
    Ok((
        StatusCode::CREATED,
        Json(SubscriptionAnswer {
            subscription: subscription_json(&subscription, true),
        }),
    ))
}

/// List the subscriptions (without their secrets).
#[utoipa::path(get, path = "/v1/subscriptions", tag = TAG, operation_id = "listSubscriptions",
    responses((status = 200, description = "Every subscription", body = SubscriptionList)))]
async fn list(State(app): State<AppState>) -> ApiResult<Json<SubscriptionList>> {
    let subscriptions = app.store.subscriptions().await?;
    Ok(Json(SubscriptionList {
        subscriptions: subscriptions.iter().map(|s| subscription_json(s, false)).collect(),
    }))
}

/// Fetch a subscription, with its secret.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = TAG, operation_id = "getSubscription",
    params(IdPath),
    responses((status = 200, description = "The subscription", body = SubscriptionAnswer)))]
async fn fetch(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<SubscriptionAnswer>> {
    let lookup = id.clone();
    let subscription = app
        .store
        .subscription(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("subscription {id} does not exist")))?;
    Ok(Json(SubscriptionAnswer {
        subscription: subscription_json(&subscription, true),
    }))
}

/// Change a subscription: the fields given.
#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = TAG, operation_id = "updateSubscription",
    params(IdPath), request_body = SubscriptionBody,
    responses(
        (status = 200, description = "The subscription as updated", body = SubscriptionUpdated),
        (status = 409, description = "A subscription from the configuration file cannot be changed here (Conflict)", body = ErrorBody),
    ))]
async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<SubscriptionBody>,
) -> ApiResult<Json<SubscriptionUpdated>> {
    let (subscription, resumed) = app.delivery.update(&id, input(body)?).await?;
    Ok(Json(SubscriptionUpdated {
        subscription: subscription_json(&subscription, true),
        resumed: resumed_json(resumed),
    }))
}

/// Delete a subscription and its deliveries.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = TAG, operation_id = "deleteSubscription",
    params(IdPath),
    responses(
        (status = 204, description = "The subscription is deleted"),
        (status = 409, description = "A subscription from the configuration file cannot be deleted here (Conflict)", body = ErrorBody),
    ))]
async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<StatusCode> {
    app.delivery.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// Only deliveries in this status.
    #[param(pattern = "^(pending|delivered|dead)?$")]
    status: Option<String>,
    /// Deliveries per page: 20 when left out; 1 to 100 (more is served as 100, 0 as 1).
    #[param(minimum = 0, maximum = 4294967295u64, format = Int64)]
    page_size: Option<u32>,
    /// The `meta.nextToken` of the page before.
    next_token: Option<String>,
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
struct DeliveryList {
    deliveries: Vec<Delivery>,
    meta: PageMeta,
}

/// One delivery.
#[derive(Debug, Serialize, ToSchema)]
struct DeliveryAnswer {
    delivery: Delivery,
}

/// A delivery's attempts.
#[derive(Debug, Serialize, ToSchema)]
struct AttemptList {
    attempts: Vec<Attempt>,
}

/// List a subscription's deliveries, newest first.
#[utoipa::path(get, path = "/v1/subscriptions/{id}/deliveries", tag = TAG, operation_id = "listDeliveries",
    params(IdPath, DeliveriesQuery),
    responses((status = 200, description = "A page of deliveries", body = DeliveryList)))]
async fn list_deliveries(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    QueryParams(query): QueryParams<DeliveriesQuery>,
) -> ApiResult<Json<DeliveryList>> {
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
            size: query.page_size.map(|size| size as usize),
            token: query.next_token,
        },
    };
    let page = app.store.deliveries(&query).await?;
    Ok(Json(DeliveryList {
        deliveries: page.items.iter().map(delivery_json).collect(),
        meta: PageMeta::new(page.next_token),
    }))
}

fn delivery_seq(id: &str) -> ApiResult<i64> {
    id.strip_prefix("dlv_")
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| ApiError::not_found(format!("delivery {id} does not exist (delivery ids look like dlv_42)")))
}

/// Fetch a delivery with its attempts.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = TAG, operation_id = "getDelivery",
    params(IdPath),
    responses((status = 200, description = "The delivery, with `attemptList`", body = DeliveryAnswer)))]
async fn fetch_delivery(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<DeliveryAnswer>> {
    let seq = delivery_seq(&id)?;
    let (delivery, attempts) = (app.store.delivery(seq).await?, app.store.attempts(seq).await?);
    let delivery = delivery.ok_or_else(|| ApiError::not_found(format!("delivery {id} does not exist")))?;
    let mut shown = delivery_json(&delivery);
    shown.attempt_list = Some(attempts.iter().map(attempt_json).collect());
    Ok(Json(DeliveryAnswer { delivery: shown }))
}

/// List a delivery's attempts.
#[utoipa::path(get, path = "/v1/deliveries/{id}/attempts", tag = TAG, operation_id = "listAttempts",
    params(IdPath),
    responses((status = 200, description = "The delivery's attempts", body = AttemptList)))]
async fn list_attempts(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<AttemptList>> {
    let seq = delivery_seq(&id)?;
    let (delivery, attempts) = (app.store.delivery(seq).await?, app.store.attempts(seq).await?);
    if delivery.is_none() {
        return Err(ApiError::not_found(format!("delivery {id} does not exist")));
    }
    Ok(Json(AttemptList {
        attempts: attempts.iter().map(attempt_json).collect(),
    }))
}

/// Any JSON object, not read.
#[derive(ToSchema)]
#[schema(as = Unread)]
#[allow(dead_code, reason = "describes a body that is not read, for the OpenAPI document")]
struct Unread {}

/// Send a dead delivery again, in a new round of attempts.
#[utoipa::path(post, path = "/v1/deliveries/{id}/resend", tag = TAG, operation_id = "resendDelivery",
    params(IdPath), request_body(content = Unread),
    responses(
        (status = 202, description = "The delivery, pending again", body = DeliveryAnswer),
        (status = 409, description = "The delivery is not dead, or its subscription is disabled (Conflict)", body = ErrorBody),
    ))]
async fn resend(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<impl IntoResponse> {
    let seq = delivery_seq(&id)?;
    let delivery = app.delivery.resend(seq).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(DeliveryAnswer {
            delivery: delivery_json(&delivery),
        }),
    ))
}

/// A recovery: a subscription's dead deliveries since a time, sent again.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recovery {
    pub id: String,
    pub subscription_id: String,
    pub since: String,
    /// `running` while deliveries are pending, then `finished`.
    pub status: String,
    /// Deliveries it sends again.
    pub deliveries: i64,
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
    pub created_at: String,
}

/// A recovery and its progress as the API shows it.
pub fn recovery_json(progress: &RecoveryProgress) -> Recovery {
    let recovery = &progress.recovery;
    Recovery {
        id: recovery.id.clone(),
        subscription_id: recovery.subscription_id.clone(),
        since: iso8601(recovery.since),
        status: if progress.pending > 0 { "running" } else { "finished" }.to_string(),
        deliveries: recovery.total,
        pending: progress.pending,
        delivered: progress.delivered,
        dead: progress.dead,
        created_at: iso8601(recovery.created_at),
    }
}

/// One recovery.
#[derive(Debug, Serialize, ToSchema)]
struct RecoveryAnswer {
    recovery: Recovery,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"since": "2024-07-01T14:00:00Z"}))]
struct RecoverBody {
    /// ISO 8601: dead deliveries created at or after it are sent again.
    since: String,
}

/// Send every dead delivery of a subscription since a time again.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/recover", tag = TAG, operation_id = "recoverSubscription",
    params(IdPath), request_body = RecoverBody,
    responses(
        (status = 202, description = "The recovery, started", body = RecoveryAnswer),
        (status = 409, description = "The subscription is disabled, or a recovery of it is running (Conflict)", body = ErrorBody),
    ))]
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
        Json(RecoveryAnswer {
            recovery: recovery_json(&progress),
        }),
    ))
}

/// Fetch a recovery and its progress.
#[utoipa::path(get, path = "/v1/recoveries/{id}", tag = TAG, operation_id = "getRecovery",
    params(IdPath),
    responses((status = 200, description = "The recovery", body = RecoveryAnswer)))]
async fn fetch_recovery(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<RecoveryAnswer>> {
    let lookup = id.clone();
    let progress = app
        .store
        .recovery(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("recovery {id} does not exist")))?;
    Ok(Json(RecoveryAnswer {
        recovery: recovery_json(&progress),
    }))
}

/// Where delivery stands: the outbox, fan-out, each subscription's backlog, NATS.
#[utoipa::path(get, path = "/v1/delivery", tag = TAG, operation_id = "getDeliveryStatus",
    responses((status = 200, description = "Where delivery stands", body = DeliveryOverview)))]
async fn status(State(app): State<AppState>) -> ApiResult<Json<DeliveryOverview>> {
    Ok(Json(app.delivery.status().await?))
}
