//! Dedupe keys of the embedded store: which record an installation made under each key,
//! and since when. Expired keys are forgotten by the next write that records under a key
//! of the same installation, so the table holds one retention window of keys.

use rusqlite::{Connection, OptionalExtension, params};

use super::execute;
use crate::store::DedupeKey;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE dedupe_keys (
    installation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    record_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (installation_id, kind, key)
);
CREATE INDEX dedupe_keys_by_age ON dedupe_keys (installation_id, created_at);
"#;

/// The kinds of record a key can stand for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Event,
    Message,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Event => "event",
            Kind::Message => "message",
        }
    }
}

/// The id of the record made under `key` that has not expired, after forgetting the
/// installation's expired keys; inside the caller's transaction.
pub(super) fn recorded_under(tx: &Connection, kind: Kind, key: &DedupeKey) -> anyhow::Result<Option<String>> {
    execute(
        tx,
        "DELETE FROM dedupe_keys WHERE installation_id = ?1 AND created_at < ?2",
        params![key.installation_id, key.not_before],
    )?;
    let found = tx
        .prepare_cached("SELECT record_id FROM dedupe_keys WHERE installation_id = ?1 AND kind = ?2 AND key = ?3")?
        .query_row(params![key.installation_id, kind.as_str(), key.key], |row| row.get(0))
        .optional()?;
    Ok(found)
}

/// Notes that `record_id` was made under `key` at `now`, replacing a key whose record is
/// gone; inside the caller's transaction.
pub(super) fn remember(tx: &Connection, kind: Kind, key: &DedupeKey, record_id: &str, now: i64) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT OR REPLACE INTO dedupe_keys (installation_id, kind, key, record_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![key.installation_id, kind.as_str(), key.key, record_id, now],
    )?;
    Ok(())
}
