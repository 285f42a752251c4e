//! An order-processing trigger, after the examples of ChatBotKit's trigger integrations
//! (shared/seeds/002). Bind a trigger to this plugin (`"botId": "trigger"`) and send it
//! events:
//!
//! - a JSON order (`{"event": "order_created", "order_id": "12345", "amount": 149.99,
//!   "items": ["SKU-001"], "shipping_address": "..."}`; `event` may be left out, and
//!   `total` stands in for `amount`) becomes a text message in the trigger conversation,
//!   written by the contact (or by an "orders" user when no contact was given), and an
//!   `orderCreated` event linked to the conversation, the user and the message. The same
//!   order sent again into the same conversation is recorded once;
//! - a text asking for a report ("Generate daily sales report for 2024-01-15") becomes a
//!   `reportRequested` event for that date;
//! - an empty body from the trigger's schedule or `invoke` requests today's report.
//!
//! Anything else is refused with `invalid-input`, which the host records as a failure it
//! does not retry. The plugin runs through `handler` with operation `trigger-event`; the
//! host has already resolved the conversation (channel `trigger`) and contact and hands
//! them over in `ctx.trigger`.

use serde::Deserialize;
use serde_json::{Value, json};

wit_bindgen::generate!({
    path: "../../wit",
    world: "integration",
});

use exports::sluice::integration::plugin::Guest;
use sluice::integration::client;
use sluice::integration::logger::{self, Level};
use sluice::integration::types::{
    Ack, ActionResult, ChannelDefinition, Context, Conversation, Definition, Error, ErrorKind, EventDefinition,
    HttpRequest, HttpResponse, Message, MessageDefinition, Operation, StateScope, TriggerInfo, User,
};

const ORDER_CREATED_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "orderId": { "type": "string" },
    "amount": { "type": "number" },
    "items": { "type": "array", "items": { "type": "string" } },
    "shippingAddress": { "type": ["string", "null"] },
    "triggerEventId": { "type": "string" }
  },
  "required": ["orderId", "amount", "items", "triggerEventId"],
  "additionalProperties": false
}"#;

const REPORT_REQUESTED_SCHEMA: &str = r#"{
  "type": "object",
  "properties": {
    "date": { "type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$" },
    "request": { "type": "string" },
    "triggerEventId": { "type": "string" }
  },
  "required": ["date", "request", "triggerEventId"],
  "additionalProperties": false
}"#;

const TEXT_SCHEMA: &str = r#"{
  "type": "object",
  "properties": { "text": { "type": "string" } },
  "required": ["text"],
  "additionalProperties": false
}"#;

struct Orders;

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn invalid(message: impl Into<String>) -> Error {
    Error {
        kind: ErrorKind::InvalidInput,
        message: message.into(),
    }
}

fn ok(body: Value) -> Result<HttpResponse, Error> {
    Ok(HttpResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    })
}

/// The fields of a JSON event the plugin reads; the rest of the body is skipped as it is
/// read, so that a body of many small records is never a tree of values (which would take
/// many times its size in the plugin's memory).
#[derive(Deserialize)]
struct JsonEvent {
    #[serde(default)]
    event: Value,
    #[serde(default)]
    order_id: Value,
    #[serde(default)]
    amount: Value,
    #[serde(default)]
    total: Value,
    #[serde(default)]
    items: Value,
    #[serde(default)]
    shipping_address: Value,
}

impl JsonEvent {
    /// The fields read, as an object.
    fn into_value(self) -> Value {
        json!({
            "event": self.event,
            "order_id": self.order_id,
            "amount": self.amount,
            "total": self.total,
            "items": self.items,
            "shipping_address": self.shipping_address,
        })
    }
}

/// An order as senders write it.
struct Order {
    id: String,
    amount: f64,
    items: Vec<String>,
    shipping_address: Option<String>,
}

