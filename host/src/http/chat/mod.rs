//! The bot API under `/v1/chat`, wire-compatible with the Botpress chat API as the npm
//! package `@botpress/client` uses it: same paths, methods, bodies and error shape.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, RawQuery, State};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiResult;
use super::{ApiError, AppState, shapes};
use crate::store::{self, EntityQuery, EventQuery, PageRequest, StateKey, StateScope, Tags};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/events", get(list_events))
        .route("/v1/chat/events/{id}", get(get_event))
        .route("/v1/chat/conversations", get(list_conversations))
        .route("/v1/chat/conversations/{id}", get(get_conversation))
        .route("/v1/chat/users", get(list_users))
        .route("/v1/chat/users/{id}", get(get_user))
        .route("/v1/chat/messages", get(list_messages))
        .route("/v1/chat/messages/{id}", get(get_message))
        .route(
            "/v1/chat/states/{scope}/{id}/{name}",
            get(get_state).post(set_state).delete(delete_state),
        )
}

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

async fn list_events(
    State(app): State<AppState>,
    query: Result<Query<ListEventsQuery>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<Value>> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "InvalidQuery",
            rejection.body_text(),
        )
    })?;
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
    let page = store::blocking(&app.store, move |s| s.events(&query)).await?;
    Ok(Json(json!({
        "events": page.items.iter().map(shapes::event).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

/// The `meta` of a list answer: `nextToken` only when there is a next page.
pub fn page_meta(next_token: Option<String>) -> Value {
    match next_token {
        Some(token) => json!({ "nextToken": token }),
        None => json!({}),
    }
}

async fn get_event(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let event = store::blocking(&app.store, move |s| s.event(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("event {id} does not exist")))?;
    Ok(Json(json!({ "event": shapes::event(&event) })))
}

/// Resolves the state key of `/v1/chat/states/{type}/{id}/{name}`: integration state
/// belongs to the installation `id`, conversation and user state to the installation
/// that owns the conversation or user, bot state to the bot.
pub async fn state_key(app: &AppState, scope: &str, id: &str, name: &str) -> ApiResult<StateKey> {
    let Some(scope) = StateScope::parse(scope) else {
        return Err(ApiError::bad_request(format!(
            "state type {scope:?} is not supported; use bot, integration, conversation or user"
        )));
    };
    let owner = id.to_string();
    let installation_id = match scope {
        StateScope::Bot => String::new(),
        StateScope::Integration => {
            let snapshot = app.plugins.registry.snapshot();
            let known = snapshot.by_id(id).is_some()
                || store::blocking(&app.store, |s| s.installations())
                    .await?
                    .iter()
                    .any(|r| r.id == id);
            if !known {
                return Err(ApiError::not_found(format!("integration {id} is not installed")));
            }
            id.to_string()
        }
        StateScope::Conversation => store::blocking(&app.store, move |s| s.conversation(&owner))
            .await?
            .map(|c| c.installation_id)
            .ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?,
        StateScope::User => store::blocking(&app.store, move |s| s.user(&owner))
            .await?
            .map(|u| u.installation_id.unwrap_or_default())
            .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))?,
    };
    Ok(StateKey {
        installation_id,
        scope,
        owner_id: id.to_string(),
        name: name.to_string(),
    })
}

async fn get_state(
    State(app): State<AppState>,
    Path((scope, id, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let key = state_key(&app, &scope, &id, &name).await?;
    let state = store::blocking(&app.store, move |s| s.state(&key))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("state {scope}/{id}/{name} does not exist")))?;
    Ok(Json(
        json!({ "state": shapes::state(&state, &app.plugins.identity.bot_id) }),
    ))
}

/// Body of `setState`.
#[derive(Debug, Deserialize)]
pub struct SetStateBody {
    payload: Value,
}

async fn set_state(
    State(app): State<AppState>,
    Path((scope, id, name)): Path<(String, String, String)>,
    body: Result<Json<SetStateBody>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Value>> {
    let Json(body) = body.map_err(|rejection| {
        ApiError::bad_request(format!("the body must be {{\"payload\": {{...}}}}: {rejection}"))
    })?;
    let key = state_key(&app, &scope, &id, &name).await?;
    if body.payload.is_null() {
        store::blocking(&app.store, move |s| s.delete_state(&key)).await?;
        return Ok(Json(json!({ "state": null })));
    }
    if !body.payload.is_object() {
        return Err(ApiError::bad_request(
            "payload must be a JSON object (or null to delete the state)",
        ));
    }
    let state = store::blocking(&app.store, move |s| s.put_state(&key, &body.payload)).await?;
    Ok(Json(
        json!({ "state": shapes::state(&state, &app.plugins.identity.bot_id) }),
    ))
}

async fn delete_state(
    State(app): State<AppState>,
    Path((scope, id, name)): Path<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let key = state_key(&app, &scope, &id, &name).await?;
    let existed = store::blocking(&app.store, move |s| s.delete_state(&key)).await?;
    if !existed {
        return Err(ApiError::not_found(format!("state {scope}/{id}/{name} does not exist")));
    }
    Ok(Json(json!({})))
}

/// The query of `listConversations`, `listUsers` and `listMessages`, from the raw query
/// string: `tags` come as `tags[name]=value`, as the client's query encoder writes them.
pub fn entity_query(raw: Option<&str>) -> ApiResult<EntityQuery> {
    let mut query = EntityQuery::default();
    let mut tags = Tags::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let value = value.into_owned();
        match key.as_ref() {
            "nextToken" => query.page.token = Some(value),
            "pageSize" => {
                query.page.size = Some(value.parse().map_err(|_| {
                    ApiError::new(
                        axum::http::StatusCode::BAD_REQUEST,
                        "InvalidQuery",
                        format!("pageSize {value:?} is not a number"),
                    )
                })?)
            }
            "conversationId" => query.conversation_id = Some(value),
            "channel" => query.channel = Some(value),
            "integrationName" => query.integration = Some(value),
            other => {
                if let Some(name) = other.strip_prefix("tags[").and_then(|rest| rest.strip_suffix(']')) {
                    tags.insert(name.to_string(), value);
                }
            }
        }
    }
    query.tags = tags;
    Ok(query)
}

async fn list_conversations(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let query = entity_query(raw.as_deref())?;
    let page = store::blocking(&app.store, move |s| s.conversations(&query)).await?;
    Ok(Json(json!({
        "conversations": page.items.iter().map(shapes::conversation).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

async fn get_conversation(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let conversation = store::blocking(&app.store, move |s| s.conversation(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?;
    Ok(Json(json!({ "conversation": shapes::conversation(&conversation) })))
}

async fn list_users(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let query = entity_query(raw.as_deref())?;
    let page = store::blocking(&app.store, move |s| s.users(&query)).await?;
    Ok(Json(json!({
        "users": page.items.iter().map(shapes::user).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

async fn get_user(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let user = store::blocking(&app.store, move |s| s.user(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))?;
    Ok(Json(json!({ "user": shapes::user(&user) })))
}

async fn list_messages(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let query = entity_query(raw.as_deref())?;
    let page = store::blocking(&app.store, move |s| s.messages(&query)).await?;
    Ok(Json(json!({
        "messages": page.items.iter().map(shapes::message).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

async fn get_message(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let message = store::blocking(&app.store, move |s| s.message(&lookup))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("message {id} does not exist")))?;
    Ok(Json(json!({ "message": shapes::message(&message) })))
}

#[cfg(test)]
mod tests {
    #[test]
    fn entity_queries_read_bracketed_tags() {
        let query = super::entity_query(Some(
            "conversationId=conv_1&tags%5BchannelId%5D=C1&tags[kind]=dm&pageSize=5",
        ))
        .unwrap();
        assert_eq!(query.conversation_id.as_deref(), Some("conv_1"));
        assert_eq!(query.tags.get("channelId").map(String::as_str), Some("C1"));
        assert_eq!(query.tags.get("kind").map(String::as_str), Some("dm"));
        assert_eq!(query.page.size, Some(5));
        assert!(super::entity_query(Some("pageSize=lots")).is_err());
    }
}
