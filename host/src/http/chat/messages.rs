//! Messages: `listMessages`, `getMessage`, `createMessage` (delivered through the
//! integration's `handle-message`), `updateMessage` and `deleteMessage` (the platform
//! keeps its copy: sluice forgets the message).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{entity_query, page_meta, tag_changes};
use crate::bot::{self, OutgoingMessage};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::request_id::RequestId;
use crate::http::{ApiError, AppState, shapes};
use crate::store::{Sort, Tags};

pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let query = entity_query(raw.as_deref())?;
    if query.sort != Sort::default() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "InvalidQuery",
            "messages are listed newest first; sortField and sortDirection are for conversations and users",
        ));
    }
    let page = app.store.messages(&query).await?;
    Ok(Json(json!({
        "messages": page.items.iter().map(shapes::message).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

pub async fn get(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let message = app
        .store
        .message(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("message {id} does not exist")))?;
    Ok(Json(json!({ "message": shapes::message(&message) })))
}

/// Body of `createMessage`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    payload: Value,
    user_id: String,
    conversation_id: String,
    #[serde(rename = "type")]
    message_type: String,
    #[serde(default)]
    tags: Tags,
    schedule: Option<Value>,
}

pub async fn create(
    State(app): State<AppState>,
    request_id: RequestId,
    JsonBody(request): JsonBody<CreateBody>,
) -> ApiResult<Json<Value>> {
    if request.schedule.as_ref().is_some_and(|s| !s.is_null()) {
        return Err(ApiError::bad_request(
            "schedule is not supported by sluice: create the message when it is due",
        ));
    }
    let message = bot::send_message(
        &app.plugins,
        OutgoingMessage {
            conversation_id: request.conversation_id,
            user_id: request.user_id,
            message_type: request.message_type,
            payload: request.payload,
            tags: request.tags,
        },
        request_id.as_str(),
    )
    .await?;
    Ok(Json(json!({ "message": shapes::message(&message) })))
}

pub async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    if !app.store.delete_message(&id).await? {
        return Err(ApiError::not_found(format!("message {id} does not exist")));
    }
    Ok(Json(json!({})))
}

/// Body of `updateMessage`.
#[derive(Debug, Deserialize)]
pub struct UpdateBody {
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    payload: Option<Value>,
}

pub async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    let message = bot::update_message(&app.plugins, &id, tag_changes(request.tags), request.payload).await?;
    Ok(Json(json!({ "message": shapes::message(&message) })))
}
