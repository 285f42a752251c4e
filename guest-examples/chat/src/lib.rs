//! A Slack-like chat integration: the complete example of the Botpress `Integration`
//! class (shared/seeds/001), against a platform with Slack's Web API shape.
//!
//! - `register` creates the platform's webhook for this installation's webhook URL and
//!   keeps its id in integration state `webhook`; `unregister` disables that webhook.
//! - `handler` checks the request signature (constant time, and refuses timestamps more
//!   than 5 minutes old, so requests cannot be replayed), answers `url_verification`
//!   with its challenge, turns a user's message into a conversation (tag `channelId`),
//!   a user (tag `userId`) and a message (tag `messageId`), a shared file into a `file`
//!   message (its name, type and URL), a thread reply sent to the channel too
//!   (`thread_broadcast`) into a message like any other, and a reaction into a
//!   `chat:reactionAdded` event. Messages from bots, edits and the other subtypes are
//!   ignored. The platform sends an event again, with the same `event_id`, when it did
//!   not see a 2xx in time; what an event records is recorded once per `event_id`
//!   (`create-message-once`, `create-event-once`).
//! - channel `channel` delivers the bot's `text`, `image` and `file` messages with
//!   `chat.postMessage` and acks them with the platform's `messageId`.
//! - action `sendMessage` posts a message and costs 1.
//! - when the platform answers 429, the wait it asks for (`Retry-After`) is passed on to
//!   the host, so the bot's call is answered 429 with that `Retry-After`.
//!
//! The webhook body is read into a few typed fields, skipping everything else, so a large
//! body costs about its own size in the plugin's memory.
//!
//! Configuration: `apiUrl` (default `https://slack.com/api`), `signingSecret`,
//! `botToken`. The platform's origin must be in the installation's `allowed-hosts`.

mod platform;
mod signature;

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../wit",
    world: "integration",
});

use exports::sluice::integration::plugin::Guest;
use platform::Platform;
use sluice::integration::client;
use sluice::integration::logger::{self, Level};
use sluice::integration::types::{
    Ack, ActionDefinition, ActionResult, ChannelDefinition, Context, Conversation, Definition, Error, ErrorKind,
    EventDefinition, HttpRequest, HttpResponse, Message, MessageDefinition, StateDefinition, StateScope, User,
};

const DEFAULT_API_URL: &str = "https://slack.com/api";
const CHANNEL: &str = "channel";
const WEBHOOK_STATE: &str = "webhook";

const CONFIGURATION_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "apiUrl": { "type": "string", "minLength": 1, "description": "Base URL of the platform's Web API (default https://slack.com/api)." },
    "signingSecret": { "type": "string", "minLength": 1, "description": "The secret the platform signs webhook calls with." },
    "botToken": { "type": "string", "minLength": 1, "description": "The bot token for the Web API." }
  },
  "required": ["signingSecret", "botToken"],
  "additionalProperties": false
}"#;

const TEXT_SCHEMA: &str = r#"{
  "type": "object",
  "properties": { "text": { "type": "string", "minLength": 1 } },
  "required": ["text"],
  "additionalProperties": false
}"#;

const IMAGE_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "imageUrl": { "type": "string", "minLength": 1 },
    "caption": { "type": "string" }
  },
  "required": ["imageUrl"],
  "additionalProperties": false
}"#;

const FILE_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "fileUrl": { "type": "string", "minLength": 1 },
    "name": { "type": "string" },
    "mimeType": { "type": "string" },
    "title": { "type": "string" },
    "text": { "type": "string" }
  },
  "required": ["fileUrl"],
  "additionalProperties": false
}"#;

const SEND_MESSAGE_INPUT: &str = r#"{
  "type": "object",
  "properties": {
    "channelId": { "type": "string", "minLength": 1 },
    "text": { "type": "string", "minLength": 1 },
    "threadId": { "type": "string" }
  },
  "required": ["channelId", "text"],
  "additionalProperties": false
}"#;

