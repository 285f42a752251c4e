//! Group commit. One thread owns a database's write connection; the writes waiting for it
//! are run together and committed in one transaction, so one
//! fsync (`synchronous=FULL`) covers all of them. A caller's write returns only once the
//! transaction that holds it is committed: nothing is acknowledged before it is on disk,
//! and under load the disk's commit rate no longer limits how many writes go through.
//!
//! One failure semantics for every write: a write that fails (or panics) is undone and
//! answered with its error; the others of its transaction commit (the group runs again
//! with a savepoint around each write, see [`commit_batch`]).
//! The store and the trigger queue each have a writer of this kind.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use anyhow::anyhow;
use rusqlite::Connection;
use tokio::sync::oneshot;
use tracing::Span;

use crate::store::pending::{Answer, Pending};
use crate::telemetry::{metrics, traces};

struct Job {
    /// `Fn`: a group that had a failing write runs again (see [`commit_batch`]).
    work: Box<dyn Fn(&Connection) -> Answer + Send>,
    /// A oneshot, so that async callers wait without holding a thread.
    reply: oneshot::Sender<Answer>,
    /// The write's span while it is part of a trace (a child of the span it was asked
    /// for in, from then until its transaction is committed); none otherwise.
    commit: Option<Span>,
}

/// The handle through which every write of one database goes.
#[derive(Clone)]
pub(super) struct GroupWriter {
    jobs: mpsc::Sender<Job>,
    /// What the database is, for errors: `store`, `queue`.
    name: &'static str,
}

impl GroupWriter {
    /// Starts the writer thread on `connection`, which nothing else may write through,
    /// taking at most `max_batch` writes into one transaction. `announcement` is told
    /// what each committed transaction did.
    pub(super) fn start(
        name: &'static str,
        connection: Arc<Mutex<Connection>>,
        max_batch: usize,
        announcement: Announcement,
    ) -> anyhow::Result<GroupWriter> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("sluice-{name}-writer"))
            .spawn(move || {
                let mut careful = 0;
                while let Ok(first) = queue.recv() {
                    let mut batch = vec![first];
                    batch.extend(queue.try_iter().take(max_batch - 1));
                    let connection = connection.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                    let (started, writes) = (Instant::now(), batch.len());
                    commit_batch(&connection, &announcement, batch, &mut careful);
                    metrics().store_commit(name, writes, started.elapsed());
                }
            })?;
        Ok(GroupWriter { jobs, name })
    }

    /// Runs `work` in the next transaction; the result is there once that transaction is
    /// committed. An error from `work` undoes only its own changes.
    pub(super) fn write<T: Send + 'static>(
        &self,
        work: impl Fn(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Pending<T> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            work: Box::new(move |connection| work(connection).map(|value| Box::new(value) as Box<dyn Any + Send>)),
            reply,
            commit: traces::in_trace().then(|| {
                tracing::info_span!(target: traces::TARGET, "store commit", otel.name = "store commit", db.system.name = "sqlite")
            }),
        };
        match self.jobs.send(job) {
            Ok(()) => Pending::waiting(answer),
            Err(_) => Pending::failed(anyhow!("the {}'s writer has stopped", self.name)),
        }
    }
}

/// Something the writes of the open transaction did that others wait to hear of (the
/// highest outbox seq they published, or that they queued work), as a number: 0 while
/// there is nothing to tell. A write that is undone takes back what it noted; what is
/// left is told once the transaction is committed, when readers can see it.
#[derive(Clone)]
pub(super) struct Announcement {
    noted: Arc<AtomicI64>,
    tell: Arc<dyn Fn(i64) + Send + Sync>,
}

impl Announcement {
    /// An announcement that calls `tell` with what was noted, after each commit that
    /// noted something.
    pub(super) fn new(tell: impl Fn(i64) + Send + Sync + 'static) -> Announcement {
        Announcement {
            noted: Arc::new(AtomicI64::new(0)),
            tell: Arc::new(tell),
        }
    }

    /// Notes `value` for the open transaction (the largest value noted is told).
    pub(super) fn note(&self, value: i64) {
        self.noted.fetch_max(value, Ordering::Relaxed);
    }

    fn mark(&self) -> i64 {
        self.noted.load(Ordering::Relaxed)
    }

    fn rewind(&self, mark: i64) {
        self.noted.store(mark, Ordering::Relaxed);
    }

    fn announce(&self) {
        let noted = self.noted.swap(0, Ordering::Relaxed);
        if noted > 0 {
            (self.tell)(noted);
        }
    }
}

/// How many transactions after one whose write failed run each write in a savepoint
/// from the start, so that a run of failing writes does not run every group twice.
const CAREFUL_AFTER_FAILURE: u32 = 64;

