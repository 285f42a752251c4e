//! The real ChatBotKit SDK (`@chatbotkit/sdk` from npm, installed by scripts/setup into
//! tests/clients/chatbotkit) against the running binary, with only its base URL pointed
//! at sluice: create, list across two pages, fetch, update, setup, events (POST with
//! session and contact, GET), invoke, delete, and 404 on the deleted trigger's event URL.
//! The script asserts each answer; this test then checks through the bot API that the
//! events it sent were processed into the right conversation with the right contacts.

use std::process::Command;
use std::time::Duration;

use crate::harness::{API_TOKEN, Host, eventually, guest, repo_root};
use serde_json::Value;

#[test]
fn the_chatbotkit_sdk_drives_the_trigger_api() {
    let client = repo_root().join("tests/clients/chatbotkit");
    assert!(
        client.join("node_modules/@chatbotkit/sdk/package.json").exists(),
        "the ChatBotKit SDK is not installed: run scripts/setup (it runs npm ci in {})",
        client.display()
    );
    let host = Host::builder().plugin("probe", guest("trigger_probe"), None).start();
    let output = Command::new("node")
        .arg("sdk-check.mjs")
        .current_dir(&client)
        .env("SLUICE_URL", &host.base)
        .env("SLUICE_API_TOKEN", API_TOKEN)
        .env("SLUICE_BOT", "probe")
        .output()
        .expect("node runs (scripts/setup installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the SDK script failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the script's last line is not its JSON report ({e}): {stdout}"));

    let seen = |key: &str| -> Value {
        let event_id = report[key].as_str().unwrap().to_string();
        eventually(&format!("{key} to be processed"), Duration::from_secs(30), || {
            host.events(Some("tprobe:processed"))
                .into_iter()
                .find(|e| e["payload"]["eventId"] == event_id.as_str())
        })["payload"]
            .clone()
    };
    let post = seen("postEventId");
    let get = seen("getEventId");
    let invoked = seen("invokeEventId");
    assert_eq!(post["method"], "POST");
    assert_eq!(post["session"], "order_12345");
    assert_eq!(get["method"], "GET");
    assert_eq!(
        get["conversationId"], post["conversationId"],
        "one session, one conversation"
    );
    assert_eq!(invoked["source"], "invoke");
    assert_ne!(invoked["conversationId"], post["conversationId"]);

    let customer = host.api_get(&format!("/v1/chat/users/{}", post["contactUserId"].as_str().unwrap()));
    assert_eq!(customer.json()["user"]["name"], "John Smith");
    assert_eq!(customer.json()["user"]["tags"]["email"], "customer@example.com");
    let monitor = host.api_get(&format!("/v1/chat/users/{}", get["contactUserId"].as_str().unwrap()));
    assert_eq!(monitor.json()["user"]["name"], "System Monitor");
    let linked = host.api_get(&format!(
        "/v1/chat/users?conversationId={}",
        post["conversationId"].as_str().unwrap()
    ));
    assert_eq!(linked.json()["users"].as_array().unwrap().len(), 2, "{}", linked.body);

    // The deleted trigger is gone; the other two remain.
    let listed = host.api_get("/api/v1/integration/trigger/list").json();
    let ids: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(!ids.contains(&report["triggerId"].as_str().unwrap()));
}
