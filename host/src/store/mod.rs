//! Where sluice keeps what plugins produce: installations, events, state, conversations,
//! users and messages, the outbox that publishes what was recorded, event delivery, and
//! triggers with the durable queue of their events.
//!
//! [`Store`] is the sum of one trait per capability ([`MetaStore`], [`EventStore`],
//! [`StateStore`], [`ChatStore`], [`OutboxStore`], [`DeliveryStore`], [`TriggerStore`],
//! [`QueueStore`]), each beside the records it keeps; [`sqlite::SqliteStore`] is the
//! embedded backend used by default. Every call answers with a [`Pending`], which async code
//! awaits without holding a thread: a write waits for its group commit, a read runs off
//! the async worker threads, so a slow disk (or a far database) never holds one. Code that holds a concrete store brings the traits into scope with
//! [`prelude`]; a [`SharedStore`] needs no import.
//!
//! The store checks nothing about schemas or ownership rules beyond what its keys
//! enforce; the runtime and the HTTP layer validate before they write.

pub mod chat;
pub mod dedupe;
pub mod delivery;
pub mod events;
pub mod meta;
pub mod outbox;
mod page_token;
pub mod pending;
pub mod postgres;
pub mod queue;
pub mod sealing;
pub mod sqlite;
pub mod state;
pub mod triggers;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use chat::*;
pub use dedupe::*;
pub use delivery::*;
pub use events::*;
pub use meta::*;
pub use outbox::*;
pub use pending::Pending;
pub use postgres::PostgresStore;
pub use queue::*;
pub use sqlite::SqliteStore;
pub use state::*;
pub use triggers::*;

/// The store's traits, for code that calls them on a concrete store (the tests).
#[cfg(test)]
#[allow(unused_imports, reason = "each test module uses the part it tests")]
pub mod prelude {
    pub use super::{
        ChatStore, DeliveryStore, EventStore, MetaStore, OutboxStore, QueueStore, StateStore, Store, TriggerStore,
    };
}

/// Tags: string key/value pairs, kept sorted so they compare and print predictably.
pub type Tags = BTreeMap<String, String>;

/// Changes to tags: `Some` sets a tag, `None` removes it.
pub type TagChanges = BTreeMap<String, Option<String>>;

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

/// A store error the API can show as it is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A page token that this store did not hand out.
    #[error("nextToken {0:?} is not a token this API returned")]
    BadPageToken(String),
    /// A list cursor naming no record (of the trigger API, which pages by id).
    #[error("cursor {0:?} is not the id of a record this list returned")]
    BadCursor(String),
    /// The store (a database server) cannot be reached: nothing was done, and the same
    /// request may succeed once it is back.
    #[error("the store cannot be reached ({0}); nothing was recorded, try again shortly")]
    Unavailable(String),
}

tokio::task_local! {
    /// Set when a store call of the task's current request found the store unreachable.
    static STORE_LOST: std::cell::Cell<bool>;
}

/// Runs `work` (a plugin call, say) and answers whether a store call inside it found the
/// store unreachable ([`StoreError::note_loss`]): a webhook whose plugin could not record
/// what it received is answered 503, so that the platform sends it again, however the
/// plugin answered.
pub async fn noting_store_losses<F: std::future::Future>(work: F) -> (F::Output, bool) {
    STORE_LOST
        .scope(std::cell::Cell::new(false), async move {
            let output = work.await;
            (output, STORE_LOST.with(|lost| lost.get()))
        })
        .await
}

impl StoreError {
    /// Notes, for [`noting_store_losses`], that `error` says the store cannot be reached.
    pub fn note_loss(error: &anyhow::Error) {
        if StoreError::is_unavailable(error) {
            let _ = STORE_LOST.try_with(|lost| lost.set(true));
        }
    }

    /// Whether `error` (or one of its causes) says the store cannot be reached.
    pub fn is_unavailable(error: &anyhow::Error) -> bool {
        error
            .chain()
            .any(|cause| matches!(cause.downcast_ref::<StoreError>(), Some(StoreError::Unavailable(_))))
    }
}

/// Everything sluice keeps: the sum of the capability traits, so that one handle
/// ([`SharedStore`]) reaches all of them. A backend implements each part; this trait
/// comes with them.
pub trait Store:
    MetaStore
    + EventStore
    + StateStore
    + ChatStore
    + OutboxStore
    + DeliveryStore
    + TriggerStore
    + QueueStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: MetaStore
        + EventStore
        + StateStore
        + ChatStore
        + OutboxStore
        + DeliveryStore
        + TriggerStore
        + QueueStore
        + Send
        + Sync
        + 'static
{
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;
