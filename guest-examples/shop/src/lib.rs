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
//! Configuration: `shopName` (shown in every event) and `webhookSecret`.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde_json::{Map, Value, json};
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
  "required": ["order_id", "shopName", "confirmation_number", "created_at", "fullBody"]
}"#;

/// Optional string fields copied from the order when Shopify sends them as strings.
const OPTIONAL_FIELDS: [&str; 7] = [
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

/// The event payload for an order, or the name of a required field it lacks.
fn new_order_payload(settings: &Settings, order: &Map<String, Value>) -> Result<Value, String> {
    let order_id = order
        .get("id")
        .filter(|id| id.is_number())
        .cloned()
        .ok_or("id (a number)")?;
    let required_text = |key: &'static str| order.get(key).and_then(Value::as_str).map(String::from).ok_or(key);
    let mut payload = json!({
        "order_id": order_id,
        "shopName": settings.shop_name,
        "confirmation_number": required_text("confirmation_number")?,
        "created_at": required_text("created_at")?,
        "fullBody": Value::Object(order.clone()),
    });
    for key in OPTIONAL_FIELDS {
        if let Some(text) = order.get(key).and_then(Value::as_str) {
            payload[key] = Value::String(text.to_string());
        }
    }
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
        let order = match serde_json::from_slice::<Value>(&request.body) {
            Ok(Value::Object(order)) => order,
            _ => return Ok(answer(400, json!({ "error": "the body must be a JSON order object" }))),
        };
        let payload = match new_order_payload(&settings, &order) {
            Ok(payload) => payload,
            Err(missing) => {
                logger::log(Level::Warn, &format!("an orders/create body without {missing}"));
                return Ok(answer(400, json!({ "error": format!("the order has no {missing}") })));
            }
        };
        let event = client::create_event("newOrderCreated", &payload.to_string(), None, None, None)?;
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
