//! Conversations: `listConversations`, `getConversation`, `getOrCreateConversation`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{entity_query, integration_header, page_meta};
use crate::bot::conversations::{ConversationRequest, get_or_create_conversation};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::{ApiError, AppState, shapes};

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
