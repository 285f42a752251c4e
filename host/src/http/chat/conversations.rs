//! Conversations: `listConversations`, `getConversation`, `getOrCreateConversation`,
//! `createConversation`, `updateConversation`, `deleteConversation`, and their
//! participants: `listParticipants`, `addParticipant`, `getParticipant`,
//! `removeParticipant`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::query::{ConversationFilters, EntityList, PageQuery, SortQuery};
use super::{TAG, entity_query, integration_header, tag_changes, unsupported_fields};
use crate::bot::conversations::{
    ConversationRequest, add_participant, create_conversation, existing_conversation, get_or_create_conversation,
    update_conversation,
};
use crate::http::errors::{ApiResult, ErrorBody};
use crate::http::extract::{JsonBody, PathParams};
use crate::http::shapes::{self, CreatedMeta, Deleted, PageMeta};
use crate::http::{ApiError, AppState};
use crate::store::EntityQuery;

/// A page of conversations.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationList {
    conversations: Vec<shapes::Conversation>,
    meta: PageMeta,
}

/// One conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationAnswer {
    conversation: shapes::Conversation,
}

/// A page of a conversation's participants.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantList {
    participants: Vec<shapes::User>,
    meta: PageMeta,
}

/// One participant.
#[derive(Debug, Serialize, ToSchema)]
pub struct ParticipantAnswer {
    participant: shapes::User,
}

/// A conversation found or made.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationGotOrCreated {
    conversation: shapes::Conversation,
    meta: CreatedMeta,
}

/// List conversations (`listConversations`).
#[utoipa::path(get, path = "/v1/chat/conversations", tag = TAG, operation_id = "listConversations",
    params(PageQuery, SortQuery, ConversationFilters),
    responses((status = 200, description = "A page of conversations", body = ConversationList)))]
pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<ConversationList>> {
    let query = entity_query(EntityList::Conversations, raw.as_deref())?;
    let page = app.store.conversations(&query).await?;
    Ok(Json(ConversationList {
        conversations: page.items.iter().map(shapes::conversation).collect(),
        meta: PageMeta::new(page.next_token),
    }))
}

/// Get a conversation (`getConversation`).
#[utoipa::path(get, path = "/v1/chat/conversations/{id}", tag = TAG, operation_id = "getConversation",
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 200, description = "The conversation", body = ConversationAnswer)))]
pub async fn get(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
) -> ApiResult<Json<ConversationAnswer>> {
    let lookup = id.clone();
    let conversation = app
        .store
        .conversation(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?;
    Ok(Json(ConversationAnswer {
        conversation: shapes::conversation(&conversation),
    }))
}

/// Body of `createConversation`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CreateConversationBody, example = json!({"channel": "channel", "tags": {"id": "C1"}, "integrationName": "chat"}))]
pub struct CreateBody {
    /// A channel the integration declares.
    channel: String,
    /// The conversation's tags, which the channel declares.
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    /// The integration (installation name); or the `x-integration-id` header.
    integration_name: Option<String>,
    /// Not supported: anything but null is a 400.
    properties: Option<Value>,
}

/// Make a conversation, whatever conversations carry the same tags (`createConversation`).
#[utoipa::path(post, path = "/v1/chat/conversations", tag = TAG, operation_id = "createConversation",
    params(IntegrationHeader),
    request_body = CreateBody,
    responses((status = 200, description = "The conversation made", body = ConversationAnswer)))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateBody>,
) -> ApiResult<Json<ConversationAnswer>> {
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
    Ok(Json(ConversationAnswer {
        conversation: shapes::conversation(&conversation),
    }))
}

/// Body of `updateConversation`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UpdateConversationBody, example = json!({"tags": {"id": "C2"}}))]
pub struct UpdateBody {
    /// Tags to set, which the channel declares; null or an empty value removes one.
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    /// Not supported: anything but null is a 400.
    current_task_id: Option<Value>,
    /// Not supported: anything but null is a 400.
    properties: Option<Value>,
}

/// Change a conversation's tags (`updateConversation`).
#[utoipa::path(put, path = "/v1/chat/conversations/{id}", tag = TAG, operation_id = "updateConversation",
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = UpdateBody,
    responses((status = 200, description = "The conversation as updated", body = ConversationAnswer)))]
pub async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<UpdateBody>,
) -> ApiResult<Json<ConversationAnswer>> {
    unsupported_fields([
        ("currentTaskId", &request.current_task_id),
        ("properties", &request.properties),
    ])?;
    let conversation = update_conversation(&app.plugins, &id, tag_changes(request.tags)).await?;
    Ok(Json(ConversationAnswer {
        conversation: shapes::conversation(&conversation),
    }))
}

/// Forget a conversation, its messages, participants and states (`deleteConversation`).
#[utoipa::path(delete, path = "/v1/chat/conversations/{id}", tag = TAG, operation_id = "deleteConversation",
    params(("id" = String, Path, description = "The conversation's id")),
    responses((status = 200, description = "The conversation is deleted", body = Deleted)))]
pub async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Deleted>> {
    if !app.store.delete_conversation(&id).await? {
        return Err(ApiError::not_found(format!("conversation {id} does not exist")));
    }
    Ok(Json(Deleted {}))
}

