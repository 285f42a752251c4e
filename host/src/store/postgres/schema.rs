//! The schema of the PostgreSQL store and its migrations.
//!
//! `sluice_migrations` records each migration applied. Migrations run at start under a
//! session advisory lock, so that replicas starting together apply each one once; a
//! database whose schema is newer than this sluice knows is refused. A migration, once
//! released, never changes: a change of schema is a new one at the end.

use anyhow::Context as _;
use deadpool_postgres::GenericClient;

use super::locks;

/// Schema versions, applied in order; version N is `MIGRATIONS[N - 1]`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE installations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    webhook_id TEXT NOT NULL UNIQUE,
    plugin_hash TEXT NOT NULL,
    sidecar TEXT NOT NULL,
    registered_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    conversation_id TEXT,
    user_id TEXT,
    message_id TEXT,
    status TEXT NOT NULL,
    failure_reason TEXT,
    created_at BIGINT NOT NULL
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
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (installation_id, scope, owner_id, name)
);

CREATE TABLE conversations (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT NOT NULL,
    integration TEXT NOT NULL,
    channel TEXT NOT NULL,
    tags TEXT NOT NULL,
    message_count BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX conversations_by_channel ON conversations (installation_id, channel, seq);
CREATE TABLE conversation_tags (
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX conversation_tags_lookup ON conversation_tags (key, value);

CREATE TABLE users (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT,
    tags TEXT NOT NULL,
    name TEXT,
    picture_url TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE TABLE user_tags (
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX user_tags_lookup ON user_tags (key, value);

CREATE TABLE messages (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    installation_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    type TEXT NOT NULL,
    payload TEXT NOT NULL,
    direction TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX messages_by_conversation ON messages (conversation_id, seq);
CREATE INDEX messages_by_user ON messages (user_id);
CREATE TABLE message_tags (
    owner_id TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (owner_id, key)
);
CREATE INDEX message_tags_lookup ON message_tags (key, value);

-- The outbox. Rows are inserted without a position; the sequencer (outbox.rs) gives
-- committed rows their seq, in order, under an advisory lock, so that a reader never
-- sees seq N+1 before N.
CREATE SEQUENCE outbox_seq;
CREATE TABLE outbox (
    row_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq BIGINT UNIQUE,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    time BIGINT NOT NULL,
    integration_id TEXT,
    data TEXT NOT NULL
);
CREATE INDEX outbox_unsequenced ON outbox (row_id) WHERE seq IS NULL;

CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    types TEXT NOT NULL,
    secret TEXT NOT NULL,
    enabled BOOLEAN NOT NULL,
    description TEXT,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    disabled_at BIGINT
);

CREATE TABLE deliveries (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    outbox_seq BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_status_code BIGINT,
    last_error TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    round BIGINT NOT NULL DEFAULT 1,
    round_start BIGINT NOT NULL DEFAULT 0,
    recovery_id TEXT
);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, seq);
CREATE INDEX deliveries_pending ON deliveries (subscription_id, seq) WHERE status = 'pending';
CREATE INDEX deliveries_dead ON deliveries (subscription_id, seq) WHERE status = 'dead';
CREATE INDEX deliveries_by_recovery ON deliveries (recovery_id) WHERE recovery_id IS NOT NULL;
CREATE INDEX deliveries_by_creation ON deliveries (created_at);

CREATE TABLE delivery_attempts (
    delivery_seq BIGINT NOT NULL,
    number BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL,
    status_code BIGINT,
    error TEXT,
    outcome TEXT NOT NULL,
    next_attempt_at BIGINT,
    PRIMARY KEY (delivery_seq, number)
);

CREATE TABLE delivery_cursors (name TEXT PRIMARY KEY, seq BIGINT NOT NULL);

CREATE TABLE delivery_recoveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    since BIGINT NOT NULL,
    total BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE triggers (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    description TEXT,
    bot_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    authenticate BOOLEAN NOT NULL,
    schedule TEXT,
    timezone TEXT,
    session_duration_ms BIGINT NOT NULL,
    blueprint_id TEXT,
    meta TEXT NOT NULL,
    last_trigger_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX triggers_by_blueprint ON triggers (blueprint_id, seq);

CREATE TABLE trigger_sessions (
    trigger_id TEXT NOT NULL,
    session TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_event_at BIGINT NOT NULL,
    PRIMARY KEY (trigger_id, session)
);

CREATE TABLE trigger_events (
    event_id TEXT PRIMARY KEY,
    trigger_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    contact_user_id TEXT,
    status TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE conversation_contacts (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_contacts_by_user ON conversation_contacts (user_id);

-- The trigger queue. A running job is claimed by one replica until `lease_until`.
CREATE TABLE jobs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    trigger_id TEXT NOT NULL,
    source TEXT NOT NULL,
    idempotency_key TEXT,
    method TEXT NOT NULL,
    content_type TEXT,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BYTEA NOT NULL,
    session TEXT,
    contact TEXT,
    received_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    budget BIGINT NOT NULL,
    due_at BIGINT NOT NULL,
    last_error TEXT,
    finished_at BIGINT,
    claimed_by TEXT,
    lease_until BIGINT
);
CREATE UNIQUE INDEX jobs_by_idempotency_key ON jobs (trigger_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX jobs_by_status ON jobs (status, due_at);
CREATE INDEX jobs_by_trigger ON jobs (trigger_id, seq);
CREATE INDEX jobs_running ON jobs (trigger_id, session) WHERE status = 'running';

-- Which record an installation made under each dedupe key (see dedupe.rs).
CREATE TABLE dedupe_keys (
    installation_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    record_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (installation_id, kind, key)
);
CREATE INDEX dedupe_keys_by_age ON dedupe_keys (installation_id, created_at);
"#,
    // Who takes part in which conversation: added by the bot, by writing a message, or as a
    // trigger event's contact (those before this migration included). Lists ordered by
    // update have their indexes.
    r#"
CREATE TABLE participants (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_by_user ON participants (user_id);
INSERT INTO participants (conversation_id, user_id, created_at)
    SELECT conversation_id, user_id, MIN(created_at) FROM messages GROUP BY conversation_id, user_id
    ON CONFLICT DO NOTHING;
INSERT INTO participants (conversation_id, user_id, created_at)
    SELECT conversation_id, user_id, created_at FROM conversation_contacts
    ON CONFLICT DO NOTHING;
CREATE INDEX conversations_by_update ON conversations (updated_at, seq);
CREATE INDEX users_by_update ON users (updated_at, seq);
"#,
    // The trace context of the write that published an entry, for its delivery.
    "ALTER TABLE outbox ADD COLUMN traceparent TEXT;",
    // Plugin code kept with the installations, so that every replica serves them; the
    // installations' sidecars are sealed from here on (see sealing.rs).
    r#"
CREATE TABLE plugin_code (
    hash TEXT PRIMARY KEY,
    code BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
"#,
];

/// Brings the database's schema up to date, under a session advisory lock held on
/// `client` meanwhile: a replica that starts while another migrates waits, then finds
/// the work done. Refuses a schema newer than this sluice knows.
pub(super) async fn migrate(client: &mut deadpool_postgres::Object) -> anyhow::Result<()> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&locks::MIGRATIONS])
        .await?;
    let result = apply(client).await;
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&locks::MIGRATIONS])
        .await?;
    result
}

async fn apply(client: &mut deadpool_postgres::Object) -> anyhow::Result<()> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS sluice_migrations (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await?;
    let applied: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM sluice_migrations", &[])
        .await?
        .get(0);
    let known = MIGRATIONS.len() as i32;
    anyhow::ensure!(
        applied <= known,
        "the database's schema is version {applied}, newer than this sluice knows (version {known}): \
         run a sluice at least as new as the one that migrated it"
    );
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied as usize) {
        let version = index as i32 + 1;
        let tx = client.transaction().await?;
        tx.batch_execute(migration)
            .await
            .with_context(|| format!("schema migration {version} failed"))?;
        tx.execute(
            "INSERT INTO sluice_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &crate::time::now_ms()],
        )
        .await?;
        tx.commit().await?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}
