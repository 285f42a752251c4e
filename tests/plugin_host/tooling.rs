//! Plugin tooling through the real binary: `sluice inspect FILE.wasm` (the definition and
//! the contract check) and `sluice new NAME --lang rust|python|js|c` (a project that builds
//! into a component that serves, end to end).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::{Host, build_python_plugin, guest, guest_tool, run, sluice_command, target_dir, webhook_build};
use serde_json::Value;

#[test]
fn inspect_prints_the_definition_and_checks_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let webhook = guest("webhook");
    let file = webhook.to_str().unwrap();
    let text = sluice_command(dir.path(), &["inspect", file]);
    assert!(text.success, "{}", text.stderr);
    for expected in [
        "webhook 0.1.0 (Webhook)",
        "contract: sluice:integration@0.1.0, matches",
        "configuration schema:",
        "\"allowedOrigins\"",
        "events (1):",
        "event: Event - The webhook received a request.",
        "payload schema:",
        "actions: none",
        "channels: none",
        "states: none",
        "user tags: none",
    ] {
        assert!(
            text.stdout.contains(expected),
            "{expected:?} is missing from:\n{}",
            text.stdout
        );
    }

    let json = sluice_command(dir.path(), &["inspect", "--json", file]);
    assert!(json.success, "{}", json.stderr);
    let report: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(report["contract"]["version"], "0.1.0");
    assert_eq!(report["contract"]["matches"], true);
    assert_eq!(report["definition"]["name"], "webhook");
    assert_eq!(
        report["definition"]["configuration"]["properties"]["secret"]["type"],
        "string"
    );
    assert_eq!(report["definition"]["events"]["event"]["schema"]["required"][0], "body");
    assert_eq!(report["sha256"].as_str().unwrap().len(), 64);
    assert!(report["compileMs"].is_u64(), "{report}");
    assert!(text.stdout.contains("compiled in: "), "{}", text.stdout);
}

#[test]
fn inspect_reads_plugins_in_every_language() {
    let dir = tempfile::tempdir().unwrap();
    // The source language, where the component's producers section names it.
    for (language, names) in [("python", None), ("js", Some("JavaScript")), ("c", Some("C99"))] {
        let build = webhook_build(language);
        let report = sluice_command(dir.path(), &["inspect", "--json", build.to_str().unwrap()]);
        assert!(report.success, "[{language}] {}", report.stderr);
        let report: Value = serde_json::from_str(&report.stdout).unwrap();
        assert_eq!(report["definition"]["name"], "webhook", "[{language}]");
        assert_eq!(
            report["definition"]["events"]["event"]["title"], "Event",
            "[{language}]"
        );
        let languages: Vec<&str> = report["producers"]["languages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert_eq!(languages, names.into_iter().collect::<Vec<_>>(), "[{language}]");
    }
}

#[test]
fn inspect_names_what_differs_in_a_plugin_built_for_another_contract_version() {
    let dir = tempfile::tempdir().unwrap();
    let next = guest("contract_next");
    let outcome = sluice_command(dir.path(), &["inspect", next.to_str().unwrap()]);
    assert!(!outcome.success);
    assert_eq!(outcome.code, Some(1));
    for expected in [
        "does not match the contract sluice:integration@0.1.0",
        "built against sluice:integration@0.2.0",
        "it imports sluice:integration/logger@0.2.0, but this host provides sluice:integration/logger@0.1.0",
        "it exports sluice:integration/plugin@0.2.0 instead of sluice:integration/plugin@0.1.0",
        "is missing handle-message",
    ] {
        assert!(
            outcome.stderr.contains(expected),
            "{expected:?} is missing from:\n{}",
            outcome.stderr
        );
    }
}

#[test]
fn a_plugin_built_against_the_first_release_of_the_contract_keeps_loading_and_working() {
    let first = guest("contract_first");
    let dir = tempfile::tempdir().unwrap();
    let outcome = sluice_command(dir.path(), &["inspect", first.to_str().unwrap()]);
    assert!(outcome.success, "{}", outcome.stderr);
    assert!(outcome.stdout.contains("matches"), "{}", outcome.stdout);

    let host = Host::builder().plugin("first", first, None).start();
    assert_eq!(host.installation("first")["status"], "active");
    let answer = host.post(&host.webhook_url("first"), "{}");
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = host.events(Some("contract-first:ping"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["id"], answer.body.as_str());
}

#[test]
fn inspect_refuses_what_is_not_a_component() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("core.wasm"), b"\0asm\x01\0\0\0").unwrap();
    std::fs::write(dir.path().join("text.wasm"), b"hello").unwrap();
    for file in ["core.wasm", "text.wasm"] {
        let outcome = sluice_command(dir.path(), &["inspect", file]);
        assert_eq!(outcome.code, Some(1), "{file}");
        assert!(
            outcome
                .stderr
                .contains(&format!("{file} is not a WebAssembly component")),
            "{file}: {}",
            outcome.stderr
        );
    }
    let missing = sluice_command(dir.path(), &["inspect", "missing.wasm"]);
    assert_eq!(missing.code, Some(1));
    assert!(
        missing.stderr.contains("cannot read missing.wasm"),
        "{}",
        missing.stderr
    );
}

