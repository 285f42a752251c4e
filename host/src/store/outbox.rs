//! The outbox: every notification the store published, in order, for delivery to read.
//!
//! What a notification carries is the delivered format of [`crate::envelope`]; the
//! conversions from the store's records to that format are here, so that the store
//! depends on the format and not the other way round.

use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::{ConversationRecord, EventRecord, MessageRecord, Pending};
use crate::envelope::{self, Data, Envelope};

/// One published notification: what happened, to be delivered to the user's application
/// in an [`Envelope`]. Tests read the outbox this way; delivery sends it as stored.
#[cfg(test)]
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    /// Position in the outbox; delivery reads in this order.
    pub seq: i64,
    pub id: String,
    pub entry_type: String,
    pub time: i64,
    pub integration_id: Option<String>,
    /// The notification's [`envelope::Data`], parsed.
    pub data: serde_json::Value,
}

/// An outbox entry with its data as the JSON text it was stored as, so that it can be
/// sent without being parsed and printed again.
#[derive(Debug, Clone, PartialEq)]
pub struct RawOutboxEntry {
    pub seq: i64,
    pub id: String,
    pub entry_type: String,
    pub time: i64,
    pub integration_id: Option<String>,
    pub data: String,
    /// The W3C `traceparent` of the write that published the entry, when it was traced:
    /// its delivery continues that trace.
    pub traceparent: Option<String>,
}

impl RawOutboxEntry {
    /// The entry in its envelope, as JSON text: what every delivery sends.
    pub fn envelope(&self, bot_id: &str) -> String {
        Envelope {
            id: &self.id,
            event_type: &self.entry_type,
            time: self.time,
            integration_id: self.integration_id.as_deref(),
            bot_id,
            data: &self.data,
        }
        .to_json()
    }
}

/// Reading the outbox. Publishing is part of each write that records something (an
/// event, a conversation, a message), in the same transaction.
pub trait OutboxStore {
    /// Follows the outbox: the value is the highest outbox seq committed so far, and
    /// changes after every commit that published something.
    fn outbox_published(&self) -> watch::Receiver<i64>;
    /// Outbox entries after `seq`, oldest first, with their data as stored.
    fn raw_outbox_after(&self, seq: i64, limit: usize) -> Pending<Vec<RawOutboxEntry>>;
    /// Outbox entries after `seq`, oldest first, with their data parsed.
    #[cfg(test)]
    fn outbox_after(&self, seq: i64, limit: usize) -> Pending<Vec<OutboxEntry>>;
}

/// `payload` printed as JSON text, once: a record's row and its outbox data both take this
/// text, so that its tree of values (hundreds of thousands of them for a body of many small
/// records) is walked once and never copied. Printed through `Value`'s `Display`, which
/// serde_json compiles itself, so a debug build of sluice prints it as fast as a release.
pub(super) fn printed(payload: &Value) -> Box<RawValue> {
    RawValue::from_string(payload.to_string()).expect("a printed JSON value is JSON")
}

/// The outbox data of `event`, whose payload is `payload` as [`printed`].
pub(super) fn event_data(event: &EventRecord, payload: &RawValue) -> String {
    Data::Event(envelope::Event {
        conversation_id: event.conversation_id.clone(),
        created_at: event.created_at,
        failure_reason: event.failure_reason.clone(),
        id: event.id.clone(),
        integration_id: event.installation_id.clone(),
        message_id: event.message_id.clone(),
        payload,
        status: event.status.clone(),
        event_type: event.event_type.clone(),
        user_id: event.user_id.clone(),
    })
    .to_json()
}

/// The outbox data of `conversation`.
pub(super) fn conversation_data(conversation: &ConversationRecord) -> String {
    Data::<Value>::Conversation(envelope::Conversation {
        channel: conversation.channel.clone(),
        created_at: conversation.created_at,
        id: conversation.id.clone(),
        integration: conversation.integration.clone(),
        integration_id: conversation.installation_id.clone(),
        message_count: conversation.message_count,
        tags: conversation.tags.clone(),
        updated_at: conversation.updated_at,
    })
    .to_json()
}

