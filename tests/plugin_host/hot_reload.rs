//! Hot reload: plugins dropped into, replaced in and removed from the plugins folder of a
//! running host. Every test waits on what the host shows (the admin API's installations
//! and reload count, the webhook answering), never on a fixed sleep. (The host watches the
//! folder from before it says it is ready.)

use std::io::Write as _;
use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{Host, eventually, failure_in, guest, installation_in, wait_until};

/// Long enough for a cold compile on a busy two-core machine.
const RELOAD: Duration = Duration::from_secs(120);

/// How long a line the host printed before it answered may take to reach the test.
const LOGGED: Duration = Duration::from_secs(10);

const PROBE_SIDECAR: &str = "[configuration]\nname = \"probe\"\n";

#[test]
fn a_new_plugin_is_compiled_installed_registered_and_its_url_logged() {
    let host = Host::builder().start();

    let reloads = host.reloads();
    std::fs::write(host.plugins.join("probe.toml"), PROBE_SIDECAR).unwrap();
    host.drop_plugin("probe", &guest("probe"));
    let url = host.wait_for_installed(reloads, "probe", RELOAD);
    assert!(url.starts_with(&format!("{}/webhooks/", host.base)), "{url}");
    assert!(
        host.output
            .wait_for_since(0, &["plugin installed", "file=probe.wasm", &url], LOGGED)
            .is_some(),
        "the log names the new webhook URL:\n{}",
        host.output.text()
    );

    // register ran, with the webhook URL in its context.
    let installation = host.installation("probe");
    assert_eq!(installation["status"], "active");
    assert!(installation["registeredAt"].is_string(), "{installation}");
    let context = host.send(host.client().get(format!("{url}/context")));
    assert_eq!(context.status, 200, "{}", context.body);
    assert_eq!(context.json()["webhookUrl"], url.as_str());
}

/// How long the folder is watched for a reload nobody asked for: eight debounce periods.
const QUIET: Duration = Duration::from_secs(2);

#[test]
fn a_reload_or_anyone_reading_the_folder_does_not_start_another_reload() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();

    // A reload reads every plugin file; the reads are not changes.
    let reloads = host.reloads();
    host.write_sidecar("probe", PROBE_SIDECAR);
    host.drop_plugin("probe", &guest("probe"));
    host.wait_for_installed(reloads, "probe", RELOAD);
    let done = host.reloads();
    let again = wait_until(QUIET, || host.reloads() > done);
    assert!(
        !again,
        "nothing changed after the reload; the host printed:\n{}",
        host.output.text()
    );

    // Nor is a backup tool or an editor reading the files.
    for file in ["webhook.wasm", "probe.wasm"] {
        std::fs::read(host.plugins.join(file)).unwrap();
    }
    let again = wait_until(QUIET, || host.reloads() > done);
    assert!(
        !again,
        "reading is not a change; the host printed:\n{}",
        host.output.text()
    );
    assert_eq!(host.post(&host.webhook_url("webhook"), "{}").status, 200);

    // A real change still reloads.
    host.write_sidecar("probe", PROBE_SIDECAR);
    host.wait_for_reload(done, "the rewritten probe.toml", RELOAD, |_| true);
}

