//! In-process calls into a [`Host`]: the same checks and the same records as the HTTP
//! routes, without a connection. Records come back in the JSON shapes the bot API
//! answers (those of the Botpress chat API).

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use serde_json::Value;
use tower::ServiceExt as _;

use super::Host;
use crate::bot::{self, OutgoingMessage};
use crate::http::ApiError;
use crate::http::chat::states;
use crate::http::shapes;
use crate::ids::record_id;
use crate::json_depth;
use crate::plugins::InstallError;
use crate::store::{PageRequest, StateScope as StoreScope};

/// Why an in-process call failed: the status and error type the HTTP route would have
/// answered with, and a message that says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({kind}, {status})")]
#[non_exhaustive]
pub struct Error {
    /// The HTTP status the same call over HTTP answers.
    pub status: u16,
    /// The error type (`InvalidPayload`, `ResourceNotFound`, `PluginCrashed`, ...).
    pub kind: String,
    /// What was wrong.
    pub message: String,
}

impl From<ApiError> for Error {
    fn from(error: ApiError) -> Error {
        Error {
            status: error.status.as_u16(),
            kind: error.kind.to_string(),
            message: error.message,
        }
    }
}

impl From<bot::BotError> for Error {
    fn from(error: bot::BotError) -> Error {
        if let Some(cause) = &error.cause {
            tracing::error!(error = %format!("{cause:#}"), "in-process call failed");
        }
        Error::from(ApiError::from(error))
    }
}

impl From<anyhow::Error> for Error {
    fn from(error: anyhow::Error) -> Error {
        tracing::error!(error = %format!("{error:#}"), "in-process call failed");
        Error::from(ApiError::from(error))
    }
}

impl From<InstallError> for Error {
    fn from(error: InstallError) -> Error {
        match error {
            InstallError::InvalidName(message) | InstallError::Refused(message) => Error {
                status: 400,
                kind: "InvalidPayload".into(),
                message,
            },
            InstallError::Host(error) => Error::from(error),
        }
    }
}

/// What an action answered.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ActionResult {
    /// The action's output, valid against its output schema.
    pub output: Value,
    /// What the call cost (0 when the plugin set none).
    pub cost: f64,
}

/// A bot message to send through its conversation's channel.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The conversation (its integration's channel delivers the message).
    pub conversation_id: String,
    /// The author: a user of the conversation's installation, or the bot's id.
    pub user_id: String,
    /// A message type the channel declares (`text`, `image`, ...).
    pub message_type: String,
    /// The payload, checked against the message type's schema.
    pub payload: Value,
    /// Tags the channel declares for messages.
    pub tags: BTreeMap<String, String>,
}

/// Whose state: the bot's, an installation's, a conversation's or a user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateScope {
    /// The bot's own state (the owner id is the bot's id).
    Bot,
    /// An installation's (the owner id is the installation's id).
    Integration,
    /// A conversation's.
    Conversation,
    /// A user's.
    User,
}

impl StateScope {
    fn as_str(self) -> &'static str {
        match self {
            StateScope::Bot => StoreScope::Bot.as_str(),
            StateScope::Integration => StoreScope::Integration.as_str(),
            StateScope::Conversation => StoreScope::Conversation.as_str(),
            StateScope::User => StoreScope::User.as_str(),
        }
    }
}

/// Which events [`Host::events`] lists; every field narrows the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Events of this type (`webhook:event`).
    pub event_type: Option<String>,
    /// Events linked to this conversation.
    pub conversation_id: Option<String>,
    /// Events linked to this user.
    pub user_id: Option<String>,
    /// At most this many (20 by default, 100 at most).
    pub page_size: Option<usize>,
    /// The `next_token` of the previous page.
    pub next_token: Option<String>,
}

/// A page of events, newest first.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EventList {
    /// The events, in the bot API's shape.
    pub events: Vec<Value>,
    /// Where the next page starts, if there is one.
    pub next_token: Option<String>,
}

/// JSON handed in takes the depth rule JSON bodies take over HTTP.
fn within_depth(value: &Value, what: &str) -> Result<(), Error> {
    json_depth::check_value(value, json_depth::MAX_DEPTH, what).map_err(|refusal| ApiError::bad_request(refusal).into())
}

