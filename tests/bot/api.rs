//! The bot API's writes, black box: actions (input and output schemas, cost, plugin
//! errors), the bot's messages through `handle-message` (types, payload schemas, ack
//! tags), conversations, users, events and states, in the shapes of the Botpress chat
//! API. Uses the courier test plugin; the chat example has its own file.

use crate::harness::{Answer, Host, guest};
use serde_json::{Value, json};

fn host() -> Host {
    Host::builder()
        .plugin("courier", guest("courier"), None)
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"p\"\n"))
        .start()
}

fn call(host: &Host, action_type: &str, input: Value) -> Answer {
    host.api_post("/v1/chat/actions", &json!({ "type": action_type, "input": input }))
}

fn message(answer: &Answer) -> String {
    answer.json()["message"].as_str().unwrap_or_default().to_string()
}

fn conversation(host: &Host, topic: &str) -> Value {
    let answer = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "notes", "tags": { "topic": topic }, "integrationName": "courier" }),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["conversation"].clone()
}

fn bot_id(host: &Host) -> String {
    host.api_get("/v1/admin/installations").json()["bot"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn an_action_answers_its_output_and_cost() {
    let host = host();
    let answer = call(&host, "courier:echo", json!({ "text": "hi", "cost": 2.5 }));
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json(),
        json!({ "output": { "text": "hi" }, "meta": { "cached": false, "cost": 2.5 } })
    );
    let free = call(&host, "courier:echo", json!({ "text": "free" }));
    assert_eq!(free.json()["meta"]["cost"], 0.0);
}

#[test]
fn a_method_a_route_does_not_take_is_a_405_in_the_error_shape_with_allow() {
    let host = host();
    let answer = host.api_delete("/v1/chat/conversations");
    assert_eq!(answer.status, 405, "{}", answer.body);
    assert_eq!(answer.json()["type"], "MethodNotFound");
    assert!(message(&answer).contains("does not take DELETE"), "{}", answer.body);
    assert_eq!(answer.header("allow"), Some("GET,HEAD,POST"));
}

#[test]
fn a_body_over_the_api_limit_is_a_413_naming_it_and_nothing_is_stored() {
    let host = host();
    let conversation = conversation(&host, "large");
    let text = "x".repeat(3 << 20);
    let answer = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": conversation["id"], "type": "text", "payload": { "text": text }, "tags": {} }),
    );
    assert_eq!(answer.status, 413, "{}", answer.body);
    assert_eq!(answer.json()["type"], "PayloadTooLarge");
    assert!(message(&answer).contains("limit of 2097152 bytes"), "{}", answer.body);
    let listed = host.api_get(&format!(
        "/v1/chat/messages?conversationId={}",
        conversation["id"].as_str().unwrap()
    ));
    assert_eq!(listed.json()["messages"], json!([]), "{}", listed.body);
}

#[test]
fn bad_action_input_is_a_400_naming_the_field_and_the_plugin_does_not_run() {
    let host = host();
    let answer = call(&host, "courier:echo", json!({ "text": 5 }));
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(answer.json()["type"], "InvalidDataFormat");
    assert!(message(&answer).contains("/text"), "{}", answer.body);
    assert_eq!(answer.json()["code"], 400);
    assert!(answer.json()["id"].as_str().is_some());

    let missing = call(&host, "courier:echo", json!({}));
    assert_eq!(missing.status, 400);
    assert!(message(&missing).contains("text"), "{}", missing.body);

    let extra = call(&host, "courier:echo", json!({ "text": "x", "surprise": true }));
    assert_eq!(extra.status, 400);
    assert!(message(&extra).contains("surprise"), "{}", extra.body);
}

#[test]
fn unknown_actions_and_integrations_are_404() {
    let host = host();
    let unknown = call(&host, "courier:teleport", json!({}));
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.json()["type"], "ResourceNotFound");
    assert!(message(&unknown).contains("teleport"), "{}", unknown.body);
    assert!(
        message(&unknown).contains("echo"),
        "lists the declared actions: {}",
        unknown.body
    );

    let nobody = call(&host, "nobody:echo", json!({}));
    assert_eq!(nobody.status, 404, "{}", nobody.body);
    assert!(message(&nobody).contains("nobody"));

    let no_prefix = call(&host, "echo", json!({}));
    assert_eq!(no_prefix.status, 400, "{}", no_prefix.body);
    assert!(message(&no_prefix).contains("<integration>:<action>"));

    let no_body = host.send(
        host.client()
            .post(host.url("/v1/chat/actions"))
            .bearer_auth(crate::harness::API_TOKEN)
            .json(&json!({ "input": {} })),
    );
    assert_eq!(no_body.status, 400);
    assert!(message(&no_body).contains("type"), "{}", no_body.body);
}

