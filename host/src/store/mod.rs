//! Where sluice keeps what plugins produce: installations, events, state, conversations,
//! users and messages, and the outbox that publishes what was recorded.
//!
//! [`Store`] is the one interface; [`sqlite::SqliteStore`] is the embedded backend used
//! by default. Writes return a [`Pending`] that async code awaits without holding a thread
//! while the write waits for its group commit; reads block, so async callers run them
//! through [`blocking`], and a slow disk never holds an async worker thread.
//!
//! The store checks nothing about schemas or ownership rules beyond what its keys
//! enforce; the runtime and the HTTP layer validate before they write.

pub mod delivery;
pub mod outbox;
pub mod pending;
pub mod sqlite;
pub mod triggers;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

pub use delivery::*;
pub use outbox::*;
pub use pending::Pending;
pub use sqlite::SqliteStore;
pub use triggers::{
    Contact, EventResolution, TriggerEventLink, TriggerPage, TriggerQuery, TriggerRecord, TriggerStore,
};

/// Tags: string key/value pairs, kept sorted so they compare and print predictably.
pub type Tags = BTreeMap<String, String>;

/// Changes to tags: `Some` sets a tag, `None` removes it.
pub type TagChanges = BTreeMap<String, Option<String>>;

/// An installed plugin, as remembered across restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallationRecord {
    /// Installation id (`inst_...`), also the integration id plugins see.
    pub id: String,
    /// Installation name: the plugin file name without `.wasm`.
    pub name: String,
    /// The unguessable id in the webhook URL.
    pub webhook_id: String,
    /// SHA-256 of the plugin file the installation last ran.
    pub plugin_hash: String,
    /// The sidecar text the installation last ran with (empty without one), so that
    /// `unregister` can run with its configuration after its files are gone.
    pub sidecar: String,
    /// When `register` last succeeded, if it ever did.
    pub registered_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A recorded event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub id: String,
    /// The installation that created it (`None` for events the bot created).
    pub installation_id: Option<String>,
    /// Full type, `integration:name` for integration events.
    pub event_type: String,
    pub payload: Value,
    pub conversation_id: Option<String>,
    pub user_id: Option<String>,
    pub message_id: Option<String>,
    /// `processed`, `pending`, `failed`, ... as the Botpress API names them.
    pub status: String,
    pub failure_reason: Option<String>,
    pub created_at: i64,
}

/// Filters and paging for listing events, newest first.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub event_type: Option<String>,
    pub conversation_id: Option<String>,
    pub user_id: Option<String>,
    pub message_id: Option<String>,
    pub status: Option<String>,
    pub page: PageRequest,
}

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

/// A conversation in one channel of an integration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    pub id: String,
    pub installation_id: String,
    /// Name of the integration (from its definition).
    pub integration: String,
    pub channel: String,
    pub tags: Tags,
    pub message_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Someone taking part in conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    /// The installation the user belongs to (`None` for users the bot created).
    pub installation_id: Option<String>,
    pub tags: Tags,
    pub name: Option<String>,
    pub picture_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One message in a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: String,
    pub installation_id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub message_type: String,
    pub payload: Value,
    /// `incoming` (platform to bot) or `outgoing` (bot to platform).
    pub direction: String,
    pub tags: Tags,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filters for listing conversations, users or messages, newest first.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    pub installation_id: Option<String>,
    pub conversation_id: Option<String>,
    /// Conversations only: the channel.
    pub channel: Option<String>,
    /// Conversations only: the integration's name.
    pub integration: Option<String>,
    pub tags: Tags,
    pub page: PageRequest,
}

/// What the caller wants of a list: a page size and where to continue.
#[derive(Debug, Clone, Default)]
pub struct PageRequest {
    /// At most this many items (the store caps it).
    pub size: Option<usize>,
    /// The `next_token` of the previous page.
    pub token: Option<String>,
}

impl PageRequest {
    pub const DEFAULT_SIZE: usize = 20;
    pub const MAX_SIZE: usize = 100;

