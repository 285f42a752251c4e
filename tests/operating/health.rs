//! `GET /healthz` and `GET /readyz`: public, small, and `/readyz` answers 503 with the
//! reason while plugins load, while draining after a stop signal, and while the store
//! cannot be reached.

use std::time::Duration;

use serde_json::json;

use crate::harness::{Host, guest, wait_until};

fn get(host: &Host, path: &str) -> crate::harness::Answer {
    host.send(host.client().get(host.url(path)))
}

#[test]
fn health_checks_answer_without_the_token_and_are_listed_as_public() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let healthz = get(&host, "/healthz");
    assert_eq!(healthz.status, 200, "{}", healthz.body);
    assert_eq!(healthz.json(), json!({ "status": "ok" }));
    let readyz = get(&host, "/readyz");
    assert_eq!(readyz.status, 200, "{}", readyz.body);
    assert_eq!(readyz.json(), json!({ "status": "ready" }));
    let routes = host.api_get("/v1/admin/routes").json();
    for path in ["/healthz", "/readyz"] {
        let listed = routes["routes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|route| route["path"] == path)
            .unwrap_or_else(|| panic!("{path} is not in the route table: {routes}"));
        assert_eq!(listed["access"], "public", "{listed}");
        assert_eq!(listed["method"], "GET", "{listed}");
    }
}

#[test]
fn readyz_is_503_while_plugins_load_and_other_requests_wait_for_them() {
    // The spin plugin's `register` loops until its deadline: the host stays loading for
    // that long.
    let sidecar = "[configuration]\nmisbehave-in-register = true\n[limits]\ntimeout-ms = 30000\n";
    let host = Host::builder()
        .plugin("spin", guest("spin"), Some(sidecar))
        .start_loading();
    let readyz = get(&host, "/readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    assert_eq!(
        readyz.json(),
        json!({ "status": "not-ready", "reason": "loading plugins" })
    );
    assert_eq!(get(&host, "/healthz").status, 200, "alive while loading");
    // An API request sent now is answered once the plugins are loaded, not refused.
    let listing = host.api_get("/v1/admin/installations");
    assert_eq!(listing.status, 200, "{}", listing.body);
    assert_eq!(
        listing.json()["installations"][0]["status"],
        "register-failed",
        "{}",
        listing.body
    );
    host.wait_until_ready();
    let readyz = get(&host, "/readyz");
    assert_eq!(readyz.status, 200, "{}", readyz.body);
}

#[test]
fn readyz_is_503_while_draining_and_requests_are_still_served_during_the_drain_delay() {
    let mut host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .arg("--drain-delay")
        .arg("600")
        .start();
    assert_eq!(get(&host, "/readyz").status, 200);
    host.signal(libc::SIGTERM);
    let mut last = None;
    assert!(
        wait_until(Duration::from_secs(30), || {
            let readyz = get(&host, "/readyz");
            let draining = readyz.status == 503;
            last = Some(readyz);
            draining
        }),
        "readyz stays ready after SIGTERM: {last:?}"
    );
    assert_eq!(
        last.unwrap().json(),
        json!({ "status": "not-ready", "reason": "draining" })
    );
    let webhook = host.post(&host.webhook_url("webhook"), "{}");
    assert_eq!(webhook.status, 200, "served during the drain delay: {}", webhook.body);
    // A second signal ends the delay.
    host.signal(libc::SIGTERM);
    let status = host.wait_for_exit();
    assert!(status.success(), "sluice exited with {status}");
}

#[test]
fn readyz_is_503_while_the_store_cannot_be_reached() {
    // SQLite only: the store is lost by moving its files. On PostgreSQL the database is
    // lost through a proxy: serving::store::the_database_lost_while_serving_...
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .sqlite_only()
        .start();
    assert_eq!(get(&host, "/readyz").status, 200);
    // The store's files are no longer where sluice (and a restart) would open them.
    let moved = host.data.with_file_name("data-moved");
    std::fs::rename(&host.data, &moved).unwrap();
    let readyz = get(&host, "/readyz");
    std::fs::rename(&moved, &host.data).unwrap();
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    assert_eq!(
        readyz.json(),
        json!({ "status": "not-ready", "reason": "store unreachable" })
    );
    assert!(
        !readyz.body.contains("sluice.db"),
        "no internals in the answer: {}",
        readyz.body
    );
    assert!(
        host.output
            .wait_for("readiness: the store is unreachable", Duration::from_secs(5))
            .is_some_and(|line| line.contains("sluice.db")),
        "the log says why:\n{}",
        host.output.text()
    );
    assert_eq!(get(&host, "/healthz").status, 200, "alive all the same");
    let readyz = get(&host, "/readyz");
    assert_eq!(
        readyz.status, 200,
        "ready again once the store is back: {}",
        readyz.body
    );
}
