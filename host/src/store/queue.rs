//! The durable queue of trigger events: what is kept of each job (an event to run, with
//! the request it came in), and the moves of its life.
//!
//! A job's life: `queued` → (claimed) `running` → `done`, or back to `queued` with a
//! later due time to retry, or `failed` once its attempts are spent (a failed job can be
//! retried by hand), or `cancelled` when its trigger was deleted. A job claimed by a
//! process that stopped before finishing it is handed out again.
//!
//! What the jobs are for (running them, when to retry, pruning) is `crate::jobs`'s.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::Notify;

use super::{Contact, Pending};

/// What made a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
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

    pub fn parse(text: &str) -> JobSource {
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

/// The answer to [`QueueStore::enqueue_job`].
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

/// A job without its request, as the trigger API shows it (serialised as it is).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = TriggerEvent)]
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

/// The queue part of the store. Every call answers with a [`Pending`]; a write's is
/// answered once the write is on disk.
///
/// Accepting trigger events must never wait behind the rest of the store's writes: a
/// backend keeps the queue apart from them (the embedded store in a file of its own).
pub trait QueueStore {
    /// Queues a job. A job for the same trigger with the same idempotency key queues
    /// nothing and answers the first job's id, `replayed`.
    fn enqueue_job(&self, job: NewJob) -> Pending<Enqueued>;
    /// Marks up to `limit` jobs due at `now` `running` and hands them out, oldest due
    /// first, never two of one session at once: a session with a job running waits, so
    /// its jobs run one at a time, in order.
    fn claim_jobs(&self, limit: usize, now: i64) -> Pending<Claimed>;
    /// Records how a running job's attempt ended.
    fn finish_job(&self, id: &str, finish: &Finish) -> Pending<()>;
    /// Puts a failed job back in the queue, due now, with `budget` more attempts; `false`
    /// when the job is not failed.
    fn retry_failed_job(&self, id: &str, budget: u32) -> Pending<bool>;
    /// Cancels every queued job of a trigger; answers how many.
    fn cancel_trigger_jobs(&self, trigger_id: &str) -> Pending<usize>;
    /// Forgets up to `limit` jobs of each finished status (`done`, `cancelled`) that
    /// ended before `before`, with their idempotency keys; answers how many.
    fn prune_jobs(&self, before: i64, limit: usize) -> Pending<usize>;

    /// One job, without its request.
    fn job(&self, id: &str) -> Pending<Option<JobSummary>>;
    /// A trigger's jobs, newest first, optionally of one status; `before` is the cursor
    /// of the previous page. Answers the page and the next cursor.
    fn jobs(
        &self,
        trigger_id: &str,
        status: Option<&str>,
        before: Option<i64>,
        take: usize,
    ) -> Pending<(Vec<JobSummary>, Option<i64>)>;

    /// How many jobs are `queued`, `running` and `failed` (given up, kept until retried),
    /// each status with its count, zero included: the queue's depth.
    fn job_counts(&self) -> Pending<Vec<(String, i64)>>;

    /// Woken after each commit that gave the claimers something new: a job queued or
    /// retried, or one finished (which frees its session).
    fn queued_work(&self) -> Arc<Notify>;
}
