//! One call into a plugin: a fresh `Store` with the installation's limits, a fresh
//! instance from the plugin's `InstancePre` (the pooling allocator hands out a warm
//! slot), the call, and the teardown. Nothing survives from one call to the next.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{Store, UpdateDeadline};

use super::bindings::types as wit;
use super::engine::Runtime;
use super::exports::TypeCheck;
use super::host::{Caller, CreatedRecord, HostState, LogLine, MemoryLimitExceeded};
use super::plugin::CompiledPlugin;
use crate::config::Limits;

/// Which export to call, with its arguments.
#[allow(
    clippy::large_enum_variant,
    reason = "built once per call and moved straight into the call"
)]
pub enum Invocation {
    Definition,
    Register(wit::Context),
    Unregister(wit::Context),
    Handler(wit::Context, wit::HttpRequest),
    CallAction {
        ctx: wit::Context,
        name: String,
        input: String,
    },
    HandleMessage {
        ctx: wit::Context,
        channel: String,
        conversation: wit::Conversation,
        message: wit::Message,
        user: wit::User,
    },
}

impl Invocation {
    fn export_name(&self) -> &'static str {
        match self {
            Invocation::Definition => "definition",
            Invocation::Register(_) => "register",
            Invocation::Unregister(_) => "unregister",
            Invocation::Handler(..) => "handler",
            Invocation::CallAction { .. } => "call-action",
            Invocation::HandleMessage { .. } => "handle-message",
        }
    }
}

/// What the export answered.
#[derive(Debug)]
pub enum Outcome {
    Definition(wit::Definition),
    Done(Result<(), wit::Error>),
    Response(Result<wit::HttpResponse, wit::Error>),
    Action(Result<wit::ActionResult, wit::Error>),
    Ack(Result<wit::Ack, wit::Error>),
}

/// What happened during a call besides its answer.
#[derive(Debug, Default)]
pub struct CallReport {
    /// Lines the plugin wrote through `logger`.
    pub logs: Vec<LogLine>,
    /// Records the plugin created through `client` (events, conversations, users,
    /// messages), in order.
    pub created: Vec<CreatedRecord>,
    pub elapsed: Duration,
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
    #[error("the plugin could not be started: {0}")]
    Instantiate(String),
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

impl Runtime {
    /// Runs one export of `plugin` in a fresh instance, under `limits`. The report comes
    /// back whether the call succeeded or not.
    pub async fn invoke(
        &self,
        plugin: &CompiledPlugin,
        caller: Option<Arc<Caller>>,
        request_id: &str,
        limits: &Limits,
        invocation: Invocation,
    ) -> (Result<Outcome, CallError>, CallReport) {
        let _running = self.ticker.call_running();
        let started = Instant::now();
        let export = invocation.export_name();
        let timeout = Duration::from_millis(limits.timeout_ms);
        let deadline = started + timeout;

        let mut store = Store::new(
            &self.engine,
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

        let call = async {
            let instance = plugin.pre.instance_pre().instantiate_async(&mut store).await?;
            let exports = &plugin.exports;
            if !plugin.exports_checked.load(Ordering::Relaxed) {
                exports.check(&mut store, &instance)?;
                plugin.exports_checked.store(true, Ordering::Relaxed);
            }
            let checked = TypeCheck::Checked;
            let outcome = match invocation {
                Invocation::Definition => {
                    let func = exports.definition(&mut store, &instance, checked)?;
                    Outcome::Definition(func.call_async(&mut store, ()).await?.0)
                }
                Invocation::Register(ctx) => {
                    let func = exports.register(&mut store, &instance, checked)?;
                    Outcome::Done(func.call_async(&mut store, (&ctx,)).await?.0)
                }
                Invocation::Unregister(ctx) => {
                    let func = exports.unregister(&mut store, &instance, checked)?;
                    Outcome::Done(func.call_async(&mut store, (&ctx,)).await?.0)
                }
                Invocation::Handler(ctx, request) => {
                    let func = exports.handler(&mut store, &instance, checked)?;
                    Outcome::Response(func.call_async(&mut store, (&ctx, &request)).await?.0)
                }
                Invocation::CallAction { ctx, name, input } => {
                    let func = exports.call_action(&mut store, &instance, checked)?;
                    Outcome::Action(func.call_async(&mut store, (&ctx, &name, &input)).await?.0)
                }
                Invocation::HandleMessage {
                    ctx,
                    channel,
                    conversation,
                    message,
                    user,
                } => {
                    let func = exports.handle_message(&mut store, &instance, checked)?;
                    let args = (&ctx, channel.as_str(), &conversation, &message, &user);
                    Outcome::Ack(func.call_async(&mut store, args).await?.0)
                }
            };
            wasmtime::Result::Ok(outcome)
        };
        // The epoch callback stops running wasm; the timeout also covers time spent
        // waiting on the host (the store, outbound HTTP).
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(Ok(outcome)) => Ok(outcome),
            Ok(Err(error)) => {
                let label = &store.data().label;
                tracing::debug!(plugin = %label, %request_id, export, "plugin call failed: {error:?}");
                Err(classify(error, limits))
            }
            Err(_elapsed) => Err(CallError::Deadline(limits.timeout_ms)),
        };
        let elapsed = started.elapsed();
        if let Err(failure) = &result {
            let label = &store.data().label;
            tracing::error!(plugin = %label, %request_id, export, elapsed_ms = elapsed.as_millis() as u64, error = %failure, "plugin call failed");
        }
        let logs = std::mem::take(&mut store.data_mut().logs);
        let created = std::mem::take(&mut store.data_mut().created);
        (result, CallReport { logs, created, elapsed })
    }
}
