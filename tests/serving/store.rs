//! The store as a server: an unreachable PostgreSQL at start-up, a schema newer than the
//! binary, and the database lost while serving (503 with the reason, nothing
//! acknowledged lost, service back when the database is).
//!
//! Except the first, these need the test cluster and run in the PostgreSQL pass only
//! (`SLUICE_TEST_STORE=postgres`, see tests/harness/postgres.rs).

use std::time::Duration;

use serde_json::json;

use crate::harness::postgres::{self, StoreProxy};
use crate::harness::{DownPort, Host, eventually, guest, sluice_command};

#[test]
fn an_unreachable_store_at_start_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let down = DownPort::bind();
    let port = down.port;
    let url = format!("postgres://sluice:hunter2@127.0.0.1:{port}/sluice");
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    let out = sluice_command(
        dir.path(),
        &[
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
        ],
    );
    assert!(!out.success, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "cannot connect to the store at postgres://sluice:***@127.0.0.1:{port}/sluice"
        )),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("hunter2"),
        "the password is not shown: {}",
        out.stderr
    );
}

#[test]
fn a_schema_newer_than_the_binary_is_refused_naming_both_versions() {
    if !postgres::enabled() {
        return; // PostgreSQL pass only.
    }
    let url = postgres::fresh_database();
    // The newest version this binary knows: the one it brings a fresh database to.
    drop(Host::builder().postgres(&url).start());
    let known: i32 = postgres::psql(&url, "SELECT max(version) FROM sluice_migrations")
        .parse()
        .unwrap();
    let newer = known + 1;
    postgres::psql(&url, &format!("INSERT INTO sluice_migrations VALUES ({newer}, 0)"));
    let dir = tempfile::tempdir().unwrap();
    let (data, plugins) = (dir.path().join("data"), dir.path().join("plugins"));
    let out = sluice_command(
        dir.path(),
        &[
            "serve",
            "--data",
            data.to_str().unwrap(),
            "--plugins",
            plugins.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--store",
            &url,
        ],
    );
    assert!(!out.success, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "schema is version {newer}, newer than this sluice knows (version {known})"
        )),
        "{}",
        out.stderr
    );
}

#[test]
fn the_database_lost_while_serving_answers_503_and_service_resumes() {
    if !postgres::enabled() {
        return; // PostgreSQL pass only.
    }
    let proxy = StoreProxy::start();
    let url = proxy.url(&postgres::fresh_database());
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .plugin("recorder", guest("trigger_probe"), None)
        .postgres(&url)
        .start();
    let webhook = host.webhook_url("webhook");
    let trigger = host.create_trigger(&json!({ "botId": "recorder", "authenticate": false }));
    let events_url = host.trigger_event_url(trigger["id"].as_str().unwrap());

    let before = host.post(&webhook, r#"{"n": 1}"#);
    assert_eq!(before.status, 200, "{}", before.body);

    proxy.cut();
    let lost = host.post(&webhook, r#"{"n": 2}"#);
    assert_eq!(lost.status, 503, "a platform retries a 503: {}", lost.body);
    assert!(lost.body.contains("store cannot be reached"), "{}", lost.body);
    let queued = host.post(&events_url, r#"{"n": 2}"#);
    assert_eq!(queued.status, 503, "{}", queued.body);
    assert!(queued.body.contains("store cannot be reached"), "{}", queued.body);
    let listing = host.api_get("/v1/chat/events");
    assert_eq!(listing.status, 503, "{}", listing.body);
    assert_eq!(listing.json()["type"], "Unavailable", "{}", listing.body);
    let readyz = host.send(host.client().get(host.url("/readyz")));
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    assert_eq!(readyz.json()["reason"], "store unreachable", "{}", readyz.body);

    proxy.restore();
    let after = eventually("the webhook to be recorded again", Duration::from_secs(30), || {
        let answer = host.post(&webhook, r#"{"n": 3}"#);
        (answer.status == 200).then_some(answer)
    });
    let accepted = eventually("trigger events to be accepted again", Duration::from_secs(30), || {
        let answer = host.post(&events_url, r#"{"n": 3}"#);
        (answer.status == 200).then_some(answer)
    });
    let event_id = accepted.header("x-sluice-event-id").unwrap().to_string();
    let readyz = host.send(host.client().get(host.url("/readyz")));
    assert_eq!(readyz.status, 200, "ready again: {}", readyz.body);
    host.trigger_event_in(trigger["id"].as_str().unwrap(), &event_id, "done");

    // Every acknowledged webhook is stored, and nothing from the refused one.
    let recorded: Vec<i64> = host
        .events(Some("webhook:event"))
        .iter()
        .map(|event| event["payload"]["body"]["n"].as_i64().unwrap())
        .collect();
    assert!(recorded.contains(&1) && recorded.contains(&3), "{recorded:?}");
    for id in [&before, &after].map(|answer| answer.json()["eventId"].as_str().unwrap().to_string()) {
        assert_eq!(host.api_get(&format!("/v1/chat/events/{id}")).status, 200);
    }
}
