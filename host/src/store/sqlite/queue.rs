//! The trigger queue of the embedded store ([`QueueStore`] for [`SqliteStore`]): a
//! database of its own, `queue.db` in the data folder, with its own group-committing
//! writer (the store's kind, [`GroupWriter`]), so that accepting trigger events never
//! waits behind the store's writes.
//!
//! Accepting an event must not return before the event is on disk, and one fsync per
//! event would cap a host at a few hundred events a second: the writer commits the writes
//! waiting for it together (`synchronous=FULL`: the commit is on disk when it returns)
//! and only then answers each caller. A job that was `running` when the process stopped
//! is `queued` again when the queue is opened.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, Row, params};
use tokio::sync::Notify;

use super::writer::{Announcement, GroupWriter};
use super::{Readers, SqliteStore, connect, connect_reader, make_writer, schema};
use crate::ids::record_id;
use crate::store::{Claimed, Enqueued, Finish, Job, JobSource, JobSummary, NewJob, Pending, QueueStore};
use crate::time::now_ms;

/// The most writes one transaction of the queue takes.
const MAX_BATCH: usize = 1024;

/// How many queued rows a claim looks at, at most, to find jobs whose session is free.
const CLAIM_SCAN_LIMIT: usize = 5000;

/// The queue's schema. It was created with `IF NOT EXISTS` before the queue counted
/// its migrations, which keeps this first one right for those files too.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    trigger_id TEXT NOT NULL,
    source TEXT NOT NULL,
    idempotency_key TEXT,
    method TEXT NOT NULL,
    content_type TEXT,
    query TEXT NOT NULL,
    headers TEXT NOT NULL,
    body BLOB NOT NULL,
    session TEXT,
    contact TEXT,
    received_at INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    budget INTEGER NOT NULL,
    due_at INTEGER NOT NULL,
    last_error TEXT,
    finished_at INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_idempotency_key ON jobs (trigger_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, due_at);
CREATE INDEX IF NOT EXISTS jobs_by_trigger ON jobs (trigger_id, seq);
"#;

/// The queue's migrations, applied like the store's.
const MIGRATIONS: &[&str] = &[SCHEMA];

/// The queue's database: its writer, a connection for listings, and the signal of new work.
pub(super) struct QueueDatabase {
    writer: GroupWriter,
    reader: Arc<Readers>,
    /// Noted by writes that give the claimers something new; told to `work` on commit.
    queued: Announcement,
    work: Arc<Notify>,
}

impl QueueDatabase {
    /// Opens (creating if needed) the queue at `path`.
    pub(super) fn open(path: &Path) -> anyhow::Result<QueueDatabase> {
        let writer = connect(path).with_context(|| format!("cannot open the queue at {}", path.display()))?;
        // The reader is opened once the writer has set up the schema (and WAL mode).
        let reader = |_: &Arc<Mutex<Connection>>| connect_reader(path);
        Self::prepare(writer, reader).with_context(|| format!("cannot prepare the queue at {}", path.display()))
    }

    /// A queue in memory, for unit tests; reads share the writer's connection.
    #[cfg(any(test, feature = "bench"))]
    pub(super) fn in_memory() -> anyhow::Result<QueueDatabase> {
        Self::prepare(Connection::open_in_memory()?, |writer| Ok(writer.clone()))
    }

    fn prepare(
        mut connection: Connection,
        reader: impl FnOnce(&Arc<Mutex<Connection>>) -> anyhow::Result<Arc<Mutex<Connection>>>,
    ) -> anyhow::Result<QueueDatabase> {
        make_writer(&connection)?;
        schema::migrate(&mut connection, MIGRATIONS, "queue")?;
        let interrupted = connection.execute(
            "UPDATE jobs SET status = 'queued', due_at = ?1 WHERE status = 'running'",
            [now_ms()],
        )?;
        if interrupted > 0 {
            tracing::warn!(
                jobs = interrupted,
                "trigger events were running when sluice last stopped; they run again"
            );
        }
        let work = Arc::new(Notify::new());
        let woken = work.clone();
        let queued = Announcement::new(move |_| woken.notify_one());
        let connection = Arc::new(Mutex::new(connection));
        let reader = reader(&connection)?;
        Ok(QueueDatabase {
            writer: GroupWriter::start("queue", connection, MAX_BATCH, queued.clone())?,
            reader: Readers::new(vec![reader]),
            queued,
            work,
        })
    }

    fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Pending<T> {
        self.reader.read(work)
    }
}

impl QueueStore for SqliteStore {
    fn enqueue_job(&self, job: NewJob) -> Pending<Enqueued> {
        // Serialised here, on the caller's thread, so the one writer thread only writes.
        let prepared = match PreparedJob::new(job) {
            Ok(prepared) => prepared,
            Err(error) => return Pending::failed(error),
        };
        let queued = self.queue.queued.clone();
        self.queue.writer.write(move |tx| {
            let enqueued = insert(tx, &prepared)?;
            if !enqueued.replayed {
                queued.note(1);
            }
            Ok(enqueued)
        })
    }

    fn claim_jobs(&self, limit: usize, now: i64) -> Pending<Claimed> {
        self.queue.writer.write(move |tx| claim(tx, limit, now))
    }

    fn finish_job(&self, id: &str, finish: &Finish) -> Pending<()> {
        let (id, finish, queued) = (id.to_string(), finish.clone(), self.queue.queued.clone());
        self.queue.writer.write(move |tx| {
            finish_job(tx, &id, &finish)?;
            // A retry is queued again, and any end frees the job's session.
            queued.note(1);
            Ok(())
        })
    }

    fn retry_failed_job(&self, id: &str, budget: u32) -> Pending<bool> {
        let (id, queued) = (id.to_string(), self.queue.queued.clone());
        self.queue.writer.write(move |tx| {
            let retried = tx
                .prepare_cached(
                    "UPDATE jobs SET status = 'queued', budget = attempts + ?2, due_at = ?3, finished_at = NULL
                     WHERE id = ?1 AND status = 'failed'",
                )?
                .execute(params![id, budget, now_ms()])?
                > 0;
            if retried {
                queued.note(1);
            }
            Ok(retried)
        })
    }

    fn cancel_trigger_jobs(&self, trigger_id: &str) -> Pending<usize> {
        let trigger_id = trigger_id.to_string();
        self.queue.writer.write(move |tx| {
            let now = now_ms();
            Ok(tx
                .prepare_cached(
                    "UPDATE jobs SET status = 'cancelled', due_at = ?2, finished_at = ?2,
                         last_error = 'the trigger was deleted'
                     WHERE trigger_id = ?1 AND status = 'queued'",
                )?
                .execute(params![trigger_id, now])?)
        })
    }

    fn prune_jobs(&self, before: i64, limit: usize) -> Pending<usize> {
        self.queue.writer.write(move |tx| {
            let mut pruned = 0;
            for status in ["done", "cancelled"] {
                pruned += tx
                    .prepare_cached(
                        "DELETE FROM jobs WHERE seq IN
                             (SELECT seq FROM jobs WHERE status = ?1 AND due_at < ?2 LIMIT ?3)",
                    )?
                    .execute(params![status, before, limit as i64])?;
            }
            Ok(pruned)
        })
    }

    fn job(&self, id: &str) -> Pending<Option<JobSummary>> {
        let id = id.to_owned();
        self.queue.read(move |c| {
            let id = id.as_str();
            Ok(
                c.prepare_cached(&format!("SELECT {SUMMARY_COLUMNS} FROM jobs WHERE id = ?1"))?
                    .query_row([id], summary_row)
                    .optional()?,
            )
        })
    }

    fn job_counts(&self) -> Pending<Vec<(String, i64)>> {
        self.queue.read(move |c| {
            let mut statement = c.prepare_cached("SELECT count(*) FROM jobs WHERE status = ?1")?;
            ["queued", "running", "failed"]
                .into_iter()
                .map(|status| Ok((status.to_string(), statement.query_row([status], |row| row.get(0))?)))
                .collect()
        })
    }

