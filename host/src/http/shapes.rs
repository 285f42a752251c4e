//! Records in the JSON shapes of the Botpress chat API (`@botpress/client`), so that
//! its clients read sluice's answers unchanged. Times are ISO 8601. Each shape is a type
//! the answers are serialized through and the OpenAPI document describes
//! ([`super::openapi`]), so the two cannot differ.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::store::{ConversationRecord, EventRecord, MessageRecord, StateRecord, StateScope, Tags, UserRecord};
use crate::time::iso8601;

/// An event (`listEvents`, `getEvent`, `createEvent`).
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "id": "evt_01J2Z3", "createdAt": "2024-07-01T14:00:00.000Z", "type": "webhook:event",
    "payload": {"body": {"example": "example"}}, "status": "processed", "failureReason": null,
    "integrationId": "ins_01J2Z3"
}))]
pub struct Event {
    pub id: String,
    pub created_at: String,
    /// `<integration>:<event>`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What the integration declared for this event type.
    pub payload: Value,
    pub status: String,
    #[schema(required)]
    pub failure_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// The installation that recorded it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
}

/// A conversation.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub channel: String,
    /// The integration's name.
    pub integration: String,
    /// The installation's id.
    pub integration_id: String,
    pub tags: Tags,
    pub message_count: i64,
}

/// A user.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    pub tags: Tags,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub picture_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
}

/// A message.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    /// The channel's message type (`text`, `image`, ...).
    #[serde(rename = "type")]
    pub message_type: String,
    pub payload: Value,
    /// `incoming` (from the platform) or `outgoing` (from the bot).
    pub direction: String,
    pub user_id: String,
    pub conversation_id: String,
    pub tags: Tags,
}

/// A state.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct State {
    pub id: String,
    pub created_at: String,
    pub updated_at: String,
    /// The host's bot.
    pub bot_id: String,
    pub name: String,
    /// `bot`, `integration`, `conversation` or `user`.
    #[serde(rename = "type")]
    pub scope: String,
    pub payload: serde_json::Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// The `meta` of a list answer: `nextToken` only when there is a next page.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PageMeta {
    /// Give it as `nextToken` for the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

impl PageMeta {
    pub fn new(next_token: Option<String>) -> PageMeta {
        PageMeta { next_token }
    }
}

/// The `meta` of an answer that may have made what it answers.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedMeta {
    /// Whether this request made it.
    pub created: bool,
}

/// What a delete answers: an empty object.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Deleted {}

/// The `meta` of an answer Botpress may serve from a cache (sluice never does).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CachedMeta {
    /// Always false.
    pub cached: bool,
}

impl CachedMeta {
    pub const NOT: CachedMeta = CachedMeta { cached: false };
}

pub fn event(event: &EventRecord) -> Event {
    Event {
        id: event.id.clone(),
        created_at: iso8601(event.created_at),
        event_type: event.event_type.clone(),
        payload: event.payload.clone(),
        status: event.status.clone(),
        failure_reason: event.failure_reason.clone(),
        conversation_id: event.conversation_id.clone(),
        user_id: event.user_id.clone(),
        message_id: event.message_id.clone(),
        integration_id: event.installation_id.clone(),
    }
}

pub fn conversation(conversation: &ConversationRecord) -> Conversation {
    Conversation {
        id: conversation.id.clone(),
        created_at: iso8601(conversation.created_at),
        updated_at: iso8601(conversation.updated_at),
        channel: conversation.channel.clone(),
        integration: conversation.integration.clone(),
        integration_id: conversation.installation_id.clone(),
        tags: conversation.tags.clone(),
        message_count: conversation.message_count,
    }
}

pub fn user(user: &UserRecord) -> User {
    User {
        id: user.id.clone(),
        created_at: iso8601(user.created_at),
        updated_at: iso8601(user.updated_at),
        tags: user.tags.clone(),
        name: user.name.clone(),
        picture_url: user.picture_url.clone(),
        integration_id: user.installation_id.clone(),
    }
}

pub fn message(message: &MessageRecord) -> Message {
    Message {
        id: message.id.clone(),
        created_at: iso8601(message.created_at),
        updated_at: iso8601(message.updated_at),
        message_type: message.message_type.clone(),
        payload: message.payload.clone(),
        direction: message.direction.clone(),
        user_id: message.user_id.clone(),
        conversation_id: message.conversation_id.clone(),
        tags: message.tags.clone(),
    }
}

/// A state; `bot_id` is the host's bot.
pub fn state(state: &StateRecord, bot_id: &str) -> State {
    let owner = Some(state.key.owner_id.clone());
    State {
        id: state.id.clone(),
        created_at: iso8601(state.created_at),
        updated_at: iso8601(state.updated_at),
        bot_id: bot_id.to_string(),
        name: state.key.name.clone(),
        scope: state.key.scope.as_str().to_string(),
        payload: match &state.payload {
            Value::Object(fields) => fields.clone(),
            // States are objects (every write checks it); anything else reads as empty.
            _ => serde_json::Map::new(),
        },
        conversation_id: owner.clone().filter(|_| state.key.scope == StateScope::Conversation),
        user_id: owner.filter(|_| state.key.scope == StateScope::User),
    }
}