impl Host {
    /// Hands `request` to installation `name`'s webhook as if it had arrived over HTTP
    /// (the request's path is the part after the webhook URL) and answers what its
    /// plugin answered, or the error answer the webhook URL would have given. Only an
    /// unknown installation is an [`Error`].
    pub async fn webhook(&self, name: &str, request: http::Request<Bytes>) -> Result<http::Response<Bytes>, Error> {
        let webhook_id = self
            .app()
            .plugins
            .registry
            .by_id_or_name(name)
            .map(|installation| installation.record.webhook_id.clone())
            .ok_or_else(|| ApiError::not_found(format!("no installation is called {name:?}")))?;
        let (mut parts, body) = request.into_parts();
        let path = parts.uri.path().trim_start_matches('/');
        let target = match (path, parts.uri.query()) {
            ("", None) => format!("/webhooks/{webhook_id}"),
            ("", Some(query)) => format!("/webhooks/{webhook_id}?{query}"),
            (path, None) => format!("/webhooks/{webhook_id}/{path}"),
            (path, Some(query)) => format!("/webhooks/{webhook_id}/{path}?{query}"),
        };
        parts.uri = target
            .parse()
            .map_err(|error| ApiError::bad_request(format!("the request's path cannot be a webhook path: {error}")))?;
        let request = http::Request::from_parts(parts, axum::body::Body::from(body));
        let response = self
            .router()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|error| ApiError::from(anyhow::anyhow!("cannot read the webhook's answer: {error}")))?
            .to_bytes();
        Ok(http::Response::from_parts(parts, body))
    }

    /// Calls action `action_type` (`<installation or integration>:<action>`, for example
    /// `chat:sendMessage`) with `input`, checked against the action's schemas.
    pub async fn call_action(&self, action_type: &str, input: Value) -> Result<ActionResult, Error> {
        within_depth(&input, "the input")?;
        let answer = bot::call_action(&self.app().plugins, action_type, input, &record_id("req")).await?;
        Ok(ActionResult {
            output: answer.output,
            cost: answer.cost,
        })
    }

    /// Sends a bot message through its conversation's channel (the plugin's
    /// `handle-message` delivers it) and answers the stored message.
    pub async fn send_message(&self, message: Message) -> Result<Value, Error> {
        within_depth(&message.payload, "the payload")?;
        let message = OutgoingMessage {
            conversation_id: message.conversation_id,
            user_id: message.user_id,
            message_type: message.message_type,
            payload: message.payload,
            tags: message.tags,
        };
        let record = bot::send_message(&self.app().plugins, message, &record_id("req")).await?;
        Ok(as_json(shapes::message(&record)))
    }

    /// The payload of state `name` of `owner_id` in `scope`, if it exists.
    pub async fn state(&self, scope: StateScope, owner_id: &str, name: &str) -> Result<Option<Value>, Error> {
        let key = states::state_key(self.app(), scope.as_str(), owner_id, name).await?;
        let state = self.app().store.state(&key).await.map_err(Error::from)?;
        Ok(state.map(|state| state.payload))
    }

    /// Sets state `name` of `owner_id` in `scope` to `payload` (a JSON object, checked
    /// against the schema the installation declares for it), or deletes it with `None`.
    pub async fn set_state(
        &self,
        scope: StateScope,
        owner_id: &str,
        name: &str,
        payload: Option<Value>,
    ) -> Result<(), Error> {
        let key = states::state_key(self.app(), scope.as_str(), owner_id, name).await?;
        match payload {
            None => {
                self.app().store.delete_state(&key).await.map_err(Error::from)?;
            }
            Some(payload) => {
                if !payload.is_object() {
                    return Err(ApiError::bad_request("a state's payload must be a JSON object").into());
                }
                within_depth(&payload, "the payload")?;
                states::schema_check(self.app(), &key)(&payload).map_err(states::invalid_state)?;
                self.app().store.put_state(&key, &payload).await.map_err(Error::from)?;
            }
        }
        Ok(())
    }

    /// Lists recorded events, newest first.
    pub async fn events(&self, query: EventQuery) -> Result<EventList, Error> {
        let query = crate::store::EventQuery {
            event_type: query.event_type,
            conversation_id: query.conversation_id,
            user_id: query.user_id,
            message_id: None,
            status: None,
            page: PageRequest {
                size: query.page_size,
                token: query.next_token,
            },
        };
        let page = self.app().store.events(&query).await.map_err(Error::from)?;
        Ok(EventList {
            events: page.items.iter().map(|event| as_json(shapes::event(event))).collect(),
            next_token: page.next_token,
        })
    }
}

/// A record in the bot API's JSON shape, as the HTTP answers carry it.
fn as_json(shape: impl serde::Serialize) -> Value {
    serde_json::to_value(shape).expect("the bot API's shapes have string keys only")
}
