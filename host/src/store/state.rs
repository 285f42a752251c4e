//! State: JSON documents plugins and the bot keep, keyed by installation, scope, owner and
//! name.

use serde_json::Value;

use super::Pending;

/// What a state is attached to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StateScope {
    Bot,
    Integration,
    Conversation,
    User,
}

impl StateScope {
    pub fn as_str(self) -> &'static str {
        match self {
            StateScope::Bot => "bot",
            StateScope::Integration => "integration",
            StateScope::Conversation => "conversation",
            StateScope::User => "user",
        }
    }

    pub fn parse(text: &str) -> Option<StateScope> {
        Some(match text {
            "bot" => StateScope::Bot,
            "integration" => StateScope::Integration,
            "conversation" => StateScope::Conversation,
            "user" => StateScope::User,
            _ => return None,
        })
    }
}

/// Where a piece of state lives. The installation is part of the key, so one installation
/// can never reach another's state (bot state uses an empty installation id).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StateKey {
    pub installation_id: String,
    pub scope: StateScope,
    /// The integration, conversation, user or bot the state is attached to.
    pub owner_id: String,
    pub name: String,
}

/// A stored piece of state.
#[derive(Debug, Clone, PartialEq)]
pub struct StateRecord {
    pub id: String,
    pub key: StateKey,
    pub payload: Value,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a patched state must satisfy before it is written; `Err` says why it does not.
pub type StateCheck = Box<dyn Fn(&Value) -> Result<(), String> + Send>;

/// What [`StateStore::patch_state`] did.
#[derive(Debug)]
pub enum Patched {
    Done(StateRecord),
    /// There is no such state.
    Missing,
    /// The merged state failed the check; nothing was written.
    Refused(String),
}

/// The state part of the store. Every call answers with a [`Pending`].
pub trait StateStore {
    fn state(&self, key: &StateKey) -> Pending<Option<StateRecord>>;
    /// Creates or replaces a state.
    fn put_state(&self, key: &StateKey, payload: &Value) -> Pending<StateRecord>;
    /// Deletes a state; `false` when there was none.
    fn delete_state(&self, key: &StateKey) -> Pending<bool>;
    /// Reads a state, or creates it with `payload` when there is none, in one
    /// transaction. `true` when it was created.
    fn get_or_put_state(&self, key: &StateKey, payload: &Value) -> Pending<(StateRecord, bool)>;
    /// Merges `patch`'s top-level fields into an existing state (a `null` field removes
    /// that field), in one transaction; the merged state is written only if it passes
    /// `check` (its schema), which runs inside that transaction.
    fn patch_state(
        &self,
        key: &StateKey,
        patch: &serde_json::Map<String, Value>,
        check: StateCheck,
    ) -> Pending<Patched>;
}