/// The outbox data of `message`, whose payload is `payload` as [`printed`].
pub(super) fn message_data(message: &MessageRecord, payload: &RawValue) -> String {
    Data::Message(envelope::Message {
        conversation_id: message.conversation_id.clone(),
        created_at: message.created_at,
        direction: message.direction.clone(),
        id: message.id.clone(),
        payload,
        tags: message.tags.clone(),
        message_type: message.message_type.clone(),
        updated_at: message.updated_at,
        user_id: message.user_id.clone(),
    })
    .to_json()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 2024-07-01T14:06:46.700Z
    const CREATED: i64 = 1_719_842_806_700;

    fn event(linked: bool) -> EventRecord {
        let link = |id: &str| linked.then(|| id.to_string());
        EventRecord {
            id: "evt_1".into(),
            installation_id: link("inst_1"),
            event_type: "shop:order".into(),
            payload: json!({"total": 12.5, "items": [{"sku": "a"}]}),
            conversation_id: link("conv_1"),
            user_id: link("user_1"),
            message_id: link("msg_1"),
            status: "processed".into(),
            failure_reason: None,
            created_at: CREATED,
        }
    }

    /// The texts were checked against what the store published before these types existed
    /// (the bot API's shapes, printed by `serde_json`); see `crate::envelope`'s tests for
    /// every optional field.
    #[test]
    fn records_are_published_in_the_pinned_format() {
        assert_eq!(
            event_data(&event(true), &printed(&event(true).payload)),
            r#"{"event":{"conversationId":"conv_1","createdAt":"2024-07-01T14:06:46.700Z","failureReason":null,"id":"evt_1","integrationId":"inst_1","messageId":"msg_1","payload":{"items":[{"sku":"a"}],"total":12.5},"status":"processed","type":"shop:order","userId":"user_1"}}"#
        );
        assert_eq!(
            event_data(&event(false), &printed(&event(false).payload)),
            r#"{"event":{"createdAt":"2024-07-01T14:06:46.700Z","failureReason":null,"id":"evt_1","payload":{"items":[{"sku":"a"}],"total":12.5},"status":"processed","type":"shop:order"}}"#
        );
        let conversation = ConversationRecord {
            id: "conv_1".into(),
            installation_id: "inst_1".into(),
            integration: "chat".into(),
            channel: "channel".into(),
            tags: [("channelId".to_string(), "C1".to_string())].into(),
            message_count: 3,
            created_at: CREATED,
            updated_at: CREATED + 1,
        };
        assert_eq!(
            conversation_data(&conversation),
            r#"{"conversation":{"channel":"channel","createdAt":"2024-07-01T14:06:46.700Z","id":"conv_1","integration":"chat","integrationId":"inst_1","messageCount":3,"tags":{"channelId":"C1"},"updatedAt":"2024-07-01T14:06:46.701Z"}}"#
        );
        let message = MessageRecord {
            id: "msg_1".into(),
            installation_id: "inst_1".into(),
            conversation_id: "conv_1".into(),
            user_id: "user_1".into(),
            message_type: "text".into(),
            payload: json!({"text": "hi"}),
            direction: "incoming".into(),
            tags: [("messageId".to_string(), "m1".to_string())].into(),
            created_at: CREATED,
            updated_at: CREATED + 1,
        };
        assert_eq!(
            message_data(&message, &printed(&message.payload)),
            r#"{"message":{"conversationId":"conv_1","createdAt":"2024-07-01T14:06:46.700Z","direction":"incoming","id":"msg_1","payload":{"text":"hi"},"tags":{"messageId":"m1"},"type":"text","updatedAt":"2024-07-01T14:06:46.701Z","userId":"user_1"}}"#
        );
    }
}
