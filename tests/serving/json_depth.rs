//! The one JSON depth rule, where JSON enters: API, webhook and trigger bodies nested
//! deeper than 64 levels are a 400 naming the rule, before anything runs; what is
//! accepted is stored and reads back with the shape it had, not as a string.

use crate::harness::{Host, guest};
use serde_json::{Value, json};

/// `{"d":{"d":...{"d":1}}}`, `levels` objects deep.
fn nested(levels: usize) -> String {
    format!("{}1{}", r#"{"d":"#.repeat(levels), "}".repeat(levels))
}

fn levels(value: &Value) -> usize {
    match value {
        Value::Object(fields) => 1 + fields.values().map(levels).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(levels).max().unwrap_or(0),
        _ => 0,
    }
}

#[test]
fn bodies_nested_past_the_rule_are_refused_where_they_enter() {
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .plugin("orders", guest("trigger"), None)
        .start();
    let too_deep = nested(65);

    let event = host.send(
        host.client()
            .post(host.url("/v1/chat/events"))
            .bearer_auth(crate::harness::API_TOKEN)
            .header("content-type", "application/json")
            .body(format!(r#"{{"type":"bot:deep","payload":{}}}"#, nested(64))),
    );
    assert_eq!(event.status, 400, "{}", event.body);
    assert!(event.body.contains("JSON depth rule"), "{}", event.body);

    let webhook = host.send(
        host.client()
            .post(host.webhook_url("webhook"))
            .header("content-type", "application/json")
            .body(too_deep.clone()),
    );
    assert_eq!(webhook.status, 400, "{}", webhook.body);
    assert!(webhook.body.contains("65 levels"), "{}", webhook.body);

    let trigger = host.api_post("/api/v1/integration/trigger/create", &json!({ "botId": "orders" }));
    let id = trigger.json()["id"].as_str().unwrap().to_string();
    let refused = host.send(
        host.client()
            .post(host.url(&format!("/api/v1/integration/trigger/{id}/event")))
            .header("content-type", "application/json")
            .body(too_deep),
    );
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.contains("JSON depth rule"), "{}", refused.body);
    assert!(host.events(None).is_empty(), "nothing was recorded");
}

#[test]
fn a_body_at_the_limit_is_stored_and_reads_back_with_its_shape() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let body = nested(64);
    let answer = host.send(
        host.client()
            .post(host.webhook_url("webhook"))
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = host.events(Some("webhook:event"));
    assert_eq!(events.len(), 1);
    let stored = &events[0]["payload"]["body"];
    assert!(stored.is_object(), "read back as an object, not a string: {stored}");
    assert_eq!(levels(stored), 64);
    assert_eq!(*stored, serde_json::from_str::<Value>(&body).unwrap());
}
