//! The plugins folder: installations, their configuration, webhook ids that survive
//! restarts, register and unregister, and the admin API.

use std::time::Duration;

use crate::harness::{Host, guest, installation_in, post_whole_then_read};
use serde_json::json;

const PROBE_CONFIG: &str = "[configuration]\nname = \"first\"\n";

#[test]
fn start_up_prints_every_webhook_url() {
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .plugin("probe", guest("probe"), Some(PROBE_CONFIG))
        .start();
    for name in ["webhook", "probe"] {
        let url = host.webhook_url(name);
        assert!(
            host.output.wait_for(&url, Duration::from_secs(1)).is_some(),
            "{url} printed:\n{}",
            host.output.text()
        );
        let webhook_id = url.rsplit('/').next().unwrap();
        assert!(
            webhook_id.len() >= 32 && webhook_id.chars().all(|c| c.is_ascii_hexdigit()),
            "128 random bits at least: {webhook_id}"
        );
    }
    assert_ne!(host.webhook_url("webhook"), host.webhook_url("probe"));
}

#[test]
fn an_unknown_webhook_answers_404_in_json() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let answer = host.post(&host.url("/webhooks/0123456789abcdef0123456789abcdef"), "{}");
    assert_eq!(answer.status, 404);
    assert_eq!(answer.json()["type"], "ResourceNotFound");
    assert!(answer.json()["message"].as_str().unwrap().contains("webhook id"));

    // A large body sent whole before reading, as most clients do: the 404 still arrives
    // (sluice reads the body it does not need instead of resetting the connection).
    let whole = post_whole_then_read(
        &host.url("/webhooks/0123456789abcdef0123456789abcdef"),
        &[],
        &vec![b'x'; 16 << 20],
    );
    assert!(whole.starts_with("HTTP/1.1 404"), "{whole}");
    assert!(whole.contains("webhook id"), "{whole}");
}

#[test]
fn missing_required_configuration_answers_503_naming_it() {
    let host = Host::builder().plugin("probe", guest("probe"), None).start();
    assert!(
        host.output
            .wait_for("\"name\" is a required property", Duration::from_secs(1))
            .is_some(),
        "reported at start-up:\n{}",
        host.output.text()
    );
    let installation = host.installation("probe");
    assert_eq!(installation["status"], "needs-configuration");
    let answer = host.post(&host.webhook_url("probe"), "{}");
    assert_eq!(answer.status, 503, "{}", answer.body);
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("\"name\""), "{message}");
    assert!(message.contains("probe.toml"), "says where to fix it: {message}");
}

#[test]
fn configuration_of_the_wrong_type_names_the_field() {
    let host = Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = 42\n"))
        .start();
    let answer = host.post(&host.webhook_url("probe"), "{}");
    assert_eq!(answer.status, 503);
    assert!(
        answer.json()["message"].as_str().unwrap().contains("/name"),
        "{}",
        answer.body
    );
}

#[test]
fn webhook_ids_and_registration_survive_a_restart() {
    let mut host = Host::builder()
        .plugin("probe", guest("probe"), Some(PROBE_CONFIG))
        .start();
    let before = host.installation("probe");
    let url_before = host.webhook_url("probe");
    let registered = host.send(
        host.client()
            .get(format!("{url_before}/state/integration/self/registered-with")),
    );
    assert_eq!(
        registered.status, 200,
        "register ran and kept state: {}",
        registered.body
    );
    assert_eq!(
        registered.json()["webhookUrl"],
        url_before,
        "register saw its webhook URL"
    );

    host.restart();
    let after = host.installation("probe");
    assert_eq!(after["id"], before["id"]);
    assert_eq!(after["webhookId"], before["webhookId"]);
    let count = host.send(host.client().get(format!(
        "{}/state/integration/self/registrations",
        host.webhook_url("probe")
    )));
    assert_eq!(
        count.json(),
        json!({"count": 1}),
        "register runs once, when the installation is created"
    );
}

