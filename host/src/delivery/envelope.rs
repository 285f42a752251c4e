//! The envelope every event is delivered in, the same for webhooks, the stream and the
//! queue; it mirrors the Wildix x-bees webhook envelope:
//! `{"id", "type", "time" (ms), "integrationId", "botId", "data"}`.

use crate::store::RawOutboxEntry;

/// The envelope as JSON text. The entry's data is inserted as stored, not parsed again.
pub fn envelope(entry: &RawOutboxEntry, bot_id: &str) -> String {
    let text = |value: &str| serde_json::to_string(value).unwrap_or_else(|_| "\"\"".into());
    let integration_id = entry
        .integration_id
        .as_deref()
        .map(text)
        .unwrap_or_else(|| "null".into());
    let data = if entry.data.is_empty() {
        "null"
    } else {
        entry.data.as_str()
    };
    format!(
        r#"{{"id":{},"type":{},"time":{},"integrationId":{},"botId":{},"data":{}}}"#,
        text(&entry.id),
        text(&entry.entry_type),
        entry.time,
        integration_id,
        text(bot_id),
        data
    )
}

/// The NATS subject of an event type: `<prefix>.<type>` with the type's `:` as `.`, so
/// that `<prefix>.chat.>` selects every chat event. Characters a subject token cannot
/// hold become `_`.
pub fn subject(prefix: &str, event_type: &str) -> String {
    let tokens: Vec<String> = event_type
        .split(':')
        .map(|token| {
            let cleaned: String = token
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if cleaned.is_empty() { "_".to_string() } else { cleaned }
        })
        .collect();
    format!("{prefix}.{}", tokens.join("."))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelope_carries_the_entry() {
        let entry = RawOutboxEntry {
            seq: 7,
            id: "ntf_1".into(),
            entry_type: "chat:message:new".into(),
            time: 1_719_844_426_953,
            integration_id: Some("inst_\"a".into()),
            data: r#"{"message":{"id":"msg_1"}}"#.into(),
        };
        let parsed: serde_json::Value = serde_json::from_str(&envelope(&entry, "bot_1")).unwrap();
        assert_eq!(
            parsed,
            json!({"id": "ntf_1", "type": "chat:message:new", "time": 1_719_844_426_953_i64,
                   "integrationId": "inst_\"a", "botId": "bot_1", "data": {"message": {"id": "msg_1"}}})
        );
        let bot_event = RawOutboxEntry {
            integration_id: None,
            ..entry
        };
        let parsed: serde_json::Value = serde_json::from_str(&envelope(&bot_event, "bot_1")).unwrap();
        assert_eq!(parsed["integrationId"], json!(null));
    }

    #[test]
    fn subjects_follow_the_type() {
        assert_eq!(subject("sluice", "chat:message:new"), "sluice.chat.message.new");
        assert_eq!(subject("a.b", "shop:new order*"), "a.b.shop.new_order_");
        assert_eq!(subject("s", "x::y"), "s.x._.y");
    }
}