/// List a conversation's participants (`listParticipants`).
#[utoipa::path(get, path = "/v1/chat/conversations/{id}/participants", tag = TAG,
    operation_id = "listParticipants",
    params(("id" = String, Path, description = "The conversation's id"), PageQuery),
    responses((status = 200, description = "A page of the conversation's participants", body = ParticipantList)))]
pub async fn list_participants(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<ParticipantList>> {
    existing_conversation(&app.plugins, &id).await?;
    let listed = entity_query(EntityList::Participants, raw.as_deref())?;
    let query = EntityQuery {
        conversation_id: Some(id),
        page: listed.page,
        ..Default::default()
    };
    let page = app.store.users(&query).await?;
    Ok(Json(ParticipantList {
        participants: page.items.iter().map(shapes::user).collect(),
        meta: PageMeta::new(page.next_token),
    }))
}

/// Body of `addParticipant`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = AddParticipantBody, example = json!({"userId": "user_01J2Z3"}))]
pub struct AddParticipantBody {
    /// A user of the bot, or of the conversation's installation.
    user_id: String,
}

/// Add a user to a conversation's participants (`addParticipant`).
#[utoipa::path(post, path = "/v1/chat/conversations/{id}/participants", tag = TAG,
    operation_id = "addParticipant",
    params(("id" = String, Path, description = "The conversation's id")),
    request_body = AddParticipantBody,
    responses(
        (status = 200, description = "The participant", body = ParticipantAnswer),
        (status = 409, description = "The user belongs to another installation than the conversation (Conflict)", body = ErrorBody),
    ))]
pub async fn add_participant_route(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<AddParticipantBody>,
) -> ApiResult<Json<ParticipantAnswer>> {
    let user = add_participant(&app.plugins, &id, &request.user_id).await?;
    Ok(Json(ParticipantAnswer {
        participant: shapes::user(&user),
    }))
}

/// Get a participant of a conversation (`getParticipant`).
#[utoipa::path(get, path = "/v1/chat/conversations/{id}/participants/{user_id}", tag = TAG,
    operation_id = "getParticipant",
    params(
        ("id" = String, Path, description = "The conversation's id"),
        ("user_id" = String, Path, description = "The participant's user id"),
    ),
    responses((status = 200, description = "The participant", body = ParticipantAnswer)))]
pub async fn get_participant(
    State(app): State<AppState>,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> ApiResult<Json<ParticipantAnswer>> {
    existing_conversation(&app.plugins, &id).await?;
    let user = app
        .store
        .participant(&id, &user_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {user_id} is not a participant of conversation {id}")))?;
    Ok(Json(ParticipantAnswer {
        participant: shapes::user(&user),
    }))
}

/// Remove a user from a conversation's participants (`removeParticipant`).
#[utoipa::path(delete, path = "/v1/chat/conversations/{id}/participants/{user_id}", tag = TAG,
    operation_id = "removeParticipant",
    params(
        ("id" = String, Path, description = "The conversation's id"),
        ("user_id" = String, Path, description = "The participant's user id"),
    ),
    responses((status = 200, description = "The user is no longer a participant", body = Deleted)))]
pub async fn remove_participant(
    State(app): State<AppState>,
    PathParams((id, user_id)): PathParams<(String, String)>,
) -> ApiResult<Json<Deleted>> {
    existing_conversation(&app.plugins, &id).await?;
    if !app.store.remove_participant(&id, &user_id).await? {
        return Err(ApiError::not_found(format!(
            "user {user_id} is not a participant of conversation {id}"
        )));
    }
    Ok(Json(Deleted {}))
}

/// Body of `getOrCreateConversation`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GetOrCreateConversationBody, example = json!({"channel": "channel", "tags": {"id": "C1"}, "integrationName": "chat"}))]
pub struct GetOrCreateBody {
    /// A channel the integration declares.
    channel: String,
    /// The conversation's tags, which the integration declares; they find it.
    tags: BTreeMap<String, Option<String>>,
    /// The integration (installation name); or the `x-integration-id` header.
    integration_name: Option<String>,
    /// The tags that tell conversations apart (all given tags when left out).
    discriminate_by_tags: Option<Vec<String>>,
}

/// The `x-integration-id` header: the installation a request acts for.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "describes a header read by hand, for the OpenAPI document")]
pub struct IntegrationHeader {
    /// The installation (name or id) this request acts for, when the body does not say.
    #[param(rename = "x-integration-id")]
    integration: Option<String>,
}

/// Find the conversation with these tags, or make it (`getOrCreateConversation`).
#[utoipa::path(post, path = "/v1/chat/conversations/get-or-create", tag = TAG,
    operation_id = "getOrCreateConversation",
    params(IntegrationHeader),
    request_body = GetOrCreateBody,
    responses((status = 200, description = "The conversation, found or made", body = ConversationGotOrCreated)))]
pub async fn get_or_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<GetOrCreateBody>,
) -> ApiResult<Json<ConversationGotOrCreated>> {
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
    Ok(Json(ConversationGotOrCreated {
        conversation: shapes::conversation(&conversation),
        meta: CreatedMeta { created },
    }))
}
