//! A test plugin that exposes the host imports over its webhook, so black-box tests can
//! drive them: state, events, logs, the context. It requires a `name` in its
//! configuration, to test how the host treats missing configuration. `unregister` records
//! the event `probe:unregistered`, so tests can see that it ran.
//!
//! Routes (the path below the webhook URL):
//! - `GET|PUT|DELETE /state/{integration|conversation|user}/{id}/{name}` (`self` as id
//!   means this installation's integration id): get, set (the body) or delete state;
//! - `POST /event/{type}`: create an event with the body as payload;
//! - `GET /context`: the context as JSON;
//! - `POST /log`: writes the body to the logger, stdout and stderr;
//! - `GET /sandbox?connect=ADDR`: what the sandbox grants: environment, arguments, files,
//!   and whether a TCP connection to ADDR can be opened.

wit_bindgen::generate!({ path: "../../../wit", world: "integration" });

use exports::sluice::integration::plugin::Guest;
use sluice::integration::client;
use sluice::integration::logger::{self, Level};
use sluice::integration::types::*;

struct Probe;

fn answer(status: u16, body: impl Into<Vec<u8>>) -> Result<HttpResponse, Error> {
    Ok(HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.into(),
    })
}

fn error_json(error: &Error) -> String {
    let kind = match error.kind {
        ErrorKind::InvalidInput => "invalid-input",
        ErrorKind::NotFound => "not-found",
        ErrorKind::Forbidden => "forbidden",
        ErrorKind::Upstream => "upstream",
        ErrorKind::Internal => "internal",
    };
    format!("{{\"kind\":\"{kind}\",\"message\":{:?}}}", error.message)
}

fn scope(name: &str) -> Option<StateScope> {
    match name {
        "integration" => Some(StateScope::Integration),
        "conversation" => Some(StateScope::Conversation),
        "user" => Some(StateScope::User),
        _ => None,
    }
}

fn context_json(ctx: &Context) -> String {
    format!(
        "{{\"botId\":{:?},\"integrationId\":{:?},\"integrationAlias\":{:?},\"webhookId\":{:?},\"webhookUrl\":{:?},\"configuration\":{}}}",
        ctx.bot_id, ctx.integration_id, ctx.integration_alias, ctx.webhook_id, ctx.webhook_url, ctx.configuration
    )
}

impl Guest for Probe {
    fn definition() -> Definition {
        Definition {
            name: "probe".into(),
            version: "0.1.0".into(),
            title: "Probe".into(),
            description: "Drives the host imports for tests.".into(),
            configuration_schema: Some(
                r#"{"type":"object","properties":{"name":{"type":"string","minLength":1}},"required":["name"]}"#.into(),
            ),
            events: vec![
                EventDefinition {
                    name: "thing".into(),
                    title: "Thing".into(),
                    description: "Something happened.".into(),
                    schema: r#"{"type":"object","properties":{"count":{"type":"integer"}},"required":["count"],"additionalProperties":false}"#.into(),
                },
                EventDefinition {
                    name: "unregistered".into(),
                    title: "Unregistered".into(),
                    description: "unregister ran.".into(),
                    schema: r#"{"type":"object"}"#.into(),
                },
            ],
            actions: vec![],
            channels: vec![],
            states: vec![],
            user_tags: vec![],
        }
    }

    fn register(ctx: Context) -> Result<(), Error> {
        let registrations = client::get_state(StateScope::Integration, &ctx.integration_id, "registrations")?
            .and_then(|s| {
                s.trim_start_matches("{\"count\":")
                    .trim_end_matches('}')
                    .parse::<u32>()
                    .ok()
            })
            .unwrap_or(0);
        client::set_state(
            StateScope::Integration,
            &ctx.integration_id,
            "registrations",
            &format!("{{\"count\":{}}}", registrations + 1),
        )?;
        client::set_state(
            StateScope::Integration,
            &ctx.integration_id,
            "registered-with",
            &context_json(&ctx),
        )
    }

    fn unregister(_ctx: Context) -> Result<(), Error> {
        client::create_event("unregistered", "{}", None, None, None).map(drop)
    }

    fn handler(ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
        let body = String::from_utf8_lossy(&request.body).into_owned();
        match (request.method.as_str(), parts.as_slice()) {
            (method, ["state", scope_name, id, name]) => {
                let Some(scope) = scope(scope_name) else {
                    return answer(400, "{\"error\":\"bad scope\"}");
                };
                let id = if *id == "self" { ctx.integration_id.as_str() } else { id };
                let outcome = match method {
                    "GET" => client::get_state(scope, id, name).map(|found| match found {
                        Some(payload) => (200, payload),
                        None => (404, "{\"error\":\"no such state\"}".into()),
                    }),
                    "DELETE" => client::delete_state(scope, id, name).map(|()| (204, String::new())),
                    _ => client::set_state(scope, id, name, &body).map(|()| (200, body.clone())),
                };
                match outcome {
                    Ok((status, payload)) => answer(status, payload),
                    Err(error) => answer(422, error_json(&error)),
                }
            }
            ("POST", ["event", kind]) => match client::create_event(kind, &body, None, None, None) {
                Ok(event) => answer(200, format!("{{\"id\":{:?},\"type\":{:?}}}", event.id, event.type_)),
                Err(error) => answer(422, error_json(&error)),
            },
            ("GET", ["context"]) => answer(200, context_json(&ctx)),
            ("GET", ["sandbox"]) => {
                let target = request.query.strip_prefix("connect=").unwrap_or("127.0.0.1:9");
                let connect = match std::net::TcpStream::connect(target) {
                    Ok(_) => "connected".to_string(),
                    Err(error) => format!("refused: {error}"),
                };
                let files = match std::fs::read_dir("/") {
                    Ok(entries) => format!("listed {} entries", entries.count()),
                    Err(error) => format!("refused: {error}"),
                };
                answer(
                    200,
                    format!(
                        "{{\"env\":{},\"args\":{},\"files\":{:?},\"connect\":{:?}}}",
                        std::env::vars().count(),
                        std::env::args().count(),
                        files,
                        connect
                    ),
                )
            }
            ("POST", ["log"]) => {
                logger::log(Level::Warn, &format!("logger: {body}"));
                println!("stdout: {body}");
                eprintln!("stderr: {body}");
                answer(200, "{}")
            }
            _ => answer(404, "{\"error\":\"no such probe route\"}"),
        }
    }

    fn call_action(_ctx: Context, name: String, _input: String) -> Result<ActionResult, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("no action {name}"),
        })
    }

    fn handle_message(_: Context, channel: String, _: Conversation, _: Message, _: User) -> Result<Ack, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("no channel {channel}"),
        })
    }
}

export!(Probe);
