//! The embedding API called in-process, as an application's code calls it: plugins from
//! bytes, webhooks, actions, bot messages, state and events without HTTP, the event feed,
//! install, replace and remove, the routers served while it starts, and shutdown. Each
//! host keeps its records where the run says (`SLUICE_TEST_STORE`).

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt as _;
use serde_json::json;
use sluice::{Config, EventQuery, Host, HostBuilder, Message, StateScope};
use tower::ServiceExt as _;

use crate::harness::fake_platform::{FakePlatform, chat_sidecar};
use crate::harness::{guest, postgres};

/// A host in a temporary folder that shares the harness's code cache (so plugins compile
/// once per run) and keeps its records in a fresh PostgreSQL database in the PostgreSQL run
/// (sealing sidecars there with the harness's key).
fn temporary_host() -> HostBuilder {
    let target = crate::harness::target_dir();
    let builder = Host::builder()
        .temporary()
        .cache_dir(target.join("test-code-cache"))
        .cache_key(target.join("test-code-cache.key"));
    if postgres::enabled() {
        let sealing = format!("[store]\nsecret-key = {:?}\n", postgres::SECRET_KEY);
        builder
            .store_url(postgres::fresh_database())
            .config(Config::from_toml(&sealing).unwrap())
    } else {
        builder
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn webhook_request(path: &str, body: &str) -> http::Request<Bytes> {
    http::Request::post(path)
        .header("content-type", "application/json")
        .body(Bytes::from(body.to_string()))
        .unwrap()
}

#[test]
fn a_webhook_in_process_is_recorded_and_reaches_the_feed() {
    runtime().block_on(async {
        let host = temporary_host()
            .public_url("https://app.example/integrations")
            .plugin("webhook", std::fs::read(guest("webhook")).unwrap(), None)
            .build()
            .await
            .unwrap();
        let installation = &host.installations()[0];
        assert_eq!(installation.name, "webhook");
        assert_eq!(installation.status, "active");
        assert!(
            installation
                .webhook_url
                .starts_with("https://app.example/integrations/webhooks/")
        );

        let mut feed = host.feed(&["webhook:*"], None).unwrap();
        let answer = host
            .webhook("webhook", webhook_request("/orders/new?source=shop", r#"{"n":1}"#))
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
        let answer: serde_json::Value = serde_json::from_slice(answer.body()).unwrap();
        let event_id = answer["eventId"].as_str().unwrap();

        let envelope = tokio::time::timeout(Duration::from_secs(10), feed.next())
            .await
            .expect("the feed carries the event")
            .unwrap();
        assert_eq!(envelope.event_type, "webhook:event");
        assert_eq!(envelope.json["data"]["event"]["id"], event_id);
        assert_eq!(envelope.json["data"]["event"]["payload"]["path"], "/orders/new");
        assert_eq!(
            envelope.json["data"]["event"]["payload"]["query"],
            json!({ "source": "shop" })
        );

        let events = host
            .events(EventQuery {
                event_type: Some("webhook:event".into()),
                ..EventQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(events.events.len(), 1);
        assert_eq!(events.events[0]["id"], event_id);

        // Resuming behind a position replays what came after it.
        let mut replay = host.feed(&[], Some(envelope.position - 1)).unwrap();
        let again = tokio::time::timeout(Duration::from_secs(10), replay.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again, envelope);

        let unknown = host.webhook("nope", webhook_request("/", "{}")).await.unwrap_err();
        assert_eq!(unknown.status, 404);
        host.shutdown().await;
        assert!(feed.next().await.is_none(), "the feed ends when the host shuts down");
    });
}

#[test]
fn actions_messages_and_state_in_process_keep_the_integrations_rules() {
    let platform = FakePlatform::start();
    runtime().block_on(async {
        let host = temporary_host()
            .plugin(
                "chat",
                std::fs::read(guest("chat")).unwrap(),
                Some(&chat_sidecar(&platform, &["http://127.0.0.1:*"], None)),
            )
            .build()
            .await
            .unwrap();
        let result = host
            .call_action("chat:sendMessage", json!({ "channelId": "C1", "text": "hi" }))
            .await
            .unwrap();
        assert_eq!(result.cost, 1.0);
        assert!(result.output["messageId"].is_string());
        let refused = host
            .call_action("chat:sendMessage", json!({ "channelId": "C1" }))
            .await
            .unwrap_err();
        assert_eq!(refused.status, 400);
        assert!(refused.message.contains("text"), "{refused}");
        let deep = (0..70).fold(json!("x"), |inner, _| json!([inner]));
        let too_deep = host
            .call_action("chat:sendMessage", json!({ "channelId": "C1", "text": deep }))
            .await
            .unwrap_err();
        assert_eq!(too_deep.status, 400);
        assert!(too_deep.message.contains("JSON depth rule"), "{too_deep}");
        assert_eq!(platform.calls("chat.postMessage").len(), 1);

        // A conversation made by the plugin, then a bot message through its channel.
        let chat = host.installations().into_iter().find(|i| i.name == "chat").unwrap();
        let state = host.state(StateScope::Integration, &chat.id, "webhook").await.unwrap();
        assert!(state.is_some(), "register kept the platform webhook's id in its state");
        let bad = host
            .set_state(
                StateScope::Integration,
                &chat.id,
                "webhook",
                Some(json!({ "unexpected": true })),
            )
            .await;
        assert_eq!(bad.unwrap_err().status, 400, "a state must match the plugin's schema");
        host.set_state(StateScope::Bot, "me", "greeting", Some(json!({ "text": "hello" })))
            .await
            .unwrap();
        assert_eq!(
            host.state(StateScope::Bot, "me", "greeting").await.unwrap(),
            Some(json!({ "text": "hello" }))
        );
        host.set_state(StateScope::Bot, "me", "greeting", None).await.unwrap();
        assert_eq!(host.state(StateScope::Bot, "me", "greeting").await.unwrap(), None);

        let message = host
            .send_message(Message {
                conversation_id: "conv_missing".into(),
                user_id: "nobody".into(),
                message_type: "text".into(),
                payload: json!({ "text": "hi" }),
                tags: Default::default(),
            })
            .await
            .unwrap_err();
        assert_eq!(message.status, 400, "{message}");
        host.shutdown().await;
    });
}

#[test]
fn plugins_are_installed_replaced_and_removed_from_code() {
    runtime().block_on(async {
        let host = temporary_host().build().await.unwrap();
        assert!(host.installations().is_empty());
        let installed = host
            .install_plugin("hook", std::fs::read(guest("webhook")).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(installed.integration, "webhook");
        // The embedded store's truth is the folder; a shared store keeps it alone.
        assert_eq!(host.plugins_dir().join("hook.wasm").exists(), !postgres::enabled());

        // Not a component: refused with the reason, the installed version keeps serving.
        let refused = host
            .install_plugin("hook", b"not wasm".to_vec(), None)
            .await
            .unwrap_err();
        assert_eq!(refused.status, 400);
        assert_eq!(host.installations()[0].webhook_url, installed.webhook_url);
        let answer = host.webhook("hook", webhook_request("/", "{}")).await.unwrap();
        assert_eq!(answer.status(), 200);

        // Replaced by another plugin under the same name: same webhook URL.
        let replaced = host
            .install_plugin("hook", std::fs::read(guest("trigger")).unwrap(), None)
            .await
            .unwrap();
        assert_eq!(replaced.integration, "orders");
        assert_eq!(replaced.webhook_url, installed.webhook_url);

        let bad_name = host
            .install_plugin("../x", std::fs::read(guest("webhook")).unwrap(), None)
            .await;
        assert_eq!(bad_name.unwrap_err().status, 400);

        assert!(host.remove_plugin("hook").await.unwrap());
        assert!(host.installations().is_empty());
        assert!(!host.remove_plugin("hook").await.unwrap());
        host.shutdown().await;
    });
}

async fn get(router: &axum::Router, path: &str) -> (u16, serde_json::Value) {
    let response = router
        .clone()
        .oneshot(http::Request::get(path).body(axum::body::Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn the_start_up_routers_answer_health_while_loading_then_serve_the_host() {
    runtime().block_on(async {
        let builder =
            temporary_host()
                .api_token("secret")
                .plugin("webhook", std::fs::read(guest("webhook")).unwrap(), None);
        let loading = builder.loading_router();
        let ops = builder.ops_router();
        assert_eq!(get(&loading, "/healthz").await, (200, json!({ "status": "ok" })));
        assert_eq!(
            get(&loading, "/readyz").await,
            (503, json!({ "status": "not-ready", "reason": "loading plugins" }))
        );
        assert_eq!(get(&ops, "/readyz").await.0, 503);
        // Any other request waits for the host and goes through its router.
        let waiting = tokio::spawn({
            let loading = loading.clone();
            async move {
                let request = http::Request::get("/v1/admin/installations")
                    .header("authorization", "Bearer secret")
                    .body(axum::body::Body::empty())
                    .unwrap();
                loading.oneshot(request).await.unwrap()
            }
        });

        let host = builder.build().await.unwrap();
        let answer = waiting.await.unwrap();
        assert_eq!(answer.status(), 200);
        let body = axum::body::to_bytes(answer.into_body(), 1 << 20).await.unwrap();
        assert!(String::from_utf8_lossy(&body).contains("webhook"), "{body:?}");
        assert_eq!(get(&loading, "/readyz").await, (200, json!({ "status": "ready" })));
        assert!(host.metrics_text().await.contains("sluice_installations"));
        let scrape = ops
            .clone()
            .oneshot(http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(scrape.status(), 200);
        assert_eq!(
            get(&host.router(), "/metrics").await.0,
            404,
            "not on the host's router unless asked"
        );

        host.start_draining();
        assert_eq!(
            get(&ops, "/readyz").await,
            (503, json!({ "status": "not-ready", "reason": "draining" }))
        );
        host.shutdown().await;
    });
}