const SEND_MESSAGE_OUTPUT: &str = r#"{
  "type": "object",
  "properties": {
    "messageId": { "type": "string", "minLength": 1 },
    "timestamp": { "type": "string", "minLength": 1 }
  },
  "required": ["messageId", "timestamp"]
}"#;

const REACTION_ADDED_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "reaction": { "type": "string" },
    "channelId": { "type": "string" },
    "userId": { "type": "string" },
    "messageId": { "type": "string" }
  },
  "required": ["reaction", "channelId", "userId", "messageId"],
  "additionalProperties": false
}"#;

const WEBHOOK_STATE_SCHEMA: &str = r#"{
  "type": "object",
  "properties": { "webhookId": { "type": "string", "minLength": 1 } },
  "required": ["webhookId"]
}"#;

struct Chat;

struct Settings {
    platform: Platform,
    signing_secret: String,
}

impl Settings {
    fn from_context(ctx: &Context) -> Settings {
        let config: Value = serde_json::from_str(&ctx.configuration).unwrap_or(Value::Null);
        let text = |key: &str| config[key].as_str().unwrap_or_default().to_string();
        let api_url = config["apiUrl"].as_str().unwrap_or(DEFAULT_API_URL).to_string();
        Settings {
            platform: Platform {
                api_url,
                bot_token: text("botToken"),
            },
            signing_secret: text("signingSecret"),
        }
    }
}