/// GET /version of the versioned plugin.
fn version(host: &Host, url: &str) -> Value {
    let answer = host.send(host.client().get(format!("{url}/version")));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

#[test]
fn a_replaced_plugin_takes_over_atomically_and_keeps_id_state_and_configuration() {
    let sidecar = "[configuration]\ncolour = \"blue\"\n[limits]\ntimeout-ms = 120000\n";
    let host = Host::builder()
        .plugin("versioned", guest("versioned_1"), Some(sidecar))
        .start();
    let url = host.webhook_url("versioned");
    let before = version(&host, &url);
    assert_eq!(before["version"], "1.0.0");
    let id = before["integrationId"].as_str().unwrap().to_string();
    let state = |name: &str| host.api_get(&format!("/v1/chat/states/integration/{id}/{name}"));

    // A request that stays running on version 1 until the test releases it.
    let held = std::thread::scope(|scope| {
        let holding = scope.spawn(|| host.send(host.client().post(format!("{url}/hold")).body("{}")));
        let started = wait_until(RELOAD, || holding.is_finished() || state("held").status == 200);
        assert!(started && !holding.is_finished(), "the held request is running");

        let reloads = host.reloads();
        host.drop_plugin("versioned", &guest("versioned_2"));
        host.wait_for_reload(reloads, "versioned 2.0.0", RELOAD, |listing| {
            installation_in(listing, "versioned").is_some_and(|i| i["plugin"]["version"] == "2.0.0")
        });

        // New requests get version 2 while the old request still runs on version 1.
        let after = version(&host, &url);
        assert_eq!(after["version"], "2.0.0");
        assert!(!holding.is_finished(), "the held request still runs");

        let release = host.api_post(
            &format!("/v1/chat/states/integration/{id}/release"),
            &json!({"payload": {}}),
        );
        assert!(release.status < 300, "{}", release.body);
        holding.join().unwrap()
    });
    assert_eq!(held.status, 200, "{}", held.body);
    assert_eq!(
        held.json()["version"],
        "1.0.0",
        "the running request finished on the old version"
    );

    let after = version(&host, &url);
    assert_eq!(after["integrationId"], before["integrationId"], "same installation");
    assert_eq!(after["webhookId"], before["webhookId"], "same webhook id");
    assert_eq!(after["configuration"], json!({"colour": "blue"}), "same configuration");
    assert_eq!(host.webhook_url("versioned"), url);
    let kept = state("held");
    assert_eq!(kept.status, 200, "state written by version 1 stays: {}", kept.body);
    assert_eq!(kept.json()["state"]["payload"], json!({"version": "1.0.0"}));
    assert_eq!(host.installation("versioned")["plugin"]["version"], "2.0.0");
}

#[test]
fn a_removed_plugin_is_unregistered_and_its_webhook_answers_404() {
    let host = Host::builder()
        .plugin("probe", guest("probe"), Some(PROBE_SIDECAR))
        .plugin("webhook", guest("webhook"), None)
        .start();
    let url = host.webhook_url("probe");
    let id = host.installation("probe")["id"].as_str().unwrap().to_string();
    assert_eq!(host.send(host.client().get(format!("{url}/context"))).status, 200);

    let reloads = host.reloads();
    host.remove_plugin("probe");
    host.wait_for_reload(reloads, "the removal of probe", RELOAD, |listing| {
        installation_in(listing, "probe").is_none()
    });
    let unregistered = host.events(Some("probe:unregistered"));
    assert_eq!(unregistered.len(), 1, "unregister ran: {unregistered:?}");
    assert_eq!(unregistered[0]["integrationId"], id.as_str());

    let gone = host.send(host.client().get(format!("{url}/context")));
    assert_eq!(gone.status, 404, "{}", gone.body);
    assert_eq!(gone.json()["type"], "ResourceNotFound");
    let listed = host.api_get("/v1/admin/installations").json();
    let names: Vec<&str> = listed["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["webhook"], "the other installation is untouched");
    assert_eq!(host.post(&host.webhook_url("webhook"), "{}").status, 200);
}

#[test]
fn broken_files_are_refused_with_the_reason_and_the_previous_version_keeps_serving() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let url = host.webhook_url("webhook");
    let sha = host.installation("webhook")["plugin"]["sha256"].clone();

    // A core module: valid WebAssembly, but not a component.
    let core_module: &[u8] = b"\0asm\x01\0\0\0";
    // The component preamble followed by garbage: it fails to compile.
    let mut truncated = b"\0asm\x0d\0\x01\0".to_vec();
    truncated.extend_from_slice(&[0x07, 0xff, 0xff, 0xff, 0x01, 0x02]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "text",
            b"this is not wasm at all".to_vec(),
            "not a valid WebAssembly component",
        ),
        ("core module", core_module.to_vec(), "not a valid WebAssembly component"),
        ("compile error", truncated, "not a valid WebAssembly component"),
        (
            "another contract version",
            std::fs::read(guest("contract_next")).unwrap(),
            "sluice:integration@0.2.0",
        ),
    ];
    for (what, bytes, reason) in cases {
        let reloads = host.reloads();
        host.drop_plugin_bytes("webhook", &bytes);
        let listing = host.wait_for_reload(reloads, &format!("the {what} file"), RELOAD, |listing| {
            failure_in(listing, "webhook.wasm").is_some()
        });
        let refusal = &failure_in(&listing, "webhook.wasm").unwrap()["problems"][0];
        assert!(
            refusal.as_str().unwrap().contains(reason),
            "[{what}] the refusal says why: {refusal}"
        );

        let answer = host.post(&url, "{\"still\":\"serving\"}");
        assert_eq!(
            answer.status, 200,
            "[{what}] the previous version answers: {}",
            answer.body
        );
        assert_eq!(host.installation("webhook")["plugin"]["sha256"], sha, "[{what}]");
    }

    // A broken new file has nothing to fall back on: it is refused and listed.
    let reloads = host.reloads();
    host.drop_plugin_bytes("broken", b"nope");
    let listing = host.wait_for_reload(reloads, "the broken new file", RELOAD, |listing| {
        failure_in(listing, "broken.wasm").is_some()
    });
    assert!(installation_in(&listing, "broken").is_none(), "{listing}");
    let refusal = &failure_in(&listing, "broken.wasm").unwrap()["problems"][0];
    assert!(
        refusal.as_str().unwrap().contains("not a valid WebAssembly component"),
        "{refusal}"
    );

    // Putting a good file back serves it.
    let reloads = host.reloads();
    host.drop_plugin("webhook", &guest("webhook"));
    host.wait_for_reload(reloads, "the good webhook.wasm", RELOAD, |listing| {
        failure_in(listing, "webhook.wasm").is_none()
    });
    assert_eq!(host.post(&url, "{}").status, 200);
    assert_eq!(host.installation("webhook")["plugin"]["sha256"], sha);
}