#[test]
fn an_output_that_breaks_its_schema_is_a_500_naming_the_plugin_and_the_field() {
    let host = host();
    let answer = call(&host, "courier:broken", json!({}));
    assert_eq!(answer.status, 500, "{}", answer.body);
    assert_eq!(answer.json()["type"], "Runtime");
    let text = message(&answer);
    assert!(text.contains("courier"), "names the plugin: {text}");
    assert!(text.contains("/count"), "names the field: {text}");
    assert!(text.contains("output schema"), "{text}");
}

#[test]
fn plugin_errors_keep_their_kind() {
    let host = host();
    for (kind, status) in [
        ("invalid-input", 400),
        ("not-found", 404),
        ("forbidden", 403),
        ("upstream", 502),
        ("internal", 500),
    ] {
        let answer = call(&host, "courier:fail", json!({ "kind": kind }));
        assert_eq!(answer.status, status, "[{kind}] {}", answer.body);
        assert!(
            message(&answer).contains(&format!("failing as asked: {kind}")),
            "[{kind}] {}",
            answer.body
        );
    }
}

#[test]
fn an_action_can_be_named_by_installation() {
    let host = Host::builder()
        .plugin("first", guest("courier"), None)
        .plugin("second", guest("courier"), None)
        .start();
    let ambiguous = call(&host, "courier:echo", json!({ "text": "x" }));
    assert_eq!(ambiguous.status, 400, "{}", ambiguous.body);
    assert!(message(&ambiguous).contains("first"), "{}", ambiguous.body);
    let named = call(&host, "second:echo", json!({ "text": "x" }));
    assert_eq!(named.status, 200, "{}", named.body);
}

#[test]
fn a_bot_message_is_delivered_and_stored_with_the_ack_tags() {
    let host = host();
    let conversation = conversation(&host, "groceries");
    let bot = bot_id(&host);
    let answer = host.api_post(
        "/v1/chat/messages",
        &json!({
            "conversationId": conversation["id"], "userId": bot, "type": "note",
            "payload": { "text": "milk", "ack": { "noteId": "n-1" } }, "tags": {}
        }),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let stored = answer.json()["message"].clone();
    assert_eq!(stored["tags"], json!({ "noteId": "n-1" }));
    assert_eq!(stored["direction"], "outgoing");
    assert_eq!(stored["type"], "note");
    assert_eq!(stored["conversationId"], conversation["id"]);
    let bot_user = host.api_get("/v1/admin/installations").json()["bot"]["userId"].clone();
    assert_eq!(stored["userId"], bot_user, "the bot's id stands for its user");

    let fetched = host.api_get(&format!("/v1/chat/messages/{}", stored["id"].as_str().unwrap()));
    assert_eq!(fetched.json()["message"], stored);
    let by_tag = host.api_get("/v1/chat/messages?tags.noteId=n-1");
    assert_eq!(by_tag.json()["messages"].as_array().unwrap().len(), 1);
    let counted = host.api_get(&format!(
        "/v1/chat/conversations/{}",
        conversation["id"].as_str().unwrap()
    ));
    assert_eq!(counted.json()["conversation"]["messageCount"], 1);
}

#[test]
fn a_bot_message_that_breaks_the_channel_rules_is_a_400_and_nothing_is_stored() {
    let host = host();
    let conversation = conversation(&host, "rules");
    let bot = bot_id(&host);
    let send = |message_type: &str, payload: Value, tags: Value| {
        host.api_post(
            "/v1/chat/messages",
            &json!({ "conversationId": conversation["id"], "userId": bot, "type": message_type, "payload": payload, "tags": tags }),
        )
    };
    let undeclared = send("video", json!({ "url": "x" }), json!({}));
    assert_eq!(undeclared.status, 400, "{}", undeclared.body);
    assert!(message(&undeclared).contains("video"), "{}", undeclared.body);
    assert!(
        message(&undeclared).contains("note"),
        "lists the declared types: {}",
        undeclared.body
    );

    let bad_payload = send("note", json!({ "text": 7 }), json!({}));
    assert_eq!(bad_payload.status, 400, "{}", bad_payload.body);
    assert_eq!(bad_payload.json()["type"], "InvalidDataFormat");
    assert!(message(&bad_payload).contains("/text"), "{}", bad_payload.body);

    let bad_tag = send("note", json!({ "text": "x" }), json!({ "mood": "happy" }));
    assert_eq!(bad_tag.status, 400, "{}", bad_tag.body);
    assert!(message(&bad_tag).contains("mood"), "{}", bad_tag.body);

    let no_conversation = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": "conv_nope", "userId": bot, "type": "note", "payload": { "text": "x" }, "tags": {} }),
    );
    assert_eq!(no_conversation.status, 400, "{}", no_conversation.body);
    assert_eq!(no_conversation.json()["type"], "ReferenceNotFound");

    let valid = send("note", json!({ "text": "x" }), json!({}));
    assert_eq!(valid.status, 200, "a valid one still works: {}", valid.body);
    let nobody = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": conversation["id"], "userId": "user_nope", "type": "note", "payload": { "text": "x" }, "tags": {} }),
    );
    assert_eq!(nobody.status, 400, "{}", nobody.body);
    assert!(message(&nobody).contains("user_nope"));

    let all = host.api_get(&format!(
        "/v1/chat/messages?conversationId={}",
        conversation["id"].as_str().unwrap()
    ));
    assert_eq!(
        all.json()["messages"].as_array().unwrap().len(),
        1,
        "only the valid one: {}",
        all.body
    );
}

