//! The Shopify example (guest-examples/shop) through the real binary: signed
//! `orders/create` calls become `shop:newOrderCreated` events with the guide's schema
//! and the full body; a delivery Shopify retries (the same `X-Shopify-Webhook-Id`) is
//! recorded once; orders lacking optional fields are recorded; other topics are
//! acknowledged without an event; unsigned or badly signed calls are refused with 401
//! and record nothing.

use crate::harness::{Answer, Host, guest, small_records_body};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "shopify-webhook-secret";

fn host() -> Host {
    Host::builder()
        .plugin(
            "shop",
            guest("shop"),
            Some(&format!(
                "[configuration]\nshopName = \"acme-store\"\nwebhookSecret = {SECRET:?}\n"
            )),
        )
        .start()
}

fn sign(secret: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn order() -> Value {
    json!({
        "id": 820982911946154508u64,
        "confirmation_number": "ABC123XYZ",
        "created_at": "2024-07-01T10:00:00-04:00",
        "currency": "EUR",
        "current_subtotal_price": "100.00",
        "current_total_discounts": "5.00",
        "current_total_price": "115.00",
        "current_total_tax": "20.00",
        "customer_locale": "fr",
        "order_status_url": "https://acme.example/orders/1/status",
        "line_items": [{ "title": "Kettle", "quantity": 1 }],
        "note": null
    })
}

fn deliver(host: &Host, topic: &str, body: &str, signature: Option<&str>) -> Answer {
    deliver_as(host, None, topic, body, signature)
}

/// A delivery with Shopify's id for it, which a retry repeats.
fn deliver_as(host: &Host, webhook_id: Option<&str>, topic: &str, body: &str, signature: Option<&str>) -> Answer {
    let mut request = host
        .client()
        .post(host.webhook_url("shop"))
        .header("content-type", "application/json")
        .header("x-shopify-topic", topic)
        .header("x-shopify-shop-domain", "acme-store.myshopify.com")
        .body(body.to_string());
    if let Some(signature) = signature {
        request = request.header("x-shopify-hmac-sha256", signature);
    }
    if let Some(webhook_id) = webhook_id {
        request = request.header("x-shopify-webhook-id", webhook_id);
    }
    host.send(request)
}

#[test]
fn an_order_of_many_small_records_at_the_default_body_limit_is_recorded() {
    let host = host();
    let body = small_records_body(r#"{"id":820982911946154508,"line_items":"#, "}", 2 << 20);
    let answer = deliver(&host, "orders/create", &body, Some(&sign(SECRET, &body)));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = host.events(Some("shop:newOrderCreated"));
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(events[0]["payload"]["fullBody"], sent);
}

#[test]
fn a_signed_new_order_becomes_an_event_with_the_full_body() {
    let host = host();
    let body = order().to_string();
    let answer = deliver(&host, "orders/create", &body, Some(&sign(SECRET, &body)));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = host.events(Some("shop:newOrderCreated"));
    assert_eq!(events.len(), 1, "{events:?}");
    let payload = &events[0]["payload"];
    assert_eq!(payload["order_id"], 820982911946154508u64);
    assert_eq!(payload["shopName"], "acme-store");
    assert_eq!(payload["confirmation_number"], "ABC123XYZ");
    assert_eq!(payload["created_at"], "2024-07-01T10:00:00-04:00");
    assert_eq!(payload["currency"], "EUR");
    assert_eq!(payload["current_total_price"], "115.00");
    assert_eq!(payload["customer_locale"], "fr");
    assert_eq!(payload["order_status_url"], "https://acme.example/orders/1/status");
    assert_eq!(payload["fullBody"], order(), "the whole order is kept");
    assert_eq!(answer.json()["eventId"], events[0]["id"]);
}

#[test]
fn other_topics_are_acknowledged_without_an_event() {
    let host = host();
    let body = order().to_string();
    for topic in ["orders/updated", "products/create", "orders/delete"] {
        let answer = deliver(&host, topic, &body, Some(&sign(SECRET, &body)));
        assert_eq!(answer.status, 200, "[{topic}] {}", answer.body);
    }
    assert!(host.events(None).is_empty(), "no topic but orders/create fires");
}

#[test]
fn unsigned_or_badly_signed_calls_are_refused_and_record_nothing() {
    let host = host();
    let body = order().to_string();
    let tampered = body.replace("115.00", "1.00");
    for (what, body, signature) in [
        ("no signature", body.clone(), None),
        ("other secret", body.clone(), Some(sign("guess", &body))),
        ("tampered body", tampered, Some(sign(SECRET, &body))),
        ("not base64", body.clone(), Some("%%%".to_string())),
        ("hex instead of base64", body.clone(), Some("00ff".repeat(16))),
    ] {
        let answer = deliver(&host, "orders/create", &body, signature.as_deref());
        assert_eq!(answer.status, 401, "[{what}] {}", answer.body);
    }
    assert!(host.events(None).is_empty());
}

#[test]
fn a_retried_delivery_is_recorded_once_and_answered_like_the_first() {
    let host = host();
    let body = order().to_string();
    let signature = sign(SECRET, &body);
    let id = "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043";
    let first = deliver_as(&host, Some(id), "orders/create", &body, Some(&signature));
    assert_eq!(first.status, 200, "{}", first.body);
    let retry = deliver_as(&host, Some(id), "orders/create", &body, Some(&signature));
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(
        retry.json()["eventId"],
        first.json()["eventId"],
        "the retry gets the first event"
    );
    let events = host.events(Some("shop:newOrderCreated"));
    assert_eq!(events.len(), 1, "one order, one event: {events:?}");

    let other = deliver_as(
        &host,
        Some("another-delivery"),
        "orders/create",
        &body,
        Some(&signature),
    );
    assert_eq!(other.status, 200, "{}", other.body);
    assert_ne!(other.json()["eventId"], first.json()["eventId"]);
    assert_eq!(
        host.events(Some("shop:newOrderCreated")).len(),
        2,
        "another delivery id is another event"
    );
}

#[test]
fn an_order_lacking_optional_fields_is_recorded_with_what_it_has() {
    let host = host();
    let mut sparse = order();
    let fields = sparse.as_object_mut().unwrap();
    for key in [
        "confirmation_number",
        "currency",
        "customer_locale",
        "order_status_url",
        "created_at",
    ] {
        fields.remove(key);
    }
    fields.insert("current_total_tax".into(), Value::Null);
    let body = sparse.to_string();
    let answer = deliver(&host, "orders/create", &body, Some(&sign(SECRET, &body)));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = host.events(Some("shop:newOrderCreated"));
    assert_eq!(events.len(), 1, "{events:?}");
    let payload = &events[0]["payload"];
    assert_eq!(payload["order_id"], 820982911946154508u64);
    assert_eq!(payload["current_total_price"], "115.00");
    assert!(payload.get("confirmation_number").is_none(), "{payload}");
    assert!(
        payload.get("current_total_tax").is_none(),
        "a null is left out: {payload}"
    );
    assert_eq!(payload["fullBody"], sparse);
}

#[test]
fn an_order_without_an_id_is_a_400_naming_it() {
    let host = host();
    let mut incomplete = order();
    incomplete.as_object_mut().unwrap().remove("id");
    let no_id = incomplete.to_string();
    for body in [no_id.as_str(), "[1, 2]", "{\"id\": "] {
        let answer = deliver(&host, "orders/create", body, Some(&sign(SECRET, body)));
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert!(answer.body.contains("order"), "{}", answer.body);
    }
    let answer = deliver(&host, "orders/create", &no_id, Some(&sign(SECRET, &no_id)));
    assert!(answer.body.contains("no id"), "{}", answer.body);
    assert!(host.events(None).is_empty());
}

#[test]
fn the_shop_needs_its_secret() {
    let host = Host::builder()
        .plugin("shop", guest("shop"), Some("[configuration]\nshopName = \"acme\"\n"))
        .start();
    assert_eq!(host.installation("shop")["status"], "needs-configuration");
    let answer = deliver(&host, "orders/create", "{}", Some(&sign("", "{}")));
    assert_eq!(answer.status, 503);
    assert!(answer.body.contains("webhookSecret"), "{}", answer.body);
}
