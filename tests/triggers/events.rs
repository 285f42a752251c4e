//! The trigger event endpoint and what happens to an event afterwards: authentication
//! and status codes, bodies, sessions, contacts, the history on the conversation,
//! retries with backoff, the failed state and its retry, and idempotency keys.

use std::time::Duration;

use crate::harness::{Answer, Host, eventually, guest, post_whole_then_read};
use serde_json::{Value, json};

const CONFIG: &str = r#"
[triggers]
max-attempts = 3
retry-base-ms = 20
retry-max-ms = 100
max-body-bytes = 65536
"#;

fn host() -> Host {
    Host::builder()
        .plugin("recorder", guest("trigger_probe"), None)
        .config(CONFIG)
        .start()
}

fn trigger(host: &Host, settings: Value) -> (String, String) {
    let mut body = json!({ "botId": "recorder" });
    body.as_object_mut()
        .unwrap()
        .extend(settings.as_object().unwrap().clone());
    let created = host.create_trigger(&body);
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

/// POSTs `body` as JSON to the trigger's event URL; returns the answer.
fn send(host: &Host, id: &str, query: &str, body: &Value) -> Answer {
    host.send(
        host.client()
            .post(format!("{}{query}", host.trigger_event_url(id)))
            .header("content-type", "application/json")
            .body(body.to_string()),
    )
}

/// The queued event's id from an accepted answer.
fn accepted(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), json!({ "ok": true }));
    answer.header("x-sluice-event-id").unwrap().to_string()
}

/// What the plugin saw when it ran the event (its `processed` event), once it ran.
fn processed(host: &Host, event_id: &str) -> Value {
    eventually(
        &format!("the plugin to process {event_id}"),
        Duration::from_secs(60),
        || {
            host.events(Some("tprobe:processed"))
                .into_iter()
                .find(|e| e["payload"]["eventId"] == event_id)
        },
    )
}

fn finished(host: &Host, event_id: &str) -> Value {
    eventually(&format!("{event_id} to finish"), Duration::from_secs(60), || {
        host.events_of("trigger:execution:finished", event_id).pop()
    })
}

