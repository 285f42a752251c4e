//! Store records in the contract's types, and the errors the imports answer with.

use serde_json::Value;

use crate::json_depth;
use crate::runtime::bindings::types::{self as wit, ErrorKind};
use crate::store::{ConversationRecord, EventRecord, MessageRecord, Tags, UserRecord};
use crate::time::iso8601;

pub(super) fn error(kind: ErrorKind, message: impl Into<String>) -> wit::Error {
    wit::Error {
        kind,
        message: message.into(),
    }
}

pub(super) fn invalid(message: impl Into<String>) -> wit::Error {
    error(ErrorKind::InvalidInput, message)
}

pub(super) fn not_found(message: impl Into<String>) -> wit::Error {
    error(ErrorKind::NotFound, message)
}

/// A store failure: logged in full, reported to the plugin as `internal`.
pub(super) fn storage(label: &str, what: &str, failure: anyhow::Error) -> wit::Error {
    crate::store::StoreError::note_loss(&failure);
    tracing::error!(plugin = %label, error = %format!("{failure:#}"), "store failure while {what}");
    error(
        ErrorKind::Internal,
        format!("the host could not finish {what}; see the host log"),
    )
}

/// `text` as JSON, after the depth rule. Parsed through `Value`'s `FromStr`, the parser
/// serde_json compiles itself, rather than `serde_json::from_str`, which would be compiled
/// here: a payload of many small records parses as fast in a debug build as in a release.
pub(super) fn parse_json(what: &str, text: &str) -> Result<Value, wit::Error> {
    json_depth::check(text.as_bytes(), json_depth::RECORDED_MAX_DEPTH, what).map_err(invalid)?;
    text.parse::<Value>()
        .map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
}

pub(super) fn parse_object(what: &str, text: &str) -> Result<Value, wit::Error> {
    let value = parse_json(what, text)?;
    if !value.is_object() {
        return Err(invalid(format!("{what} must be a JSON object")));
    }
    Ok(value)
}

/// Checks tag names against the declared ones and turns them into [`Tags`].
pub(super) fn declared_tags(what: &str, tags: Vec<(String, String)>, declared: &[String]) -> Result<Tags, wit::Error> {
    let mut checked = Tags::new();
    for (key, value) in tags {
        if !declared.iter().any(|d| d == &key) {
            let known = if declared.is_empty() {
                "none".to_string()
            } else {
                declared.join(", ")
            };
            return Err(invalid(format!(
                "tag {key:?} is not declared for {what} (declared: {known})"
            )));
        }
        checked.insert(key, value);
    }
    Ok(checked)
}

pub(in crate::runtime) fn wit_tags(tags: &Tags) -> Vec<(String, String)> {
    tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(in crate::runtime) fn wit_event(event: &EventRecord) -> wit::Event {
    wit::Event {
        id: event.id.clone(),
        type_: event.event_type.clone(),
        payload: event.payload.to_string(),
        conversation_id: event.conversation_id.clone(),
        user_id: event.user_id.clone(),
        message_id: event.message_id.clone(),
        created_at: iso8601(event.created_at),
    }
}

pub(in crate::runtime) fn wit_conversation(conversation: &ConversationRecord) -> wit::Conversation {
    wit::Conversation {
        id: conversation.id.clone(),
        channel: conversation.channel.clone(),
        integration: conversation.integration.clone(),
        tags: wit_tags(&conversation.tags),
        created_at: iso8601(conversation.created_at),
        updated_at: iso8601(conversation.updated_at),
    }
}

pub(in crate::runtime) fn wit_user(user: &UserRecord) -> wit::User {
    wit::User {
        id: user.id.clone(),
        tags: wit_tags(&user.tags),
        name: user.name.clone(),
        picture_url: user.picture_url.clone(),
        created_at: iso8601(user.created_at),
        updated_at: iso8601(user.updated_at),
    }
}

pub(in crate::runtime) fn wit_message(message: &MessageRecord) -> wit::Message {
    wit::Message {
        id: message.id.clone(),
        conversation_id: message.conversation_id.clone(),
        user_id: message.user_id.clone(),
        type_: message.message_type.clone(),
        payload: message.payload.to_string(),
        direction: if message.direction == "outgoing" {
            wit::Direction::Outgoing
        } else {
            wit::Direction::Incoming
        },
        tags: wit_tags(&message.tags),
        created_at: iso8601(message.created_at),
        updated_at: iso8601(message.updated_at),
    }
}
