//! Conversations: `listConversations`, `getConversation`, `getOrCreateConversation`,
//! `createConversation`, `updateConversation`, `deleteConversation`, and their
//! participants: `listParticipants`, `addParticipant`, `getParticipant`,
//! `removeParticipant`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{entity_query, integration_header, page_meta, tag_changes, unsupported_fields};
use crate::bot::conversations::{
    ConversationRequest, add_participant, create_conversation, existing_conversation, get_or_create_conversation,
    update_conversation,
};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::{ApiError, AppState, shapes};
use crate::store::EntityQuery;

pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let query = entity_query(raw.as_deref())?;
    let page = app.store.conversations(&query).await?;
    Ok(Json(json!({
        "conversations": page.items.iter().map(shapes::conversation).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

pub async fn get(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let conversation = app
        .store
        .conversation(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?;
    Ok(Json(json!({ "conversation": shapes::conversation(&conversation) })))
}

/// Body of `createConversation`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    channel: String,
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    integration_name: Option<String>,
    properties: Option<Value>,
}

pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateBody>,
) -> ApiResult<Json<Value>> {
    unsupported_fields([("properties", &request.properties)])?;
    let conversation = create_conversation(
        &app.plugins,
        ConversationRequest {
            channel: request.channel,
            tags: request.tags,
            integration: request.integration_name.or_else(|| integration_header(&headers)),
            discriminate_by_tags: None,
        },
    )
    .await?;
    Ok(Json(json!({ "conversation": shapes::conversation(&conversation) })))
}

/// Body of `updateConversation`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    current_task_id: Option<Value>,
    properties: Option<Value>,
}

pub async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    unsupported_fields([
        ("currentTaskId", &request.current_task_id),
        ("properties", &request.properties),
    ])?;
    let conversation = update_conversation(&app.plugins, &id, tag_changes(request.tags)).await?;
    Ok(Json(json!({ "conversation": shapes::conversation(&conversation) })))
}

pub async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    if !app.store.delete_conversation(&id).await? {
        return Err(ApiError::not_found(format!("conversation {id} does not exist")));
    }
    Ok(Json(json!({})))
}

pub async fn list_participants(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    existing_conversation(&app.plugins, &id).await?;
    let listed = entity_query(raw.as_deref())?;
    let query = EntityQuery {
        conversation_id: Some(id),
        page: listed.page,
        ..Default::default()
    };
    let page = app.store.users(&query).await?;
    Ok(Json(json!({
        "participants": page.items.iter().map(shapes::user).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

/// Body of `addParticipant`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AddParticipantBody {
    user_id: String,
}

pub async fn add_participant_route(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<AddParticipantBody>,
) -> ApiResult<Json<Value>> {
    let user = add_participant(&app.plugins, &id, &request.user_id).await?;
    Ok(Json(json!({ "participant": shapes::user(&user) })))
}

pub async fn get_participant(
    State(app): State<AppState>,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    existing_conversation(&app.plugins, &id).await?;
    let user = app
        .store
        .participant(&id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user_id} is not a participant of conversation {id}")))?;
    Ok(Json(json!({ "participant": shapes::user(&user) })))
}

pub async fn remove_participant(
    State(app): State<AppState>,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Value>> {
    existing_conversation(&app.plugins, &id).await?;
    if !app.store.remove_participant(&id, &user_id).await? {
        return Err(ApiError::not_found(format!(
            "user {user_id} is not a participant of conversation {id}"
        )));
    }
    Ok(Json(json!({})))
}

/// Body of `getOrCreateConversation`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOrCreateBody {
    channel: String,
    tags: BTreeMap<String, Option<String>>,
    integration_name: Option<String>,
    discriminate_by_tags: Option<Vec<String>>,
}

pub async fn get_or_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<GetOrCreateBody>,
) -> ApiResult<Json<Value>> {
    let (conversation, created) = get_or_create_conversation(
        &app.plugins,
        ConversationRequest {
            channel: request.channel,
            tags: request.tags,
            integration: request.integration_name.or_else(|| integration_header(&headers)),
            discriminate_by_tags: request.discriminate_by_tags,
        },
    )
    .await?;
    Ok(Json(json!({
        "conversation": shapes::conversation(&conversation),
        "meta": { "created": created },
    })))
}