#[test]
fn the_event_endpoint_checks_secret_method_parameters_and_body() {
    let host = host();
    let (id, secret) = trigger(&host, json!({ "authenticate": true }));
    let url = host.trigger_event_url(&id);
    let post = || host.client().post(&url).header("content-type", "application/json");

    let missing = host.send(post().body("{}"));
    assert_eq!(missing.status, 401, "{}", missing.body);
    assert!(
        missing.json()["message"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer")
    );
    let wrong = host.send(post().bearer_auth("0".repeat(64)).body("{}"));
    assert_eq!(wrong.status, 401);
    let wrong_with_a_large_body = post_whole_then_read(
        &url,
        &[("authorization", &format!("Bearer {}", "0".repeat(64)))],
        &vec![b'x'; 16 << 20],
    );
    assert!(
        wrong_with_a_large_body.starts_with("HTTP/1.1 401"),
        "{wrong_with_a_large_body}"
    );
    let right = host.send(post().bearer_auth(&secret).body(r#"{"order_id":"12345"}"#));
    let event_id = accepted(&right);
    assert!(event_id.starts_with("tev_"), "{event_id}");
    assert_eq!(right.header("content-type"), Some("application/json"));

    // The same on the path without /api, and with GET.
    let plain = host.send(
        host.client()
            .get(host.url(&format!("/v1/integration/trigger/{id}/event?session=monitoring")))
            .bearer_auth(&secret),
    );
    accepted(&plain);

    let unknown = host.send(
        host.client()
            .post(host.trigger_event_url("trg_01NOSUCHTRIGGER"))
            .body("{}"),
    );
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.json()["type"], "ResourceNotFound");

    let put = host.send(host.client().put(&url).bearer_auth(&secret).body("{}"));
    assert_eq!(put.status, 405);
    assert_eq!(put.header("allow"), Some("GET, POST"));

    let malformed = [
        (
            url.clone(),
            "application/json",
            "{\"order_id\": 12".to_string(),
            "not valid JSON",
        ),
        (
            format!("{url}?session="),
            "application/json",
            "{}".into(),
            "session is empty",
        ),
        (
            format!("{url}?contact.name=Ann&contact_name=Bob"),
            "application/json",
            "{}".into(),
            "given twice",
        ),
        (
            format!("{url}?contact.email=nope"),
            "text/plain",
            "hi".into(),
            "not an email address",
        ),
    ];
    for (target, content_type, body, problem) in malformed {
        let answer = host.send(
            host.client()
                .post(&target)
                .bearer_auth(&secret)
                .header("content-type", content_type)
                .body(body),
        );
        assert_eq!(answer.status, 400, "{target}: {}", answer.body);
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(message.contains(problem), "{message:?} should mention {problem:?}");
    }
    let bad_key = host.send(post().bearer_auth(&secret).header("idempotency-key", " ").body("{}"));
    assert_eq!(bad_key.status, 400);

    let too_large = host.send(
        host.client()
            .post(&url)
            .bearer_auth(&secret)
            .header("content-type", "text/plain")
            .body("x".repeat(70_000)),
    );
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    // Far over, and written whole before the answer is read: the client still reads the 413.
    let authorization = format!("Bearer {secret}");
    let answer = post_whole_then_read(
        &url,
        &[("authorization", &authorization), ("content-type", "text/plain")],
        &vec![b'x'; 16 << 20],
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("over the limit of 65536 bytes"), "{answer}");

    // An open trigger takes events without a secret; a deleted one is gone.
    let (open, _) = trigger(&host, json!({ "authenticate": false }));
    accepted(&send(&host, &open, "", &json!({})));
    let deleted = host.api_post(&format!("/v1/integration/trigger/{open}/delete"), &json!({}));
    assert_eq!(deleted.status, 200);
    assert_eq!(send(&host, &open, "", &json!({})).status, 404);

    // Refused events were never queued: only the two accepted ones of `id` exist.
    let listed = host.api_get(&format!("/v1/integration/trigger/{id}/events?take=100"));
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 2, "{}", listed.body);
}

#[test]
fn json_text_and_empty_events_reach_the_plugin_as_sent() {
    let host = host();
    let (id, secret) = trigger(&host, json!({ "authenticate": true }));
    let url = host.trigger_event_url(&id);

    let json_event = accepted(
        &host.send(
            host.client()
                .post(format!("{url}?x=1&session=s1"))
                .bearer_auth(&secret)
                .header("content-type", "application/json")
                .body(r#"{"n":1,"order_id":"12345"}"#),
        ),
    );
    let text_event = accepted(
        &host.send(
            host.client()
                .post(&url)
                .bearer_auth(&secret)
                .header("content-type", "text/plain")
                .body("Generate daily sales report for 2024-01-15"),
        ),
    );
    let get_event = accepted(
        &host.send(
            host.client()
                .get(format!("{url}?session=monitoring&contact_name=System+Monitor"))
                .bearer_auth(&secret),
        ),
    );
    let empty_event = accepted(&host.send(host.client().post(&url).bearer_auth(&secret)));

    let seen = processed(&host, &json_event)["payload"].clone();
    assert_eq!(seen["operation"], "trigger-event");
    assert_eq!(seen["triggerId"], id.as_str());
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["contentType"], "application/json");
    assert_eq!(seen["query"], "x=1&session=s1");
    assert_eq!(seen["session"], "s1");
    assert_eq!(seen["body"], r#"{"n":1,"order_id":"12345"}"#);
    assert_eq!(seen["source"], "event");
    assert_eq!(seen["attempt"], 1);
    assert_eq!(
        seen["authorization"],
        Value::Null,
        "the trigger secret is not handed to the plugin"
    );

    let seen = processed(&host, &text_event)["payload"].clone();
    assert_eq!(seen["contentType"], "text/plain");
    assert_eq!(seen["body"], "Generate daily sales report for 2024-01-15");
    assert_eq!(seen["session"], Value::Null);

    let seen = processed(&host, &get_event)["payload"].clone();
    assert_eq!(
        (seen["method"].as_str(), seen["body"].as_str()),
        (Some("GET"), Some(""))
    );
    assert!(seen["contactUserId"].as_str().is_some());

    let seen = processed(&host, &empty_event)["payload"].clone();
    assert_eq!(
        (seen["method"].as_str(), seen["body"].as_str()),
        (Some("POST"), Some(""))
    );

    // The history keeps the event as received: JSON parsed, text as text.
    let received = host.events_of("trigger:event:received", &json_event);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0]["payload"]["body"], json!({ "n": 1, "order_id": "12345" }));
    assert_eq!(received[0]["payload"]["query"], json!({ "x": "1", "session": "s1" }));
    let received = host.events_of("trigger:event:received", &text_event);
    assert_eq!(
        received[0]["payload"]["body"],
        "Generate daily sales report for 2024-01-15"
    );
}

