//! The Botpress Webhook integration (shared/seeds/003): every request sent to the
//! installation's webhook URL becomes a `webhook:event` whose payload holds the request.
//!
//! Configuration (the `[configuration]` table of the sidecar `webhook.toml`):
//! - `secret` (optional): when set, requests must carry it in the `x-bp-secret` header.
//! - `allowedOrigins` (optional, default empty): origins allowed to call from a browser.
//!   With an empty list every request that carries an `Origin` header is refused.

use serde_json::value::RawValue;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

wit_bindgen::generate!({
    path: "../../wit",
    world: "integration",
});

use exports::sluice::integration::plugin::Guest;
use sluice::integration::client;
use sluice::integration::logger::{self, Level};
use sluice::integration::types::{
    Ack, ActionResult, Context, Conversation, Definition, Error, ErrorKind, EventDefinition, HttpRequest, HttpResponse,
    Message, User,
};

const SECRET_HEADER: &str = "x-bp-secret";

const CONFIGURATION_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "secret": { "type": "string", "description": "Requests must carry this value in the x-bp-secret header. Leave empty to accept every request." },
    "allowedOrigins": { "type": "array", "items": { "type": "string" }, "description": "Origins allowed to call from a browser (CORS). Empty blocks every browser." }
  },
  "additionalProperties": false
}"#;

const EVENT_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "body": { "description": "The body: parsed JSON when it parses, else the text" },
    "query": { "type": "object" },
    "headers": { "type": "object", "additionalProperties": { "type": "string" } },
    "method": { "type": "string" },
    "path": { "type": "string" }
  },
  "required": ["body", "query", "headers", "method", "path"],
  "additionalProperties": false
}"#;

struct Webhook;

#[derive(Default)]
struct Settings {
    secret: Option<String>,
    allowed_origins: Vec<String>,
}

impl Settings {
    fn from_context(ctx: &Context) -> Settings {
        let config: Value = serde_json::from_str(&ctx.configuration).unwrap_or(Value::Null);
        let secret = config["secret"].as_str().filter(|s| !s.is_empty()).map(String::from);
        let allowed_origins = config["allowedOrigins"]
            .as_array()
            .map(|list| list.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        Settings {
            secret,
            allowed_origins,
        }
    }
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn response(status: u16, headers: Vec<(String, String)>, body: Value) -> HttpResponse {
    let mut headers = headers;
    headers.push(("content-type".into(), "application/json".into()));
    HttpResponse {
        status,
        headers,
        body: body.to_string().into_bytes(),
    }
}

fn refusal(status: u16, message: &str) -> HttpResponse {
    response(status, Vec::new(), json!({ "error": message }))
}

/// Answers the CORS side of a request: `Err` is the refusal to send, `Ok` the headers to
/// add to the answer (none when the request did not come from a browser).
fn cors(settings: &Settings, request: &HttpRequest) -> Result<Vec<(String, String)>, HttpResponse> {
    let Some(origin) = header(request, "origin") else {
        return Ok(Vec::new());
    };
    if !settings
        .allowed_origins
        .iter()
        .any(|allowed| allowed == origin || allowed == "*")
    {
        return Err(refusal(403, &format!("origin {origin} is not in allowedOrigins")));
    }
    Ok(vec![
        ("access-control-allow-origin".into(), origin.to_string()),
        ("vary".into(), "origin".into()),
    ])
}

fn secret_matches(settings: &Settings, request: &HttpRequest) -> bool {
    match &settings.secret {
        None => true,
        Some(expected) => {
            header(request, SECRET_HEADER).is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
        }
    }
}

fn query_object(query: &str) -> Map<String, Value> {
    let mut object = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = Value::String(value.into_owned());
        match object.get_mut(key.as_ref()) {
            None => {
                object.insert(key.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    object
}

fn headers_object(request: &HttpRequest) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, value) in &request.headers {
        let name = name.to_ascii_lowercase();
        if name == SECRET_HEADER {
            continue;
        }
        match object.get_mut(&name) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(value);
            }
            _ => {
                object.insert(name, Value::String(value.clone()));
            }
        }
    }
    object
}

/// The event payload as JSON text: the body is its JSON when it parses, else its text.
/// A JSON body is checked and copied in as it came, never read into a tree of values, so
/// that a body of many small records costs its size twice, not many times over.
fn payload_text(request: &HttpRequest) -> String {
    let head = json!({
        "query": query_object(&request.query),
        "headers": headers_object(request),
        "method": request.method,
        "path": request.path,
    })
    .to_string();
    let mut payload = String::with_capacity(head.len() + request.body.len() + 16);
    payload.push_str("{\"body\":");
    let json = std::str::from_utf8(&request.body)
        .ok()
        .and_then(|text| serde_json::from_str::<&RawValue>(text).ok());
    match json {
        Some(raw) => payload.push_str(raw.get()),
        None => payload.push_str(&Value::String(String::from_utf8_lossy(&request.body).into_owned()).to_string()),
    }
    payload.push(',');
    payload.push_str(&head[1..]);
    payload
}

impl Guest for Webhook {
    fn definition() -> Definition {
        Definition {
            name: "webhook".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "Webhook".into(),
            description: "Receive data from any service through a personal webhook URL.".into(),
            configuration_schema: Some(CONFIGURATION_SCHEMA.into()),
            events: vec![EventDefinition {
                name: "event".into(),
                title: "Event".into(),
                description: "The webhook received a request.".into(),
                schema: EVENT_SCHEMA.into(),
            }],
            actions: Vec::new(),
            channels: Vec::new(),
            states: Vec::new(),
            user_tags: Vec::new(),
        }
    }

    fn register(ctx: Context) -> Result<(), Error> {
        logger::log(Level::Info, &format!("webhook ready at {}", ctx.webhook_url));
        Ok(())
    }

    fn unregister(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let settings = Settings::from_context(&ctx);
        let cors_headers = match cors(&settings, &request) {
            Ok(headers) => headers,
            Err(refused) => return Ok(refused),
        };
        if request.method == "OPTIONS" && header(&request, "access-control-request-method").is_some() {
            let mut headers = cors_headers;
            headers.push((
                "access-control-allow-methods".into(),
                "GET, POST, PUT, PATCH, DELETE, OPTIONS".into(),
            ));
            let requested = header(&request, "access-control-request-headers").unwrap_or("content-type, x-bp-secret");
            headers.push(("access-control-allow-headers".into(), requested.to_string()));
            headers.push(("access-control-max-age".into(), "600".into()));
            return Ok(HttpResponse {
                status: 204,
                headers,
                body: Vec::new(),
            });
        }
        if !secret_matches(&settings, &request) {
            logger::log(Level::Warn, "refused a request without the right x-bp-secret");
            return Ok(refusal(401, "missing or wrong x-bp-secret header"));
        }

        let event = client::create_event("event", &payload_text(&request), None, None, None)?;
        Ok(response(200, cors_headers, json!({ "ok": true, "eventId": event.id })))
    }

    fn call_action(_ctx: Context, name: String, _input: String) -> Result<ActionResult, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("the webhook integration has no action {name}"),
        })
    }

    fn handle_message(
        _ctx: Context,
        channel: String,
        _conversation: Conversation,
        _message: Message,
        _user: User,
    ) -> Result<Ack, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("the webhook integration has no channel {channel}"),
        })
    }
}

export!(Webhook);