#[test]
fn a_failed_delivery_stores_nothing_and_says_why() {
    let host = host();
    let conversation = conversation(&host, "failing");
    let bot = bot_id(&host);
    let upstream = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": conversation["id"], "userId": bot, "type": "note", "payload": { "text": "x", "fail": "upstream" }, "tags": {} }),
    );
    assert_eq!(upstream.status, 502, "{}", upstream.body);
    assert!(
        message(&upstream).contains("did not take the note"),
        "{}",
        upstream.body
    );

    let undeclared_ack = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": conversation["id"], "userId": bot, "type": "note", "payload": { "text": "x", "ack": { "bogus": "1" } }, "tags": {} }),
    );
    assert_eq!(undeclared_ack.status, 500, "{}", undeclared_ack.body);
    assert!(message(&undeclared_ack).contains("bogus"), "{}", undeclared_ack.body);

    let all = host.api_get(&format!(
        "/v1/chat/messages?conversationId={}",
        conversation["id"].as_str().unwrap()
    ));
    assert!(all.json()["messages"].as_array().unwrap().is_empty(), "{}", all.body);
}

#[test]
fn a_message_in_a_conversation_whose_installation_was_removed_is_a_404_saying_so() {
    let host = host();
    let conversation = conversation(&host, "orphaned");
    let id = conversation["id"].as_str().unwrap();
    let removed = host.api_delete("/v1/admin/plugins/courier");
    assert_eq!(removed.status, 204, "{}", removed.body);

    let answer = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": id, "userId": bot_id(&host), "type": "note", "payload": { "text": "x" }, "tags": {} }),
    );
    // ResourceNotFound is an error @botpress/client knows (a 503 `Unavailable` it does not).
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.json()["type"], "ResourceNotFound");
    assert!(message(&answer).contains(id), "{}", answer.body);
    assert!(message(&answer).contains("courier"), "{}", answer.body);
    assert!(message(&answer).contains("not installed"), "{}", answer.body);
    assert_eq!(
        host.api_get(&format!("/v1/chat/conversations/{id}")).status,
        200,
        "the conversation itself stays"
    );
    let stored = host.api_get(&format!("/v1/chat/messages?conversationId={id}"));
    assert!(
        stored.json()["messages"].as_array().unwrap().is_empty(),
        "{}",
        stored.body
    );
}