    fn jobs(
        &self,
        trigger_id: &str,
        status: Option<&str>,
        before: Option<i64>,
        take: usize,
    ) -> Pending<(Vec<JobSummary>, Option<i64>)> {
        let (trigger_id, status) = (trigger_id.to_owned(), status.map(str::to_owned));
        self.queue.read(move |c| {
            let (trigger_id, status) = (trigger_id.as_str(), status.as_deref());
            let mut statement = c.prepare_cached(&format!(
                "SELECT {SUMMARY_COLUMNS}, seq FROM jobs
                 WHERE trigger_id = ?1 AND (?2 IS NULL OR status = ?2) AND seq < ?3
                 ORDER BY seq DESC LIMIT ?4"
            ))?;
            let mut rows = statement
                .query_map(
                    params![trigger_id, status, before.unwrap_or(i64::MAX), (take + 1) as i64],
                    |row| Ok((summary_row(row)?, row.get::<_, i64>(SUMMARY_COUNT)?)),
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let next = if rows.len() > take {
                rows.truncate(take);
                rows.last().map(|(_, seq)| *seq)
            } else {
                None
            };
            Ok((rows.into_iter().map(|(job, _)| job).collect(), next))
        })
    }

    fn queued_work(&self) -> Arc<Notify> {
        self.queue.work.clone()
    }
}

const SUMMARY_COLUMNS: &str = "id, trigger_id, source, status, attempts, budget, session, idempotency_key, \
     received_at, due_at, finished_at, last_error";
const SUMMARY_COUNT: usize = 12;

fn summary_row(row: &Row) -> rusqlite::Result<JobSummary> {
    let status: String = row.get(3)?;
    let due_at: i64 = row.get(9)?;
    Ok(JobSummary {
        id: row.get(0)?,
        trigger_id: row.get(1)?,
        source: JobSource::parse(&row.get::<_, String>(2)?),
        attempts: row.get(4)?,
        max_attempts: row.get(5)?,
        session: row.get(6)?,
        idempotency_key: row.get(7)?,
        received_at: row.get(8)?,
        next_attempt_at: (status == "queued").then_some(due_at),
        finished_at: row.get(10)?,
        last_error: row.get(11)?,
        status,
    })
}

/// A job with its id and JSON columns ready.
struct PreparedJob {
    id: String,
    headers: String,
    contact: Option<String>,
    job: NewJob,
}

impl PreparedJob {
    fn new(job: NewJob) -> anyhow::Result<PreparedJob> {
        Ok(PreparedJob {
            id: record_id("tev"),
            headers: serde_json::to_string(&job.headers)?,
            contact: job.contact.as_ref().map(serde_json::to_string).transpose()?,
            job,
        })
    }
}

fn insert(tx: &Connection, prepared: &PreparedJob) -> anyhow::Result<Enqueued> {
    let PreparedJob {
        id,
        headers,
        contact,
        job,
    } = prepared;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO jobs (id, trigger_id, source, idempotency_key, method, content_type, query, headers, body,
                 session, contact, received_at, status, attempts, budget, due_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'queued', 0, ?13, ?12)
             ON CONFLICT (trigger_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
        )?
        .execute(params![
            id,
            job.trigger_id,
            job.source.as_str(),
            job.idempotency_key,
            job.method,
            job.content_type,
            job.query,
            headers,
            job.body.as_ref(),
            job.session,
            contact,
            job.received_at,
            job.budget,
        ])?;
    if inserted > 0 {
        return Ok(Enqueued {
            id: id.clone(),
            replayed: false,
        });
    }
    let first: String = tx
        .prepare_cached("SELECT id FROM jobs WHERE trigger_id = ?1 AND idempotency_key = ?2")?
        .query_row(params![job.trigger_id, job.idempotency_key], |row| row.get(0))?;
    Ok(Enqueued {
        id: first,
        replayed: true,
    })
}

fn claim(tx: &Connection, limit: usize, now: i64) -> anyhow::Result<Claimed> {
    let mut busy: std::collections::HashSet<(String, String)> = tx
        .prepare_cached("SELECT trigger_id, session FROM jobs WHERE status = 'running' AND session IS NOT NULL")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut picked = Vec::new();
    if limit > 0 {
        let mut statement = tx.prepare_cached(
            "SELECT seq, trigger_id, session FROM jobs
             WHERE status = 'queued' AND due_at <= ?1 ORDER BY due_at, seq",
        )?;
        let mut rows = statement.query([now])?;
        let mut scanned = 0;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let seq: i64 = row.get(0)?;
            let session: Option<String> = row.get(2)?;
            match session {
                // One session runs one event at a time, in order: a busy session's
                // later events wait too.
                Some(session) => {
                    if busy.insert((row.get(1)?, session)) {
                        picked.push(seq);
                    }
                }
                None => picked.push(seq),
            }
            if picked.len() >= limit || scanned >= CLAIM_SCAN_LIMIT {
                break;
            }
        }
    }
    let mut jobs = Vec::with_capacity(picked.len());
    for seq in picked {
        tx.prepare_cached("UPDATE jobs SET status = 'running', attempts = attempts + 1 WHERE seq = ?1")?
            .execute([seq])?;
        let job = tx
            .prepare_cached(
                "SELECT id, trigger_id, source, method, content_type, query, headers, body, session, contact,
                     received_at, attempts, budget
                 FROM jobs WHERE seq = ?1",
            )?
            .query_row([seq], job_row)?;
        jobs.push(job);
    }
    let next_due = tx
        .prepare_cached("SELECT due_at FROM jobs WHERE status = 'queued' AND due_at > ?1 ORDER BY due_at LIMIT 1")?
        .query_row([now], |row| row.get(0))
        .optional()?;
    Ok(Claimed { jobs, next_due })
}

