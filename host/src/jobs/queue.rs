//! The durable queue of trigger events: one SQLite file (`queue.db` in the data folder),
//! written by one thread that commits in groups.
//!
//! Accepting an event must not return before the event is on disk, and one fsync per
//! event would cap a host at a few hundred events a second. So every write goes to the
//! writer thread as a command; the thread takes all the commands waiting (up to
//! [`MAX_BATCH`]), applies them in one transaction, commits once (`synchronous=FULL`:
//! the commit is on disk when it returns) and only then answers each caller. Senders
//! that arrive while a commit is running form the next group.
//!
//! A job's life: `queued` → (claimed) `running` → `done`, or back to `queued` with a
//! later `due_at` to retry, or `failed` once its attempts are spent (a failed job can be
//! retried by hand), or `cancelled` when its trigger was deleted. A job that was
//! `running` when the process died is `queued` again at the next start.

use std::path::Path;
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;
use tokio::sync::{Notify, oneshot};

use crate::ids::record_id;
use crate::store::Contact;
use crate::time::now_ms;

/// Most commands applied in one transaction.
pub const MAX_BATCH: usize = 1024;

/// How many queued rows a claim looks at, at most, to find jobs whose session is free.
const CLAIM_SCAN_LIMIT: usize = 5000;

/// How many finished jobs of each status one pruning transaction deletes.
const PRUNE_BATCH: usize = 5000;

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

/// What made a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobSource {
    /// An event sent to the trigger's event URL.
    Event,
    /// The `invoke` endpoint.
    Invoke,
    /// The trigger's schedule.
    Schedule,
}

impl JobSource {
    pub fn as_str(self) -> &'static str {
        match self {
            JobSource::Event => "event",
            JobSource::Invoke => "invoke",
            JobSource::Schedule => "schedule",
        }
    }

    fn parse(text: &str) -> JobSource {
        match text {
            "invoke" => JobSource::Invoke,
            "schedule" => JobSource::Schedule,
            _ => JobSource::Event,
        }
    }
}

/// A job to queue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub trigger_id: String,
    pub source: JobSource,
    /// The sender's `Idempotency-Key`: a second job with the same key for the same
    /// trigger is not queued; the first one's id is answered instead.
    pub idempotency_key: Option<String>,
    pub method: String,
    pub content_type: Option<String>,
    /// The raw query string.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: bytes::Bytes,
    pub session: Option<String>,
    pub contact: Option<Contact>,
    pub received_at: i64,
    /// Attempts before the job fails.
    pub budget: u32,
}

/// The answer to [`Queue::enqueue`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Enqueued {
    pub id: String,
    /// The idempotency key was seen before: nothing new was queued.
    pub replayed: bool,
}

/// A claimed job, ready to run.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: String,
    pub trigger_id: String,
    pub source: JobSource,
    pub method: String,
    pub content_type: Option<String>,
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub session: Option<String>,
    pub contact: Option<Contact>,
    pub received_at: i64,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The attempt after which a failure is final.
    pub budget: u32,
}

/// How an attempt ended, as the queue records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finish {
    Done,
    /// Run again at `at` (ms).
    Retry {
        at: i64,
        error: String,
    },
    /// No attempts left; kept as `failed` until retried by hand.
    Failed(String),
    /// The job cannot run any more (its trigger is gone).
    Cancelled(String),
}

/// A job as the API shows it (without its body).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSummary {
    pub id: String,
    pub trigger_id: String,
    pub source: JobSource,
    pub status: String,
    pub attempts: u32,
    pub max_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    pub received_at: i64,
    /// When a queued job may run next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// What a claim found.
#[derive(Debug, Default)]
pub struct Claimed {
    pub jobs: Vec<Job>,
    /// When the next queued job not yet due becomes due.
    pub next_due: Option<i64>,
}

type Reply<T> = oneshot::Sender<anyhow::Result<T>>;

enum Command {
    Enqueue(Box<PreparedJob>, Reply<Enqueued>),
    Claim {
        limit: usize,
        now: i64,
        reply: Reply<Claimed>,
    },
    Finish {
        id: String,
        finish: Finish,
        reply: Reply<()>,
    },
    RetryFailed {
        id: String,
        budget: u32,
        reply: Reply<bool>,
    },
    CancelTrigger {
        trigger_id: String,
        reply: Reply<usize>,
    },
    Prune {
        before: i64,
        limit: usize,
        reply: Reply<usize>,
    },
}