#[test]
fn a_message_can_be_updated_within_its_channel_rules() {
    let host = host();
    let conversation = conversation(&host, "edits");
    let sent = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": conversation["id"], "userId": bot_id(&host), "type": "note", "payload": { "text": "draft", "ack": { "noteId": "n-9" } }, "tags": {} }),
    );
    let id = sent.json()["message"]["id"].as_str().unwrap().to_string();
    let path = format!("/v1/chat/messages/{id}");
    let updated = host.send(
        host.client()
            .put(host.url(&path))
            .bearer_auth(crate::harness::API_TOKEN)
            .json(&json!({ "payload": { "text": "final" }, "tags": { "noteId": null } })),
    );
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.json()["message"]["payload"], json!({ "text": "final" }));
    assert_eq!(updated.json()["message"]["tags"], json!({}));
    assert_eq!(host.api_get(&path).json()["message"]["payload"]["text"], "final");

    let bad = host.send(
        host.client()
            .put(host.url(&path))
            .bearer_auth(crate::harness::API_TOKEN)
            .json(&json!({ "payload": { "text": [] } })),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let missing = host.send(
        host.client()
            .put(host.url("/v1/chat/messages/msg_nope"))
            .bearer_auth(crate::harness::API_TOKEN)
            .json(&json!({ "tags": {} })),
    );
    assert_eq!(missing.status, 404);
}

#[test]
fn conversations_and_users_are_got_or_created_by_tags() {
    let host = host();
    let first = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "notes", "tags": { "topic": "a" } }),
    );
    assert_eq!(
        first.status, 200,
        "the only installation declaring the channel: {}",
        first.body
    );
    assert_eq!(first.json()["meta"]["created"], true);
    assert_eq!(first.json()["conversation"]["integration"], "courier");
    assert_eq!(first.json()["conversation"]["channel"], "notes");
    let again = host.send(
        host.client()
            .post(host.url("/v1/chat/conversations/get-or-create"))
            .bearer_auth(crate::harness::API_TOKEN)
            .header("x-integration-id", "courier")
            .header("x-bot-id", "any-bot")
            .json(&json!({ "channel": "notes", "tags": { "topic": "a" } })),
    );
    assert_eq!(again.json()["meta"]["created"], false);
    assert_eq!(again.json()["conversation"]["id"], first.json()["conversation"]["id"]);

    let undeclared = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "notes", "tags": { "colour": "red" }, "integrationName": "courier" }),
    );
    assert_eq!(undeclared.status, 400, "{}", undeclared.body);
    assert!(message(&undeclared).contains("colour"));
    let no_channel = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "sms", "tags": { "topic": "a" }, "integrationName": "courier" }),
    );
    assert_eq!(no_channel.status, 400, "{}", no_channel.body);
    assert!(message(&no_channel).contains("sms"));

    let user = host.api_post(
        "/v1/chat/users/get-or-create",
        &json!({ "tags": { "name": "ada" }, "integrationName": "courier", "name": "Ada" }),
    );
    assert_eq!(user.status, 200, "{}", user.body);
    assert_eq!(user.json()["meta"]["created"], true);
    assert_eq!(user.json()["user"]["name"], "Ada");
    let bot_user = host.api_post(
        "/v1/chat/users/get-or-create",
        &json!({ "tags": { "anything": "goes" } }),
    );
    assert_eq!(
        bot_user.status, 200,
        "a user of the bot takes any tags: {}",
        bot_user.body
    );
    assert!(bot_user.json()["user"].get("integrationId").is_none());
    let listed = host.api_get("/v1/chat/users?tags.name=ada");
    assert_eq!(listed.json()["users"].as_array().unwrap().len(), 1, "{}", listed.body);
    let bad_tag = host.api_post(
        "/v1/chat/users/get-or-create",
        &json!({ "tags": { "shoeSize": "9" }, "integrationName": "courier" }),
    );
    assert_eq!(bad_tag.status, 400, "{}", bad_tag.body);
}

