//! The embedded store: one SQLite database in the data folder, in WAL mode.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;
use tokio::sync::watch;

use super::*;
use crate::envelope::Data;
use crate::ids::record_id;
use crate::time::now_ms;

mod delivery;
mod triggers;
mod writer;

use delivery::raw_entry;
use writer::{GroupWriter, OutboxAnnouncer};

/// Schema versions, applied in order; `PRAGMA user_version` counts how many ran.
const MIGRATIONS: &[&str] = &[
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
    delivery::MIGRATION,
    triggers::MIGRATION,
];

/// How many connections serve reads, beside the one the writer owns.
const READERS: usize = 4;
/// Prepared statements kept per connection: every statement the store runs fits.
const STATEMENT_CACHE: usize = 128;

/// Keeps each cached statement's query plan whatever values are bound to it. The bundled
/// SQLite is built with STAT4, under which binding new values to some parameters marks
/// a statement for re-preparing at its next step: that undid the statement cache on hot
/// reads (a reprepare was 3% of delivery CPU). Plans here never depend on bound values
/// (no ANALYZE statistics, no LIKE), so nothing is lost.
fn stable_plans(connection: &Connection) -> rusqlite::Result<()> {
    connection.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// The embedded SQLite store. Writes go through one writer thread that commits them in
/// groups ([`writer`]); reads use a small pool of their own connections, which WAL lets
/// run while the writer writes.
pub struct SqliteStore {
    writer: GroupWriter,
    readers: Vec<Arc<Mutex<Connection>>>,
    next_reader: AtomicUsize,
    /// The highest outbox seq committed, announced to outbox readers (see delivery.rs).
    published: Arc<tokio::sync::watch::Sender<i64>>,
}

impl SqliteStore {
    /// Opens (creating if needed) `sluice.db` in `data_dir` and brings its schema up to date.
    pub fn open(data_dir: &Path) -> anyhow::Result<SqliteStore> {
        let path = data_dir.join("sluice.db");
        let open = || -> anyhow::Result<Connection> {
            let connection = Connection::open(&path)?;
            connection.busy_timeout(std::time::Duration::from_secs(10))?;
            connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
            stable_plans(&connection)?;
            Ok(connection)
        };
        let writer = open().with_context(|| format!("cannot open the store at {}", path.display()))?;
        // Readers are opened once the writer has set up the schema (and WAL mode).
        let readers = |_: &Arc<Mutex<Connection>>| {
            (0..READERS)
                .map(|_| {
                    let reader = open()?;
                    reader.pragma_update(None, "query_only", "ON")?;
                    Ok(Arc::new(Mutex::new(reader)))
                })
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let store = Self::prepare(writer, readers);
        store.with_context(|| format!("cannot prepare the store at {}", path.display()))
    }

    /// A store in memory, for unit tests. Reads share the writer's connection, since
    /// another connection would open another database.
    pub fn in_memory() -> anyhow::Result<SqliteStore> {
        Self::prepare(Connection::open_in_memory()?, |writer| Ok(vec![writer.clone()]))
    }

    fn prepare(
        mut connection: Connection,
        readers: impl FnOnce(&Arc<Mutex<Connection>>) -> anyhow::Result<Vec<Arc<Mutex<Connection>>>>,
    ) -> anyhow::Result<SqliteStore> {
        connection.pragma_update(None, "journal_mode", "WAL")?;
        // FULL: a write that returned is on disk, so nothing acknowledged is lost. Group
        // commit keeps that affordable.
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        stable_plans(&connection)?;
        let applied: i64 = connection.pragma_query_value(None, "user_version", |row| row.get(0))?;
        let applied = usize::try_from(applied).unwrap_or(0);
        anyhow::ensure!(
            applied <= MIGRATIONS.len(),
            "the store was written by a newer sluice (schema {applied}, this one knows {})",
            MIGRATIONS.len()
        );
        for (index, migration) in MIGRATIONS.iter().enumerate().skip(applied) {
            let tx = connection.transaction()?;
            tx.execute_batch(migration)
                .with_context(|| format!("schema migration {} failed", index + 1))?;
            tx.pragma_update(None, "user_version", (index + 1) as i64)?;
            tx.commit()?;
        }
        let outbox = OutboxAnnouncer::install(&mut connection)?;
        let published = outbox.published();
        let connection = Arc::new(Mutex::new(connection));
        let readers = readers(&connection)?;
        Ok(SqliteStore {
            writer: GroupWriter::start(connection, outbox)?,
            readers,
            next_reader: AtomicUsize::new(0),
            published,
        })
    }

    /// Runs a read on a free reader connection (or waits for the next in turn).
    fn with<T>(&self, work: impl FnOnce(&mut Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed);
        let count = self.readers.len();
        let free = (0..count).find_map(|offset| self.readers[(start + offset) % count].try_lock().ok());
        let mut connection = match free {
            Some(connection) => connection,
            None => self.readers[start % count]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        work(&mut connection)
    }

    /// Runs a write in the writer's next group commit; the result is there once it is on
    /// disk.
    fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Pending<T> {
        self.writer.write(work)
    }
}

/// Runs one statement, prepared once per connection: the store's statements are few and
/// run again and again, and parsing SQL costs more than running these.
pub(super) fn execute(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    connection.prepare_cached(sql)?.execute(params)
}

fn publish(
    tx: &Connection,
    entry_type: &str,
    integration_id: Option<&str>,
    time: i64,
    data: &str,
) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT INTO outbox (id, type, time, integration_id, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![record_id("ntf"), entry_type, time, integration_id, data],
    )?;
    Ok(())
}

fn parse_json(text: String) -> Value {
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

fn parse_tags(text: String) -> Tags {
    serde_json::from_str(&text).unwrap_or_default()
}

fn encode_token(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(seq.to_string())
}

fn decode_token(token: &Option<String>) -> anyhow::Result<Option<i64>> {
    let Some(token) = token else { return Ok(None) };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| StoreError::BadPageToken(token.clone()).into())
}

/// Builds a newest-first page query: `base` must select `seq` first and end in a WHERE
/// clause (`WHERE 1` at least) that `conditions` extend.
fn page<T>(
    connection: &Connection,
    base: &str,
    mut conditions: Vec<String>,
    mut values: Vec<rusqlite::types::Value>,
    page: &PageRequest,
    map: impl Fn(&Row) -> rusqlite::Result<T>,
) -> anyhow::Result<Page<T>> {
    if let Some(before) = decode_token(&page.token)? {
        conditions.push("seq < ?".into());
        values.push(before.into());
    }
    let limit = page.limit();
    let mut sql = base.to_string();
    for condition in &conditions {
        sql.push_str(" AND ");
        sql.push_str(condition);
    }
    sql.push_str(&format!(" ORDER BY seq DESC LIMIT {}", limit + 1));
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement
        .query_map(params_from_iter(values), |row| Ok((row.get::<_, i64>(0)?, map(row)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(seq, _)| encode_token(*seq))
    } else {
        None
    };
    Ok(Page {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next_token,
    })
}

/// Conditions requiring an entity to carry all `tags` (in the `<kind>_tags` table).
fn tag_conditions(kind: &str, tags: &Tags, conditions: &mut Vec<String>, values: &mut Vec<rusqlite::types::Value>) {
    for (key, value) in tags {
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM {kind}_tags t WHERE t.owner_id = id AND t.key = ? AND t.value = ?)"
        ));
        values.push(key.clone().into());
        values.push(value.clone().into());
    }
}

