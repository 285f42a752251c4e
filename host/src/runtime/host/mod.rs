//! The state of one call (`HostState`, the `T` of `Store<T>`) and the host functions a
//! plugin imports: `client` (events, state, conversations, users, messages) and
//! `logger`. Every import is scoped to the installation the call runs for ([`Caller`],
//! which holds the ownership checks between installations) and checks what the plugin
//! hands over against the plugin's own definition.
//!
//! - [`caller`]: the installation a call runs for, and what it may reach;
//! - [`client`] and [`logger`]: the imports, thin over [`Caller`];
//! - [`stdio`]: WASI without grants, the plugin's stdout and stderr into the host log;
//! - [`convert`]: records into the contract's types, and the imports' errors.

mod caller;
mod client;
mod convert;
mod logger;
mod stdio;

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub use caller::Caller;
pub(super) use convert::{wit_conversation, wit_message, wit_user};

use super::bindings::types::{self as wit, ErrorKind};
use super::outbound::OutboundPolicy;
use convert::error;
use stdio::wasi_context;

/// One line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// At most this many log lines are kept per call (all of them still go to the host log).
const MAX_KEPT_LOG_LINES: usize = 200;

/// A record a plugin created during a call (`event`, `conversation`, `user`, `message`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreatedRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
}

/// At most this many created records are kept per call.
const MAX_KEPT_CREATED: usize = 1000;

/// The memory limit of one call, and how much memory the call's instance took.
pub struct MemoryLimiter {
    pub max_bytes: usize,
    /// Linear memory grown so far, every memory of the instance counted.
    pub grown_bytes: usize,
}

/// A plugin tried to grow its memory past its limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin tried to grow its memory to {desired} bytes, over its limit of {limit} bytes")]
pub struct MemoryLimitExceeded {
    pub limit: usize,
    pub desired: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.max_bytes,
                desired,
            }));
        }
        self.grown_bytes += desired.saturating_sub(current);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The span of one host import a plugin calls (`client.create-event`), a child of its
/// call's span; none outside a trace.
fn import_span(name: &'static str) -> tracing::Span {
    if !crate::telemetry::traces::in_trace() {
        return tracing::Span::none();
    }
    tracing::info_span!(target: crate::telemetry::traces::TARGET, "host import", otel.name = name, import = name)
}

/// The label of calls made while a plugin loads (no installation yet).
static LOADING_LABEL: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "loading".into());

/// Everything one call can reach.
pub struct HostState {
    /// Built on the plugin's first WASI call: most calls make none, and a `WasiCtx`
    /// (random generators, clocks, streams) is the dearest part of a call's state.
    wasi: Option<WasiCtx>,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    /// `None` while the host reads `definition()`, which must not call the host.
    caller: Option<Arc<Caller>>,
    request_id: Arc<str>,
    pub(crate) label: Arc<str>,
    /// What the plugin logged, for the call's report.
    pub(crate) logs: Vec<LogLine>,
    /// What the plugin created, for the call's report.
    pub(crate) created: Vec<CreatedRecord>,
    /// The wait the platform asked for, as the plugin reported it (`retry-after`).
    pub(crate) retry_after: Option<u32>,
}

impl HostState {
    pub fn new(caller: Option<Arc<Caller>>, request_id: &str, max_memory_bytes: usize) -> HostState {
        let label: Arc<str> = match &caller {
            Some(caller) => caller.shared_label().clone(),
            None => Arc::clone(&LOADING_LABEL),
        };
        let request_id: Arc<str> = request_id.into();
        let allow_list = caller.as_ref().map(|c| c.allow_list.clone()).unwrap_or_default();
        let outbound_client = caller.as_ref().map(|c| c.outbound_client.clone());
        let installation = match &caller {
            Some(caller) => caller.installation_name.clone(),
            None => Arc::clone(&LOADING_LABEL),
        };
        HostState {
            wasi: None,
            http: WasiHttpCtx::new(),
            outbound: OutboundPolicy::new(
                allow_list,
                outbound_client,
                label.clone(),
                installation,
                request_id.clone(),
            ),
            table: ResourceTable::new(),
            memory: MemoryLimiter {
                max_bytes: max_memory_bytes,
                grown_bytes: 0,
            },
            caller,
            request_id,
            label,
            logs: Vec::new(),
            created: Vec::new(),
            retry_after: None,
        }
    }

    fn created(&mut self, kind: &'static str, id: &str) {
        if self.created.len() < MAX_KEPT_CREATED {
            self.created.push(CreatedRecord {
                kind,
                id: id.to_string(),
            });
        }
    }

    fn caller(&self) -> Result<Arc<Caller>, wit::Error> {
        self.caller
            .clone()
            .ok_or_else(|| error(ErrorKind::Forbidden, "definition() must not call the host"))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self
                .wasi
                .get_or_insert_with(|| wasi_context(&self.label, &self.request_id)),
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}
