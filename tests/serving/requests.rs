//! What a request carries and how its refusal is told: the request id in the log, for a
//! refused request (at debug) and for a failure with its cause (a storage failure's
//! 500); paths and queries that are not UTF-8, and NUL in text; the Bearer scheme in any
//! case; an empty body against one of whitespace only.

use std::time::Duration;

use serde_json::json;

use super::routes::assert_error;
use crate::harness::{API_TOKEN, Host, guest};

fn host() -> Host {
    Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .plugin("recorder", guest("trigger_probe"), None)
        .start()
}

#[test]
fn a_refused_requests_id_is_in_a_log_line() {
    let host = host();
    // The harness runs sluice with SLUICE_LOG=info,sluice=debug, as docs/operations.md
    // says to see refused requests.
    let answer = host.api_post("/v1/chat/actions", &json!(["webhook:nothing", {}]));
    let error = assert_error(&answer, 400, "InvalidPayload", "an array body");
    let id = error["id"].as_str().unwrap();
    let line = host
        .output
        .wait_for(id, Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no log line names {id}:\n{}", host.output.text()));
    assert!(
        line.contains("request refused") && line.contains("InvalidPayload"),
        "{line}"
    );
}

#[test]
fn a_storage_failures_500_names_the_request_in_the_log_line_of_its_cause() {
    // SQLite only: the failure is made by locking the SQLite file. The PostgreSQL store's
    // failures are the database's loss, tested in serving::store_lost.
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .plugin("recorder", guest("trigger_probe"), None)
        .sqlite_only()
        .start();
    // Another writer holds the store's database longer than sluice waits for it (10 s).
    let database = rusqlite::Connection::open(host.data.join("sluice.db")).unwrap();
    database.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let answer = host.api_post("/v1/chat/events", &json!({ "type": "outside:happened", "payload": {} }));
    database.execute_batch("ROLLBACK").unwrap();
    let error = assert_error(&answer, 500, "Internal", "a write the store could not make");
    let id = error["id"].as_str().unwrap();
    assert!(error["message"].as_str().unwrap().contains(id), "{error}");
    let line = host
        .output
        .wait_for_since(0, &[id, "internal error"], Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no log line names {id}:\n{}", host.output.text()));
    assert!(line.contains("locked"), "the line says why: {line}");
    let again = host.api_post("/v1/chat/events", &json!({ "type": "outside:happened", "payload": {} }));
    assert_eq!(again.status, 200, "and the store works again: {}", again.body);
}

#[test]
fn paths_and_queries_that_are_not_utf8_are_refused_in_the_error_shape() {
    let host = host();
    let event = host.api_get("/v1/chat/events/%FF");
    assert_error(&event, 400, "InvalidIdentifier", "an event id that is not UTF-8");
    let webhook = host.post(&host.url("/webhooks/%FF"), "{}");
    assert_error(&webhook, 400, "InvalidIdentifier", "a webhook id that is not UTF-8");
    for path in [
        "/v1/chat/events?type=%FF",
        "/v1/chat/conversations?channel=%C3",
        "/v1/chat/users?tags.name=%FF",
        "/v1/chat/messages?conversationId=%FE%FF",
        "/v1/subscriptions/x/deliveries?status=%FF",
        "/api/v1/integration/trigger/list?blueprintId=%FF",
        "/v1/stream?types=%FF",
    ] {
        let answer = host.api_get(path);
        let error = assert_error(&answer, 400, "InvalidQuery", path);
        assert!(error["message"].as_str().unwrap().contains("UTF-8"), "{path}: {error}");
    }
}

/// PostgreSQL stores NUL neither in text nor in JSON, so no store gets it: the fuzzer found
/// an event type with NUL answered 500 on PostgreSQL.
#[test]
fn nul_in_bodies_paths_and_queries_is_refused_on_every_store() {
    let host = host();
    let event = host.api_post("/v1/chat/events", &json!({ "type": "bot\u{0}x", "payload": {} }));
    let error = assert_error(&event, 400, "InvalidPayload", "an event type with NUL");
    assert!(error["message"].as_str().unwrap().contains("NUL"), "{error}");
    let payload = host.api_post(
        "/v1/chat/events",
        &json!({ "type": "bot", "payload": { "a": "\u{0}" } }),
    );
    assert_error(&payload, 400, "InvalidPayload", "a payload with NUL");
    assert_error(
        &host.api_get("/v1/chat/events/x%00"),
        400,
        "InvalidIdentifier",
        "an id with NUL",
    );
    let query = host.api_get("/v1/chat/events?type=a%00");
    assert_error(&query, 400, "InvalidQuery", "a query with NUL");
    // Text that only looks like the escape is text.
    let escaped = host.api_post(
        "/v1/chat/events",
        &json!({ "type": "bot", "payload": { "a": "\\u0000" } }),
    );
    assert_eq!(escaped.status, 200, "{}", escaped.body);
}

/// The fuzzer found a body of one newline read as the empty body.
#[test]
fn an_empty_body_reads_as_an_empty_object_but_whitespace_is_not_json() {
    let host = host();
    let mint = |body: &str| {
        host.send(
            host.client()
                .post(host.url("/v1/stream/tickets"))
                .bearer_auth(API_TOKEN)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    };
    let empty = mint("");
    assert_eq!(empty.status, 201, "{}", empty.body);
    for blank in ["\n", "  ", "\r\n\t"] {
        assert_error(&mint(blank), 400, "InvalidPayload", &format!("a body of {blank:?}"));
    }
    let padded = mint(" \n{} ");
    assert_eq!(padded.status, 201, "whitespace around JSON is JSON: {}", padded.body);
}

#[test]
fn a_trigger_session_that_is_not_utf8_is_refused_rather_than_merged() {
    let host = host();
    let trigger = host.create_trigger(&json!({ "botId": "recorder" }));
    let id = trigger["id"].as_str().unwrap();
    // Read with replacement characters, both would be the session "\u{FFFD}".
    for session in ["%FF", "%FE"] {
        let answer = host.post(&format!("{}?session={session}", host.trigger_event_url(id)), "{}");
        let error = assert_error(&answer, 400, "InvalidPayload", session);
        assert!(error["message"].as_str().unwrap().contains("session"), "{error}");
    }
    let queued = host.api_get(&format!("/v1/integration/trigger/{id}/events"));
    assert_eq!(queued.json()["items"], json!([]), "nothing was queued");
    let fine = host.post(&format!("{}?session=caf%C3%A9", host.trigger_event_url(id)), "{}");
    assert_eq!(fine.status, 200, "{}", fine.body);
}

#[test]
fn the_bearer_scheme_is_read_in_any_case_for_the_api_token_and_trigger_secrets() {
    let host = host();
    let trigger = host.create_trigger(&json!({ "botId": "recorder", "authenticate": true }));
    let (id, secret) = (trigger["id"].as_str().unwrap(), trigger["secret"].as_str().unwrap());
    for scheme in ["Bearer", "bearer", "BEARER", "BeArEr"] {
        for path in ["/v1/admin/installations", "/api/v1/integration/trigger/list"] {
            let answer = host.send(
                host.client()
                    .get(host.url(path))
                    .header("authorization", format!("{scheme} {API_TOKEN}")),
            );
            assert_eq!(answer.status, 200, "{scheme} on {path}: {}", answer.body);
        }
        let event = host.send(
            host.client()
                .post(host.trigger_event_url(id))
                .header("authorization", format!("{scheme} {secret}"))
                .header("content-type", "application/json")
                .body("{}"),
        );
        assert_eq!(event.status, 200, "{scheme} with the trigger secret: {}", event.body);
    }
    let wrong = host.send(
        host.client()
            .get(host.url("/v1/admin/installations"))
            .header("authorization", format!("Basic {API_TOKEN}")),
    );
    assert_error(&wrong, 401, "Unauthorized", "another scheme");
}