    pub fn limit(&self) -> usize {
        self.size.unwrap_or(Self::DEFAULT_SIZE).clamp(1, Self::MAX_SIZE)
    }
}

/// One page of a list, newest first, and the token for the next page if there is one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// What a patched state must satisfy before it is written; `Err` says why it does not.
pub type StateCheck = Box<dyn Fn(&Value) -> Result<(), String> + Send>;

/// What [`Store::patch_state`] did.
#[derive(Debug)]
pub enum Patched {
    Done(StateRecord),
    /// There is no such state.
    Missing,
    /// The merged state failed the check; nothing was written.
    Refused(String),
}

/// A store error the API can show as it is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A page token that this store did not hand out.
    #[error("nextToken {0:?} is not a token this API returned")]
    BadPageToken(String),
    /// A list cursor naming no record (of the trigger API, which pages by id).
    #[error("cursor {0:?} is not the id of a record this list returned")]
    BadCursor(String),
}

/// Everything sluice keeps. Writes return a [`Pending`] (await it, or `wait()` off the
/// async workers); reads block: call them through [`blocking`] from async code.
/// The trigger records are a part of their own ([`TriggerStore`]).
pub trait Store: DeliveryStore + TriggerStore + Send + Sync + 'static {
    /// A host-wide setting kept in the store (the bot id, for example).
    fn meta(&self, key: &str) -> anyhow::Result<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Pending<()>;

    fn installations(&self) -> anyhow::Result<Vec<InstallationRecord>>;
    /// Creates or replaces an installation record.
    fn save_installation(&self, record: &InstallationRecord) -> Pending<()>;
    /// Forgets an installation; what it produced stays.
    fn delete_installation(&self, id: &str) -> Pending<()>;

    /// Records an event and publishes it to the outbox, in one transaction.
    fn insert_event(&self, event: &EventRecord) -> Pending<()>;
    fn event(&self, id: &str) -> anyhow::Result<Option<EventRecord>>;
    fn events(&self, query: &EventQuery) -> anyhow::Result<Page<EventRecord>>;

    fn state(&self, key: &StateKey) -> anyhow::Result<Option<StateRecord>>;
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

    /// Finds the installation's conversation in `channel` carrying all of `tags`, or
    /// creates it (publishing `chat:channel:created`). `true` when it was created.
    fn get_or_create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<(ConversationRecord, bool)>;
    fn conversation(&self, id: &str) -> anyhow::Result<Option<ConversationRecord>>;
    fn conversations(&self, query: &EntityQuery) -> anyhow::Result<Page<ConversationRecord>>;

    /// Finds the installation's user carrying all of `tags`, or creates it. `true` when
    /// it was created.
    fn get_or_create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<(UserRecord, bool)>;
    fn user(&self, id: &str) -> anyhow::Result<Option<UserRecord>>;
    fn users(&self, query: &EntityQuery) -> anyhow::Result<Page<UserRecord>>;

    /// Records a message (publishing `chat:message:new`) and counts it on its conversation.
    fn insert_message(&self, message: &MessageRecord) -> Pending<()>;
    fn message(&self, id: &str) -> anyhow::Result<Option<MessageRecord>>;
    /// Changes a message's tags (a `None` value removes the tag) and, when given, its
    /// payload. `None` when there is no such message.
    fn update_message(&self, id: &str, tags: &TagChanges, payload: Option<&Value>) -> Pending<Option<MessageRecord>>;
    fn messages(&self, query: &EntityQuery) -> anyhow::Result<Page<MessageRecord>>;

    /// Outbox entries after `seq`, oldest first.
    fn outbox_after(&self, seq: i64, limit: usize) -> anyhow::Result<Vec<OutboxEntry>>;
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Runs a blocking store call off the async worker threads.
pub async fn blocking<T, F>(store: &SharedStore, call: F) -> anyhow::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> anyhow::Result<T> + Send + 'static,
{
    let store = store.clone();
    tokio::task::spawn_blocking(move || call(store.as_ref()))
        .await
        .map_err(|join| anyhow::anyhow!("store task failed: {join}"))?
}
