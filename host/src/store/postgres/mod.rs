//! The PostgreSQL store: everything the embedded store keeps, in one PostgreSQL database
//! that several sluice replicas share.
//!
//! Calls run as tasks on a pool of connections (`deadpool-postgres`, without TLS: put
//! the database on a private network or a local socket proxy). Each write is one
//! transaction, acknowledged once PostgreSQL committed it. The rest is by
//! responsibility, like the embedded store: the schema and its migrations ([`schema`]),
//! rows and paging ([`rows`]), then one file per capability: [`installations`],
//! [`events`], [`state`], [`chat`], [`outbox`], [`delivery`], [`triggers`] and
//! [`queue`]. What other replicas did arrives by `LISTEN` ([`listen`]), with polling
//! as the fallback.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime, Timeouts};
use tokio::sync::{Notify, watch};
use tokio_postgres::NoTls;

use super::sealing::SecretKey;
use super::{Pending, StoreError};

mod chat;
mod dedupe;
mod delivery;
mod events;
pub mod installations;
mod leadership;
mod listen;
mod outbox;
mod queue;
mod rows;
mod schema;
mod state;
mod triggers;

/// Connections in the pool unless the configuration says otherwise.
pub const DEFAULT_POOL_SIZE: usize = 16;
/// How long a call waits for a connection, or for one to be made, before it fails as
/// "the store cannot be reached".
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The PostgreSQL store. Cheap to share: the pool and the signals are shared handles.
pub struct PostgresStore {
    pool: Pool,
    /// The highest outbox seq assigned, cluster-wide (see outbox.rs).
    published: Arc<watch::Sender<i64>>,
    /// Numbers what this replica's writes published (see outbox.rs).
    sequencer: Arc<outbox::Sequencer>,
    /// Woken when another replica (or this one) queued or freed trigger work.
    work: Arc<Notify>,
    /// Counts the changes other replicas announced (see listen.rs).
    changes: Arc<watch::Sender<u64>>,
    /// This replica's name in job claims (see queue.rs).
    replica_id: String,
    /// How to reach the database, for the connections that are not pooled.
    config: tokio_postgres::Config,
    /// Seals and opens the installations' sidecars.
    secret_key: Option<Arc<SecretKey>>,
    /// The background tasks (sequencer, listener, leadership), stopped with the store.
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        for task in self
            .tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
        {
            task.abort();
        }
    }
}

/// The URL without its password, for messages.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(a URL that does not parse)".into(),
    }
}

impl PostgresStore {
    /// Connects to the database at `url`, brings its schema up to date (once, whichever
    /// replica gets there first) and starts following what other replicas publish.
    /// `replica_id` names this replica in the claims it makes; claims it left behind in
    /// an earlier life are given back. Sidecars are sealed with `secret_key`; without
    /// one, an installation with a sidecar cannot be kept.
    pub async fn connect(
        url: &str,
        pool_size: usize,
        replica_id: String,
        secret_key: Option<SecretKey>,
    ) -> anyhow::Result<PostgresStore> {
        let shown = redacted(url);
        let mut config: tokio_postgres::Config = url
            .parse()
            .with_context(|| format!("the store URL {shown} is not a PostgreSQL connection URL"))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name("sluice");
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size.max(2))
            .runtime(Runtime::Tokio1)
            .timeouts(Timeouts {
                wait: Some(CONNECT_TIMEOUT),
                create: Some(CONNECT_TIMEOUT),
                recycle: Some(CONNECT_TIMEOUT),
            })
            .build()
            .context("cannot set up the connection pool")?;
        let mut client = pool
            .get()
            .await
            .map_err(|error| anyhow::anyhow!("cannot connect to the store at {shown}: {error}"))?;
        schema::migrate(&mut client)
            .await
            .with_context(|| format!("cannot prepare the store at {shown}"))?;
        let head = outbox::head(&client).await?;
        queue::release_own_claims(&client, &replica_id).await?;
        drop(client);

