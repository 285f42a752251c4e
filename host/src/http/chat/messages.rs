//! Messages: `listMessages`, `getMessage`, `createMessage` (delivered through the
//! integration's `handle-message`), `updateMessage` and `deleteMessage` (the platform
//! keeps its copy: sluice forgets the message).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::query::{EntityList, MessageFilters, PageQuery};
use super::{TAG, entity_query, tag_changes};
use crate::bot::{self, OutgoingMessage};
use crate::http::errors::{ApiResult, ErrorBody};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::request_id::RequestId;
use crate::http::shapes::{self, Deleted, PageMeta};
use crate::http::{ApiError, AppState};
use crate::store::Tags;

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    messages: Vec<shapes::Message>,
    meta: PageMeta,
}

/// One message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageAnswer {
    message: shapes::Message,
}

/// List messages (`listMessages`).
#[utoipa::path(get, path = "/v1/chat/messages", tag = TAG, operation_id = "listMessages",
    params(PageQuery, MessageFilters),
    responses((status = 200, description = "A page of messages, newest first", body = MessageList)))]
pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<MessageList>> {
    let query = entity_query(EntityList::Messages, raw.as_deref())?;
    let page = app.store.messages(&query).await?;
    Ok(Json(MessageList {
        messages: page.items.iter().map(shapes::message).collect(),
        meta: PageMeta::new(page.next_token),
    }))
}

/// Get a message (`getMessage`).
#[utoipa::path(get, path = "/v1/chat/messages/{id}", tag = TAG, operation_id = "getMessage",
    params(("id" = String, Path, description = "The message's id")),
    responses((status = 200, description = "The message", body = MessageAnswer)))]
pub async fn get(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<MessageAnswer>> {
    let lookup = id.clone();
    let message = app
        .store
        .message(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("message {id} does not exist")))?;
    Ok(Json(MessageAnswer {
        message: shapes::message(&message),
    }))
}

/// Body of `createMessage`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CreateMessageBody, example = json!({
    "conversationId": "conv_01J2Z3", "userId": "user_01J2Z3", "type": "text", "payload": {"text": "Hello"}
}))]
pub struct CreateBody {
    /// A JSON object, checked against the channel's message type.
    #[schema(value_type = Object)]
    payload: Value,
    /// The bot's user (`bot.userId` in the admin API), or the conversation's user.
    user_id: String,
    conversation_id: String,
    /// A message type of the conversation's channel.
    #[serde(rename = "type")]
    message_type: String,
    #[serde(default)]
    tags: Tags,
    /// Not supported: anything but null is a 400.
    schedule: Option<Value>,
}

/// Send a message: the integration delivers it (`createMessage`).
#[utoipa::path(post, path = "/v1/chat/messages", tag = TAG, operation_id = "createMessage",
    request_body = CreateBody,
    responses(
        (status = 200, description = "The message, delivered by the integration", body = MessageAnswer),
        (status = 404, description = "The conversation's installation was removed, or the integration answered not-found (ResourceNotFound)", body = ErrorBody),
    ))]
pub async fn create(
    State(app): State<AppState>,
    request_id: RequestId,
    JsonBody(request): JsonBody<CreateBody>,
) -> ApiResult<Json<MessageAnswer>> {
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
    Ok(Json(MessageAnswer {
        message: shapes::message(&message),
    }))
}

/// Forget a message; the platform keeps its copy (`deleteMessage`).
#[utoipa::path(delete, path = "/v1/chat/messages/{id}", tag = TAG, operation_id = "deleteMessage",
    params(("id" = String, Path, description = "The message's id")),
    responses((status = 200, description = "The message is deleted", body = Deleted)))]
pub async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Deleted>> {
    if !app.store.delete_message(&id).await? {
        return Err(ApiError::not_found(format!("message {id} does not exist")));
    }
    Ok(Json(Deleted {}))
}

/// Body of `updateMessage`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = UpdateMessageBody, example = json!({"tags": {"edited": "yes"}}))]
pub struct UpdateBody {
    /// Tags to set; null or an empty value removes one.
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    /// A new payload (a JSON object), checked as createMessage checks one.
    #[schema(value_type = Option<Object>)]
    payload: Option<Value>,
}

/// Update a message's tags or payload (`updateMessage`).
#[utoipa::path(put, path = "/v1/chat/messages/{id}", tag = TAG, operation_id = "updateMessage",
    params(("id" = String, Path, description = "The message's id")),
    request_body = UpdateBody,
    responses((status = 200, description = "The message as updated", body = MessageAnswer)))]
pub async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<UpdateBody>,
) -> ApiResult<Json<MessageAnswer>> {
    let message = bot::update_message(&app.plugins, &id, tag_changes(request.tags), request.payload).await?;
    Ok(Json(MessageAnswer {
        message: shapes::message(&message),
    }))
}
