//! An application that embeds sluice: an axum app with its own routes, sluice mounted under
//! `/integrations`, the webhook example loaded from bytes, its events seen in-process, and
//! the chat example's `sendMessage` action called from one of the app's routes.
//!
//! ```sh
//! cargo run -p sluice --example embed -- WEBHOOK.wasm CHAT.wasm CHAT.toml [ADDRESS]
//! ```
//!
//! It prints one JSON line when ready: where it listens, the webhook example's URL and the
//! API token. `GET /seen` answers the `webhook:*` events the app has seen;
//! `POST /notify` with `{"channelId", "text"}` posts through the chat integration.

use std::sync::{Arc, Mutex};

use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt as _;
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [webhook, chat, chat_sidecar, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: embed WEBHOOK.wasm CHAT.wasm CHAT.toml [ADDRESS]");
    };
    let listener = tokio::net::TcpListener::bind(rest.first().map_or("127.0.0.1:3000", String::as_str)).await?;
    let base = format!("http://{}", listener.local_addr()?);

    // The embedding, start to finish.
    let host = sluice::Host::builder()
        .temporary()
        .public_url(format!("{base}/integrations"))
        .plugin("webhook", std::fs::read(webhook)?, None)
        .plugin(
            "chat",
            std::fs::read(chat)?,
            Some(&std::fs::read_to_string(chat_sidecar)?),
        )
        .build()
        .await?;
    let seen = Arc::new(Mutex::new(Vec::<Value>::new()));
    let mut feed = host.feed(&["webhook:*"], None)?;
    let noted = seen.clone();
    tokio::spawn(async move {
        while let Some(envelope) = feed.next().await {
            noted.lock().unwrap().push(envelope.json);
        }
    });
    let actions = host.clone();
    let app = Router::new()
        .route("/hello", get(|| async { "hello from the application" }))
        .route("/seen", get(move || async move { Json(json!(*seen.lock().unwrap())) }))
        .route(
            "/notify",
            post(|Json(input): Json<Value>| async move {
                match actions.call_action("chat:sendMessage", input).await {
                    Ok(result) => (axum::http::StatusCode::OK, Json(result.output)),
                    Err(error) => (
                        axum::http::StatusCode::from_u16(error.status).unwrap_or_default(),
                        Json(json!({ "error": error.message })),
                    ),
                }
            }),
        )
        .nest("/integrations", host.router());

    let webhook_url = host
        .installations()
        .into_iter()
        .find(|i| i.name == "webhook")
        .map(|i| i.webhook_url);
    println!(
        "{}",
        json!({ "event": "ready", "listen": base, "webhookUrl": webhook_url, "apiToken": host.api_token() })
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    host.shutdown().await;
    Ok(())
}
