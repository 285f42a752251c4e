//! The trigger management API (ChatBotKit's create, list, fetch, update, delete, setup
//! and invoke) through the real binary: fields, both path prefixes, pagination, checks
//! and status codes.

use crate::harness::{Host, eventually, guest};
use serde_json::{Value, json};
use std::time::Duration;

/// `orders` runs the example trigger plugin; `probe` is installed but lacks the
/// configuration it needs, so it cannot take events.
fn host() -> Host {
    Host::builder()
        .plugin("orders", guest("trigger"), None)
        .plugin("probe", guest("probe"), None)
        .start()
}

fn is_iso_time(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|t| t.len() == 24 && t.ends_with('Z') && t.as_bytes()[10] == b'T')
}

#[test]
fn triggers_are_created_fetched_updated_and_deleted() {
    let host = host();
    let created = host.create_trigger(&json!({
        "name": "Order Processing Trigger",
        "description": "Handles order processing events",
        "botId": "orders",
        "authenticate": true,
        "sessionDuration": 3600000,
        "meta": { "team": "shop" }
    }));
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("trg_"), "{created}");
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(secret.len(), 64, "256 random bits, hex encoded");
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(created["name"], "Order Processing Trigger");
    assert_eq!(created["botId"], "orders");
    assert_eq!(created["authenticate"], true);
    assert_eq!(created["triggerSchedule"], Value::Null);
    assert_eq!(created["blueprintId"], Value::Null);
    assert_eq!(created["meta"], json!({ "team": "shop" }));
    assert_eq!(created["nextTriggerAt"], Value::Null);
    assert!(
        is_iso_time(&created["createdAt"]) && is_iso_time(&created["updatedAt"]),
        "{created}"
    );

    // Both prefixes serve the same trigger, with its secret.
    for prefix in ["/api/v1", "/v1"] {
        let fetched = host.api_get(&format!("{prefix}/integration/trigger/{id}/fetch"));
        assert_eq!(fetched.status, 200, "{}", fetched.body);
        assert_eq!(fetched.json(), created);
    }

    let updated = host.api_post(
        &format!("/v1/integration/trigger/{id}/update"),
        &json!({
            "name": "Updated Order Processor",
            "description": "Enhanced order processing with fraud detection",
            "triggerSchedule": "0 0 * * *",
            "sessionDuration": 7200000
        }),
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["id"], id.as_str());
    let fetched = host.api_get(&format!("/api/v1/integration/trigger/{id}/fetch")).json();
    assert_eq!(fetched["name"], "Updated Order Processor");
    assert_eq!(fetched["description"], "Enhanced order processing with fraud detection");
    assert_eq!(fetched["triggerSchedule"], "0 0 * * *");
    assert_eq!(fetched["schedule"], "0 0 * * *", "the SDK's name for the same field");
    assert_eq!(fetched["sessionDuration"], 7200000);
    assert_eq!(fetched["authenticate"], true, "fields left out stay");
    assert_eq!(fetched["secret"], secret.as_str(), "updates keep the secret");
    assert_eq!(fetched["meta"], json!({ "team": "shop" }));
    assert_eq!(fetched["createdAt"], created["createdAt"]);
    let next = fetched["nextTriggerAt"]
        .as_i64()
        .expect("a scheduled trigger shows its next run");
    let midnight_ms = 86_400_000;
    assert_eq!(next % midnight_ms, 0, "daily at midnight UTC: {next}");

    // The SDK's `schedule` and `timezone`, then clearing the schedule.
    let moved = host.api_post(
        &format!("/v1/integration/trigger/{id}/update"),
        &json!({ "schedule": "30 6 * * *", "timezone": "Europe/Berlin", "blueprintId": "blueprint_xyz" }),
    );
    assert_eq!(moved.status, 200, "{}", moved.body);
    let fetched = host.api_get(&format!("/v1/integration/trigger/{id}/fetch")).json();
    assert_eq!(fetched["triggerSchedule"], "30 6 * * *");
    assert_eq!(fetched["timezone"], "Europe/Berlin");
    assert_eq!(fetched["blueprintId"], "blueprint_xyz");
    let next = fetched["nextTriggerAt"].as_i64().unwrap();
    let minutes_utc = (next % midnight_ms) / 60_000;
    assert!(
        [270, 330].contains(&minutes_utc),
        "06:30 in Berlin is 04:30 or 05:30 UTC: {next}"
    );
    let cleared = host.api_post(
        &format!("/v1/integration/trigger/{id}/update"),
        &json!({ "triggerSchedule": null, "blueprintId": null }),
    );
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    let fetched = host.api_get(&format!("/v1/integration/trigger/{id}/fetch")).json();
    assert_eq!(fetched["triggerSchedule"], Value::Null);
    assert_eq!(fetched["nextTriggerAt"], Value::Null);
    assert_eq!(fetched["blueprintId"], Value::Null);

    let deleted = host.api_post(&format!("/api/v1/integration/trigger/{id}/delete"), &json!({}));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(deleted.json(), json!({ "id": id }));
    for answer in [
        host.api_get(&format!("/api/v1/integration/trigger/{id}/fetch")),
        host.api_post(&format!("/api/v1/integration/trigger/{id}/delete"), &json!({})),
        host.api_post(
            &format!("/api/v1/integration/trigger/{id}/update"),
            &json!({ "name": "x" }),
        ),
        host.api_post(&format!("/api/v1/integration/trigger/{id}/setup"), &json!({})),
        host.api_post(&format!("/api/v1/integration/trigger/{id}/invoke"), &json!({})),
    ] {
        assert_eq!(answer.status, 404, "{}", answer.body);
        assert_eq!(answer.json()["type"], "ResourceNotFound");
    }

    // The management API needs the API token.
    for request in [
        host.client().get(host.url("/api/v1/integration/trigger/list")),
        host.client()
            .post(host.url("/v1/integration/trigger/create"))
            .body("{}"),
        host.client()
            .get(host.url("/v1/integration/trigger/list"))
            .bearer_auth(&secret),
    ] {
        assert_eq!(host.send(request).status, 401);
    }
}

