//! The format sluice publishes in: the envelope every notification is delivered in (signed
//! webhooks, the live stream, NATS JetStream) and the `data` it carries.
//!
//! The envelope mirrors the Wildix x-bees webhook envelope:
//! `{"id", "type", "time" (ms), "integrationId", "botId", "data"}`, where `data` is one
//! of [`Data`]'s shapes: `{"event": {...}}`, `{"conversation": {...}}` or
//! `{"message": {...}}`.
//!
//! The outbox keeps `data` as the JSON text these types produce and delivery sends that
//! text as it was stored, so what they produce is both on disk and on the wire. They are
//! types of their own, not the bot API's shapes, so that a change to the API does not
//! change what subscribers receive. A change here is a change of the delivered format:
//! make it on purpose, bump [`FORMAT_VERSION`] and say so to subscribers. The golden tests
//! below pin the format byte for byte.
//!
//! The fields of each type are declared in the byte order of their JSON names: the format
//! was first written through `serde_json` objects, which sort their keys, and subscribers
//! that hash or compare the bodies see the same text.
//!
//! This module depends on nothing of the crate but [`crate::time`]: the store converts its
//! records into these types (`crate::store`), delivery formats the envelope.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The version of the delivered format described here, which the golden tests pin so
/// that changing it is a decision and not an accident. `GET /v1/delivery` shows it.
pub const FORMAT_VERSION: u32 = 1;

/// The `data` of a notification. `Payload` is how an event's or a message's payload is
/// held: a [`Value`], or its JSON text already printed (a [`serde_json::value::RawValue`]),
/// which is copied in as it is rather than walked and printed again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Data<Payload = Value> {
    /// `{"event": {...}}`: an event was recorded (by a plugin, the bot or a trigger run).
    Event(Event<Payload>),
    /// `{"conversation": {...}}`: a conversation was created (`chat:channel:created`).
    Conversation(Conversation),
    /// `{"message": {...}}`: a message was recorded (`chat:message:new`).
    Message(Message<Payload>),
}

impl<Payload: Serialize> Data<Payload> {
    /// The JSON text the outbox stores and delivery sends.
    pub fn to_json(&self) -> String {
        // Strings, numbers, JSON values and maps with string keys: nothing here can fail
        // to serialise.
        serde_json::to_string(self).expect("notification data always serialises")
    }
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event<Payload = Value> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(with = "iso8601")]
    pub created_at: i64,
    /// Always present: `null` when nothing failed.
    pub failure_reason: Option<String>,
    pub id: String,
    /// The installation that recorded the event; absent for the bot's own events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub payload: Payload,
    pub status: String,
    /// The full type, `integration:name` for integration events.
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
}

/// A conversation in one channel of an integration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conversation {
    pub channel: String,
    #[serde(with = "iso8601")]
    pub created_at: i64,
    pub id: String,
    /// The integration's name.
    pub integration: String,
    /// The installation the conversation belongs to.
    pub integration_id: String,
    pub message_count: i64,
    pub tags: BTreeMap<String, String>,
    #[serde(with = "iso8601")]
    pub updated_at: i64,
}

/// One message in a conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message<Payload = Value> {
    pub conversation_id: String,
    #[serde(with = "iso8601")]
    pub created_at: i64,
    /// `incoming` (platform to bot) or `outgoing` (bot to platform).
    pub direction: String,
    pub id: String,
    pub payload: Payload,
    pub tags: BTreeMap<String, String>,
    #[serde(rename = "type")]
    pub message_type: String,
    #[serde(with = "iso8601")]
    pub updated_at: i64,
    pub user_id: String,
}

/// One notification as it is delivered: the envelope around its stored `data`.
#[derive(Debug, Clone, Copy)]
pub struct Envelope<'a> {
    /// The notification's id (`ntf_...`): also the `webhook-id` header and the NATS
    /// message id, by which receivers drop duplicates.
    pub id: &'a str,
    pub event_type: &'a str,
    /// When it happened, in milliseconds since the epoch.
    pub time: i64,
    /// The installation it came from; `null` for the bot's own.
    pub integration_id: Option<&'a str>,
    pub bot_id: &'a str,
    /// `data` as the JSON text the outbox stored (a [`Data`]); empty is `null`.
    pub data: &'a str,
}

impl Envelope<'_> {
    /// The envelope as JSON text. `data` is inserted as stored, not parsed again.
    pub fn to_json(self) -> String {
        let text = |value: &str| serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into());
        let integration_id = self.integration_id.map(text).unwrap_or_else(|| "null".into());
        let data = if self.data.is_empty() { "null" } else { self.data };
        format!(
            r#"{{"id":{},"type":{},"time":{},"integrationId":{},"botId":{},"data":{}}}"#,
            text(self.id),
            text(self.event_type),
            self.time,
            integration_id,
            text(self.bot_id),
            data
        )
    }
}

