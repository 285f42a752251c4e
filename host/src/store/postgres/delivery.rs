//! The delivery tables of the PostgreSQL store ([`DeliveryStore`] for [`PostgresStore`]):
//! subscriptions, deliveries, their attempts, outbox cursors and recoveries.

use tokio_postgres::Row;

use super::PostgresStore;
use super::rows::{Conditions, execute, page, query, query_opt, raw_entry};
use crate::store::delivery::*;
use crate::store::{Page, Pending};

const SUBSCRIPTION_COLUMNS: &str =
    "id, url, types, secret, enabled, description, source, created_at, updated_at, disabled_at";

fn subscription_row(row: &Row) -> SubscriptionRecord {
    let types: String = row.get(2);
    SubscriptionRecord {
        id: row.get(0),
        url: row.get(1),
        types: serde_json::from_str(&types).unwrap_or_default(),
        secret: row.get(3),
        enabled: row.get(4),
        description: row.get(5),
        source: SubscriptionSource::parse(&row.get::<_, String>(6)),
        created_at: row.get(7),
        updated_at: row.get(8),
        disabled_at: row.get(9),
    }
}

/// Deliveries joined with their outbox entry; `seq` first, as [`page`] wants it.
const DELIVERY_SELECT: &str = "SELECT * FROM (SELECT d.seq AS seq, d.subscription_id AS subscription_id,
        d.outbox_seq AS outbox_seq, o.id AS event_id, o.type AS event_type, d.status AS status,
        d.attempts AS attempts, d.next_attempt_at AS next_attempt_at, d.last_status_code AS last_status_code,
        d.last_error AS last_error, d.created_at AS created_at, d.updated_at AS updated_at,
        d.round AS round, d.round_start AS round_start, d.recovery_id AS recovery_id
      FROM deliveries d JOIN outbox o ON o.seq = d.outbox_seq) joined";

fn delivery_row(row: &Row) -> DeliveryRecord {
    DeliveryRecord {
        seq: row.get(0),
        subscription_id: row.get(1),
        outbox_seq: row.get(2),
        event_id: row.get(3),
        event_type: row.get(4),
        status: DeliveryStatus::parse(&row.get::<_, String>(5)).unwrap_or(DeliveryStatus::Pending),
        attempts: row.get(6),
        next_attempt_at: row.get(7),
        last_status_code: row.get(8),
        last_error: row.get(9),
        created_at: row.get(10),
        updated_at: row.get(11),
        round: row.get(12),
        round_start: row.get(13),
        recovery_id: row.get(14),
    }
}

const PENDING_SELECT: &str = "SELECT d.seq, d.attempts, d.round_start, coalesce(d.next_attempt_at, 0),
        o.seq, o.id, o.type, o.time, o.integration_id, o.data, o.traceparent
    FROM deliveries d JOIN outbox o ON o.seq = d.outbox_seq";

fn pending_row(row: &Row) -> PendingDelivery {
    PendingDelivery {
        seq: row.get(0),
        attempts: row.get(1),
        round_start: row.get(2),
        next_attempt_at: row.get(3),
        entry: raw_entry(row, 4),
    }
}

const RECOVERY_COLUMNS: &str = "id, subscription_id, since, total, created_at";

fn recovery_row(row: &Row) -> RecoveryRecord {
    RecoveryRecord {
        id: row.get(0),
        subscription_id: row.get(1),
        since: row.get(2),
        total: row.get(3),
        created_at: row.get(4),
    }
}

fn attempt_row(row: &Row) -> AttemptRecord {
    AttemptRecord {
        delivery_seq: row.get(0),
        number: row.get(1),
        started_at: row.get(2),
        duration_ms: row.get(3),
        status_code: row.get(4),
        error: row.get(5),
        outcome: DeliveryStatus::parse(&row.get::<_, String>(6)).unwrap_or(DeliveryStatus::Pending),
        next_attempt_at: row.get(7),
    }
}

const SET_CURSOR: &str =
    "INSERT INTO delivery_cursors (name, seq) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET seq = excluded.seq";

impl DeliveryStore for PostgresStore {
    fn subscriptions(&self) -> Pending<Vec<SubscriptionRecord>> {
        self.run(move |c| async move {
            let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, id");
            Ok(query(&c, &sql, &[]).await?.iter().map(subscription_row).collect())
        })
    }

