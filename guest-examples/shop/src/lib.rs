//! The Shopify integration of the Botpress "Integration Events" guide (shared/seeds/000):
//! Shopify calls the webhook URL for every shop event; an `orders/create` call becomes a
//! `shop:newOrderCreated` event carrying the order's main fields and its full body.
//!
//! Every call must be signed: `x-shopify-hmac-sha256` is the base64 HMAC-SHA256 of the
//! raw body with the configured `webhookSecret`, compared in constant time; anything
//! else is answered 401 and records nothing. Unlike the guide's example (whose
//! `if (topic = 'orders/create')` assigns instead of comparing, so it fires on every
//! topic), only `orders/create` fires the event; other topics are acknowledged with 200.
//!
//! Shopify sends a delivery again, with the same `X-Shopify-Webhook-Id`, when it did not
//! see a 2xx in time; the event is recorded under that id with `create-event-once`, so a
//! retried order is recorded once and answered like the first delivery.
//!
//! Real orders lack fields now and then (`confirmation_number` is newer than many shops'
//! API versions): only the order's `id` is needed; every other field is copied when
//! present, and the event's schema marks it optional. The order is read field by field
//! at its top level and kept as the raw text it came in, never as a tree of values, so
//! whatever body the default limits admit fits the plugin's memory.
//!
//! Configuration: `shopName` (shown in every event) and `webhookSecret`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use std::collections::BTreeMap;

use serde_json::value::RawValue;
use serde_json::{Value, json};
use sha2::Sha256;

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

const SIGNATURE_HEADER: &str = "x-shopify-hmac-sha256";
const TOPIC_HEADER: &str = "x-shopify-topic";
const WEBHOOK_ID_HEADER: &str = "x-shopify-webhook-id";
const ORDER_CREATED_TOPIC: &str = "orders/create";

const CONFIGURATION_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "shopName": { "type": "string", "minLength": 1, "description": "The shop's name, shown in every event." },
    "webhookSecret": { "type": "string", "minLength": 1, "description": "The secret Shopify signs its webhooks with." }
  },
  "required": ["shopName", "webhookSecret"],
  "additionalProperties": false
}"#;

/// The guide's `newOrderCreated` schema, as JSON Schema (zod `optional()` fields are
/// optional properties; `passthrough()` keeps every field of `fullBody`).
const NEW_ORDER_CREATED_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "type": { "const": "shop:newOrderCreated" },
    "order_id": { "type": "number" },
    "shopName": { "type": "string" },
    "confirmation_number": { "type": "string" },
    "created_at": { "type": "string" },
    "currency": { "type": "string" },
    "current_subtotal_price": { "type": "string" },
    "current_total_discounts": { "type": "string" },
    "current_total_price": { "type": "string" },
    "current_total_tax": { "type": "string" },
    "customer_locale": { "type": "string" },
    "order_status_url": { "type": "string" },
    "fullBody": { "type": "object" }
  },
  "required": ["order_id", "shopName", "fullBody"]
}"#;

/// Optional string fields copied from the order when Shopify sends them as strings.
const OPTIONAL_FIELDS: [&str; 9] = [
    "confirmation_number",
    "created_at",
    "currency",
    "current_subtotal_price",
    "current_total_discounts",
    "current_total_price",
    "current_total_tax",
    "customer_locale",
    "order_status_url",
];

struct Shop;

struct Settings {
    shop_name: String,
    webhook_secret: String,
}