#[test]
fn list_routes_take_the_query_parameters_they_honour_and_refuse_the_others_by_name() {
    let host = host();
    let conversation = conversation(&host, "guests");
    let id = conversation["id"].as_str().unwrap();
    for guest in ["g1", "g2", "g3"] {
        let user = host.api_post("/v1/chat/users", &json!({ "tags": { "guest": guest } }));
        assert_eq!(user.status, 200, "{}", user.body);
        let added = host.api_post(
            &format!("/v1/chat/conversations/{id}/participants"),
            &json!({ "userId": user.json()["user"]["id"] }),
        );
        assert_eq!(added.status, 200, "{}", added.body);
    }
    let participants = format!("/v1/chat/conversations/{id}/participants");
    let first = host.api_get(&format!("{participants}?pageSize=2"));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["participants"].as_array().unwrap().len(), 2);
    let token = first.json()["meta"]["nextToken"].as_str().unwrap().to_string();
    let second = host.api_get(&format!("{participants}?pageSize=2&nextToken={token}"));
    assert_eq!(
        second.json()["participants"].as_array().unwrap().len(),
        1,
        "{}",
        second.body
    );

    // Botpress's listParticipants takes nextToken and pageSize alone; each list route takes
    // what Botpress takes there and sluice honours.
    for (path, parameter) in [
        (format!("{participants}?sortField=createdAt"), "sortField"),
        (format!("{participants}?sortDirection=asc"), "sortDirection"),
        (format!("{participants}?tags.guest=g1"), "tags.guest"),
        (format!("{participants}?conversationId={id}"), "conversationId"),
        (
            "/v1/chat/conversations?conversationId=conv_1".to_string(),
            "conversationId",
        ),
        ("/v1/chat/users?integrationName=courier".to_string(), "integrationName"),
        ("/v1/chat/messages?channel=notes".to_string(), "channel"),
        ("/v1/chat/messages?sortDirection=asc".to_string(), "sortDirection"),
        ("/v1/chat/users?afterDate=2024-01-01".to_string(), "afterDate"),
        ("/v1/chat/conversations?colour=blue".to_string(), "colour"),
        ("/v1/chat/events?workflowId=wf_1".to_string(), "workflowId"),
        ("/v1/chat/events?colour=blue".to_string(), "colour"),
    ] {
        let refused = host.api_get(&path);
        assert_eq!(refused.status, 400, "{path}: {}", refused.body);
        assert_eq!(refused.json()["type"], "InvalidQuery", "{path}");
        assert!(message(&refused).contains(parameter), "{path}: {}", refused.body);
    }
    let refused = host.api_get(&format!("{participants}?sortField=createdAt"));
    assert!(
        message(&refused).contains("nextToken, pageSize"),
        "says what it takes: {}",
        refused.body
    );
}

#[test]
fn discriminating_tags_find_a_conversation_by_some_of_its_tags() {
    let host = host();
    let first = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "notes", "tags": { "topic": "t1" }, "integrationName": "courier" }),
    );
    let found = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "notes", "tags": { "topic": "t1" }, "integrationName": "courier", "discriminateByTags": ["topic"] }),
    );
    assert_eq!(found.json()["conversation"]["id"], first.json()["conversation"]["id"]);
    let wrong = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "notes", "tags": { "topic": "t1" }, "integrationName": "courier", "discriminateByTags": ["other"] }),
    );
    assert_eq!(wrong.status, 400, "{}", wrong.body);
}