/// Commits a group of writes. Each write's savepoint copies every page it touches, again
/// for each write of the group, so a group first runs without them: when none fails,
/// that is the whole transaction. When one fails, the transaction is rolled back and the
/// group runs again, each write in its own savepoint (writes are `Fn`, so running one
/// again is asking it again in the same state), as do the groups that follow for a while.
fn commit_batch(connection: &Connection, announcement: &Announcement, batch: Vec<Job>, careful: &mut u32) {
    if *careful > 0 {
        *careful -= 1;
    } else if let Some(answers) = run_together(connection, announcement, &batch) {
        let done = batch
            .into_iter()
            .zip(answers)
            .map(|(job, answer)| (job.reply, answer, job.commit));
        return commit_and_answer(connection, announcement, done.collect());
    } else {
        *careful = CAREFUL_AFTER_FAILURE;
    }
    commit_in_savepoints(connection, announcement, batch);
}

/// Runs every write of the group in one transaction, without savepoints; `None` (and
/// nothing left of the transaction) as soon as one fails.
fn run_together(connection: &Connection, announcement: &Announcement, batch: &[Job]) -> Option<Vec<Answer>> {
    connection.execute_batch("BEGIN IMMEDIATE").ok()?;
    let mut answers = Vec::with_capacity(batch.len());
    for job in batch {
        match run_job(connection, job) {
            Ok(value) => answers.push(Ok(value)),
            Err(_) => {
                if !connection.is_autocommit() {
                    let _ = connection.execute_batch("ROLLBACK");
                }
                announcement.rewind(0);
                return None;
            }
        }
    }
    Some(answers)
}

/// Runs one write, its panic turned into its error.
fn run_job(connection: &Connection, job: &Job) -> Answer {
    let traceparent = job.commit.as_ref().and_then(traces::traceparent_of);
    traces::publishing_under(traceparent, || {
        catch_unwind(AssertUnwindSafe(|| (job.work)(connection)))
            .unwrap_or_else(|panic| Err(anyhow!("a store write panicked: {}", panic_message(&panic))))
    })
}

/// Runs each write of the group in its own savepoint: one that fails is undone alone.
fn commit_in_savepoints(connection: &Connection, announcement: &Announcement, batch: Vec<Job>) {
    let mut jobs = batch.into_iter();
    // Answers wait here until their transaction is committed, with the traced writes'
    // commit spans, ended when the transaction is.
    let mut done: Vec<(oneshot::Sender<Answer>, Answer, Option<Span>)> = Vec::new();
    'transaction: loop {
        if let Err(error) = connection.execute_batch("BEGIN IMMEDIATE") {
            for job in jobs {
                let _ = job
                    .reply
                    .send(Err(anyhow!("the store cannot start a transaction: {error}")));
            }
            return;
        }
        for job in jobs.by_ref() {
            let mark = announcement.mark();
            let result = run_cached(connection, "SAVEPOINT job").and_then(|()| run_job(connection, &job));
            let result = match result {
                Ok(value) => run_cached(connection, "RELEASE job").map(|()| value),
                Err(error) => {
                    let _ = connection.execute_batch("ROLLBACK TO job; RELEASE job");
                    announcement.rewind(mark);
                    Err(error)
                }
            };
            if connection.is_autocommit() {
                // SQLite rolled the whole transaction back (a full disk, an I/O error): the
                // writes before this one are gone too. Say so, and go on in a new one.
                announcement.rewind(0);
                for (reply, _, _) in done.drain(..) {
                    let _ = reply.send(Err(anyhow!("the store rolled the write back: {:#}", describe(&result))));
                }
                let _ = job.reply.send(result);
                continue 'transaction;
            }
            done.push((job.reply, result, job.commit));
        }
        break;
    }
    commit_and_answer(connection, announcement, done);
}

/// Commits the open transaction, then answers each write: with its own answer once the
/// transaction is on disk, with the commit's error otherwise.
fn commit_and_answer(
    connection: &Connection,
    announcement: &Announcement,
    done: Vec<(oneshot::Sender<Answer>, Answer, Option<Span>)>,
) {
    match connection.execute_batch("COMMIT") {
        Ok(()) => {
            announcement.announce();
            for (reply, result, _) in done {
                let _ = reply.send(result);
            }
        }
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            announcement.rewind(0);
            for (reply, _, _) in done {
                let _ = reply.send(Err(anyhow!("the store could not commit the write: {error}")));
            }
        }
    }
}

/// Runs a statement the writer runs for every job, prepared once per connection.
fn run_cached(connection: &Connection, sql: &str) -> anyhow::Result<()> {
    connection.prepare_cached(sql)?.execute([])?;
    Ok(())
}

fn describe(result: &Answer) -> String {
    match result {
        Ok(_) => "the transaction ended".into(),
        Err(error) => format!("{error:#}"),
    }
}

