//! State and events through the plugin imports and the bot API: round trips, schema
//! checks, isolation between installations, pagination and the API token.

use crate::harness::{Host, guest};
use serde_json::json;

fn two_probes() -> Host {
    Host::builder()
        .plugin("alpha", guest("probe"), Some("[configuration]\nname = \"alpha\"\n"))
        .plugin("beta", guest("probe"), Some("[configuration]\nname = \"beta\"\n"))
        .start()
}

#[test]
fn state_round_trips_through_a_plugin_and_the_bot_api() {
    let host = two_probes();
    let alpha = host.webhook_url("alpha");
    let alpha_id = host.installation("alpha")["id"].as_str().unwrap().to_string();

    let set = host.send(
        host.client()
            .put(format!("{alpha}/state/integration/self/settings"))
            .body(r#"{"mode":"fast","n":3}"#),
    );
    assert_eq!(set.status, 200, "{}", set.body);
    let got = host.send(host.client().get(format!("{alpha}/state/integration/self/settings")));
    assert_eq!(got.json(), json!({"mode": "fast", "n": 3}));

    let via_api = host.api_get(&format!("/v1/chat/states/integration/{alpha_id}/settings"));
    assert_eq!(via_api.status, 200, "{}", via_api.body);
    assert_eq!(via_api.json()["state"]["payload"], json!({"mode": "fast", "n": 3}));
    assert_eq!(via_api.json()["state"]["type"], "integration");

    let changed = host.api_post(
        &format!("/v1/chat/states/integration/{alpha_id}/settings"),
        &json!({"payload": {"mode": "slow"}}),
    );
    assert_eq!(changed.status, 200, "{}", changed.body);
    let got = host.send(host.client().get(format!("{alpha}/state/integration/self/settings")));
    assert_eq!(got.json(), json!({"mode": "slow"}), "the plugin sees what the bot set");

    let deleted = host.send(host.client().delete(format!("{alpha}/state/integration/self/settings")));
    assert_eq!(deleted.status, 204);
    assert_eq!(
        host.api_get(&format!("/v1/chat/states/integration/{alpha_id}/settings"))
            .status,
        404
    );
}

#[test]
fn one_installation_cannot_see_or_change_anothers_state() {
    let host = two_probes();
    let (alpha, beta) = (host.webhook_url("alpha"), host.webhook_url("beta"));
    let alpha_id = host.installation("alpha")["id"].as_str().unwrap().to_string();
    let set = host.send(
        host.client()
            .put(format!("{alpha}/state/integration/self/secret"))
            .body(r#"{"token":"alpha-only"}"#),
    );
    assert_eq!(set.status, 200);

    let peek = host.send(host.client().get(format!("{beta}/state/integration/{alpha_id}/secret")));
    assert_eq!(peek.status, 422, "{}", peek.body);
    assert_eq!(peek.json()["kind"], "forbidden");
    let overwrite = host.send(
        host.client()
            .put(format!("{beta}/state/integration/{alpha_id}/secret"))
            .body(r#"{"token":"beta"}"#),
    );
    assert_eq!(overwrite.json()["kind"], "forbidden");
    let own = host.send(host.client().get(format!("{beta}/state/integration/self/secret")));
    assert_eq!(own.status, 404, "beta's own namespace does not hold alpha's state");

    let still = host.send(host.client().get(format!("{alpha}/state/integration/self/secret")));
    assert_eq!(still.json(), json!({"token": "alpha-only"}));
}

#[test]
fn state_must_be_a_json_object() {
    let host = two_probes();
    let answer = host.send(
        host.client()
            .put(format!("{}/state/integration/self/x", host.webhook_url("alpha")))
            .body("[1,2]"),
    );
    assert_eq!(answer.status, 422);
    assert_eq!(answer.json()["kind"], "invalid-input");
    assert!(answer.json()["message"].as_str().unwrap().contains("JSON object"));
}

#[test]
fn events_are_checked_against_their_schema() {
    let host = two_probes();
    let alpha = host.webhook_url("alpha");
    let good = host.post(&format!("{alpha}/event/thing"), r#"{"count":2}"#);
    assert_eq!(good.status, 200, "{}", good.body);
    assert_eq!(good.json()["type"], "probe:thing");

    let bad = host.post(&format!("{alpha}/event/thing"), r#"{"count":"two"}"#);
    assert_eq!(bad.status, 422, "the plugin got a typed error and chose its answer");
    assert_eq!(bad.json()["kind"], "invalid-input");
    assert!(
        bad.json()["message"].as_str().unwrap().contains("/count"),
        "{}",
        bad.body
    );

    let undeclared = host.post(&format!("{alpha}/event/other"), r#"{}"#);
    assert_eq!(undeclared.json()["kind"], "invalid-input");
    assert!(
        undeclared.json()["message"].as_str().unwrap().contains("not declared"),
        "{}",
        undeclared.body
    );

    let not_json = host.post(&format!("{alpha}/event/thing"), "{oops");
    assert_eq!(not_json.json()["kind"], "invalid-input");

    let events = host.events(None);
    assert_eq!(events.len(), 1, "only the valid event was stored: {events:?}");
    assert_eq!(events[0]["payload"], json!({"count": 2}));
}

#[test]
fn events_list_newest_first_by_page_and_type() {
    let host = two_probes();
    let alpha = host.webhook_url("alpha");
    for count in 0..5 {
        assert_eq!(
            host.post(&format!("{alpha}/event/thing"), &format!(r#"{{"count":{count}}}"#))
                .status,
            200
        );
    }
    let first = host.api_get("/v1/chat/events?pageSize=2").json();
    let counts: Vec<i64> = first["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [4, 3]);
    let token = first["meta"]["nextToken"].as_str().expect("more pages").to_string();
    let second = host
        .api_get(&format!("/v1/chat/events?pageSize=2&nextToken={token}"))
        .json();
    let counts: Vec<i64> = second["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["payload"]["count"].as_i64().unwrap())
        .collect();
    assert_eq!(counts, [2, 1]);
    assert_eq!(host.events(Some("probe:thing")).len(), 5);
    assert!(host.events(Some("webhook:event")).is_empty());
    assert_eq!(host.api_get("/v1/chat/events?nextToken=forged").status, 400);
    assert_eq!(host.api_get("/v1/chat/events/evt_nope").status, 404);
}

#[test]
fn the_api_needs_the_token() {
    let host = two_probes();
    let none = host.send(host.client().get(host.url("/v1/chat/events")));
    assert_eq!(none.status, 401);
    assert_eq!(none.json()["type"], "Unauthorized");
    let wrong = host.send(host.client().get(host.url("/v1/chat/events")).bearer_auth("nope"));
    assert_eq!(wrong.status, 401);
    let admin = host.send(host.client().get(host.url("/v1/admin/installations")));
    assert_eq!(admin.status, 401);
}