fn job_row(row: &Row) -> rusqlite::Result<Job> {
    let headers: String = row.get(6)?;
    let contact: Option<String> = row.get(9)?;
    Ok(Job {
        id: row.get(0)?,
        trigger_id: row.get(1)?,
        source: JobSource::parse(&row.get::<_, String>(2)?),
        method: row.get(3)?,
        content_type: row.get(4)?,
        query: row.get(5)?,
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: row.get(7)?,
        session: row.get(8)?,
        contact: contact.and_then(|text| serde_json::from_str(&text).ok()),
        received_at: row.get(10)?,
        attempt: row.get(11)?,
        budget: row.get(12)?,
    })
}

fn finish_job(tx: &Connection, id: &str, finish: &Finish) -> anyhow::Result<()> {
    let now = now_ms();
    let mut statement = tx.prepare_cached(
        "UPDATE jobs SET status = ?2, due_at = ?3, finished_at = ?4, last_error = ?5 WHERE id = ?1 AND status = 'running'",
    )?;
    match finish {
        Finish::Done => statement.execute(params![id, "done", now, now, Option::<String>::None])?,
        Finish::Retry { at, error } => statement.execute(params![id, "queued", at, Option::<i64>::None, error])?,
        Finish::Failed(error) => statement.execute(params![id, "failed", now, now, error])?,
        Finish::Cancelled(error) => statement.execute(params![id, "cancelled", now, now, error])?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use futures::FutureExt as _;

    use super::*;

    fn job(trigger: &str, session: Option<&str>, key: Option<&str>) -> NewJob {
        NewJob {
            trigger_id: trigger.into(),
            source: JobSource::Event,
            idempotency_key: key.map(String::from),
            method: "POST".into(),
            content_type: Some("application/json".into()),
            query: String::new(),
            headers: vec![("content-type".into(), "application/json".into())],
            body: bytes::Bytes::from_static(b"{}"),
            session: session.map(String::from),
            contact: None,
            received_at: now_ms(),
            budget: 3,
        }
    }

    fn enqueue(store: &SqliteStore, job: NewJob) -> Enqueued {
        store.enqueue_job(job).wait().unwrap()
    }

    fn claim(store: &SqliteStore, limit: usize) -> Claimed {
        store.claim_jobs(limit, now_ms()).wait().unwrap()
    }

    /// Changes the queue behind its API (to make time pass, for example).
    fn tamper(store: &SqliteStore, sql: &'static str) {
        store
            .queue
            .writer
            .write(move |tx| Ok(tx.execute(sql, [])?))
            .wait()
            .unwrap();
    }

    fn status(store: &SqliteStore, id: &str) -> Option<String> {
        store.job(id).wait().unwrap().map(|job| job.status)
    }

    #[test]
    fn idempotency_keys_queue_once_per_trigger() {
        let store = SqliteStore::in_memory().unwrap();
        let first = enqueue(&store, job("trg_a", None, Some("k1")));
        let again = enqueue(&store, job("trg_a", None, Some("k1")));
        assert_eq!(
            again,
            Enqueued {
                id: first.id.clone(),
                replayed: true
            }
        );
        let other_trigger = enqueue(&store, job("trg_b", None, Some("k1")));
        assert!(!other_trigger.replayed);
        let unkeyed = [
            enqueue(&store, job("trg_a", None, None)),
            enqueue(&store, job("trg_a", None, None)),
        ];
        assert_ne!(unkeyed[0].id, unkeyed[1].id);
        let claimed = claim(&store, 10);
        assert_eq!(claimed.jobs.len(), 4);
        assert_eq!(claimed.jobs[0].id, first.id);
        assert_eq!(claimed.jobs[0].attempt, 1);
    }

    #[test]
    fn a_session_runs_one_event_at_a_time_in_order() {
        let store = SqliteStore::in_memory().unwrap();
        let s1 = enqueue(&store, job("trg", Some("s"), None));
        let s2 = enqueue(&store, job("trg", Some("s"), None));
        let t1 = enqueue(&store, job("trg", Some("t"), None));
        let first = claim(&store, 10);
        let ids: Vec<&str> = first.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, [s1.id.as_str(), t1.id.as_str()]);
        assert!(claim(&store, 10).jobs.is_empty(), "s2 waits for s1");
        store.finish_job(&s1.id, &Finish::Done).wait().unwrap();
        let next = claim(&store, 10);
        assert_eq!(next.jobs.len(), 1);
        assert_eq!(next.jobs[0].id, s2.id);
    }

    #[test]
    fn retries_wait_until_due_then_fail_and_can_be_retried_by_hand() {
        let store = SqliteStore::in_memory().unwrap();
        let queued = enqueue(&store, job("trg", None, None));
        let claimed = claim(&store, 1);
        let later = now_ms() + 60_000;
        let retry = Finish::Retry {
            at: later,
            error: "boom".into(),
        };
        store.finish_job(&claimed.jobs[0].id, &retry).wait().unwrap();
        let waiting = claim(&store, 1);
        assert!(waiting.jobs.is_empty());
        assert_eq!(waiting.next_due, Some(later));
        let summary = store.job(&queued.id).wait().unwrap().unwrap();
        assert_eq!(
            (summary.status.as_str(), summary.attempts, summary.next_attempt_at),
            ("queued", 1, Some(later))
        );

        assert!(
            !store.retry_failed_job(&queued.id, 2).wait().unwrap(),
            "only failed jobs are retried by hand"
        );
        // Pretend the retry came due, and the attempts ran out.
        tamper(&store, "UPDATE jobs SET due_at = 0");
        let again = claim(&store, 1);
        assert_eq!(again.jobs[0].attempt, 2);
        store
            .finish_job(&queued.id, &Finish::Failed("still boom".into()))
            .wait()
            .unwrap();
        let failed = store.job(&queued.id).wait().unwrap().unwrap();
        assert_eq!(failed.status, "failed");
        assert_eq!(failed.last_error.as_deref(), Some("still boom"));
        assert!(store.retry_failed_job(&queued.id, 2).wait().unwrap());
        let retried = claim(&store, 1);
        assert_eq!((retried.jobs[0].attempt, retried.jobs[0].budget), (3, 4));
    }

    #[test]
    fn deleted_triggers_cancel_their_queued_jobs() {
        let store = SqliteStore::in_memory().unwrap();
        let running = enqueue(&store, job("trg", None, None));
        claim(&store, 1);
        let queued = enqueue(&store, job("trg", None, None));
        let other = enqueue(&store, job("trg_other", None, None));
        assert_eq!(store.cancel_trigger_jobs("trg").wait().unwrap(), 1);
        assert_eq!(status(&store, &queued.id).as_deref(), Some("cancelled"));
        assert_eq!(status(&store, &running.id).as_deref(), Some("running"));
        assert_eq!(status(&store, &other.id).as_deref(), Some("queued"));
        let page = store.jobs("trg", Some("cancelled"), None, 10).wait().unwrap();
        assert_eq!(page.0.len(), 1);
        assert_eq!(page.0[0].last_error.as_deref(), Some("the trigger was deleted"));
    }

    #[test]
    fn pruning_forgets_old_finished_jobs_a_batch_at_a_time() {
        let store = SqliteStore::in_memory().unwrap();
        let mut done = Vec::new();
        for n in 0..3 {
            done.push(enqueue(&store, job("trg", None, Some(&format!("old-{n}")))).id);
        }
        let failed = enqueue(&store, job("trg", None, None)).id;
        assert_eq!(claim(&store, 10).jobs.len(), 4);
        for id in &done {
            store.finish_job(id, &Finish::Done).wait().unwrap();
        }
        store
            .finish_job(&failed, &Finish::Failed("boom".into()))
            .wait()
            .unwrap();
        // All of them ended long ago; one more finishes now, and one is still queued.
        tamper(&store, "UPDATE jobs SET due_at = 1");
        let recent = enqueue(&store, job("trg", None, None)).id;
        claim(&store, 1);
        store.finish_job(&recent, &Finish::Done).wait().unwrap();
        let waiting = enqueue(&store, job("trg", None, None)).id;
        tamper(&store, "UPDATE jobs SET due_at = 1 WHERE status = 'queued'");

        let before = now_ms() - 60_000;
        assert_eq!(store.prune_jobs(before, 2).wait().unwrap(), 2, "a batch at most");
        assert_eq!(store.prune_jobs(before, 2).wait().unwrap(), 1);
        assert_eq!(store.prune_jobs(before, 2).wait().unwrap(), 0);
        for id in &done {
            assert!(store.job(id).wait().unwrap().is_none(), "{id} is forgotten");
        }
        for (id, kept) in [(&failed, "failed"), (&recent, "done"), (&waiting, "queued")] {
            assert_eq!(status(&store, id).as_deref(), Some(kept), "{id} is kept");
        }
        // Its idempotency key went with it: the same key queues a new job.
        assert!(!enqueue(&store, job("trg", None, Some("old-0"))).replayed);
    }

    #[test]
    fn running_jobs_are_queued_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = SqliteStore::open(dir.path()).unwrap();
            let queued = enqueue(&store, job("trg", Some("s"), None));
            assert_eq!(claim(&store, 1).jobs.len(), 1);
            queued.id
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        let claimed = claim(&store, 1);
        assert_eq!(claimed.jobs[0].id, id);
        assert_eq!(claimed.jobs[0].attempt, 2);
    }

    #[test]
    fn a_failing_write_undoes_only_itself_and_the_rest_of_its_transaction_commits() {
        let store = SqliteStore::in_memory().unwrap();
        // Hold the writer inside a transaction, so that the writes below queue up and all
        // go into its next one.
        let (started, running) = std::sync::mpsc::channel();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let holding = store.queue.writer.write(move |_| {
            started.send(()).unwrap();
            hold.recv().unwrap();
            Ok(())
        });
        running.recv().unwrap();
        let before = store.enqueue_job(job("trg", None, Some("before")));
        // Writes a job, then fails: its job must go with it.
        let failing = store.queue.writer.write(|tx| -> anyhow::Result<()> {
            let insert = "INSERT INTO jobs (id, trigger_id, source, method, query, headers, body, received_at,
                              status, budget, due_at)
                          VALUES ('tev_bad', 'trg', 'event', 'POST', '', '[]', x'', 0, 'queued', 1, 0)";
            tx.execute(insert, [])?;
            tx.execute(insert, [])?;
            Ok(())
        });
        let replay = store.enqueue_job(job("trg", None, Some("before")));
        let after = store.enqueue_job(job("trg", None, Some("after")));
        release.send(()).unwrap();
        holding.wait().unwrap();

        let error = failing.wait().unwrap_err();
        assert!(format!("{error:#}").contains("UNIQUE"), "{error:#}");
        let before = before.wait().unwrap();
        assert_eq!(
            replay.wait().unwrap(),
            Enqueued {
                id: before.id.clone(),
                replayed: true
            }
        );
        let after = after.wait().unwrap();
        assert!(
            store.job("tev_bad").wait().unwrap().is_none(),
            "the failing write left nothing"
        );
        let claimed: Vec<String> = claim(&store, 10).jobs.into_iter().map(|job| job.id).collect();
        assert_eq!(claimed, [before.id, after.id]);
    }

    #[test]
    fn claimers_are_woken_by_commits_that_give_them_work() {
        let store = SqliteStore::in_memory().unwrap();
        let work = store.queued_work();
        let woken = || work.notified().now_or_never().is_some();
        assert!(!woken());
        let first = enqueue(&store, job("trg", Some("s"), Some("k")));
        assert!(woken(), "a job was queued");
        enqueue(&store, job("trg", Some("s"), Some("k")));
        assert!(!woken(), "a replayed key queues nothing");
        claim(&store, 10);
        assert!(!woken(), "a claim takes work");
        store.finish_job(&first.id, &Finish::Done).wait().unwrap();
        assert!(woken(), "a finished job frees its session");
        let failing = store.queue.writer.write(|tx| -> anyhow::Result<()> {
            tx.execute("INSERT INTO nowhere VALUES (1)", [])?;
            Ok(())
        });
        assert!(failing.wait().is_err());
        assert!(!woken());
    }
}
