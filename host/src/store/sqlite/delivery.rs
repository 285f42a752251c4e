//! The delivery tables of the embedded store: subscriptions, deliveries, their attempts
//! and outbox cursors, and the signal that tells outbox readers something was published.

use rusqlite::{OptionalExtension, Row, params};

use super::rows::{one, page, raw_entry};
use super::{SqliteStore, execute};
use crate::store::delivery::*;
use crate::store::{Page, Pending};

/// The schema of event delivery (migration 2).
pub(super) const MIGRATION: &str = r#"
CREATE TABLE subscriptions (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    types TEXT NOT NULL,
    secret TEXT NOT NULL,
    enabled INTEGER NOT NULL,
    description TEXT,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscription_id TEXT NOT NULL,
    outbox_seq INTEGER NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    last_status_code INTEGER,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, seq);
-- Partial indexes stay small: most deliveries are delivered.
CREATE INDEX deliveries_pending ON deliveries (subscription_id, seq) WHERE status = 'pending';
CREATE INDEX deliveries_dead ON deliveries (subscription_id, seq) WHERE status = 'dead';

CREATE TABLE delivery_attempts (
    delivery_seq INTEGER NOT NULL,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    status_code INTEGER,
    error TEXT,
    outcome TEXT NOT NULL,
    next_attempt_at INTEGER,
    PRIMARY KEY (delivery_seq, number)
) WITHOUT ROWID;

CREATE TABLE delivery_cursors (name TEXT PRIMARY KEY, seq INTEGER NOT NULL);
"#;

/// Rounds of attempts kept with each delivery (so a restart continues a resend's round),
/// recoveries, and where a disabled subscription stopped (migration 4).
pub(super) const ROUNDS_MIGRATION: &str = r#"
ALTER TABLE deliveries ADD COLUMN round INTEGER NOT NULL DEFAULT 1;
ALTER TABLE deliveries ADD COLUMN round_start INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN recovery_id TEXT;
CREATE INDEX deliveries_by_recovery ON deliveries (recovery_id) WHERE recovery_id IS NOT NULL;

CREATE TABLE delivery_recoveries (
    id TEXT PRIMARY KEY,
    subscription_id TEXT NOT NULL,
    since INTEGER NOT NULL,
    total INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);

ALTER TABLE subscriptions ADD COLUMN disabled_at INTEGER;
-- The best guess for subscriptions disabled before this column existed.
UPDATE subscriptions SET disabled_at = updated_at WHERE enabled = 0;
"#;

const SUBSCRIPTION_COLUMNS: &str =
    "id, url, types, secret, enabled, description, source, created_at, updated_at, disabled_at";

fn subscription_row(row: &Row) -> rusqlite::Result<SubscriptionRecord> {
    let types: String = row.get(2)?;
    Ok(SubscriptionRecord {
        id: row.get(0)?,
        url: row.get(1)?,
        types: serde_json::from_str(&types).unwrap_or_default(),
        secret: row.get(3)?,
        enabled: row.get(4)?,
        description: row.get(5)?,
        source: SubscriptionSource::parse(&row.get::<_, String>(6)?),
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
        disabled_at: row.get(9)?,
    })
}

/// Deliveries joined with their outbox entry; `seq` first, as [`page`] wants it.
const DELIVERY_SELECT: &str = "SELECT seq, subscription_id, outbox_seq, event_id, event_type, status, attempts,
        next_attempt_at, last_status_code, last_error, created_at, updated_at, round, round_start, recovery_id
    FROM (SELECT d.seq AS seq, d.subscription_id AS subscription_id, d.outbox_seq AS outbox_seq,
            o.id AS event_id, o.type AS event_type, d.status AS status, d.attempts AS attempts,
            d.next_attempt_at AS next_attempt_at, d.last_status_code AS last_status_code,
            d.last_error AS last_error, d.created_at AS created_at, d.updated_at AS updated_at,
            d.round AS round, d.round_start AS round_start, d.recovery_id AS recovery_id
          FROM deliveries d JOIN outbox o ON o.seq = d.outbox_seq)
    WHERE 1";

