//! The compiled-code cache: a restart with unchanged plugins compiles nothing, a changed
//! plugin is compiled again, and an entry this host's key did not authenticate (damaged,
//! tampered with, written under another key) is never used but compiled again.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use crate::harness::{Host, eventually, guest, installation_in, sluice_command, webhook_build};

const START: Duration = Duration::from_secs(120);

/// Where each installation's code came from (`compiled`, `cache` or `shared`), as the
/// admin API says.
fn code_sources(host: &Host, names: &[&str]) -> Vec<String> {
    names.iter().map(|name| code_source(&host.installation(name))).collect()
}

fn code_source(installation: &serde_json::Value) -> String {
    installation["plugin"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("the installation says where its code came from: {installation}"))
        .to_string()
}

fn three_plugins() -> Host {
    Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"p\"\n"))
        .plugin("trap", guest("trap"), None)
        .own_code_cache()
        .start()
}

const NAMES: [&str; 3] = ["webhook", "probe", "trap"];

#[test]
fn a_restart_with_unchanged_plugins_compiles_nothing() {
    let mut host = three_plugins();
    assert_eq!(code_sources(&host, &NAMES), ["compiled"; 3], "first start compiles");
    for name in NAMES {
        assert_eq!(
            host.installation(name)["plugin"]["tier"],
            "optimised",
            "a small plugin is compiled optimised at once"
        );
    }

    host.restart();
    assert_eq!(
        code_sources(&host, &NAMES),
        ["cache"; 3],
        "a warm start loads every plugin from the cache"
    );
    assert_eq!(
        host.post(&host.webhook_url("webhook"), "{}").status,
        200,
        "cached code runs"
    );

    // A plugin changed while the host is stopped is compiled again at the next start; the
    // others still come from the cache. (Changed while serving, hot reload would compile it.)
    host.stop();
    std::fs::copy(guest("spin"), host.plugins.join("trap.wasm")).unwrap();
    host.start_again();
    assert_eq!(code_sources(&host, &NAMES), ["cache", "cache", "compiled"]);
}

