//! A plugin ready to run: its compiled code, shared by every installation of it, its
//! checked definition, and one typed call per export.

use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::Instance;

use super::bindings::types as wit;
use super::calls::{Ack, ActionAnswer, Answer, CallFor, PluginError, TriggerInfo, WebhookRequest, WebhookResponse};
use super::definition::PluginDefinition;
use super::engine::{CodeSource, CodeTier, Engine};
use super::exports::{PluginExports, TypeCheck::Checked};
use super::host::{HostState, wit_conversation, wit_message, wit_user};
use super::sandbox::{CallError, CallReport, CodeSlot};
use crate::config::Limits;
use crate::store::{ConversationRecord, MessageRecord, UserRecord};
use crate::telemetry::{CallOutcome, metrics};

/// A compiled plugin. Cheap to share: calls only read it.
pub struct CompiledPlugin {
    /// SHA-256 of the plugin file.
    pub hash: String,
    /// Size of the plugin file in bytes.
    pub size: usize,
    /// Its definition, with compiled schemas.
    pub definition: Arc<PluginDefinition>,
    /// Where the compiled code came from.
    pub code_source: CodeSource,
    /// Shared by every copy of the plugin, so that the optimised code replaces the
    /// baseline code for all of them.
    pub(super) code: Arc<CodeSlot>,
    pub(super) engine: Arc<Engine>,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("name", &self.definition.name)
            .field("hash", &self.hash)
            .finish()
    }
}

/// The export's own answer, its error made the runtime's.
fn answer<W, T: From<W>>(result: Result<Result<W, wit::Error>, CallError>) -> Answer<T> {
    result.map(|answer| answer.map(T::from).map_err(PluginError::from))
}

impl CompiledPlugin {
    /// Which compiler made the code new calls run on.
    pub fn tier(&self) -> CodeTier {
        self.code.current().tier
    }

    /// `definition()`, which must not call the host: it runs without an installation.
    pub(super) async fn read_definition(&self) -> Result<wit::Definition, CallError> {
        let export = async |store: &mut Store<HostState>, instance: &Instance, exports: &PluginExports| {
            let func = exports.definition(&mut *store, instance, Checked)?;
            Ok(func.call_async(&mut *store, ()).await?.0)
        };
        self.invoke_without_installation("definition", export).await
    }

    /// Runs `export` in a fresh instance with no installation behind it (no host calls
    /// answered), under the default limits; the call's report is dropped.
    async fn invoke_without_installation<T>(
        &self,
        export_name: &'static str,
        export: impl AsyncFnOnce(&mut Store<HostState>, &Instance, &PluginExports) -> wasmtime::Result<T>,
    ) -> Result<T, CallError> {
        let limits = Limits::default();
        let (result, _report) = self
            .engine
            .invoke(&self.code.current(), None, "load", &limits, export_name, export)
            .await;
        result
    }

    /// Calls `definition()` in a fresh instance and drops the answer: the cheapest call a
    /// plugin takes.
    #[cfg(any(test, feature = "bench"))]
    pub async fn probe(&self) -> Result<(), CallError> {
        self.read_definition().await.map(drop)
    }

    /// A fresh instance, dropped without calling any export: what every call pays before
    /// and after its export runs (the sandbox benchmark's floor).
    #[cfg(any(test, feature = "bench"))]
    pub async fn instantiate_and_drop(&self) -> Result<(), CallError> {
        let export = async |_: &mut Store<HostState>, _: &Instance, _: &PluginExports| Ok(());
        self.invoke_without_installation("nothing", export).await
    }

    /// `handler` for a request sent to the installation's webhook URL.
    pub async fn handle_webhook(
        &self,
        call: CallFor<'_>,
        request: WebhookRequest,
    ) -> (Answer<WebhookResponse>, CallReport) {
        let ctx = call.context.wit(wit::Operation::WebhookReceived, None);
        self.handler(call, "webhook", ctx, request).await
    }

    /// `handler` for a trigger event (operation `trigger-event`, with the trigger's
    /// details in the context).
    pub async fn handle_trigger_event(
        &self,
        call: CallFor<'_>,
        trigger: TriggerInfo,
        request: WebhookRequest,
    ) -> (Answer<WebhookResponse>, CallReport) {
        let ctx = call.context.wit(wit::Operation::TriggerEvent, Some(trigger));
        self.handler(call, "trigger-event", ctx, request).await
    }