fn error(kind: ErrorKind, message: impl Into<String>) -> Error {
    Error {
        kind,
        message: message.into(),
    }
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn tag<'a>(tags: &'a [(String, String)], name: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn answer(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// Posts a message; answers the platform's id for it (its `ts`).
fn post_message(platform: &Platform, body: Value) -> Result<String, Error> {
    let answer = platform.call("chat.postMessage", &body)?;
    answer["ts"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| error(ErrorKind::Upstream, "the platform's chat.postMessage answer has no ts"))
}

/// What the platform posts to the webhook URL: only the fields the plugin uses are read.
#[derive(Deserialize)]
struct Callback {
    #[serde(rename = "type")]
    kind: Option<String>,
    challenge: Option<Value>,
    /// The platform's id of this delivery, the same when it is sent again.
    event_id: Option<String>,
    event: Option<Event>,
}

#[derive(Deserialize, Default)]
struct Event {
    #[serde(rename = "type")]
    kind: Option<String>,
    subtype: Option<String>,
    bot_id: Option<IgnoredAny>,
    channel: Option<String>,
    user: Option<String>,
    text: Option<String>,
    ts: Option<String>,
    thread_ts: Option<String>,
    #[serde(default)]
    files: Vec<SharedFile>,
    reaction: Option<String>,
    item: Option<ReactionItem>,
}

#[derive(Deserialize)]
struct SharedFile {
    name: Option<String>,
    title: Option<String>,
    mimetype: Option<String>,
    url_private: Option<String>,
    permalink: Option<String>,
}

#[derive(Deserialize)]
struct ReactionItem {
    channel: Option<String>,
    ts: Option<String>,
}

/// Records an incoming message, once per `dedupe` key when the delivery has one.
fn create_message(
    dedupe: Option<&str>,
    conversation_id: &str,
    user_id: &str,
    message_type: &str,
    payload: &Value,
    tags: &[(String, String)],
) -> Result<(), Error> {
    let payload = payload.to_string();
    match dedupe {
        Some(key) => client::create_message_once(key, conversation_id, user_id, message_type, &payload, tags)?,
        None => client::create_message(conversation_id, user_id, message_type, &payload, tags)?,
    };
    Ok(())
}

/// A user's message: its conversation, user and message, tagged with the platform's ids;
/// a shared file is a `file` message (one per file, with the text on the first).
/// `Ok(false)` when there was nothing to record (a message without text or files).
fn record_message(event: &Event, event_id: Option<&str>) -> Result<bool, Error> {
    let (Some(channel_id), Some(user_id), Some(ts)) = (&event.channel, &event.user, &event.ts) else {
        return Err(error(
            ErrorKind::InvalidInput,
            "a message event needs channel, user and ts",
        ));
    };
    let text = event.text.as_deref().unwrap_or_default();
    if text.is_empty() && event.files.is_empty() {
        return Ok(false);
    }
    let conversation = client::get_or_create_conversation(CHANNEL, &[("channelId".into(), channel_id.clone())])?;
    let user = client::get_or_create_user(&[("userId".into(), user_id.clone())])?;
    let mut tags = vec![("messageId".to_string(), ts.clone())];
    if let Some(thread) = event.thread_ts.as_ref().filter(|t| *t != ts) {
        tags.push(("threadId".into(), thread.clone()));
    }
    if event.files.is_empty() {
        let payload = json!({ "text": text });
        create_message(event_id, &conversation.id, &user.id, "text", &payload, &tags)?;
        return Ok(true);
    }
    for (index, file) in event.files.iter().enumerate() {
        let Some(url) = file.url_private.as_ref().or(file.permalink.as_ref()) else {
            continue;
        };
        let mut payload = json!({ "fileUrl": url });
        for (key, value) in [
            ("name", &file.name),
            ("mimeType", &file.mimetype),
            ("title", &file.title),
        ] {
            if let Some(value) = value {
                payload[key] = Value::String(value.clone());
            }
        }
        if index == 0 && !text.is_empty() {
            payload["text"] = Value::String(text.into());
        }
        let key = event_id.map(|id| format!("{id}/file/{index}"));
        create_message(key.as_deref(), &conversation.id, &user.id, "file", &payload, &tags)?;
    }
    Ok(true)
}

/// A reaction: a `reactionAdded` event linked to its conversation and user.
fn record_reaction(event: &Event, event_id: Option<&str>) -> Result<(), Error> {
    let item = event.item.as_ref();
    let (Some(reaction), Some(user_id), Some(channel_id), Some(ts)) = (
        &event.reaction,
        &event.user,
        item.and_then(|i| i.channel.as_ref()),
        item.and_then(|i| i.ts.as_ref()),
    ) else {
        return Err(error(
            ErrorKind::InvalidInput,
            "a reaction event needs reaction, user and item",
        ));
    };
    let conversation = client::get_or_create_conversation(CHANNEL, &[("channelId".into(), channel_id.clone())])?;
    let user = client::get_or_create_user(&[("userId".into(), user_id.clone())])?;
    let payload =
        json!({ "reaction": reaction, "channelId": channel_id, "userId": user_id, "messageId": ts }).to_string();
    let (conversation, user) = (Some(conversation.id.as_str()), Some(user.id.as_str()));
    match event_id {
        Some(key) => client::create_event_once(key, "reactionAdded", &payload, conversation, user, None)?,
        None => client::create_event("reactionAdded", &payload, conversation, user, None)?,
    };
    Ok(())
}

impl Guest for Chat {
    fn definition() -> Definition {
        Definition {
            name: "chat".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "Chat".into(),
            description: "A Slack-like chat platform: conversations in channels, messages both ways.".into(),
            configuration_schema: Some(CONFIGURATION_SCHEMA.into()),
            events: vec![EventDefinition {
                name: "reactionAdded".into(),
                title: "Reaction added".into(),
                description: "Someone reacted to a message.".into(),
                schema: REACTION_ADDED_SCHEMA.into(),
            }],
            actions: vec![ActionDefinition {
                name: "sendMessage".into(),
                title: "Send a message".into(),
                description: "Posts a text message in a channel of the platform.".into(),
                input_schema: SEND_MESSAGE_INPUT.into(),
                output_schema: SEND_MESSAGE_OUTPUT.into(),
            }],
            channels: vec![ChannelDefinition {
                name: CHANNEL.into(),
                title: "Channel".into(),
                description: "A channel of the platform.".into(),
                messages: vec![
                    MessageDefinition {
                        name: "text".into(),
                        schema: TEXT_SCHEMA.into(),
                    },
                    MessageDefinition {
                        name: "image".into(),
                        schema: IMAGE_SCHEMA.into(),
                    },
                    MessageDefinition {
                        name: "file".into(),
                        schema: FILE_SCHEMA.into(),
                    },
                ],
                conversation_tags: vec!["channelId".into()],
                message_tags: vec!["messageId".into(), "threadId".into()],
            }],
            states: vec![StateDefinition {
                name: WEBHOOK_STATE.into(),
                scope: StateScope::Integration,
                schema: WEBHOOK_STATE_SCHEMA.into(),
            }],
            user_tags: vec!["userId".into()],
        }
    }

    fn register(ctx: Context) -> Result<(), Error> {
        let settings = Settings::from_context(&ctx);
        let created = settings.platform.call(
            "webhooks.create",
            &json!({ "url": ctx.webhook_url, "events": ["message", "reaction_added"] }),
        )?;
        let Some(webhook_id) = created["id"].as_str() else {
            return Err(error(
                ErrorKind::Upstream,
                "the platform's webhooks.create answer has no id",
            ));
        };
        client::set_state(
            StateScope::Integration,
            &ctx.integration_id,
            WEBHOOK_STATE,
            &json!({ "webhookId": webhook_id }).to_string(),
        )?;
        logger::log(
            Level::Info,
            &format!("webhook {webhook_id} sends to {}", ctx.webhook_url),
        );
        Ok(())
    }

    fn unregister(ctx: Context) -> Result<(), Error> {
        let Some(state) = client::get_state(StateScope::Integration, &ctx.integration_id, WEBHOOK_STATE)? else {
            logger::log(Level::Warn, "no webhook was registered; nothing to disable");
            return Ok(());
        };
        let state: Value = serde_json::from_str(&state).unwrap_or(Value::Null);
        if let Some(webhook_id) = state["webhookId"].as_str() {
            let settings = Settings::from_context(&ctx);
            settings
                .platform
                .call("webhooks.update", &json!({ "id": webhook_id, "enabled": false }))?;
            logger::log(Level::Info, &format!("webhook {webhook_id} disabled"));
        }
        client::delete_state(StateScope::Integration, &ctx.integration_id, WEBHOOK_STATE)
    }

    fn handler(ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let settings = Settings::from_context(&ctx);
        if request.method != "POST" {
            return Ok(answer(405, json!({ "error": "webhook calls are POST requests" })));
        }
        if let Err(refusal) = signature::verify(
            &settings.signing_secret,
            header(&request, "x-slack-request-timestamp"),
            header(&request, "x-slack-signature"),
            &request.body,
            now_seconds(),
        ) {
            logger::log(Level::Warn, &format!("refused a webhook call: {}", refusal.message()));
            return Ok(answer(401, json!({ "error": refusal.message() })));
        }
        let callback = match serde_json::from_slice::<Callback>(&request.body) {
            Ok(callback) => callback,
            Err(problem) => {
                return Ok(answer(
                    400,
                    json!({ "error": format!("the body is not an event callback: {problem}") }),
                ));
            }
        };
        match callback.kind.as_deref() {
            Some("url_verification") => {
                return Ok(answer(200, json!({ "challenge": callback.challenge })));
            }
            Some("event_callback") => {}
            other => return Ok(answer(200, json!({ "ok": true, "ignored": other }))),
        }
        let event = callback.event.unwrap_or_default();
        let event_id = callback.event_id.as_deref().filter(|id| !id.is_empty());
        let outcome = match event.kind.as_deref() {
            // Bots' messages (ours included) are not someone talking to the bot, and edits,
            // joins and the other subtypes are not new messages; a file share and a thread
            // reply sent to the channel too are.
            Some("message")
                if event.bot_id.is_some()
                    || !matches!(event.subtype.as_deref(), None | Some("file_share" | "thread_broadcast")) =>
            {
                return Ok(answer(200, json!({ "ok": true, "ignored": "not a user's message" })));
            }
            Some("message") => match record_message(&event, event_id) {
                Ok(false) => {
                    return Ok(answer(
                        200,
                        json!({ "ok": true, "ignored": "a message without text or files" }),
                    ));
                }
                other => other.map(|_| ()),
            },
            Some("reaction_added") => record_reaction(&event, event_id),
            other => return Ok(answer(200, json!({ "ok": true, "ignored": other }))),
        };
        match outcome {
            Ok(()) => Ok(answer(200, json!({ "ok": true }))),
            Err(problem) if problem.kind == ErrorKind::InvalidInput => {
                Ok(answer(400, json!({ "error": problem.message })))
            }
            Err(problem) => Err(problem),
        }
    }

    fn call_action(ctx: Context, name: String, input: String) -> Result<ActionResult, Error> {
        if name != "sendMessage" {
            return Err(error(
                ErrorKind::NotFound,
                format!("the chat integration has no action {name}"),
            ));
        }
        let input: Value = serde_json::from_str(&input).map_err(|e| error(ErrorKind::InvalidInput, e.to_string()))?;
        let mut body = json!({ "channel": input["channelId"], "text": input["text"] });
        if let Some(thread) = input["threadId"].as_str() {
            body["thread_ts"] = Value::String(thread.into());
        }
        let settings = Settings::from_context(&ctx);
        let ts = post_message(&settings.platform, body)?;
        Ok(ActionResult {
            output: json!({ "messageId": ts, "timestamp": ts }).to_string(),
            cost: Some(1.0),
        })
    }

    fn handle_message(
        ctx: Context,
        channel: String,
        conversation: Conversation,
        message: Message,
        _user: User,
    ) -> Result<Ack, Error> {
        if channel != CHANNEL {
            return Err(error(
                ErrorKind::NotFound,
                format!("the chat integration has no channel {channel}"),
            ));
        }
        let Some(channel_id) = tag(&conversation.tags, "channelId") else {
            return Err(error(
                ErrorKind::InvalidInput,
                format!("conversation {} has no channelId tag to send to", conversation.id),
            ));
        };
        let payload: Value = serde_json::from_str(&message.payload).unwrap_or(Value::Null);
        let mut body = match message.type_.as_str() {
            "text" => json!({ "channel": channel_id, "text": payload["text"] }),
            "image" => json!({
                "channel": channel_id,
                "text": payload["caption"].as_str().filter(|c| !c.is_empty()).unwrap_or("Image"),
                "attachments": [{ "image_url": payload["imageUrl"] }],
            }),
            "file" => {
                let name = ["title", "name"]
                    .iter()
                    .find_map(|key| payload[*key].as_str().filter(|v| !v.is_empty()))
                    .unwrap_or("File");
                json!({
                    "channel": channel_id,
                    "text": payload["text"].as_str().filter(|t| !t.is_empty()).unwrap_or(name),
                    "attachments": [{ "title": name, "title_link": payload["fileUrl"] }],
                })
            }
            other => {
                return Err(error(
                    ErrorKind::InvalidInput,
                    format!("channel {channel} has no message type {other}"),
                ));
            }
        };
        if let Some(thread) = tag(&message.tags, "threadId") {
            body["thread_ts"] = Value::String(thread.into());
        }
        let settings = Settings::from_context(&ctx);
        let ts = post_message(&settings.platform, body)?;
        Ok(Ack {
            tags: vec![("messageId".into(), ts)],
        })
    }
}

export!(Chat);
