//! Outbound HTTP from plugins (`wasi:http/outgoing-handler`): only the hosts in the
//! installation's `allowed-hosts` are reached, anything else fails inside the plugin
//! with `HttpRequestDenied` and sends nothing, the call's deadline covers slow
//! outbound calls, and an https call whose TLS fails says so. Driven through the courier
//! test plugin's `fetch` action.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::fake_platform::FakePlatform;
use crate::harness::{Answer, DownPort, Host, guest};
use serde_json::{Value, json};

fn courier(sidecar: Option<&str>) -> Host {
    Host::builder()
        .plugin("courier", guest("courier"), sidecar)
        .plugin("webhook", guest("webhook"), None)
        .start()
}

fn fetch(host: &Host, input: Value) -> Answer {
    host.api_post("/v1/chat/actions", &json!({ "type": "courier:fetch", "input": input }))
}

#[test]
fn an_allowed_host_is_reached_with_the_request_the_plugin_made() {
    let platform = FakePlatform::start();
    let host = courier(Some(&format!("allowed-hosts = [{:?}]\n", platform.base)));
    let answer = fetch(
        &host,
        json!({ "url": format!("{}/api/ping?x=1", platform.base), "method": "POST", "body": "{\"hello\":\"there\"}" }),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["output"]["status"], 200);
    assert_eq!(answer.json()["output"]["body"], "{\"ok\":true}");
    let requests = platform.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/api/ping?x=1");
    assert_eq!(requests[0].body, json!({"hello": "there"}));
}

#[test]
fn a_host_that_is_not_allowed_is_refused_inside_the_plugin_and_nothing_is_sent() {
    let platform = FakePlatform::start();
    let other_port = platform.base.rsplit(':').next().unwrap().parse::<u16>().unwrap() ^ 1;
    for sidecar in [
        None,
        Some("allowed-hosts = [\"https://slack.com\"]\n".to_string()),
        Some(format!(
            "allowed-hosts = [\"http://127.0.0.1:{other_port}\", \"http://localhost:*\"]\n"
        )),
    ] {
        let host = courier(sidecar.as_deref());
        for method in ["GET", "POST"] {
            let answer = fetch(
                &host,
                json!({ "url": format!("{}/api/secret", platform.base), "method": method, "body": "{\"leak\":1}" }),
            );
            assert_eq!(answer.status, 403, "[{sidecar:?} {method}] {}", answer.body);
            let error = answer.json();
            assert_eq!(error["type"], "Forbidden");
            let message = error["message"].as_str().unwrap();
            assert!(
                message.contains("HttpRequestDenied"),
                "the plugin's error is surfaced: {message}"
            );
            assert!(message.contains("courier"), "names the installation: {message}");
        }
        assert!(
            host.output
                .wait_for("outbound request denied", Duration::from_secs(5))
                .is_some(),
            "a log line says what was refused:\n{}",
            host.output.text()
        );
        let line = host.output.wait_for("outbound request denied", Duration::ZERO).unwrap();
        assert!(line.contains("/api/secret"), "{line}");
        assert_eq!(
            host.post(&host.webhook_url("webhook"), "{}").status,
            200,
            "the host serves on"
        );
    }
    assert!(
        platform.requests().is_empty(),
        "nothing reached the platform: {:?}",
        platform.requests()
    );
}

