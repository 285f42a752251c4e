//! Recorded events: what plugins, the bot and trigger runs report, each published to the
//! outbox as it is recorded.

use serde_json::Value;
use serde_json::value::RawValue;

use super::outbox::{event_data, printed};
use super::{DedupeKey, Page, PageRequest, Pending};

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

/// An event as a write stores it: its columns, its payload printed once and its outbox data
/// around that text. Made from the record before the write, without copying the payload's
/// tree, so that the write (which others wait for) only inserts.
pub(super) struct EventRow {
    pub(super) id: String,
    pub(super) installation_id: Option<String>,
    pub(super) event_type: String,
    pub(super) payload: Box<RawValue>,
    pub(super) conversation_id: Option<String>,
    pub(super) user_id: Option<String>,
    pub(super) message_id: Option<String>,
    pub(super) status: String,
    pub(super) failure_reason: Option<String>,
    pub(super) created_at: i64,
    pub(super) outbox_data: String,
}

impl EventRow {
    pub(super) fn new(event: &EventRecord) -> EventRow {
        let payload = printed(&event.payload);
        EventRow {
            outbox_data: event_data(event, &payload),
            id: event.id.clone(),
            installation_id: event.installation_id.clone(),
            event_type: event.event_type.clone(),
            payload,
            conversation_id: event.conversation_id.clone(),
            user_id: event.user_id.clone(),
            message_id: event.message_id.clone(),
            status: event.status.clone(),
            failure_reason: event.failure_reason.clone(),
            created_at: event.created_at,
        }
    }
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

/// The events part of the store. Every call answers with a [`Pending`].
pub trait EventStore {
    /// Records an event and publishes it to the outbox, in one transaction.
    fn insert_event(&self, event: &EventRecord) -> Pending<()>;
    /// Records `event` like [`EventStore::insert_event`] unless the installation already
    /// recorded an event under `key` since `key.not_before`: then nothing is written and
    /// that first event is the answer. `None` when `event` was recorded. A key whose event
    /// is gone records anew.
    fn insert_event_once(&self, event: &EventRecord, key: &DedupeKey) -> Pending<Option<EventRecord>>;
    fn event(&self, id: &str) -> Pending<Option<EventRecord>>;
    fn events(&self, query: &EventQuery) -> Pending<Page<EventRecord>>;
}
