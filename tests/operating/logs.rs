//! `--log-format json` (or `SLUICE_LOG_FORMAT=json`): one JSON object a line on stderr,
//! with the fields the text lines have (the plugin, the request id).

use std::time::Duration;

use serde_json::{Value, json};

use crate::harness::{DownPort, Host, guest};

#[test]
fn json_logs_are_one_object_a_line_with_the_fields_of_the_text_format() {
    // Nothing answers there: the plugin's call fails and sluice logs it.
    let down = DownPort::bind();
    let port = down.port;
    let host = Host::builder()
        .plugin(
            "courier",
            guest("courier"),
            Some(&format!("allowed-hosts = [\"http://127.0.0.1:{port}\"]\n")),
        )
        .env("SLUICE_LOG_FORMAT", "json")
        .start();
    let answer = host.api_post(
        "/v1/chat/actions",
        &json!({ "type": "courier:fetch", "input": { "url": format!("http://127.0.0.1:{port}/ping") } }),
    );
    assert_eq!(answer.status, 502, "{}", answer.body);
    let request_id = answer.header("x-sluice-request-id").unwrap().to_string();
    let line = host
        .output
        .wait_for("outbound request failed", Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no log line for the failed call:\n{}", host.output.text()));
    let line: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    assert_eq!(line["level"], "WARN", "{line}");
    assert_eq!(line["message"], "outbound request failed", "{line}");
    assert_eq!(line["request_id"], request_id.as_str(), "{line}");
    assert!(line["plugin"].as_str().unwrap().contains("courier"), "{line}");
    assert!(line["url"].as_str().unwrap().contains("/ping"), "{line}");
    assert!(line["timestamp"].is_string(), "{line}");
    // Every line on stderr is JSON; stdout keeps its lines for people and programs.
    let text = host.output.text();
    let logged: Vec<&str> = text.lines().filter(|l| l.contains("\"level\"")).collect();
    assert!(logged.len() > 3, "{text}");
    for log in text.lines().filter(|l| l.contains("INFO") || l.contains("WARN")) {
        assert!(serde_json::from_str::<Value>(log).is_ok(), "not JSON: {log}");
    }
}
