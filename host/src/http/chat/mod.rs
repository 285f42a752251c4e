//! The bot API under `/v1/chat`, wire-compatible with the Botpress chat API as the npm
//! package `@botpress/client` uses it: same paths, methods, JSON bodies, query strings
//! (`tags.<name>=<value>`, as its `qs` encoder writes them) and error shape. One module
//! per resource; the rules behind the writes live in [`crate::bot`].
//!
//! Headers: `Authorization: Bearer <token>` (checked for all of `/v1`); `x-bot-id` is
//! accepted (sluice hosts one bot); `x-integration-id` names the installation a
//! request acts for when the body does not (`integrationName`).

mod actions;
mod conversations;
mod events;
mod messages;
mod query;
pub(crate) mod states;
mod users;

use std::collections::BTreeMap;

use axum::http::{HeaderMap, StatusCode};
use serde_json::Value;
use utoipa::OpenApi;

use super::ApiError;
use super::routes::{Routes, get, post};
use crate::bot::BotError;
use crate::store::TagChanges;

pub use query::entity_query;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/chat/events", get(events::list).post(events::create))
        .route("/v1/chat/events/{id}", get(events::get))
        .route(
            "/v1/chat/conversations",
            get(conversations::list).post(conversations::create),
        )
        .route(
            "/v1/chat/conversations/get-or-create",
            post(conversations::get_or_create),
        )
        .route(
            "/v1/chat/conversations/{id}",
            get(conversations::get)
                .put(conversations::update)
                .delete(conversations::delete),
        )
        .route(
            "/v1/chat/conversations/{id}/participants",
            get(conversations::list_participants).post(conversations::add_participant_route),
        )
        .route(
            "/v1/chat/conversations/{id}/participants/{user_id}",
            get(conversations::get_participant).delete(conversations::remove_participant),
        )
        .route("/v1/chat/users", get(users::list).post(users::create))
        .route("/v1/chat/users/get-or-create", post(users::get_or_create))
        .route(
            "/v1/chat/users/{id}",
            get(users::get).put(users::update).delete(users::delete),
        )
        .route("/v1/chat/messages", get(messages::list).post(messages::create))
        .route(
            "/v1/chat/messages/{id}",
            get(messages::get).put(messages::update).delete(messages::delete),
        )
        .route(
            "/v1/chat/states/{type}/{id}/{name}",
            get(states::get)
                .post(states::set)
                .patch(states::patch)
                .delete(states::delete),
        )
        .route(
            "/v1/chat/states/{type}/{id}/{name}/get-or-set",
            post(states::get_or_set),
        )
        .route("/v1/chat/actions", post(actions::call))
}

/// The OpenAPI tag of the bot API.
pub const TAG: &str = "bot";

/// The operations that run an integration's plugin, which may refuse (403), conflict
/// (409), be rate limited by its platform (429), fail upstream (502) or time out (504):
/// the OpenAPI document lists those answers for them.
pub const RUNS_A_PLUGIN: &[&str] = &[
    "getOrCreateConversation",
    "getOrCreateUser",
    "createMessage",
    "updateMessage",
    "callAction",
];

/// The bot API's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(
    events::list,
    events::create,
    events::get,
    conversations::list,
    conversations::create,
    conversations::get_or_create,
    conversations::get,
    conversations::update,
    conversations::delete,
    conversations::list_participants,
    conversations::add_participant_route,
    conversations::get_participant,
    conversations::remove_participant,
    users::list,
    users::create,
    users::get_or_create,
    users::get,
    users::update,
    users::delete,
    messages::list,
    messages::create,
    messages::get,
    messages::update,
    messages::delete,
    states::get,
    states::set,
    states::patch,
    states::delete,
    states::get_or_set,
    actions::call,
))]
pub struct Api;

/// Refuses fields of the Botpress API that sluice does not keep, rather than dropping
/// them: `null` counts as absent.
fn unsupported_fields<const N: usize>(fields: [(&str, &Option<Value>); N]) -> Result<(), ApiError> {
    for (name, value) in fields {
        if value.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ApiError::bad_request(format!(
                "{name} is not supported by sluice; leave it out"
            )));
        }
    }
    Ok(())
}

/// Tag changes as an update body gives them: an empty value removes the tag, as `null`
/// does.
fn tag_changes(tags: BTreeMap<String, Option<String>>) -> TagChanges {
    tags.into_iter()
        .map(|(k, v)| (k, v.filter(|v| !v.is_empty())))
        .collect()
}

/// The installation named by the `x-integration-id` header, if any.
fn integration_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-integration-id")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from)
}

impl From<BotError> for ApiError {
    fn from(error: BotError) -> ApiError {
        if let Some(cause) = &error.cause {
            return ApiError::internal_cause(format!("{cause:#}"));
        }
        let status = StatusCode::from_u16(error.kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError::new(status, error.kind.api_type(), error.message).with_retry_after(error.retry_after)
    }
}
