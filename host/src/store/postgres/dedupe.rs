//! Dedupe keys of the PostgreSQL store: which record an installation made under each
//! key, and since when. Expired keys are forgotten by the next write that records under
//! a key of the same installation, so the table holds one retention window of keys.

use deadpool_postgres::GenericClient;

use super::rows::{execute, lock_key, query_opt};
use crate::store::DedupeKey;

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
/// installation's expired keys; inside the caller's transaction, which holds the key
/// until it ends (two replicas given one key record once).
pub(super) async fn recorded_under<C: GenericClient>(
    tx: &C,
    kind: Kind,
    key: &DedupeKey,
) -> anyhow::Result<Option<String>> {
    lock_key(
        tx,
        &format!("dedupe:{}:{}:{}", key.installation_id, kind.as_str(), key.key),
    )
    .await?;
    execute(
        tx,
        "DELETE FROM dedupe_keys WHERE installation_id = $1 AND created_at < $2",
        &[&key.installation_id, &key.not_before],
    )
    .await?;
    let found = query_opt(
        tx,
        "SELECT record_id FROM dedupe_keys WHERE installation_id = $1 AND kind = $2 AND key = $3",
        &[&key.installation_id, &kind.as_str(), &key.key],
    )
    .await?;
    Ok(found.map(|row| row.get(0)))
}

/// Notes that `record_id` was made under `key` at `now`, replacing a key whose record is
/// gone; inside the caller's transaction.
pub(super) async fn remember<C: GenericClient>(
    tx: &C,
    kind: Kind,
    key: &DedupeKey,
    record_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT INTO dedupe_keys (installation_id, kind, key, record_id, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (installation_id, kind, key) DO UPDATE SET record_id = excluded.record_id,
            created_at = excluded.created_at",
        &[&key.installation_id, &kind.as_str(), &key.key, &record_id, &now],
    )
    .await?;
    Ok(())
}