impl Order {
    fn from_json(body: &Value) -> Result<Order, Error> {
        let id = match &body["order_id"] {
            Value::String(id) if !id.is_empty() => id.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(invalid("an order needs order_id (a string or a number)")),
        };
        let amount = body["amount"]
            .as_f64()
            .or_else(|| body["total"].as_f64())
            .ok_or_else(|| invalid(format!("order {id} needs amount (or total) as a number")))?;
        let items = match &body["items"] {
            Value::Null => Vec::new(),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(String::from))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| invalid(format!("order {id}: items must be a list of SKUs (strings)")))?,
            _ => return Err(invalid(format!("order {id}: items must be a list of SKUs"))),
        };
        Ok(Order {
            id,
            amount,
            items,
            shipping_address: body["shipping_address"].as_str().map(String::from),
        })
    }

    fn summary(&self) -> String {
        let mut text = format!("New order {}: {} item(s)", self.id, self.items.len());
        if !self.items.is_empty() {
            text.push_str(&format!(" ({})", self.items.join(", ")));
        }
        text.push_str(&format!(", total {:.2}", self.amount));
        if let Some(address) = &self.shipping_address {
            text.push_str(&format!(", ship to {address}"));
        }
        text
    }
}

/// Records an order: a message from the customer and an `orderCreated` event.
fn order_created(trigger: &TriggerInfo, order: Order) -> Result<HttpResponse, Error> {
    let conversation = &trigger.conversation_id;
    let seen_key = format!("order-{}", order.id);
    // At-least-once delivery may run an event twice, and senders resend orders: one
    // conversation records each order once.
    if let Some(seen) = client::get_state(StateScope::Conversation, conversation, &seen_key)? {
        logger::log(
            Level::Info,
            &format!("order {} is already recorded in this conversation", order.id),
        );
        return ok(json!({ "duplicate": true, "recorded": serde_json::from_str::<Value>(&seen).unwrap_or_default() }));
    }
    let user_id = match &trigger.contact_user_id {
        Some(contact) => contact.clone(),
        None => client::get_or_create_user(&[("source".to_string(), "orders".to_string())])?.id,
    };
    let message = client::create_message(
        conversation,
        &user_id,
        "text",
        &json!({ "text": order.summary() }).to_string(),
        &[],
    )?;
    let event = client::create_event(
        "orderCreated",
        &json!({
            "orderId": order.id,
            "amount": order.amount,
            "items": order.items,
            "shippingAddress": order.shipping_address,
            "triggerEventId": trigger.event_id,
        })
        .to_string(),
        Some(conversation),
        Some(&user_id),
        Some(&message.id),
    )?;
    client::set_state(
        StateScope::Conversation,
        conversation,
        &seen_key,
        &json!({ "messageId": message.id, "eventId": event.id }).to_string(),
    )?;
    logger::log(Level::Info, &format!("order {} recorded", order.id));
    ok(json!({ "orderId": order.id, "messageId": message.id, "eventId": event.id }))
}

/// Emits `reportRequested` for `date`.
fn report_requested(trigger: &TriggerInfo, date: String, request: &str) -> Result<HttpResponse, Error> {
    let event = client::create_event(
        "reportRequested",
        &json!({ "date": date, "request": request, "triggerEventId": trigger.event_id }).to_string(),
        Some(&trigger.conversation_id),
        trigger.contact_user_id.as_deref(),
        None,
    )?;
    logger::log(Level::Info, &format!("sales report for {date} requested"));
    ok(json!({ "report": date, "eventId": event.id }))
}

/// The first `YYYY-MM-DD` in a text.
fn find_date(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    (0..bytes.len().saturating_sub(9)).find_map(|start| {
        let candidate = &bytes[start..start + 10];
        let shape = candidate.iter().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                *b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
        let bounded = start + 10 == bytes.len() || !bytes[start + 10].is_ascii_digit();
        (shape && bounded && (start == 0 || !bytes[start - 1].is_ascii_digit()))
            .then(|| String::from_utf8_lossy(candidate).into_owned())
    })
}

