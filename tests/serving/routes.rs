//! Every route, from the host's own route table (`GET /v1/admin/routes`, which the router
//! is built from): a route that reads a JSON body refuses anything but an object and
//! anything not sent as JSON, and every answer, refusals included, is in the API's error
//! shape with the request id. A new route is in the table, so these hold for it too.

use serde_json::{Value, json};

use crate::harness::{API_TOKEN, Answer, Host, guest};

fn host() -> Host {
    Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"p\"\n"))
        .start()
}

/// The route table, as the host answers it.
fn table(host: &Host) -> Vec<Value> {
    let answer = host.api_get("/v1/admin/routes");
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["routes"].as_array().unwrap().clone()
}

/// A path of the route, its parameters filled with `x`.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|part| if part.starts_with('{') { "x" } else { part })
        .collect::<Vec<_>>()
        .join("/")
}

/// Sends `body` to the route with `content_type` (none if `None`), with the API token
/// where the route needs it.
fn send(host: &Host, route: &Value, content_type: Option<&str>, body: &str) -> Answer {
    let method = reqwest::Method::from_bytes(route["method"].as_str().unwrap().as_bytes()).unwrap();
    let mut request = host
        .client()
        .request(method, host.url(&concrete(route["path"].as_str().unwrap())))
        .body(body.to_string());
    if route["access"] != "public" {
        request = request.bearer_auth(API_TOKEN);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    host.send(request)
}

/// An answer in the error shape, with `status` and `kind`, whose `id` is the request id
/// on its header.
pub fn assert_error(answer: &Answer, status: u16, kind: &str, what: &str) -> Value {
    assert_eq!(answer.status, status, "{what}: {}", answer.body);
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "{what}: {}",
        answer.body
    );
    let error = answer.json();
    assert_eq!(error["type"], kind, "{what}: {error}");
    if error["code"].is_string() {
        // The trigger API's errors carry ChatBotKit's string code, the status beside it.
        assert_eq!(error["status"], status, "{what}: {error}");
    } else {
        assert_eq!(error["code"], status, "{what}: {error}");
    }
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {error}"
    );
    let id = error["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("req_"), "{what}: {error}");
    assert_eq!(answer.header("x-sluice-request-id"), Some(id), "{what}");
    error
}

#[test]
fn the_table_lists_every_surface_and_what_each_route_reads() {
    let host = host();
    let routes = table(&host);
    let has = |method: &str, path: &str, access: &str, body: &str| {
        routes
            .iter()
            .any(|r| r["method"] == method && r["path"] == path && r["access"] == access && r["body"] == body)
    };
    for (method, path, access, body) in [
        ("ANY", "/webhooks/{webhook_id}", "public", "raw"),
        ("ANY", "/webhooks/{webhook_id}/{*path}", "public", "raw"),
        ("POST", "/v1/chat/events", "api-token", "json-object"),
        ("POST", "/v1/chat/states/{type}/{id}/{name}", "api-token", "json-object"),
        (
            "PATCH",
            "/v1/chat/states/{type}/{id}/{name}",
            "api-token",
            "json-object",
        ),
        ("PUT", "/v1/chat/messages/{id}", "api-token", "json-object"),
        ("POST", "/v1/chat/actions", "api-token", "json-object"),
        ("GET", "/v1/admin/installations", "api-token", "none"),
        ("GET", "/v1/admin/routes", "api-token", "none"),
        ("PUT", "/v1/admin/plugins/{name}", "api-token", "plugin-upload"),
        ("DELETE", "/v1/admin/plugins/{name}", "api-token", "none"),
        ("POST", "/v1/subscriptions", "api-token", "json-object"),
        ("POST", "/v1/deliveries/{id}/resend", "api-token", "json-object"),
        ("GET", "/v1/stream", "api-token-or-ticket", "none"),
        ("POST", "/v1/stream/tickets", "api-token", "json-object"),
        ("POST", "/v1/subscriptions/{id}/recover", "api-token", "json-object"),
        ("POST", "/api/v1/integration/trigger/create", "api-token", "json-object"),
        (
            "POST",
            "/v1/integration/trigger/{id}/delete",
            "api-token",
            "json-object",
        ),
        ("ANY", "/api/v1/integration/trigger/{id}/event", "public", "raw"),
    ] {
        assert!(
            has(method, path, access, body),
            "{method} {path} ({access}, {body}) in {routes:#?}"
        );
    }
    // A route taking a body reads a JSON object, unless it passes its body on or takes
    // a plugin.
    for route in &routes {
        let expected = match route["method"].as_str().unwrap() {
            "PUT" if route["path"] == "/v1/admin/plugins/{name}" => "plugin-upload",
            "POST" | "PUT" | "PATCH" => "json-object",
            "ANY" => "raw",
            _ => "none",
        };
        assert_eq!(route["body"], expected, "{route}");
    }
}

