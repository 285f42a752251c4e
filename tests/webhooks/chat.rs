//! The Slack-like chat example (guest-examples/chat) against a fake platform on
//! loopback: register and unregister on the platform, signed webhooks (constant time,
//! no replays), url_verification, incoming messages and reactions, the bot's text and
//! image messages through `handle-message`, and the `sendMessage` action.

use std::time::Duration;

use crate::harness::fake_platform::{
    CHAT_BOT_TOKEN, CHAT_SIGNING_SECRET, FakePlatform, chat_sidecar, chat_signature, post_signed_chat,
    post_signed_chat_text, unix_now,
};
use crate::harness::{Answer, Host, guest, small_records_body};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(10);

fn chat_host(platform: &FakePlatform) -> Host {
    Host::builder()
        .plugin(
            "chat",
            guest("chat"),
            Some(&chat_sidecar(platform, &["http://127.0.0.1:*"], None)),
        )
        .start()
}

fn bot_id(host: &Host) -> String {
    host.api_get("/v1/admin/installations").json()["bot"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn message_event(channel: &str, user: &str, text: &str, ts: &str) -> Value {
    json!({
        "type": "event_callback",
        "event": { "type": "message", "channel": channel, "user": user, "text": text, "ts": ts }
    })
}

fn conversation(host: &Host, channel_id: &str) -> Value {
    let answer = host.api_post(
        "/v1/chat/conversations/get-or-create",
        &json!({ "channel": "channel", "tags": { "channelId": channel_id }, "integrationName": "chat" }),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["conversation"].clone()
}

fn send(host: &Host, conversation: &Value, message_type: &str, payload: Value, tags: Value) -> Answer {
    host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": conversation["id"], "userId": bot_id(host), "type": message_type, "payload": payload, "tags": tags }),
    )
}

#[test]
fn register_creates_the_platform_webhook_and_keeps_its_id() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let installation = host.installation("chat");
    assert_eq!(installation["status"], "active", "{installation}");
    let created = platform.calls("webhooks.create");
    assert_eq!(created.len(), 1, "{:?}", platform.requests());
    assert_eq!(created[0].body["url"], host.webhook_url("chat"));
    assert_eq!(
        created[0].headers["authorization"],
        format!("Bearer {CHAT_BOT_TOKEN}"),
        "the bot token authenticates the call"
    );
    let state = host.api_get(&format!(
        "/v1/chat/states/integration/{}/webhook",
        installation["id"].as_str().unwrap()
    ));
    assert_eq!(state.status, 200, "{}", state.body);
    assert_eq!(state.json()["state"]["payload"], json!({ "webhookId": "W0001" }));
}

#[test]
fn unregister_disables_the_webhook_it_registered() {
    let platform = FakePlatform::start();
    let mut host = chat_host(&platform);
    assert_eq!(host.installation("chat")["status"], "active");
    assert_eq!(host.stop().code(), Some(0), "{}", host.output.text());
    std::fs::remove_file(host.plugins.join("chat.wasm")).unwrap();
    host.start_again();
    let updates = platform.wait_for_calls("webhooks.update", 1, WAIT);
    assert_eq!(updates.len(), 1, "unregister ran:\n{}", host.output.text());
    assert_eq!(updates[0].body, json!({ "id": "W0001", "enabled": false }));
}

#[test]
fn url_verification_is_answered_with_its_challenge() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let answer = post_signed_chat(
        &host,
        &host.webhook_url("chat"),
        &json!({ "type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" }),
        unix_now(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
}

#[test]
fn bad_signatures_and_old_timestamps_are_refused() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let url = host.webhook_url("chat");
    let body = message_event("C1", "U1", "hello", "1.1").to_string();
    let post = |timestamp: i64, signature: &str| {
        host.send(
            host.client()
                .post(&url)
                .header("x-slack-request-timestamp", timestamp.to_string())
                .header("x-slack-signature", signature)
                .body(body.clone()),
        )
    };
    let now = unix_now();
    let wrong_secret = post(now, &chat_signature("guess", now, &body));
    assert_eq!(wrong_secret.status, 401, "{}", wrong_secret.body);
    let other_body = post(now, &chat_signature(CHAT_SIGNING_SECRET, now, "{}"));
    assert_eq!(other_body.status, 401);
    let replayed = post(now - 301, &chat_signature(CHAT_SIGNING_SECRET, now - 301, &body));
    assert_eq!(replayed.status, 401, "a captured request cannot be replayed later");
    assert!(replayed.body.contains("5 minutes"), "{}", replayed.body);
    let future = post(now + 400, &chat_signature(CHAT_SIGNING_SECRET, now + 400, &body));
    assert_eq!(future.status, 401);
    let unsigned = host.post(&url, &body);
    assert_eq!(unsigned.status, 401);
    let messages = host.api_get("/v1/chat/messages");
    assert!(
        messages.json()["messages"].as_array().unwrap().is_empty(),
        "{}",
        messages.body
    );

    let recent = post(now - 200, &chat_signature(CHAT_SIGNING_SECRET, now - 200, &body));
    assert_eq!(recent.status, 200, "within 5 minutes is fine: {}", recent.body);
}

#[test]
fn an_incoming_message_becomes_a_conversation_a_user_and_a_message() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let url = host.webhook_url("chat");
    let answer = post_signed_chat(
        &host,
        &url,
        &message_event("C024BE91L", "U2147483697", "Hello bot", "1355517523.000005"),
        unix_now(),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);

    let conversations = host.api_get("/v1/chat/conversations?tags.channelId=C024BE91L").json();
    let conversations = conversations["conversations"].as_array().unwrap();
    assert_eq!(conversations.len(), 1);
    assert_eq!(conversations[0]["channel"], "channel");
    assert_eq!(conversations[0]["integration"], "chat");
    let users = host.api_get("/v1/chat/users?tags.userId=U2147483697").json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
    let messages = host
        .api_get("/v1/chat/messages?tags.messageId=1355517523.000005")
        .json();
    let message = &messages["messages"][0];
    assert_eq!(message["type"], "text");
    assert_eq!(message["payload"], json!({ "text": "Hello bot" }));
    assert_eq!(message["direction"], "incoming");
    assert_eq!(message["conversationId"], conversations[0]["id"]);
    assert_eq!(message["userId"], users["users"][0]["id"]);

    let second = post_signed_chat(
        &host,
        &url,
        &message_event("C024BE91L", "U2147483697", "again", "1355517524.000001"),
        unix_now(),
    );
    assert_eq!(second.status, 200);
    let conversation = host.api_get(&format!(
        "/v1/chat/conversations/{}",
        conversations[0]["id"].as_str().unwrap()
    ));
    assert_eq!(
        conversation.json()["conversation"]["messageCount"],
        2,
        "the same conversation"
    );
}