/// An answer waiting for its transaction to commit.
enum Pending {
    Enqueued(Reply<Enqueued>, anyhow::Result<Enqueued>),
    Claimed(Reply<Claimed>, anyhow::Result<Claimed>),
    Unit(Reply<()>, anyhow::Result<()>),
    Flag(Reply<bool>, anyhow::Result<bool>),
    Count(Reply<usize>, anyhow::Result<usize>),
}

impl Pending {
    fn failed(&self) -> bool {
        match self {
            Pending::Enqueued(_, r) => r.is_err(),
            Pending::Claimed(_, r) => r.is_err(),
            Pending::Unit(_, r) => r.is_err(),
            Pending::Flag(_, r) => r.is_err(),
            Pending::Count(_, r) => r.is_err(),
        }
    }

    /// Answers the caller; after a failed commit every answer is that failure.
    fn send(self, commit: &Result<(), String>) {
        fn answer<T>(reply: Reply<T>, result: anyhow::Result<T>, commit: &Result<(), String>) {
            let result = match commit {
                Ok(()) => result,
                Err(error) => Err(anyhow::anyhow!("the queue could not commit: {error}")),
            };
            let _ = reply.send(result);
        }
        match self {
            Pending::Enqueued(reply, result) => answer(reply, result, commit),
            Pending::Claimed(reply, result) => answer(reply, result, commit),
            Pending::Unit(reply, result) => answer(reply, result, commit),
            Pending::Flag(reply, result) => answer(reply, result, commit),
            Pending::Count(reply, result) => answer(reply, result, commit),
        }
    }
}

/// The queue: the writer thread's mailbox and a read connection for listings.
pub struct Queue {
    commands: mpsc::Sender<Command>,
    reader: Mutex<Connection>,
    /// Woken whenever jobs were queued, so the dispatcher claims them.
    pub work: std::sync::Arc<Notify>,
}

fn open_connection(path: &Path) -> anyhow::Result<Connection> {
    let connection = Connection::open(path).with_context(|| format!("cannot open the queue at {}", path.display()))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit that returned is on disk, so an acknowledged event is never lost.
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(Duration::from_secs(10))?;
    Ok(connection)
}

impl Queue {
    /// Opens (creating if needed) the queue file, puts jobs that were running when the
    /// process stopped back in the queue, and starts the writer thread.
    pub fn open(path: &Path) -> anyhow::Result<Queue> {
        let mut writer = open_connection(path)?;
        writer
            .execute_batch(SCHEMA)
            .with_context(|| format!("cannot prepare the queue at {}", path.display()))?;
        let interrupted = writer.execute(
            "UPDATE jobs SET status = 'queued', due_at = ?1 WHERE status = 'running'",
            [now_ms()],
        )?;
        if interrupted > 0 {
            tracing::warn!(
                jobs = interrupted,
                "trigger events were running when sluice last stopped; they run again"
            );
        }
        let reader = open_connection(path)?;
        let work = std::sync::Arc::new(Notify::new());
        let (commands, inbox) = mpsc::channel();
        let notify = work.clone();
        std::thread::Builder::new()
            .name("sluice-queue".into())
            .spawn(move || write_loop(&mut writer, inbox, &notify))
            .context("cannot start the queue writer thread")?;
        Ok(Queue {
            commands,
            reader: Mutex::new(reader),
            work,
        })
    }

