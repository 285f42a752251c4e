//! A trigger's queued events: list them, fetch one, retry a failed one.

use super::*;

/// The query of a trigger's events.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the query read by hand, for the OpenAPI document")]
pub(super) struct EventsQuery {
    /// Only events in this status.
    #[param(pattern = "^(queued|running|done|failed|cancelled)$")]
    status: Option<String>,
    /// The `cursor` of the page before.
    #[param(pattern = "^-?[0-9]+$")]
    cursor: Option<String>,
    /// Events per page: 20 when left out, 1 to 100.
    #[param(minimum = 1, maximum = 100)]
    take: Option<u32>,
}

/// The path of one of a trigger's events.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path, for the OpenAPI document")]
pub(super) struct EventPath {
    /// The trigger's id.
    id: String,
    /// The event's id.
    event_id: String,
}

/// A page of a trigger's events.
#[derive(Serialize, ToSchema)]
pub(super) struct TriggerEventList {
    items: Vec<crate::jobs::queue::JobSummary>,
    /// Give it as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// One of a trigger's events.
#[derive(Serialize, ToSchema)]
pub(super) struct TriggerEventAnswer {
    event: crate::jobs::queue::JobSummary,
}

/// List a trigger's events, newest first (kept for the retention after they finish).
#[utoipa::path(get, path = "/v1/integration/trigger/{id}/events", tag = TAG, operation_id = "listTriggerEvents",
    params(manage::TriggerPath, EventsQuery),
    responses((status = 200, description = "A page of the trigger's events", body = TriggerEventList)))]
pub(super) async fn list_events(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<TriggerEventList>> {
    let mut status = None;
    let mut cursor = None;
    let mut take = 20;
    for (key, value) in query_pairs(raw.as_deref())? {
        match key.as_str() {
            "status" => {
                if !["queued", "running", "done", "failed", "cancelled"].contains(&value.as_str()) {
                    return Err(ApiError::bad_request(format!(
                        "status must be queued, running, done, failed or cancelled, not {value:?}"
                    )));
                }
                status = Some(value);
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
    if items.is_empty() && cursor.is_none() && jobs(&app).find_trigger(&id).await?.is_none() {
        return Err(not_found(&id));
    }
    Ok(Json(TriggerEventList {
        items,
        cursor: next.map(|next| next.to_string()),
    }))
}

pub(super) async fn find_event(app: &AppState, id: &str, event_id: &str) -> ApiResult<crate::jobs::queue::JobSummary> {
    let found = jobs(app).queue.job(event_id).await?;
    found.filter(|job| job.trigger_id == id).ok_or_else(|| {
        ApiError::not_found(format!(
            "trigger {id} has no event {event_id} (or it was forgotten after its retention)"
        ))
    })
}

/// Get one of a trigger's events.
#[utoipa::path(get, path = "/v1/integration/trigger/{id}/events/{event_id}", tag = TAG,
    operation_id = "getTriggerEvent",
    params(EventPath),
    responses((status = 200, description = "The event", body = TriggerEventAnswer)))]
pub(super) async fn get_event(
    State(app): State<AppState>,
    PathParams((id, event_id)): PathParams<(String, String)>,
) -> ApiResult<Json<TriggerEventAnswer>> {
    let job = find_event(&app, &id, &event_id).await?;
    Ok(Json(TriggerEventAnswer { event: job }))
}

/// Put a failed event back in the queue, with a fresh round of attempts.
#[utoipa::path(post, path = "/v1/integration/trigger/{id}/events/{event_id}/retry", tag = TAG,
    operation_id = "retryTriggerEvent",
    params(EventPath), request_body(content = manage::Unread),
    responses(
        (status = 200, description = "The event, queued again", body = TriggerEventAnswer),
        (status = 409, description = "The event has not failed (EventNotFailed)", body = TriggerErrorBody),
    ))]
pub(super) async fn retry_event(
    State(app): State<AppState>,
    PathParams((id, event_id)): PathParams<(String, String)>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<Json<TriggerEventAnswer>> {
    let job = find_event(&app, &id, &event_id).await?;
    if jobs(&app).find_trigger(&id).await?.is_none() {
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
    Ok(Json(TriggerEventAnswer { event: job }))
}

// ---------------------------------------------------------------------------------
// The event endpoint.