#[test]
fn an_allowed_host_that_is_down_fails_inside_the_plugin_and_the_log_says_whose_call() {
    let down = DownPort::bind();
    let port = down.port;
    let host = courier(Some(&format!("allowed-hosts = [\"http://127.0.0.1:{port}\"]\n")));
    let answer = fetch(&host, json!({ "url": format!("http://127.0.0.1:{port}/api/ping") }));
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(
        answer.json()["message"].as_str().unwrap().contains("ConnectionRefused"),
        "{}",
        answer.body
    );
    let line = host
        .output
        .wait_for("outbound request failed", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no log line for the failed call:\n{}", host.output.text()));
    assert!(line.contains("courier"), "names the plugin: {line}");
    assert!(
        line.contains(&format!("127.0.0.1:{port}/api/ping")),
        "names the URL: {line}"
    );
    assert!(line.contains("request_id=req_"), "names the request: {line}");
    assert!(
        !host.output.text().contains("wasmtime_wasi_http"),
        "one line, sluice's own:\n{}",
        host.output.text()
    );
    assert_eq!(
        host.post(&host.webhook_url("webhook"), "{}").status,
        200,
        "the host serves on"
    );
}

#[test]
fn calls_to_the_same_origin_share_a_connection() {
    let platform = FakePlatform::start();
    let host = courier(Some(&format!("allowed-hosts = [{:?}]\n", platform.base)));
    for n in 0..3 {
        let answer = fetch(&host, json!({ "url": format!("{}/api/ping?n={n}", platform.base) }));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json()["output"]["status"], 200, "{}", answer.body);
    }
    let requests = platform.requests();
    assert_eq!(requests.len(), 3, "{requests:?}");
    // Each call ran in a fresh instance; the installation's pool kept the connection.
    assert!(
        requests.iter().all(|request| request.peer == requests[0].peer),
        "one connection: {:?}",
        requests.iter().map(|request| request.peer).collect::<Vec<_>>()
    );
}

/// A server that refuses an oversize body as soon as it has read a request's head: it
/// answers 413, never reads the body, and closes the connection a moment later. With
/// `close_write_at_once` it first closes its side for writing right after answering, as
/// nginx's and Go's lingering close do. Its address.
fn start_server_refusing_bodies_early(close_write_at_once: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let body = r#"{"error":"request body too large"}"#;
            let answer = format!(
                "HTTP/1.1 413 Payload Too Large\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes());
            if close_write_at_once {
                let _ = stream.shutdown(Shutdown::Write);
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    base
}

fn a_plugin_uploading_too_much_hears_the_413(close_write_at_once: bool) {
    let base = start_server_refusing_bodies_early(close_write_at_once);
    let host = courier(Some(&format!("allowed-hosts = [{base:?}]\n")));
    // 8 MiB: more than the host buffers, so the plugin is still writing when the answer
    // comes and the connection closes.
    let answer = fetch(
        &host,
        json!({ "url": format!("{base}/upload"), "method": "POST", "size": 8 << 20 }),
    );
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, host.output.text());
    assert_eq!(answer.json()["output"]["status"], 413, "{}", answer.body);
    assert_eq!(
        answer.json()["output"]["body"],
        r#"{"error":"request body too large"}"#,
        "{}",
        answer.body
    );
    assert_eq!(
        host.post(&host.webhook_url("webhook"), "{}").status,
        200,
        "the host serves on"
    );
}

#[test]
fn a_server_that_answers_before_reading_the_whole_body_is_heard() {
    a_plugin_uploading_too_much_hears_the_413(false);
}

#[test]
fn a_server_that_answers_early_and_closes_its_side_at_once_is_heard() {
    a_plugin_uploading_too_much_hears_the_413(true);
}

#[test]
fn a_plugin_s_first_byte_timeout_ends_its_wait_for_a_slow_answer() {
    let platform = FakePlatform::start();
    platform.answer_after(Duration::from_secs(5));
    let host = courier(Some(&format!("allowed-hosts = [{:?}]\n", platform.base)));
    let answer = fetch(
        &host,
        json!({ "url": format!("{}/api/slow", platform.base), "first_byte_timeout_ms": 200 }),
    );
    assert_eq!(answer.status, 502, "{}\n{}", answer.body, host.output.text());
    assert!(
        answer.json()["message"]
            .as_str()
            .unwrap()
            .contains("ConnectionReadTimeout"),
        "{}",
        answer.body
    );
}

#[test]
fn the_deadline_covers_a_slow_outbound_call() {
    let platform = FakePlatform::start();
    platform.answer_after(Duration::from_secs(20));
    let host = courier(Some(&format!(
        "allowed-hosts = [{:?}]\n[limits]\ntimeout-ms = 1000\n",
        platform.base
    )));
    let answer = fetch(&host, json!({ "url": format!("{}/api/slow", platform.base) }));
    // The log says why an outbound request failed when the plugin only saw its body
    // stream closed.
    assert_eq!(answer.status, 504, "{}\n{}", answer.body, host.output.text());
    assert_eq!(answer.json()["type"], "OperationTimeout");
    assert!(
        answer.json()["message"].as_str().unwrap().contains("1000 ms"),
        "names the deadline: {}",
        answer.body
    );
    assert_eq!(
        platform.wait_for_calls("slow", 1, Duration::from_secs(10)).len(),
        1,
        "the request went out; the deadline ended the wait for its answer"
    );

    platform.answer_after(Duration::ZERO);
    let echo = host.api_post(
        "/v1/chat/actions",
        &json!({ "type": "courier:echo", "input": { "text": "still here" } }),
    );
    assert_eq!(echo.status, 200, "the installation serves on: {}", echo.body);
}

#[test]
fn an_https_call_to_a_server_that_does_not_speak_tls_fails_with_a_tls_error() {
    // An https URL goes through the TLS handshake: a server that answers it in plain HTTP
    // is a TLS error inside the plugin, not a hang and not its plain-text answer.
    let platform = FakePlatform::start();
    let https = platform.base.replacen("http://", "https://", 1);
    assert_https_call_fails_with(&https, "TlsProtocolError");
    assert!(platform.requests().is_empty(), "no HTTP request arrived");
}

/// Calls `base` from an installation allowed to, and checks that the call failed inside
/// the plugin with the wasi:http error `code`.
fn assert_https_call_fails_with(base: &str, code: &str) {
    let host = courier(Some(&format!("allowed-hosts = [{base:?}]\n")));
    let answer = fetch(&host, json!({ "url": format!("{base}/api/ping") }));
    assert_eq!(answer.status, 502, "{}\n{}", answer.body, host.output.text());
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains(code), "{message}\n{}", host.output.text());
}

