//! The outbox of the embedded store ([`OutboxStore`] for [`SqliteStore`]): notifications
//! are published inside the transaction that records what they tell of, and announced to
//! readers once it is committed.

use std::sync::Arc;

use rusqlite::hooks::Action;
use rusqlite::{Connection, params};
use tokio::sync::watch;

#[cfg(test)]
use super::rows::parse_json;
use super::rows::raw_entry;
use super::writer::Announcement;
use super::{SqliteStore, execute};
use crate::ids::record_id;
#[cfg(test)]
use crate::store::OutboxEntry;
use crate::store::{OutboxStore, Pending, RawOutboxEntry};
use crate::telemetry::traces;

/// Follows what is published on the write connection: answers the announcement for the
/// connection's writer and the signal it keeps at the highest outbox seq committed. The
/// update hook sees every insert on the write connection, so nothing that publishes has to
/// remember to announce it; the writer announces only after `COMMIT` returned, when
/// readers on other connections can see the rows.
pub(super) fn follow_published(connection: &mut Connection) -> anyhow::Result<(Announcement, Arc<watch::Sender<i64>>)> {
    // The highest seq ever handed out, even when retention has emptied the outbox since:
    // readers' positions (a stream's Last-Event-ID) are compared with it.
    let head: i64 = connection.query_row(
        "SELECT max(coalesce((SELECT max(seq) FROM outbox), 0),
                    coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0))",
        [],
        |row| row.get(0),
    )?;
    let published = Arc::new(watch::Sender::new(head));
    let announced = published.clone();
    let announcement = Announcement::new(move |seq| {
        announced.send_if_modified(|head| {
            let newer = seq > *head;
            if newer {
                *head = seq;
            }
            newer
        });
    });
    let inserted = announcement.clone();
    connection.update_hook(Some(move |action: Action, _db: &str, table: &str, rowid: i64| {
        if action == Action::SQLITE_INSERT && table == "outbox" {
            inserted.note(rowid);
        }
    }))?;
    Ok((announcement, published))
}

/// Publishes a notification to the outbox, inside the caller's transaction; it is
/// announced to outbox readers once that transaction is committed.
pub(super) fn publish(
    tx: &Connection,
    entry_type: &str,
    integration_id: Option<&str>,
    time: i64,
    data: &str,
) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT INTO outbox (id, type, time, integration_id, data, traceparent) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            record_id("ntf"),
            entry_type,
            time,
            integration_id,
            data,
            traces::current_traceparent()
        ],
    )?;
    Ok(())
}

impl OutboxStore for SqliteStore {
    fn outbox_published(&self) -> watch::Receiver<i64> {
        self.published.subscribe()
    }

    fn raw_outbox_after(&self, seq: i64, limit: usize) -> Pending<Vec<RawOutboxEntry>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT seq, id, type, time, integration_id, data, traceparent FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let entries = statement
                .query_map(params![seq, limit as i64], |row| raw_entry(row, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(entries)
        })
    }

    #[cfg(test)]
    fn outbox_after(&self, seq: i64, limit: usize) -> Pending<Vec<OutboxEntry>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT seq, id, type, time, integration_id, data FROM outbox WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let entries = statement
                .query_map(params![seq, limit as i64], |row| {
                    Ok(OutboxEntry {
                        seq: row.get(0)?,
                        id: row.get(1)?,
                        entry_type: row.get(2)?,
                        time: row.get(3)?,
                        integration_id: row.get(4)?,
                        data: parse_json(row.get(5)?)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(entries)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::outbox::{conversation_data, event_data, printed};
    use crate::store::prelude::*;
    use crate::store::{EventRecord, Tags};

    #[test]
    fn what_is_recorded_is_published_in_order_and_announced() {
        let store = SqliteStore::in_memory().unwrap();
        let published = store.outbox_published();
        assert_eq!(*published.borrow(), 0);
        let event = EventRecord {
            id: "evt_1".into(),
            installation_id: None,
            event_type: "bot:said".into(),
            payload: json!({"b": 1, "a": 2}),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "processed".into(),
            failure_reason: None,
            created_at: 7,
        };
        store.insert_event(&event).wait().unwrap();
        let (conversation, _) = store
            .get_or_create_conversation("inst_a", "chat", "channel", &Tags::new())
            .wait()
            .unwrap();
        assert_eq!(*published.borrow(), 2, "announced once committed");

        let raw = store.raw_outbox_after(0, 10).wait().unwrap();
        let types: Vec<(i64, &str)> = raw.iter().map(|e| (e.seq, e.entry_type.as_str())).collect();
        assert_eq!(types, [(1, "bot:said"), (2, "chat:channel:created")]);
        assert_eq!(
            raw[0].data,
            event_data(&event, &printed(&event.payload)),
            "stored as published"
        );
        assert_eq!(raw[0].integration_id, None);
        assert_eq!(raw[1].data, conversation_data(&conversation));
        assert_eq!(raw[1].integration_id.as_deref(), Some("inst_a"));
        let parsed = store.outbox_after(1, 10).wait().unwrap();
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].data["conversation"]["id"], json!(conversation.id));
        assert!(store.outbox_after(2, 10).wait().unwrap().is_empty());
    }

    #[test]
    fn the_head_survives_an_outbox_emptied_by_retention() {
        let dir = tempfile::tempdir().unwrap();
        let event = |id: &str| EventRecord {
            id: id.into(),
            installation_id: None,
            event_type: "bot:said".into(),
            payload: json!({}),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "processed".into(),
            failure_reason: None,
            created_at: 7,
        };
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.insert_event(&event("evt_1")).wait().unwrap();
            store.insert_event(&event("evt_2")).wait().unwrap();
            store.set_cursor("fanout", 2).wait().unwrap();
            let pruned = store.prune_delivery_history(i64::MAX, &["fanout"], 100).wait().unwrap();
            assert_eq!(pruned.outbox, 2);
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(
            *store.outbox_published().borrow(),
            2,
            "not 0: positions handed out stay valid"
        );
    }
}