#[test]
fn a_message_of_many_small_records_at_the_default_body_limit_is_recorded() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    // Rich text arrives as blocks of small records beside the text.
    let body = small_records_body(
        r#"{"type":"event_callback","event_id":"Ev0BIG","event":{"type":"message","channel":"C9","user":"U9","text":"big","ts":"1700000009.000900","blocks":"#,
        "}}",
        2 << 20,
    );
    let answer = post_signed_chat_text(&host, &host.webhook_url("chat"), &body, unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    let messages = host
        .api_get("/v1/chat/messages?tags.messageId=1700000009.000900")
        .json();
    assert_eq!(
        messages["messages"][0]["payload"],
        json!({ "text": "big" }),
        "{messages}"
    );
}

#[test]
fn messages_from_bots_are_ignored() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let mut event = message_event("C1", "U1", "I am a bot", "1.2");
    event["event"]["bot_id"] = json!("B123");
    let answer = post_signed_chat(&host, &host.webhook_url("chat"), &event, unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        host.api_get("/v1/chat/messages").json()["messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(
        host.api_get("/v1/chat/conversations").json()["conversations"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_reaction_becomes_an_event_linked_to_its_conversation_and_user() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let reaction = json!({
        "type": "event_callback",
        "event": { "type": "reaction_added", "user": "U7", "reaction": "thumbsup", "item": { "type": "message", "channel": "C9", "ts": "1.5" } }
    });
    let answer = post_signed_chat(&host, &host.webhook_url("chat"), &reaction, unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    let events = host.events(Some("chat:reactionAdded"));
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0]["payload"],
        json!({ "reaction": "thumbsup", "channelId": "C9", "userId": "U7", "messageId": "1.5" })
    );
    let conversation = host.api_get("/v1/chat/conversations?tags.channelId=C9").json();
    assert_eq!(events[0]["conversationId"], conversation["conversations"][0]["id"]);
}

#[test]
fn the_bots_text_and_image_messages_reach_the_platform_and_come_back_with_its_id() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let conversation = conversation(&host, "C55");

    let text = send(
        &host,
        &conversation,
        "text",
        json!({ "text": "Hello from the bot" }),
        json!({}),
    );
    assert_eq!(text.status, 200, "{}", text.body);
    let posts = platform.calls("chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body, json!({ "channel": "C55", "text": "Hello from the bot" }));
    assert_eq!(posts[0].headers["authorization"], format!("Bearer {CHAT_BOT_TOKEN}"));
    let ts = text.json()["message"]["tags"]["messageId"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(ts.starts_with("1700000000."), "the platform's id: {ts}");

    let image = send(
        &host,
        &conversation,
        "image",
        json!({ "imageUrl": "https://example.com/cat.png", "caption": "A cat" }),
        json!({ "threadId": ts }),
    );
    assert_eq!(image.status, 200, "{}", image.body);
    let posts = platform.calls("chat.postMessage");
    assert_eq!(
        posts[1].body,
        json!({ "channel": "C55", "text": "A cat", "attachments": [{ "image_url": "https://example.com/cat.png" }], "thread_ts": ts })
    );
    let stored = image.json()["message"].clone();
    assert_eq!(stored["tags"]["threadId"], ts);
    assert_ne!(stored["tags"]["messageId"], ts);
    let listed = host.api_get(&format!(
        "/v1/chat/messages?conversationId={}",
        conversation["id"].as_str().unwrap()
    ));
    assert_eq!(listed.json()["messages"].as_array().unwrap().len(), 2);
}

#[test]
fn a_message_the_channel_does_not_take_never_reaches_the_plugin() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let conversation = conversation(&host, "C56");
    let video = send(
        &host,
        &conversation,
        "video",
        json!({ "url": "https://example.com/v.mp4" }),
        json!({}),
    );
    assert_eq!(video.status, 400, "{}", video.body);
    let message = video.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("video") && message.contains("image, text"),
        "{message}"
    );
    let empty = send(&host, &conversation, "text", json!({ "text": "" }), json!({}));
    assert_eq!(empty.status, 400, "{}", empty.body);
    assert!(
        empty.json()["message"].as_str().unwrap().contains("/text"),
        "{}",
        empty.body
    );
    let no_url = send(&host, &conversation, "image", json!({ "caption": "where?" }), json!({}));
    assert_eq!(no_url.status, 400, "{}", no_url.body);
    assert!(
        no_url.json()["message"].as_str().unwrap().contains("imageUrl"),
        "{}",
        no_url.body
    );
    assert!(
        platform.calls("chat.postMessage").is_empty(),
        "the plugin was not called"
    );
}

