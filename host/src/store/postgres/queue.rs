//! The trigger queue of the PostgreSQL store ([`QueueStore`] for [`PostgresStore`]).
//!
//! Replicas share the queue. A claim takes due jobs `FOR UPDATE SKIP LOCKED` under an
//! advisory lock (so that two replicas never run two events of one session at once)
//! and leases them to the claiming replica for [`LEASE_MS`]; the replica renews its
//! leases while it runs them. A job whose lease ran out (its replica died) is claimed
//! again by any replica, as a new attempt. Queued and freed work is announced to every
//! replica (`NOTIFY sluice_jobs`).

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, Pool};
use tokio::sync::Notify;
use tokio_postgres::Row;

use super::rows::{execute, query, query_opt};
use super::{PostgresStore, locks};
use crate::ids::record_id;
use crate::store::{Claimed, Enqueued, Finish, Job, JobSource, JobSummary, NewJob, Pending, QueueStore};
use crate::time::now_ms;

/// The channel queued and freed work is announced on.
pub(super) const CHANNEL: &str = "sluice_jobs";
/// How long a claim holds a job without being renewed.
pub const LEASE_MS: i64 = 30_000;
/// How often a replica renews the leases of the jobs it runs.
const RENEW_EVERY: Duration = Duration::from_secs(10);
/// How many due rows a claim looks at, at most, to find jobs whose session is free.
const CLAIM_SCAN_LIMIT: i64 = 5000;

/// Gives back the jobs this replica was running when it last stopped: queued again, due
/// now, for any replica.
pub(super) async fn release_own_claims<C: GenericClient>(client: &C, replica_id: &str) -> anyhow::Result<()> {
    let released = execute(
        client,
        "UPDATE jobs SET status = 'queued', due_at = $2, claimed_by = NULL, lease_until = NULL
         WHERE status = 'running' AND claimed_by = $1",
        &[&replica_id, &now_ms()],
    )
    .await?;
    if released > 0 {
        tracing::warn!(
            jobs = released,
            "trigger events were running when this replica last stopped; they run again"
        );
    }
    Ok(())
}

/// Renews the leases of the jobs this replica runs, while it lives.
pub(super) async fn renew_leases(pool: Pool, replica_id: String) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let renewed = async {
            let client = pool.get().await?;
            execute(
                &client,
                "UPDATE jobs SET lease_until = $2 WHERE status = 'running' AND claimed_by = $1",
                &[&replica_id, &(now_ms() + LEASE_MS)],
            )
            .await
        };
        if let Err(error) = renewed.await {
            tracing::debug!(error = %format!("{error:#}"), "renewing trigger event leases failed; retrying");
        }
    }
}

impl QueueStore for PostgresStore {
    fn enqueue_job(&self, job: NewJob) -> Pending<Enqueued> {
        let work = self.work.clone();
        self.run(move |c| async move {
            let id = record_id("tev");
            let headers = serde_json::to_string(&job.headers)?;
            let contact = job.contact.as_ref().map(serde_json::to_string).transpose()?;
            let inserted = query_opt(
                &c,
                "WITH inserted AS (
                    INSERT INTO jobs (id, trigger_id, source, idempotency_key, method, content_type, query, headers, body,
                        session, contact, received_at, status, attempts, budget, due_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'queued', 0, $13, $12)
                    ON CONFLICT (trigger_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
                    RETURNING id)
                 SELECT id, pg_notify('sluice_jobs', '')::text FROM inserted",
                &[
                    &id,
                    &job.trigger_id,
                    &job.source.as_str(),
                    &job.idempotency_key,
                    &job.method,
                    &job.content_type,
                    &job.query,
                    &headers,
                    &job.body.as_ref(),
                    &job.session,
                    &contact,
                    &job.received_at,
                    &i64::from(job.budget),
                ],
            )
            .await?;
            if inserted.is_some() {
                work.notify_one();
                return Ok(Enqueued { id, replayed: false });
            }
            let first = c
                .query_one(
                    "SELECT id FROM jobs WHERE trigger_id = $1 AND idempotency_key = $2",
                    &[&job.trigger_id, &job.idempotency_key],
                )
                .await?;
            Ok(Enqueued {
                id: first.get(0),
                replayed: true,
            })
        })
    }