#[test]
fn a_removed_plugin_is_unregistered_at_the_next_start() {
    let mut host = Host::builder()
        .plugin("probe", guest("probe"), Some(PROBE_CONFIG))
        .plugin("webhook", guest("webhook"), None)
        .start();
    let id = host.installation("probe")["id"].as_str().unwrap().to_string();
    let old_url = host.webhook_url("probe");
    assert_eq!(host.stop().code(), Some(0));
    std::fs::remove_file(host.plugins.join("probe.wasm")).unwrap();
    std::fs::remove_file(host.plugins.join("probe.toml")).unwrap();
    host.start_again();
    let unregistered = host.events(Some("probe:unregistered"));
    assert_eq!(
        unregistered.len(),
        1,
        "unregister ran from the kept copy: {unregistered:?}"
    );
    assert_eq!(unregistered[0]["integrationId"], id.as_str());
    let list = host.api_get("/v1/admin/installations").json();
    assert_eq!(list["installations"].as_array().unwrap().len(), 1);
    let old_path = old_url.split_once("/webhooks/").unwrap().1;
    assert_eq!(host.post(&host.url(&format!("/webhooks/{old_path}")), "{}").status, 404);
}

#[test]
fn a_file_that_is_not_a_plugin_is_refused_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.wasm");
    std::fs::write(&junk, b"this is not wasm").unwrap();
    let host = Host::builder()
        .plugin("junk", &junk, None)
        .plugin("webhook", guest("webhook"), None)
        .start();
    let list = host.api_get("/v1/admin/installations").json();
    assert_eq!(list["failures"][0]["file"], "junk.wasm", "{list}");
    assert!(
        list["failures"][0]["problems"][0]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component"),
        "{list}"
    );
    assert_eq!(
        host.post(&host.webhook_url("webhook"), "{}").status,
        200,
        "the other plugins serve"
    );
}

#[test]
fn a_known_webhook_whose_files_break_across_a_restart_answers_503_naming_why_until_fixed() {
    let mut host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let old_url = host.webhook_url("webhook");
    let path = format!("/webhooks/{}", old_url.split_once("/webhooks/").unwrap().1);
    host.stop();
    std::fs::write(host.plugins.join("webhook.toml"), "[limits\nmax-memory-bytes = 1\n").unwrap();
    host.start_again();

    // A platform sending to the URL hears it is worth retrying, and why.
    let answer = host.post(&host.url(&path), "{\"kept\":\"for later\"}");
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["type"], "Unavailable");
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("webhook.toml is not a valid sidecar file"),
        "{message}"
    );
    let list = host.api_get("/v1/admin/installations").json();
    assert_eq!(list["failures"][0]["file"], "webhook.wasm", "{list}");
    assert!(host.events(None).is_empty());
    assert_eq!(
        host.post(&host.url("/webhooks/0123456789abcdef0123456789abcdef"), "{}")
            .status,
        404,
        "an id that never was is still unknown"
    );

    let reloads = host.reloads();
    host.write_sidecar("webhook", "");
    host.wait_for_reload(reloads, "the fixed webhook.toml", Duration::from_secs(20), |listing| {
        installation_in(listing, "webhook").is_some()
    });
    assert_eq!(
        host.post(&host.url(&path), "{}").status,
        200,
        "the same URL serves again"
    );
}

#[test]
fn sigterm_stops_cleanly() {
    let mut host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    assert_eq!(host.post(&host.webhook_url("webhook"), "{}").status, 200);
    let status = host.stop();
    assert_eq!(status.code(), Some(0), "{}", host.output.text());
}

#[test]
fn the_admin_api_describes_installations() {
    let host = Host::builder()
        .plugin(
            "webhook",
            guest("webhook"),
            Some("allowed-hosts = [\"https://api.example.com\"]\n[limits]\ntimeout-ms = 2500\n"),
        )
        .start();
    let installation = host.installation("webhook");
    assert_eq!(installation["status"], "active");
    assert_eq!(installation["file"], "webhook.wasm");
    assert_eq!(installation["plugin"]["name"], "webhook");
    assert_eq!(installation["limits"]["timeoutMs"], 2500);
    assert_eq!(
        installation["limits"]["maxBodyBytes"],
        2 * 1024 * 1024,
        "a thirty-second of the memory limit"
    );
    assert_eq!(installation["allowedHosts"], json!(["https://api.example.com"]));
    assert_eq!(installation["problems"], json!([]));
}