#[test]
fn the_bot_creates_events_checked_against_integration_schemas() {
    let host = host();
    let created = host.api_post(
        "/v1/chat/events",
        &json!({ "type": "order:placed", "payload": { "total": 12 } }),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let event = created.json()["event"].clone();
    assert_eq!(event["type"], "order:placed");
    assert_eq!(event["payload"], json!({ "total": 12 }));
    let fetched = host.api_get(&format!("/v1/chat/events/{}", event["id"].as_str().unwrap()));
    assert_eq!(fetched.json()["event"], event);
    let listed = host.api_get("/v1/chat/events?type=order:placed");
    assert_eq!(listed.json()["events"][0]["id"], event["id"]);

    let integration_event = host.api_post(
        "/v1/chat/events",
        &json!({ "type": "probe:thing", "payload": { "count": "x" } }),
    );
    assert_eq!(integration_event.status, 400, "{}", integration_event.body);
    assert!(
        message(&integration_event).contains("/count"),
        "{}",
        integration_event.body
    );
    let undeclared = host.api_post("/v1/chat/events", &json!({ "type": "probe:other", "payload": {} }));
    assert_eq!(undeclared.status, 400, "{}", undeclared.body);
    let dangling = host.api_post(
        "/v1/chat/events",
        &json!({ "type": "order:placed", "payload": {}, "conversationId": "conv_nope" }),
    );
    assert_eq!(dangling.status, 400);
    assert_eq!(dangling.json()["type"], "ReferenceNotFound");
    let scheduled = host.api_post(
        "/v1/chat/events",
        &json!({ "type": "order:placed", "payload": {}, "schedule": { "delay": 1000 } }),
    );
    assert_eq!(scheduled.status, 400);
    assert!(message(&scheduled).contains("schedule"));
}

#[test]
fn states_can_be_got_or_set_and_patched() {
    let host = host();
    let bot = bot_id(&host);
    let path = format!("/v1/chat/states/bot/{bot}/settings");
    let first = host.api_post(&format!("{path}/get-or-set"), &json!({ "payload": { "a": 1, "b": 2 } }));
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.json()["state"]["payload"], json!({ "a": 1, "b": 2 }));
    assert_eq!(first.json()["meta"]["cached"], false);
    let kept = host.api_post(&format!("{path}/get-or-set"), &json!({ "payload": { "other": true } }));
    assert_eq!(
        kept.json()["state"]["payload"],
        json!({ "a": 1, "b": 2 }),
        "an existing state is kept"
    );

    let patched = host.send(
        host.client()
            .patch(host.url(&path))
            .bearer_auth(crate::harness::API_TOKEN)
            .json(&json!({ "payload": { "b": null, "c": "three" } })),
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.json()["state"]["payload"], json!({ "a": 1, "c": "three" }));
    let read = host.api_get(&path);
    assert_eq!(read.json()["state"]["payload"], json!({ "a": 1, "c": "three" }));
    assert_eq!(read.json()["meta"]["cached"], false);

    let missing = host.send(
        host.client()
            .patch(host.url(&format!("/v1/chat/states/bot/{bot}/nothing")))
            .bearer_auth(crate::harness::API_TOKEN)
            .json(&json!({ "payload": { "x": 1 } })),
    );
    assert_eq!(missing.status, 404);
    let expiring = host.api_post(&path, &json!({ "payload": { "x": 1 }, "expiry": 1000 }));
    assert_eq!(expiring.status, 400);
    assert!(message(&expiring).contains("expiry"));
}

#[test]
fn a_state_the_plugin_declares_is_checked_against_its_schema_and_a_refusal_keeps_it() {
    let host = host();
    let conversation_id = conversation(&host, "progress")["id"].as_str().unwrap().to_string();
    let path = format!("/v1/chat/states/conversation/{conversation_id}/progress");
    let patch = |payload: Value| {
        host.send(
            host.client()
                .patch(host.url(&path))
                .bearer_auth(crate::harness::API_TOKEN)
                .json(&json!({ "payload": payload })),
        )
    };

    for (what, payload) in [
        ("a missing required field", json!({ "note": "no step" })),
        ("a field of the wrong type", json!({ "step": "first" })),
    ] {
        for route in [path.clone(), format!("{path}/get-or-set")] {
            let refused = host.api_post(&route, &json!({ "payload": payload }));
            assert_eq!(refused.status, 400, "{what} at {route}: {}", refused.body);
            assert_eq!(refused.json()["type"], "InvalidDataFormat");
            assert!(
                message(&refused).contains("state progress does not match its schema in integration courier"),
                "{}",
                refused.body
            );
        }
    }
    assert_eq!(host.api_get(&path).status, 404, "nothing was stored");

    let set = host.api_post(&path, &json!({ "payload": { "step": 1 } }));
    assert_eq!(set.status, 200, "{}", set.body);
    // A patch is checked as the state it would make: removing `step` is refused.
    let refused = patch(json!({ "step": null, "note": "lost" }));
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(message(&refused).contains("step"), "{}", refused.body);
    assert_eq!(
        host.api_get(&path).json()["state"]["payload"],
        json!({ "step": 1 }),
        "the state is kept"
    );
    let moved = patch(json!({ "step": 2, "note": "ok" }));
    assert_eq!(moved.status, 200, "{}", moved.body);
    assert_eq!(
        host.api_get(&path).json()["state"]["payload"],
        json!({ "step": 2, "note": "ok" })
    );

    // A state the plugin does not declare takes any object.
    let free = host.api_post(
        &format!("/v1/chat/states/conversation/{conversation_id}/scratch"),
        &json!({ "payload": { "anything": [1, "two"] } }),
    );
    assert_eq!(free.status, 200, "{}", free.body);
}
