//! One call into a plugin: a fresh `Store` with the installation's limits, a fresh
//! instance from the plugin's `InstancePre` (the pooling allocator hands out a warm
//! slot), the call, and the teardown. Nothing survives from one call to the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;
use std::time::{Duration, Instant};

use tracing::Instrument as _;
use wasmtime::component::Instance;
use wasmtime::{Store, UpdateDeadline};

use super::bindings::IntegrationPre;
use super::engine::{CodeTier, Engine};
use super::exports::PluginExports;
use super::host::{Caller, CreatedRecord, HostState, LogLine, MemoryLimitExceeded};
use crate::config::Limits;
use crate::telemetry::traces;

/// A plugin's code, ready to instantiate: the pre-linked instance template every call
/// starts from and where its exports are. Shared by every installation of the plugin.
pub(super) struct PluginCode {
    pub(super) pre: IntegrationPre<HostState>,
    pub(super) exports: PluginExports,
    /// Whether the exports' types were checked (on the first call, see
    /// [`PluginExports::check`]).
    pub(super) exports_checked: AtomicBool,
    /// Which compiler made it.
    pub(super) tier: CodeTier,
}

/// Where calls find a plugin's code: baseline code at first, perhaps, replaced by the
/// optimised code once that is compiled. A call takes the code current when it starts
/// and finishes on it; the replaced code is freed when its last call ends.
pub(super) struct CodeSlot(ArcSwap<PluginCode>);

impl CodeSlot {
    pub(super) fn new(code: PluginCode) -> CodeSlot {
        CodeSlot(ArcSwap::from_pointee(code))
    }

    pub(super) fn current(&self) -> Arc<PluginCode> {
        self.0.load_full()
    }

    pub(super) fn replace(&self, code: PluginCode) {
        self.0.store(Arc::new(code));
    }
}

/// What happened during a call besides its answer.
#[derive(Debug, Default)]
pub struct CallReport {
    /// Lines the plugin wrote through `logger`.
    pub logs: Vec<LogLine>,
    /// Records the plugin created through `client` (events, conversations, users,
    /// messages), in order.
    pub created: Vec<CreatedRecord>,
    /// The wait the platform asked for, as the plugin passed it on (`retry-after`).
    pub retry_after: Option<u32>,
    pub elapsed: Duration,
    /// The instance's linear memory at the end of the call, every memory counted.
    pub memory_bytes: usize,
}

/// Why a call produced no answer. The host keeps serving after every one of these.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the plugin trapped: {0}")]
    Trap(String),
    #[error("the plugin went over its memory limit of {limit} bytes")]
    MemoryLimit { limit: u64 },
    #[error("the plugin did not finish within its deadline of {0} ms")]
    Deadline(u64),
    #[error("too many plugin calls are running at once; try again shortly")]
    Busy,
}

impl CallError {
    /// The HTTP status this failure maps to.
    pub fn status(&self) -> u16 {
        match self {
            CallError::Deadline(_) => 504,
            CallError::Busy => 503,
            _ => 500,
        }
    }
}

/// The epoch callback's verdict when the wall-clock deadline passed.
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
struct DeadlineExceeded;

fn classify(error: wasmtime::Error, limits: &Limits) -> CallError {
    for cause in error.chain() {
        if cause.downcast_ref::<DeadlineExceeded>().is_some() {
            return CallError::Deadline(limits.timeout_ms);
        }
        if cause.downcast_ref::<MemoryLimitExceeded>().is_some() {
            return CallError::MemoryLimit {
                limit: limits.max_memory_bytes,
            };
        }
        if cause.downcast_ref::<wasmtime::PoolConcurrencyLimitError>().is_some() {
            return CallError::Busy;
        }
    }
    match error.chain().find_map(|cause| cause.downcast_ref::<wasmtime::Trap>()) {
        Some(trap) => CallError::Trap(trap.to_string()),
        None => CallError::Trap(error.root_cause().to_string()),
    }
}

impl Engine {
    /// Runs one export of `code` in a fresh instance, under `limits`. The report comes
    /// back whether the call succeeded or not.
    ///
    /// `export` calls the one export this call is for (its types were checked once, see
    /// [`PluginExports::check`]); `export_name` names it in the log.
    pub(super) async fn invoke<T>(
        &self,
        code: &PluginCode,
        caller: Option<Arc<Caller>>,
        request_id: &str,
        limits: &Limits,
        export_name: &'static str,
        export: impl AsyncFnOnce(&mut Store<HostState>, &Instance, &PluginExports) -> wasmtime::Result<T>,
    ) -> (Result<T, CallError>, CallReport) {
        let _running = self.ticker.call_running();
        let started = Instant::now();
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = started + timeout;

        // The engine that compiled this code (the baseline or the optimising one).
        let mut store = Store::new(
            code.pre.instance_pre().engine(),
            HostState::new(caller, request_id, limits.max_memory_bytes as usize),
        );
        store.limiter(|state| &mut state.memory);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if Instant::now() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });

        // Part of the trace of what asked for the call; a call outside one (a plugin's
        // definition, at load) starts none of its own.
        let span = if traces::in_trace() {
            tracing::info_span!(
                target: traces::TARGET,
                "plugin call",
                otel.name = %format!("plugin {export_name}"),
                otel.status_code = tracing::field::Empty,
                otel.status_description = tracing::field::Empty,
                plugin = %store.data().label,
                export = export_name,
            )
        } else {
            tracing::Span::none()
        };
        let call = async {
            let instance = code.pre.instance_pre().instantiate_async(&mut store).await?;
            if !code.exports_checked.load(Ordering::Relaxed) {
                code.exports.check(&mut store, &instance)?;
                code.exports_checked.store(true, Ordering::Relaxed);
            }
            export(&mut store, &instance, &code.exports).await
        };
        // The epoch callback stops running wasm; the timeout also covers time spent
        // waiting on the host (the store, outbound HTTP).
        let result = match tokio::time::timeout(timeout, call.instrument(span.clone())).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(error)) => {
                let label = &store.data().label;
                tracing::debug!(plugin = %label, %request_id, export = export_name, "plugin call failed: {error:?}");
                Err(classify(error, limits))
            }
            Err(_elapsed) => Err(CallError::Deadline(limits.timeout_ms)),
        };
        let elapsed = started.elapsed();
        if let Err(failure) = &result {
            let label = &store.data().label;
            tracing::error!(plugin = %label, %request_id, export = export_name, elapsed_ms = elapsed.as_millis() as u64, error = %failure, "plugin call failed");
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", tracing::field::display(failure));
        }
        let logs = std::mem::take(&mut store.data_mut().logs);
        let created = std::mem::take(&mut store.data_mut().created);
        let retry_after = store.data().retry_after;
        let memory_bytes = store.data().memory.grown_bytes;
        (
            result,
            CallReport {
                logs,
                created,
                retry_after,
                elapsed,
                memory_bytes,
            },
        )
    }
}
