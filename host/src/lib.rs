//! sluice: a small, fast WebAssembly plugin host for chatbot and platform integrations.
//!
//! Drop integration plugins (WebAssembly components built against the contract in
//! `wit/`) into a folder and each one is live: it gets a webhook URL, every request sent
//! there runs in a fresh sandboxed instance of the plugin, and what the plugin records
//! (events, conversations, users, messages, state) is kept and delivered to the bot.
//! [`cli`] is what the `sluice` binary runs.

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
// serve wires them together for `sluice serve`; inspect, scaffold and precompile are
// `sluice inspect`, `sluice new` and `sluice compile`.

pub(crate) mod bot;
pub mod cli;
pub(crate) mod config;
pub(crate) mod delivery;
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

/// The runtime's parts the sandbox benchmark (`host/benches/sandbox.rs`) drives directly,
/// without HTTP: not the library's API, and only there with the `bench` feature.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub mod bench {
    pub use crate::config::Limits;
    pub use crate::runtime::{
        AllowList, CallContext, CallFor, Caller, CompiledPlugin, Profiling, Runtime, Tiering, WebhookRequest,
    };
    pub use crate::store::{SharedStore, SqliteStore};
}
