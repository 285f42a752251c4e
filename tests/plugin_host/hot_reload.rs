//! Hot reload: plugins dropped into, replaced in and removed from the plugins folder of a
//! running host. Every test waits on what the host shows (a log line, the webhook
//! answering), never on a fixed sleep.

use std::io::Write as _;
use std::time::Duration;

use crate::harness::{Host, guest, wait_until, webhook_url_in};
use serde_json::{Value, json};

/// Long enough for a cold compile on a busy two-core machine.
const RELOAD: Duration = Duration::from_secs(120);

const PROBE_SIDECAR: &str = "[configuration]\nname = \"probe\"\n";

#[test]
fn a_new_plugin_is_compiled_installed_registered_and_its_url_logged() {
    let host = Host::builder().start();
    host.output
        .wait_for("watching the plugins folder", Duration::from_secs(10))
        .expect("the host says it watches the folder");

    let mark = host.output.mark();
    std::fs::write(host.plugins.join("probe.toml"), PROBE_SIDECAR).unwrap();
    host.drop_plugin("probe", &guest("probe"));
    let url = host.wait_for_installed(mark, "probe", RELOAD);
    assert_eq!(url, host.webhook_url("probe"), "the logged URL is the installation's");
    assert!(url.starts_with(&format!("{}/webhooks/", host.base)), "{url}");

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
    host.output
        .wait_for("watching the plugins folder", Duration::from_secs(10))
        .expect("the host says it watches the folder");

    // A reload reads every plugin file; the reads are not changes.
    let mark = host.output.mark();
    host.write_sidecar("probe", PROBE_SIDECAR);
    host.drop_plugin("probe", &guest("probe"));
    host.wait_for_installed(mark, "probe", RELOAD);
    let done = host.output.mark();
    let again = host.output.wait_for_since(done, &["plugins folder changed"], QUIET);
    assert_eq!(
        again,
        None,
        "nothing changed after the reload; the host printed:\n{}",
        host.output.text()
    );

    // Nor is a backup tool or an editor reading the files.
    for file in ["webhook.wasm", "probe.wasm"] {
        std::fs::read(host.plugins.join(file)).unwrap();
    }
    let again = host.output.wait_for_since(done, &["plugins folder changed"], QUIET);
    assert_eq!(
        again,
        None,
        "reading is not a change; the host printed:\n{}",
        host.output.text()
    );
    assert_eq!(host.post(&host.webhook_url("webhook"), "{}").status, 200);

    // A real change still reloads.
    let mark = host.output.mark();
    host.write_sidecar("probe", PROBE_SIDECAR);
    host.wait_for_reload(mark, &["plugins folder changed", "probe.toml"], RELOAD);
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

        let mark = host.output.mark();
        host.drop_plugin("versioned", &guest("versioned_2"));
        host.wait_for_reload(mark, &["plugin replaced", "file=versioned.wasm", "2.0.0"], RELOAD);

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

    let mark = host.output.mark();
    host.remove_plugin("probe");
    host.output
        .wait_for_since(mark, &[&format!("probe unregistered {id}")], RELOAD)
        .unwrap_or_else(|| panic!("unregister did not run:\n{}", host.output.text()));
    host.wait_for_reload(mark, &["plugin removed", "installation=probe"], RELOAD);

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
        let mark = host.output.mark();
        host.drop_plugin_bytes("webhook", &bytes);
        let line = host.wait_for_reload(mark, &["plugin file refused", "file=webhook.wasm"], RELOAD);
        assert!(line.contains(reason), "[{what}] the refusal says why: {line}");
        assert!(line.contains("previous version keeps serving"), "[{what}] {line}");

        let answer = host.post(&url, "{\"still\":\"serving\"}");
        assert_eq!(
            answer.status, 200,
            "[{what}] the previous version answers: {}",
            answer.body
        );
        assert_eq!(host.installation("webhook")["plugin"]["sha256"], sha, "[{what}]");
    }

    // A broken new file has nothing to fall back on: it is refused and listed.
    let mark = host.output.mark();
    host.drop_plugin_bytes("broken", b"nope");
    let line = host.wait_for_reload(mark, &["plugin file refused", "file=broken.wasm"], RELOAD);
    assert!(line.contains("not a valid WebAssembly component"), "{line}");
    let failures = host.api_get("/v1/admin/installations").json()["failures"].clone();
    let broken = failures
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["file"] == "broken.wasm")
        .unwrap_or_else(|| panic!("broken.wasm is listed: {failures}"));
    assert!(
        broken["problems"][0]
            .as_str()
            .unwrap()
            .contains("not a valid WebAssembly component")
    );

    // Putting a good file back serves it.
    let mark = host.output.mark();
    host.drop_plugin("webhook", &guest("webhook"));
    host.wait_for_reload(mark, &["plugins folder changed", "webhook.wasm"], RELOAD);
    assert_eq!(host.post(&url, "{}").status, 200);
}

#[test]
fn a_file_still_being_copied_in_is_not_loaded_half_written() {
    let host = Host::builder().start();
    let wasm = std::fs::read(guest("probe")).unwrap();
    std::fs::write(host.plugins.join("probe.toml"), PROBE_SIDECAR).unwrap();
    let mark = host.output.mark();

    let mut file = std::fs::File::create(host.plugins.join("probe.wasm")).unwrap();
    file.write_all(&wasm[..wasm.len() / 2]).unwrap();
    file.flush().unwrap();
    host.output
        .wait_for_since(mark, &["still being written", "file=probe.wasm"], RELOAD)
        .unwrap_or_else(|| panic!("the host did not notice the copy:\n{}", host.output.text()));

    file.write_all(&wasm[wasm.len() / 2..]).unwrap();
    drop(file);
    let url = host.wait_for_installed(mark, "probe", RELOAD);
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

    let mark = host.output.mark();
    host.write_sidecar("webhook", "[configuration]\nsecret = \"s3cret\"\n");
    let line = host.wait_for_reload(mark, &["plugin replaced", "file=webhook.wasm"], RELOAD);
    assert_eq!(webhook_url_in(&line).as_deref(), Some(url.as_str()));
    assert_eq!(host.post(&url, "{}").status, 401, "the new secret applies");
}
