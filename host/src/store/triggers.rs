//! What the store keeps for triggers: the triggers themselves (the ChatBotKit-compatible
//! trigger API's records), the sessions that keep a sender's events in one conversation,
//! the contacts linked to those conversations, and, per trigger event, the conversation
//! it was resolved to and whether its execution is recorded.
//!
//! The queue of trigger events waiting to run is a part of its own ([`super::QueueStore`]),
//! kept apart so that accepting events never waits on the rest of the store.

use serde_json::Value;

use super::{EventRecord, Pending};

/// A trigger: an endpoint that queues events for a bot (an installed plugin).
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerRecord {
    /// `trg_...`; also the path segment of the trigger's event URL.
    pub id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// The installation (id or name, as the user gave it) that processes the events.
    pub bot_id: String,
    /// The bearer secret event senders present when `authenticate` is on.
    pub secret: String,
    pub authenticate: bool,
    /// Cron expression (5 fields, or 6 with seconds first); `None` means no schedule.
    pub schedule: Option<String>,
    /// IANA time zone the schedule is read in (`None` means UTC).
    pub timezone: Option<String>,
    /// Events of one session share a conversation while less than this many
    /// milliseconds passed since the session's previous event.
    pub session_duration_ms: i64,
    pub blueprint_id: Option<String>,
    /// Free-form JSON object.
    pub meta: Value,
    /// When the schedule or `invoke` last ran the trigger.
    pub last_trigger_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filters and cursor paging for listing triggers.
#[derive(Debug, Clone, Default)]
pub struct TriggerQuery {
    pub blueprint_id: Option<String>,
    /// `meta.<key>=<value>` filters: the trigger's meta must hold each value (as text).
    pub meta: Vec<(String, String)>,
    /// The id of the last trigger of the previous page.
    pub cursor: Option<String>,
    pub take: usize,
    /// Oldest first instead of newest first.
    pub ascending: bool,
}

/// One page of triggers and the cursor of the next page, if there is one.
#[derive(Debug, Clone)]
pub struct TriggerPage {
    pub items: Vec<TriggerRecord>,
    pub cursor: Option<String>,
}

/// Contact details an event sender gave (`contact.name`, `contact_email`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Contact {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
}

impl Contact {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.email.is_none() && self.phone.is_none()
    }
}

/// Everything needed to resolve one trigger event to its conversation and contact.
#[derive(Debug, Clone)]
pub struct EventResolution {
    pub event_id: String,
    pub trigger_id: String,
    /// The installation that runs the event; the conversation and contact belong to it.
    pub installation_id: String,
    /// The installation's integration name.
    pub integration: String,
    /// The channel trigger conversations are created in.
    pub channel: String,
    pub session: Option<String>,
    pub session_duration_ms: i64,
    /// When the event was accepted: sessions are measured in acceptance time.
    pub received_at: i64,
    pub contact: Option<Contact>,
    /// `trigger:event:received`, recorded on the conversation in the same transaction
    /// (its conversation and user ids are filled in by the store).
    pub received_event: EventRecord,
}

/// What a trigger event resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerEventLink {
    pub event_id: String,
    pub trigger_id: String,
    pub conversation_id: String,
    pub contact_user_id: Option<String>,
    /// `running` until an outcome is recorded, then `finished` or `failed`.
    pub status: String,
    /// The attempt of the last recorded outcome (0 before any).
    pub attempt: u32,
}

/// The trigger part of the store. Every call answers with a [`Pending`], like every part of
/// [`super::Store`].
pub trait TriggerStore {
    fn insert_trigger(&self, trigger: &TriggerRecord) -> Pending<()>;
    /// Replaces a trigger's fields; `false` when there is no such trigger.
    fn update_trigger(&self, trigger: &TriggerRecord) -> Pending<bool>;
    /// Deletes a trigger (its sessions go too; its conversations stay). `false` when
    /// there was none.
    fn delete_trigger(&self, id: &str) -> Pending<bool>;
    fn trigger(&self, id: &str) -> Pending<Option<TriggerRecord>>;
    /// Every trigger, oldest first.
    fn all_triggers(&self) -> Pending<Vec<TriggerRecord>>;
    fn list_triggers(&self, query: &TriggerQuery) -> Pending<TriggerPage>;
    /// Records that the schedule or `invoke` ran the trigger at `at`.
    fn mark_triggered(&self, id: &str, at: i64) -> Pending<()>;

    /// The link of an event resolved earlier.
    fn trigger_event(&self, event_id: &str) -> Pending<Option<TriggerEventLink>>;
    /// Resolves an event to its conversation (the session's, while fresh, else a new one)
    /// and contact (created or updated, and linked to the conversation), and records
    /// `trigger:event:received`, all in one transaction. Resolving an event again returns
    /// its first resolution and records nothing.
    fn resolve_trigger_event(&self, resolution: &EventResolution) -> Pending<TriggerEventLink>;
    /// Records the outcome of an attempt (`finished` or `failed`) with its event
    /// (`trigger:execution:finished` or `trigger:execution:failed`), in one transaction.
    /// Once an event is `finished` nothing more is recorded for it and this answers
    /// `false`, so a run repeated after a crash cannot record a second success.
    fn record_trigger_outcome(
        &self,
        event_id: &str,
        status: &str,
        attempt: u32,
        outcome: &EventRecord,
    ) -> Pending<bool>;
}
