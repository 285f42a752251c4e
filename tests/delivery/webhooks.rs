//! Outbound webhooks to a receiver on loopback: Standard Webhooks signatures checked with
//! the spec's own verifier library, retries with growing gaps, a receiver that is down
//! for a while, dead letters sent again through the API, the subscriptions API, the
//! target guard, slow receivers, and a host killed mid-delivery.

use std::collections::HashSet;
use std::time::Duration;

use crate::harness::receiver::{Received, Receiver};
use crate::harness::{Host, eventually, guest};
use serde_json::{Value, json};

pub(super) const WAIT: Duration = Duration::from_secs(60);

/// A host running the probe plugin (`POST <webhook>/event/thing` records `probe:thing`)
/// with `delivery` as the `[delivery]` section and `extra` appended to the file.
pub(super) fn host_with(delivery: &str, extra: &str) -> Host {
    Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"probe\"\n"))
        .config(&format!("[delivery]\n{delivery}\n{extra}"))
        .start()
}

const FAST_RETRIES: &str =
    "allow-loopback = true\nretry-initial-ms = 200\nretry-max-ms = 2000\nattempt-timeout-ms = 3000\n";

pub(super) fn record_events(host: &Host, counts: std::ops::Range<i64>) {
    let url = host.webhook_url("probe");
    for count in counts {
        let answer = host.post(&format!("{url}/event/thing"), &json!({ "count": count }).to_string());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

pub(super) fn subscribe(host: &Host, body: Value) -> Value {
    let answer = host.api_post("/v1/subscriptions", &body);
    assert_eq!(answer.status, 201, "{}", answer.body);
    answer.json()["subscription"].clone()
}

/// The envelope ids a receiver got, each once.
pub(super) fn distinct_ids(received: &[Received]) -> HashSet<String> {
    received
        .iter()
        .filter(|r| r.answered < 300)
        .map(|r| r.header("webhook-id").unwrap().to_string())
        .collect()
}

pub(super) fn deliveries(host: &Host, subscription: &str, status: Option<&str>) -> Vec<Value> {
    let mut path = format!("/v1/subscriptions/{subscription}/deliveries?pageSize=100");
    if let Some(status) = status {
        path.push_str(&format!("&status={status}"));
    }
    let answer = host.api_get(&path);
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["deliveries"].as_array().unwrap().clone()
}

#[test]
fn webhooks_are_signed_so_a_standard_webhooks_verifier_accepts_them() {
    let receiver = Receiver::start();
    let host = host_with(FAST_RETRIES, "");
    let subscription = subscribe(
        &host,
        json!({ "url": receiver.url("/hooks/sluice"), "types": ["probe:*"] }),
    );
    let secret = subscription["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{subscription}");

    record_events(&host, 1..2);
    let got = receiver.wait_for_count(1, WAIT);
    let request = &got[0];
    assert_eq!(request.path, "/hooks/sluice");
    assert_eq!(request.header("content-type"), Some("application/json"));

    // The verifier published by the Standard Webhooks project accepts it...
    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    verifier
        .verify(&request.body, &request.headers)
        .expect("the signature verifies");
    // ...and refuses the same request with a changed body, or checked with another secret.
    let mut tampered = request.body.clone();
    let at = tampered.iter().position(|b| *b == b'1').unwrap();
    tampered[at] = b'2';
    assert!(verifier.verify(&tampered, &request.headers).is_err());
    let other = standardwebhooks::Webhook::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
    assert!(other.verify(&request.body, &request.headers).is_err());

    // The envelope: id (= webhook-id), type, time in ms, integrationId, botId, data.
    let envelope = request.json();
    let installation = host.installation("probe");
    assert_eq!(envelope["id"], request.header("webhook-id").unwrap());
    assert_eq!(envelope["type"], "probe:thing");
    assert_eq!(envelope["integrationId"], installation["id"]);
    assert!(envelope["botId"].as_str().unwrap().starts_with("bot_"), "{envelope}");
    assert!(envelope["time"].as_i64().unwrap() > 1_700_000_000_000, "{envelope}");
    let event = &envelope["data"]["event"];
    assert_eq!(event["payload"], json!({ "count": 1 }));
    let stored = host.events(Some("probe:thing"));
    assert_eq!(event["id"], stored[0]["id"]);

    // The attempt is recorded once the receiver's answer is in, just after it got the request.
    let subscription_id = subscription["id"].as_str().unwrap();
    let delivered = eventually("the delivery to be recorded as delivered", WAIT, || {
        let delivered = deliveries(&host, subscription_id, None);
        (delivered.len() == 1 && delivered[0]["status"] == "delivered").then_some(delivered)
    });
    assert_eq!(delivered[0]["eventId"], envelope["id"]);
    assert_eq!(delivered[0]["attempts"], 1);
}

#[test]
fn a_failing_receiver_sees_retries_with_growing_gaps() {
    let receiver = Receiver::start();
    receiver.fail_next(3, 503);
    let host = host_with(
        "allow-loopback = true\nretry-initial-ms = 250\nretry-max-ms = 10000\n",
        &format!(
            "[[subscriptions]]\nid = \"app\"\nurl = \"{}\"\ntypes = [\"probe:thing\"]\n",
            receiver.url("/hook")
        ),
    );
    record_events(&host, 1..2);
    let got = receiver.wait_for_count(4, WAIT);
    assert_eq!(got.iter().map(|r| r.answered).collect::<Vec<_>>(), [503, 503, 503, 200]);
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert_eq!(ids.len(), 1, "every retry carries the same webhook-id");
    let gaps: Vec<Duration> = got.windows(2).map(|w| w[1].at - w[0].at).collect();
    assert!(gaps[0] >= Duration::from_millis(250), "{gaps:?}");
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "gaps grow: {gaps:?}");

    let delivery = eventually("the delivery to be recorded as delivered", WAIT, || {
        deliveries(&host, "app", None)
            .into_iter()
            .find(|d| d["status"] == "delivered")
    });
    assert_eq!(delivery["attempts"], 4);
    let answer = host.api_get(&format!("/v1/deliveries/{}/attempts", delivery["id"].as_str().unwrap()));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let attempts = answer.json()["attempts"].as_array().unwrap().clone();
    assert_eq!(
        attempts.iter().map(|a| a["statusCode"].clone()).collect::<Vec<_>>(),
        [json!(503), json!(503), json!(503), json!(200)]
    );
    assert_eq!(
        attempts.iter().map(|a| a["outcome"].clone()).collect::<Vec<_>>(),
        [json!("retry"), json!("retry"), json!("retry"), json!("delivered")]
    );
    assert!(attempts[0]["error"].as_str().unwrap().contains("503"), "{attempts:?}");
    assert!(attempts.iter().all(|a| a["durationMs"].is_i64()));
}

#[test]
fn retry_after_is_honoured() {
    let receiver = Receiver::start();
    receiver.fail_next(1, 429);
    receiver.retry_after(Some("2"));
    let host = host_with("allow-loopback = true\nretry-initial-ms = 50\n", "");
    subscribe(&host, json!({ "url": receiver.url("/hook") }));
    record_events(&host, 1..2);
    let got = receiver.wait_for_count(2, WAIT);
    assert_eq!(got[0].answered, 429);
    assert!(
        got[1].at - got[0].at >= Duration::from_secs(2),
        "waited as Retry-After asked"
    );
}

#[test]
fn a_receiver_that_is_down_for_a_while_gets_every_event_when_back() {
    let receiver = Receiver::start();
    receiver.down();
    let host = host_with(
        "allow-loopback = true\nretry-initial-ms = 100\nretry-max-ms = 1000\nmax-attempts = 100\n",
        "",
    );
    let subscription = subscribe(&host, json!({ "url": receiver.url("/hook") }));
    let id = subscription["id"].as_str().unwrap().to_string();
    record_events(&host, 0..20);
    // Wait until attempts have failed against the closed port.
    eventually("failed attempts while the receiver is down", WAIT, || {
        let pending = deliveries(&host, &id, Some("pending"));
        (pending.len() == 20 && pending.iter().all(|d| d["attempts"].as_i64() >= Some(1))).then_some(())
    });
    let error = deliveries(&host, &id, None)[0]["lastError"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(error.contains("connect"), "{error}");

    receiver.up();
    let got = receiver.wait_until(WAIT, "all 20 events", |r| distinct_ids(r).len() == 20);
    let counts: HashSet<i64> = got
        .iter()
        .map(|r| r.json()["data"]["event"]["payload"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, (0..20).collect::<HashSet<_>>());
    eventually("every delivery recorded as delivered", WAIT, || {
        (deliveries(&host, &id, Some("delivered")).len() == 20).then_some(())
    });
}

#[test]
fn a_dead_lettered_delivery_is_sent_again_through_the_api() {
    let receiver = Receiver::start();
    receiver.always(Some(500));
    let host = host_with("allow-loopback = true\nretry-initial-ms = 50\nmax-attempts = 2\n", "");
    let subscription = subscribe(&host, json!({ "url": receiver.url("/hook") }));
    let id = subscription["id"].as_str().unwrap().to_string();
    record_events(&host, 7..8);
    let dead = eventually("the delivery to be dead-lettered", WAIT, || {
        deliveries(&host, &id, Some("dead")).into_iter().next()
    });
    assert_eq!(dead["attempts"], 2);
    assert!(
        dead["lastError"].as_str().unwrap().contains("gave up after 2"),
        "{dead}"
    );
    assert_eq!(receiver.received().len(), 2);

    receiver.always(None);
    let delivery_id = dead["id"].as_str().unwrap();
    let answer = host.api_post(&format!("/v1/deliveries/{delivery_id}/resend"), &json!({}));
    assert_eq!(answer.status, 202, "{}", answer.body);
    let got = receiver.wait_for_count(3, WAIT);
    assert_eq!(got[2].answered, 200);
    assert_eq!(got[2].header("webhook-id"), got[0].header("webhook-id"));
    let delivered = eventually("the resent delivery to be delivered", WAIT, || {
        let answer = host.api_get(&format!("/v1/deliveries/{delivery_id}"));
        let delivery = answer.json()["delivery"].clone();
        (delivery["status"] == "delivered").then_some(delivery)
    });
    assert_eq!(delivered["attempts"], 3);
    assert_eq!(delivered["attemptList"].as_array().unwrap().len(), 3);

    // A pending delivery cannot be resent; an unknown one is 404.
    let again = host.api_post("/v1/deliveries/dlv_999999/resend", &json!({}));
    assert_eq!(again.status, 404, "{}", again.body);

    // An answer that retrying cannot fix (410) is dead-lettered at once.
    receiver.always(Some(410));
    record_events(&host, 8..9);
    let gone = eventually("the 410 to be dead-lettered", WAIT, || {
        deliveries(&host, &id, Some("dead")).into_iter().next()
    });
    assert_eq!(gone["attempts"], 1);
    assert!(gone["lastError"].as_str().unwrap().contains("not retried"), "{gone}");
}

#[test]
fn subscriptions_are_created_listed_fetched_updated_and_deleted() {
    let receiver = Receiver::start();
    let host = host_with(
        FAST_RETRIES,
        &format!(
            "[[subscriptions]]\nid = \"configured\"\nurl = \"{}\"\n",
            receiver.url("/c")
        ),
    );
    let created = subscribe(
        &host,
        json!({ "url": receiver.url("/a"), "types": ["probe:thing", "chat:*"], "description": "orders app" }),
    );
    let id = created["id"].as_str().unwrap();
    assert!(id.starts_with("sub_"));
    assert_eq!(created["enabled"], true);
    assert_eq!(created["source"], "api");

    let list = host.api_get("/v1/subscriptions").json()["subscriptions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter().all(|s| s.get("secret").is_none()),
        "lists do not show secrets"
    );
    assert!(list.iter().any(|s| s["id"] == "configured" && s["source"] == "config"));

    let fetched = host.api_get(&format!("/v1/subscriptions/{id}"));
    assert_eq!(fetched.json()["subscription"]["secret"], created["secret"]);

    let patch = |body: Value| {
        host.send(
            host.client()
                .patch(host.url(&format!("/v1/subscriptions/{id}")))
                .bearer_auth(crate::harness::API_TOKEN)
                .json(&body),
        )
    };
    let updated = patch(json!({ "enabled": false, "types": ["shop:*"], "description": null }));
    assert_eq!(updated.status, 200, "{}", updated.body);
    let updated = updated.json()["subscription"].clone();
    assert_eq!(updated["enabled"], false);
    assert_eq!(updated["types"], json!(["shop:*"]));
    assert_eq!(updated["description"], Value::Null);

    for (body, needle) in [
        (json!({ "url": "ftp://example.com/x" }), "http or https"),
        (json!({ "url": "not a url" }), "not a valid URL"),
        (json!({ "secret": "plain" }), "whsec_"),
        (json!({ "types": ["a:*:b"] }), "'*'"),
        (json!({ "colour": "red" }), "colour"),
    ] {
        let answer = patch(body.clone());
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        assert!(
            answer.json()["message"].as_str().unwrap().contains(needle),
            "{body}: {}",
            answer.body
        );
    }
    let private = host.api_post("/v1/subscriptions", &json!({ "url": "http://10.1.2.3/hook" }));
    assert_eq!(private.status, 400, "{}", private.body);
    assert!(private.body.contains("allow-private"), "{}", private.body);
    let missing = host.api_post("/v1/subscriptions", &json!({ "types": [] }));
    assert_eq!(missing.status, 400, "{}", missing.body);

    let configured = host.send(
        host.client()
            .patch(host.url("/v1/subscriptions/configured"))
            .bearer_auth(crate::harness::API_TOKEN)
            .json(&json!({ "enabled": false })),
    );
    assert_eq!(configured.status, 409, "{}", configured.body);
    assert!(configured.body.contains("configuration file"), "{}", configured.body);

    assert_eq!(host.api_delete(&format!("/v1/subscriptions/{id}")).status, 204);
    assert_eq!(host.api_get(&format!("/v1/subscriptions/{id}")).status, 404);
    assert_eq!(host.api_delete(&format!("/v1/subscriptions/{id}")).status, 404);
    let anonymous = host.send(host.client().get(host.url("/v1/subscriptions")));
    assert_eq!(anonymous.status, 401);
}

#[test]
fn filters_choose_what_each_subscription_gets() {
    let (wanted, unwanted) = (Receiver::start(), Receiver::start());
    let host = host_with(FAST_RETRIES, "");
    subscribe(&host, json!({ "url": wanted.url("/w"), "types": ["probe:*"] }));
    let other = subscribe(
        &host,
        json!({ "url": unwanted.url("/u"), "types": ["chat:message:new"] }),
    );
    let disabled = subscribe(&host, json!({ "url": unwanted.url("/d"), "enabled": false }));
    record_events(&host, 0..3);
    wanted.wait_for_count(3, WAIT);
    // The fan-out has passed these events: the other filter owes nothing for them, and
    // the disabled subscription keeps them, unsent, for when it is enabled again.
    assert!(deliveries(&host, other["id"].as_str().unwrap(), None).is_empty());
    let kept = deliveries(&host, disabled["id"].as_str().unwrap(), None);
    assert_eq!(kept.len(), 3, "{kept:?}");
    assert!(
        kept.iter().all(|d| d["status"] == "pending" && d["attempts"] == 0),
        "{kept:?}"
    );
    assert!(unwanted.received().is_empty());
}

#[test]
fn loopback_targets_are_refused_unless_allowed() {
    let receiver = Receiver::start();
    let host = host_with("retry-initial-ms = 50\n", "");
    let literal = host.api_post("/v1/subscriptions", &json!({ "url": receiver.url("/hook") }));
    assert_eq!(literal.status, 400, "{}", literal.body);
    assert!(literal.body.contains("allow-loopback"), "{}", literal.body);

    // A name is checked when it resolves, at send time.
    let url = format!("http://localhost:{}/hook", receiver.address().port());
    let subscription = subscribe(&host, json!({ "url": url }));
    record_events(&host, 0..1);
    let dead = eventually("the delivery to localhost to be refused", WAIT, || {
        deliveries(&host, subscription["id"].as_str().unwrap(), Some("dead"))
            .into_iter()
            .next()
    });
    assert!(dead["lastError"].as_str().unwrap().contains("loopback"), "{dead}");
    assert_eq!(dead["attempts"], 1);
    assert!(receiver.received().is_empty());
}

#[test]
fn a_slow_receiver_does_not_hold_up_the_others() {
    let (slow, fast) = (Receiver::start(), Receiver::start());
    slow.delay(Duration::from_secs(120));
    let host = host_with(
        "allow-loopback = true\nattempt-timeout-ms = 60000\nmax-in-flight = 2\n",
        "",
    );
    subscribe(&host, json!({ "url": slow.url("/slow") }));
    subscribe(&host, json!({ "url": fast.url("/fast") }));
    record_events(&host, 0..10);
    // Every event reaches the fast receiver while the slow one has answered none.
    let got = fast.wait_for_count(10, WAIT);
    assert_eq!(distinct_ids(&got).len(), 10);
    assert!(slow.received().is_empty());
}

#[test]
fn a_host_killed_mid_delivery_resumes_and_loses_nothing() {
    let receiver = Receiver::start();
    receiver.delay(Duration::from_millis(100));
    let mut host = host_with("allow-loopback = true\nmax-in-flight = 2\n", "");
    subscribe(&host, json!({ "url": receiver.url("/hook") }));
    record_events(&host, 0..30);
    receiver.wait_for_count(4, WAIT);
    host.kill();
    let before = distinct_ids(&receiver.received()).len();
    assert!(before < 30, "the kill came before the end ({before} delivered)");

    receiver.delay(Duration::ZERO);
    host.start_again();
    let got = receiver.wait_until(WAIT, "all 30 events after the restart", |r| distinct_ids(r).len() == 30);
    let event_ids: HashSet<String> = got
        .iter()
        .map(|r| r.json()["data"]["event"]["id"].as_str().unwrap().to_string())
        .collect();
    let stored: HashSet<String> = host
        .events(Some("probe:thing"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(event_ids, stored);
}

#[test]
fn finished_deliveries_are_forgotten_after_the_retention_and_pending_ones_are_kept() {
    let receiver = Receiver::start();
    let down = Receiver::start();
    down.always(Some(503));
    let host = host_with(&format!("{FAST_RETRIES}retention-s = 1\nmax-attempts = 1000\n"), "");
    let live = subscribe(&host, json!({ "url": receiver.url("/live") }));
    let failing = subscribe(&host, json!({ "url": down.url("/failing") }));
    let (live, failing) = (live["id"].as_str().unwrap(), failing["id"].as_str().unwrap());

    record_events(&host, 0..5);
    receiver.wait_for_count(5, WAIT);
    eventually("delivered deliveries to be recorded", WAIT, || {
        (deliveries(&host, live, Some("delivered")).len() == 5).then_some(())
    });
    // A second later (the retention) they are forgotten, attempts and all...
    eventually("delivered deliveries to be forgotten", WAIT, || {
        deliveries(&host, live, None).is_empty().then_some(())
    });
    // ...while the deliveries still owed to the failing receiver stay, with their attempts,
    // well past the retention, and the events themselves are untouched.
    let owed = deliveries(&host, failing, None);
    assert_eq!(owed.len(), 5, "{owed:?}");
    assert!(owed.iter().all(|d| d["status"] == "pending"), "{owed:?}");
    assert!(owed.iter().all(|d| d["attempts"].as_i64().unwrap() >= 1), "{owed:?}");
    assert_eq!(host.events(Some("probe:thing")).len(), 5);

    // When the receiver recovers, every owed event still reaches it.
    down.always(None);
    let got = down.wait_until(WAIT, "the owed events", |got| distinct_ids(got).len() == 5);
    assert_eq!(distinct_ids(&got), distinct_ids(&receiver.received()));
}
