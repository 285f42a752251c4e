//! Recorded events ([`EventStore`] for [`SqliteStore`]), each published to the outbox in
//! the transaction that records it.

use rusqlite::{Connection, params};

use super::dedupe::{Kind, recorded_under, remember};
use super::outbox::publish;
use super::rows::{EVENT_COLUMNS, event_row, one, page};
use super::{SqliteStore, execute};
use crate::store::events::EventRow;
use crate::store::{DedupeKey, EventQuery, EventRecord, EventStore, Page, Pending};

/// Inserts an event and publishes it to the outbox, inside the caller's transaction.
pub(super) fn insert_event_row(tx: &Connection, event: &EventRow) -> anyhow::Result<()> {
    execute(tx,
        "INSERT INTO events (id, installation_id, type, payload, conversation_id, user_id, message_id, status, failure_reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            event.id,
            event.installation_id,
            event.event_type,
            event.payload.get(),
            event.conversation_id,
            event.user_id,
            event.message_id,
            event.status,
            event.failure_reason,
            event.created_at
        ],
    )?;
    publish(
        tx,
        &event.event_type,
        event.installation_id.as_deref(),
        event.created_at,
        &event.outbox_data,
    )
}

impl EventStore for SqliteStore {
    fn insert_event(&self, event: &EventRecord) -> Pending<()> {
        let row = EventRow::new(event);
        self.write(move |c| insert_event_row(c, &row))
    }

    fn insert_event_once(&self, event: &EventRecord, key: &DedupeKey) -> Pending<Option<EventRecord>> {
        let row = EventRow::new(event);
        let key = key.clone();
        self.write(move |c| {
            if let Some(id) = recorded_under(c, Kind::Event, &key)? {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1");
                if let Some(first) = one(c, &sql, id.as_str(), event_row)? {
                    return Ok(Some(first));
                }
            }
            insert_event_row(c, &row)?;
            remember(c, Kind::Event, &key, &row.id, row.created_at)?;
            Ok(None)
        })
    }

    fn event(&self, id: &str) -> Pending<Option<EventRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let id = id.as_str();
            one(
                c,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = ?1"),
                id,
                event_row,
            )
        })
    }

    fn events(&self, query: &EventQuery) -> Pending<Page<EventRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        for (column, value) in [
            ("type", &query.event_type),
            ("conversation_id", &query.conversation_id),
            ("user_id", &query.user_id),
            ("message_id", &query.message_id),
            ("status", &query.status),
        ] {
            if let Some(value) = value {
                conditions.push(format!("{column} = ?"));
                values.push(value.clone().into());
            }
        }
        let query = query.clone();
        self.read(move |c| {
            let query = &query;
            page(
                c,
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1"),
                conditions,
                values,
                &query.page,
                event_row,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::prelude::*;
    use crate::store::{PageRequest, StoreError};
    use crate::time::now_ms;

    fn event(id: &str, event_type: &str) -> EventRecord {
        EventRecord {
            id: id.into(),
            installation_id: Some("inst_a".into()),
            event_type: event_type.into(),
            payload: json!({"n": id}),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "processed".into(),
            failure_reason: None,
            created_at: now_ms(),
        }
    }

    #[test]
    fn events_page_newest_first_and_publish_to_the_outbox() {
        let store = SqliteStore::in_memory().unwrap();
        for n in 0..5 {
            store
                .insert_event(&event(&format!("evt_{n}"), if n % 2 == 0 { "a:even" } else { "a:odd" }))
                .wait()
                .unwrap();
        }
        let first = store
            .events(&EventQuery {
                page: PageRequest {
                    size: Some(2),
                    token: None,
                },
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(
            first.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["evt_4", "evt_3"]
        );
        let second = store
            .events(&EventQuery {
                page: PageRequest {
                    size: Some(2),
                    token: first.next_token.clone(),
                },
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(
            second.items.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["evt_2", "evt_1"]
        );
        let even = store
            .events(&EventQuery {
                event_type: Some("a:even".into()),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(even.items.len(), 3);
        assert!(even.next_token.is_none());

        let outbox = store.outbox_after(0, 100).wait().unwrap();
        assert_eq!(outbox.len(), 5);
        assert_eq!(outbox[0].entry_type, "a:even");
        assert_eq!(outbox[0].data["event"]["id"], "evt_0");
    }

    #[test]
    fn a_forged_page_token_is_refused() {
        let store = SqliteStore::in_memory().unwrap();
        let query = EventQuery {
            page: PageRequest {
                size: None,
                token: Some("nonsense!".into()),
            },
            ..Default::default()
        };
        let error = store.events(&query).wait().unwrap_err();
        assert!(error.downcast_ref::<StoreError>().is_some(), "{error:#}");
    }
}
