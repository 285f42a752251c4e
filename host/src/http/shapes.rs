//! Records in the JSON shapes of the Botpress chat API (`@botpress/client`), so that
//! its clients read sluice's answers unchanged. Times are ISO 8601.

use serde_json::{Map, Value, json};

use crate::store::{ConversationRecord, EventRecord, MessageRecord, StateRecord, Tags, UserRecord};
use crate::time::iso8601;

fn tags(tags: &Tags) -> Value {
    Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// Inserts `key` only when there is a value (the API leaves optional fields out).
fn optional(object: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(value) = value {
        object.insert(key.into(), Value::String(value.clone()));
    }
}

pub fn event(event: &EventRecord) -> Value {
    let mut object = json!({
        "id": event.id,
        "createdAt": iso8601(event.created_at),
        "type": event.event_type,
        "payload": event.payload,
        "status": event.status,
        "failureReason": event.failure_reason,
    });
    let map = object.as_object_mut().expect("an object");
    optional(map, "conversationId", &event.conversation_id);
    optional(map, "userId", &event.user_id);
    optional(map, "messageId", &event.message_id);
    optional(map, "integrationId", &event.installation_id);
    object
}

pub fn conversation(conversation: &ConversationRecord) -> Value {
    json!({
        "id": conversation.id,
        "createdAt": iso8601(conversation.created_at),
        "updatedAt": iso8601(conversation.updated_at),
        "channel": conversation.channel,
        "integration": conversation.integration,
        "integrationId": conversation.installation_id,
        "tags": tags(&conversation.tags),
        "messageCount": conversation.message_count,
    })
}

pub fn user(user: &UserRecord) -> Value {
    let mut object = json!({
        "id": user.id,
        "createdAt": iso8601(user.created_at),
        "updatedAt": iso8601(user.updated_at),
        "tags": tags(&user.tags),
    });
    let map = object.as_object_mut().expect("an object");
    optional(map, "name", &user.name);
    optional(map, "pictureUrl", &user.picture_url);
    optional(map, "integrationId", &user.installation_id);
    object
}

pub fn message(message: &MessageRecord) -> Value {
    json!({
        "id": message.id,
        "createdAt": iso8601(message.created_at),
        "updatedAt": iso8601(message.updated_at),
        "type": message.message_type,
        "payload": message.payload,
        "direction": message.direction,
        "userId": message.user_id,
        "conversationId": message.conversation_id,
        "tags": tags(&message.tags),
    })
}

/// A state; `bot_id` is the host's bot.
pub fn state(state: &StateRecord, bot_id: &str) -> Value {
    let mut object = json!({
        "id": state.id,
        "createdAt": iso8601(state.created_at),
        "updatedAt": iso8601(state.updated_at),
        "botId": bot_id,
        "name": state.key.name,
        "type": state.key.scope.as_str(),
        "payload": state.payload,
    });
    let map = object.as_object_mut().expect("an object");
    match state.key.scope {
        crate::store::StateScope::Conversation => optional(map, "conversationId", &Some(state.key.owner_id.clone())),
        crate::store::StateScope::User => optional(map, "userId", &Some(state.key.owner_id.clone())),
        _ => {}
    }
    object
}
