//! Events: `listEvents`, `getEvent`, `createEvent`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::page_meta;
use crate::bot::events::{NewEvent, create_event};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams, QueryParams};
use crate::http::{ApiError, AppState, shapes};
use crate::store::{EventQuery, PageRequest};

/// Query of `listEvents`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListEventsQuery {
    next_token: Option<String>,
    page_size: Option<usize>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    conversation_id: Option<String>,
    user_id: Option<String>,
    message_id: Option<String>,
    status: Option<String>,
}

pub async fn list(
    State(app): State<AppState>,
    QueryParams(query): QueryParams<ListEventsQuery>,
) -> ApiResult<Json<Value>> {
    let query = EventQuery {
        event_type: query.event_type,
        conversation_id: query.conversation_id,
        user_id: query.user_id,
        message_id: query.message_id,
        status: query.status,
        page: PageRequest {
            size: query.page_size,
            token: query.next_token,
        },
    };
    let page = app.store.events(&query).await?;
    Ok(Json(json!({
        "events": page.items.iter().map(shapes::event).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

pub async fn get(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let event = app
        .store
        .event(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("event {id} does not exist")))?;
    Ok(Json(json!({ "event": shapes::event(&event) })))
}

/// Body of `createEvent`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEventBody {
    #[serde(rename = "type")]
    event_type: String,
    payload: Value,
    schedule: Option<Value>,
    conversation_id: Option<String>,
    user_id: Option<String>,
    message_id: Option<String>,
    workflow_id: Option<String>,
}

pub async fn create(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<CreateEventBody>,
) -> ApiResult<Json<Value>> {
    if request.schedule.as_ref().is_some_and(|s| !s.is_null()) {
        return Err(ApiError::bad_request(
            "schedule is not supported by sluice: create the event when it is due",
        ));
    }
    if request.workflow_id.is_some() {
        return Err(ApiError::bad_request(
            "workflowId is not supported by sluice (it has no workflows)",
        ));
    }
    let event = create_event(
        &app.plugins,
        NewEvent {
            event_type: request.event_type,
            payload: request.payload,
            conversation_id: request.conversation_id,
            user_id: request.user_id,
            message_id: request.message_id,
        },
    )
    .await?;
    Ok(Json(json!({ "event": shapes::event(&event) })))
}