fn panic_message(panic: &Box<dyn Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use crate::store::EventRecord;
    use crate::store::prelude::*;
    use crate::store::sqlite::SqliteStore;

    fn event(id: &str) -> EventRecord {
        EventRecord {
            id: id.into(),
            installation_id: Some("inst_1".into()),
            event_type: "test:happened".into(),
            payload: json!({ "id": id }),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "ignored".into(),
            failure_reason: None,
            created_at: 1,
        }
    }

    #[test]
    fn concurrent_writes_are_all_committed_and_readable_from_other_connections() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let writers: Vec<_> = (0..8)
            .map(|thread| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for n in 0..50 {
                        let id = format!("evt_{thread}_{n}");
                        store.insert_event(&event(&id)).wait().unwrap();
                        // Read-your-write: committed before insert_event returned.
                        assert!(store.event(&id).wait().unwrap().is_some(), "{id} is readable at once");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        assert_eq!(store.raw_outbox_after(0, 1000).wait().unwrap().len(), 400);
        assert_eq!(*store.outbox_published().borrow(), 400);
        drop(store);
        let reopened = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(reopened.raw_outbox_after(0, 1000).wait().unwrap().len(), 400, "on disk");
    }

    #[test]
    fn a_failing_write_undoes_only_itself() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        store.insert_event(&event("evt_dup")).wait().unwrap();
        // Many writers at once, so failing and succeeding writes share transactions.
        let writers: Vec<_> = (0..8)
            .map(|thread| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for n in 0..20 {
                        let duplicate = store.insert_event(&event("evt_dup")).wait();
                        assert!(duplicate.is_err(), "a duplicate id is refused");
                        store.insert_event(&event(&format!("evt_{thread}_{n}"))).wait().unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let outbox = store.raw_outbox_after(0, 1000).wait().unwrap();
        assert_eq!(outbox.len(), 161, "every good write and none of the refused ones");
        assert_eq!(*store.outbox_published().borrow(), outbox.last().unwrap().seq);
    }

    #[test]
    fn a_group_with_a_failing_write_runs_again_and_applies_each_other_write_once() {
        let store = SqliteStore::in_memory().unwrap();
        // Hold the writer inside a transaction, so that the writes below queue up and all
        // go into its next group.
        let (started, running) = std::sync::mpsc::channel();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let holding = store.write(move |_| {
            started.send(()).unwrap();
            hold.recv().unwrap();
            Ok(())
        });
        running.recv().unwrap();
        let count = "INSERT INTO delivery_cursors (name, seq) VALUES ('count', 1)
                     ON CONFLICT (name) DO UPDATE SET seq = seq + 1";
        let counted = store.write(move |tx| Ok(tx.execute(count, [])?));
        let recorded = store.insert_event(&event("evt_before"));
        let failing = store.write(|tx| -> anyhow::Result<()> {
            tx.execute("INSERT INTO delivery_cursors (name, seq) VALUES ('half-done', 1)", [])?;
            anyhow::bail!("refused after writing")
        });
        let after = store.insert_event(&event("evt_after"));
        release.send(()).unwrap();
        holding.wait().unwrap();

        counted.wait().unwrap();
        recorded.wait().unwrap();
        let error = failing.wait().unwrap_err();
        assert!(format!("{error:#}").contains("refused after writing"), "{error:#}");
        after.wait().unwrap();
        assert_eq!(
            store.cursor("count").wait().unwrap(),
            Some(1),
            "applied once, not once per run"
        );
        assert_eq!(
            store.cursor("half-done").wait().unwrap(),
            None,
            "the failing write is undone"
        );
        let outbox = store.raw_outbox_after(0, 10).wait().unwrap();
        assert_eq!(outbox.len(), 2, "both events, each once");
        assert_eq!(*store.outbox_published().borrow(), outbox[1].seq);
    }

    #[test]
    fn async_callers_await_commits_without_blocking_their_thread() {
        // One thread runs every task: a write that blocked it while waiting for its commit
        // would stop the others (and tokio refuses blocking waits there outright).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        runtime.block_on(async {
            let writes = (0..100).map(|n| {
                let store = store.clone();
                async move { store.insert_event(&event(&format!("evt_{n}"))).await }
            });
            for result in futures::future::join_all(writes).await {
                result.unwrap();
            }
        });
        assert_eq!(store.raw_outbox_after(0, 1000).wait().unwrap().len(), 100);
    }

    #[test]
    fn a_panicking_write_is_an_error_and_the_writer_goes_on() {
        let store = SqliteStore::in_memory().unwrap();
        let panicked = store.write(|_| -> anyhow::Result<()> { panic!("boom") }).wait();
        let message = format!("{:#}", panicked.unwrap_err());
        assert!(message.contains("panicked: boom"), "{message}");
        store.insert_event(&event("evt_after")).wait().unwrap();
        assert!(store.event("evt_after").wait().unwrap().is_some());
    }
}
