//! The outbox of the PostgreSQL store ([`OutboxStore`] for [`PostgresStore`]).
//!
//! Writes insert their notifications without a position. The sequencer then numbers
//! committed rows under an advisory lock, in a transaction of its own, and tells every
//! replica (`NOTIFY sluice_outbox`). Numbering is serialised and each numbering commits
//! before the next starts, so a reader never sees seq N+1 before N: readers follow seqs,
//! whichever replica wrote the rows. A replica that dies between its commit and the
//! numbering leaves rows the next numbering (by any replica, at least once a second)
//! picks up.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::{Notify, watch};

use super::rows::{execute, query, raw_entry};
use super::{PostgresStore, locks};
use crate::ids::record_id;
#[cfg(test)]
use crate::store::OutboxEntry;
use crate::store::{OutboxStore, Pending, RawOutboxEntry};
use crate::telemetry::traces;

/// The channel numbering announces the highest seq on.
pub(super) const CHANNEL: &str = "sluice_outbox";
/// How often the sequencer looks for rows nobody numbered, and readers for seqs they
/// were not told of.
pub(super) const POLL: Duration = Duration::from_secs(1);
/// The most rows one numbering takes.
const BATCH: i64 = 10_000;

/// Publishes a notification to the outbox, inside the caller's transaction; it gets its
/// position once that transaction is committed.
pub(super) async fn publish<C: GenericClient>(
    tx: &C,
    entry_type: &str,
    integration_id: Option<&str>,
    time: i64,
    data: &str,
) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT INTO outbox (id, type, time, integration_id, data, traceparent) VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &record_id("ntf"),
            &entry_type,
            &time,
            &integration_id,
            &data,
            &traces::current_traceparent(),
        ],
    )
    .await?;
    Ok(())
}

/// The highest seq ever handed out, even when retention has emptied the outbox since:
/// readers' positions (a stream's Last-Event-ID) are compared with it.
pub(super) async fn head<C: GenericClient>(client: &C) -> anyhow::Result<i64> {
    let row = client
        .query_one(
            "SELECT greatest(coalesce((SELECT max(seq) FROM outbox), 0),
                             (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM outbox_seq))",
            &[],
        )
        .await?;
    Ok(row.get(0))
}

/// Raises the announced head to `seq`.
pub(super) fn announce(published: &watch::Sender<i64>, seq: i64) {
    published.send_if_modified(|head| {
        let newer = seq > *head;
        if newer {
            *head = seq;
        }
        newer
    });
}

/// How long a publishing write waits for its rows to be numbered before it answers
/// anyway (they are committed; a later numbering gives them their place).
const NUMBERING_WAIT: Duration = Duration::from_secs(2);

/// The numbering of this replica's published rows, done in rounds: a write that
/// published asks for a round and waits for it, so that when it answers its rows have
/// their seqs (as on the embedded store, where a write is announced once committed),
/// while one round numbers every write waiting.
#[derive(Default)]
pub(super) struct Sequencer {
    /// Rounds asked for so far.
    requested: std::sync::atomic::AtomicU64,
    /// Rounds done: every round asked for up to this one has numbered its rows.
    done: watch::Sender<u64>,
    wake: Notify,
}

impl Sequencer {
    /// Asks for a round after a commit that published, and waits for it.
    pub(super) async fn number_mine(&self) {
        let ticket = self.requested.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        self.wake.notify_one();
        let mut done = self.done.subscribe();
        let _ = tokio::time::timeout(NUMBERING_WAIT, done.wait_for(|done| *done >= ticket)).await;
    }
}

/// Numbers committed rows whenever a write of this replica published, and every
/// [`POLL`] for rows others left.
pub(super) async fn run_sequencer(pool: Pool, sequencer: Arc<Sequencer>, published: Arc<watch::Sender<i64>>) {
    loop {
        // Woken by a write, there are rows to number; on the poll, look first.
        let look_first = tokio::select! {
            _ = sequencer.wake.notified() => false,
            _ = tokio::time::sleep(POLL) => true,
        };
        let round = sequencer.requested.load(std::sync::atomic::Ordering::SeqCst);
        match number(&pool, look_first).await {
            Ok(Some(seq)) => announce(&published, seq),
            Ok(None) => {}
            Err(error) => tracing::debug!(error = %format!("{error:#}"), "outbox numbering failed; retrying"),
        }
        sequencer.done.send_if_modified(|done| {
            let newer = round > *done;
            if newer {
                *done = round;
            }
            newer
        });
    }
}

/// One numbering: answers the highest seq it gave, if it gave any.
async fn number(pool: &Pool, look_first: bool) -> anyhow::Result<Option<i64>> {
    let mut client = pool.get().await?;
    if look_first {
        let waiting = client
            .query_one("SELECT EXISTS (SELECT 1 FROM outbox WHERE seq IS NULL)", &[])
            .await?;
        if !waiting.get::<_, bool>(0) {
            return Ok(None);
        }
    }
    let tx = client.transaction().await?;
    // Taken in its own statement, so that the numbering's snapshot, taken after it, sees
    // every numbering committed before.
    execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&locks::OUTBOX_SEQ]).await?;
    let row = tx
        .query_one(
            "WITH numbered AS (
                UPDATE outbox o SET seq = n.seq
                FROM (SELECT row_id, nextval('outbox_seq') AS seq
                      FROM (SELECT row_id FROM outbox WHERE seq IS NULL ORDER BY row_id LIMIT $1) waiting) n
                WHERE o.row_id = n.row_id
                RETURNING o.seq)
             SELECT max(seq) FROM numbered",
            &[&BATCH],
        )
        .await?;
    let highest: Option<i64> = row.get(0);
    if let Some(highest) = highest {
        execute(&tx, "SELECT pg_notify($1, $2)", &[&CHANNEL, &highest.to_string()]).await?;
    }
    tx.commit().await?;
    Ok(highest)
}

impl OutboxStore for PostgresStore {
    fn outbox_published(&self) -> watch::Receiver<i64> {
        self.published.subscribe()
    }

    fn raw_outbox_after(&self, seq: i64, limit: usize) -> Pending<Vec<RawOutboxEntry>> {
        self.run(move |c| async move {
            let rows = query(
                &c,
                "SELECT seq, id, type, time, integration_id, data, traceparent FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&seq, &(limit as i64)],
            )
            .await?;
            Ok(rows.iter().map(|row| raw_entry(row, 0)).collect())
        })
    }

    #[cfg(test)]
    fn outbox_after(&self, seq: i64, limit: usize) -> Pending<Vec<OutboxEntry>> {
        self.run(move |c| async move {
            let rows = query(
                &c,
                "SELECT seq, id, type, time, integration_id, data FROM outbox WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&seq, &(limit as i64)],
            )
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(OutboxEntry {
                        seq: row.get(0),
                        id: row.get(1),
                        entry_type: row.get(2),
                        time: row.get(3),
                        integration_id: row.get(4),
                        data: super::rows::parse_json(row.get(5))?,
                    })
                })
                .collect()
        })
    }
}
