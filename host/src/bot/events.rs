//! Events the bot creates. A type named after an installed integration
//! (`<integration>:<event>`) must be one it declares, with a payload that satisfies its
//! schema; any other type is the bot's own. Linked conversations, users and messages
//! must exist.

use serde_json::Value;

use super::{BotError, find_installation, list_or_none};
use crate::ids::record_id;
use crate::plugins::PluginHost;
use crate::store::EventRecord;
use crate::time::now_ms;

/// `createEvent`.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_type: String,
    pub payload: Value,
    pub conversation_id: Option<String>,
    pub user_id: Option<String>,
    pub message_id: Option<String>,
}

/// Records an event the bot created.
pub async fn create_event(plugins: &PluginHost, event: NewEvent) -> Result<EventRecord, BotError> {
    if event.event_type.is_empty() {
        return Err(BotError::invalid("type is empty"));
    }
    if !event.payload.is_object() {
        return Err(BotError::invalid_data("payload must be a JSON object"));
    }
    let mut installation_id = None;
    if let Some((prefix, name)) = event.event_type.split_once(':') {
        let snapshot = plugins.registry.snapshot();
        if let Ok(installation) = find_installation(&snapshot, prefix) {
            let definition = &installation.plugin.definition;
            let declared = definition.events.get(name).ok_or_else(|| {
                BotError::invalid(format!(
                    "integration {} does not declare event {name:?} (declared: {})",
                    definition.name,
                    list_or_none(definition.events.keys().map(String::as_str))
                ))
            })?;
            declared.schema.check(&event.payload).map_err(|problems| {
                BotError::invalid_data(format!(
                    "the payload of event {} does not match its schema: {problems}",
                    event.event_type
                ))
            })?;
            installation_id = Some(installation.id().to_string());
        }
    }
    if let Some(id) = &event.conversation_id
        && plugins.store.conversation(id).await?.is_none()
    {
        return Err(BotError::unknown_reference(format!("conversation {id} does not exist")));
    }
    if let Some(id) = &event.user_id
        && plugins.store.user(id).await?.is_none()
    {
        return Err(BotError::unknown_reference(format!("user {id} does not exist")));
    }
    if let Some(id) = &event.message_id
        && plugins.store.message(id).await?.is_none()
    {
        return Err(BotError::unknown_reference(format!("message {id} does not exist")));
    }
    let record = EventRecord {
        id: record_id("evt"),
        installation_id,
        event_type: event.event_type,
        payload: event.payload,
        conversation_id: event.conversation_id,
        user_id: event.user_id,
        message_id: event.message_id,
        status: "processed".into(),
        failure_reason: None,
        created_at: now_ms(),
    };
    let stored = record.clone();
    plugins.store.insert_event(&stored).await?;
    Ok(record)
}
