//! sluice: a small, fast WebAssembly plugin host for chatbot and platform integrations.
//!
//! The rooms, in the order a webhook request passes through them:
//! - [`http`]: the HTTP surfaces (webhook ingress, bot API, admin);
//! - [`plugins`]: the plugins folder, installations and the registry that routes to them;
//! - [`runtime`]: the wasmtime engine, compiled plugins, per-call sandboxes and the host
//!   functions plugins import;
//! - [`store`]: where events, state, conversations, users and messages are kept;
//! - [`jobs`]: triggers, the durable queue of their events, the workers and schedules.
//!
//! [`serve`] wires them together; [`cli`] is what the `sluice` binary runs.

pub mod cli;
pub mod config;
pub mod http;
pub mod ids;
pub mod jobs;
pub mod plugins;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod time;
