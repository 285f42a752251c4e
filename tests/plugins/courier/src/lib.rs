//! A test plugin for the bot API: actions that behave well and badly, a channel whose
//! acks the test controls, and outbound HTTP through `wasi:http/outgoing-handler`.
//!
//! Actions:
//! - `echo` `{text, cost?}` answers `{text}` and costs `cost` when given;
//! - `broken` answers `{"count": "many"}`, which breaks its own output schema;
//! - `fail` `{kind}` answers an error of that kind;
//! - `fetch` `{url, method?, body?, size?, first_byte_timeout_ms?}` sends the request (its
//!   body `body`, or `size` bytes of `x`) and answers `{status, body}`.
//!
//! Channel `notes`, message type `note` `{text, ack?, fail?}`: `handle-message` acks
//! with the tags in `ack`, or fails with the kind in `fail`.
//!
//! State `progress` of a conversation: `{step}`, a whole number from 0, required.

wit_bindgen::generate!({ path: "../../../wit", world: "integration" });

use exports::sluice::integration::plugin::Guest;
use serde_json::{Value, json};
use sluice::integration::types::*;
use wstd::http::{Body, Client, ErrorCode, Request};

struct Courier;

fn error(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error {
        kind,
        message: message.into(),
    }
}

fn kind(name: &str) -> ErrorKind {
    match name {
        "invalid-input" => ErrorKind::InvalidInput,
        "not-found" => ErrorKind::NotFound,
        "forbidden" => ErrorKind::Forbidden,
        "upstream" => ErrorKind::Upstream,
        _ => ErrorKind::Internal,
    }
}

fn fetch(input: &Value) -> Result<Value, Error> {
    let url = input["url"].as_str().unwrap_or_default().to_string();
    let method = input["method"].as_str().unwrap_or("GET").to_string();
    let body = match input["size"].as_u64() {
        Some(size) => "x".repeat(size as usize),
        None => input["body"].as_str().unwrap_or_default().to_string(),
    };
    let sent = wstd::runtime::block_on(async {
        let request = Request::builder()
            .method(method.as_str())
            .uri(&url)
            .header("content-type", "application/json")
            .body(Body::from(body))?;
        let mut client = Client::new();
        if let Some(ms) = input["first_byte_timeout_ms"].as_u64() {
            client.set_first_byte_timeout(std::time::Duration::from_millis(ms));
        }
        let mut response = client.send(request).await?;
        let status = response.status().as_u16();
        let text = String::from_utf8_lossy(response.body_mut().contents().await?).into_owned();
        wstd::http::Result::Ok((status, text))
    });
    match sent {
        Ok((status, body)) => Ok(json!({ "status": status, "body": body })),
        Err(failure) => Err(match failure.downcast_ref::<ErrorCode>() {
            Some(ErrorCode::HttpRequestDenied) => error(
                ErrorKind::Forbidden,
                format!("HttpRequestDenied: the host did not let the request to {url} out"),
            ),
            Some(code) => error(ErrorKind::Upstream, format!("request to {url} failed: {code:?}")),
            None => error(ErrorKind::Upstream, format!("request to {url} failed: {failure:#}")),
        }),
    }
}

impl Guest for Courier {
    fn definition() -> Definition {
        let action = |name: &str, input: &str, output: &str| ActionDefinition {
            name: name.into(),
            title: name.into(),
            description: String::new(),
            input_schema: input.into(),
            output_schema: output.into(),
        };
        Definition {
            name: "courier".into(),
            version: "0.1.0".into(),
            title: "Courier".into(),
            description: "Actions and a channel for the bot API tests.".into(),
            configuration_schema: None,
            events: vec![],
            actions: vec![
                action(
                    "echo",
                    r#"{"type":"object","properties":{"text":{"type":"string"},"cost":{"type":"number"}},"required":["text"],"additionalProperties":false}"#,
                    r#"{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]}"#,
                ),
                action(
                    "broken",
                    r#"{"type":"object"}"#,
                    r#"{"type":"object","properties":{"count":{"type":"integer"}},"required":["count"]}"#,
                ),
                action(
                    "fail",
                    r#"{"type":"object","properties":{"kind":{"type":"string"}},"required":["kind"]}"#,
                    r#"{"type":"object"}"#,
                ),
                action(
                    "fetch",
                    r#"{"type":"object","properties":{"url":{"type":"string"},"method":{"type":"string"},"body":{"type":"string"},"size":{"type":"integer","minimum":0},"first_byte_timeout_ms":{"type":"integer","minimum":0}},"required":["url"]}"#,
                    r#"{"type":"object","properties":{"status":{"type":"integer"},"body":{"type":"string"}},"required":["status","body"]}"#,
                ),
            ],
            channels: vec![ChannelDefinition {
                name: "notes".into(),
                title: "Notes".into(),
                description: String::new(),
                messages: vec![MessageDefinition {
                    name: "note".into(),
                    schema: r#"{"type":"object","properties":{"text":{"type":"string"},"ack":{"type":"object","additionalProperties":{"type":"string"}},"fail":{"type":"string"}},"required":["text"]}"#.into(),
                }],
                conversation_tags: vec!["topic".into()],
                message_tags: vec!["noteId".into()],
            }],
            states: vec![StateDefinition {
                name: "progress".into(),
                scope: StateScope::Conversation,
                schema: r#"{"type": "object", "properties": {"step": {"type": "integer", "minimum": 0}}, "required": ["step"]}"#
                    .into(),
            }],
            user_tags: vec!["name".into()],
        }
    }

    fn register(_: Context) -> Result<(), Error> {
        Ok(())
    }

    fn unregister(_: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(_: Context, _: HttpRequest) -> Result<HttpResponse, Error> {
        Ok(HttpResponse {
            status: 200,
            headers: vec![],
            body: b"courier".to_vec(),
        })
    }

    fn call_action(_: Context, name: String, input: String) -> Result<ActionResult, Error> {
        let input: Value = serde_json::from_str(&input).map_err(|e| error(ErrorKind::InvalidInput, e.to_string()))?;
        let (output, cost) = match name.as_str() {
            "echo" => (json!({ "text": input["text"] }), input["cost"].as_f64()),
            "broken" => (json!({ "count": "many" }), None),
            "fail" => {
                let name = input["kind"].as_str().unwrap_or("internal");
                return Err(error(kind(name), format!("failing as asked: {name}")));
            }
            "fetch" => (fetch(&input)?, None),
            other => return Err(error(ErrorKind::NotFound, format!("no action {other}"))),
        };
        Ok(ActionResult {
            output: output.to_string(),
            cost,
        })
    }

    fn handle_message(_: Context, _: String, _: Conversation, message: Message, _: User) -> Result<Ack, Error> {
        let payload: Value = serde_json::from_str(&message.payload).unwrap_or(Value::Null);
        if let Some(name) = payload["fail"].as_str() {
            return Err(error(
                kind(name),
                format!("the platform did not take the note ({name})"),
            ));
        }
        let tags = payload["ack"]
            .as_object()
            .map(|ack| {
                ack.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(Ack { tags })
    }
}

export!(Courier);
