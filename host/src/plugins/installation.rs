//! One installation: a plugin file, its configuration and its identity.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::config::Sidecar;
use crate::runtime::bindings::types as wit;
use crate::runtime::host::Caller;
use crate::runtime::{CompiledPlugin, Invocation, Runtime};
use crate::store::InstallationRecord;

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
    /// The configuration as JSON (from the sidecar).
    pub configuration: Value,
    pub status: InstallationStatus,
    /// What is wrong, for every status but `Active`; each problem says what to do.
    pub problems: Vec<String>,
    /// What the plugin's imports are scoped to.
    pub caller: Arc<Caller>,
    pub identity: Arc<HostIdentity>,
    /// Every call's context but its operation, built once ([`Installation::base_context`]):
    /// serialising the configuration and formatting the webhook URL on every request
    /// would cost more than the copy.
    pub(crate) base_context: wit::Context,
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

    /// The context of an installation's calls, with a placeholder operation (see
    /// [`Installation::context`]).
    pub fn base_context(record: &InstallationRecord, identity: &HostIdentity, configuration: &Value) -> wit::Context {
        wit::Context {
            bot_id: identity.bot_id.clone(),
            bot_user_id: identity.bot_user_id.clone(),
            integration_id: record.id.clone(),
            integration_alias: record.name.clone(),
            webhook_id: record.webhook_id.clone(),
            webhook_url: webhook_url(identity, &record.webhook_id),
            operation: wit::Operation::WebhookReceived,
            configuration: configuration.to_string(),
            trigger: None,
        }
    }

    /// The context handed to the plugin for `operation`.
    pub fn context(&self, operation: wit::Operation) -> wit::Context {
        wit::Context {
            operation,
            ..self.base_context.clone()
        }
    }

    /// The context of a trigger event: operation `trigger-event`, with the event's
    /// trigger, conversation and contact.
    pub fn trigger_context(&self, trigger: wit::TriggerInfo) -> wit::Context {
        wit::Context {
            trigger: Some(trigger),
            ..self.context(wit::Operation::TriggerEvent)
        }
    }

    /// Runs `invocation` in a fresh sandbox under this installation's limits.
    pub async fn invoke(
        &self,
        runtime: &Runtime,
        request_id: &str,
        invocation: Invocation,
    ) -> (
        Result<crate::runtime::Outcome, crate::runtime::CallError>,
        crate::runtime::CallReport,
    ) {
        runtime
            .invoke(
                &self.plugin,
                Some(self.caller.clone()),
                request_id,
                &self.sidecar.limits,
                invocation,
            )
            .await
    }
}

/// The webhook URL of a webhook id.
pub fn webhook_url(identity: &HostIdentity, webhook_id: &str) -> String {
    format!("{}/webhooks/{webhook_id}", identity.public_url)
}
