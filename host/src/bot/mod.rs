//! The bot's side of the chat: what happens when the bot (through the bot API, or a
//! trigger or job on its behalf) calls an integration's action, writes a message in an
//! integration's conversation, or creates conversations, users and events. Every rule
//! the integration declared is checked here before its plugin runs, and what the plugin
//! answers is checked before it is stored or handed back.
//!
//! - [`actions`]: `call-action` (input and output schemas, cost);
//! - [`messages`]: `handle-message` for the bot's messages (message types, payload
//!   schemas, the ack's tags), and message updates;
//! - [`conversations`]: conversations and users the bot asks for;
//! - [`events`]: events the bot creates.
//!
//! HTTP is not spoken here: callers get records or a [`BotError`].

pub mod actions;
pub mod conversations;
pub mod error;
pub mod events;
pub mod messages;

use std::sync::Arc;

pub use actions::call_action;
pub use error::{BotError, BotErrorKind};
pub use messages::{OutgoingMessage, send_message, update_message};

use crate::plugins::{Installation, Snapshot};
use crate::store::Tags;

/// Finds the installation a bot names: an installation name or id, or the name of an
/// integration that exactly one installation runs.
pub fn find_installation(snapshot: &Snapshot, name: &str) -> Result<Arc<Installation>, BotError> {
    if let Some(installation) = snapshot.by_id_or_name(name) {
        return Ok(installation.clone());
    }
    let running: Vec<&Arc<Installation>> = snapshot
        .installations
        .values()
        .filter(|i| i.plugin.definition.name == name)
        .collect();
    match running.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(BotError::not_found(format!(
            "no installation or integration is called {name:?}; installed: {}",
            list_or_none(snapshot.installations.keys().map(String::as_str))
        ))),
        several => Err(BotError::invalid(format!(
            "several installations run integration {name}: {}; name the installation instead",
            several.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Refuses calls into an installation that cannot take them, saying why.
pub fn ready(installation: &Installation) -> Result<(), BotError> {
    if installation.problems.is_empty() {
        return Ok(());
    }
    Err(BotError::new(
        BotErrorKind::Unavailable,
        format!(
            "installation {} cannot take calls: {}",
            installation.name(),
            installation.problems.join("; ")
        ),
    ))
}

/// Checks that every tag is one the integration declared for `what`.
pub fn check_tags<'a>(
    what: &str,
    tags: impl IntoIterator<Item = &'a String>,
    declared: &[String],
) -> Result<(), BotError> {
    for key in tags {
        if !declared.iter().any(|d| d == key) {
            return Err(BotError::invalid(format!(
                "tag {key:?} is not declared for {what} (declared: {})",
                list_or_none(declared.iter().map(String::as_str))
            )));
        }
    }
    Ok(())
}

/// Tags as given by a client, where `null` or an empty string means "no such tag".
pub fn present_tags(tags: &std::collections::BTreeMap<String, Option<String>>) -> Tags {
    tags.iter()
        .filter_map(|(k, v)| v.as_ref().filter(|v| !v.is_empty()).map(|v| (k.clone(), v.clone())))
        .collect()
}

/// `a, b, c` sorted, or `none`.
pub fn list_or_none<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut names: Vec<&str> = names.collect();
    if names.is_empty() {
        return "none".into();
    }
    names.sort_unstable();
    names.join(", ")
}
