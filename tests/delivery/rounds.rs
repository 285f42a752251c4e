//! Rounds of attempts: a retry schedule that rides out a receiver's outage (with each
//! delivery's next attempt in the API), recovering every dead delivery since a time in
//! one call, resends that race (one round at a time, every attempt kept under its own
//! number), a resend's round that survives a SIGKILL, and a disabled subscription that
//! keeps its place. Schedules are short here; the default one spans a day.

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use serde_json::{Value, json};

use super::webhooks::{WAIT, deliveries, distinct_ids, host_with, record_events, subscribe};
use crate::harness::eventually;
use crate::harness::receiver::Receiver;
use crate::harness::{API_TOKEN, Host};

/// An ISO 8601 time from the API, in ms.
fn ms(time: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(time.as_str().unwrap_or_else(|| panic!("not a time: {time}")))
        .unwrap()
        .timestamp_millis()
}

fn delivery(host: &Host, id: &str) -> Value {
    let answer = host.api_get(&format!("/v1/deliveries/{id}"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["delivery"].clone()
}

fn attempt_numbers(delivery: &Value) -> Vec<i64> {
    delivery["attemptList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["number"].as_i64().unwrap())
        .collect()
}

fn patch(host: &Host, path: &str, body: Value) -> crate::harness::Answer {
    host.send(host.client().patch(host.url(path)).bearer_auth(API_TOKEN).json(&body))
}

/// The one delivery of `subscription`, once `done` holds for it.
fn the_delivery_once(host: &Host, subscription: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(what, WAIT, || {
        let all = deliveries(host, subscription, None);
        let id = all.first()?["id"].as_str()?.to_string();
        let delivery = delivery(host, &id);
        done(&delivery).then_some(delivery)
    })
}

#[test]
fn a_receiver_down_through_several_attempts_gets_everything_and_each_next_attempt_is_shown() {
    let receiver = Receiver::start();
    receiver.down();
    // The last wait repeats until max-attempts.
    let host = host_with(
        "allow-loopback = true\nretry-schedule-ms = [100, 200, 300]\nmax-attempts = 1000\n",
        "",
    );
    let subscription = subscribe(&host, json!({ "url": receiver.url("/hook") }));
    let id = subscription["id"].as_str().unwrap().to_string();
    record_events(&host, 0..5);
    let pending = eventually("every delivery to have failed four times", WAIT, || {
        let pending = deliveries(&host, &id, Some("pending"));
        (pending.len() == 5 && pending.iter().all(|d| d["attempts"].as_i64() >= Some(4))).then_some(pending)
    });

    // Each failed attempt says when the next is due, at least the scheduled wait after
    // it started; the delivery shows its next attempt too.
    let shown = delivery(&host, pending[0]["id"].as_str().unwrap());
    let attempts = shown["attemptList"].as_array().unwrap();
    assert!(attempts.len() >= 4, "{shown}");
    for (index, attempt) in attempts.iter().enumerate() {
        assert_eq!(attempt["number"], index as i64 + 1, "{shown}");
        assert_eq!(attempt["outcome"], "retry", "{shown}");
        let waited = ms(&attempt["nextAttemptAt"]) - ms(&attempt["startedAt"]);
        let scheduled = [100, 200, 300][index.min(2)];
        assert!(waited >= scheduled, "attempt {} waits {waited} ms: {shown}", index + 1);
    }
    if shown["status"] == "pending" {
        let next = ms(&shown["nextAttemptAt"]);
        assert!(next >= ms(&attempts[0]["startedAt"]), "{shown}");
    }
    assert_eq!(shown["round"], 1);

    receiver.up();
    let got = receiver.wait_until(WAIT, "all 5 events", |r| distinct_ids(r).len() == 5);
    assert_eq!(distinct_ids(&got).len(), 5);
    eventually("every delivery recorded as delivered", WAIT, || {
        (deliveries(&host, &id, Some("delivered")).len() == 5).then_some(())
    });
    assert!(deliveries(&host, &id, Some("dead")).is_empty());
}

#[test]
fn a_recovery_resends_every_dead_delivery_since_a_time_and_shows_its_progress() {
    let receiver = Receiver::start();
    receiver.down();
    let host = host_with("allow-loopback = true\nretry-schedule-ms = [50]\n", "");
    let subscription = subscribe(&host, json!({ "url": receiver.url("/hook") }));
    let id = subscription["id"].as_str().unwrap().to_string();

    // One event dies before `since`, four after.
    record_events(&host, 0..1);
    eventually("the first delivery to be dead-lettered", WAIT, || {
        (deliveries(&host, &id, Some("dead")).len() == 1).then_some(())
    });
    let since = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(5));
    record_events(&host, 1..5);
    let dead = eventually("all five to be dead-lettered", WAIT, || {
        let dead = deliveries(&host, &id, Some("dead"));
        (dead.len() == 5).then_some(dead)
    });
    assert!(dead.iter().all(|d| d["attempts"] == 2), "{dead:?}");

    receiver.up();
    let answer = host.api_post(&format!("/v1/subscriptions/{id}/recover"), &json!({ "since": since }));
    assert_eq!(answer.status, 202, "{}", answer.body);
    let recovery = answer.json()["recovery"].clone();
    let recovery_id = recovery["id"].as_str().unwrap().to_string();
    assert!(recovery_id.starts_with("rcv_"), "{recovery}");
    assert_eq!(recovery["deliveries"], 4, "{recovery}");
    assert_eq!(recovery["subscriptionId"], id.as_str());

    let finished = eventually("the recovery to finish", WAIT, || {
        let answer = host.api_get(&format!("/v1/recoveries/{recovery_id}"));
        assert_eq!(answer.status, 200, "{}", answer.body);
        let recovery = answer.json()["recovery"].clone();
        (recovery["status"] == "finished").then_some(recovery)
    });
    assert_eq!(
        (&finished["delivered"], &finished["dead"], &finished["pending"]),
        (&json!(4), &json!(0), &json!(0)),
        "{finished}"
    );
    // The receiver got the four events since `since`, and not the one before.
    let got = receiver.received();
    let counts: HashSet<i64> = got
        .iter()
        .map(|r| r.json()["data"]["event"]["payload"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, (1..5).collect::<HashSet<_>>());
    let recovered = deliveries(&host, &id, Some("delivered"));
    assert_eq!(recovered.len(), 4);
    for delivery in &recovered {
        assert_eq!(delivery["round"], 2, "{delivery}");
        assert_eq!(delivery["recoveryId"], recovery_id.as_str(), "{delivery}");
        assert_eq!(delivery["attempts"], 3, "{delivery}");
        assert_eq!(delivery["roundAttempts"], 1, "{delivery}");
    }
    assert_eq!(deliveries(&host, &id, Some("dead")).len(), 1);

    // Nothing dead since then: an empty recovery, finished at once.
    let again = host.api_post(&format!("/v1/subscriptions/{id}/recover"), &json!({ "since": since }));
    assert_eq!(again.status, 202, "{}", again.body);
    assert_eq!(again.json()["recovery"]["deliveries"], 0);
    assert_eq!(again.json()["recovery"]["status"], "finished");

    for (path, body, status, needle) in [
        (
            "/v1/subscriptions/sub_nope/recover",
            json!({ "since": since }),
            404,
            "does not exist",
        ),
        (
            &*format!("/v1/subscriptions/{id}/recover"),
            json!({ "since": "yesterday" }),
            400,
            "ISO 8601",
        ),
        (&*format!("/v1/subscriptions/{id}/recover"), json!({}), 400, "since"),
    ] {
        let answer = host.api_post(path, &body);
        assert_eq!(answer.status, status, "{path} {body}: {}", answer.body);
        assert!(answer.body.contains(needle), "{path} {body}: {}", answer.body);
    }
    assert_eq!(host.api_get("/v1/recoveries/rcv_nope").status, 404);
}

#[test]
fn of_six_concurrent_resends_one_starts_a_round_and_every_attempt_is_kept() {
    let receiver = Receiver::start();
    receiver.always(Some(500));
    // Two attempts per round, a while apart, so the round outlasts the six requests.
    let host = host_with("allow-loopback = true\nretry-schedule-ms = [2000]\n", "");
    let subscription = subscribe(&host, json!({ "url": receiver.url("/hook") }));
    let id = subscription["id"].as_str().unwrap().to_string();
    record_events(&host, 0..1);
    let dead = the_delivery_once(&host, &id, "the delivery to be dead-lettered", |d| {
        d["status"] == "dead"
    });
    let delivery_id = dead["id"].as_str().unwrap().to_string();
    assert_eq!(attempt_numbers(&dead), [1, 2]);

    let start = Arc::new(Barrier::new(6));
    let url = host.url(&format!("/v1/deliveries/{delivery_id}/resend"));
    let answers: Vec<(u16, String)> = (0..6)
        .map(|_| {
            let (start, url) = (start.clone(), url.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::new();
                start.wait();
                let answer = client.post(url).bearer_auth(API_TOKEN).json(&json!({})).send().unwrap();
                (answer.status().as_u16(), answer.text().unwrap())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect();
    let accepted: Vec<&(u16, String)> = answers.iter().filter(|(status, _)| *status == 202).collect();
    assert_eq!(accepted.len(), 1, "{answers:?}");
    for (status, body) in answers.iter().filter(|(status, _)| *status != 202) {
        assert_eq!(*status, 409, "{body}");
        assert!(body.contains("round 2 is running"), "{body}");
    }
    let round: Value = serde_json::from_str(&accepted[0].1).unwrap();
    assert_eq!(round["delivery"]["round"], 2, "{round}");

    let dead_again = the_delivery_once(&host, &id, "the second round to end", |d| {
        d["status"] == "dead" && d["attempts"] == 4
    });
    assert_eq!(attempt_numbers(&dead_again), [1, 2, 3, 4]);
    // The receiver saw the envelope once per attempt.
    let got = receiver.received();
    assert_eq!(got.len(), 4, "{got:?}");
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id").unwrap()).collect();
    assert_eq!(ids.len(), 1);
}

#[test]
fn a_resend_round_killed_mid_way_continues_with_the_attempts_it_has_left() {
    let receiver = Receiver::start();
    receiver.always(Some(500));
    let mut host = host_with("allow-loopback = true\nretry-schedule-ms = [700, 700, 700]\n", "");
    let subscription = subscribe(&host, json!({ "url": receiver.url("/hook") }));
    let id = subscription["id"].as_str().unwrap().to_string();
    record_events(&host, 0..1);
    let dead = the_delivery_once(&host, &id, "the first round to end", |d| d["status"] == "dead");
    assert_eq!(dead["attempts"], 4);
    let delivery_id = dead["id"].as_str().unwrap().to_string();

    let answer = host.api_post(&format!("/v1/deliveries/{delivery_id}/resend"), &json!({}));
    assert_eq!(answer.status, 202, "{}", answer.body);
    the_delivery_once(&host, &id, "the second round's first attempt", |d| {
        d["status"] == "pending" && d["attempts"].as_i64() >= Some(5)
    });
    host.kill();
    host.start_again();

    let over = the_delivery_once(&host, &id, "the second round to end after the restart", |d| {
        d["status"] == "dead"
    });
    assert_eq!(over["round"], 2, "{over}");
    assert_eq!(over["attempts"], 8, "the round had its four attempts: {over}");
    assert_eq!(attempt_numbers(&over), (1..=8).collect::<Vec<_>>());
    assert!(receiver.received().len() >= 8);
}

#[test]
fn a_disabled_subscription_keeps_its_place_or_starts_from_now_when_asked() {
    let receiver = Receiver::start();
    let host = host_with("allow-loopback = true\nretry-schedule-ms = [100]\n", "");
    let subscription = subscribe(&host, json!({ "url": receiver.url("/hook") }));
    let id = subscription["id"].as_str().unwrap().to_string();
    let path = format!("/v1/subscriptions/{id}");
    let count_of =
        |r: &crate::harness::receiver::Received| r.json()["data"]["event"]["payload"]["count"].as_i64().unwrap();
    // What the receiver got is recorded as delivered a moment after it answered: wait for
    // that, so that the pending deliveries counted below are only those made while disabled.
    let nothing_pending = |what: &str| {
        eventually(what, WAIT, || {
            deliveries(&host, &id, Some("pending")).is_empty().then_some(())
        });
    };
    record_events(&host, 0..2);
    receiver.wait_for_count(2, WAIT);
    nothing_pending("the first two deliveries recorded as delivered");

    let off = patch(&host, &path, json!({ "enabled": false }));
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!(off.json()["resumed"], Value::Null);
    assert!(off.json()["subscription"]["disabledAt"].is_string(), "{}", off.body);
    record_events(&host, 2..5);
    eventually("three deliveries kept while disabled", WAIT, || {
        (deliveries(&host, &id, Some("pending")).len() == 3).then_some(())
    });
    assert_eq!(receiver.received().len(), 2, "nothing is sent while disabled");

    // Enabled again: what was recorded while it was off is delivered.
    let on = patch(&host, &path, json!({ "enabled": true }));
    assert_eq!(on.status, 200, "{}", on.body);
    assert_eq!(on.json()["resumed"], json!({ "from": "backlog", "pending": 3 }));
    let got = receiver.wait_until(WAIT, "the backlog", |r| distinct_ids(r).len() == 5);
    assert_eq!(got.iter().map(count_of).collect::<HashSet<_>>(), (0..5).collect());
    nothing_pending("the backlog recorded as delivered");

    // Or from now, when asked: what was recorded while it was off is skipped.
    assert_eq!(patch(&host, &path, json!({ "enabled": false })).status, 200);
    record_events(&host, 5..7);
    eventually("two deliveries kept while disabled", WAIT, || {
        (deliveries(&host, &id, Some("pending")).len() == 2).then_some(())
    });
    let bad = patch(&host, &path, json!({ "enabled": true, "resume": "later" }));
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.body.contains("backlog"), "{}", bad.body);
    let now = patch(&host, &path, json!({ "enabled": true, "resume": "now" }));
    assert_eq!(now.status, 200, "{}", now.body);
    assert_eq!(now.json()["resumed"], json!({ "from": "now", "skipped": 2 }));
    assert_eq!(now.json()["subscription"]["enabled"], true);
    assert_eq!(now.json()["subscription"]["disabledAt"], Value::Null);
    assert!(deliveries(&host, &id, Some("pending")).is_empty());
    record_events(&host, 7..8);
    let got = receiver.wait_until(WAIT, "the event after re-enabling", |r| distinct_ids(r).len() == 6);
    let counts: HashSet<i64> = got.iter().map(count_of).collect();
    assert_eq!(counts, [0, 1, 2, 3, 4, 7].into_iter().collect());
}
