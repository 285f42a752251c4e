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

/// A server that takes one request and answers it only once told to: what the courier's
/// `register` fetches, to keep the host loading.
struct HeldAnswer {
    url: String,
    arrived: std::sync::mpsc::Receiver<()>,
    release: std::sync::mpsc::Sender<()>,
}

impl HeldAnswer {
    fn start() -> HeldAnswer {
        use std::io::{BufRead, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hold", listener.local_addr().unwrap());
        let (arrived_tx, arrived) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            // The whole request, body included, before answering: an answer that comes
            // while the client is still writing its body fails the call.
            let (mut line, mut chunked, mut length) = (String::new(), false, 0usize);
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                let lower = line.to_ascii_lowercase();
                chunked |= lower.starts_with("transfer-encoding:") && lower.contains("chunked");
                if let Some(value) = lower.strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
                line.clear();
            }
            if chunked {
                line.clear();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && !line.ends_with("0\r\n\r\n") {}
            } else {
                let _ = reader.by_ref().take(length as u64).read_to_end(&mut Vec::new());
            }
            let _ = arrived_tx.send(());
            let _ = released.recv();
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok");
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = reader.read_to_end(&mut Vec::new());
        });
        HeldAnswer { url, arrived, release }
    }
}

#[test]
fn readyz_is_503_while_plugins_load_and_other_requests_wait_for_them() {
    // The courier's `register` fetches from a server that holds its answer: the host
    // stays loading until the test lets it go.
    let held = HeldAnswer::start();
    let origin = held.url.trim_end_matches("/hold");
    let sidecar = format!(
        "allowed-hosts = [{origin:?}]\n[configuration]\nregister-fetch = {:?}\n[limits]\ntimeout-ms = 120000\n",
        held.url
    );
    let host = Host::builder()
        .plugin("courier", guest("courier"), Some(&sidecar))
        .start_loading();
    let readyz = get(&host, "/readyz");
    assert_eq!(readyz.status, 503, "{}", readyz.body);
    assert_eq!(
        readyz.json(),
        json!({ "status": "not-ready", "reason": "loading plugins" })
    );
    assert_eq!(get(&host, "/healthz").status, 200, "alive while loading");
    // An API request sent now is answered once the plugins are loaded, not refused.
    let listing = std::thread::scope(|scope| {
        let waiting = scope.spawn(|| host.api_get("/v1/admin/installations"));
        held.arrived
            .recv_timeout(Duration::from_secs(120))
            .expect("register calls the server");
        assert_eq!(get(&host, "/readyz").status, 503, "still loading while register waits");
        held.release.send(()).unwrap();
        waiting.join().unwrap()
    });
    assert_eq!(listing.status, 200, "{}", listing.body);
    // Answered after loading: the installation is there (register's own outcome is not
    // this test's business).
    assert_eq!(
        listing.json()["installations"][0]["name"],
        "courier",
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
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
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
