//! The bot's messages. A message the bot writes in a conversation that belongs to an
//! integration is checked against what the conversation's channel declares (message
//! type, payload schema, tags), delivered through the plugin's `handle-message`, and
//! stored with the tags of the plugin's ack (for example the platform's message id).
//! Nothing is stored when the plugin could not deliver it: the bot gets the error and
//! may try again.

use serde_json::Value;

use super::error::describe;
use super::{BotError, BotErrorKind, check_tags, list_or_none, ready};
use crate::ids::record_id;
use crate::plugins::{Installation, PluginHost};
use crate::runtime::definition::ChannelDefinition;
use crate::store::{ConversationRecord, MessageRecord, TagChanges, Tags, UserRecord};
use crate::time::now_ms;

/// A message the bot wants to send.
#[derive(Debug, Clone)]
pub struct OutgoingMessage {
    pub conversation_id: String,
    /// The author: a user id, or the bot's id (which stands for the bot's own user).
    pub user_id: String,
    pub message_type: String,
    pub payload: Value,
    pub tags: Tags,
}

/// The installation that owns `conversation`. One that was uninstalled is a 404
/// (`ResourceNotFound`, which `@botpress/client` knows) rather than a 503: waiting does not
/// bring it back (installed again, a plugin is a new installation with a new id).
fn owner(plugins: &PluginHost, conversation: &ConversationRecord) -> Result<std::sync::Arc<Installation>, BotError> {
    let installation = plugins
        .registry
        .snapshot()
        .by_id(&conversation.installation_id)
        .cloned()
        .ok_or_else(|| {
            BotError::not_found(format!(
                "conversation {} belongs to an installation of integration {} ({}) that is not installed any more; \
                 it takes no more messages",
                conversation.id, conversation.integration, conversation.installation_id
            ))
        })?;
    Ok(installation)
}

/// The declaration of the conversation's channel.
fn channel<'a>(
    installation: &'a Installation,
    conversation: &ConversationRecord,
) -> Result<&'a ChannelDefinition, BotError> {
    installation
        .plugin
        .definition
        .channels
        .get(&conversation.channel)
        .ok_or_else(|| {
            BotError::invalid(format!(
                "conversation {} is in channel {:?}, which {} no longer declares",
                conversation.id,
                conversation.channel,
                describe(installation)
            ))
        })
}

/// Checks a payload against the schema of its message type in `channel`.
fn check_payload(
    installation: &Installation,
    channel_name: &str,
    channel: &ChannelDefinition,
    message_type: &str,
    payload: &Value,
) -> Result<(), BotError> {
    let Some(schema) = channel.messages.get(message_type) else {
        return Err(BotError::invalid(format!(
            "message type {message_type:?} is not declared for channel {channel_name} of integration {} (declared: {})",
            installation.plugin.definition.name,
            list_or_none(channel.messages.keys().map(String::as_str))
        )));
    };
    if !payload.is_object() {
        return Err(BotError::invalid_data(format!(
            "the payload of a {message_type} message must be a JSON object"
        )));
    }
    schema.check(payload).map_err(|problems| {
        BotError::invalid_data(format!(
            "the payload of the {message_type} message does not match its schema in channel {channel_name}: {problems}"
        ))
    })
}

async fn conversation(plugins: &PluginHost, id: &str) -> Result<ConversationRecord, BotError> {
    let lookup = id.to_string();
    plugins
        .store
        .conversation(&lookup)
        .await?
        .ok_or_else(|| BotError::unknown_reference(format!("conversation {id} does not exist")))
}

/// The author of a bot message: a user of this installation, a user of the bot, or the
/// bot itself (its id stands for its own user).
async fn author(plugins: &PluginHost, id: &str, installation: &Installation) -> Result<UserRecord, BotError> {
    let lookup = if id == plugins.identity.bot_id {
        plugins.identity.bot_user_id.clone()
    } else {
        id.to_string()
    };
    let user = plugins
        .store
        .user(&lookup)
        .await?
        .ok_or_else(|| BotError::unknown_reference(format!("user {id} does not exist")))?;
    match &user.installation_id {
        Some(owner) if owner != installation.id() => Err(BotError::new(
            BotErrorKind::RelationConflict,
            format!(
                "user {id} belongs to another installation than the conversation's ({})",
                installation.name()
            ),
        )),
        _ => Ok(user),
    }
}

