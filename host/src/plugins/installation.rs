//! One installation: a plugin file, its configuration and its identity.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::config::Sidecar;
use crate::runtime::{
    Ack, ActionAnswer, Answer, CallContext, CallFor, CallReport, Caller, CompiledPlugin, TriggerInfo, WebhookRequest,
    WebhookResponse,
};
use crate::store::{ConversationRecord, InstallationRecord, MessageRecord, UserRecord};

/// Who the host is, as plugins see it in their context.
#[derive(Debug, Clone)]
pub struct HostIdentity {
    pub bot_id: String,
    pub bot_user_id: String,
    /// Base URL of webhook URLs, without a trailing slash.
    pub public_url: String,
}

/// Whether an installation takes requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstallationStatus {
    /// Configured and registered: its webhook runs the plugin.
    Active,
    /// Its configuration does not satisfy the plugin's schema; its webhook answers 503.
    NeedsConfiguration,
    /// `register` failed; its webhook answers 503 until a later start or reload succeeds.
    RegisterFailed,
}

impl InstallationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallationStatus::Active => "active",
            InstallationStatus::NeedsConfiguration => "needs-configuration",
            InstallationStatus::RegisterFailed => "register-failed",
        }
    }
}

/// An installed plugin, ready to take calls.
pub struct Installation {
    pub record: InstallationRecord,
    /// The plugin file in the plugins folder.
    pub file: PathBuf,
    pub plugin: Arc<CompiledPlugin>,
    pub sidecar: Sidecar,
    pub status: InstallationStatus,
    /// What is wrong, for every status but `Active`; each problem says what to do.
    pub problems: Vec<String>,
    /// What the plugin's imports are scoped to.
    pub caller: Arc<Caller>,
    pub identity: Arc<HostIdentity>,
    /// Who every call of this installation is about, built once: serialising the
    /// configuration and formatting the webhook URL on every request would cost more
    /// than the copy.
    pub(crate) context: CallContext,
}

impl Installation {
    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn name(&self) -> &str {
        &self.record.name
    }

    pub fn webhook_url(&self) -> String {
        webhook_url(&self.identity, &self.record.webhook_id)
    }

    /// The context of an installation's calls.
    pub fn call_context(record: &InstallationRecord, identity: &HostIdentity, configuration: &Value) -> CallContext {
        CallContext {
            bot_id: identity.bot_id.clone(),
            bot_user_id: identity.bot_user_id.clone(),
            integration_id: record.id.clone(),
            integration_alias: record.name.clone(),
            webhook_id: record.webhook_id.clone(),
            webhook_url: webhook_url(identity, &record.webhook_id),
            configuration: configuration.to_string(),
        }
    }

    /// Who a call of this installation is for, under its limits.
    fn call<'a>(&'a self, request_id: &'a str) -> CallFor<'a> {
        CallFor {
            caller: &self.caller,
            limits: &self.sidecar.limits,
            context: &self.context,
            request_id,
        }
    }

    /// Runs `handler` for a request sent to the installation's webhook URL.
    pub async fn handle_webhook(
        &self,
        request_id: &str,
        request: WebhookRequest,
    ) -> (Answer<WebhookResponse>, CallReport) {
        self.plugin.handle_webhook(self.call(request_id), request).await
    }

    /// Runs `handler` for a trigger event.
    pub async fn handle_trigger_event(
        &self,
        request_id: &str,
        trigger: TriggerInfo,
        request: WebhookRequest,
    ) -> (Answer<WebhookResponse>, CallReport) {
        self.plugin
            .handle_trigger_event(self.call(request_id), trigger, request)
            .await
    }

    /// Runs the action `name` with `input` (JSON text).
    pub async fn call_action(&self, request_id: &str, name: &str, input: &str) -> (Answer<ActionAnswer>, CallReport) {
        self.plugin.call_action(self.call(request_id), name, input).await
    }

    /// Hands the bot's message to the plugin to deliver.
    pub async fn handle_message(
        &self,
        request_id: &str,
        conversation: &ConversationRecord,
        message: &MessageRecord,
        user: &UserRecord,
    ) -> (Answer<Ack>, CallReport) {
        self.plugin
            .handle_message(self.call(request_id), conversation, message, user)
            .await
    }

    /// Runs `register`.
    pub async fn register(&self, request_id: &str) -> (Answer<()>, CallReport) {
        self.plugin.register(self.call(request_id)).await
    }

    /// Runs `unregister`.
    pub async fn unregister(&self, request_id: &str) -> (Answer<()>, CallReport) {
        self.plugin.unregister(self.call(request_id)).await
    }
}

/// The webhook URL of a webhook id.
pub fn webhook_url(identity: &HostIdentity, webhook_id: &str) -> String {
    format!("{}/webhooks/{webhook_id}", identity.public_url)
}