    fn claim_jobs(&self, limit: usize, now: i64) -> Pending<Claimed> {
        let replica_id = self.replica_id.clone();
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let mut jobs = Vec::new();
            if limit > 0 {
                execute(&tx, "SELECT pg_advisory_xact_lock($1)", &[&locks::JOB_CLAIMS]).await?;
                // Sessions with an event running (under a live lease) wait.
                let busy: std::collections::HashSet<(String, String)> = query(
                    &tx,
                    "SELECT trigger_id, session FROM jobs
                     WHERE status = 'running' AND session IS NOT NULL AND lease_until >= $1",
                    &[&now],
                )
                .await?
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect();
                let candidates = query(
                    &tx,
                    "SELECT seq, trigger_id, session FROM jobs
                     WHERE (status = 'queued' AND due_at <= $1) OR (status = 'running' AND lease_until < $1)
                     ORDER BY due_at, seq LIMIT $2
                     FOR UPDATE SKIP LOCKED",
                    &[&now, &CLAIM_SCAN_LIMIT],
                )
                .await?;
                let mut taken = busy;
                let mut picked: Vec<i64> = Vec::new();
                for row in &candidates {
                    let session: Option<String> = row.get(2);
                    let free = match session {
                        // One session runs one event at a time, in order: a busy
                        // session's later events wait too.
                        Some(session) => taken.insert((row.get(1), session)),
                        None => true,
                    };
                    if free {
                        picked.push(row.get(0));
                        if picked.len() >= limit {
                            break;
                        }
                    }
                }
                if !picked.is_empty() {
                    let rows = query(
                        &tx,
                        "UPDATE jobs SET status = 'running', attempts = attempts + 1, claimed_by = $2, lease_until = $3
                         WHERE seq = ANY($1)
                         RETURNING seq, id, trigger_id, source, method, content_type, query, headers, body, session,
                             contact, received_at, attempts, budget",
                        &[&picked, &replica_id, &(now + LEASE_MS)],
                    )
                    .await?;
                    let mut claimed: Vec<(usize, Job)> = rows
                        .iter()
                        .map(|row| {
                            let seq: i64 = row.get(0);
                            let order = picked.iter().position(|p| *p == seq).unwrap_or(usize::MAX);
                            (order, job_row(row))
                        })
                        .collect();
                    claimed.sort_by_key(|(order, _)| *order);
                    jobs = claimed.into_iter().map(|(_, job)| job).collect();
                }
            }
            let next_due = query_opt(
                &tx,
                "SELECT due_at FROM jobs WHERE status = 'queued' AND due_at > $1 ORDER BY due_at LIMIT 1",
                &[&now],
            )
            .await?
            .map(|row| row.get(0));
            tx.commit().await?;
            Ok(Claimed { jobs, next_due })
        })
    }

    fn finish_job(&self, id: &str, finish: &Finish) -> Pending<()> {
        let (id, finish, replica_id, work) = (
            id.to_string(),
            finish.clone(),
            self.replica_id.clone(),
            self.work.clone(),
        );
        self.run(move |c| async move {
            let now = now_ms();
            let (status, due_at, finished_at, error): (&str, i64, Option<i64>, Option<String>) = match &finish {
                Finish::Done => ("done", now, Some(now), None),
                Finish::Retry { at, error } => ("queued", *at, None, Some(error.clone())),
                Finish::Failed(error) => ("failed", now, Some(now), Some(error.clone())),
                Finish::Cancelled(error) => ("cancelled", now, Some(now), Some(error.clone())),
            };
            // Only while this replica holds the claim: a job whose lease ran out belongs
            // to whoever claimed it since.
            query(
                &c,
                "WITH finished AS (
                    UPDATE jobs SET status = $2, due_at = $3, finished_at = $4, last_error = $5,
                        claimed_by = NULL, lease_until = NULL
                    WHERE id = $1 AND status = 'running' AND claimed_by = $6
                    RETURNING 1)
                 SELECT pg_notify('sluice_jobs', '')::text FROM finished",
                &[&id, &status, &due_at, &finished_at, &error, &replica_id],
            )
            .await?;
            // A retry is queued again, and any end frees the job's session.
            work.notify_one();
            Ok(())
        })
    }

    fn retry_failed_job(&self, id: &str, budget: u32) -> Pending<bool> {
        let (id, work) = (id.to_string(), self.work.clone());
        self.run(move |c| async move {
            let retried = !query(
                &c,
                "WITH retried AS (
                    UPDATE jobs SET status = 'queued', budget = attempts + $2, due_at = $3, finished_at = NULL
                    WHERE id = $1 AND status = 'failed'
                    RETURNING 1)
                 SELECT pg_notify('sluice_jobs', '')::text FROM retried",
                &[&id, &i64::from(budget), &now_ms()],
            )
            .await?
            .is_empty();
            if retried {
                work.notify_one();
            }
            Ok(retried)
        })
    }

    fn cancel_trigger_jobs(&self, trigger_id: &str) -> Pending<usize> {
        let trigger_id = trigger_id.to_string();
        self.run(move |c| async move {
            let now = now_ms();
            let cancelled = execute(
                &c,
                "UPDATE jobs SET status = 'cancelled', due_at = $2, finished_at = $2,
                     last_error = 'the trigger was deleted'
                 WHERE trigger_id = $1 AND status = 'queued'",
                &[&trigger_id, &now],
            )
            .await?;
            Ok(cancelled as usize)
        })
    }

    fn prune_jobs(&self, before: i64, limit: usize) -> Pending<usize> {
        self.run(move |c| async move {
            let mut pruned = 0;
            for status in ["done", "cancelled"] {
                pruned += execute(
                    &c,
                    "DELETE FROM jobs WHERE seq IN
                         (SELECT seq FROM jobs WHERE status = $1 AND due_at < $2 LIMIT $3)",
                    &[&status, &before, &(limit as i64)],
                )
                .await? as usize;
            }
            Ok(pruned)
        })
    }

    fn job(&self, id: &str) -> Pending<Option<JobSummary>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {SUMMARY_COLUMNS} FROM jobs WHERE id = $1");
            Ok(query_opt(&c, &sql, &[&id]).await?.as_ref().map(summary_row))
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
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {SUMMARY_COLUMNS}, seq FROM jobs
                 WHERE trigger_id = $1 AND ($2::text IS NULL OR status = $2) AND seq < $3
                 ORDER BY seq DESC LIMIT $4"
            );
            let rows = query(
                &c,
                &sql,
                &[&trigger_id, &status, &before.unwrap_or(i64::MAX), &((take + 1) as i64)],
            )
            .await?;
            let mut rows: Vec<(JobSummary, i64)> = rows
                .iter()
                .map(|row| (summary_row(row), row.get(SUMMARY_COUNT)))
                .collect();
            let next = if rows.len() > take {
                rows.truncate(take);
                rows.last().map(|(_, seq)| *seq)
            } else {
                None
            };
            Ok((rows.into_iter().map(|(job, _)| job).collect(), next))
        })
    }

    fn job_counts(&self) -> Pending<Vec<(String, i64)>> {
        self.run(move |c| async move {
            let rows = query(
                &c,
                "SELECT s.status, (SELECT count(*) FROM jobs j WHERE j.status = s.status)
                 FROM unnest(ARRAY['queued', 'running', 'failed']) WITH ORDINALITY AS s(status, n) ORDER BY n",
                &[],
            )
            .await?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    fn queued_work(&self) -> Arc<Notify> {
        self.work.clone()
    }
}

const SUMMARY_COLUMNS: &str = "id, trigger_id, source, status, attempts, budget, session, idempotency_key, \
     received_at, due_at, finished_at, last_error";
const SUMMARY_COUNT: usize = 12;

fn summary_row(row: &Row) -> JobSummary {
    let status: String = row.get(3);
    let due_at: i64 = row.get(9);
    JobSummary {
        id: row.get(0),
        trigger_id: row.get(1),
        source: JobSource::parse(&row.get::<_, String>(2)),
        attempts: row.get::<_, i64>(4) as u32,
        max_attempts: row.get::<_, i64>(5) as u32,
        session: row.get(6),
        idempotency_key: row.get(7),
        received_at: row.get(8),
        next_attempt_at: (status == "queued").then_some(due_at),
        finished_at: row.get(10),
        last_error: row.get(11),
        status,
    }
}

/// A claimed job, from the claim's `RETURNING` (seq first).
fn job_row(row: &Row) -> Job {
    let headers: String = row.get(7);
    let contact: Option<String> = row.get(10);
    Job {
        id: row.get(1),
        trigger_id: row.get(2),
        source: JobSource::parse(&row.get::<_, String>(3)),
        method: row.get(4),
        content_type: row.get(5),
        query: row.get(6),
        headers: serde_json::from_str(&headers).unwrap_or_default(),
        body: row.get(8),
        session: row.get(9),
        contact: contact.and_then(|text| serde_json::from_str(&text).ok()),
        received_at: row.get(11),
        attempt: row.get::<_, i64>(12) as u32,
        budget: row.get::<_, i64>(13) as u32,
    }
}
