//! Running plugins: one wasmtime engine per host ([`engine`]), each plugin compiled once
//! and checked against the contract ([`loader`], [`contract`]; cached on disk by content
//! hash, entries authenticated: [`code_cache`]), and a fresh, limited [`wasmtime::Store`] for every call ([`sandbox`]). Callers
//! use the typed calls of [`CompiledPlugin`] ([`calls`]); the generated bindings stay in
//! here.
//!
//! What a plugin can reach from inside the sandbox is exactly [`host`]'s imports
//! (`client`, `logger`), WASI without any grants, and outbound HTTP through
//! [`outbound`]'s allow-list.
//!
//! Inside, arrows point one way: `loader` -> `plugin` -> `sandbox` -> `engine` ->
//! `host` -> `definition`, `outbound`; `engine` -> `code_cache`.

mod bindings;
pub mod calls;
pub mod code_cache;
pub mod contract;
pub mod definition;
pub mod engine;
mod exports;
pub mod host;
pub mod loader;
pub mod outbound;
pub mod plugin;
pub mod sandbox;

pub use calls::{
    Ack, ActionAnswer, Answer, CallContext, CallFor, PluginError, PluginErrorKind, TriggerInfo, WebhookRequest,
    WebhookResponse,
};
pub use code_cache::{CacheKey, CodeCache};
pub use definition::PluginDefinition;
pub use engine::{CodeSource, Profiling, Tiering};
pub use host::Caller;
pub use loader::{LoadError, Runtime};
pub use outbound::AllowList;
pub use plugin::CompiledPlugin;
pub use sandbox::{CallError, CallReport};
