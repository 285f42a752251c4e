//! The schema of the embedded store, and how a database (the store's, the queue's) is
//! brought up to date.
//!
//! Each migration runs once, in its own transaction; `PRAGMA user_version` counts how
//! many ran. A migration, once released, never changes: a change of schema is a new one
//! at the end. The delivery and trigger tables' migrations are beside their code, and the
//! queue's in `queue.rs`.

use anyhow::Context as _;
use rusqlite::Connection;

/// Schema versions, applied in order; `PRAGMA user_version` counts how many ran.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE installations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL UNIQUE,
    plugin_hash TEXT NOT NULL,
    sidecar TEXT NOT NULL,
    registered_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    conversation_id TEXT,
    user_id TEXT,
    message_id TEXT,
    status TEXT NOT NULL,
    failure_reason TEXT,
    created_at INTEGER NOT NULL
);
CREATE INDEX events_by_type ON events (type, seq);
CREATE INDEX events_by_conversation ON events (conversation_id, seq);

CREATE TABLE states (
    installation_id TEXT NOT NULL,
    scope TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    name TEXT NOT NULL,
    id TEXT NOT NULL UNIQUE,
    payload TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (installation_id, scope, owner_id, name)
);

CREATE TABLE conversations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT NOT NULL,
    integration TEXT NOT NULL,
    channel TEXT NOT NULL,
    tags TEXT NOT NULL,
    message_count INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE conversation_tags (
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX conversation_tags_lookup ON conversation_tags (key, value);

CREATE TABLE users (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT,
    tags TEXT NOT NULL,
    name TEXT,
    picture_url TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE user_tags (
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX user_tags_lookup ON user_tags (key, value);

CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    direction TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE TABLE message_tags (
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX message_tags_lookup ON message_tags (key, value);

CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    time INTEGER NOT NULL,
    integration_id TEXT,
    data TEXT NOT NULL
);
"#,
    // Event delivery: subscriptions, deliveries, attempts, outbox cursors.
    super::delivery::MIGRATION,
    super::triggers::MIGRATION,
    // Delivery rounds kept with each delivery, recoveries, disabled subscriptions' place.
    super::delivery::ROUNDS_MIGRATION,
    // Dedupe keys: retried deliveries recorded once.
    super::dedupe::MIGRATION,
    // Participants of conversations; lists ordered by update.
    super::chat::PARTICIPANTS_MIGRATION,
    // The trace context of the write that published an entry, for its delivery.
    "ALTER TABLE outbox ADD COLUMN traceparent TEXT;",
    // Plugin code kept with the installations.
    super::installations::PLUGIN_CODE_MIGRATION,
];

/// Applies the `migrations` that `connection`'s database (`what`: the store, the queue)
/// has not had yet. Refuses a database a newer sluice wrote, whose schema this one does
/// not know.
pub(super) fn migrate(connection: &mut Connection, migrations: &[&str], what: &str) -> anyhow::Result<()> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let applied = usize::try_from(applied).unwrap_or(0);
    anyhow::ensure!(
        applied <= migrations.len(),
        "the {what} was written by a newer sluice (schema {applied}, this one knows {})",
        migrations.len()
    );
    for (index, migration) in migrations.iter().enumerate().skip(applied) {
        let tx = connection.transaction()?;
        tx.execute_batch(migration)
            .with_context(|| format!("schema migration {} failed", index + 1))?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