#[test]
fn bad_trigger_settings_are_refused_with_the_problem_named() {
    let host = host();
    let cases = [
        (json!({ "name": "no bot" }), "botId is required"),
        (json!({ "botId": "nobody" }), "installed: orders, probe"),
        (
            json!({ "botId": "orders", "triggerSchedule": "every day" }),
            "every day",
        ),
        (
            json!({ "botId": "orders", "triggerSchedule": "0 0 * *" }),
            "has 4 field(s)",
        ),
        (
            json!({ "botId": "orders", "triggerSchedule": "61 * * * *" }),
            "not a valid cron expression",
        ),
        (
            json!({ "botId": "orders", "triggerSchedule": "0 0 * * *", "schedule": "0 1 * * *" }),
            "give one",
        ),
        (
            json!({ "botId": "orders", "schedule": "0 0 * * *", "timezone": "Mars/Olympus" }),
            "Mars/Olympus",
        ),
        (
            json!({ "botId": "orders", "authenticate": "yes" }),
            "authenticate must be true or false",
        ),
        (json!({ "botId": "orders", "sessionDuration": -1 }), "sessionDuration"),
        (json!({ "botId": "orders", "sessionDuration": "1h" }), "sessionDuration"),
        (json!({ "botId": "orders", "meta": ["a"] }), "meta must be an object"),
        (json!({ "botId": "orders", "name": 7 }), "name must be a string"),
        (json!(["botId", "orders"]), "must be a JSON object"),
    ];
    for (body, problem) in cases {
        let answer = host.api_post("/api/v1/integration/trigger/create", &body);
        assert_eq!(answer.status, 400, "{body}: {}", answer.body);
        let message = answer.json()["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(problem),
            "{body}: {message:?} should mention {problem:?}"
        );
    }
    let not_json = host.send(
        host.client()
            .post(host.url("/api/v1/integration/trigger/create"))
            .bearer_auth(crate::harness::API_TOKEN)
            .header("content-type", "application/json")
            .body("{oops"),
    );
    assert_eq!(not_json.status, 400);
    assert!(not_json.json()["message"].as_str().unwrap().contains("not valid JSON"));
    let too_large = host.api_post(
        "/api/v1/integration/trigger/create",
        &json!({ "botId": "orders", "description": "x".repeat(3 << 20) }),
    );
    assert_eq!(too_large.status, 413, "{}", too_large.body);
    assert_eq!(too_large.json()["type"], "PayloadTooLarge");
    assert!(
        too_large.json()["message"]
            .as_str()
            .unwrap()
            .contains("limit of 2097152 bytes"),
        "{}",
        too_large.body
    );

    // The same checks on update, and nothing changes.
    let id = host.create_trigger(&json!({ "botId": "orders", "name": "kept" }))["id"]
        .as_str()
        .unwrap()
        .to_string();
    let answer = host.api_post(
        &format!("/api/v1/integration/trigger/{id}/update"),
        &json!({ "name": "changed", "triggerSchedule": "0 25 * * *" }),
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    let answer = host.api_post(
        &format!("/api/v1/integration/trigger/{id}/update"),
        &json!({ "botId": null }),
    );
    assert_eq!(answer.status, 400, "{}", answer.body);
    let fetched = host.api_get(&format!("/api/v1/integration/trigger/{id}/fetch")).json();
    assert_eq!(fetched["name"], "kept");
    assert_eq!(fetched["triggerSchedule"], Value::Null);
    assert_eq!(fetched["authenticate"], false, "authentication is off unless asked for");
    assert_eq!(fetched["sessionDuration"], 3_600_000, "one hour by default");
}

#[test]
fn lists_page_by_cursor_and_filter_by_blueprint_and_meta() {
    let host = host();
    let mut ids = Vec::new();
    for n in 0..5 {
        let trigger = host.create_trigger(&json!({
            "name": format!("t{n}"),
            "botId": "orders",
            "authenticate": n == 0,
            "blueprintId": if n % 2 == 0 { Value::from("blueprint_xyz") } else { Value::Null },
            "meta": { "team": if n < 3 { "a" } else { "b" } },
        }));
        ids.push(trigger["id"].as_str().unwrap().to_string());
    }
    let page = |query: &str| {
        let answer = host.api_get(&format!("/api/v1/integration/trigger/list{query}"));
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        answer.json()
    };
    let item_ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect()
    };

    let first = page("?take=2");
    assert_eq!(item_ids(&first), [ids[4].clone(), ids[3].clone()], "newest first");
    let cursor = first["cursor"].as_str().unwrap();
    let second = page(&format!("?take=2&cursor={cursor}"));
    assert_eq!(item_ids(&second), [ids[2].clone(), ids[1].clone()]);
    let third = page(&format!("?take=2&cursor={}", second["cursor"].as_str().unwrap()));
    assert_eq!(item_ids(&third), [ids[0].clone()]);
    assert!(third.get("cursor").is_none(), "the last page has no cursor: {third}");

    let ascending = page("?order=asc&take=3");
    assert_eq!(item_ids(&ascending), ids[..3]);
    let rest = page(&format!(
        "?order=asc&take=3&cursor={}",
        ascending["cursor"].as_str().unwrap()
    ));
    assert_eq!(item_ids(&rest), ids[3..]);

    assert_eq!(
        item_ids(&page("?blueprintId=blueprint_xyz&order=asc")),
        [ids[0].clone(), ids[2].clone(), ids[4].clone()]
    );
    assert_eq!(item_ids(&page("?meta.team=b")), [ids[4].clone(), ids[3].clone()]);

    // The secret shows in lists only for triggers that authenticate.
    let all = page("?order=asc&take=100");
    let items = all["items"].as_array().unwrap();
    assert!(items[0]["secret"].as_str().is_some_and(|s| s.len() == 64));
    assert!(items[1].get("secret").is_none(), "{}", items[1]);
    assert!(
        items
            .iter()
            .all(|t| t["botId"] == "orders" && is_iso_time(&t["createdAt"]))
    );

    // The SDK's streaming form: one JSON line per item, every page to the end.
    let lines = host.send(
        host.client()
            .get(host.url("/api/v1/integration/trigger/list?take=2"))
            .bearer_auth(crate::harness::API_TOKEN)
            .header("accept", "application/jsonl"),
    );
    assert_eq!(lines.status, 200);
    assert_eq!(lines.header("content-type"), Some("application/jsonl"));
    let items: Vec<Value> = lines.body.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(items.iter().all(|item| item["type"] == "item"), "{}", lines.body);
    let streamed: Vec<&str> = items.iter().map(|item| item["data"]["id"].as_str().unwrap()).collect();
    let newest_first: Vec<&str> = ids.iter().rev().map(String::as_str).collect();
    assert_eq!(
        streamed, newest_first,
        "take sets the page size, not where the stream ends"
    );

    for bad in [
        "?take=0",
        "?take=101",
        "?take=lots",
        "?order=sideways",
        "?cursor=trg_nope",
        "?meta.a%20b=1",
    ] {
        let answer = host.api_get(&format!("/api/v1/integration/trigger/list{bad}"));
        assert_eq!(answer.status, 400, "{bad}: {}", answer.body);
    }
}

