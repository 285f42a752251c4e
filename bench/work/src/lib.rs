//! The work every benchmarked server does for one request, shared by all of them so
//! that they differ only in what runs it: the native hyper server (the limit), the
//! sluice plugin (a fresh sandbox per request) and the `wasi:http` proxy component for
//! `wasmtime serve` (the closest peer).
//!
//! A request carries a chat platform's `message.created` webhook (about 1.1 KB of
//! JSON, [`SAMPLE_BODY`]); the work parses all of it into typed structs and answers a
//! small JSON summary computed from every part ([`EXPECTED_REPLY`] for the sample).
//!
//! `no_std` (with `alloc`), so that a plugin built without Rust's standard library can
//! share it too (`bench/guests/plugin`'s `lean` feature).

#![no_std]
#![allow(
    missing_docs,
    reason = "the structs mirror the sample webhook's JSON field for field; the module docs say what they are"
)]

extern crate alloc;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};

/// The webhook body every benchmark request carries.
pub const SAMPLE_BODY: &[u8] = include_bytes!("../sample.json");

/// The exact reply to [`SAMPLE_BODY`]; every configuration's reply is checked against
/// it before it is measured.
pub const EXPECTED_REPLY: &[u8] =
    br#"{"ok":true,"event":"evt_01JD6N4X3Q9W8V7T6S5R4P3M2K","conversation":"conv_5b2e8d14c9a7","sender":"usr_4c8e2a6b","characters":122,"attachments":2,"attachmentBytes":231765,"tags":3,"priority":"high"}"#;

/// The content type of every reply.
pub const REPLY_CONTENT_TYPE: &str = "application/json";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub workspace: Workspace,
    pub conversation: Conversation,
    pub sender: Sender,
    pub message: Message,
    pub context: Option<RequestContext>,
    pub delivery: Delivery,
}

#[derive(Debug, Deserialize)]
pub struct Workspace {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct Conversation {
    pub id: String,
    pub channel: String,
    pub status: String,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
pub struct Sender {
    pub id: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub locale: Option<String>,
    #[serde(default)]
    pub verified: bool,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub id: String,
    pub text: String,
    #[serde(default)]
    pub mentions: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub id: String,
    pub name: String,
    pub content_type: String,
    pub size: u64,
    pub url: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Delivery {
    pub attempt: u32,
    pub signature: String,
}

/// The reply: a summary that depends on every part of the webhook.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reply<'a> {
    pub ok: bool,
    pub event: &'a str,
    pub conversation: &'a str,
    pub sender: &'a str,
    pub characters: usize,
    pub attachments: usize,
    pub attachment_bytes: u64,
    pub tags: usize,
    pub priority: &'a str,
}

/// A body that is not a webhook of this shape.
#[derive(Debug)]
pub struct BadWebhook(pub String);

impl core::fmt::Display for BadWebhook {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "the body is not a message.created webhook: {}", self.0)
    }
}

impl core::error::Error for BadWebhook {}

/// Parses `body` and answers the reply's JSON bytes.
pub fn handle(body: &[u8]) -> Result<Vec<u8>, BadWebhook> {
    let webhook: Webhook = serde_json::from_slice(body).map_err(|e| BadWebhook(e.to_string()))?;
    if webhook.kind != "message.created" {
        return Err(BadWebhook(format!("type is {:?}", webhook.kind)));
    }
    let reply = Reply {
        ok: true,
        event: &webhook.id,
        conversation: &webhook.conversation.id,
        sender: &webhook.sender.id,
        characters: webhook.message.text.chars().count(),
        attachments: webhook.message.attachments.len(),
        attachment_bytes: webhook.message.attachments.iter().map(|a| a.size).sum(),
        tags: webhook.conversation.tags.len(),
        priority: webhook
            .conversation
            .tags
            .get("priority")
            .map(String::as_str)
            .unwrap_or("normal"),
    };
    Ok(serde_json::to_vec(&reply).expect("the reply serialises"))
}

/// The reply to a body [`handle`] refused: `{"error": "..."}`.
pub fn refusal(error: &BadWebhook) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "error": error.to_string() })).expect("the refusal serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_gets_the_expected_reply() {
        let reply = handle(SAMPLE_BODY).unwrap();
        assert_eq!(
            String::from_utf8(reply).unwrap(),
            String::from_utf8(EXPECTED_REPLY.to_vec()).unwrap()
        );
    }

    #[test]
    fn the_sample_is_about_a_kilobyte() {
        assert!((1000..1300).contains(&SAMPLE_BODY.len()), "{}", SAMPLE_BODY.len());
    }

    #[test]
    fn other_bodies_are_refused_with_a_reason() {
        let error = handle(b"{}").unwrap_err();
        assert!(error.to_string().contains("missing field"), "{error}");
        let other = String::from_utf8(SAMPLE_BODY.to_vec())
            .unwrap()
            .replace("message.created", "message.deleted");
        assert!(
            handle(other.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("message.deleted")
        );
        assert!(String::from_utf8(refusal(&error)).unwrap().starts_with(r#"{"error":"#));
    }
}