#[test]
fn a_file_still_being_copied_in_is_not_loaded_half_written() {
    let host = Host::builder().start();
    let wasm = std::fs::read(guest("probe")).unwrap();
    std::fs::write(host.plugins.join("probe.toml"), PROBE_SIDECAR).unwrap();
    let reloads = host.reloads();
    let mark = host.output.mark();

    let mut file = std::fs::File::create(host.plugins.join("probe.wasm")).unwrap();
    file.write_all(&wasm[..wasm.len() / 2]).unwrap();
    file.flush().unwrap();
    eventually("the host to leave the half-copied probe.wasm out", RELOAD, || {
        let listing = host.admin_installations();
        let waiting = listing["reloads"]["stillBeingWritten"].as_array()?;
        waiting.iter().any(|file| file == "probe.wasm").then_some(())
    });

    file.write_all(&wasm[wasm.len() / 2..]).unwrap();
    drop(file);
    let url = host.wait_for_installed(reloads, "probe", RELOAD);
    assert_eq!(
        host.admin_installations()["reloads"]["stillBeingWritten"],
        json!([]),
        "nothing is waited for any more"
    );
    assert!(
        host.output.lines_since(mark, "plugin file refused").is_empty(),
        "the half-written file was never loaded:\n{}",
        host.output.text()
    );
    assert_eq!(host.send(host.client().get(format!("{url}/context"))).status, 200);
}

#[test]
fn a_changed_sidecar_reconfigures_the_running_installation() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let url = host.webhook_url("webhook");
    assert_eq!(host.post(&url, "{}").status, 200);

    let before = host.installation("webhook");
    let reloads = host.reloads();
    host.write_sidecar("webhook", "[configuration]\nsecret = \"s3cret\"\n");
    let listing = host.wait_for_reload(reloads, "webhook's new sidecar", RELOAD, |listing| {
        installation_in(listing, "webhook").is_some_and(|i| i["updatedAt"] != before["updatedAt"])
    });
    let after = installation_in(&listing, "webhook").unwrap();
    assert_eq!(after["id"], before["id"], "the same installation");
    assert_eq!(after["webhookUrl"], url.as_str(), "the same webhook URL");
    assert_eq!(host.post(&url, "{}").status, 401, "the new secret applies");
}