#[test]
fn sessions_keep_events_in_one_conversation_while_fresh() {
    let host = host();
    let (id, _) = trigger(&host, json!({ "sessionDuration": 3_600_000 }));
    let a1 = accepted(&send(&host, &id, "?session=checkout_abc123", &json!({ "n": 1 })));
    let a2 = accepted(&send(&host, &id, "?session=checkout_abc123", &json!({ "n": 2 })));
    let b1 = accepted(&send(&host, &id, "?session=other", &json!({ "n": 3 })));
    let lone1 = accepted(&send(&host, &id, "", &json!({ "n": 4 })));
    let lone2 = accepted(&send(&host, &id, "", &json!({ "n": 5 })));
    let conversation = |event: &str| {
        processed(&host, event)["payload"]["conversationId"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(conversation(&a1), conversation(&a2));
    assert_ne!(conversation(&a1), conversation(&b1));
    assert_ne!(
        conversation(&lone1),
        conversation(&lone2),
        "no session: one conversation per event"
    );
    assert_ne!(conversation(&lone1), conversation(&a1));

    let found = host.api_get(&format!(
        "/v1/chat/conversations?tags[session]=checkout_abc123&tags[triggerId]={id}"
    ));
    let conversations = found.json()["conversations"].as_array().unwrap().clone();
    assert_eq!(conversations.len(), 1, "{}", found.body);
    assert_eq!(conversations[0]["id"], conversation(&a1).as_str());
    assert_eq!(conversations[0]["channel"], "trigger");
    assert_eq!(conversations[0]["integration"], "tprobe");

    // A 1 ms session is stale by the time the next event comes.
    let (short, _) = trigger(&host, json!({ "sessionDuration": 1 }));
    let first = accepted(&send(&host, &short, "?session=s", &json!({})));
    let first_conversation = conversation(&first);
    let second = accepted(&send(&host, &short, "?session=s", &json!({})));
    assert_ne!(conversation(&second), first_conversation);
}

#[test]
fn contacts_are_created_updated_and_linked_to_the_conversation() {
    let host = host();
    let (id, _) = trigger(&host, json!({}));
    let first = accepted(&send(
        &host,
        &id,
        "?session=s&contact.name=John+Smith&contact.email=John@Example.com",
        &json!({}),
    ));
    let second = accepted(&send(
        &host,
        &id,
        "?session=s&contact_name=John+Q+Smith&contact_email=john@example.com&contact_phone=555-0123",
        &json!({}),
    ));
    let seen_first = processed(&host, &first)["payload"].clone();
    let seen_second = processed(&host, &second)["payload"].clone();
    let contact = seen_first["contactUserId"].as_str().unwrap().to_string();
    assert_eq!(seen_second["contactUserId"], contact.as_str(), "found again by email");
    let conversation = seen_first["conversationId"].as_str().unwrap();

    let user = host.api_get(&format!("/v1/chat/users/{contact}")).json()["user"].clone();
    assert_eq!(user["name"], "John Q Smith", "updated by the later event");
    assert_eq!(
        user["tags"],
        json!({ "email": "john@example.com", "phone": "555-0123" })
    );

    let linked = host
        .api_get(&format!("/v1/chat/users?conversationId={conversation}"))
        .json();
    let linked: Vec<&str> = linked["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(linked, [contact.as_str()]);

    // The events on the conversation name the contact too.
    let received = host.events_of("trigger:event:received", &second);
    assert_eq!(received[0]["userId"], contact.as_str());
    assert_eq!(received[0]["payload"]["contact"]["phone"], "555-0123");
}

#[test]
fn the_conversation_records_the_event_logs_creations_and_outcome() {
    let host = host();
    let (id, _) = trigger(&host, json!({}));
    let event_id = accepted(&send(
        &host,
        &id,
        "?session=history",
        &json!({ "message": "hello from a trigger" }),
    ));
    let done = finished(&host, &event_id);
    let conversation = done["conversationId"].as_str().unwrap().to_string();

    let payload = &done["payload"];
    assert_eq!(payload["attempt"], 1);
    assert_eq!(payload["triggerId"], id.as_str());
    assert_eq!(payload["response"]["status"], 200);
    let logs = payload["logs"].as_array().unwrap();
    assert!(
        logs.iter()
            .any(|l| l["level"] == "info" && l["message"].as_str().unwrap().contains("trigger-probe runs")),
        "{logs:?}"
    );
    let created = payload["created"].as_array().unwrap();
    let kinds: Vec<&str> = created.iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["user", "message", "event"], "{created:?}");

    let history = host
        .api_get(&format!("/v1/chat/events?conversationId={conversation}"))
        .json();
    let mut types: Vec<&str> = history["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    types.reverse();
    assert_eq!(
        types,
        [
            "trigger:event:received",
            "tprobe:processed",
            "trigger:execution:finished"
        ]
    );

    let messages = host
        .api_get(&format!("/v1/chat/messages?conversationId={conversation}"))
        .json();
    let messages = messages["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["payload"]["text"], "hello from a trigger");
    assert_eq!(messages[0]["id"], created[1]["id"]);
}

#[test]
fn failures_are_retried_with_backoff_then_fail_visibly_and_can_be_retried() {
    let host = host();
    let (id, _) = trigger(&host, json!({}));

    // Fails twice, then succeeds on the third (last) attempt.
    let flaky = accepted(&send(&host, &id, "", &json!({ "failUntilAttempt": 3 })));
    let done = finished(&host, &flaky);
    assert_eq!(done["payload"]["attempt"], 3);
    let failures = host.events_of("trigger:execution:failed", &flaky);
    let mut attempts: Vec<i64> = failures
        .iter()
        .map(|f| f["payload"]["attempt"].as_i64().unwrap())
        .collect();
    attempts.sort();
    assert_eq!(attempts, [1, 2]);
    for failure in &failures {
        assert_eq!(failure["payload"]["final"], false);
        assert_eq!(failure["payload"]["error"]["kind"], "plugin-error");
        assert!(failure["payload"]["nextAttemptAt"].is_string());
        assert_eq!(failure["status"], "failed");
        assert!(failure["failureReason"].as_str().unwrap().contains("on purpose"));
        assert_eq!(failure["conversationId"], done["conversationId"]);
    }
    let summary = host.trigger_event_in(&id, &flaky, "done");
    assert_eq!(summary["attempts"], 3);

    // Needs five attempts: fails for good after three, shows as failed, and a retry by
    // hand gives it a fresh round.
    let stubborn = accepted(&send(&host, &id, "", &json!({ "failUntilAttempt": 5 })));
    let failed = host.trigger_event_in(&id, &stubborn, "failed");
    assert_eq!(failed["attempts"], 3);
    assert!(
        failed["lastError"]
            .as_str()
            .unwrap()
            .contains("failing attempt 3 on purpose")
    );
    let last = eventually("the final failure", Duration::from_secs(30), || {
        host.events_of("trigger:execution:failed", &stubborn)
            .into_iter()
            .find(|f| f["payload"]["final"] == true)
    });
    assert_eq!(last["payload"]["attempt"], 3);
    assert_eq!(last["payload"]["nextAttemptAt"], Value::Null);
    let listed = host
        .api_get(&format!("/v1/integration/trigger/{id}/events?status=failed"))
        .json();
    let listed: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [stubborn.as_str()]);

    let retried = host.api_post(
        &format!("/v1/integration/trigger/{id}/events/{stubborn}/retry"),
        &json!({}),
    );
    assert_eq!(retried.status, 200, "{}", retried.body);
    let done = finished(&host, &stubborn);
    assert_eq!(done["payload"]["attempt"], 5);
    let again = host.api_post(
        &format!("/v1/integration/trigger/{id}/events/{stubborn}/retry"),
        &json!({}),
    );
    assert_eq!(again.status, 409, "only failed events are retried: {}", again.body);
    let missing = host.api_post(
        &format!("/v1/integration/trigger/{id}/events/tev_nope/retry"),
        &json!({}),
    );
    assert_eq!(missing.status, 404);

    // A refusal (invalid input) is not retried; a crash and a 5xx answer are.
    let rejected = accepted(&send(&host, &id, "", &json!({ "reject": true })));
    let failed = host.trigger_event_in(&id, &rejected, "failed");
    assert_eq!(failed["attempts"], 1);
    let crashing = accepted(&send(&host, &id, "", &json!({ "trap": true })));
    let failed = host.trigger_event_in(&id, &crashing, "failed");
    assert_eq!(failed["attempts"], 3);
    let kinds: Vec<Value> = host
        .events_of("trigger:execution:failed", &crashing)
        .iter()
        .map(|f| f["payload"]["error"]["kind"].clone())
        .collect();
    assert_eq!(kinds, vec![json!("plugin-crashed"); 3]);
    let unavailable = accepted(&send(&host, &id, "", &json!({ "status": 503 })));
    assert_eq!(host.trigger_event_in(&id, &unavailable, "failed")["attempts"], 3);

    // The host kept serving throughout.
    let fine = accepted(&send(&host, &id, "", &json!({})));
    finished(&host, &fine);
}

#[test]
fn an_idempotency_key_makes_a_senders_retry_a_no_op() {
    let host = host();
    let (id, _) = trigger(&host, json!({}));
    let (other, _) = trigger(&host, json!({}));
    let keyed = |trigger: &str, key: &str, body: &Value| {
        host.send(
            host.client()
                .post(host.trigger_event_url(trigger))
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(body.to_string()),
        )
    };
    let first = keyed(&id, "order-12345", &json!({ "n": 1 }));
    let first_id = accepted(&first);
    assert_eq!(first.header("idempotent-replayed"), None);
    let retry = keyed(&id, "order-12345", &json!({ "n": 1 }));
    assert_eq!(accepted(&retry), first_id);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let different = accepted(&keyed(&id, "order-67890", &json!({ "n": 2 })));
    assert_ne!(different, first_id);
    let elsewhere = accepted(&keyed(&other, "order-12345", &json!({ "n": 1 })));
    assert_ne!(elsewhere, first_id, "keys belong to one trigger");

    finished(&host, &first_id);
    finished(&host, &different);
    // Still a no-op after the event ran.
    assert_eq!(accepted(&keyed(&id, "order-12345", &json!({ "n": 1 }))), first_id);
    let listed = host.api_get(&format!("/v1/integration/trigger/{id}/events")).json();
    assert_eq!(listed["items"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(host.events_of("trigger:execution:finished", &first_id).len(), 1);
    let runs = host
        .events(Some("tprobe:processed"))
        .into_iter()
        .filter(|e| e["payload"]["eventId"] == first_id.as_str())
        .count();
    assert_eq!(runs, 1);
}

#[test]
fn deleting_a_trigger_cancels_its_waiting_events_and_keeps_its_conversations() {
    let host = host();
    let (id, _) = trigger(&host, json!({}));
    let kept = accepted(&send(&host, &id, "?session=kept", &json!({ "message": "still here" })));
    let conversation = finished(&host, &kept)["conversationId"].as_str().unwrap().to_string();

    // One slow event runs; the next of its session waits behind it.
    let slow = accepted(&send(&host, &id, "?session=busy", &json!({ "sleepMs": 1500 })));
    host.trigger_event_in(&id, &slow, "running");
    let waiting = accepted(&send(&host, &id, "?session=busy", &json!({})));
    assert_eq!(host.trigger_event_in(&id, &waiting, "queued")["status"], "queued");

    let deleted = host.api_post(&format!("/api/v1/integration/trigger/{id}/delete"), &json!({}));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(send(&host, &id, "", &json!({})).status, 404);
    let cancelled = host.trigger_event_in(&id, &waiting, "cancelled");
    assert_eq!(cancelled["lastError"], "the trigger was deleted");
    // The event already running finishes.
    host.trigger_event_in(&id, &slow, "done");
    let retry = host.api_post(
        &format!("/v1/integration/trigger/{id}/events/{waiting}/retry"),
        &json!({}),
    );
    assert_eq!(retry.status, 404, "{}", retry.body);

    let still = host.api_get(&format!("/v1/chat/conversations/{conversation}"));
    assert_eq!(still.status, 200, "the trigger's conversations stay: {}", still.body);
    let messages = host
        .api_get(&format!("/v1/chat/messages?conversationId={conversation}"))
        .json();
    assert_eq!(messages["messages"][0]["payload"]["text"], "still here");
}
