//! Conversations: `listConversations`, `getConversation`, `getOrCreateConversation`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::query::EntityListQuery;
use super::{TAG, entity_query, integration_header};
use crate::bot::conversations::{ConversationRequest, get_or_create_conversation};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::shapes::{self, CreatedMeta, PageMeta};
use crate::http::{ApiError, AppState};

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

/// A conversation found or made.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationGotOrCreated {
    conversation: shapes::Conversation,
    meta: CreatedMeta,
}

/// List conversations (`listConversations`).
#[utoipa::path(get, path = "/v1/chat/conversations", tag = TAG, operation_id = "listConversations",
    params(EntityListQuery),
    responses((status = 200, description = "A page of conversations", body = ConversationList)))]
pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<ConversationList>> {
    let query = entity_query(raw.as_deref())?;
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
