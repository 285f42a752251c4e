//! The Botpress Webhook integration (guest-examples/webhook) through the real binary:
//! events, secret, CORS and limits. Every test runs against each build of the plugin
//! (see `webhook_builds`), so all languages behave the same.

use crate::harness::{Host, post_whole_then_read, small_records_body, webhook_build};
use serde_json::json;

/// Every build of the webhook example, each built from source: (language, component).
fn webhook_builds() -> Vec<(&'static str, std::path::PathBuf)> {
    ["rust", "python", "js", "c"]
        .into_iter()
        .map(|language| (language, webhook_build(language)))
        .collect()
}

fn host_with(build: &std::path::Path, sidecar: Option<&str>) -> Host {
    Host::builder().plugin("webhook", build, sidecar).start()
}

#[test]
fn a_request_becomes_an_event_with_the_exact_payload() {
    for (language, build) in webhook_builds() {
        let host = host_with(&build, None);
        let url = format!("{}/orders/new?source=shop&tag=a&tag=b", host.webhook_url("webhook"));
        let answer = host.send(
            host.client()
                .post(&url)
                .header("content-type", "application/json")
                .header("x-custom", "yes")
                .body(r#"{"example":"example","n":[1,2]}"#),
        );
        assert_eq!(answer.status, 200, "[{language}] {}", answer.body);
        let event_id = answer.json()["eventId"]
            .as_str()
            .expect("the answer names the event")
            .to_string();

        let events = host.events(Some("webhook:event"));
        assert_eq!(events.len(), 1, "[{language}] {events:?}");
        let event = &events[0];
        assert_eq!(event["id"], event_id);
        assert_eq!(event["type"], "webhook:event");
        let payload = &event["payload"];
        assert_eq!(
            payload["body"],
            json!({"example": "example", "n": [1, 2]}),
            "[{language}]"
        );
        assert_eq!(
            payload["query"],
            json!({"source": "shop", "tag": ["a", "b"]}),
            "[{language}]"
        );
        assert_eq!(payload["method"], "POST");
        assert_eq!(payload["path"], "/orders/new");
        assert_eq!(payload["headers"]["x-custom"], "yes");
        assert_eq!(payload["headers"]["content-type"], "application/json");

        let fetched = host.api_get(&format!("/v1/chat/events/{event_id}"));
        assert_eq!(fetched.status, 200);
        assert_eq!(fetched.json()["event"], *event);
    }
}

#[test]
fn a_text_body_is_kept_as_text() {
    for (language, build) in webhook_builds() {
        let host = host_with(&build, None);
        let answer = host.send(
            host.client()
                .put(host.webhook_url("webhook"))
                .header("content-type", "text/plain")
                .body("not json {"),
        );
        assert_eq!(answer.status, 200, "[{language}] {}", answer.body);
        let events = host.events(Some("webhook:event"));
        assert_eq!(events[0]["payload"]["body"], "not json {", "[{language}]");
        assert_eq!(events[0]["payload"]["method"], "PUT");
        assert_eq!(events[0]["payload"]["path"], "/");
        assert_eq!(events[0]["payload"]["query"], json!({}));
    }
}

#[test]
fn the_secret_is_required_and_never_stored() {
    for (language, build) in webhook_builds() {
        let host = host_with(&build, Some("[configuration]\nsecret = \"s3cret\"\n"));
        let url = host.webhook_url("webhook");

        let missing = host.post(&url, "{}");
        assert_eq!(missing.status, 401, "[{language}] {}", missing.body);
        let wrong = host.send(host.client().post(&url).header("x-bp-secret", "s3cre").body("{}"));
        assert_eq!(wrong.status, 401, "[{language}]");
        assert!(
            host.events(None).is_empty(),
            "[{language}] nothing is stored for refused requests"
        );

        let right = host.send(
            host.client()
                .post(&url)
                .header("x-bp-secret", "s3cret")
                .body(r#"{"ok":1}"#),
        );
        assert_eq!(right.status, 200, "[{language}] {}", right.body);
        let events = host.events(None);
        assert_eq!(events.len(), 1);
        assert!(
            events[0]["payload"]["headers"].get("x-bp-secret").is_none(),
            "[{language}] the secret is not kept: {}",
            events[0]
        );
    }
}

#[test]
fn browsers_are_refused_without_allowed_origins() {
    for (language, build) in webhook_builds() {
        let host = host_with(&build, None);
        let answer = host.send(
            host.client()
                .post(host.webhook_url("webhook"))
                .header("origin", "https://app.example")
                .body("{}"),
        );
        assert_eq!(answer.status, 403, "[{language}] {}", answer.body);
        assert!(host.events(None).is_empty());
    }
}

#[test]
fn allowed_origins_get_cors_headers_and_preflight_answers() {
    for (language, build) in webhook_builds() {
        let host = host_with(
            &build,
            Some("[configuration]\nallowedOrigins = [\"https://app.example\"]\n"),
        );
        let url = host.webhook_url("webhook");

        let allowed = host.send(
            host.client()
                .post(&url)
                .header("origin", "https://app.example")
                .body("{}"),
        );
        assert_eq!(allowed.status, 200, "[{language}] {}", allowed.body);
        assert_eq!(
            allowed.header("access-control-allow-origin"),
            Some("https://app.example")
        );

        let other = host.send(
            host.client()
                .post(&url)
                .header("origin", "https://evil.example")
                .body("{}"),
        );
        assert_eq!(other.status, 403, "[{language}]");

        let preflight = host.send(
            host.client()
                .request(reqwest::Method::OPTIONS, &url)
                .header("origin", "https://app.example")
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "content-type, x-bp-secret"),
        );
        assert!(
            preflight.status == 204 || preflight.status == 200,
            "[{language}] {}",
            preflight.status
        );
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert!(
            preflight
                .header("access-control-allow-methods")
                .unwrap_or_default()
                .contains("POST")
        );
        assert!(
            preflight
                .header("access-control-allow-headers")
                .unwrap_or_default()
                .contains("x-bp-secret")
        );
        assert_eq!(host.events(None).len(), 1, "[{language}] the preflight is not an event");
    }
}

#[test]
fn a_body_over_the_limit_gets_413_before_the_plugin_runs() {
    for (language, build) in webhook_builds() {
        let host = host_with(&build, Some("[limits]\nmax-body-bytes = 64\n"));
        let url = host.webhook_url("webhook");
        let big = format!("{{\"data\":\"{}\"}}", "x".repeat(200));
        let answer = host.post(&url, &big);
        assert_eq!(answer.status, 413, "[{language}] {}", answer.body);
        assert_eq!(answer.json()["type"], "PayloadTooLarge");
        assert!(answer.json()["message"].as_str().unwrap().contains("64 bytes"));

        let chunked = host.send(
            host.client()
                .post(&url)
                .body(reqwest::blocking::Body::new(std::io::Cursor::new(big.into_bytes()))),
        );
        assert_eq!(
            chunked.status, 413,
            "[{language}] a body without a length is cut off too"
        );
        assert!(host.events(None).is_empty());

        assert_eq!(host.post(&url, "{\"small\":true}").status, 200, "[{language}]");
    }
}

#[test]
fn the_default_body_limit_is_a_thirty_second_of_the_memory_limit() {
    let host = host_with(&webhook_build("rust"), None);
    assert_eq!(host.installation("webhook")["limits"]["maxBodyBytes"], 2 << 20);
    let url = host.webhook_url("webhook");
    // Written whole before anything is read, as most clients do: the 413 still arrives.
    let answer = post_whole_then_read(&url, &[], &vec![b'x'; (2 << 20) + 1]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("limit of 2097152 bytes"), "{answer}");
    assert!(host.events(None).is_empty());
    assert_eq!(
        host.post(&url, &"x".repeat(2 << 20)).status,
        200,
        "the limit itself passes"
    );

    let smaller = host_with(&webhook_build("rust"), Some("[limits]\nmax-memory-bytes = 16777216\n"));
    assert_eq!(smaller.installation("webhook")["limits"]["maxBodyBytes"], 512 << 10);
}

#[test]
fn every_build_handles_a_body_of_small_records_at_the_default_limit() {
    // The shape that costs the most memory for its size, as large as the defaults admit.
    let body = small_records_body("", "", 2 << 20);
    let records = serde_json::from_str::<serde_json::Value>(&body)
        .unwrap()
        .as_array()
        .unwrap()
        .len();
    for (language, build) in webhook_builds() {
        let host = host_with(&build, None);
        let answer = host.post(&host.webhook_url("webhook"), &body);
        assert_eq!(answer.status, 200, "[{language}] {}", answer.body);
        let events = host.events(Some("webhook:event"));
        let stored = events[0]["payload"]["body"].as_array().map(Vec::len);
        assert_eq!(stored, Some(records), "[{language}] every record, as an array");
    }
}

#[test]
fn a_body_the_plugin_cannot_hold_in_its_memory_is_explained_and_the_host_goes_on() {
    // The body limit raised to half the memory: a 20 MB body passes the check, and the
    // plugin, holding it several times over, runs out of its 64 MiB.
    let host = host_with(&webhook_build("rust"), Some("[limits]\nmax-body-bytes = 33554432\n"));
    let url = host.webhook_url("webhook");
    let answer = host.post(&url, &"x".repeat(20_000_000));
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(answer.json()["type"], "PluginCrashed");
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("went over its memory limit of 67108864 bytes"),
        "{message}"
    );
    assert!(message.contains("the request's body was 20000000 bytes"), "{message}");
    assert!(
        message.contains("raise limits.max-memory-bytes in webhook.toml, or lower limits.max-body-bytes"),
        "{message}"
    );
    assert!(host.events(None).is_empty());
    assert_eq!(host.post(&url, "{\"small\":true}").status, 200, "the host goes on");
    assert_eq!(host.events(None).len(), 1);
}

#[test]
fn a_body_limit_above_the_memory_limit_is_cut_to_it_with_a_warning() {
    let host = Host::builder()
        .plugin(
            "webhook",
            webhook_build("rust"),
            Some("[limits]\nmax-body-bytes = 104857600\n"),
        )
        .start();
    let installation = host.installation("webhook");
    assert_eq!(installation["status"], "active", "{installation}");
    assert_eq!(installation["limits"]["maxBodyBytes"], 64 << 20);
    let warning = "limits.max-body-bytes (104857600) is more than limits.max-memory-bytes (67108864)";
    let line = host.output.wait_for(warning, std::time::Duration::from_secs(10));
    assert!(
        line.is_some_and(|line| line.contains("sidecar{file=webhook.toml}")),
        "a warning naming the sidecar: {}",
        host.output.text()
    );
}
