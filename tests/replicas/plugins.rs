//! Plugins on a cluster: the store says what is installed. A plugin dropped into one
//! replica's folder is served by every replica at the same webhook URL, registered once;
//! a replica started with an empty folder serves it too (and removes nothing); a file
//! removed from the folder it came from uninstalls it for all, unregistered once. The
//! same for a plugin uploaded through one replica's admin API and deleted through
//! another's. The sidecar is sealed in the database.

use std::time::Duration;

use crate::harness::postgres::psql;
use crate::harness::{Host, eventually, guest, installation_in};

use super::{path_of, replicas};

const PROBE_SIDECAR: &str = "[configuration]\nname = \"probe-secret-name\"\n";
/// How long a change on one replica may take to reach the others (about two seconds
/// promised; the margin is for a loaded test machine).
const SPREAD: Duration = Duration::from_secs(15);

/// The webhook path of installation `name` once `host` serves it.
fn served_path(host: &Host, name: &str) -> String {
    eventually(&format!("{name} served by {}", host.base), SPREAD, || {
        let listing = host.admin_installations();
        installation_in(&listing, name).map(|i| path_of(i["webhookUrl"].as_str().unwrap()))
    })
}

fn registrations(host: &Host, path: &str) -> serde_json::Value {
    let answer = host.send(
        host.client()
            .get(host.url(&format!("{path}/state/integration/self/registrations"))),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

#[test]
fn a_plugin_dropped_into_one_replica_is_served_by_all_registered_once_and_removed_for_all() {
    let Some((url, hosts)) = replicas(2) else { return };
    hosts[0].write_sidecar("probe", PROBE_SIDECAR);
    hosts[0].drop_plugin("probe", &guest("probe"));
    let path = served_path(&hosts[0], "probe");
    assert_eq!(
        served_path(&hosts[1], "probe"),
        path,
        "the same webhook URL on every replica"
    );
    for host in &hosts {
        assert_eq!(host.installation("probe")["status"], "active");
        assert_eq!(
            registrations(host, &path),
            serde_json::json!({"count": 1}),
            "register ran once for the cluster"
        );
    }

    // The sidecar never reaches the database in plain text.
    let kept = psql(&url, "SELECT sidecar FROM installations WHERE name = 'probe'");
    assert!(kept.starts_with("sealed:v1:"), "{kept}");
    assert!(!kept.contains("probe-secret-name"), "{kept}");

    // A replica started with an empty folder serves everything and removes nothing.
    let empty = Host::builder().postgres(&url).start();
    for name in ["probe", "webhook", "recorder"] {
        assert!(installation_in(&empty.admin_installations(), name).is_some(), "{name}");
    }
    assert_eq!(served_path(&empty, "probe"), path);
    for host in &hosts {
        assert!(installation_in(&host.admin_installations(), "probe").is_some());
    }
    let context = empty.send(empty.client().get(empty.url(&format!("{path}/context"))));
    assert_eq!(
        context.status, 200,
        "the empty replica runs the probe: {}",
        context.body
    );
    assert_eq!(
        context.json()["configuration"]["name"],
        "probe-secret-name",
        "with its sidecar"
    );

    // Removed from the folder it came from: gone from every replica, unregistered once.
    hosts[0].remove_plugin("probe");
    for host in hosts.iter().chain([&empty]) {
        eventually(&format!("probe gone from {}", host.base), SPREAD, || {
            installation_in(&host.admin_installations(), "probe")
                .is_none()
                .then_some(())
        });
        let gone = host.send(host.client().get(host.url(&format!("{path}/context"))));
        assert_eq!(gone.status, 404, "{}", gone.body);
    }
    let unregistered = empty.events(Some("probe:unregistered"));
    assert_eq!(unregistered.len(), 1, "{unregistered:?}");
}

#[test]
fn a_replica_refuses_to_keep_sidecars_without_the_secret_key() {
    if !crate::harness::postgres::enabled() {
        return;
    }
    let url = crate::harness::postgres::fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(guest("probe"), plugins.join("probe.wasm")).unwrap();
    std::fs::write(plugins.join("probe.toml"), PROBE_SIDECAR).unwrap();
    let plugins_arg = plugins.to_string_lossy().into_owned();
    let data_arg = dir.path().join("data").to_string_lossy().into_owned();
    // `timeout`: a sluice that started anyway would serve until stopped.
    let output = std::process::Command::new("timeout")
        .arg("60")
        .arg(crate::harness::sluice_binary())
        .args(["serve", "--plugins", &plugins_arg, "--data", &data_arg])
        .args(["--listen", "127.0.0.1:0", "--store", &url])
        .env_remove("SLUICE_STORE_SECRET_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("SLUICE_STORE_SECRET_KEY"), "{said}");
    assert!(said.contains("probe.toml") || said.contains("sidecar"), "{said}");
}

#[test]
fn a_plugin_uploaded_to_one_replica_is_served_by_all_and_deleted_through_another() {
    let Some((url, hosts)) = replicas(2) else { return };
    let probe = std::fs::read(guest("probe")).unwrap();
    let uploaded = hosts[0].upload_plugin("probe", &probe, Some(PROBE_SIDECAR));
    assert_eq!(uploaded.status, 201, "{}", uploaded.body);
    let path = path_of(uploaded.json()["webhookUrl"].as_str().unwrap());
    assert_eq!(
        served_path(&hosts[1], "probe"),
        path,
        "the same webhook URL on every replica"
    );
    for host in &hosts {
        let context = host.send(host.client().get(host.url(&format!("{path}/context"))));
        assert_eq!(context.status, 200, "{}", context.body);
        assert_eq!(context.json()["configuration"]["name"], "probe-secret-name");
        assert_eq!(
            registrations(host, &path),
            serde_json::json!({"count": 1}),
            "register ran once for the cluster"
        );
        // The store keeps it; no replica's folder changed.
        assert!(!host.plugins.join("probe.wasm").exists());
    }
    let kept = psql(&url, "SELECT sidecar FROM installations WHERE name = 'probe'");
    assert!(kept.starts_with("sealed:v1:"), "{kept}");

    // Replaced through the other replica: both serve the new sidecar at the same URL.
    let sidecar = "[configuration]\nname = \"replaced\"\n";
    let replaced = hosts[1].upload_plugin("probe", &probe, Some(sidecar));
    assert_eq!(replaced.status, 200, "{}", replaced.body);
    eventually("the replaced sidecar on the first replica", SPREAD, || {
        let context = hosts[0].send(hosts[0].client().get(hosts[0].url(&format!("{path}/context"))));
        (context.json()["configuration"]["name"] == "replaced").then_some(())
    });

    // Deleted through the replica it was not uploaded to: gone from both, unregistered once.
    let deleted = hosts[1].api_delete("/v1/admin/plugins/probe");
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    for host in &hosts {
        eventually(&format!("probe gone from {}", host.base), SPREAD, || {
            installation_in(&host.admin_installations(), "probe")
                .is_none()
                .then_some(())
        });
        let gone = host.send(host.client().get(host.url(&format!("{path}/context"))));
        assert_eq!(gone.status, 404, "{}", gone.body);
    }
    assert_eq!(hosts[0].events(Some("probe:unregistered")).len(), 1);
    let again = hosts[0].api_delete("/v1/admin/plugins/probe");
    assert_eq!(again.status, 404, "{}", again.body);
}
