//! The durable queue of trigger events, as the workers and the trigger API use it.
//!
//! What a job is and how it is kept (on disk before its sender hears `{"ok":true}`,
//! deduplicated by `Idempotency-Key`, claimed never two of one session at once) is the
//! store's ([`QueueStore`]; the embedded store keeps the queue in a file of its own,
//! `queue.db`). What is decided here: the clock claims are made by, and that pruning goes
//! a batch at a time, so that the queue's writer is never held long.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::store::SharedStore;
pub use crate::store::{Claimed, Enqueued, Finish, Job, JobSource, JobSummary, NewJob};
use crate::time::now_ms;

/// How many finished jobs of each status one pruning transaction deletes.
const PRUNE_BATCH: usize = 5000;

/// The queue: the store's queue part, and the signal of new work.
pub struct Queue {
    store: SharedStore,
    /// Woken whenever jobs were queued (or a session freed), so the dispatcher claims them.
    pub work: Arc<Notify>,
}

impl Queue {
    pub fn new(store: SharedStore) -> Queue {
        Queue {
            work: store.queued_work(),
            store,
        }
    }

    /// Queues a job; returns once it is on disk.
    pub async fn enqueue(&self, job: NewJob) -> anyhow::Result<Enqueued> {
        self.store.enqueue_job(job).await
    }

    /// Marks up to `limit` due jobs `running` and hands them out, oldest due first,
    /// never two of one session at once.
    pub async fn claim(&self, limit: usize) -> anyhow::Result<Claimed> {
        self.store.claim_jobs(limit, now_ms()).await
    }

    /// Records how an attempt ended.
    pub async fn finish(&self, id: &str, finish: Finish) -> anyhow::Result<()> {
        self.store.finish_job(id, &finish).await
    }

    /// Puts a failed job back in the queue with `budget` more attempts; `false` when
    /// the job is not failed.
    pub async fn retry_failed(&self, id: &str, budget: u32) -> anyhow::Result<bool> {
        self.store.retry_failed_job(id, budget).await
    }

    /// Cancels every queued job of a deleted trigger.
    pub async fn cancel_trigger(&self, trigger_id: &str) -> anyhow::Result<usize> {
        self.store.cancel_trigger_jobs(trigger_id).await
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
            let pruned = self.store.prune_jobs(before, batch).await?;
            total += pruned;
            // Fewer than a batch means no status had a full batch left.
            if pruned < batch {
                return Ok(total);
            }
        }
    }

    /// One job, without its body.
    pub async fn job(&self, id: &str) -> anyhow::Result<Option<JobSummary>> {
        self.store.job(id).await
    }

    /// A trigger's jobs, newest first, optionally of one status; `before` is the cursor
    /// of the previous page. Returns the page and the next cursor.
    pub async fn jobs(
        &self,
        trigger_id: &str,
        status: Option<&str>,
        before: Option<i64>,
        take: usize,
    ) -> anyhow::Result<(Vec<JobSummary>, Option<i64>)> {
        self.store.jobs(trigger_id, status, before, take).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    fn job(key: Option<&str>) -> NewJob {
        NewJob {
            trigger_id: "trg".into(),
            source: JobSource::Event,
            idempotency_key: key.map(String::from),
            method: "POST".into(),
            content_type: None,
            query: String::new(),
            headers: Vec::new(),
            body: bytes::Bytes::new(),
            session: None,
            contact: None,
            received_at: now_ms(),
            budget: 3,
        }
    }

    #[tokio::test]
    async fn pruning_goes_on_batch_after_batch_until_nothing_old_is_left() {
        let queue = Queue::new(Arc::new(SqliteStore::in_memory().unwrap()));
        let mut done = Vec::new();
        for n in 0..5 {
            done.push(queue.enqueue(job(Some(&format!("k{n}")))).await.unwrap().id);
        }
        let failed = queue.enqueue(job(None)).await.unwrap().id;
        assert_eq!(queue.claim(10).await.unwrap().jobs.len(), 6);
        for id in &done {
            queue.finish(id, Finish::Done).await.unwrap();
        }
        queue.finish(&failed, Finish::Failed("boom".into())).await.unwrap();
        let waiting = queue.enqueue(job(None)).await.unwrap().id;

        // Everything that ended before a minute from now is old.
        let pruned = queue.prune_in_batches(now_ms() + 60_000, 2).await.unwrap();
        assert_eq!(pruned, 5, "every finished job, over several batches");
        for id in &done {
            assert!(queue.job(id).await.unwrap().is_none(), "{id} is forgotten");
        }
        for (id, status) in [(&failed, "failed"), (&waiting, "queued")] {
            assert_eq!(queue.job(id).await.unwrap().unwrap().status, status, "{id} is kept");
        }
        assert_eq!(queue.prune(now_ms() + 60_000).await.unwrap(), 0);
    }
}