fn delivery_row(row: &Row) -> rusqlite::Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        seq: row.get(0)?,
        subscription_id: row.get(1)?,
        outbox_seq: row.get(2)?,
        event_id: row.get(3)?,
        event_type: row.get(4)?,
        status: DeliveryStatus::parse(&row.get::<_, String>(5)?).unwrap_or(DeliveryStatus::Pending),
        attempts: row.get(6)?,
        next_attempt_at: row.get(7)?,
        last_status_code: row.get(8)?,
        last_error: row.get(9)?,
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
        round: row.get(12)?,
        round_start: row.get(13)?,
        recovery_id: row.get(14)?,
    })
}

/// A pending delivery with its outbox entry, for [`pending_row`].
const PENDING_SELECT: &str = "SELECT d.seq, d.attempts, d.round_start, coalesce(d.next_attempt_at, 0),
        o.seq, o.id, o.type, o.time, o.integration_id, o.data, o.traceparent
    FROM deliveries d JOIN outbox o ON o.seq = d.outbox_seq";

fn pending_row(row: &Row) -> rusqlite::Result<PendingDelivery> {
    Ok(PendingDelivery {
        seq: row.get(0)?,
        attempts: row.get(1)?,
        round_start: row.get(2)?,
        next_attempt_at: row.get(3)?,
        entry: raw_entry(row, 4)?,
    })
}

const RECOVERY_COLUMNS: &str = "id, subscription_id, since, total, created_at";

