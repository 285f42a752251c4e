//! A test plugin for triggers. Every trigger event it runs becomes a `processed` event
//! holding what the plugin saw (the trigger info, method, content type, query, body,
//! source header), linked to the event's conversation and contact. A JSON body steers it:
//!
//! - `"sleepMs": n`: sleep first (so tests can catch events while they run);
//! - `"sleepAfterMs": n`: sleep after recording `processed` (a run killed then has
//!   left its record, and its repeat leaves a second one);
//! - `"holdUntilState": "name"`: after recording `processed`, wait until the installation's state
//!   `name` exists (a test opens this gate through the API, so it knows the run is still
//!   running until then, whatever the machine's speed);
//! - `"failUntilAttempt": k`: fail (upstream, retryable) on attempts before `k`;
//! - `"reject": true`: fail with invalid-input (not retryable);
//! - `"trap": true`: panic;
//! - `"status": n`: answer with status `n`;
//! - `"message": "text"`: also record a text message in the conversation.

wit_bindgen::generate!({ path: "../../../wit", world: "integration" });

use exports::sluice::integration::plugin::Guest;
use serde_json::{Value, json};
use sluice::integration::client;
use sluice::integration::logger::{self, Level};
use sluice::integration::types::*;

struct TriggerProbe;

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn error(kind: ErrorKind, message: String) -> Error {
    Error { kind, message }
}

impl Guest for TriggerProbe {
    fn definition() -> Definition {
        Definition {
            name: "tprobe".into(),
            version: "0.1.0".into(),
            title: "Trigger probe".into(),
            description: "Records trigger events for tests.".into(),
            configuration_schema: None,
            events: vec![EventDefinition {
                name: "processed".into(),
                title: "Processed".into(),
                description: "The plugin ran a trigger event.".into(),
                schema: r#"{"type":"object"}"#.into(),
            }],
            actions: vec![],
            channels: vec![ChannelDefinition {
                name: "trigger".into(),
                title: "Trigger".into(),
                description: "Conversations of trigger events.".into(),
                messages: vec![MessageDefinition {
                    name: "text".into(),
                    schema: r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#.into(),
                }],
                conversation_tags: vec!["triggerId".into(), "triggerEventId".into(), "session".into()],
                message_tags: vec![],
            }],
            states: vec![],
            user_tags: vec!["email".into(), "phone".into(), "probe".into()],
        }
    }

    fn register(_: Context) -> Result<(), Error> {
        Ok(())
    }

    fn unregister(_: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let Some(info) = ctx.trigger.clone() else {
            return Ok(HttpResponse {
                status: 404,
                headers: vec![],
                body: b"not a trigger event".to_vec(),
            });
        };
        let operation = matches!(ctx.operation, Operation::TriggerEvent);
        let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
        if let Some(ms) = body["sleepMs"].as_u64() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        logger::log(
            Level::Info,
            &format!("trigger-probe runs {} (attempt {})", info.event_id, info.attempt),
        );
        if let Some(until) = body["failUntilAttempt"].as_u64()
            && u64::from(info.attempt) < until
        {
            logger::log(Level::Warn, &format!("failing attempt {} on purpose", info.attempt));
            return Err(error(
                ErrorKind::Upstream,
                format!("failing attempt {} on purpose", info.attempt),
            ));
        }
        if body["reject"] == true {
            return Err(error(ErrorKind::InvalidInput, "rejected on purpose".into()));
        }
        if body["trap"] == true {
            panic!("trapped on purpose");
        }
        let mut message_id = None;
        if let Some(text) = body["message"].as_str() {
            let user_id = match &info.contact_user_id {
                Some(id) => id.clone(),
                None => client::get_or_create_user(&[("probe".to_string(), "sender".to_string())])?.id,
            };
            let message = client::create_message(
                &info.conversation_id,
                &user_id,
                "text",
                &json!({ "text": text }).to_string(),
                &[],
            )?;
            message_id = Some(message.id);
        }
        let seen = json!({
            "operation": if operation { "trigger-event" } else { "other" },
            "triggerId": info.trigger_id,
            "eventId": info.event_id,
            "session": info.session,
            "conversationId": info.conversation_id,
            "contactUserId": info.contact_user_id,
            "attempt": info.attempt,
            "method": request.method,
            "path": request.path,
            "query": request.query,
            "contentType": header(&request, "content-type"),
            "source": header(&request, "x-sluice-trigger-source"),
            "authorization": header(&request, "authorization"),
            "body": String::from_utf8_lossy(&request.body),
            "n": body["n"],
        });
        client::create_event(
            "processed",
            &seen.to_string(),
            Some(&info.conversation_id),
            info.contact_user_id.as_deref(),
            message_id.as_deref(),
        )?;
        if let Some(ms) = body["sleepAfterMs"].as_u64() {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        if let Some(gate) = body["holdUntilState"].as_str() {
            while client::get_state(StateScope::Integration, &ctx.integration_id, gate)?.is_none() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let status = body["status"].as_u64().map(|s| s as u16).unwrap_or(200);
        Ok(HttpResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({ "seen": info.event_id }).to_string().into_bytes(),
        })
    }

    fn call_action(_: Context, name: String, _: String) -> Result<ActionResult, Error> {
        Err(error(ErrorKind::NotFound, format!("no action {name}")))
    }

    fn handle_message(_: Context, channel: String, _: Conversation, _: Message, _: User) -> Result<Ack, Error> {
        Err(error(ErrorKind::NotFound, format!("no outgoing messages on {channel}")))
    }
}

export!(TriggerProbe);