#[test]
fn new_refuses_bad_names_and_existing_folders() {
    let dir = tempfile::tempdir().unwrap();
    let bad = sluice_command(dir.path(), &["new", "Bad Name", "--lang", "rust"]);
    assert_eq!(bad.code, Some(1));
    assert!(bad.stderr.contains("not a valid plugin name"), "{}", bad.stderr);

    std::fs::create_dir(dir.path().join("taken")).unwrap();
    std::fs::write(dir.path().join("taken/keep.txt"), "mine").unwrap();
    let taken = sluice_command(dir.path(), &["new", "taken", "--lang", "js"]);
    assert_eq!(taken.code, Some(1));
    assert!(
        taken.stderr.contains("already exists and is not empty"),
        "{}",
        taken.stderr
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("taken/keep.txt")).unwrap(),
        "mine"
    );

    let unknown = sluice_command(dir.path(), &["new", "x", "--lang", "cobol"]);
    assert!(!unknown.success);
    assert!(unknown.stderr.contains("rust, python, js"), "{}", unknown.stderr);
}

/// Scaffolds `name` in `language`, builds it with the project's documented command, and
/// returns the component.
fn scaffold_and_build(dir: &Path, name: &str, language: &str) -> std::path::PathBuf {
    let created = sluice_command(dir, &["new", name, "--lang", language]);
    assert!(created.success, "{}", created.stderr);
    let project = dir.join(name);
    assert!(
        project.join("wit/integration.wit").exists(),
        "the contract is copied in"
    );
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    match language {
        "rust" => {
            assert!(
                readme.contains("cargo build --release --target wasm32-wasip2"),
                "{readme}"
            );
            // The documented command; the target folder is shared between runs to save time.
            run(
                Command::new(env!("CARGO"))
                    .current_dir(&project)
                    .args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
                    .arg(target_dir().join("guests/scaffold"))
                    .env_remove("CARGO_TARGET_DIR"),
                "building the scaffolded Rust plugin",
            );
            target_dir().join(format!(
                "guests/scaffold/wasm32-wasip2/release/{}.wasm",
                name.replace('-', "_")
            ))
        }
        "python" => {
            let command = format!("componentize-py -d wit -w integration componentize app -o {name}.wasm");
            assert!(readme.contains(&command), "{readme}");
            // The documented command, with the pinned componentize-py scripts/setup installed.
            build_python_plugin(&project, "app", Path::new("wit"), &project.join(format!("{name}.wasm")));
            project.join(format!("{name}.wasm"))
        }
        "c" => {
            assert!(readme.contains("./build.sh"), "{readme}");
            // The documented command, with the jco scripts/setup installed rather than one
            // installed into the project by npm.
            run(
                Command::new(project.join("build.sh")).env("JCO", guest_tool("jco")),
                "building the scaffolded C plugin",
            );
            project.join(format!("{name}.wasm"))
        }
        "js" => {
            assert!(readme.contains("npm install && npm run build"), "{readme}");
            run(
                Command::new("npm").current_dir(&project).args([
                    "install",
                    "--no-audit",
                    "--no-fund",
                    "--prefer-offline",
                ]),
                "npm install in the scaffolded JavaScript plugin",
            );
            run(
                Command::new("npm").current_dir(&project).args(["run", "build"]),
                "npm run build in the scaffolded JavaScript plugin",
            );
            project.join(format!("{name}.wasm"))
        }
        other => panic!("no language {other}"),
    }
}

/// Scaffold, build, drop into a running host, call its webhook.
fn scaffolded_plugin_serves(language: &str) {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("hello-{language}");
    let wasm = scaffold_and_build(dir.path(), &name, language);
    assert!(wasm.exists(), "{} was built", wasm.display());

    let host = Host::builder().start();
    let reloads = host.reloads();
    host.drop_plugin(&name, &wasm);
    let url = host.wait_for_installed(reloads, &name, Duration::from_secs(180));
    let answer = host.post(&format!("{url}/orders?x=1"), r#"{"order":42}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    let event_id = answer.json()["eventId"].as_str().unwrap().to_string();
    let events = host.events(Some(&format!("{name}:received")));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["id"], event_id.as_str());
    assert_eq!(events[0]["payload"]["body"]["order"], 42);
    assert_eq!(events[0]["payload"]["path"], "/orders");
    assert_eq!(events[0]["payload"]["method"], "POST");

    let inspected = sluice_command(dir.path(), &["inspect", wasm.to_str().unwrap()]);
    assert!(inspected.success, "{}", inspected.stderr);
    assert!(
        inspected.stdout.contains(&format!("{name} 0.1.0")),
        "{}",
        inspected.stdout
    );
}

#[test]
fn new_rust_plugin_builds_and_serves() {
    scaffolded_plugin_serves("rust");
}

#[test]
fn new_python_plugin_builds_and_serves() {
    assert!(guest_tool("componentize-py").exists());
    scaffolded_plugin_serves("python");
}

#[test]
fn new_js_plugin_builds_and_serves() {
    scaffolded_plugin_serves("js");
}

#[test]
fn new_c_plugin_builds_and_serves() {
    scaffolded_plugin_serves("c");
}
