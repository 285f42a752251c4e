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
mod states;
mod users;

use axum::http::{HeaderMap, StatusCode};
use utoipa::OpenApi;

use super::ApiError;
use super::routes::{Routes, get, post};
use crate::bot::BotError;

pub use query::entity_query;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/chat/events", get(events::list).post(events::create))
        .route("/v1/chat/events/{id}", get(events::get))
        .route("/v1/chat/conversations", get(conversations::list))
        .route(
            "/v1/chat/conversations/get-or-create",
            post(conversations::get_or_create),
        )
        .route("/v1/chat/conversations/{id}", get(conversations::get))
        .route("/v1/chat/users", get(users::list))
        .route("/v1/chat/users/get-or-create", post(users::get_or_create))
        .route("/v1/chat/users/{id}", get(users::get))
        .route("/v1/chat/messages", get(messages::list).post(messages::create))
        .route("/v1/chat/messages/{id}", get(messages::get).put(messages::update))
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
    conversations::get_or_create,
    conversations::get,
    users::list,
    users::get_or_create,
    users::get,
    messages::list,
    messages::create,
    messages::get,
    messages::update,
    states::get,
    states::set,
    states::patch,
    states::delete,
    states::get_or_set,
    actions::call,
))]
pub struct Api;

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
