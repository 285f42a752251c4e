//! The example order-processing trigger (guest-examples/trigger) with seed 002's
//! examples: an order_created JSON event, a text report request, a GET webhook, and an
//! order it must refuse.

use std::time::Duration;

use crate::harness::{Answer, Host, eventually, guest};
use serde_json::{Value, json};

fn accepted(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({ "ok": true }));
    answer.header("x-sluice-event-id").unwrap().to_string()
}

fn outcome(host: &Host, event_id: &str) -> Value {
    eventually(&format!("the outcome of {event_id}"), Duration::from_secs(60), || {
        let mut outcomes = host.events_of("trigger:execution:finished", event_id);
        outcomes.extend(
            host.events_of("trigger:execution:failed", event_id)
                .into_iter()
                .filter(|f| f["payload"]["final"] == true),
        );
        outcomes.pop()
    })
}

#[test]
fn orders_and_report_requests_become_messages_and_events() {
    let host = Host::builder().plugin("trigger", guest("trigger"), None).start();
    let created = host.create_trigger(&json!({
        "name": "Order Processing Trigger",
        "description": "Handles order processing events",
        "botId": "trigger",
        "authenticate": true,
        "sessionDuration": 3600000
    }));
    let (id, secret) = (created["id"].as_str().unwrap(), created["secret"].as_str().unwrap());
    let url = host.trigger_event_url(id);
    let order = json!({
        "event": "order_created",
        "order_id": "12345",
        "amount": 149.99,
        "items": ["SKU-001", "SKU-042"],
        "shipping_address": "123 Main St, Anytown, USA"
    });
    let send_order = || {
        host.send(
            host.client()
                .post(format!("{url}?session=order_12345&contact.email=customer@example.com"))
                .bearer_auth(secret)
                .header("content-type", "application/json")
                .body(order.to_string()),
        )
    };

    // Example 1: the order becomes a message from the customer and an orderCreated event.
    let order_event = accepted(&send_order());
    let done = outcome(&host, &order_event);
    assert_eq!(done["type"], "trigger:execution:finished", "{done}");
    let conversation = done["conversationId"].as_str().unwrap().to_string();
    let customer = done["userId"].as_str().unwrap().to_string();
    let messages = host
        .api_get(&format!("/v1/chat/messages?conversationId={conversation}"))
        .json()["messages"]
        .clone();
    assert_eq!(messages.as_array().unwrap().len(), 1, "{messages}");
    assert_eq!(
        messages[0]["payload"]["text"],
        "New order 12345: 2 item(s) (SKU-001, SKU-042), total 149.99, ship to 123 Main St, Anytown, USA"
    );
    assert_eq!(messages[0]["userId"], customer.as_str());
    let user = host.api_get(&format!("/v1/chat/users/{customer}")).json()["user"].clone();
    assert_eq!(user["tags"]["email"], "customer@example.com");
    let created_orders = host.events(Some("orders:orderCreated"));
    assert_eq!(created_orders.len(), 1);
    let order_created = &created_orders[0];
    assert_eq!(order_created["payload"]["orderId"], "12345");
    assert_eq!(order_created["payload"]["amount"], 149.99);
    assert_eq!(order_created["payload"]["items"], json!(["SKU-001", "SKU-042"]));
    assert_eq!(order_created["payload"]["triggerEventId"], order_event.as_str());
    assert_eq!(order_created["conversationId"], conversation.as_str());
    assert_eq!(order_created["messageId"], messages[0]["id"]);
    let logs = done["payload"]["logs"].as_array().unwrap();
    assert!(logs.iter().any(|l| l["message"] == "order 12345 recorded"), "{logs:?}");

    // The same order resent (no idempotency key: a second event) is recorded once.
    let resent = accepted(&send_order());
    let done = outcome(&host, &resent);
    assert_eq!(
        done["conversationId"],
        conversation.as_str(),
        "same session, same conversation"
    );
    assert!(
        done["payload"]["response"]["body"]
            .as_str()
            .unwrap()
            .contains("\"duplicate\":true")
    );
    assert_eq!(host.events(Some("orders:orderCreated")).len(), 1);

    // Example 2: a text report request.
    let report_event = accepted(
        &host.send(
            host.client()
                .post(format!("{url}?session=daily_report"))
                .bearer_auth(secret)
                .header("content-type", "text/plain")
                .body("Generate daily sales report for 2024-01-15"),
        ),
    );
    assert_eq!(outcome(&host, &report_event)["type"], "trigger:execution:finished");
    let reports = host.events(Some("orders:reportRequested"));
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["payload"]["date"], "2024-01-15");
    assert_eq!(
        reports[0]["payload"]["request"],
        "Generate daily sales report for 2024-01-15"
    );

    // Example 3: a GET webhook carries no order; the plugin refuses it, and the refusal is
    // recorded as a final failure (invalid input is not retried).
    let monitoring = accepted(
        &host.send(
            host.client()
                .get(format!("{url}?session=monitoring&contact_name=System+Monitor"))
                .bearer_auth(secret),
        ),
    );
    let refused = outcome(&host, &monitoring);
    assert_eq!(refused["type"], "trigger:execution:failed");
    assert_eq!(refused["payload"]["attempt"], 1);
    assert!(
        refused["payload"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("the event is empty")
    );

    // An order without an amount is refused the same way, naming what is missing.
    let broken = accepted(
        &host.send(
            host.client()
                .post(&url)
                .bearer_auth(secret)
                .header("content-type", "application/json")
                .body(r#"{"event":"order_created","order_id":"777"}"#),
        ),
    );
    let refused = outcome(&host, &broken);
    assert_eq!(refused["type"], "trigger:execution:failed");
    assert!(
        refused["failureReason"]
            .as_str()
            .unwrap()
            .contains("order 777 needs amount")
    );
}

#[test]
fn an_order_of_many_small_records_at_the_trigger_body_limit_is_processed() {
    let host = Host::builder().plugin("trigger", guest("trigger"), None).start();
    let created = host.create_trigger(&json!({ "botId": "trigger", "authenticate": false }));
    let url = host.trigger_event_url(created["id"].as_str().unwrap());
    // The order's lines arrive as small records beside what the plugin reads.
    let body = crate::harness::small_records_body(
        r#"{"event":"order_created","order_id":"777","amount":5.5,"items":["SKU-7"],"lines":"#,
        "}",
        1 << 20,
    );
    let event_id = accepted(
        &host.send(
            host.client()
                .post(&url)
                .header("content-type", "application/json")
                .body(body),
        ),
    );
    let done = outcome(&host, &event_id);
    assert_eq!(done["type"], "trigger:execution:finished", "{done}");
    let orders = host.events(Some("orders:orderCreated"));
    assert_eq!(orders[0]["payload"]["orderId"], "777");
}
