//! Recorded events ([`EventStore`] for [`PostgresStore`]), each published to the outbox in
//! the transaction that records it.

use deadpool_postgres::GenericClient;

use super::PostgresStore;
use super::dedupe::{Kind, recorded_under, remember};
use super::outbox::publish;
use super::rows::{Conditions, EVENT_COLUMNS, event_row, execute, page, query_opt};
use crate::ids::record_id;
use crate::store::events::EventRow;
use crate::store::{DedupeKey, EventQuery, EventRecord, EventStore, Page, Pending};
use crate::telemetry::traces;

/// Inserts an event and publishes it to the outbox, inside the caller's transaction.
pub(super) async fn insert_event_row<C: GenericClient>(tx: &C, event: &EventRow) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT INTO events (id, installation_id, type, payload, conversation_id, user_id, message_id, status, failure_reason, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &event.id,
            &event.installation_id,
            &event.event_type,
            &event.payload.get(),
            &event.conversation_id,
            &event.user_id,
            &event.message_id,
            &event.status,
            &event.failure_reason,
            &event.created_at,
        ],
    )
    .await?;
    publish(
        tx,
        &event.event_type,
        event.installation_id.as_deref(),
        event.created_at,
        &event.outbox_data,
    )
    .await
}

impl EventStore for PostgresStore {
    fn insert_event(&self, event: &EventRecord) -> Pending<()> {
        let event = EventRow::new(event);
        // One statement, so one round trip and one commit: the event and its outbox
        // entry.
        self.run_publishing(move |c| async move {
            execute(
                &c,
                "WITH event AS (
                    INSERT INTO events (id, installation_id, type, payload, conversation_id, user_id, message_id,
                        status, failure_reason, created_at)
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10))
                 INSERT INTO outbox (id, type, time, integration_id, data, traceparent)
                    VALUES ($11, $3, $10, $2, $12, $13)",
                &[
                    &event.id,
                    &event.installation_id,
                    &event.event_type,
                    &event.payload.get(),
                    &event.conversation_id,
                    &event.user_id,
                    &event.message_id,
                    &event.status,
                    &event.failure_reason,
                    &event.created_at,
                    &record_id("ntf"),
                    &event.outbox_data,
                    &traces::current_traceparent(),
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn insert_event_once(&self, event: &EventRecord, key: &DedupeKey) -> Pending<Option<EventRecord>> {
        let (event, key) = (EventRow::new(event), key.clone());
        self.run_publishing(move |mut c| async move {
            let tx = c.transaction().await?;
            if let Some(id) = recorded_under(&tx, Kind::Event, &key).await? {
                let sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1");
                if let Some(first) = query_opt(&tx, &sql, &[&id]).await? {
                    return Ok(Some(event_row(&first)?));
                }
            }
            insert_event_row(&tx, &event).await?;
            remember(&tx, Kind::Event, &key, &event.id, event.created_at).await?;
            tx.commit().await?;
            Ok(None)
        })
    }

    fn event(&self, id: &str) -> Pending<Option<EventRecord>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let row = query_opt(&c, &format!("SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"), &[&id]).await?;
            row.as_ref().map(event_row).transpose()
        })
    }

    fn events(&self, query: &EventQuery) -> Pending<Page<EventRecord>> {
        let mut conditions = Conditions::default();
        for (column, value) in [
            ("type", &query.event_type),
            ("conversation_id", &query.conversation_id),
            ("user_id", &query.user_id),
            ("message_id", &query.message_id),
            ("status", &query.status),
        ] {
            if let Some(value) = value {
                conditions.equal(column, value.clone());
            }
        }
        let request = query.page.clone();
        self.run(move |c| async move {
            page(
                &c,
                &format!("SELECT {EVENT_COLUMNS} FROM events"),
                conditions,
                &request,
                event_row,
            )
            .await
        })
    }
}
