//! The calls a plugin takes, one per export, in types of the runtime's own: nothing
//! outside the runtime sees the generated bindings, so a change to them stays here.

use std::sync::Arc;

use super::bindings::types as wit;
use super::host::Caller;
use super::sandbox::CallError;
use crate::config::Limits;

/// What a call ended with: the export's answer (which may be the plugin's own error), or
/// why there is none (a trap, the deadline, the memory limit).
pub type Answer<T> = Result<Result<T, PluginError>, CallError>;

/// Who an installation's calls are about: every call of it carries this context, with
/// the operation the call is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallContext {
    /// The bot the integration is installed on.
    pub bot_id: String,
    /// The user that stands for the bot in conversations.
    pub bot_user_id: String,
    /// The installation's id (the plugin's `integration-id`).
    pub integration_id: String,
    /// The installation's name (the plugin's `integration-alias`).
    pub integration_alias: String,
    /// The unguessable id in the installation's webhook URL.
    pub webhook_id: String,
    /// The full URL outside platforms call to reach the installation's `handler`.
    pub webhook_url: String,
    /// The installation's configuration as JSON text, checked against the plugin's
    /// configuration schema.
    pub configuration: String,
}

impl CallContext {
    pub(super) fn wit(&self, operation: wit::Operation, trigger: Option<TriggerInfo>) -> wit::Context {
        wit::Context {
            bot_id: self.bot_id.clone(),
            bot_user_id: self.bot_user_id.clone(),
            integration_id: self.integration_id.clone(),
            integration_alias: self.integration_alias.clone(),
            webhook_id: self.webhook_id.clone(),
            webhook_url: self.webhook_url.clone(),
            operation,
            configuration: self.configuration.clone(),
            trigger: trigger.map(TriggerInfo::into_wit),
        }
    }
}

/// Who a call is for and what it runs under: the installation's import scope, limits
/// and context, and the request id its log lines carry.
#[derive(Clone, Copy)]
pub struct CallFor<'a> {
    /// What the plugin's imports are scoped to.
    pub caller: &'a Arc<Caller>,
    /// Memory, deadline and body limits of the call.
    pub limits: &'a Limits,
    /// Who the call is about.
    pub context: &'a CallContext,
    /// The id the call's log lines carry.
    pub request_id: &'a str,
}

/// An HTTP request for the plugin's `handler`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookRequest {
    /// Upper-case method, such as `POST`.
    pub method: String,
    /// The path below the webhook URL, starting with `/`.
    pub path: String,
    /// The raw query string, without the leading `?`.
    pub query: String,
    /// Header fields in the order received; names lower case.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl WebhookRequest {
    pub(super) fn into_wit(self) -> wit::HttpRequest {
        wit::HttpRequest {
            method: self.method,
            path: self.path,
            query: self.query,
            headers: self.headers,
            body: self.body,
        }
    }
}

/// The plugin's answer to a [`WebhookRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<wit::HttpResponse> for WebhookResponse {
    fn from(response: wit::HttpResponse) -> Self {
        WebhookResponse {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }
}

/// The trigger event a `trigger-event` call handles, and what the host resolved for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerInfo {
    pub trigger_id: String,
    /// The queued event's id: stable across retries.
    pub event_id: String,
    pub session: Option<String>,
    pub conversation_id: String,
    pub contact_user_id: Option<String>,
    /// Which attempt this is, from 1.
    pub attempt: u32,
}

impl TriggerInfo {
    fn into_wit(self) -> wit::TriggerInfo {
        wit::TriggerInfo {
            trigger_id: self.trigger_id,
            event_id: self.event_id,
            session: self.session,
            conversation_id: self.conversation_id,
            contact_user_id: self.contact_user_id,
            attempt: self.attempt,
        }
    }
}

/// What `call-action` answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionAnswer {
    /// The output as JSON text, not yet checked against the action's output schema.
    pub output: String,
    /// What the call cost, if the plugin set a cost.
    pub cost: Option<f64>,
}

impl From<wit::ActionResult> for ActionAnswer {
    fn from(result: wit::ActionResult) -> Self {
        ActionAnswer {
            output: result.output,
            cost: result.cost,
        }
    }
}

/// What `handle-message` answered once the platform took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Tags to store on the message (for example the platform's message id); not yet
    /// checked against the channel's declared tags.
    pub tags: Vec<(String, String)>,
}

impl From<wit::Ack> for Ack {
    fn from(ack: wit::Ack) -> Self {
        Ack { tags: ack.tags }
    }
}

/// The kind of a plugin's own error, so callers react without parsing its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PluginErrorKind {
    /// The input broke a schema or a rule.
    InvalidInput,
    NotFound,
    Forbidden,
    /// An outside system failed; trying again later may work.
    Upstream,
    Internal,
}

impl PluginErrorKind {
    /// The contract's name of the kind (`invalid-input`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            PluginErrorKind::InvalidInput => "invalid-input",
            PluginErrorKind::NotFound => "not-found",
            PluginErrorKind::Forbidden => "forbidden",
            PluginErrorKind::Upstream => "upstream",
            PluginErrorKind::Internal => "internal",
        }
    }
}

/// An error the plugin answered with (as opposed to a [`CallError`], where it did not
/// answer at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PluginError {
    pub kind: PluginErrorKind,
    pub message: String,
}

impl From<wit::Error> for PluginError {
    fn from(error: wit::Error) -> Self {
        let kind = match error.kind {
            wit::ErrorKind::InvalidInput => PluginErrorKind::InvalidInput,
            wit::ErrorKind::NotFound => PluginErrorKind::NotFound,
            wit::ErrorKind::Forbidden => PluginErrorKind::Forbidden,
            wit::ErrorKind::Upstream => PluginErrorKind::Upstream,
            wit::ErrorKind::Internal => PluginErrorKind::Internal,
        };
        PluginError {
            kind,
            message: error.message,
        }
    }
}
