//! sluice: a small, fast WebAssembly plugin host for chatbot and platform integrations.
//!
//! Drop integration plugins (WebAssembly components built against the contract in
//! `wit/`) into a folder and each one is live: it gets a webhook URL, every request sent
//! there runs in a fresh sandboxed instance of the plugin, and what the plugin records
//! (events, conversations, users, messages, state) is kept and delivered to the bot.
//!
//! The `sluice` binary serves a plugins folder on its own (`sluice serve`). This crate
//! lets an application do the same inside its own server: build a [`Host`], nest its
//! [`Host::router`] under a prefix of the application's router, and call into it
//! in-process.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use futures::StreamExt as _;
//!
//! # async fn run() -> anyhow::Result<()> {
//! let host = sluice::Host::builder()
//!     .data_dir("sluice-data")
//!     .public_url("https://app.example.com/integrations")
//!     .plugin("webhook", std::fs::read("webhook.wasm")?, None)
//!     .build()
//!     .await?;
//!
//! // React to what the plugins record, without a webhook to yourself.
//! let mut feed = host.feed(&["webhook:*"], None)?;
//! tokio::spawn(async move {
//!     while let Some(envelope) = feed.next().await {
//!         println!("{}: {}", envelope.event_type, envelope.json["data"]);
//!     }
//! });
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "my application" }))
//!     .nest("/integrations", host.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! host.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! The webhook URL of each installation ([`Host::installations`]) starts with the public
//! URL given to the builder, so it must include the prefix the router is nested under.
//! `host/examples/embed.rs` is a complete application.

#![deny(missing_docs)]

// The rooms, in the order a webhook request passes through them; arrows point down only
// (http -> bot/jobs/delivery -> plugins -> runtime -> store -> envelope, config, ids, time):
// - http: the HTTP surfaces (webhook ingress, bot API, trigger API, delivery API, admin);
// - bot, jobs, delivery: the bot's side of the chat (checked against the integrations'
//   declarations before their plugins run); triggers with their queue, workers and
//   schedules; how what was kept reaches the user's application (signed webhooks, a live
//   stream, NATS JetStream);
// - plugins: the plugins folder, installations and the registry that routes to them;
// - runtime: the wasmtime engine, compiled plugins, per-call sandboxes and the host
//   functions plugins import;
// - store: where everything is kept, one trait per capability and the SQLite backend;
// - envelope: the delivered format, which the store writes and delivery sends;
// - config, ids, time, telemetry (metrics), json_depth (the one JSON depth rule): leaves.
// embedding is the public API on top of them all; serve wires the rooms together for
// `sluice serve`; inspect, scaffold and precompile are `sluice inspect`, `sluice new` and
// `sluice compile`.

pub(crate) mod bot;
pub(crate) mod causes;
pub(crate) mod cli;
pub(crate) mod config;
pub(crate) mod delivery;
mod embedding;
pub(crate) mod envelope;
pub(crate) mod http;
pub(crate) mod ids;
pub(crate) mod inspect;
pub(crate) mod jobs;
pub(crate) mod json_depth;
pub(crate) mod plugins;
pub(crate) mod precompile;
pub(crate) mod runtime;
pub(crate) mod scaffold;
pub(crate) mod serve;
pub(crate) mod store;
pub(crate) mod telemetry;
pub(crate) mod time;

/// What the `sluice` binary runs: parses the command line and runs the command (see
/// `sluice --help`). Not part of the embedding API.
#[doc(hidden)]
pub fn main() -> std::process::ExitCode {
    use clap::Parser as _;
    cli::run(cli::Cli::parse())
}

pub use embedding::{
    ActionResult, Config, DELIVERY_STOP_TIMEOUT, DRAIN_TIMEOUT, Envelope, Error, EventFeed, EventList, EventQuery,
    Host, HostBuilder, InstallationInfo, LoadFailure, Message, StateScope, Tiering,
};

/// The runtime's parts the sandbox benchmark (`host/benches/sandbox.rs`) drives directly,
/// without HTTP: not the library's API, and only there with the `bench` feature.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench {
    pub use crate::config::Limits;
    pub use crate::runtime::outbound::OutboundClient;
    pub use crate::runtime::{
        AllowList, CallContext, CallFor, Caller, CompiledPlugin, Profiling, Runtime, Tiering, WebhookRequest,
    };
    pub use crate::store::{SharedStore, SqliteStore};
}