#[test]
fn setup_checks_the_bot_binding_and_is_safe_to_repeat() {
    let host = host();
    let ready = host.create_trigger(&json!({ "botId": "orders", "triggerSchedule": "0 * * * *" }));
    let id = ready["id"].as_str().unwrap();
    for _ in 0..2 {
        let answer = host.api_post(&format!("/api/v1/integration/trigger/{id}/setup"), &json!({}));
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.json(), json!({ "id": id }));
    }
    let after = host.api_get(&format!("/api/v1/integration/trigger/{id}/fetch")).json();
    assert_eq!(after["updatedAt"], ready["updatedAt"], "setup changes nothing");
    assert_eq!(after["nextTriggerAt"], ready["nextTriggerAt"]);

    // Bound by installation id rather than name works the same.
    let orders_id = host.installation("orders")["id"].as_str().unwrap().to_string();
    let by_id = host.create_trigger(&json!({ "botId": orders_id }));
    let answer = host.api_post(
        &format!("/v1/integration/trigger/{}/setup", by_id["id"].as_str().unwrap()),
        &json!({}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);

    // The probe is installed, but without the configuration it needs.
    let unready = host.create_trigger(&json!({ "botId": "probe" }));
    let answer = host.api_post(
        &format!("/api/v1/integration/trigger/{}/setup", unready["id"].as_str().unwrap()),
        &json!({}),
    );
    assert_eq!(answer.status, 409, "{}", answer.body);
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("not ready") && message.contains("configuration"),
        "{message}"
    );
}