#[test]
fn a_platform_that_refuses_a_message_is_an_upstream_error_and_nothing_is_stored() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let conversation = conversation(&host, "C57");
    platform.refuse_with(Some("channel_not_found"));
    let answer = send(&host, &conversation, "text", json!({ "text": "anyone?" }), json!({}));
    assert_eq!(answer.status, 502, "{}", answer.body);
    assert!(answer.body.contains("channel_not_found"), "{}", answer.body);
    let listed = host.api_get(&format!(
        "/v1/chat/messages?conversationId={}",
        conversation["id"].as_str().unwrap()
    ));
    assert!(listed.json()["messages"].as_array().unwrap().is_empty());
}

#[test]
fn send_message_answers_the_message_id_and_costs_one() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let answer = host.api_post(
        "/v1/chat/actions",
        &json!({ "type": "chat:sendMessage", "input": { "channelId": "C77", "text": "ping" } }),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let ts = platform.calls("chat.postMessage")[0].body.clone();
    assert_eq!(ts, json!({ "channel": "C77", "text": "ping" }));
    let output = &answer.json()["output"];
    assert!(output["messageId"].as_str().unwrap().starts_with("1700000000."));
    assert_eq!(output["timestamp"], output["messageId"]);
    assert_eq!(answer.json()["meta"]["cost"], 1.0);

    let bad = host.api_post(
        "/v1/chat/actions",
        &json!({ "type": "chat:sendMessage", "input": { "channelId": "C77" } }),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(bad.json()["message"].as_str().unwrap().contains("text"));
    assert_eq!(
        platform.calls("chat.postMessage").len(),
        1,
        "bad input never reaches the platform"
    );
}

#[test]
fn a_platform_host_that_is_not_allowed_fails_register_with_a_clear_status() {
    let platform = FakePlatform::start();
    let host = Host::builder()
        .plugin(
            "chat",
            guest("chat"),
            Some(&chat_sidecar(&platform, &["https://slack.com"], None)),
        )
        .start();
    let installation = host.installation("chat");
    assert_eq!(installation["status"], "register-failed", "{installation}");
    let problem = installation["problems"][0].as_str().unwrap();
    assert!(
        problem.contains("HttpRequestDenied"),
        "the plugin's error is surfaced: {problem}"
    );
    assert!(
        platform.requests().is_empty(),
        "the platform got nothing: {:?}",
        platform.requests()
    );

    let action = host.api_post(
        "/v1/chat/actions",
        &json!({ "type": "chat:sendMessage", "input": { "channelId": "C1", "text": "x" } }),
    );
    assert_eq!(action.status, 503, "{}", action.body);
    assert!(action.body.contains("register failed"), "{}", action.body);
    assert!(platform.requests().is_empty());
}

#[test]
fn an_unreachable_platform_fails_register_with_a_clear_status() {
    // Nothing listens on port 1.
    let sidecar = format!(
        "allowed-hosts = [\"http://127.0.0.1:*\"]\n[configuration]\napiUrl = \"http://127.0.0.1:1/api\"\nsigningSecret = {CHAT_SIGNING_SECRET:?}\nbotToken = {CHAT_BOT_TOKEN:?}\n"
    );
    let host = Host::builder().plugin("chat", guest("chat"), Some(&sidecar)).start();
    let installation = host.installation("chat");
    assert_eq!(installation["status"], "register-failed", "{installation}");
    let problem = installation["problems"][0].as_str().unwrap();
    assert!(problem.contains("cannot reach the platform"), "{problem}");
    // Refused, or reset where the sandbox's network answers port 1 that way.
    assert!(
        problem.contains("connection refused") || problem.contains("connection reset"),
        "says why: {problem}"
    );
    assert!(problem.contains("apiUrl"), "says what to check: {problem}");
}

#[test]
fn a_retried_event_is_recorded_once() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let url = host.webhook_url("chat");
    let mut message = message_event("C1", "U1", "only once", "1.7");
    message["event_id"] = json!("Ev0MESSAGE1");
    let mut reaction = json!({
        "type": "event_callback",
        "event_id": "Ev0REACTION1",
        "event": { "type": "reaction_added", "user": "U1", "reaction": "eyes", "item": { "type": "message", "channel": "C1", "ts": "1.7" } }
    });
    // The platform sends each event again when it did not see a 2xx in time.
    for _attempt in 0..3 {
        let answer = post_signed_chat(&host, &url, &message, unix_now());
        assert_eq!(answer.status, 200, "{}", answer.body);
        let answer = post_signed_chat(&host, &url, &reaction, unix_now());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    let messages = host.api_get("/v1/chat/messages").json();
    assert_eq!(messages["messages"].as_array().unwrap().len(), 1, "{messages}");
    assert_eq!(host.events(Some("chat:reactionAdded")).len(), 1);

    reaction["event_id"] = json!("Ev0REACTION2");
    let answer = post_signed_chat(&host, &url, &reaction, unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        host.events(Some("chat:reactionAdded")).len(),
        2,
        "another event id is another event"
    );
}

#[test]
fn a_shared_file_becomes_a_file_message_and_a_thread_broadcast_a_message() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let url = host.webhook_url("chat");
    let file_share = json!({
        "type": "event_callback",
        "event_id": "Ev0FILE",
        "event": {
            "type": "message", "subtype": "file_share", "channel": "C3", "user": "U3",
            "text": "the report", "ts": "1700000001.000100",
            "files": [{
                "id": "F0123", "name": "report.pdf", "title": "Q3 report", "mimetype": "application/pdf",
                "url_private": "https://files.slack.com/files-pri/T1-F0123/report.pdf",
                "permalink": "https://acme.slack.com/files/U3/F0123/report.pdf"
            }],
            "upload": false, "display_as_bot": false
        }
    });
    let answer = post_signed_chat(&host, &url, &file_share, unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    let messages = host
        .api_get("/v1/chat/messages?tags.messageId=1700000001.000100")
        .json();
    let file = &messages["messages"][0];
    assert_eq!(file["type"], "file", "{messages}");
    assert_eq!(
        file["payload"],
        json!({
            "fileUrl": "https://files.slack.com/files-pri/T1-F0123/report.pdf",
            "name": "report.pdf",
            "mimeType": "application/pdf",
            "title": "Q3 report",
            "text": "the report"
        })
    );

    let broadcast = json!({
        "type": "event_callback",
        "event_id": "Ev0BROADCAST",
        "event": {
            "type": "message", "subtype": "thread_broadcast", "channel": "C3", "user": "U3",
            "text": "also in the channel", "ts": "1700000002.000200", "thread_ts": "1700000001.000100"
        }
    });
    let answer = post_signed_chat(&host, &url, &broadcast, unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    let messages = host
        .api_get("/v1/chat/messages?tags.messageId=1700000002.000200")
        .json();
    let reply = &messages["messages"][0];
    assert_eq!(reply["type"], "text", "{messages}");
    assert_eq!(reply["payload"], json!({ "text": "also in the channel" }));
    assert_eq!(reply["tags"]["threadId"], "1700000001.000100");

    let mut edit = broadcast.clone();
    edit["event"]["subtype"] = json!("message_changed");
    let answer = post_signed_chat(&host, &url, &edit, unix_now());
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        host.api_get("/v1/chat/messages").json()["messages"]
            .as_array()
            .unwrap()
            .len(),
        2,
        "an edit is not a new message"
    );
}

#[test]
fn the_bot_can_send_a_file() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let conversation = conversation(&host, "C58");
    let answer = send(
        &host,
        &conversation,
        "file",
        json!({ "fileUrl": "https://example.com/a.pdf", "name": "a.pdf" }),
        json!({}),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        platform.calls("chat.postMessage")[0].body,
        json!({ "channel": "C58", "text": "a.pdf", "attachments": [{ "title": "a.pdf", "title_link": "https://example.com/a.pdf" }] })
    );
}

#[test]
fn a_platform_429_reaches_the_bot_with_its_retry_after() {
    let platform = FakePlatform::start();
    let host = chat_host(&platform);
    let conversation = conversation(&host, "C59");
    platform.rate_limit(Some(17));
    let message = send(&host, &conversation, "text", json!({ "text": "hello?" }), json!({}));
    assert_eq!(message.status, 429, "{}", message.body);
    assert_eq!(message.header("retry-after"), Some("17"), "{}", message.body);
    assert_eq!(message.json()["type"], "RateLimited");
    assert!(message.body.contains("rate limiting"), "{}", message.body);
    let action = host.api_post(
        "/v1/chat/actions",
        &json!({ "type": "chat:sendMessage", "input": { "channelId": "C59", "text": "ping" } }),
    );
    assert_eq!(action.status, 429, "{}", action.body);
    assert_eq!(action.header("retry-after"), Some("17"));

    platform.rate_limit(None);
    platform.refuse_with(Some("channel_not_found"));
    let refused = send(&host, &conversation, "text", json!({ "text": "hello?" }), json!({}));
    assert_eq!(
        refused.status, 502,
        "other refusals stay upstream errors: {}",
        refused.body
    );
    assert_eq!(refused.header("retry-after"), None);
}
