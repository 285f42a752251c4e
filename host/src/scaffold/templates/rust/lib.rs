//! {{name}}: a sluice integration plugin. Every request sent to the installation's
//! webhook URL becomes a `{{name}}:received` event; change `handler` to do what your
//! integration needs, and declare its events, actions and channels in `definition`.

use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "wit",
    world: "integration",
});

use exports::sluice::integration::plugin::Guest;
use sluice::integration::client;
use sluice::integration::logger::{self, Level};
use sluice::integration::types::{
    Ack, ActionResult, Context, Conversation, Definition, Error, ErrorKind, EventDefinition, HttpRequest, HttpResponse,
    Message, User,
};

const RECEIVED_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "method": { "type": "string" },
    "path": { "type": "string" },
    "body": { "description": "The body: parsed JSON when it parses, else the text" }
  },
  "required": ["method", "path", "body"]
}"#;

struct Plugin;

impl Guest for Plugin {
    fn definition() -> Definition {
        Definition {
            name: "{{name}}".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "{{name}}".into(),
            description: "Records every request sent to its webhook URL.".into(),
            configuration_schema: None,
            events: vec![EventDefinition {
                name: "received".into(),
                title: "Received".into(),
                description: "The webhook received a request.".into(),
                schema: RECEIVED_SCHEMA.into(),
            }],
            actions: Vec::new(),
            channels: Vec::new(),
            states: Vec::new(),
            user_tags: Vec::new(),
        }
    }

    fn register(ctx: Context) -> Result<(), Error> {
        logger::log(Level::Info, &format!("{{name}} ready at {}", ctx.webhook_url));
        Ok(())
    }

    fn unregister(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(_ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let body = serde_json::from_slice::<Value>(&request.body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&request.body).into_owned()));
        let payload = json!({ "method": request.method, "path": request.path, "body": body });
        let event = client::create_event("received", &payload.to_string(), None, None, None)?;
        Ok(HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: json!({ "ok": true, "eventId": event.id }).to_string().into_bytes(),
        })
    }

    fn call_action(_ctx: Context, name: String, _input: String) -> Result<ActionResult, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("{{name}} has no action {name}"),
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
            message: format!("{{name}} has no channel {channel}"),
        })
    }
}

export!(Plugin);