/// Times as ISO 8601 with milliseconds and a `Z`, kept as milliseconds in Rust.
mod iso8601 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&crate::time::iso8601(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text = String::deserialize(deserializer)?;
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|time| time.timestamp_millis())
            .map_err(|error| serde::de::Error::custom(format!("{text:?} is not an ISO 8601 time: {error}")))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// 2024-07-01T14:06:46.700Z
    const CREATED: i64 = 1_719_842_806_700;
    /// 2024-07-01T14:07:06.953Z
    const UPDATED: i64 = 1_719_842_826_953;

    fn tags() -> BTreeMap<String, String> {
        [
            ("zeta".to_string(), "z".to_string()),
            ("Alpha".to_string(), "a\"b".to_string()),
        ]
        .into()
    }

    /// Checks the text byte for byte, and that it reads back as the same data.
    fn pin(data: Data, golden: &str) {
        assert_eq!(FORMAT_VERSION, 1, "a new format version needs new golden texts");
        let text = data.to_json();
        assert_eq!(text, golden);
        assert_eq!(serde_json::from_str::<Data>(&text).unwrap(), data);
    }

    #[test]
    fn event_data_is_pinned() {
        let event = Event {
            conversation_id: Some("conv_1".into()),
            created_at: CREATED,
            failure_reason: Some("boom".into()),
            id: "evt_1".into(),
            integration_id: Some("inst_1".into()),
            message_id: Some("msg_1".into()),
            payload: json!({"b": [1, {"y": null, "x": true}], "a": "é"}),
            status: "failed".into(),
            event_type: "shop:order".into(),
            user_id: Some("user_1".into()),
        };
        pin(
            Data::Event(event.clone()),
            r#"{"event":{"conversationId":"conv_1","createdAt":"2024-07-01T14:06:46.700Z","failureReason":"boom","id":"evt_1","integrationId":"inst_1","messageId":"msg_1","payload":{"a":"é","b":[1,{"x":true,"y":null}]},"status":"failed","type":"shop:order","userId":"user_1"}}"#,
        );
        // Optional links are left out; the failure reason is always there.
        let bare = Event {
            conversation_id: None,
            failure_reason: None,
            integration_id: None,
            message_id: None,
            user_id: None,
            payload: json!({}),
            ..event
        };
        pin(
            Data::Event(bare),
            r#"{"event":{"createdAt":"2024-07-01T14:06:46.700Z","failureReason":null,"id":"evt_1","payload":{},"status":"failed","type":"shop:order"}}"#,
        );
    }

    #[test]
    fn conversation_data_is_pinned() {
        pin(
            Data::Conversation(Conversation {
                channel: "channel".into(),
                created_at: CREATED,
                id: "conv_1".into(),
                integration: "chat".into(),
                integration_id: "inst_1".into(),
                message_count: 0,
                tags: tags(),
                updated_at: UPDATED,
            }),
            r#"{"conversation":{"channel":"channel","createdAt":"2024-07-01T14:06:46.700Z","id":"conv_1","integration":"chat","integrationId":"inst_1","messageCount":0,"tags":{"Alpha":"a\"b","zeta":"z"},"updatedAt":"2024-07-01T14:07:06.953Z"}}"#,
        );
    }

    #[test]
    fn message_data_is_pinned() {
        pin(
            Data::Message(Message {
                conversation_id: "conv_1".into(),
                created_at: CREATED,
                direction: "incoming".into(),
                id: "msg_1".into(),
                payload: json!({"text": "hi"}),
                tags: tags(),
                message_type: "text".into(),
                updated_at: UPDATED,
                user_id: "user_1".into(),
            }),
            r#"{"message":{"conversationId":"conv_1","createdAt":"2024-07-01T14:06:46.700Z","direction":"incoming","id":"msg_1","payload":{"text":"hi"},"tags":{"Alpha":"a\"b","zeta":"z"},"type":"text","updatedAt":"2024-07-01T14:07:06.953Z","userId":"user_1"}}"#,
        );
    }

    #[test]
    fn envelope_is_pinned() {
        let envelope = Envelope {
            id: "ntf_1",
            event_type: "chat:message:new",
            time: 1_719_844_426_953,
            integration_id: Some("inst_\"a"),
            bot_id: "bot_1",
            data: r#"{"message":{"id":"msg_1"}}"#,
        };
        assert_eq!(
            envelope.to_json(),
            r#"{"id":"ntf_1","type":"chat:message:new","time":1719844426953,"integrationId":"inst_\"a","botId":"bot_1","data":{"message":{"id":"msg_1"}}}"#
        );
        let bot_event = Envelope {
            integration_id: None,
            data: "",
            ..envelope
        };
        assert_eq!(
            bot_event.to_json(),
            r#"{"id":"ntf_1","type":"chat:message:new","time":1719844426953,"integrationId":null,"botId":"bot_1","data":null}"#
        );
    }
}
