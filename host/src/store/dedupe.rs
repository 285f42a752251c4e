//! Dedupe keys: a platform that did not see its delivery acknowledged in time sends it
//! again with the same delivery id, and a plugin that records the delivery under that id
//! records it once ([`EventStore::insert_event_once`](super::EventStore::insert_event_once),
//! [`ChatStore::insert_message_once`](super::ChatStore::insert_message_once)).

/// The key a record is kept once under: per installation, per kind of record (an event's
/// key and a message's key never meet), for as long as the installation's retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeKey {
    pub installation_id: String,
    /// The plugin's key, for example the platform's delivery id.
    pub key: String,
    /// Keys recorded before this time (milliseconds) have expired: the next record under
    /// one is new, and expired keys are forgotten.
    pub not_before: i64,
}