fn insert_tags(tx: &Connection, kind: &str, owner_id: &str, tags: &Tags) -> anyhow::Result<()> {
    let mut statement = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {kind}_tags (owner_id, key, value) VALUES (?1, ?2, ?3)"
    ))?;
    for (key, value) in tags {
        statement.execute(params![owner_id, key, value])?;
    }
    Ok(())
}

const EVENT_COLUMNS: &str =
    "seq, id, installation_id, type, payload, conversation_id, user_id, message_id, status, failure_reason, created_at";

fn event_row(row: &Row) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        event_type: row.get(3)?,
        payload: parse_json(row.get(4)?),
        conversation_id: row.get(5)?,
        user_id: row.get(6)?,
        message_id: row.get(7)?,
        status: row.get(8)?,
        failure_reason: row.get(9)?,
        created_at: row.get(10)?,
    })
}

const CONVERSATION_COLUMNS: &str =
    "seq, id, installation_id, integration, channel, tags, message_count, created_at, updated_at";

fn conversation_row(row: &Row) -> rusqlite::Result<ConversationRecord> {
    Ok(ConversationRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        integration: row.get(3)?,
        channel: row.get(4)?,
        tags: parse_tags(row.get(5)?),
        message_count: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

const USER_COLUMNS: &str = "seq, id, installation_id, tags, name, picture_url, created_at, updated_at";

fn user_row(row: &Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        tags: parse_tags(row.get(3)?),
        name: row.get(4)?,
        picture_url: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

const MESSAGE_COLUMNS: &str =
    "seq, id, installation_id, conversation_id, user_id, type, payload, direction, tags, created_at, updated_at";

fn message_row(row: &Row) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        conversation_id: row.get(3)?,
        user_id: row.get(4)?,
        message_type: row.get(5)?,
        payload: parse_json(row.get(6)?),
        direction: row.get(7)?,
        tags: parse_tags(row.get(8)?),
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

/// The state at `key`, read inside a transaction.
fn state_row(tx: &Connection, key: &StateKey) -> anyhow::Result<Option<StateRecord>> {
    Ok(tx
        .prepare_cached(
            "SELECT id, payload, created_at, updated_at FROM states
             WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
        )?
        .query_row(
            params![key.installation_id, key.scope.as_str(), key.owner_id, key.name],
            |row| {
                Ok(StateRecord {
                    id: row.get(0)?,
                    key: key.clone(),
                    payload: parse_json(row.get(1)?),
                    created_at: row.get(2)?,
                    updated_at: row.get(3)?,
                })
            },
        )
        .optional()?)
}

fn installation_row(row: &Row) -> rusqlite::Result<InstallationRecord> {
    Ok(InstallationRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        webhook_id: row.get(2)?,
        plugin_hash: row.get(3)?,
        sidecar: row.get(4)?,
        registered_at: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

fn one<T>(
    connection: &Connection,
    sql: &str,
    id: &str,
    map: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> anyhow::Result<Option<T>> {
    Ok(connection.prepare_cached(sql)?.query_row([id], map).optional()?)
}

/// Inserts a new conversation with its tags and publishes it as `chat:channel:created`,
/// inside the caller's transaction.
fn insert_conversation(
    tx: &Connection,
    installation_id: &str,
    integration: &str,
    channel: &str,
    tags: &Tags,
) -> anyhow::Result<ConversationRecord> {
    let now = now_ms();
    let conversation = ConversationRecord {
        id: record_id("conv"),
        installation_id: installation_id.to_string(),
        integration: integration.to_string(),
        channel: channel.to_string(),
        tags: tags.clone(),
        message_count: 0,
        created_at: now,
        updated_at: now,
    };
    execute(
        tx,
        "INSERT INTO conversations (id, installation_id, integration, channel, tags, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            conversation.id,
            installation_id,
            integration,
            channel,
            serde_json::to_string(tags)?,
            now
        ],
    )?;
    insert_tags(tx, "conversation", &conversation.id, tags)?;
    publish(
        tx,
        "chat:channel:created",
        Some(installation_id),
        now,
        &Data::Conversation((&conversation).into()).to_json(),
    )?;
    Ok(conversation)
}

/// An event with its row's payload and its outbox entry already serialised: made before
/// the write where it can be, so that the writer thread, which every write waits for,
/// only inserts.
pub(super) struct EventRow {
    event: EventRecord,
    payload: String,
    outbox_data: String,
}

impl EventRow {
    pub(super) fn new(event: EventRecord) -> EventRow {
        EventRow {
            payload: event.payload.to_string(),
            outbox_data: Data::Event((&event).into()).to_json(),
            event,
        }
    }
}

/// Inserts an event and publishes it to the outbox, inside the caller's transaction.
fn insert_event_row(tx: &Connection, row: &EventRow) -> anyhow::Result<()> {
    let event = &row.event;
    execute(tx,
        "INSERT INTO events (id, installation_id, type, payload, conversation_id, user_id, message_id, status, failure_reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            event.id,
            event.installation_id,
            event.event_type,
            row.payload,
            event.conversation_id,
            event.user_id,
            event.message_id,
            event.status,
            event.failure_reason,
            event.created_at
        ],
    )?;
    publish(
        tx,
        &event.event_type,
        event.installation_id.as_deref(),
        event.created_at,
        &row.outbox_data,
    )
}

impl MetaStore for SqliteStore {
    fn meta(&self, key: &str) -> anyhow::Result<Option<String>> {
        self.with(|c| one(c, "SELECT value FROM meta WHERE key = ?1", key, |row| row.get(0)))
    }

    fn set_meta(&self, key: &str, value: &str) -> Pending<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |c| {
            execute(
                c,
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
            Ok(())
        })
    }

    fn installations(&self) -> anyhow::Result<Vec<InstallationRecord>> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT id, name, webhook_id, plugin_hash, sidecar, registered_at, created_at, updated_at
                 FROM installations ORDER BY name",
            )?;
            Ok(statement
                .query_map([], installation_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn save_installation(&self, record: &InstallationRecord) -> Pending<()> {
        let record = record.clone();
        self.write(move |c| {
            execute(c,
                "INSERT INTO installations (id, name, webhook_id, plugin_hash, sidecar, registered_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET
                    name = ?2, webhook_id = ?3, plugin_hash = ?4, sidecar = ?5, registered_at = ?6, updated_at = ?8",
                params![
                    record.id,
                    record.name,
                    record.webhook_id,
                    record.plugin_hash,
                    record.sidecar,
                    record.registered_at,
                    record.created_at,
                    record.updated_at
                ],
            )?;
            Ok(())
        })
    }

    fn delete_installation(&self, id: &str) -> Pending<()> {
        let id = id.to_string();
        self.write(move |c| {
            execute(c, "DELETE FROM installations WHERE id = ?1", [id])?;
            Ok(())
        })
    }
}

impl EventStore for SqliteStore {
    fn insert_event(&self, event: &EventRecord) -> Pending<()> {
        let row = EventRow::new(event.clone());
        self.write(move |c| insert_event_row(c, &row))
    }

    fn event(&self, id: &str) -> anyhow::Result<Option<EventRecord>> {
        self.with(|c| {
            one(
                c,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
                id,
                event_row,
            )
        })
    }

    fn events(&self, query: &EventQuery) -> anyhow::Result<Page<EventRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        for (column, value) in [
            ("type", &query.event_type),
            ("conversation_id", &query.conversation_id),
            ("user_id", &query.user_id),
            ("message_id", &query.message_id),
            ("status", &query.status),
        ] {
            if let Some(value) = value {
                conditions.push(format!("{column} = ?"));
                values.push(value.clone().into());
            }
        }
        self.with(|c| {
            page(
                c,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1"),
                conditions,
                values,
                &query.page,
                event_row,
            )
        })
    }
}

impl StateStore for SqliteStore {
    fn state(&self, key: &StateKey) -> anyhow::Result<Option<StateRecord>> {
        self.with(|c| {
            let found = c
                .prepare_cached(
                    "SELECT id, payload, created_at, updated_at FROM states
                     WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
                )?
                .query_row(
                    params![key.installation_id, key.scope.as_str(), key.owner_id, key.name],
                    |row| {
                        Ok(StateRecord {
                            id: row.get(0)?,
                            key: key.clone(),
                            payload: parse_json(row.get(1)?),
                            created_at: row.get(2)?,
                            updated_at: row.get(3)?,
                        })
                    },
                )
                .optional()?;
            Ok(found)
        })
    }

    fn put_state(&self, key: &StateKey, payload: &Value) -> Pending<StateRecord> {
        let now = now_ms();
        let (key, payload) = (key.clone(), payload.clone());
        self.write(move |tx| {
            execute(tx,
                "INSERT INTO states (installation_id, scope, owner_id, name, id, payload, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (installation_id, scope, owner_id, name) DO UPDATE SET payload = ?6, updated_at = ?7",
                params![key.installation_id, key.scope.as_str(), key.owner_id, key.name, record_id("state"), payload.to_string(), now],
            )?;
            let (id, created_at) = tx.query_row(
                "SELECT id, created_at FROM states WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
                params![key.installation_id, key.scope.as_str(), key.owner_id, key.name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            Ok(StateRecord { id, key, payload, created_at, updated_at: now })
        })
    }

    fn delete_state(&self, key: &StateKey) -> Pending<bool> {
        let key = key.clone();
        self.write(move |c| {
            let deleted = execute(
                c,
                "DELETE FROM states WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
                params![key.installation_id, key.scope.as_str(), key.owner_id, key.name],
            )?;
            Ok(deleted > 0)
        })
    }

    fn get_or_put_state(&self, key: &StateKey, payload: &Value) -> Pending<(StateRecord, bool)> {
        let now = now_ms();
        let (key, payload) = (key.clone(), payload.clone());
        self.write(move |tx| {
            let created = execute(
                tx,
                "INSERT INTO states (installation_id, scope, owner_id, name, id, payload, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (installation_id, scope, owner_id, name) DO NOTHING",
                params![
                    key.installation_id,
                    key.scope.as_str(),
                    key.owner_id,
                    key.name,
                    record_id("state"),
                    payload.to_string(),
                    now
                ],
            )? > 0;
            let state = state_row(tx, &key)?.context("the state vanished inside its transaction")?;
            Ok((state, created))
        })
    }

    fn patch_state(
        &self,
        key: &StateKey,
        patch: &serde_json::Map<String, Value>,
        check: StateCheck,
    ) -> Pending<Patched> {
        let now = now_ms();
        let (key, patch) = (key.clone(), patch.clone());
        self.write(move |tx| {
            let Some(mut state) = state_row(tx, &key)? else {
                return Ok(Patched::Missing);
            };
            let mut fields = match state.payload {
                Value::Object(fields) => fields,
                _ => serde_json::Map::new(),
            };
            for (name, value) in patch {
                if value.is_null() {
                    fields.remove(&name);
                } else {
                    fields.insert(name, value);
                }
            }
            state.payload = Value::Object(fields);
            if let Err(why) = check(&state.payload) {
                return Ok(Patched::Refused(why));
            }
            state.updated_at = now;
            execute(
                tx,
                "UPDATE states SET payload = ?5, updated_at = ?6
                 WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
                params![
                    key.installation_id,
                    key.scope.as_str(),
                    key.owner_id,
                    key.name,
                    state.payload.to_string(),
                    now
                ],
            )?;
            Ok(Patched::Done(state))
        })
    }
}

impl ChatStore for SqliteStore {
    fn get_or_create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<(ConversationRecord, bool)> {
        let (installation_id, integration, channel, tags) = (
            installation_id.to_string(),
            integration.to_string(),
            channel.to_string(),
            tags.clone(),
        );
        self.write(move |tx| {
            let (installation_id, integration, channel, tags) =
                (installation_id.as_str(), integration.as_str(), channel.as_str(), &tags);
            let mut conditions = vec!["installation_id = ?".to_string(), "channel = ?".to_string()];
            let mut values: Vec<rusqlite::types::Value> =
                vec![installation_id.to_string().into(), channel.to_string().into()];
            tag_conditions("conversation", tags, &mut conditions, &mut values);
            let sql = format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE {} ORDER BY seq LIMIT 1",
                conditions.join(" AND ")
            );
            let found = tx
                .prepare_cached(&sql)?
                .query_row(params_from_iter(values), conversation_row)
                .optional()?;
            if let Some(conversation) = found {
                return Ok((conversation, false));
            }
            let conversation = insert_conversation(tx, installation_id, integration, channel, tags)?;
            Ok((conversation, true))
        })
    }

    fn conversation(&self, id: &str) -> anyhow::Result<Option<ConversationRecord>> {
        self.with(|c| {
            one(
                c,
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"),
                id,
                conversation_row,
            )
        })
    }

    fn conversations(&self, query: &EntityQuery) -> anyhow::Result<Page<ConversationRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        for (column, value) in [
            ("installation_id", &query.installation_id),
            ("channel", &query.channel),
            ("integration", &query.integration),
        ] {
            if let Some(value) = value {
                conditions.push(format!("{column} = ?"));
                values.push(value.clone().into());
            }
        }
        tag_conditions("conversation", &query.tags, &mut conditions, &mut values);
        self.with(|c| {
            page(
                c,
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE 1"),
                conditions,
                values,
                &query.page,
                conversation_row,
            )
        })
    }

    fn get_or_create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<(UserRecord, bool)> {
        let (installation_id, tags, name, picture_url) = (
            installation_id.map(str::to_string),
            tags.clone(),
            name.map(str::to_string),
            picture_url.map(str::to_string),
        );
        self.write(move |tx| {
            let (installation_id, tags, name, picture_url) = (
                installation_id.as_deref(),
                &tags,
                name.as_deref(),
                picture_url.as_deref(),
            );
            let mut conditions = vec!["installation_id IS ?".to_string()];
            let mut values: Vec<rusqlite::types::Value> = vec![installation_id.map(str::to_string).into()];
            tag_conditions("user", tags, &mut conditions, &mut values);
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE {} ORDER BY seq LIMIT 1",
                conditions.join(" AND ")
            );
            let found = tx
                .prepare_cached(&sql)?
                .query_row(params_from_iter(values), user_row)
                .optional()?;
            if let Some(user) = found {
                return Ok((user, false));
            }
            let now = now_ms();
            let user = UserRecord {
                id: record_id("user"),
                installation_id: installation_id.map(str::to_string),
                tags: tags.clone(),
                name: name.map(str::to_string),
                picture_url: picture_url.map(str::to_string),
                created_at: now,
                updated_at: now,
            };
            execute(
                tx,
                "INSERT INTO users (id, installation_id, tags, name, picture_url, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![
                    user.id,
                    installation_id,
                    serde_json::to_string(tags)?,
                    name,
                    picture_url,
                    now
                ],
            )?;
            insert_tags(tx, "user", &user.id, tags)?;
            Ok((user, true))
        })
    }

    fn user(&self, id: &str) -> anyhow::Result<Option<UserRecord>> {
        self.with(|c| {
            one(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                id,
                user_row,
            )
        })
    }

    fn users(&self, query: &EntityQuery) -> anyhow::Result<Page<UserRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(installation_id) = &query.installation_id {
            conditions.push("installation_id = ?".into());
            values.push(installation_id.clone().into());
        }
        if let Some(conversation_id) = &query.conversation_id {
            // Those who wrote in it, and the contacts linked to it (trigger events).
            conditions.push(
                "id IN (SELECT user_id FROM messages WHERE conversation_id = ?
                        UNION SELECT user_id FROM conversation_contacts WHERE conversation_id = ?)"
                    .into(),
            );
            values.push(conversation_id.clone().into());
            values.push(conversation_id.clone().into());
        }
        tag_conditions("user", &query.tags, &mut conditions, &mut values);
        self.with(|c| {
            page(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE 1"),
                conditions,
                values,
                &query.page,
                user_row,
            )
        })
    }

    fn insert_message(&self, message: &MessageRecord) -> Pending<()> {
        let message = message.clone();
        self.write(move |tx| {
            let message = &message;
            execute(tx,
                "INSERT INTO messages (id, installation_id, conversation_id, user_id, type, payload, direction, tags, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    message.id,
                    message.installation_id,
                    message.conversation_id,
                    message.user_id,
                    message.message_type,
                    message.payload.to_string(),
                    message.direction,
                    serde_json::to_string(&message.tags)?,
                    message.created_at,
                    message.updated_at
                ],
            )?;
            insert_tags(tx, "message", &message.id, &message.tags)?;
            execute(tx,
                "UPDATE conversations SET message_count = message_count + 1, updated_at = ?2 WHERE id = ?1",
                params![message.conversation_id, message.created_at],
            )?;
            publish(
                tx,
                "chat:message:new",
                Some(&message.installation_id),
                message.created_at,
                &Data::Message(message.into()).to_json(),
            )?;
            Ok(())
        })
    }

    fn message(&self, id: &str) -> anyhow::Result<Option<MessageRecord>> {
        self.with(|c| {
            one(
                c,
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
                id,
                message_row,
            )
        })
    }

    fn update_message(&self, id: &str, tags: &TagChanges, payload: Option<&Value>) -> Pending<Option<MessageRecord>> {
        let now = now_ms();
        let (id, tags, payload) = (id.to_string(), tags.clone(), payload.cloned());
        self.write(move |tx| {
            let id = id.as_str();
            let found = tx
                .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"))?
                .query_row([id], message_row)
                .optional()?;
            let Some(mut message) = found else {
                return Ok(None);
            };
            for (key, value) in &tags {
                match value {
                    Some(value) => {
                        message.tags.insert(key.clone(), value.clone());
                    }
                    None => {
                        message.tags.remove(key);
                        execute(
                            tx,
                            "DELETE FROM message_tags WHERE owner_id = ?1 AND key = ?2",
                            params![id, key],
                        )?;
                    }
                }
            }
            let set: Tags = tags
                .iter()
                .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
                .collect();
            insert_tags(tx, "message", id, &set)?;
            if let Some(payload) = payload {
                message.payload = payload;
            }
            message.updated_at = now;
            execute(
                tx,
                "UPDATE messages SET tags = ?2, payload = ?3, updated_at = ?4 WHERE id = ?1",
                params![
                    id,
                    serde_json::to_string(&message.tags)?,
                    message.payload.to_string(),
                    now
                ],
            )?;
            Ok(Some(message))
        })
    }

    fn messages(&self, query: &EntityQuery) -> anyhow::Result<Page<MessageRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(conversation_id) = &query.conversation_id {
            conditions.push("conversation_id = ?".into());
            values.push(conversation_id.clone().into());
        }
        if let Some(installation_id) = &query.installation_id {
            conditions.push("installation_id = ?".into());
            values.push(installation_id.clone().into());
        }
        tag_conditions("message", &query.tags, &mut conditions, &mut values);
        self.with(|c| {
            page(
                c,
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE 1"),
                conditions,
                values,
                &query.page,
                message_row,
            )
        })
    }
}