impl Settings {
    fn from_context(ctx: &Context) -> Settings {
        let config: Value = serde_json::from_str(&ctx.configuration).unwrap_or(Value::Null);
        let text = |key: &str| config[key].as_str().unwrap_or_default().to_string();
        Settings {
            shop_name: text("shopName"),
            webhook_secret: text("webhookSecret"),
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

fn answer(status: u16, body: Value) -> HttpResponse {
    HttpResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// Whether `signature` (base64) is the HMAC-SHA256 of `body` with `secret`. The
/// comparison takes the same time wherever the first difference is.
fn signature_matches(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(given) = BASE64.decode(signature.trim()) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// The event payload for an order (its raw text), as JSON text, or what is wrong with the
/// order. Only the top level is read into memory, each value as its raw text, and the
/// whole order is copied in as it came: a body of many small records costs its size
/// twice, not a tree of values.
fn new_order_payload(settings: &Settings, order: &str) -> Result<String, String> {
    let fields: BTreeMap<String, &RawValue> =
        serde_json::from_str(order).map_err(|e| format!("the body must be a JSON order object: {e}"))?;
    let order_id = fields
        .get("id")
        .filter(|id| serde_json::from_str::<serde_json::Number>(id.get()).is_ok())
        .ok_or("the order has no id (a number)")?;
    let mut head = json!({ "shopName": settings.shop_name });
    for key in OPTIONAL_FIELDS {
        if let Some(Ok(text)) = fields.get(key).map(|raw| serde_json::from_str::<String>(raw.get())) {
            head[key] = Value::String(text);
        }
    }
    let head = head.to_string();
    // `{"shopName":...,"order_id":<id>,"fullBody":<the order>}`; the id stays the exact
    // number Shopify sent, which a float could not hold.
    let mut payload = String::with_capacity(head.len() + order.len() + order_id.get().len() + 32);
    payload.push_str(&head[..head.len() - 1]);
    payload.push_str(",\"order_id\":");
    payload.push_str(order_id.get());
    payload.push_str(",\"fullBody\":");
    payload.push_str(order);
    payload.push('}');
    Ok(payload)
}

impl Guest for Shop {
    fn definition() -> Definition {
        Definition {
            name: "shop".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "Shopify".into(),
            description: "Turns new Shopify orders into events for the bot.".into(),
            configuration_schema: Some(CONFIGURATION_SCHEMA.into()),
            events: vec![EventDefinition {
                name: "newOrderCreated".into(),
                title: "New order created".into(),
                description: "A customer placed an order in the shop.".into(),
                schema: NEW_ORDER_CREATED_SCHEMA.into(),
            }],
            actions: Vec::new(),
            channels: Vec::new(),
            states: Vec::new(),
            user_tags: Vec::new(),
        }
    }

    fn register(ctx: Context) -> Result<(), Error> {
        logger::log(
            Level::Info,
            &format!("point the shop's orders/create webhook at {}", ctx.webhook_url),
        );
        Ok(())
    }

    fn unregister(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let settings = Settings::from_context(&ctx);
        if request.method != "POST" {
            return Ok(answer(405, json!({ "error": "Shopify webhooks are POST requests" })));
        }
        let signed = header(&request, SIGNATURE_HEADER)
            .is_some_and(|signature| signature_matches(&settings.webhook_secret, &request.body, signature));
        if !signed {
            logger::log(Level::Warn, "refused a webhook without a valid x-shopify-hmac-sha256");
            return Ok(answer(
                401,
                json!({ "error": "missing or wrong x-shopify-hmac-sha256 signature" }),
            ));
        }

        let topic = header(&request, TOPIC_HEADER).unwrap_or_default();
        if topic != ORDER_CREATED_TOPIC {
            logger::log(Level::Debug, &format!("ignored topic {topic:?}"));
            return Ok(answer(200, json!({ "ok": true, "ignored": topic })));
        }
        let Ok(order) = std::str::from_utf8(&request.body) else {
            return Ok(answer(
                400,
                json!({ "error": "the body must be a JSON order object in UTF-8" }),
            ));
        };
        let payload = match new_order_payload(&settings, order) {
            Ok(payload) => payload,
            Err(problem) => {
                logger::log(Level::Warn, &format!("refused an orders/create body: {problem}"));
                return Ok(answer(400, json!({ "error": problem })));
            }
        };
        let event = match header(&request, WEBHOOK_ID_HEADER).filter(|id| !id.is_empty()) {
            Some(delivery) => client::create_event_once(delivery, "newOrderCreated", &payload, None, None, None)?,
            None => client::create_event("newOrderCreated", &payload, None, None, None)?,
        };
        Ok(answer(200, json!({ "ok": true, "eventId": event.id })))
    }

    fn call_action(_ctx: Context, name: String, _input: String) -> Result<ActionResult, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("the shop integration has no action {name}"),
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
            message: format!("the shop integration has no channel {channel}"),
        })
    }
}

export!(Shop);
