//! Why a bot call failed, in terms the bot API can answer with: a kind that maps to an
//! HTTP status and a Botpress error type, and a message that says what was wrong.

use std::sync::Arc;

use crate::plugins::Installation;
use crate::runtime::{Answer, CallError, CallReport, PluginError, PluginErrorKind};

/// What kind of failure a [`BotError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BotErrorKind {
    /// The request broke a rule (a missing field, an undeclared type or tag).
    InvalidInput,
    /// Data broke a JSON Schema the integration declared; the message names the field.
    InvalidData,
    /// The request names a conversation, user or message that does not exist.
    UnknownReference,
    /// The thing asked for does not exist.
    NotFound,
    /// The plugin refused (its `forbidden` error), for example an outbound request
    /// its installation may not make.
    Forbidden,
    /// Two things the request names do not belong together.
    RelationConflict,
    /// The installation cannot take calls now (not configured, register failed, gone,
    /// or too many calls at once).
    Unavailable,
    /// The plugin crashed or answered something it must not (an output that breaks its
    /// own schema, an undeclared tag).
    PluginFailed,
    /// The plugin reports that the platform behind it failed.
    Upstream,
    /// The plugin reports that the platform behind it asked to wait (its 429).
    RateLimited,
    /// The plugin ran past its deadline.
    Timeout,
    /// The host failed; the log has the details.
    Internal,
}

impl BotErrorKind {
    /// The HTTP status of this kind.
    pub fn status(self) -> u16 {
        match self {
            BotErrorKind::InvalidInput | BotErrorKind::InvalidData | BotErrorKind::UnknownReference => 400,
            BotErrorKind::Forbidden => 403,
            BotErrorKind::NotFound => 404,
            BotErrorKind::RelationConflict => 409,
            BotErrorKind::RateLimited => 429,
            BotErrorKind::PluginFailed | BotErrorKind::Internal => 500,
            BotErrorKind::Upstream => 502,
            BotErrorKind::Unavailable => 503,
            BotErrorKind::Timeout => 504,
        }
    }

    /// The Botpress API error type of this kind (what `@botpress/client` turns into its
    /// error classes).
    pub fn api_type(self) -> &'static str {
        match self {
            BotErrorKind::InvalidInput => "InvalidPayload",
            BotErrorKind::InvalidData => "InvalidDataFormat",
            BotErrorKind::UnknownReference => "ReferenceNotFound",
            BotErrorKind::NotFound => "ResourceNotFound",
            BotErrorKind::Forbidden => "Forbidden",
            BotErrorKind::RelationConflict => "RelationConflict",
            BotErrorKind::Unavailable => "Unavailable",
            BotErrorKind::PluginFailed | BotErrorKind::Upstream => "Runtime",
            BotErrorKind::Timeout => "OperationTimeout",
            BotErrorKind::RateLimited => "RateLimited",
            BotErrorKind::Internal => "Internal",
        }
    }
}

/// A failed bot call.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct BotError {
    pub kind: BotErrorKind,
    pub message: String,
    /// What failed inside the host ([`BotErrorKind::Internal`]): for the caller to log
    /// under the id of the request it answers.
    pub cause: Option<Arc<anyhow::Error>>,
    /// Seconds to wait before trying again, as the platform asked ([`BotErrorKind::RateLimited`]).
    pub retry_after: Option<u32>,
}

impl BotError {
    pub fn new(kind: BotErrorKind, message: impl Into<String>) -> BotError {
        BotError {
            kind,
            message: message.into(),
            cause: None,
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> BotError {
        BotError::new(BotErrorKind::InvalidInput, message)
    }

    pub fn invalid_data(message: impl Into<String>) -> BotError {
        BotError::new(BotErrorKind::InvalidData, message)
    }

    pub fn unknown_reference(message: impl Into<String>) -> BotError {
        BotError::new(BotErrorKind::UnknownReference, message)
    }

    pub fn not_found(message: impl Into<String>) -> BotError {
        BotError::new(BotErrorKind::NotFound, message)
    }

    pub fn plugin_failed(message: impl Into<String>) -> BotError {
        BotError::new(BotErrorKind::PluginFailed, message)
    }

    /// A host failure; its cause is kept for the caller to log with the request it
    /// answers.
    pub fn internal(error: anyhow::Error) -> BotError {
        BotError {
            cause: Some(Arc::new(error)),
            ..BotError::new(BotErrorKind::Internal, "internal error")
        }
    }

    /// The plugin answered `what` with an `error`; an `upstream` error after the plugin
    /// passed on the platform's wait (`retry-after`) is [`BotErrorKind::RateLimited`].
    pub fn from_plugin(
        installation: &Installation,
        what: &str,
        error: PluginError,
        retry_after: Option<u32>,
    ) -> BotError {
        let kind = match error.kind {
            PluginErrorKind::InvalidInput => BotErrorKind::InvalidInput,
            PluginErrorKind::NotFound => BotErrorKind::NotFound,
            PluginErrorKind::Forbidden => BotErrorKind::Forbidden,
            PluginErrorKind::Upstream if retry_after.is_some() => BotErrorKind::RateLimited,
            PluginErrorKind::Upstream => BotErrorKind::Upstream,
            PluginErrorKind::Internal => BotErrorKind::PluginFailed,
        };
        BotError {
            retry_after: retry_after.filter(|_| kind == BotErrorKind::RateLimited),
            ..BotError::new(
                kind,
                format!("{} failed to {what}: {}", describe(installation), error.message),
            )
        }
    }

    /// The call into the plugin produced no answer.
    pub fn from_call(installation: &Installation, what: &str, failure: CallError) -> BotError {
        let kind = match failure {
            CallError::Deadline(_) => BotErrorKind::Timeout,
            CallError::Busy => BotErrorKind::Unavailable,
            _ => BotErrorKind::PluginFailed,
        };
        BotError::new(kind, format!("{} could not {what}: {failure}", describe(installation)))
    }

    /// The plugin's answer to `what` (with the call's report), or the error the bot gets
    /// when there is none.
    pub fn from_answer<T>(
        installation: &Installation,
        what: &str,
        answer: Answer<T>,
        report: &CallReport,
    ) -> Result<T, BotError> {
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(BotError::from_plugin(installation, what, error, report.retry_after)),
            Err(failure) => Err(BotError::from_call(installation, what, failure)),
        }
    }
}

impl From<anyhow::Error> for BotError {
    fn from(error: anyhow::Error) -> BotError {
        BotError::internal(error)
    }
}

/// `installation chat (integration chat 0.1.0)`, for messages.
pub fn describe(installation: &Installation) -> String {
    let definition = &installation.plugin.definition;
    format!(
        "installation {} (integration {} {})",
        installation.name(),
        definition.name,
        definition.version
    )
}