    async fn handler(
        &self,
        call: CallFor<'_>,
        operation: &'static str,
        ctx: wit::Context,
        request: WebhookRequest,
    ) -> (Answer<WebhookResponse>, CallReport) {
        let request = request.into_wit();
        let export = async |store: &mut Store<HostState>, instance: &Instance, exports: &PluginExports| {
            let func = exports.handler(&mut *store, instance, Checked)?;
            Ok(func.call_async(&mut *store, (&ctx, &request)).await?.0)
        };
        self.run(call, operation, "handler", export).await
    }

    /// `call-action`: `input` is the action's input as JSON text.
    pub async fn call_action(&self, call: CallFor<'_>, name: &str, input: &str) -> (Answer<ActionAnswer>, CallReport) {
        let ctx = call.context.wit(wit::Operation::ActionTriggered, None);
        let export = async |store: &mut Store<HostState>, instance: &Instance, exports: &PluginExports| {
            let func = exports.call_action(&mut *store, instance, Checked)?;
            Ok(func.call_async(&mut *store, (&ctx, name, input)).await?.0)
        };
        self.run(call, "action", "call-action", export).await
    }

    /// `handle-message`: the bot's `message` in `conversation`, written by `user`, for
    /// the plugin to deliver to the platform.
    pub async fn handle_message(
        &self,
        call: CallFor<'_>,
        conversation: &ConversationRecord,
        message: &MessageRecord,
        user: &UserRecord,
    ) -> (Answer<Ack>, CallReport) {
        let ctx = call.context.wit(wit::Operation::MessageCreated, None);
        let (conversation, message, user) = (wit_conversation(conversation), wit_message(message), wit_user(user));
        let export = async |store: &mut Store<HostState>, instance: &Instance, exports: &PluginExports| {
            let func = exports.handle_message(&mut *store, instance, Checked)?;
            let args = (&ctx, conversation.channel.as_str(), &conversation, &message, &user);
            Ok(func.call_async(&mut *store, args).await?.0)
        };
        self.run(call, "message", "handle-message", export).await
    }

    /// `register`, when an installation is created.
    pub async fn register(&self, call: CallFor<'_>) -> (Answer<()>, CallReport) {
        let ctx = call.context.wit(wit::Operation::Register, None);
        let export = async |store: &mut Store<HostState>, instance: &Instance, exports: &PluginExports| {
            let func = exports.register(&mut *store, instance, Checked)?;
            Ok(func.call_async(&mut *store, (&ctx,)).await?.0)
        };
        self.run(call, "register", "register", export).await
    }

    /// `unregister`, when an installation is removed.
    pub async fn unregister(&self, call: CallFor<'_>) -> (Answer<()>, CallReport) {
        let ctx = call.context.wit(wit::Operation::Unregister, None);
        let export = async |store: &mut Store<HostState>, instance: &Instance, exports: &PluginExports| {
            let func = exports.unregister(&mut *store, instance, Checked)?;
            Ok(func.call_async(&mut *store, (&ctx,)).await?.0)
        };
        self.run(call, "unregister", "unregister", export).await
    }

    /// Runs an export for `operation` (how metrics name what the call was for) and
    /// counts how it ended.
    async fn run<W, T: From<W>>(
        &self,
        call: CallFor<'_>,
        operation: &'static str,
        export_name: &'static str,
        export: impl AsyncFnOnce(
            &mut Store<HostState>,
            &Instance,
            &PluginExports,
        ) -> wasmtime::Result<Result<W, wit::Error>>,
    ) -> (Answer<T>, CallReport) {
        let caller = Some(call.caller.clone());
        let (result, report) = self
            .engine
            .invoke(
                &self.code.current(),
                caller,
                call.request_id,
                call.limits,
                export_name,
                export,
            )
            .await;
        let answer = answer(result);
        let outcome = match &answer {
            Ok(Ok(_)) => CallOutcome::Ok,
            Ok(Err(_)) => CallOutcome::PluginError,
            Err(CallError::Trap(_)) => CallOutcome::Trap,
            Err(CallError::Deadline(_)) => CallOutcome::Deadline,
            Err(CallError::MemoryLimit { .. }) => CallOutcome::MemoryLimit,
            Err(CallError::Busy) => CallOutcome::Busy,
        };
        metrics().plugin_call(
            &call.context.integration_alias,
            operation,
            outcome,
            report.elapsed,
            report.memory_bytes,
        );
        (answer, report)
    }
}
