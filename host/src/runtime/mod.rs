//! Running plugins: one wasmtime [`Engine`](wasmtime::Engine) per host, each plugin
//! compiled once ([`plugin::CompiledPlugin`], cached on disk by content hash), and a
//! fresh, limited [`wasmtime::Store`] for every call ([`sandbox`]).
//!
//! What a plugin can reach from inside the sandbox is exactly [`host`]'s imports
//! (`client`, `logger`), WASI without any grants, and outbound HTTP through
//! [`outbound`]'s allow-list.

pub mod bindings;
pub mod contract;
pub mod definition;
pub mod engine;
mod exports;
pub mod host;
pub mod outbound;
pub mod plugin;
pub mod sandbox;

pub use definition::PluginDefinition;
pub use engine::{Profiling, Runtime};
pub use plugin::CompiledPlugin;
pub use sandbox::{CallError, CallReport, Invocation, Outcome};