/// Sends a bot message: checks it, runs the plugin's `handle-message`, checks the ack and
/// stores the message (direction `outgoing`) with the bot's tags and the ack's tags.
pub async fn send_message(
    plugins: &PluginHost,
    message: OutgoingMessage,
    request_id: &str,
) -> Result<MessageRecord, BotError> {
    let conversation = conversation(plugins, &message.conversation_id).await?;
    let installation = owner(plugins, &conversation)?;
    let channel = channel(&installation, &conversation)?;
    check_payload(
        &installation,
        &conversation.channel,
        channel,
        &message.message_type,
        &message.payload,
    )?;
    check_tags(
        &format!("messages of channel {}", conversation.channel),
        message.tags.keys(),
        &channel.message_tags,
    )?;
    let user = author(plugins, &message.user_id, &installation).await?;
    ready(&installation)?;

    let now = now_ms();
    let mut record = MessageRecord {
        id: record_id("msg"),
        installation_id: installation.id().to_string(),
        conversation_id: conversation.id.clone(),
        user_id: user.id.clone(),
        message_type: message.message_type,
        payload: message.payload,
        direction: "outgoing".into(),
        tags: message.tags,
        created_at: now,
        updated_at: now,
    };
    let what = format!(
        "deliver the {} message in channel {}",
        record.message_type, conversation.channel
    );
    let (answer, report) = installation
        .handle_message(request_id, &conversation, &record, &user)
        .await;
    let ack = BotError::from_answer(&installation, &what, answer, &report)?;
    for (key, value) in ack.tags {
        if !channel.message_tags.iter().any(|d| d == &key) {
            return Err(BotError::plugin_failed(format!(
                "{} delivered the message but acked it with tag {key:?}, which channel {} does not declare (declared: {}); the message was not stored",
                describe(&installation),
                conversation.channel,
                list_or_none(channel.message_tags.iter().map(String::as_str))
            )));
        }
        record.tags.insert(key, value);
    }

    let stored = record.clone();
    plugins.store.insert_message(&stored).await.map_err(|error| {
        BotError::internal(error.context(format!(
            "message {} was delivered by {} but could not be stored",
            record.id,
            installation.name()
        )))
    })?;
    tracing::debug!(installation = %installation.name(), %request_id, message_id = %record.id, "bot message delivered");
    Ok(record)
}

/// Changes a message's tags and payload (not delivered again). Tags must be declared
/// by the channel; a new payload must satisfy the message type's schema.
pub async fn update_message(
    plugins: &PluginHost,
    id: &str,
    tags: TagChanges,
    payload: Option<Value>,
) -> Result<MessageRecord, BotError> {
    let lookup = id.to_string();
    let message = plugins
        .store
        .message(&lookup)
        .await?
        .ok_or_else(|| BotError::not_found(format!("message {id} does not exist")))?;
    let conversation = conversation(plugins, &message.conversation_id).await?;
    // Rules come from the plugin that owns the conversation; when it is gone there is
    // nothing to check against and the message keeps what it has.
    if let Some(installation) = plugins.registry.snapshot().by_id(&conversation.installation_id) {
        let channel = channel(installation, &conversation)?;
        let set: Vec<&String> = tags.iter().filter(|(_, v)| v.is_some()).map(|(k, _)| k).collect();
        check_tags(
            &format!("messages of channel {}", conversation.channel),
            set,
            &channel.message_tags,
        )?;
        if let Some(payload) = &payload {
            check_payload(
                installation,
                &conversation.channel,
                channel,
                &message.message_type,
                payload,
            )?;
        }
    } else if payload.as_ref().is_some_and(|p| !p.is_object()) {
        return Err(BotError::invalid_data("payload must be a JSON object"));
    }
    let lookup = id.to_string();
    plugins
        .store
        .update_message(&lookup, &tags, payload.as_ref())
        .await?
        .ok_or_else(|| BotError::not_found(format!("message {id} does not exist")))
}
