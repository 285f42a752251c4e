//! NATS JetStream: every event reaches a JetStream consumer exactly once by id,
//! including across a NATS restart while events keep being recorded.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use crate::harness::nats::NatsServer;
use crate::harness::{Host, guest};
use serde_json::{Value, json};

fn record_events(host: &Host, counts: std::ops::Range<i64>) {
    let url = host.webhook_url("probe");
    for count in counts {
        let answer = host.post(&format!("{url}/event/thing"), &json!({ "count": count }).to_string());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

/// Waits until the NATS sink has published (and JetStream acknowledged) the whole outbox.
fn wait_published(host: &Host) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = host.api_get("/v1/delivery").json();
        if status["nats"]["cursor"] == status["outbox"]["head"] && status["nats"]["connected"] == true {
            return status;
        }
        assert!(Instant::now() < deadline, "NATS publishing did not catch up: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_jetstream_consumer_gets_every_event_once_across_a_nats_restart() {
    let mut nats = NatsServer::start();
    let host = Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"probe\"\n"))
        .config(&format!(
            "[nats]\nurl = \"{}\"\nstream = \"EVENTS\"\nsubject-prefix = \"sluice.test\"\n",
            nats.url()
        ))
        .start();
    record_events(&host, 0..10);
    wait_published(&host);
    let first = nats.read_stream("EVENTS");
    assert_eq!(first.len(), 10);
    assert!(
        first.iter().all(|m| m.subject == "sluice.test.probe.thing"),
        "{first:?}"
    );
    assert!(
        first.iter().all(|m| m.id == m.payload["id"]),
        "Nats-Msg-Id is the envelope id"
    );

    nats.stop();
    // The host keeps taking events while NATS is away.
    record_events(&host, 10..20);
    let status = host.api_get("/v1/delivery").json();
    assert_ne!(status["nats"]["cursor"], status["outbox"]["head"], "{status}");
    nats.start_again();
    record_events(&host, 20..25);
    wait_published(&host);

    let all = nats.read_stream("EVENTS");
    let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
    let unique: HashSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "no event twice: {ids:?}");
    let counts: HashSet<i64> = all
        .iter()
        .map(|m| m.payload["data"]["event"]["payload"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, (0..25).collect::<HashSet<_>>());
    let stored: HashSet<String> = host
        .events(Some("probe:thing"))
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let published: HashSet<String> = all
        .iter()
        .map(|m| m.payload["data"]["event"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(published, stored);
}

/// `GET /v1/delivery`'s NATS section, once `done` holds for it.
fn nats_status_once(host: &Host, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = host.api_get("/v1/delivery").json()["nats"].clone();
        if done(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "NATS never showed {what}: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_status_shows_the_nats_connection_as_it_is_with_nothing_waiting() {
    let mut nats = NatsServer::start();
    let host = Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"probe\"\n"))
        .config(&format!("[nats]\nurl = \"{}\"\n", nats.url()))
        .start();
    nats_status_once(&host, "connected", |s| {
        s["connected"] == true && s["state"] == "connected"
    });

    // Nothing is recorded while NATS is away: only the connection can tell.
    nats.stop();
    let down = nats_status_once(&host, "disconnected", |s| s["connected"] == false);
    assert_ne!(down["state"], "connected", "{down}");

    nats.start_again();
    nats_status_once(&host, "connected again", |s| s["connected"] == true);
    record_events(&host, 0..3);
    wait_published(&host);
}
