//! `GET /v1/stream`: every event as Server-Sent Events, live.
//!
//! Each event's SSE `id` is its outbox position; a client that reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does by itself) gets everything after it,
//! without gaps. Without one the stream starts at the present. `types` filters by event
//! type, comma-separated, exact or prefixes ending in `*` (`types=chat:*,shop:newOrderCreated`).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use serde::Deserialize;

use super::errors::ApiResult;
use super::extract::QueryParams;
use super::routes::{Routes, get};
use super::{ApiError, AppState};
use crate::delivery::filter::TypeFilter;
use crate::delivery::stream::follow;

pub fn routes() -> Routes {
    Routes::new().route("/v1/stream", get(stream))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    types: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header.
    last_event_id: Option<String>,
}

async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let filters: Vec<&str> = query
        .types
        .as_deref()
        .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).collect())
        .unwrap_or_default();
    let filter = TypeFilter::parse(&filters).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", e))?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .or(query.last_event_id);
    let after = match resume.as_deref().map(str::trim) {
        None | Some("") => *app.store.outbox_published().borrow(),
        Some(text) => text.parse::<i64>().ok().filter(|seq| *seq >= 0).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidQuery",
                format!("Last-Event-ID {text:?} is not an id this stream sent (they are whole numbers)"),
            )
        })?,
    };
    let events = follow(
        app.store.clone(),
        filter,
        after,
        app.delivery.bot_id.clone(),
        app.delivery.stopping(),
    )
    .map(|(seq, envelope)| Ok(Event::default().id(seq.to_string()).data(envelope)));
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
