//! The embedded store: SQLite databases in the data folder, in WAL mode: `sluice.db` for
//! everything but the trigger queue, which has `queue.db` to itself ([`queue`]).
//!
//! Here the store opens its databases, runs reads on a small pool of connections and
//! hands writes to the group-committing writer ([`writer`]; one per database). The rest
//! is by responsibility: the schema and its migrations ([`schema`]), row mapping and
//! paging shared by the parts ([`rows`]), then one file per capability: [`installations`]
//! (settings and installations), [`events`], [`state`], [`chat`], [`dedupe`], [`outbox`],
//! [`delivery`], [`triggers`] and [`queue`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::Connection;

use super::Pending;

mod chat;
mod dedupe;
mod delivery;
mod events;
mod installations;
mod outbox;
mod queue;
mod rows;
mod schema;
mod state;
mod triggers;
mod writer;

use queue::QueueDatabase;
use writer::GroupWriter;

/// How many connections serve reads, beside the one the writer owns.
const READERS: usize = 4;
/// The most writes one transaction of the store takes; more wait for the next one.
const MAX_BATCH: usize = 512;
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

/// What every connection needs: a wait for locks, and a statement cache whose plans hold.
fn tune(connection: &Connection) -> anyhow::Result<()> {
    connection.busy_timeout(Duration::from_secs(10))?;
    connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    stable_plans(connection)?;
    Ok(())
}

/// Opens a connection to the database at `path`.
fn connect(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open(path)?;
    tune(&connection)?;
    Ok(connection)
}

/// Opens a connection that only reads, beside the database's writer.
fn connect_reader(path: &Path) -> anyhow::Result<Arc<Mutex<Connection>>> {
    let reader = connect(path)?;
    reader.pragma_update(None, "query_only", "ON")?;
    Ok(Arc::new(Mutex::new(reader)))
}

/// The connections a database's reads run on, each read on a blocking thread.
struct Readers {
    connections: Vec<Arc<Mutex<Connection>>>,
    next: AtomicUsize,
}

impl Readers {
    fn new(connections: Vec<Arc<Mutex<Connection>>>) -> Arc<Readers> {
        Arc::new(Readers {
            connections,
            next: AtomicUsize::new(0),
        })
    }

    /// Runs a read on a free connection (or waits for the next in turn).
    fn run<T>(&self, work: impl FnOnce(&mut Connection) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let count = self.connections.len();
        let free = (0..count).find_map(|offset| self.connections[(start + offset) % count].try_lock().ok());
        let mut connection = match free {
            Some(connection) => connection,
            None => self.connections[start % count]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        };
        work(&mut connection)
    }

    /// Runs a read off the async worker threads.
    fn read<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Pending<T> {
        let readers = self.clone();
        Pending::off_thread(move || readers.run(work))
    }
}

/// Sets up the connection a database's writer owns: WAL, so that readers go on while it
/// writes, and FULL sync: a write that returned is on disk, so nothing acknowledged is
/// lost. Group commit keeps that affordable.
fn make_writer(connection: &Connection) -> anyhow::Result<()> {
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    tune(connection)
}

/// The embedded SQLite store. Writes go through one writer thread that commits them in
/// groups ([`writer`]); reads use a small pool of their own connections, which WAL lets
/// run while the writer writes. The trigger queue has a database and writer of its own.
pub struct SqliteStore {
    writer: GroupWriter,
    readers: Arc<Readers>,
    /// The highest outbox seq committed, announced to outbox readers (see outbox.rs).
    published: Arc<tokio::sync::watch::Sender<i64>>,
    /// `queue.db`: the trigger queue (see queue.rs).
    queue: QueueDatabase,
    /// Always true: the one process on these files leads every role.
    leader: tokio::sync::watch::Sender<bool>,
    /// Never changes: no other replica changes these files.
    changes: tokio::sync::watch::Sender<u64>,
    /// The database files, which a restart opens (none in memory).
    files: Vec<PathBuf>,
}

impl SqliteStore {
    /// Opens (creating if needed) `sluice.db` and `queue.db` in `data_dir` and brings their
    /// schemas up to date. Trigger events that were running when the process stopped are
    /// queued again.
    pub fn open(data_dir: &Path) -> anyhow::Result<SqliteStore> {
        let path = data_dir.join("sluice.db");
        let writer = connect(&path).with_context(|| format!("cannot open the store at {}", path.display()))?;
        // Readers are opened once the writer has set up the schema (and WAL mode).
        let readers = |_: &Arc<Mutex<Connection>>| (0..READERS).map(|_| connect_reader(&path)).collect();
        let queue_path = data_dir.join("queue.db");
        let queue = QueueDatabase::open(&queue_path)?;
        let store = Self::prepare(writer, readers, queue);
        let mut store = store.with_context(|| format!("cannot prepare the store at {}", path.display()))?;
        store.files = vec![path, queue_path];
        Ok(store)
    }

    /// A store in memory, for unit tests. Reads share the writer's connection, since
    /// another connection would open another database.
    #[cfg(any(test, feature = "bench"))]
    pub fn in_memory() -> anyhow::Result<SqliteStore> {
        let queue = QueueDatabase::in_memory()?;
        Self::prepare(Connection::open_in_memory()?, |writer| Ok(vec![writer.clone()]), queue)
    }

    fn prepare(
        mut connection: Connection,
        readers: impl FnOnce(&Arc<Mutex<Connection>>) -> anyhow::Result<Vec<Arc<Mutex<Connection>>>>,
        queue: QueueDatabase,
    ) -> anyhow::Result<SqliteStore> {
        make_writer(&connection)?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        schema::migrate(&mut connection, schema::MIGRATIONS, "store")?;
        let (announcement, published) = outbox::follow_published(&mut connection)?;
        let connection = Arc::new(Mutex::new(connection));
        let readers = readers(&connection)?;
        Ok(SqliteStore {
            writer: GroupWriter::start("store", connection, MAX_BATCH, announcement)?,
            readers: Readers::new(readers),
            published,
            queue,
            leader: tokio::sync::watch::Sender::new(true),
            changes: tokio::sync::watch::Sender::new(0),
            files: Vec::new(),
        })
    }

    /// Runs a read on a free reader connection, off the async worker threads.
    fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Pending<T> {
        self.readers.read(work)
    }

    /// Runs a write in the writer's next group commit; the result is there once it is on
    /// disk.
    fn write<T: Send + 'static>(&self, work: impl Fn(&Connection) -> anyhow::Result<T> + Send + 'static) -> Pending<T> {
        self.writer.write(work)
    }
}

/// Runs one statement, prepared once per connection: the store's statements are few and
/// run again and again, and parsing SQL costs more than running these.
pub(super) fn execute(connection: &Connection, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
    connection.prepare_cached(sql)?.execute(params)
}
