//! The real `@botpress/client` npm package against a running sluice: a bot written for
//! the Botpress chat API works here by changing its base URL. The Node script
//! (tests/clients/botpress/check.mjs) checks every answer; this test checks what it
//! left on the fake platform. `scripts/setup` installs the package (`npm install`, locked versions).

use std::process::Command;

use crate::harness::fake_platform::{FakePlatform, chat_sidecar, post_signed_chat, unix_now};
use crate::harness::{API_TOKEN, Host, guest, repo_root};
use serde_json::{Value, json};

#[test]
fn the_botpress_client_talks_to_sluice() {
    let client_dir = repo_root().join("tests/clients/botpress");
    assert!(
        client_dir.join("node_modules/@botpress/client/package.json").exists(),
        "the @botpress/client package is not installed in {}: run scripts/setup (it runs npm install there)",
        client_dir.display()
    );
    let platform = FakePlatform::start();
    let host = Host::builder()
        .plugin(
            "chat",
            guest("chat"),
            Some(&chat_sidecar(&platform, &["http://127.0.0.1:*"], None)),
        )
        .start();
    let reaction = json!({
        "type": "event_callback",
        "event": { "type": "reaction_added", "user": "U1", "reaction": "tada", "item": { "type": "message", "channel": "C-react", "ts": "1.1" } }
    });
    assert_eq!(
        post_signed_chat(&host, &host.webhook_url("chat"), &reaction, unix_now()).status,
        200
    );
    let bot_id = host.api_get("/v1/admin/installations").json()["bot"]["id"]
        .as_str()
        .unwrap()
        .to_string();

    let output = Command::new("node")
        .arg("check.mjs")
        .current_dir(&client_dir)
        .env("SLUICE_URL", &host.base)
        .env("SLUICE_TOKEN", API_TOKEN)
        .env("SLUICE_BOT_ID", &bot_id)
        .output()
        .expect("node runs (Node.js 18 or newer is needed; scripts/setup says so)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "check.mjs failed ({}):\n{stdout}\n{}\nhost log:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr),
        host.output.text()
    );
    let seen: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("check.mjs printed no JSON summary ({e}): {stdout}"));

    let posts = platform.calls("chat.postMessage");
    assert_eq!(
        posts.len(),
        3,
        "two messages and one action reached the platform: {posts:?}"
    );
    assert_eq!(
        posts[0].body,
        json!({ "channel": "C-node", "text": "hello from @botpress/client" })
    );
    assert_eq!(
        posts[1].body,
        json!({ "channel": "C-node", "text": "sent by an action" })
    );
    let stored = host.api_get(&format!("/v1/chat/messages/{}", seen["messageId"].as_str().unwrap()));
    assert_eq!(stored.json()["message"]["tags"]["messageId"], seen["platformMessageId"]);
    let state = host.api_get(&format!(
        "/v1/chat/states/conversation/{}/context",
        seen["conversationId"].as_str().unwrap()
    ));
    assert_eq!(
        state.json()["state"]["payload"],
        json!({ "step": 3, "topic": "groceries" })
    );
}

#[test]
fn what_the_botpress_client_deleted_is_gone_from_the_store() {
    // The deletions check.mjs makes are checked there through the client; here, that the
    // store answers the same through the plain API after a restart.
    let platform = FakePlatform::start();
    let mut host = Host::builder()
        .plugin(
            "chat",
            guest("chat"),
            Some(&chat_sidecar(&platform, &["http://127.0.0.1:*"], None)),
        )
        .start();
    let conversation = host.api_post(
        "/v1/chat/conversations",
        &json!({ "channel": "channel", "tags": { "channelId": "C-gone" }, "integrationName": "chat" }),
    );
    assert_eq!(conversation.status, 200, "{}", conversation.body);
    let id = conversation.json()["conversation"]["id"].as_str().unwrap().to_string();
    let bot_id = host.api_get("/v1/admin/installations").json()["bot"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let message = host.api_post(
        "/v1/chat/messages",
        &json!({ "conversationId": id, "userId": bot_id, "type": "text", "payload": { "text": "hi" } }),
    );
    assert_eq!(message.status, 200, "{}", message.body);
    let message_id = message.json()["message"]["id"].as_str().unwrap().to_string();
    let deleted = host.api_delete(&format!("/v1/chat/conversations/{id}"));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_eq!(host.stop().code(), Some(0));
    host.start_again();
    assert_eq!(host.api_get(&format!("/v1/chat/conversations/{id}")).status, 404);
    assert_eq!(
        host.api_get(&format!("/v1/chat/messages/{message_id}")).status,
        404,
        "its messages went with it"
    );
    let again = host.api_delete(&format!("/v1/chat/conversations/{id}"));
    assert_eq!(again.status, 404, "{}", again.body);
}