impl OutboxStore for SqliteStore {
    fn outbox_published(&self) -> watch::Receiver<i64> {
        self.published.subscribe()
    }

    fn outbox_types_after(&self, seq: i64, limit: usize) -> anyhow::Result<Vec<(i64, String)>> {
        self.with(|c| {
            let mut statement =
                c.prepare_cached("SELECT seq, type FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
            let entries = statement
                .query_map(params![seq, limit as i64], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(entries)
        })
    }

    fn raw_outbox_after(&self, seq: i64, limit: usize) -> anyhow::Result<Vec<RawOutboxEntry>> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT seq, id, type, time, integration_id, data FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let entries = statement
                .query_map(params![seq, limit as i64], |row| raw_entry(row, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(entries)
        })
    }

    fn outbox_after(&self, seq: i64, limit: usize) -> anyhow::Result<Vec<OutboxEntry>> {
        self.with(|c| {
            let mut statement = c.prepare_cached(
                "SELECT seq, id, type, time, integration_id, data FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let entries = statement
                .query_map(params![seq, limit as i64], |row| {
                    Ok(OutboxEntry {
                        seq: row.get(0)?,
                        id: row.get(1)?,
                        entry_type: row.get(2)?,
                        time: row.get(3)?,
                        integration_id: row.get(4)?,
                        data: parse_json(row.get(5)?),
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(entries)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn event(id: &str, event_type: &str) -> EventRecord {
        EventRecord {
            id: id.into(),
            installation_id: Some("inst_a".into()),
            event_type: event_type.into(),
            payload: json!({"n": id}),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "processed".into(),
            failure_reason: None,
            created_at: now_ms(),
        }
    }

    #[test]
    fn events_page_newest_first_and_publish_to_the_outbox() {
        let store = SqliteStore::in_memory().unwrap();
        for n in 0..5 {
            store
                .insert_event(&event(&format!("evt_{n}"), if n % 2 == 0 { "a:even" } else { "a:odd" }))
                .wait()
                .unwrap();
        }
        let first = store
            .events(&EventQuery {
                page: PageRequest {
                    size: Some(2),
                    token: None,
                },
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            first.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["evt_4", "evt_3"]
        );
        let second = store
            .events(&EventQuery {
                page: PageRequest {
                    size: Some(2),
                    token: first.next_token.clone(),
                },
                ..Default::default()
            })
            .unwrap();
        assert_eq!(
            second.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["evt_2", "evt_1"]
        );
        let even = store
            .events(&EventQuery {
                event_type: Some("a:even".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(even.items.len(), 3);
        assert!(even.next_token.is_none());

        let outbox = store.outbox_after(0, 100).unwrap();
        assert_eq!(outbox.len(), 5);
        assert_eq!(outbox[0].entry_type, "a:even");
        assert_eq!(outbox[0].data["event"]["id"], "evt_0");
    }

    #[test]
    fn a_forged_page_token_is_refused() {
        let store = SqliteStore::in_memory().unwrap();
        let query = EventQuery {
            page: PageRequest {
                size: None,
                token: Some("nonsense!".into()),
            },
            ..Default::default()
        };
        let error = store.events(&query).unwrap_err();
        assert!(error.downcast_ref::<StoreError>().is_some(), "{error:#}");
    }

    #[test]
    fn state_is_keyed_by_installation() {
        let store = SqliteStore::in_memory().unwrap();
        let mine = StateKey {
            installation_id: "inst_a".into(),
            scope: StateScope::Integration,
            owner_id: "inst_a".into(),
            name: "s".into(),
        };
        let theirs = StateKey {
            installation_id: "inst_b".into(),
            ..mine.clone()
        };
        store.put_state(&mine, &json!({"v": 1})).wait().unwrap();
        assert_eq!(store.state(&mine).unwrap().unwrap().payload, json!({"v": 1}));
        assert!(store.state(&theirs).unwrap().is_none());
        let updated = store.put_state(&mine, &json!({"v": 2})).wait().unwrap();
        assert_eq!(store.state(&mine).unwrap().unwrap().id, updated.id);
        assert!(store.delete_state(&mine).wait().unwrap());
        assert!(!store.delete_state(&mine).wait().unwrap());
    }

    #[test]
    fn get_or_put_and_patch_state() {
        let store = SqliteStore::in_memory().unwrap();
        let key = StateKey {
            installation_id: String::new(),
            scope: StateScope::Bot,
            owner_id: "bot_1".into(),
            name: "settings".into(),
        };
        let anything: fn() -> StateCheck = || Box::new(|_| Ok(()));
        assert!(matches!(
            store
                .patch_state(&key, &serde_json::Map::new(), anything())
                .wait()
                .unwrap(),
            Patched::Missing
        ));
        let (first, created) = store.get_or_put_state(&key, &json!({"a": 1, "b": 2})).wait().unwrap();
        assert!(created);
        let (again, created) = store.get_or_put_state(&key, &json!({"other": true})).wait().unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        assert_eq!(again.payload, json!({"a": 1, "b": 2}));
        let patch = json!({"b": null, "c": [3]});
        let Patched::Done(patched) = store
            .patch_state(&key, patch.as_object().unwrap(), anything())
            .wait()
            .unwrap()
        else {
            panic!("the state exists and any payload passes");
        };
        assert_eq!(patched.payload, json!({"a": 1, "c": [3]}));
        assert_eq!(store.state(&key).unwrap().unwrap().payload, patched.payload);

        // The check sees the merged state, and a refusal writes nothing.
        let needs_a: StateCheck = Box::new(|merged| match merged.get("a") {
            Some(_) => Ok(()),
            None => Err("a is required".into()),
        });
        let patch = json!({"a": null});
        match store
            .patch_state(&key, patch.as_object().unwrap(), needs_a)
            .wait()
            .unwrap()
        {
            Patched::Refused(why) => assert_eq!(why, "a is required"),
            other => panic!("removing a must be refused: {other:?}"),
        }
        assert_eq!(store.state(&key).unwrap().unwrap().payload, json!({"a": 1, "c": [3]}));
    }

    #[test]
    fn conversations_are_found_by_all_their_tags() {
        let store = SqliteStore::in_memory().unwrap();
        let tags: Tags = [("channelId".to_string(), "C1".to_string())].into();
        let (first, created) = store
            .get_or_create_conversation("inst_a", "chat", "channel", &tags)
            .wait()
            .unwrap();
        assert!(created);
        let (again, created) = store
            .get_or_create_conversation("inst_a", "chat", "channel", &tags)
            .wait()
            .unwrap();
        assert!(!created);
        assert_eq!(first.id, again.id);
        let (other_install, created) = store
            .get_or_create_conversation("inst_b", "chat", "channel", &tags)
            .wait()
            .unwrap();
        assert!(created);
        assert_ne!(other_install.id, first.id);
        let types: Vec<String> = store
            .outbox_after(0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.entry_type)
            .collect();
        assert_eq!(types, ["chat:channel:created", "chat:channel:created"]);
    }

    #[test]
    fn messages_count_on_their_conversation() {
        let store = SqliteStore::in_memory().unwrap();
        let (conversation, _) = store
            .get_or_create_conversation("inst_a", "chat", "channel", &Tags::new())
            .wait()
            .unwrap();
        let (user, _) = store
            .get_or_create_user(Some("inst_a"), &[("userId".into(), "U1".into())].into(), None, None)
            .wait()
            .unwrap();
        let now = now_ms();
        store
            .insert_message(&MessageRecord {
                id: "msg_1".into(),
                installation_id: "inst_a".into(),
                conversation_id: conversation.id.clone(),
                user_id: user.id.clone(),
                message_type: "text".into(),
                payload: json!({"text": "hi"}),
                direction: "incoming".into(),
                tags: [("messageId".to_string(), "m1".to_string())].into(),
                created_at: now,
                updated_at: now,
            })
            .wait()
            .unwrap();
        assert_eq!(store.conversation(&conversation.id).unwrap().unwrap().message_count, 1);
        let by_tag = store
            .messages(&EntityQuery {
                tags: [("messageId".to_string(), "m1".to_string())].into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_tag.items.len(), 1);
        assert_eq!(by_tag.items[0].payload, json!({"text": "hi"}));

        let changes: TagChanges = [
            ("messageId".to_string(), None),
            ("threadId".to_string(), Some("t1".to_string())),
        ]
        .into();
        let updated = store
            .update_message("msg_1", &changes, Some(&json!({"text": "edited"})))
            .wait()
            .unwrap()
            .unwrap();
        assert_eq!(updated.tags, [("threadId".to_string(), "t1".to_string())].into());
        assert_eq!(
            store.message("msg_1").unwrap().unwrap().payload,
            json!({"text": "edited"})
        );
        let by_old_tag = store
            .messages(&EntityQuery {
                tags: [("messageId".to_string(), "m1".to_string())].into(),
                ..Default::default()
            })
            .unwrap();
        assert!(by_old_tag.items.is_empty(), "a removed tag no longer finds the message");
        let by_new_tag = store
            .messages(&EntityQuery {
                tags: [("threadId".to_string(), "t1".to_string())].into(),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_new_tag.items.len(), 1);
        assert!(
            store
                .update_message("msg_nope", &changes, None)
                .wait()
                .unwrap()
                .is_none()
        );
    }
}
