//! sluice: a small, fast WebAssembly plugin host for chatbot and platform integrations.
//!
//! The rooms, in the order a webhook request passes through them:
//! - [`http`]: the HTTP surfaces (webhook ingress, bot API, admin);
//! - [`plugins`]: the plugins folder, installations and the registry that routes to them;
//! - [`runtime`]: the wasmtime engine, compiled plugins, per-call sandboxes and the host
//!   functions plugins import;
//! - [`store`]: where events, state, conversations, users and messages are kept;
//! - [`delivery`]: how what was kept reaches the user's application (signed webhooks,
//!   a live stream, NATS JetStream), in the format of [`envelope`] (which the store
//!   writes and delivery sends, and which depends on neither);
//! - [`bot`]: the bot's side of the chat (actions, messages, conversations, events),
//!   checked against the integrations' declarations before their plugins run.
//! - [`jobs`]: triggers, the durable queue of their events, the workers and schedules.
//!
//! [`serve`] wires them together; [`cli`] is what the `sluice` binary runs, with
//! [`inspect`] (check a plugin file) and [`scaffold`] (`sluice new`) beside it.

pub mod bot;
pub mod cli;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod http;
pub mod ids;
pub mod inspect;
pub mod jobs;
pub mod plugins;
pub mod runtime;
pub mod scaffold;
pub mod serve;
pub mod store;
pub mod time;