fn recovery_row(row: &Row) -> rusqlite::Result<RecoveryRecord> {
    Ok(RecoveryRecord {
        id: row.get(0)?,
        subscription_id: row.get(1)?,
        since: row.get(2)?,
        total: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn attempt_row(row: &Row) -> rusqlite::Result<AttemptRecord> {
    Ok(AttemptRecord {
        delivery_seq: row.get(0)?,
        number: row.get(1)?,
        started_at: row.get(2)?,
        duration_ms: row.get(3)?,
        status_code: row.get(4)?,
        error: row.get(5)?,
        outcome: DeliveryStatus::parse(&row.get::<_, String>(6)?).unwrap_or(DeliveryStatus::Pending),
        next_attempt_at: row.get(7)?,
    })
}

impl DeliveryStore for SqliteStore {
    fn subscriptions(&self) -> Pending<Vec<SubscriptionRecord>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(&format!(
                "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, id"
            ))?;
            Ok(statement
                .query_map([], subscription_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn subscription(&self, id: &str) -> Pending<Option<SubscriptionRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let id = id.as_str();
            one(
                c,
                &format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ?1"),
                id,
                subscription_row,
            )
        })
    }

    fn save_subscription(&self, s: &SubscriptionRecord) -> Pending<()> {
        let s = s.clone();
        self.write(move |c| {
            execute(c,
                "INSERT INTO subscriptions (id, url, types, secret, enabled, description, source, created_at, updated_at, disabled_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (id) DO UPDATE SET url = ?2, types = ?3, secret = ?4, enabled = ?5,
                    description = ?6, source = ?7, updated_at = ?9, disabled_at = ?10",
                params![
                    s.id,
                    s.url,
                    serde_json::to_string(&s.types)?,
                    s.secret,
                    s.enabled,
                    s.description,
                    s.source.as_str(),
                    s.created_at,
                    s.updated_at,
                    s.disabled_at
                ],
            )?;
            Ok(())
        })
    }

    fn delete_subscription(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.write(move |tx| {
            let id = id.as_str();
            execute(tx,
                "DELETE FROM delivery_attempts WHERE delivery_seq IN (SELECT seq FROM deliveries WHERE subscription_id = ?1)",
                [id],
            )?;
            execute(tx, "DELETE FROM deliveries WHERE subscription_id = ?1", [id])?;
            execute(tx, "DELETE FROM delivery_recoveries WHERE subscription_id = ?1", [id])?;
            let deleted = execute(tx, "DELETE FROM subscriptions WHERE id = ?1", [id])? > 0;
            Ok(deleted)
        })
    }

    fn cursor(&self, name: &str) -> Pending<Option<i64>> {
        let name = name.to_owned();
        self.read(move |c| {
            let name = name.as_str();
            one(c, "SELECT seq FROM delivery_cursors WHERE name = ?1", name, |row| {
                row.get(0)
            })
        })
    }

    fn set_cursor(&self, name: &str, seq: i64) -> Pending<()> {
        let name = name.to_string();
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO delivery_cursors (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET seq = ?2",
            )?
            .execute(params![name, seq])?;
            Ok(())
        })
    }

    fn fan_out(&self, deliveries: &[(String, i64)], cursor: &str, through: i64, now: i64) -> Pending<Vec<i64>> {
        let (deliveries, cursor) = (deliveries.to_vec(), cursor.to_string());
        self.write(move |tx| {
            let mut seqs = Vec::with_capacity(deliveries.len());
            let mut insert = tx.prepare_cached(
                "INSERT INTO deliveries (subscription_id, outbox_seq, status, attempts, next_attempt_at, created_at, updated_at)
                 VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3)",
            )?;
            for (subscription_id, outbox_seq) in &deliveries {
                insert.execute(params![subscription_id, outbox_seq, now])?;
                seqs.push(tx.last_insert_rowid());
            }
            tx.prepare_cached(
                "INSERT INTO delivery_cursors (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET seq = ?2",
            )?
            .execute(params![cursor, through])?;
            Ok(seqs)
        })
    }

    fn pending_deliveries(&self, subscription_id: &str, after: i64, limit: usize) -> Pending<Vec<PendingDelivery>> {
        let subscription_id = subscription_id.to_owned();
        self.read(move |c| {
            let subscription_id = subscription_id.as_str();
            let mut statement = c.prepare_cached(&format!(
                "{PENDING_SELECT} WHERE d.subscription_id = ?1 AND d.status = 'pending' AND d.seq > ?2
                 ORDER BY d.seq LIMIT ?3"
            ))?;
            let pending = statement
                .query_map(params![subscription_id, after, limit as i64], pending_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(pending)
        })
    }

    fn pending_deliveries_by_seq(&self, subscription_id: &str, seqs: &[i64]) -> Pending<Vec<PendingDelivery>> {
        let (subscription_id, mut seqs) = (subscription_id.to_owned(), seqs.to_vec());
        seqs.sort_unstable();
        seqs.dedup();
        self.read(move |c| {
            // One lookup by primary key each: as cheap as a list in one statement here.
            let mut statement = c.prepare_cached(&format!(
                "{PENDING_SELECT} WHERE d.seq = ?1 AND d.subscription_id = ?2 AND d.status = 'pending'"
            ))?;
            let mut pending = Vec::with_capacity(seqs.len());
            for seq in seqs {
                if let Some(delivery) = statement
                    .query_row(params![seq, subscription_id], pending_row)
                    .optional()?
                {
                    pending.push(delivery);
                }
            }
            Ok(pending)
        })
    }

    fn record_attempts(&self, attempts: &[AttemptRecord], now: i64) -> Pending<()> {
        let attempts = attempts.to_vec();
        self.write(move |tx| {
            {
                // The number an attempt is kept under: its own, or the next free one when
                // that is taken, so that no attempt overwrites another.
                let mut free_number = tx.prepare_cached(
                    "SELECT max(?2, coalesce((SELECT max(number) + 1 FROM delivery_attempts WHERE delivery_seq = ?1), 0))
                     WHERE EXISTS (SELECT 1 FROM delivery_attempts WHERE delivery_seq = ?1 AND number = ?2)",
                )?;
                let mut update = tx.prepare_cached(
                    "UPDATE deliveries SET status = ?2, attempts = max(attempts, ?3), next_attempt_at = ?4,
                        last_status_code = ?5, last_error = ?6, updated_at = ?7
                     WHERE seq = ?1",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO delivery_attempts
                        (delivery_seq, number, started_at, duration_ms, status_code, error, outcome, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for a in &attempts {
                    let number: i64 = free_number
                        .query_row(params![a.delivery_seq, a.number], |row| row.get(0))
                        .optional()?
                        .unwrap_or(a.number);
                    let changed = update.execute(params![
                        a.delivery_seq,
                        a.outcome.as_str(),
                        number,
                        a.next_attempt_at,
                        a.status_code,
                        a.error,
                        now
                    ])?;
                    if changed > 0 {
                        insert.execute(params![
                            a.delivery_seq,
                            number,
                            a.started_at,
                            a.duration_ms,
                            a.status_code,
                            a.error,
                            a.outcome.as_str(),
                            a.next_attempt_at
                        ])?;
                    }
                }
            }
            Ok(())
        })
    }

    fn delivery(&self, seq: i64) -> Pending<Option<DeliveryRecord>> {
        self.read(move |c| {
            Ok(c.prepare_cached(&format!("{DELIVERY_SELECT} AND seq = ?1"))?
                .query_row([seq], delivery_row)
                .optional()?)
        })
    }

    fn deliveries(&self, query: &DeliveryQuery) -> Pending<Page<DeliveryRecord>> {
        let mut conditions = vec!["subscription_id = ?".to_string()];
        let mut values: Vec<rusqlite::types::Value> = vec![query.subscription_id.clone().into()];
        if let Some(status) = query.status {
            conditions.push("status = ?".into());
            values.push(status.as_str().to_string().into());
        }
        let query = query.clone();
        self.read(move |c| {
            let query = &query;
            page(c, DELIVERY_SELECT, conditions, values, &query.page, delivery_row)
        })
    }

    fn attempts(&self, delivery_seq: i64) -> Pending<Vec<AttemptRecord>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT delivery_seq, number, started_at, duration_ms, status_code, error, outcome, next_attempt_at
                 FROM delivery_attempts WHERE delivery_seq = ?1 ORDER BY number",
            )?;
            Ok(statement
                .query_map([delivery_seq], attempt_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn requeue_delivery(&self, seq: i64, now: i64) -> Pending<Option<Requeue>> {
        self.write(move |tx| {
            let started = execute(
                tx,
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, updated_at = ?2,
                    round = round + 1, round_start = attempts, recovery_id = NULL
                 WHERE seq = ?1 AND status != 'pending'",
                params![seq, now],
            )? > 0;
            let record = tx
                .prepare_cached(&format!("{DELIVERY_SELECT} AND seq = ?1"))?
                .query_row([seq], delivery_row)
                .optional()?;
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
        self.write(move |tx| {
            let seqs: Vec<i64> = tx
                .prepare_cached(
                    "SELECT seq FROM deliveries
                     WHERE subscription_id = ?1 AND status = 'dead' AND created_at >= ?2 ORDER BY seq",
                )?
                .query_map(params![recovery.subscription_id, recovery.since], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            {
                let mut start = tx.prepare_cached(
                    "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, updated_at = ?2,
                        round = round + 1, round_start = attempts, recovery_id = ?3
                     WHERE seq = ?1",
                )?;
                for seq in &seqs {
                    start.execute(params![seq, recovery.created_at, recovery.id])?;
                }
            }
            execute(
                tx,
                &format!("INSERT INTO delivery_recoveries ({RECOVERY_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5)"),
                params![
                    recovery.id,
                    recovery.subscription_id,
                    recovery.since,
                    seqs.len() as i64,
                    recovery.created_at
                ],
            )?;
            Ok(seqs)
        })
    }

    fn recovery(&self, id: &str) -> Pending<Option<RecoveryProgress>> {
        let id = id.to_owned();
        self.read(move |c| {
            let Some(recovery) = one(
                c,
                &format!("SELECT {RECOVERY_COLUMNS} FROM delivery_recoveries WHERE id = ?1"),
                &id,
                recovery_row,
            )?
            else {
                return Ok(None);
            };
            let mut progress = RecoveryProgress {
                recovery,
                pending: 0,
                delivered: 0,
                dead: 0,
            };
            let mut statement =
                c.prepare_cached("SELECT status, count(*) FROM deliveries WHERE recovery_id = ?1 GROUP BY status")?;
            let counts = statement.query_map([&id], |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)))?;
            for count in counts {
                let (status, count) = count?;
                match DeliveryStatus::parse(&status) {
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
        self.write(move |tx| {
            Ok(execute(
                tx,
                "DELETE FROM deliveries
                 WHERE subscription_id = ?1 AND status = 'pending' AND attempts = 0 AND created_at >= ?2",
                params![subscription_id, since],
            )?)
        })
    }

    fn delivery_counts(&self) -> Pending<Vec<(String, DeliveryCounts)>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT s.id,
                    (SELECT count(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.status = 'pending'),
                    (SELECT count(*) FROM deliveries d WHERE d.subscription_id = s.id AND d.status = 'dead')
                 FROM subscriptions s ORDER BY s.id",
            )?;
            Ok(statement
                .query_map([], |row| {
                    Ok((
                        row.get(0)?,
                        DeliveryCounts {
                            pending: row.get(1)?,
                            dead: row.get(2)?,
                        },
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn prune_delivery_history(&self, before: i64, readers: &[&str], limit: usize) -> Pending<Pruned> {
        let readers: Vec<String> = readers.iter().map(|r| r.to_string()).collect();
        self.write(move |tx| {
            let limit = limit as i64;
            // Rows are created in time order, so the first recent row bounds every scan
            // below: a pass reads only what is old, however much recent history is kept.
            let first_recent = |sql: &str| -> rusqlite::Result<i64> {
                Ok(tx
                    .prepare_cached(sql)?
                    .query_row([before], |row| row.get(0))
                    .optional()?
                    .unwrap_or(i64::MAX))
            };
            let recent_delivery =
                first_recent("SELECT seq FROM deliveries WHERE created_at >= ?1 ORDER BY seq LIMIT 1")?;
            let finished: Vec<i64> = tx
                .prepare_cached(
                    "SELECT seq FROM deliveries
                     WHERE seq < ?1 AND status != 'pending' AND updated_at < ?2 ORDER BY seq LIMIT ?3",
                )?
                .query_map(params![recent_delivery, before, limit], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            {
                let mut attempts = tx.prepare_cached("DELETE FROM delivery_attempts WHERE delivery_seq = ?1")?;
                let mut delivery = tx.prepare_cached("DELETE FROM deliveries WHERE seq = ?1")?;
                for seq in &finished {
                    attempts.execute([seq])?;
                    delivery.execute([seq])?;
                }
            }

            // Outbox entries go once every reader is past them and no delivery (pending,
            // or finished but recent) still needs them. Deliveries are created in outbox
            // order, so the oldest delivery refers to the oldest entry still needed.
            let mut keep_from = first_recent("SELECT seq FROM outbox WHERE time >= ?1 ORDER BY seq LIMIT 1")?;
            let referenced: Option<i64> = tx
                .prepare_cached("SELECT outbox_seq FROM deliveries ORDER BY seq LIMIT 1")?
                .query_row([], |row| row.get(0))
                .optional()?;
            keep_from = keep_from.min(referenced.unwrap_or(i64::MAX));
            for reader in &readers {
                let cursor: i64 = tx
                    .prepare_cached("SELECT seq FROM delivery_cursors WHERE name = ?1")?
                    .query_row([reader], |row| row.get(0))
                    .optional()?
                    .unwrap_or(0);
                keep_from = keep_from.min(cursor + 1);
            }
            let outbox = tx
                .prepare_cached(
                    "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox WHERE seq < ?1 ORDER BY seq LIMIT ?2)",
                )?
                .execute(params![keep_from, limit])?;
            let recoveries = tx
                .prepare_cached(
                    "DELETE FROM delivery_recoveries WHERE id IN (
                        SELECT r.id FROM delivery_recoveries r
                        WHERE r.created_at < ?1 AND NOT EXISTS (
                            SELECT 1 FROM deliveries d WHERE d.recovery_id = r.id AND d.status = 'pending')
                        LIMIT ?2)",
                )?
                .execute(params![before, limit])?;
            Ok(Pruned {
                deliveries: finished.len(),
                outbox,
                recoveries,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::store::prelude::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{
        AttemptRecord, DeliveryStatus, EventRecord, PageRequest, Pruned, RecoveryRecord, Requeue, SubscriptionRecord,
        SubscriptionSource,
    };

    fn event(id: &str) -> EventRecord {
        EventRecord {
            id: id.into(),
            installation_id: Some("inst_a".into()),
            event_type: "a:thing".into(),
            payload: json!({"n": id}),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "processed".into(),
            failure_reason: None,
            created_at: 1,
        }
    }

    fn subscription(id: &str) -> SubscriptionRecord {
        SubscriptionRecord {
            id: id.into(),
            url: "http://127.0.0.1:9/hook".into(),
            types: vec!["a:*".into()],
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            enabled: true,
            description: None,
            source: SubscriptionSource::Api,
            created_at: 1,
            updated_at: 1,
            disabled_at: None,
        }
    }

    #[test]
    fn commits_that_publish_are_announced_and_rollbacks_are_not() {
        let store = SqliteStore::in_memory().unwrap();
        let published = store.outbox_published();
        assert_eq!(*published.borrow(), 0);
        store.insert_event(&event("evt_1")).wait().unwrap();
        assert_eq!(*published.borrow(), 1);
        // A failing insert (duplicate id) rolls back and announces nothing.
        assert!(store.insert_event(&event("evt_1")).wait().is_err());
        assert_eq!(*published.borrow(), 1);
        store.set_meta("k", "v").wait().unwrap();
        assert_eq!(*published.borrow(), 1);
        store.insert_event(&event("evt_2")).wait().unwrap();
        let head = *published.borrow();
        assert_eq!(store.raw_outbox_after(0, 10).wait().unwrap().last().unwrap().seq, head);
    }

    #[test]
    fn fan_out_attempts_and_requeue() {
        let store = SqliteStore::in_memory().unwrap();
        store.save_subscription(&subscription("sub_a")).wait().unwrap();
        store.insert_event(&event("evt_1")).wait().unwrap();
        store.insert_event(&event("evt_2")).wait().unwrap();
        let entries = store.raw_outbox_after(0, 10).wait().unwrap();
        let owed: Vec<(String, i64)> = entries.iter().map(|e| ("sub_a".to_string(), e.seq)).collect();
        let created = store.fan_out(&owed, "fanout", entries[1].seq, 5).wait().unwrap();
        assert_eq!(store.cursor("fanout").wait().unwrap(), Some(entries[1].seq));

        let pending = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].entry.data, entries[0].data);
        let seqs: Vec<i64> = pending.iter().map(|p| p.seq).collect();
        assert_eq!(created, seqs, "fan_out answers the new deliveries' seqs, in order");
        assert_eq!(pending[1].entry, entries[1], "each delivery's entry as fanned out");
        let first = pending[0].seq;
        store
            .record_attempts(
                &[crate::store::AttemptRecord {
                    delivery_seq: first,
                    number: 1,
                    started_at: 6,
                    duration_ms: 2,
                    status_code: Some(500),
                    error: Some("receiver answered 500".into()),
                    outcome: DeliveryStatus::Dead,
                    next_attempt_at: None,
                }],
                7,
            )
            .wait()
            .unwrap();
        let dead = store.delivery(first).wait().unwrap().unwrap();
        assert_eq!(dead.status, DeliveryStatus::Dead);
        assert_eq!(dead.event_id, entries[0].id);
        assert_eq!(store.attempts(first).wait().unwrap().len(), 1);
        let counts = store.delivery_counts().wait().unwrap();
        assert_eq!((counts[0].1.pending, counts[0].1.dead), (1, 1));

        let page = store
            .deliveries(&crate::store::DeliveryQuery {
                subscription_id: "sub_a".into(),
                status: Some(DeliveryStatus::Dead),
                page: PageRequest::default(),
            })
            .wait()
            .unwrap();
        assert_eq!(page.items.len(), 1);

        // One requeue starts a round; the next finds it running and changes nothing.
        let Requeue::Started(again) = store.requeue_delivery(first, 8).wait().unwrap().unwrap() else {
            panic!("the first requeue starts a round")
        };
        assert_eq!(again.status, DeliveryStatus::Pending);
        assert_eq!((again.round, again.round_start, again.attempts), (2, 1, 1));
        let Requeue::Running(running) = store.requeue_delivery(first, 9).wait().unwrap().unwrap() else {
            panic!("the second requeue finds the round running")
        };
        assert_eq!(running, again);
        assert!(store.requeue_delivery(999, 9).wait().unwrap().is_none());
        let pending = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(
            (pending[0].attempts, pending[0].round_start),
            (1, 1),
            "the round is kept"
        );

        assert!(store.delete_subscription("sub_a").wait().unwrap());
        assert!(store.delivery(first).wait().unwrap().is_none());
        assert!(store.attempts(first).wait().unwrap().is_empty());
    }

    #[test]
    fn fan_out_answers_each_delivery_s_seq_in_the_order_asked() {
        let store = SqliteStore::in_memory().unwrap();
        for id in ["sub_a", "sub_b"] {
            store.save_subscription(&subscription(id)).wait().unwrap();
        }
        for id in ["evt_1", "evt_2", "evt_3"] {
            store.insert_event(&event(id)).wait().unwrap();
        }
        let entries = store.raw_outbox_after(0, 10).wait().unwrap();
        let owed: Vec<(String, i64)> = entries
            .iter()
            .flat_map(|e| [("sub_b".to_string(), e.seq), ("sub_a".to_string(), e.seq)])
            .collect();
        let seqs = store.fan_out(&owed, "fanout", entries[2].seq, 5).wait().unwrap();
        assert_eq!(seqs.len(), owed.len());
        for (seq, (subscription_id, outbox_seq)) in seqs.iter().zip(&owed) {
            let delivery = store.delivery(*seq).wait().unwrap().unwrap();
            assert_eq!(
                (&delivery.subscription_id, delivery.outbox_seq),
                (subscription_id, *outbox_seq)
            );
            assert_eq!(delivery.status, DeliveryStatus::Pending);
        }
        assert!(
            store
                .fan_out(&[], "fanout", entries[2].seq, 6)
                .wait()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn pruning_forgets_finished_history_and_keeps_what_is_owed() {
        let store = SqliteStore::in_memory().unwrap();
        store.save_subscription(&subscription("sub_a")).wait().unwrap();
        for id in ["evt_1", "evt_2", "evt_3"] {
            store.insert_event(&event(id)).wait().unwrap();
        }
        let entries = store.raw_outbox_after(0, 10).wait().unwrap();
        let owed: Vec<(String, i64)> = entries.iter().map(|e| ("sub_a".to_string(), e.seq)).collect();
        store.fan_out(&owed, "fanout", entries[2].seq, 5).wait().unwrap();
        store.set_cursor("nats", entries[0].seq - 1).wait().unwrap();
        let pending = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        let attempt = |delivery: &crate::store::PendingDelivery, outcome| crate::store::AttemptRecord {
            delivery_seq: delivery.seq,
            number: 1,
            started_at: 6,
            duration_ms: 1,
            status_code: Some(200),
            error: None,
            outcome,
            next_attempt_at: None,
        };
        let finished = [
            attempt(&pending[0], DeliveryStatus::Delivered),
            attempt(&pending[1], DeliveryStatus::Dead),
        ];
        store.record_attempts(&finished, 7).wait().unwrap();
        let time = entries[0].time;

        // Nothing is older than `before` yet.
        let nothing = store
            .prune_delivery_history(time.min(5), &["fanout"], 100)
            .wait()
            .unwrap();
        assert_eq!(nothing, Pruned::default());

        // A reader behind holds the outbox back; finished deliveries go regardless.
        let later = time.max(7) + 1;
        let pruned = store
            .prune_delivery_history(later, &["fanout", "nats"], 100)
            .wait()
            .unwrap();
        assert_eq!(
            pruned,
            Pruned {
                deliveries: 2,
                outbox: 0,
                recoveries: 0
            }
        );
        assert!(store.delivery(pending[0].seq).wait().unwrap().is_none());
        assert!(store.attempts(pending[1].seq).wait().unwrap().is_empty());

        // The pending delivery keeps its entry (and everything after it).
        let pruned = store.prune_delivery_history(later, &["fanout"], 100).wait().unwrap();
        assert_eq!(
            pruned,
            Pruned {
                deliveries: 0,
                outbox: 2,
                recoveries: 0
            }
        );
        let left = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entry.id, entries[2].id);
        assert_eq!(store.raw_outbox_after(0, 10).wait().unwrap().len(), 1);
        // Events themselves are not delivery history.
        assert!(store.event("evt_1").wait().unwrap().is_some());
    }

    fn attempt(delivery_seq: i64, number: i64, outcome: DeliveryStatus) -> AttemptRecord {
        AttemptRecord {
            delivery_seq,
            number,
            started_at: 10 + number,
            duration_ms: 1,
            status_code: Some(500),
            error: Some("receiver answered 500".into()),
            outcome,
            next_attempt_at: None,
        }
    }

    /// A store with one subscription owed `count` events, fanned out at time 5.
    fn owed(count: usize) -> (SqliteStore, Vec<i64>) {
        let store = SqliteStore::in_memory().unwrap();
        store.save_subscription(&subscription("sub_a")).wait().unwrap();
        for n in 0..count {
            store.insert_event(&event(&format!("evt_{n}"))).wait().unwrap();
        }
        let entries = store.raw_outbox_after(0, 100).wait().unwrap();
        let owed: Vec<(String, i64)> = entries.iter().map(|e| ("sub_a".to_string(), e.seq)).collect();
        store
            .fan_out(&owed, "fanout", entries.last().unwrap().seq, 5)
            .wait()
            .unwrap();
        let seqs = store
            .pending_deliveries("sub_a", 0, 100)
            .wait()
            .unwrap()
            .iter()
            .map(|p| p.seq)
            .collect();
        (store, seqs)
    }

    #[test]
    fn attempts_with_the_same_number_are_all_kept() {
        let (store, seqs) = owed(1);
        let seq = seqs[0];
        store
            .record_attempts(&[attempt(seq, 1, DeliveryStatus::Pending)], 6)
            .wait()
            .unwrap();
        // Two more attempts both numbered 2, in one batch and in another.
        store
            .record_attempts(
                &[
                    attempt(seq, 2, DeliveryStatus::Pending),
                    attempt(seq, 2, DeliveryStatus::Pending),
                ],
                7,
            )
            .wait()
            .unwrap();
        store
            .record_attempts(&[attempt(seq, 2, DeliveryStatus::Dead)], 8)
            .wait()
            .unwrap();
        let numbers: Vec<i64> = store.attempts(seq).wait().unwrap().iter().map(|a| a.number).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        let delivery = store.delivery(seq).wait().unwrap().unwrap();
        assert_eq!((delivery.attempts, delivery.status), (4, DeliveryStatus::Dead));
    }

    #[test]
    fn a_recovery_starts_a_round_for_each_dead_delivery_since_its_time() {
        let (store, seqs) = owed(3);
        // The first two die; the third is delivered.
        store
            .record_attempts(
                &[
                    attempt(seqs[0], 1, DeliveryStatus::Dead),
                    attempt(seqs[1], 1, DeliveryStatus::Dead),
                    attempt(seqs[2], 1, DeliveryStatus::Delivered),
                ],
                6,
            )
            .wait()
            .unwrap();
        let recovery = |id: &str, since: i64| RecoveryRecord {
            id: id.into(),
            subscription_id: "sub_a".into(),
            since,
            total: 0,
            created_at: 20,
        };
        // Deliveries were created at 5: a recovery since later finds none.
        assert!(
            store
                .start_recovery(&recovery("rcv_late", 6))
                .wait()
                .unwrap()
                .is_empty()
        );
        assert_eq!(store.start_recovery(&recovery("rcv_1", 5)).wait().unwrap(), seqs[..2]);

        let progress = store.recovery("rcv_1").wait().unwrap().unwrap();
        assert_eq!(progress.recovery.total, 2);
        assert_eq!((progress.pending, progress.delivered, progress.dead), (2, 0, 0));
        let pending = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|p| (p.seq, p.round_start, p.next_attempt_at))
                .collect::<Vec<_>>(),
            [(seqs[0], 1, 20), (seqs[1], 1, 20)]
        );
        let delivery = store.delivery(seqs[0]).wait().unwrap().unwrap();
        assert_eq!((delivery.round, delivery.recovery_id.as_deref()), (2, Some("rcv_1")));

        store
            .record_attempts(
                &[
                    attempt(seqs[0], 2, DeliveryStatus::Delivered),
                    attempt(seqs[1], 2, DeliveryStatus::Dead),
                ],
                21,
            )
            .wait()
            .unwrap();
        let progress = store.recovery("rcv_1").wait().unwrap().unwrap();
        assert_eq!((progress.pending, progress.delivered, progress.dead), (0, 1, 1));
        assert!(store.recovery("rcv_none").wait().unwrap().is_none());

        // Finished and old, it is forgotten with the history.
        let pruned = store.prune_delivery_history(100, &["fanout"], 100).wait().unwrap();
        assert_eq!(pruned.recoveries, 2);
        assert!(store.recovery("rcv_1").wait().unwrap().is_none());
    }

    #[test]
    fn skipping_drops_only_unattempted_deliveries_created_since() {
        let (store, seqs) = owed(2);
        store
            .record_attempts(&[attempt(seqs[0], 1, DeliveryStatus::Pending)], 6)
            .wait()
            .unwrap();
        assert_eq!(store.skip_unattempted_deliveries("sub_a", 6).wait().unwrap(), 0);
        assert_eq!(store.skip_unattempted_deliveries("sub_a", 5).wait().unwrap(), 1);
        let left = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        assert_eq!(left.iter().map(|p| p.seq).collect::<Vec<_>>(), [seqs[0]]);
        // Read again by seq: only what is pending and the subscription's, in order.
        let again = store
            .pending_deliveries_by_seq("sub_a", &[seqs[1], 999, seqs[0], seqs[0]])
            .wait()
            .unwrap();
        assert_eq!(again, left);
        assert!(
            store
                .pending_deliveries_by_seq("sub_b", &seqs)
                .wait()
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_disabled_subscription_keeps_when_it_was_disabled() {
        let store = SqliteStore::in_memory().unwrap();
        let mut record = subscription("sub_a");
        record.enabled = false;
        record.disabled_at = Some(42);
        store.save_subscription(&record).wait().unwrap();
        assert_eq!(
            store.subscription("sub_a").wait().unwrap().unwrap().disabled_at,
            Some(42)
        );
    }
}