    async fn ask<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> anyhow::Result<T> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(command(reply))
            .map_err(|_| anyhow::anyhow!("the queue writer has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the queue writer stopped before answering"))?
    }

    /// Queues a job; returns once it is on disk.
    pub async fn enqueue(&self, job: NewJob) -> anyhow::Result<Enqueued> {
        // Serialised here, on the caller's thread, so the one writer thread only writes.
        let prepared = PreparedJob {
            id: record_id("tev"),
            headers: serde_json::to_string(&job.headers)?,
            contact: job.contact.as_ref().map(serde_json::to_string).transpose()?,
            job,
        };
        self.ask(|reply| Command::Enqueue(Box::new(prepared), reply)).await
    }

    /// Marks up to `limit` due jobs `running` and hands them out, oldest due first,
    /// never two of one session at once.
    pub async fn claim(&self, limit: usize) -> anyhow::Result<Claimed> {
        let now = now_ms();
        self.ask(|reply| Command::Claim { limit, now, reply }).await
    }

    /// Records how an attempt ended.
    pub async fn finish(&self, id: &str, finish: Finish) -> anyhow::Result<()> {
        let id = id.to_string();
        self.ask(|reply| Command::Finish { id, finish, reply }).await
    }

    /// Puts a failed job back in the queue with `budget` more attempts; `false` when
    /// the job is not failed.
    pub async fn retry_failed(&self, id: &str, budget: u32) -> anyhow::Result<bool> {
        let id = id.to_string();
        self.ask(|reply| Command::RetryFailed { id, budget, reply }).await
    }

    /// Cancels every queued job of a deleted trigger.
    pub async fn cancel_trigger(&self, trigger_id: &str) -> anyhow::Result<usize> {
        let trigger_id = trigger_id.to_string();
        self.ask(|reply| Command::CancelTrigger { trigger_id, reply }).await
    }

    /// Forgets finished and cancelled jobs that ended before `before` (and with them
    /// their idempotency keys), however many there are.
    pub async fn prune(&self, before: i64) -> anyhow::Result<usize> {
        self.prune_in_batches(before, PRUNE_BATCH).await
    }

    /// [`Queue::prune`], `batch` jobs of each status per transaction, so that the queue's
    /// writer is never held long and enqueues go on between batches.
    async fn prune_in_batches(&self, before: i64, batch: usize) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let pruned = self
                .ask(|reply| Command::Prune {
                    before,
                    limit: batch,
                    reply,
                })
                .await?;
            total += pruned;
            // Fewer than a batch means no status had a full batch left.
            if pruned < batch {
                return Ok(total);
            }
        }
    }

    /// One job, without its body.
    pub fn job(&self, id: &str) -> anyhow::Result<Option<JobSummary>> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        Ok(reader
            .prepare_cached(&format!("SELECT {SUMMARY_COLUMNS} FROM jobs WHERE id = ?1"))?
            .query_row([id], summary_row)
            .optional()?)
    }

    /// A trigger's jobs, newest first, optionally of one status; `before` is the `seq`
    /// cursor of the previous page. Returns the page and the next cursor.
    pub fn jobs(
        &self,
        trigger_id: &str,
        status: Option<&str>,
        before: Option<i64>,
        take: usize,
    ) -> anyhow::Result<(Vec<JobSummary>, Option<i64>)> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut statement = reader.prepare_cached(&format!(
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
    }

    /// How many jobs are in each status.
    pub fn counts(&self) -> anyhow::Result<Vec<(String, i64)>> {
        let reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        let mut statement = reader.prepare_cached("SELECT status, COUNT(*) FROM jobs GROUP BY status")?;
        Ok(statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?)
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

/// The writer thread: group commits until every [`Queue`] handle is gone.
fn write_loop(connection: &mut Connection, inbox: mpsc::Receiver<Command>, work: &Notify) {
    while let Ok(first) = inbox.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match inbox.try_recv() {
                Ok(command) => batch.push(command),
                Err(_) => break,
            }
        }
        let queued_work = batch.iter().any(|c| {
            matches!(
                c,
                Command::Enqueue(..) | Command::RetryFailed { .. } | Command::Finish { .. }
            )
        });
        let (pending, commit) = match connection.transaction() {
            Ok(tx) => {
                let pending: Vec<Pending> = batch.into_iter().map(|command| apply(&tx, command)).collect();
                // A failed command leaves nothing behind: the whole group is rolled
                // back and every caller hears of it (none was acknowledged yet).
                let commit = if pending.iter().any(Pending::failed) {
                    drop(tx);
                    Err("a command of its group failed".to_string())
                } else {
                    tx.commit().map_err(|e| e.to_string())
                };
                (pending, commit)
            }
            Err(error) => {
                let commit = Err(error.to_string());
                let pending = batch.into_iter().map(refuse).collect();
                (pending, commit)
            }
        };
        if let Err(error) = &commit {
            tracing::error!(%error, "the trigger queue could not commit a group of writes");
        }
        for answer in pending {
            answer.send(&commit);
        }
        if queued_work && commit.is_ok() {
            work.notify_one();
        }
    }
}

fn refuse(command: Command) -> Pending {
    let error = || anyhow::anyhow!("the queue could not start a transaction");
    match command {
        Command::Enqueue(_, reply) => Pending::Enqueued(reply, Err(error())),
        Command::Claim { reply, .. } => Pending::Claimed(reply, Err(error())),
        Command::Finish { reply, .. } => Pending::Unit(reply, Err(error())),
        Command::RetryFailed { reply, .. } => Pending::Flag(reply, Err(error())),
        Command::CancelTrigger { reply, .. } | Command::Prune { reply, .. } => Pending::Count(reply, Err(error())),
    }
}