/// A TLS server on loopback whose certificate for 127.0.0.1 is signed by a CA of its
/// own (tests/harness/tls; no public root vouches for it). It answers every request
/// `{"ok":true}`. Its base URL.
fn start_private_ca_tls_server() -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certificate = CertificateDer::from_pem_slice(include_bytes!("../harness/tls/server.crt")).unwrap();
    let key = PrivateKeyDer::from_pem_slice(include_bytes!("../harness/tls/server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            // A client that refuses the certificate ends here, at the handshake.
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && tls.read(&mut byte).is_ok_and(|n| n == 1) {
                head.push(byte[0]);
            }
            let body = "{\"ok\":true}";
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tls.write_all(answer.as_bytes());
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    base
}

#[test]
fn an_https_call_to_a_server_whose_certificate_no_root_vouches_for_fails_with_a_certificate_error() {
    assert_https_call_fails_with(&start_private_ca_tls_server(), "TlsCertificateError");
}

#[test]
fn an_https_call_to_a_server_signed_by_a_ca_the_installation_trusts_is_answered() {
    let base = start_private_ca_tls_server();
    let ca = include_str!("../harness/tls/ca.crt");
    let host = courier(Some(&format!(
        "allowed-hosts = [{base:?}]\ntrusted-certificates = \"\"\"\n{ca}\"\"\"\n"
    )));
    let answer = fetch(&host, json!({ "url": format!("{base}/api/ping") }));
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, host.output.text());
    assert_eq!(answer.json()["output"]["status"], 200, "{}", answer.body);
    assert_eq!(answer.json()["output"]["body"], "{\"ok\":true}");
}

#[test]
fn trusted_certificates_that_are_not_pem_certificates_are_refused_with_the_reason() {
    let host = courier(Some("trusted-certificates = \"not a certificate\"\n"));
    let list = host.api_get("/v1/admin/installations").json();
    let failure = &list["failures"][0];
    assert_eq!(failure["file"], "courier.wasm", "{list}");
    assert!(
        failure
            .to_string()
            .contains("trusted-certificates holds no certificate"),
        "{list}"
    );
    assert_eq!(
        host.post(&host.webhook_url("webhook"), "{}").status,
        200,
        "the other plugins serve"
    );
}