        let published = Arc::new(watch::Sender::new(head));
        let sequencer = Arc::new(outbox::Sequencer::default());
        let work = Arc::new(Notify::new());
        let changes = Arc::new(watch::Sender::new(0u64));
        let tasks = vec![
            tokio::spawn(outbox::run_sequencer(
                pool.clone(),
                sequencer.clone(),
                published.clone(),
            )),
            tokio::spawn(queue::renew_leases(pool.clone(), replica_id.clone())),
            tokio::spawn(listen::follow(
                config.clone(),
                pool.clone(),
                published.clone(),
                work.clone(),
                changes.clone(),
            )),
        ];
        Ok(PostgresStore {
            pool,
            published,
            sequencer,
            work,
            changes,
            replica_id,
            config,
            secret_key: secret_key.map(Arc::new),
            tasks: std::sync::Mutex::new(tasks),
        })
    }

    /// Starts competing for `role` (see [`leadership`]); the watch says whether this
    /// replica leads it.
    pub(super) fn compete_for(&self, role: &str) -> watch::Receiver<bool> {
        let (leading, watch) = watch::channel(false);
        let task = tokio::spawn(leadership::compete(self.config.clone(), role.to_string(), leading));
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(task);
        watch
    }

    /// Like [`PostgresStore::run`], and then tells every replica that `what`
    /// (subscriptions, triggers) changed: for writes of what replicas keep in memory.
    fn run_changing<T, W, F>(&self, what: &'static str, work: W) -> Pending<T>
    where
        T: Send + 'static,
        W: FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
        F: Future<Output = anyhow::Result<(deadpool_postgres::Object, T)>> + Send + 'static,
    {
        self.run(move |client| async move {
            let (client, value) = work(client).await?;
            client
                .execute("SELECT pg_notify($1, $2)", &[&listen::CHANGES, &what])
                .await?;
            Ok(value)
        })
    }

    /// Runs `work` on a pooled connection, as a task; connection losses come back as
    /// [`StoreError::Unavailable`].
    fn run<T, W, F>(&self, work: W) -> Pending<T>
    where
        T: Send + 'static,
        W: FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let pool = self.pool.clone();
        Pending::from_future(async move {
            let client = pool
                .get()
                .await
                .map_err(|error| StoreError::Unavailable(error.to_string()))?;
            work(client).await.map_err(classify)
        })
    }

    /// Like [`PostgresStore::run`], and then waits for the outbox sequencer to number
    /// what the write published: for writes that publish.
    fn run_publishing<T, W, F>(&self, work: W) -> Pending<T>
    where
        T: Send + 'static,
        W: FnOnce(deadpool_postgres::Object) -> F + Send + 'static,
        F: Future<Output = anyhow::Result<T>> + Send + 'static,
    {
        let sequencer = self.sequencer.clone();
        // A child of the caller's span, while traces are exported and the caller is in
        // one; what the write publishes carries its trace context (outbox::publish).
        let commit = if crate::telemetry::traces::in_trace() {
            tracing::info_span!(
                target: crate::telemetry::traces::TARGET,
                "store commit",
                otel.name = "store commit",
                db.system.name = "postgresql"
            )
        } else {
            tracing::Span::none()
        };
        self.run(move |client| async move {
            let started = std::time::Instant::now();
            let result = tracing::Instrument::instrument(work(client), commit).await;
            if result.is_ok() {
                // One write, one transaction, as the metrics count the store's commits.
                crate::telemetry::metrics().store_commit("store", 1, started.elapsed());
                sequencer.number_mine().await;
            }
            result
        })
    }
}

/// Turns an error that says the database cannot be reached into
/// [`StoreError::Unavailable`]; other errors stay as they are.
fn classify(error: anyhow::Error) -> anyhow::Error {
    if connection_lost(&error) {
        StoreError::Unavailable(format!("{error:#}")).into()
    } else {
        error
    }
}

fn connection_lost(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        if let Some(error) = cause.downcast_ref::<tokio_postgres::Error>() {
            if error.is_closed() {
                return true;
            }
            return match error.as_db_error() {
                // Connection exceptions, and the server shutting down or starting up.
                Some(db) => {
                    let code = db.code().code();
                    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03")
                }
                // Not an answer of the server: the connection broke (or a value did not
                // convert, which says so in its message).
                None => {
                    let text = error.to_string();
                    !text.starts_with("error serializing") && !text.starts_with("error deserializing")
                }
            };
        }
        cause.downcast_ref::<deadpool_postgres::PoolError>().is_some()
            || cause.downcast_ref::<std::io::Error>().is_some()
    })
}

/// Advisory lock keys (one namespace for sluice: the high bits spell "sluice").
pub(super) mod locks {
    const BASE: i64 = 0x736c_7569_6365_0000;
    /// Held while migrations run.
    pub const MIGRATIONS: i64 = BASE + 1;
    /// Held while outbox seqs are assigned.
    pub const OUTBOX_SEQ: i64 = BASE + 2;
    /// Held while trigger events are claimed, so that two replicas never claim two
    /// events of one session at once.
    pub const JOB_CLAIMS: i64 = BASE + 3;

    /// Held (on a session) by the replica that leads `role`.
    pub fn leadership(role: &str) -> i64 {
        // FNV-1a: stable across builds and replicas, unlike the standard library's hasher.
        let hash = role.bytes().fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        });
        BASE + 0x1000 + (hash % 0x1000) as i64
    }
}
