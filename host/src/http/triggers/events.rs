//! A trigger's queued events: list them, fetch one, retry a failed one.

use super::*;

pub(super) async fn list_events(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
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
    let mut answer = json!({ "items": items });
    if let Some(next) = next {
        answer["cursor"] = Value::String(next.to_string());
    }
    Ok(Json(answer))
}

pub(super) async fn find_event(app: &AppState, id: &str, event_id: &str) -> ApiResult<crate::jobs::queue::JobSummary> {
    let found = jobs(app).queue.job(event_id).await?;
    found.filter(|job| job.trigger_id == id).ok_or_else(|| {
        ApiError::not_found(format!(
            "trigger {id} has no event {event_id} (or it was forgotten after its retention)"
        ))
    })
}

pub(super) async fn get_event(
    State(app): State<AppState>,
    PathParams((id, event_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    let job = find_event(&app, &id, &event_id).await?;
    Ok(Json(json!({ "event": job })))
}

/// Puts a failed event back in the queue, with a fresh round of attempts.
pub(super) async fn retry_event(
    State(app): State<AppState>,
    PathParams((id, event_id)): PathParams<(String, String)>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({ "event": job })))
}

// ---------------------------------------------------------------------------------
// The event endpoint.
