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

const SUBSCRIPTION_COLUMNS: &str = "id, url, types, secret, enabled, description, source, created_at, updated_at";

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
    })
}

/// Deliveries joined with their outbox entry; `seq` first, as [`page`] wants it.
const DELIVERY_SELECT: &str = "SELECT seq, subscription_id, outbox_seq, event_id, event_type, status, attempts,
        next_attempt_at, last_status_code, last_error, created_at, updated_at
    FROM (SELECT d.seq AS seq, d.subscription_id AS subscription_id, d.outbox_seq AS outbox_seq,
            o.id AS event_id, o.type AS event_type, d.status AS status, d.attempts AS attempts,
            d.next_attempt_at AS next_attempt_at, d.last_status_code AS last_status_code,
            d.last_error AS last_error, d.created_at AS created_at, d.updated_at AS updated_at
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
                "INSERT INTO subscriptions (id, url, types, secret, enabled, description, source, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET url = ?2, types = ?3, secret = ?4, enabled = ?5,
                    description = ?6, source = ?7, updated_at = ?9",
                params![
                    s.id,
                    s.url,
                    serde_json::to_string(&s.types)?,
                    s.secret,
                    s.enabled,
                    s.description,
                    s.source.as_str(),
                    s.created_at,
                    s.updated_at
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

    fn fan_out(&self, deliveries: &[(String, i64)], cursor: &str, through: i64, now: i64) -> Pending<()> {
        let (deliveries, cursor) = (deliveries.to_vec(), cursor.to_string());
        self.write(move |tx| {
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO deliveries (subscription_id, outbox_seq, status, attempts, next_attempt_at, created_at, updated_at)
                     VALUES (?1, ?2, 'pending', 0, ?3, ?3, ?3)",
                )?;
                for (subscription_id, outbox_seq) in &deliveries {
                    insert.execute(params![subscription_id, outbox_seq, now])?;
                }
                tx.prepare_cached(
                    "INSERT INTO delivery_cursors (name, seq) VALUES (?1, ?2) ON CONFLICT (name) DO UPDATE SET seq = ?2",
                )?
                .execute(params![cursor, through])?;
            }
            Ok(())
        })
    }

    fn pending_deliveries(&self, subscription_id: &str, after: i64, limit: usize) -> Pending<Vec<PendingDelivery>> {
        let subscription_id = subscription_id.to_owned();
        self.read(move |c| {
            let subscription_id = subscription_id.as_str();
            let mut statement = c.prepare_cached(
                "SELECT d.seq, d.attempts, coalesce(d.next_attempt_at, 0),
                        o.seq, o.id, o.type, o.time, o.integration_id, o.data
                 FROM deliveries d JOIN outbox o ON o.seq = d.outbox_seq
                 WHERE d.subscription_id = ?1 AND d.status = 'pending' AND d.seq > ?2
                 ORDER BY d.seq LIMIT ?3",
            )?;
            let pending = statement
                .query_map(params![subscription_id, after, limit as i64], |row| {
                    Ok(PendingDelivery {
                        seq: row.get(0)?,
                        attempts: row.get(1)?,
                        round_start: 0,
                        next_attempt_at: row.get(2)?,
                        entry: raw_entry(row, 3)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(pending)
        })
    }

    fn record_attempts(&self, attempts: &[AttemptRecord], now: i64) -> Pending<()> {
        let attempts = attempts.to_vec();
        self.write(move |tx| {
            {
                let mut update = tx.prepare_cached(
                    "UPDATE deliveries SET status = ?2, attempts = max(attempts, ?3), next_attempt_at = ?4,
                        last_status_code = ?5, last_error = ?6, updated_at = ?7
                     WHERE seq = ?1",
                )?;
                let mut insert = tx.prepare_cached(
                    "INSERT OR REPLACE INTO delivery_attempts
                        (delivery_seq, number, started_at, duration_ms, status_code, error, outcome, next_attempt_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )?;
                for a in &attempts {
                    let changed = update.execute(params![
                        a.delivery_seq,
                        a.outcome.as_str(),
                        a.number,
                        a.next_attempt_at,
                        a.status_code,
                        a.error,
                        now
                    ])?;
                    if changed > 0 {
                        insert.execute(params![
                            a.delivery_seq,
                            a.number,
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

    fn requeue_delivery(&self, seq: i64, now: i64) -> Pending<Option<DeliveryRecord>> {
        self.write(move |tx| {
            execute(
                tx,
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?2, updated_at = ?2
                 WHERE seq = ?1 AND status != 'pending'",
                params![seq, now],
            )?;
            let record = tx
                .prepare_cached(&format!("{DELIVERY_SELECT} AND seq = ?1"))?
                .query_row([seq], delivery_row)
                .optional()?;
            Ok(record)
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
            Ok(Pruned {
                deliveries: finished.len(),
                outbox,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::store::prelude::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{DeliveryStatus, EventRecord, PageRequest, Pruned, SubscriptionRecord, SubscriptionSource};

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
        store.fan_out(&owed, "fanout", entries[1].seq, 5).wait().unwrap();
        assert_eq!(store.cursor("fanout").wait().unwrap(), Some(entries[1].seq));

        let pending = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].entry.data, entries[0].data);
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

        let again = store.requeue_delivery(first, 8).wait().unwrap().unwrap();
        assert_eq!(again.status, DeliveryStatus::Pending);
        assert_eq!(store.pending_deliveries("sub_a", 0, 10).wait().unwrap().len(), 2);

        assert!(store.delete_subscription("sub_a").wait().unwrap());
        assert!(store.delivery(first).wait().unwrap().is_none());
        assert!(store.attempts(first).wait().unwrap().is_empty());
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
                outbox: 0
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
                outbox: 2
            }
        );
        let left = store.pending_deliveries("sub_a", 0, 10).wait().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].entry.id, entries[2].id);
        assert_eq!(store.raw_outbox_after(0, 10).wait().unwrap().len(), 1);
        // Events themselves are not delivery history.
        assert!(store.event("evt_1").wait().unwrap().is_some());
    }
}