fn apply(tx: &Transaction, command: Command) -> Pending {
    match command {
        Command::Enqueue(job, reply) => Pending::Enqueued(reply, insert(tx, &job)),
        Command::Claim { limit, now, reply } => Pending::Claimed(reply, claim(tx, limit, now)),
        Command::Finish { id, finish, reply } => Pending::Unit(reply, finish_job(tx, &id, &finish)),
        Command::RetryFailed { id, budget, reply } => {
            let result = tx
                .execute(
                    "UPDATE jobs SET status = 'queued', budget = attempts + ?2, due_at = ?3, finished_at = NULL
                     WHERE id = ?1 AND status = 'failed'",
                    params![id, budget, now_ms()],
                )
                .map(|changed| changed > 0)
                .map_err(Into::into);
            Pending::Flag(reply, result)
        }
        Command::CancelTrigger { trigger_id, reply } => {
            let now = now_ms();
            let result = tx
                .execute(
                    "UPDATE jobs SET status = 'cancelled', due_at = ?2, finished_at = ?2,
                         last_error = 'the trigger was deleted'
                     WHERE trigger_id = ?1 AND status = 'queued'",
                    params![trigger_id, now],
                )
                .map_err(Into::into);
            Pending::Count(reply, result)
        }
        Command::Prune { before, limit, reply } => {
            let result = ["done", "cancelled"]
                .iter()
                .try_fold(0, |total, status| {
                    tx.execute(
                        "DELETE FROM jobs WHERE seq IN
                             (SELECT seq FROM jobs WHERE status = ?1 AND due_at < ?2 LIMIT ?3)",
                        params![status, before, limit as i64],
                    )
                    .map(|n| total + n)
                })
                .map_err(Into::into);
            Pending::Count(reply, result)
        }
    }
}

/// A job with its id and JSON columns ready.
struct PreparedJob {
    id: String,
    headers: String,
    contact: Option<String>,
    job: NewJob,
}

