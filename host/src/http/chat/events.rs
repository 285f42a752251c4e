//! Events: `listEvents`, `getEvent`, `createEvent`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::TAG;
use crate::bot::events::{NewEvent, create_event};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams, QueryParams};
use crate::http::shapes::{self, PageMeta};
use crate::http::{ApiError, AppState};
use crate::store::{EventQuery, PageRequest};

/// Query of `listEvents`. Any other parameter is a 400 naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListEventsQuery {
    /// The `meta.nextToken` of the page before.
    next_token: Option<String>,
    /// Events per page: 20 when left out; 1 to 100 (more is served as 100, 0 as 1).
    #[param(minimum = 0, maximum = 4294967295u64, format = Int64)]
    page_size: Option<u32>,
    /// Only events of this type (`<integration>:<event>`).
    #[serde(rename = "type")]
    #[param(rename = "type")]
    event_type: Option<String>,
    conversation_id: Option<String>,
    user_id: Option<String>,
    message_id: Option<String>,
    status: Option<String>,
    /// Not supported (sluice has no workflows): a 400.
    workflow_id: Option<String>,
}

/// A page of events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    events: Vec<shapes::Event>,
    meta: PageMeta,
}

/// One event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAnswer {
    event: shapes::Event,
}

/// List the events recorded (`listEvents`).
#[utoipa::path(get, path = "/v1/chat/events", tag = TAG, operation_id = "listEvents",
    params(ListEventsQuery),
    responses((status = 200, description = "A page of events", body = EventList)))]
pub async fn list(
    State(app): State<AppState>,
    QueryParams(query): QueryParams<ListEventsQuery>,
) -> ApiResult<Json<EventList>> {
    if query.workflow_id.is_some() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidQuery",
            "workflowId is not supported by sluice; leave it out",
        ));
    }
    let query = EventQuery {
        event_type: query.event_type,
        conversation_id: query.conversation_id,
        user_id: query.user_id,
        message_id: query.message_id,
        status: query.status,
        page: PageRequest {
            size: query.page_size.map(|size| size as usize),
            token: query.next_token,
        },
    };
    let page = app.store.events(&query).await?;
    Ok(Json(EventList {
        events: page.items.iter().map(shapes::event).collect(),
        meta: PageMeta::new(page.next_token),
    }))
}

/// Get an event (`getEvent`).
#[utoipa::path(get, path = "/v1/chat/events/{id}", tag = TAG, operation_id = "getEvent",
    params(("id" = String, Path, description = "The event's id")),
    responses((status = 200, description = "The event", body = EventAnswer)))]
pub async fn get(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<EventAnswer>> {
    let lookup = id.clone();
    let event = app
        .store
        .event(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("event {id} does not exist")))?;
    Ok(Json(EventAnswer {
        event: shapes::event(&event),
    }))
}

/// Body of `createEvent`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"type": "webhook:event", "payload": {"body": {}}}))]
pub struct CreateEventBody {
    /// `<integration>:<event>`, an event type an installed integration declares.
    #[serde(rename = "type")]
    event_type: String,
    /// A JSON object, checked against the event's schema.
    #[schema(value_type = Object)]
    payload: Value,
    /// Not supported: anything but null is a 400.
    schedule: Option<Value>,
    conversation_id: Option<String>,
    user_id: Option<String>,
    message_id: Option<String>,
    /// Not supported: anything but null is a 400.
    workflow_id: Option<String>,
}

/// Record an event for an integration (`createEvent`).
#[utoipa::path(post, path = "/v1/chat/events", tag = TAG, operation_id = "createEvent",
    request_body = CreateEventBody,
    responses((status = 200, description = "The event recorded", body = EventAnswer)))]
pub async fn create(
    State(app): State<AppState>,
    JsonBody(request): JsonBody<CreateEventBody>,
) -> ApiResult<Json<EventAnswer>> {
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
    Ok(Json(EventAnswer {
        event: shapes::event(&event),
    }))
}