#[test]
fn invoke_queues_a_run_now() {
    let host = host();
    let trigger = host.create_trigger(&json!({ "botId": "orders" }));
    let id = trigger["id"].as_str().unwrap();
    assert_eq!(trigger["lastTriggerAt"], Value::Null);
    let answer = host.api_post(&format!("/api/v1/integration/trigger/{id}/invoke"), &json!({}));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let event_id = answer.json()["eventId"].as_str().unwrap().to_string();
    assert_eq!(answer.json()["id"], id);

    // The example plugin answers an invoke with today's report request.
    let finished = eventually("the invoked run to finish", Duration::from_secs(60), || {
        host.events_of("trigger:execution:finished", &event_id).pop()
    });
    assert_eq!(finished["payload"]["source"], "invoke");
    let report = host.events(Some("orders:reportRequested"));
    assert_eq!(report.len(), 1, "{report:?}");
    assert_eq!(report[0]["payload"]["triggerEventId"], event_id.as_str());
    assert_eq!(report[0]["conversationId"], finished["conversationId"]);

    let fetched = host.api_get(&format!("/api/v1/integration/trigger/{id}/fetch")).json();
    let last = fetched["lastTriggerAt"]
        .as_i64()
        .expect("invoke records when it ran the trigger");
    assert!(last > 1_700_000_000_000);
}

#[test]
fn errors_carry_chatbotkits_string_codes_beside_the_status() {
    let host = Host::builder().start();
    for (path, status, code) in [
        ("/api/v1/integration/trigger/trg_nope/fetch", 404, "NOT_FOUND"),
        ("/v1/integration/trigger/list?take=0", 400, "BAD_REQUEST"),
    ] {
        let answer = host.api_get(path);
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        let error = answer.json();
        assert_eq!(error["code"], code, "{path}: {error}");
        assert_eq!(error["status"], status, "{path}: {error}");
        assert!(error["type"].is_string() && error["message"].is_string(), "{error}");
    }
    let unauthenticated = host.send(host.client().get(host.url("/api/v1/integration/trigger/list")));
    assert_eq!(unauthenticated.status, 401);
    assert_eq!(unauthenticated.json()["code"], "UNAUTHORIZED");
}