fn insert(tx: &Transaction, prepared: &PreparedJob) -> anyhow::Result<Enqueued> {
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

fn claim(tx: &Transaction, limit: usize, now: i64) -> anyhow::Result<Claimed> {
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

fn finish_job(tx: &Transaction, id: &str, finish: &Finish) -> anyhow::Result<()> {
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

    #[tokio::test]
    async fn idempotency_keys_queue_once_per_trigger() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("queue.db")).unwrap();
        let first = queue.enqueue(job("trg_a", None, Some("k1"))).await.unwrap();
        let again = queue.enqueue(job("trg_a", None, Some("k1"))).await.unwrap();
        assert_eq!(
            again,
            Enqueued {
                id: first.id.clone(),
                replayed: true
            }
        );
        let other_trigger = queue.enqueue(job("trg_b", None, Some("k1"))).await.unwrap();
        assert!(!other_trigger.replayed);
        let unkeyed = [
            queue.enqueue(job("trg_a", None, None)).await.unwrap(),
            queue.enqueue(job("trg_a", None, None)).await.unwrap(),
        ];
        assert_ne!(unkeyed[0].id, unkeyed[1].id);
        let claimed = queue.claim(10).await.unwrap();
        assert_eq!(claimed.jobs.len(), 4);
        assert_eq!(claimed.jobs[0].id, first.id);
        assert_eq!(claimed.jobs[0].attempt, 1);
    }

    #[tokio::test]
    async fn a_session_runs_one_event_at_a_time_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("queue.db")).unwrap();
        let s1 = queue.enqueue(job("trg", Some("s"), None)).await.unwrap();
        let s2 = queue.enqueue(job("trg", Some("s"), None)).await.unwrap();
        let t1 = queue.enqueue(job("trg", Some("t"), None)).await.unwrap();
        let first = queue.claim(10).await.unwrap();
        let ids: Vec<&str> = first.jobs.iter().map(|j| j.id.as_str()).collect();
        assert_eq!(ids, [s1.id.as_str(), t1.id.as_str()]);
        assert!(queue.claim(10).await.unwrap().jobs.is_empty(), "s2 waits for s1");
        queue.finish(&s1.id, Finish::Done).await.unwrap();
        let next = queue.claim(10).await.unwrap();
        assert_eq!(next.jobs.len(), 1);
        assert_eq!(next.jobs[0].id, s2.id);
    }

    #[tokio::test]
    async fn retries_wait_until_due_then_fail_and_can_be_retried_by_hand() {
        let dir = tempfile::tempdir().unwrap();
        let queue = Queue::open(&dir.path().join("queue.db")).unwrap();
        let queued = queue.enqueue(job("trg", None, None)).await.unwrap();
        let claimed = queue.claim(1).await.unwrap();
        let later = now_ms() + 60_000;
        queue
            .finish(
                &claimed.jobs[0].id,
                Finish::Retry {
                    at: later,
                    error: "boom".into(),
                },
            )
            .await
            .unwrap();
        let waiting = queue.claim(1).await.unwrap();
        assert!(waiting.jobs.is_empty());
        assert_eq!(waiting.next_due, Some(later));
        let summary = queue.job(&queued.id).unwrap().unwrap();
        assert_eq!(
            (summary.status.as_str(), summary.attempts, summary.next_attempt_at),
            ("queued", 1, Some(later))
        );

        assert!(
            !queue.retry_failed(&queued.id, 2).await.unwrap(),
            "only failed jobs are retried by hand"
        );
        // Pretend the attempts ran out.
        let dir_path = dir.path().join("queue.db");
        Connection::open(&dir_path)
            .unwrap()
            .execute("UPDATE jobs SET due_at = 0", [])
            .unwrap();
        let again = queue.claim(1).await.unwrap();
        assert_eq!(again.jobs[0].attempt, 2);
        queue
            .finish(&queued.id, Finish::Failed("still boom".into()))
            .await
            .unwrap();
        let failed = queue.job(&queued.id).unwrap().unwrap();
        assert_eq!(failed.status, "failed");
        assert_eq!(failed.last_error.as_deref(), Some("still boom"));
        assert!(queue.retry_failed(&queued.id, 2).await.unwrap());
        let retried = queue.claim(1).await.unwrap();
        assert_eq!((retried.jobs[0].attempt, retried.jobs[0].budget), (3, 4));
    }

    #[tokio::test]
    async fn pruning_forgets_every_old_finished_job_in_batches_and_keeps_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let queue = Queue::open(&path).unwrap();
        let mut done = Vec::new();
        for n in 0..5 {
            done.push(
                queue
                    .enqueue(job("trg", None, Some(&format!("old-{n}"))))
                    .await
                    .unwrap()
                    .id,
            );
        }
        let failed = queue.enqueue(job("trg", None, None)).await.unwrap().id;
        let claimed = queue.claim(10).await.unwrap();
        assert_eq!(claimed.jobs.len(), 6);
        for id in &done {
            queue.finish(id, Finish::Done).await.unwrap();
        }
        queue.finish(&failed, Finish::Failed("boom".into())).await.unwrap();
        // All of them ended long ago; one more finishes now, and one is still queued.
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE jobs SET due_at = 1", [])
            .unwrap();
        let recent = queue.enqueue(job("trg", None, None)).await.unwrap().id;
        queue.claim(1).await.unwrap();
        queue.finish(&recent, Finish::Done).await.unwrap();
        let waiting = queue.enqueue(job("trg", None, None)).await.unwrap().id;
        Connection::open(&path)
            .unwrap()
            .execute("UPDATE jobs SET due_at = 1 WHERE id = ?1", [&waiting])
            .unwrap();

        let pruned = queue.prune_in_batches(now_ms() - 60_000, 2).await.unwrap();
        assert_eq!(pruned, 5, "every old finished job, over several batches");
        for id in &done {
            assert!(queue.job(id).unwrap().is_none(), "{id} is forgotten");
        }
        for (id, status) in [(&failed, "failed"), (&recent, "done"), (&waiting, "queued")] {
            assert_eq!(queue.job(id).unwrap().unwrap().status, status, "{id} is kept");
        }
        // Its idempotency key went with it: the same key queues a new job.
        let again = queue.enqueue(job("trg", None, Some("old-0"))).await.unwrap();
        assert!(!again.replayed);
        assert_eq!(queue.prune(now_ms() - 60_000).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn running_jobs_are_queued_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let id = {
            let queue = Queue::open(&path).unwrap();
            let queued = queue.enqueue(job("trg", Some("s"), None)).await.unwrap();
            assert_eq!(queue.claim(1).await.unwrap().jobs.len(), 1);
            queued.id
        };
        let queue = Queue::open(&path).unwrap();
        let claimed = queue.claim(1).await.unwrap();
        assert_eq!(claimed.jobs[0].id, id);
        assert_eq!(claimed.jobs[0].attempt, 2);
    }
}