#[test]
fn every_json_route_refuses_what_is_not_an_object_or_not_sent_as_json() {
    let host = host();
    let routes: Vec<Value> = table(&host)
        .into_iter()
        .filter(|route| route["body"] == "json-object")
        .collect();
    assert!(routes.len() >= 20, "{routes:#?}");
    for route in &routes {
        let what = format!("{} {}", route["method"], route["path"]);
        for body in [
            "[{}]",
            "[null]",
            r#"["chat:sendMessage", {}]"#,
            "null",
            "42",
            r#""text""#,
        ] {
            let answer = send(&host, route, Some("application/json"), body);
            let error = assert_error(&answer, 400, "InvalidPayload", &format!("{what} with {body}"));
            assert!(
                error["message"].as_str().unwrap().contains("must be a JSON object"),
                "{what} with {body}: {error}"
            );
        }
        let text = send(&host, route, Some("text/plain"), "{}");
        assert_error(&text, 415, "UnsupportedMediaType", &format!("{what} as text/plain"));
        let unlabelled = send(&host, route, None, r#"{"a":1}"#);
        assert_error(
            &unlabelled,
            415,
            "UnsupportedMediaType",
            &format!("{what} without Content-Type"),
        );
        let oversized = send(
            &host,
            route,
            Some("application/json"),
            &format!("{{\"a\":\"{}\"}}", "x".repeat(3 << 20)),
        );
        assert_error(&oversized, 413, "PayloadTooLarge", &format!("{what} over 2 MiB"));
    }
}

#[test]
fn every_route_answers_with_the_request_id_refusals_and_routing_included() {
    let host = host();
    for route in table(&host) {
        let what = format!("{} {}", route["method"], route["path"]);
        let path = concrete(route["path"].as_str().unwrap());
        let method = reqwest::Method::from_bytes(route["method"].as_str().unwrap().as_bytes()).unwrap();
        // The head only: the live stream's body does not end.
        let response = host
            .client()
            .request(method.clone(), host.url(&path))
            .bearer_auth(API_TOKEN)
            .send()
            .expect("the request reached sluice");
        let id = response
            .headers()
            .get("x-sluice-request-id")
            .unwrap_or_else(|| panic!("{what}: no request id"))
            .to_str()
            .unwrap()
            .to_string();
        assert!(id.starts_with("req_"), "{what}: {id}");
        if response.status().as_u16() >= 400 {
            let error: Value = response.json().unwrap();
            assert_eq!(error["id"], id, "{what}: {error}");
        }
        if route["access"] != "public" {
            let refused = host.send(host.client().request(method, host.url(&path)));
            assert_error(&refused, 401, "Unauthorized", &format!("{what} without the token"));
        }
    }
    let nowhere = host.send(host.client().get(host.url("/no/such/route")));
    assert_error(&nowhere, 404, "ResourceNotFound", "an unknown route");
    let wrong_method = host.send(host.client().put(host.url("/v1/chat/events")).bearer_auth(API_TOKEN));
    assert_error(&wrong_method, 405, "MethodNotFound", "a method the route does not take");
    let webhook = host.post(&host.webhook_url("probe"), "{}");
    assert!(
        webhook
            .header("x-sluice-request-id")
            .is_some_and(|id| id.starts_with("req_"))
    );
}

#[test]
fn an_array_where_an_object_is_expected_changes_nothing() {
    let host = host();
    let state = "/v1/chat/states/bot/x/greeting";
    let set = host.api_post(state, &json!({ "payload": { "v": 1 } }));
    assert_eq!(set.status, 200, "{}", set.body);
    // Read field by field, `[null]` would delete the state and `[{"v":2}]` set it.
    for body in [json!([null]), json!([{ "v": 2 }])] {
        let answer = host.api_post(state, &body);
        assert_error(&answer, 400, "InvalidPayload", &body.to_string());
    }
    assert_eq!(host.api_get(state).json()["state"]["payload"], json!({ "v": 1 }));
}