/// Today's date (UTC) from the wall clock.
fn today() -> String {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let days = seconds.div_euclid(86_400) + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

impl Guest for Orders {
    fn definition() -> Definition {
        Definition {
            name: "orders".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: "Order processing trigger".into(),
            description: "Turns order events and report requests sent to a trigger into messages and events.".into(),
            configuration_schema: None,
            events: vec![
                EventDefinition {
                    name: "orderCreated".into(),
                    title: "Order created".into(),
                    description: "An order arrived through the trigger.".into(),
                    schema: ORDER_CREATED_SCHEMA.into(),
                },
                EventDefinition {
                    name: "reportRequested".into(),
                    title: "Report requested".into(),
                    description: "A sales report was asked for.".into(),
                    schema: REPORT_REQUESTED_SCHEMA.into(),
                },
            ],
            actions: Vec::new(),
            channels: vec![ChannelDefinition {
                name: "trigger".into(),
                title: "Trigger".into(),
                description: "The conversations the host opens for trigger events.".into(),
                messages: vec![MessageDefinition {
                    name: "text".into(),
                    schema: TEXT_SCHEMA.into(),
                }],
                conversation_tags: vec!["triggerId".into(), "triggerEventId".into(), "session".into()],
                message_tags: Vec::new(),
            }],
            states: Vec::new(),
            user_tags: vec!["email".into(), "phone".into(), "source".into()],
        }
    }

    fn register(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn unregister(_ctx: Context) -> Result<(), Error> {
        Ok(())
    }

    fn handler(ctx: Context, request: HttpRequest) -> Result<HttpResponse, Error> {
        let (Operation::TriggerEvent, Some(trigger)) = (ctx.operation, ctx.trigger.as_ref()) else {
            return Ok(HttpResponse {
                status: 404,
                headers: vec![("content-type".into(), "application/json".into())],
                body: json!({ "error": "this plugin takes trigger events: bind a trigger to it and send events to the trigger's event URL" })
                    .to_string()
                    .into_bytes(),
            });
        };
        let content_type = header(&request, "content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if request.body.is_empty() {
            let source = header(&request, "x-sluice-trigger-source").unwrap_or("event");
            if source == "schedule" || source == "invoke" {
                return report_requested(trigger, today(), &format!("daily sales report ({source})"));
            }
            return Err(invalid(
                "the event is empty: send an order (JSON) or a report request (text)",
            ));
        }
        if content_type.contains("json") {
            let body = serde_json::from_slice::<JsonEvent>(&request.body)
                .map_err(|e| invalid(format!("the body is not a JSON object: {e}")))?
                .into_value();
            return match body["event"].as_str() {
                None | Some("order_created") if !body["order_id"].is_null() => {
                    order_created(trigger, Order::from_json(&body)?)
                }
                Some("order_created") => order_created(trigger, Order::from_json(&body)?),
                Some(other) => {
                    logger::log(
                        Level::Warn,
                        &format!("ignoring event {other:?}: this trigger handles order_created"),
                    );
                    ok(json!({ "ignored": other }))
                }
                None => Err(invalid(
                    "a JSON event needs \"event\": \"order_created\" and an order_id",
                )),
            };
        }
        let text = String::from_utf8_lossy(&request.body).trim().to_string();
        if text.to_ascii_lowercase().contains("report") {
            let date = find_date(&text).unwrap_or_else(today);
            return report_requested(trigger, date, &text);
        }
        Err(invalid(format!(
            "cannot handle {text:?}: send an order as JSON or ask for a report in text"
        )))
    }

    fn call_action(_ctx: Context, name: String, _input: String) -> Result<ActionResult, Error> {
        Err(Error {
            kind: ErrorKind::NotFound,
            message: format!("the orders trigger has no action {name}"),
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
            message: format!("the orders trigger does not send messages (channel {channel})"),
        })
    }
}

export!(Orders);
