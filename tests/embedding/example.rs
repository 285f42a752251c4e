//! The example application, built and started as a user would run it: its own routes,
//! sluice under `/integrations`, events seen in-process, an action called from its route.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::fake_platform::{FakePlatform, chat_sidecar};
use crate::harness::{eventually, guest, run, sluice_binary};

/// Builds the example (a no-op when `cargo test` built it already: the whole workspace is
/// named so that dependencies' features are the ones the test build chose, and nothing is
/// compiled again) and answers its path.
fn example_binary(name: &str) -> PathBuf {
    let profile_dir = sluice_binary().parent().expect("<target>/<profile>").to_path_buf();
    let target = profile_dir.parent().expect("<target>").to_path_buf();
    let mut command = Command::new(env!("CARGO"));
    command
        .args(["build", "--quiet", "--workspace", "--example", name, "--target-dir"])
        .arg(&target)
        .current_dir(crate::harness::repo_root());
    // Without the variables cargo sets for this test's run: build scripts that watch them
    // (ring's watches CARGO_MANIFEST_DIR and CARGO_PKG_*) would rebuild their crates and
    // every crate above them here, and again at the next build from a shell.
    for (name, _) in std::env::vars() {
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || name.starts_with("CARGO_BIN_")
            || [
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_str())
        {
            command.env_remove(name);
        }
    }
    if profile_dir.file_name().is_some_and(|p| p == "release") {
        command.arg("--release");
    }
    run(&mut command, "building the example");
    profile_dir.join("examples").join(name)
}

struct Example {
    child: Child,
    ready: Value,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_example_app_serves_its_routes_and_sluice_under_its_prefix() {
    let platform = FakePlatform::start();
    let dir = tempfile::tempdir().unwrap();
    let sidecar = dir.path().join("chat.toml");
    std::fs::write(&sidecar, chat_sidecar(&platform, &["http://127.0.0.1:*"], None)).unwrap();
    let mut child = Command::new(example_binary("embed"))
        .arg(guest("webhook"))
        .arg(guest("chat"))
        .arg(&sidecar)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .expect("the example starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let example = Example {
        child,
        ready: serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a ready line ({e}): {line:?}")),
    };
    let base = example.ready["listen"].as_str().unwrap().to_string();
    let token = example.ready["apiToken"].as_str().unwrap().to_string();
    let webhook_url = example.ready["webhookUrl"].as_str().unwrap().to_string();
    assert!(
        webhook_url.starts_with(&format!("{base}/integrations/webhooks/")),
        "the webhook URL includes the prefix: {webhook_url}"
    );
    let client = reqwest::blocking::Client::new();

    // The application's own route.
    let hello = client.get(format!("{base}/hello")).send().unwrap();
    assert_eq!(hello.status(), 200);
    assert_eq!(hello.text().unwrap(), "hello from the application");

    // A webhook through the prefix runs the plugin and is recorded.
    let answer = client
        .post(&webhook_url)
        .header("content-type", "application/json")
        .body(r#"{"order":42}"#)
        .send()
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().contains_key("x-sluice-request-id"));
    let event_id = answer.json::<Value>().unwrap()["eventId"].as_str().unwrap().to_string();
    let events: Value = client
        .get(format!("{base}/integrations/v1/chat/events?type=webhook:event"))
        .bearer_auth(&token)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(events["events"][0]["id"], event_id);
    assert_eq!(events["events"][0]["payload"]["body"], json!({ "order": 42 }));

    // The application saw it through the in-process feed, in the delivered envelope.
    let seen = eventually("the app sees the event", Duration::from_secs(10), || {
        let seen: Value = client.get(format!("{base}/seen")).send().unwrap().json().unwrap();
        (!seen.as_array().unwrap().is_empty()).then_some(seen)
    });
    assert_eq!(seen[0]["type"], "webhook:event");
    assert_eq!(seen[0]["data"]["event"]["id"], event_id);
    assert_eq!(seen[0]["data"]["event"]["payload"]["body"], json!({ "order": 42 }));

    // The application's route calls the chat integration's action in-process.
    let notified = client
        .post(format!("{base}/notify"))
        .json(&json!({ "channelId": "C9", "text": "order 42 is in" }))
        .send()
        .unwrap();
    assert_eq!(notified.status(), 200);
    let output: Value = notified.json().unwrap();
    assert!(output["messageId"].as_str().is_some(), "{output}");
    let posted = platform.calls("chat.postMessage");
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].body, json!({ "channel": "C9", "text": "order 42 is in" }));
    let refused = client
        .post(format!("{base}/notify"))
        .json(&json!({ "channelId": "C9" }))
        .send()
        .unwrap();
    assert_eq!(refused.status(), 400, "input without text breaks the action's schema");
    assert_eq!(platform.calls("chat.postMessage").len(), 1);

    // sluice's routes keep their rules under the prefix.
    let unauthorized = client
        .get(format!("{base}/integrations/v1/chat/events"))
        .send()
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let unknown = client
        .post(format!("{base}/integrations/webhooks/nope"))
        .send()
        .unwrap();
    assert_eq!(unknown.status(), 404);
    assert_eq!(unknown.json::<Value>().unwrap()["type"], "ResourceNotFound");
}