#[test]
fn the_same_plugin_installed_twice_is_loaded_once_and_configured_twice() {
    let mut host = Host::builder()
        .plugin("alpha", guest("probe"), Some("[configuration]\nname = \"first\"\n"))
        .plugin("beta", guest("probe"), Some("[configuration]\nname = \"second\"\n"))
        .own_code_cache()
        .start();
    assert_eq!(code_sources(&host, &["alpha", "beta"]), ["compiled", "shared"]);

    // One code, two installations: each its own configuration, webhook and records.
    let alpha = host.webhook_url("alpha");
    let beta = host.webhook_url("beta");
    assert_ne!(alpha, beta);
    for (url, name) in [(&alpha, "first"), (&beta, "second")] {
        let context = host.send(host.client().get(format!("{url}/context")));
        assert_eq!(context.status, 200, "{}", context.body);
        assert_eq!(context.json()["configuration"]["name"], name, "{}", context.body);
    }
    let event = host.post(&format!("{beta}/event/thing"), r#"{"count":1}"#);
    assert!(event.status < 300, "{}", event.body);
    let events = host.events(Some("probe:thing"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["integrationId"], host.installation("beta")["id"]);
    assert_ne!(host.installation("alpha")["id"], host.installation("beta")["id"]);

    // Removing the first leaves the copy serving, and the code still shared with the next.
    let reloads = host.reloads();
    host.remove_plugin("alpha");
    host.wait_for_reload(reloads, "the removal of alpha", START, |listing| {
        installation_in(listing, "alpha").is_none()
    });
    let context = host.send(host.client().get(format!("{beta}/context")));
    assert_eq!(context.status, 200, "{}", context.body);
    let reloads = host.reloads();
    host.write_sidecar("gamma", "[configuration]\nname = \"third\"\n");
    host.drop_plugin("gamma", &guest("probe"));
    host.wait_for_installed(reloads, "gamma", START);
    assert_eq!(code_sources(&host, &["gamma"]), ["shared"]);

    // A restart shares again: one load from the cache, the copy shared.
    host.restart();
    assert_eq!(code_sources(&host, &["beta", "gamma"]), ["cache", "shared"]);
}

#[test]
fn a_replaced_plugin_s_code_is_released_not_kept() {
    let mut host = Host::builder()
        .plugin("versioned", guest("versioned_1"), None)
        .own_code_cache()
        .start();
    assert_eq!(code_sources(&host, &["versioned"]), ["compiled"]);

    // Version 2 replaces version 1, then version 1 comes back: nothing holds on to its
    // code meanwhile, so it comes from the cache again rather than from memory.
    for (build, version, expected) in [("versioned_2", "2.0.0", "compiled"), ("versioned_1", "1.0.0", "cache")] {
        let reloads = host.reloads();
        host.drop_plugin("versioned", &guest(build));
        let listing = host.wait_for_reload(reloads, &format!("versioned {version}"), START, |listing| {
            installation_in(listing, "versioned").is_some_and(|i| i["plugin"]["version"] == version)
        });
        let installation = installation_in(&listing, "versioned").unwrap();
        assert_eq!(code_source(installation), expected, "{build}");
    }
    host.stop();
}

/// The one entry of the host's own cache folder.
fn the_cache_entry(host: &Host) -> std::path::PathBuf {
    let entries: Vec<_> = std::fs::read_dir(host.data.join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    assert_eq!(entries.len(), 1, "one entry per plugin and engine: {entries:?}");
    entries[0].clone()
}

/// Starts `host` again on a cache entry that is not its own: the entry is refused (the log
/// names it), the plugin compiled again and served, and the entry rewritten so that the
/// next start loads it.
fn refuses_and_rewrites(host: &mut Host, entry: &std::path::Path, planted: &[u8]) {
    host.start_again();
    let refusal = host
        .output
        .wait_for("compiled-code cache entry refused", START)
        .expect("the refused entry is logged");
    assert!(
        refusal.contains(&entry.display().to_string()),
        "the log line names the file: {refusal}"
    );
    assert_eq!(code_sources(host, &["webhook"]), ["compiled"]);
    let answer = host.post(&host.webhook_url("webhook"), r#"{"tampered":false}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(host.events(Some("webhook:event")).len(), 1, "the plugin ran as written");

    let rewritten = std::fs::read(entry).unwrap();
    assert_ne!(rewritten, planted, "the refused entry is replaced");
    host.restart();
    assert_eq!(
        code_sources(host, &["webhook"]),
        ["cache"],
        "the rewritten entry is used"
    );
    assert!(
        host.output.lines_since(0, "cache entry refused").is_empty(),
        "and passes the check"
    );
}

#[test]
fn a_tampered_cache_entry_is_refused_compiled_again_and_rewritten() {
    let mut host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .own_code_cache()
        .start();
    assert_eq!(code_sources(&host, &["webhook"]), ["compiled"]);
    host.stop();

    // Flip one byte in the middle of the compiled code: wasmtime's header stays valid.
    let entry = the_cache_entry(&host);
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    refuses_and_rewrites(&mut host, &entry, &bytes);
}

#[test]
fn a_valid_entry_written_under_another_key_is_refused() {
    let mut host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .own_code_cache()
        .start();
    let key = std::fs::read_to_string(host.data.join("cache-key")).unwrap();
    assert_eq!(key.trim().len(), 64, "a 32-byte key, in hex: {key}");
    assert_eq!(
        std::fs::metadata(host.data.join("cache-key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600,
        "the key is readable by sluice alone"
    );
    host.stop();

    // Another host with its own key compiles the same plugin: a well-formed entry with
    // the same name, which someone who can write the cache folder plants in this one.
    let mut other = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .own_code_cache()
        .start();
    other.stop();
    let entry = the_cache_entry(&host);
    let planted = std::fs::read(the_cache_entry(&other)).unwrap();
    assert_eq!(entry.file_name(), the_cache_entry(&other).file_name());
    std::fs::write(&entry, &planted).unwrap();
    refuses_and_rewrites(&mut host, &entry, &planted);
}

#[test]
fn hosts_given_the_same_key_share_their_cache() {
    let shared = tempfile::tempdir().unwrap();
    let cache = shared.path().join("cache");
    let key = shared.path().join("cache-key");
    let sharing = || {
        Host::builder()
            .plugin("webhook", guest("webhook"), None)
            .own_code_cache()
            .arg("--cache")
            .arg(cache.to_string_lossy())
            .arg("--cache-key")
            .arg(key.to_string_lossy())
            .start()
    };
    let first = sharing();
    assert_eq!(code_sources(&first, &["webhook"]), ["compiled"]);
    let second = sharing();
    assert_eq!(
        code_sources(&second, &["webhook"]),
        ["cache"],
        "its entry passes the check"
    );
    assert!(
        !second.data.join("cache-key").exists(),
        "no key of its own is made when one is given"
    );
}

fn tier(host: &Host, name: &str) -> String {
    host.installation(name)["plugin"]["tier"].as_str().unwrap().to_string()
}

#[test]
fn an_interpreted_plugin_serves_at_once_on_baseline_code_then_on_optimised_code() {
    let mut host = Host::builder()
        .plugin("webhook", webhook_build("python"), None)
        .own_code_cache()
        .start();
    assert_eq!(code_sources(&host, &["webhook"]), ["compiled"]);
    assert_eq!(
        tier(&host, "webhook"),
        "baseline",
        "with a cold cache it starts on baseline code"
    );
    let url = host.webhook_url("webhook");
    let first = host.post(&url, r#"{"call":1}"#);
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        tier(&host, "webhook"),
        "baseline",
        "the first request was answered before the optimised code was ready"
    );

    eventually("the optimised code replaces the baseline code", START * 3, || {
        (tier(&host, "webhook") == "optimised").then_some(())
    });
    host.output
        .wait_for("optimised code ready", START)
        .expect("the swap is logged");
    let second = host.post(&url, r#"{"call":2}"#);
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(host.events(Some("webhook:event")).len(), 2, "both calls ran the plugin");

    // The optimised code went to the cache: the next start serves it from the start.
    host.restart();
    assert_eq!(code_sources(&host, &["webhook"]), ["cache"]);
    assert_eq!(tier(&host, "webhook"), "optimised");
    assert_eq!(host.post(&host.webhook_url("webhook"), r#"{"call":3}"#).status, 200);
}

#[test]
fn sluice_compile_fills_the_cache_a_host_then_loads() {
    let mut host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .own_code_cache()
        .start();
    host.stop();
    std::fs::remove_dir_all(host.data.join("cache")).unwrap();

    let data = host.data.to_string_lossy().into_owned();
    let plugin = host.plugins.join("webhook.wasm").to_string_lossy().into_owned();
    let compiled = sluice_command(&host.plugins, &["compile", "--data", &data, &plugin]);
    assert!(compiled.success, "{compiled:?}");
    assert!(
        compiled.stdout.contains("compiled into the cache"),
        "{}",
        compiled.stdout
    );
    host.start_again();
    assert_eq!(
        code_sources(&host, &["webhook"]),
        ["cache"],
        "the host loads what sluice compile wrote, under the same key"
    );

    let again = sluice_command(&host.plugins, &["compile", "--data", &data, &plugin]);
    assert!(again.stdout.contains("already in the cache"), "{again:?}");
    let not_a_plugin = host.data.join("not-a-plugin.wasm");
    std::fs::write(&not_a_plugin, "not wasm").unwrap();
    let refused = sluice_command(
        &host.plugins,
        &["compile", "--data", &data, &not_a_plugin.to_string_lossy()],
    );
    assert!(!refused.success, "{refused:?}");
    assert!(refused.stderr.contains("not-a-plugin.wasm"), "{refused:?}");
}

/// The perf map's entries naming plugin code: `0x<start hex> <size hex> wasm[..]::...`.
fn plugin_functions_in_perf_map(pid: u32) -> Vec<String> {
    let map = std::path::PathBuf::from(format!("/tmp/perf-{pid}.map"));
    let text = std::fs::read_to_string(&map).unwrap_or_default();
    text.lines()
        .filter(|line| {
            let mut fields = line.splitn(3, ' ');
            let hex = |field: &str| u64::from_str_radix(field.trim_start_matches("0x"), 16).is_ok();
            let start = fields.next().is_some_and(hex);
            let size = fields.next().is_some_and(hex);
            start && size && fields.next().is_some_and(|name| name.starts_with("wasm["))
        })
        .map(str::to_string)
        .collect()
}

#[test]
fn with_perf_map_perf_names_plugin_functions_compiled_or_cached() {
    let mut host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .own_code_cache()
        .arg("--perf-map")
        .start();
    assert_eq!(code_sources(&host, &["webhook"]), ["compiled"]);
    let first = host.pid().unwrap();
    assert_eq!(host.post(&host.webhook_url("webhook"), "{}").status, 200);
    let named = plugin_functions_in_perf_map(first);
    assert!(named.len() > 10, "the map names the plugin's functions: {named:?}");

    host.restart();
    assert_eq!(code_sources(&host, &["webhook"]), ["cache"]);
    let second = host.pid().unwrap();
    assert!(
        !plugin_functions_in_perf_map(second).is_empty(),
        "code loaded from the cache is named too"
    );
    host.stop();
    for pid in [first, second] {
        let _ = std::fs::remove_file(format!("/tmp/perf-{pid}.map"));
    }

    // Without the flag no map is written.
    let mut plain = Host::builder().plugin("webhook", guest("webhook"), None).start();
    assert_eq!(plain.post(&plain.webhook_url("webhook"), "{}").status, 200);
    let pid = plain.pid().unwrap();
    assert!(
        plugin_functions_in_perf_map(pid).is_empty(),
        "no map without --perf-map"
    );
    plain.stop();
}