    fn subscription(&self, id: &str) -> Pending<Option<SubscriptionRecord>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
            Ok(query_opt(&c, &sql, &[&id]).await?.as_ref().map(subscription_row))
        })
    }

    fn save_subscription(&self, s: &SubscriptionRecord) -> Pending<()> {
        let s = s.clone();
        self.run_changing("subscriptions", move |c| async move {
            execute(
                &c,
                "INSERT INTO subscriptions (id, url, types, secret, enabled, description, source, created_at, updated_at, disabled_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                 ON CONFLICT (id) DO UPDATE SET url = $2, types = $3, secret = $4, enabled = $5,
                    description = $6, source = $7, updated_at = $9, disabled_at = $10",
                &[
                    &s.id,
                    &s.url,
                    &serde_json::to_string(&s.types)?,
                    &s.secret,
                    &s.enabled,
                    &s.description,
                    &s.source.as_str(),
                    &s.created_at,
                    &s.updated_at,
                    &s.disabled_at,
                ],
            )
            .await?;
            Ok((c, ()))
        })
    }

    fn delete_subscription(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.run_changing("subscriptions", move |mut c| async move {
            let tx = c.transaction().await?;
            execute(
                &tx,
                "DELETE FROM delivery_attempts WHERE delivery_seq IN (SELECT seq FROM deliveries WHERE subscription_id = $1)",
                &[&id],
            )
            .await?;
            execute(&tx, "DELETE FROM deliveries WHERE subscription_id = $1", &[&id]).await?;
            execute(&tx, "DELETE FROM delivery_recoveries WHERE subscription_id = $1", &[&id]).await?;
            let deleted = execute(&tx, "DELETE FROM subscriptions WHERE id = $1", &[&id]).await? > 0;
            tx.commit().await?;
            Ok((c, deleted))
        })
    }

    fn cursor(&self, name: &str) -> Pending<Option<i64>> {
        let name = name.to_owned();
        self.run(move |c| async move {
            let row = query_opt(&c, "SELECT seq FROM delivery_cursors WHERE name = $1", &[&name]).await?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn set_cursor(&self, name: &str, seq: i64) -> Pending<()> {
        let name = name.to_string();
        self.run(move |c| async move {
            execute(&c, SET_CURSOR, &[&name, &seq]).await?;
            Ok(())
        })
    }

    fn fan_out(&self, deliveries: &[(String, i64)], cursor: &str, through: i64, now: i64) -> Pending<Vec<i64>> {
        let (deliveries, cursor) = (deliveries.to_vec(), cursor.to_string());
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            // One statement for the whole batch: the subscriptions and seqs as arrays.
            let (subscriptions, outbox_seqs): (Vec<String>, Vec<i64>) = deliveries.into_iter().unzip();
            let mut created = Vec::with_capacity(subscriptions.len());
            if !subscriptions.is_empty() {
                let rows = query(
                    &tx,
                    "INSERT INTO deliveries (subscription_id, outbox_seq, status, attempts, next_attempt_at, created_at, updated_at)
                     SELECT s, o, 'pending', 0, $3, $3, $3 FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS t(s, o, n)
                     ORDER BY n
                     RETURNING seq, subscription_id, outbox_seq",
                    &[&subscriptions, &outbox_seqs, &now],
                )
                .await?;
                // RETURNING promises no order: match each row to its (subscription, entry),
                // which a batch holds once.
                let mut seqs: std::collections::HashMap<(String, i64), i64> =
                    rows.iter().map(|row| ((row.get(1), row.get(2)), row.get(0))).collect();
                for key in subscriptions.into_iter().zip(outbox_seqs) {
                    let seq = seqs
                        .remove(&key)
                        .ok_or_else(|| anyhow::anyhow!("no delivery was created for entry {} to {}", key.1, key.0))?;
                    created.push(seq);
                }
            }
            execute(&tx, SET_CURSOR, &[&cursor, &through]).await?;
            tx.commit().await?;
            Ok(created)
        })
    }

    fn pending_deliveries(&self, subscription_id: &str, after: i64, limit: usize) -> Pending<Vec<PendingDelivery>> {
        let subscription_id = subscription_id.to_owned();
        self.run(move |c| async move {
            let sql = format!(
                "{PENDING_SELECT} WHERE d.subscription_id = $1 AND d.status = 'pending' AND d.seq > $2
                 ORDER BY d.seq LIMIT $3"
            );
            let rows = query(&c, &sql, &[&subscription_id, &after, &(limit as i64)]).await?;
            Ok(rows.iter().map(pending_row).collect())
        })
    }

    fn pending_deliveries_by_seq(&self, subscription_id: &str, seqs: &[i64]) -> Pending<Vec<PendingDelivery>> {
        let (subscription_id, seqs) = (subscription_id.to_owned(), seqs.to_vec());
        self.run(move |c| async move {
            let sql = format!(
                "{PENDING_SELECT} WHERE d.seq = ANY($1) AND d.subscription_id = $2 AND d.status = 'pending'
                 ORDER BY d.seq"
            );
            let rows = query(&c, &sql, &[&seqs, &subscription_id]).await?;
            Ok(rows.iter().map(pending_row).collect())
        })
    }

    fn record_attempts(&self, attempts: &[AttemptRecord], now: i64) -> Pending<()> {
        let attempts = attempts.to_vec();
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            for a in &attempts {
                // The number an attempt is kept under: its own, or the next free one when
                // that is taken, so that no attempt overwrites another.
                let taken = query_opt(
                    &tx,
                    "SELECT greatest($2::bigint, coalesce((SELECT max(number) + 1 FROM delivery_attempts WHERE delivery_seq = $1), 0))
                     WHERE EXISTS (SELECT 1 FROM delivery_attempts WHERE delivery_seq = $1 AND number = $2)",
                    &[&a.delivery_seq, &a.number],
                )
                .await?;
                let number: i64 = taken.map(|row| row.get(0)).unwrap_or(a.number);
                let changed = execute(
                    &tx,
                    "UPDATE deliveries SET status = $2, attempts = greatest(attempts, $3), next_attempt_at = $4,
                        last_status_code = $5, last_error = $6, updated_at = $7
                     WHERE seq = $1",
                    &[
                        &a.delivery_seq,
                        &a.outcome.as_str(),
                        &number,
                        &a.next_attempt_at,
                        &a.status_code,
                        &a.error,
                        &now,
                    ],
                )
                .await?;
                if changed > 0 {
                    execute(
                        &tx,
                        "INSERT INTO delivery_attempts
                            (delivery_seq, number, started_at, duration_ms, status_code, error, outcome, next_attempt_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        &[
                            &a.delivery_seq,
                            &number,
                            &a.started_at,
                            &a.duration_ms,
                            &a.status_code,
                            &a.error,
                            &a.outcome.as_str(),
                            &a.next_attempt_at,
                        ],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn delivery(&self, seq: i64) -> Pending<Option<DeliveryRecord>> {
        self.run(move |c| async move {
            let sql = format!("{DELIVERY_SELECT} WHERE seq = $1");
            Ok(query_opt(&c, &sql, &[&seq]).await?.as_ref().map(delivery_row))
        })
    }

    fn deliveries(&self, query: &DeliveryQuery) -> Pending<Page<DeliveryRecord>> {
        let mut conditions = Conditions::default();
        conditions.equal("subscription_id", query.subscription_id.clone());
        if let Some(status) = query.status {
            conditions.equal("status", status.as_str().to_string());
        }
        let request = query.page.clone();
        self.run(
            move |c| async move { page(&c, DELIVERY_SELECT, conditions, &request, |row| Ok(delivery_row(row))).await },
        )
    }

    fn attempts(&self, delivery_seq: i64) -> Pending<Vec<AttemptRecord>> {
        self.run(move |c| async move {
            let rows = query(
                &c,
                "SELECT delivery_seq, number, started_at, duration_ms, status_code, error, outcome, next_attempt_at
                 FROM delivery_attempts WHERE delivery_seq = $1 ORDER BY number",
                &[&delivery_seq],
            )
            .await?;
            Ok(rows.iter().map(attempt_row).collect())
        })
    }

    fn requeue_delivery(&self, seq: i64, now: i64) -> Pending<Option<Requeue>> {
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let started = execute(
                &tx,
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $2, updated_at = $2,
                    round = round + 1, round_start = attempts, recovery_id = NULL
                 WHERE seq = $1 AND status != 'pending'",
                &[&seq, &now],
            )
            .await?
                > 0;
            let sql = format!("{DELIVERY_SELECT} WHERE seq = $1");
            let record = query_opt(&tx, &sql, &[&seq]).await?.as_ref().map(delivery_row);
            tx.commit().await?;
            Ok(record.map(|record| {
                if started {
                    Requeue::Started(record)
                } else {
                    Requeue::Running(record)
                }
            }))
        })
    }

    fn start_recovery(&self, recovery: &RecoveryRecord) -> Pending<Vec<i64>> {
        let recovery = recovery.clone();
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let rows = query(
                &tx,
                "UPDATE deliveries SET status = 'pending', next_attempt_at = $3, updated_at = $3,
                    round = round + 1, round_start = attempts, recovery_id = $4
                 WHERE subscription_id = $1 AND status = 'dead' AND created_at >= $2
                 RETURNING seq",
                &[
                    &recovery.subscription_id,
                    &recovery.since,
                    &recovery.created_at,
                    &recovery.id,
                ],
            )
            .await?;
            let mut seqs: Vec<i64> = rows.iter().map(|row| row.get(0)).collect();
            seqs.sort_unstable();
            execute(
                &tx,
                &format!("INSERT INTO delivery_recoveries ({RECOVERY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"),
                &[
                    &recovery.id,
                    &recovery.subscription_id,
                    &recovery.since,
                    &(seqs.len() as i64),
                    &recovery.created_at,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(seqs)
        })
    }

    fn recovery(&self, id: &str) -> Pending<Option<RecoveryProgress>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {RECOVERY_COLUMNS} FROM delivery_recoveries WHERE id = $1");
            let Some(row) = query_opt(&c, &sql, &[&id]).await? else {
                return Ok(None);
            };
            let mut progress = RecoveryProgress {
                recovery: recovery_row(&row),
                pending: 0,
                delivered: 0,
                dead: 0,
            };
            let counts = query(
                &c,
                "SELECT status, count(*) FROM deliveries WHERE recovery_id = $1 GROUP BY status",
                &[&id],
            )
            .await?;
            for row in counts {
                let count: i64 = row.get(1);
                match DeliveryStatus::parse(&row.get::<_, String>(0)) {
                    Some(DeliveryStatus::Pending) => progress.pending = count,
                    Some(DeliveryStatus::Delivered) => progress.delivered = count,
                    Some(DeliveryStatus::Dead) => progress.dead = count,
                    None => {}
                }
            }
            Ok(Some(progress))
        })
    }

    fn skip_unattempted_deliveries(&self, subscription_id: &str, since: i64) -> Pending<usize> {
        let subscription_id = subscription_id.to_owned();
        self.run(move |c| async move {
            let deleted = execute(
                &c,
                "DELETE FROM deliveries
                 WHERE subscription_id = $1 AND status = 'pending' AND attempts = 0 AND created_at >= $2",
                &[&subscription_id, &since],
            )
            .await?;
            Ok(deleted as usize)
        })
    }

    fn delivery_counts(&self) -> Pending<Vec<(String, DeliveryCounts)>> {
        self.run(move |c| async move {
            let rows = query(
                &c,
                "SELECT s.id,
                    (SELECT count(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.status = 'pending'),
                    (SELECT count(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.status = 'dead')
                 FROM subscriptions s ORDER BY s.id",
                &[],
            )
            .await?;
            Ok(rows
                .iter()
                .map(|row| {
                    (
                        row.get(0),
                        DeliveryCounts {
                            pending: row.get(1),
                            dead: row.get(2),
                        },
                    )
                })
                .collect())
        })
    }

    fn prune_delivery_history(&self, before: i64, readers: &[&str], limit: usize) -> Pending<Pruned> {
        let readers: Vec<String> = readers.iter().map(|r| r.to_string()).collect();
        self.run(move |mut c| async move {
            let limit = limit as i64;
            let tx = c.transaction().await?;
            let finished: Vec<i64> = query(
                &tx,
                "DELETE FROM deliveries WHERE seq IN (
                    SELECT seq FROM deliveries WHERE status != 'pending' AND updated_at < $1 AND created_at < $1
                    ORDER BY seq LIMIT $2)
                 RETURNING seq",
                &[&before, &limit],
            )
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
            execute(
                &tx,
                "DELETE FROM delivery_attempts WHERE delivery_seq = ANY($1)",
                &[&finished],
            )
            .await?;

            // Outbox entries go once every reader is past them and no delivery still
            // needs them. Deliveries are created in outbox order, so the oldest delivery
            // refers to the oldest entry still needed.
            let first_recent: Option<i64> = query_opt(
                &tx,
                "SELECT seq FROM outbox WHERE time >= $1 AND seq IS NOT NULL ORDER BY seq LIMIT 1",
                &[&before],
            )
            .await?
            .map(|row| row.get(0));
            let referenced: Option<i64> = query_opt(&tx, "SELECT outbox_seq FROM deliveries ORDER BY seq LIMIT 1", &[])
                .await?
                .map(|row| row.get(0));
            let mut keep_from = first_recent.unwrap_or(i64::MAX).min(referenced.unwrap_or(i64::MAX));
            for reader in &readers {
                let cursor: i64 = query_opt(&tx, "SELECT seq FROM delivery_cursors WHERE name = $1", &[reader])
                    .await?
                    .map(|row| row.get(0))
                    .unwrap_or(0);
                keep_from = keep_from.min(cursor + 1);
            }
            let outbox = execute(
                &tx,
                "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq < $1 ORDER BY seq LIMIT $2)",
                &[&keep_from, &limit],
            )
            .await? as usize;
            let recoveries = execute(
                &tx,
                "DELETE FROM delivery_recoveries WHERE id IN (
                    SELECT r.id FROM delivery_recoveries r
                    WHERE r.created_at < $1 AND NOT EXISTS (
                        SELECT 1 FROM deliveries d WHERE d.recovery_id = r.id AND d.status = 'pending')
                    LIMIT $2)",
                &[&before, &limit],
            )
            .await? as usize;
            tx.commit().await?;
            Ok(Pruned {
                deliveries: finished.len(),
                outbox,
                recoveries,
            })
        })
    }
}
