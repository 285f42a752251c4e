//! The trigger part of the PostgreSQL store ([`TriggerStore`] for [`PostgresStore`]).

use deadpool_postgres::GenericClient;
use serde_json::Value;
use tokio_postgres::Row;

use super::PostgresStore;
use super::chat::{add_participant_row, insert_conversation};
use super::events::insert_event_row;
use super::rows::{
    CONVERSATION_COLUMNS, Conditions, conversation_row, execute, insert_tags, lock_key, query, query_opt, refs,
};
use crate::ids::record_id;
use crate::store::events::EventRow;
use crate::store::{
    Contact, ConversationRecord, EventRecord, EventResolution, Pending, StoreError, Tags, TriggerEventLink,
    TriggerPage, TriggerQuery, TriggerRecord, TriggerStore,
};

const TRIGGER_COLUMNS: &str = "seq, id, name, description, bot_id, secret, authenticate, schedule, timezone, \
     session_duration_ms, blueprint_id, meta, last_trigger_at, created_at, updated_at";

fn trigger_row(row: &Row) -> TriggerRecord {
    TriggerRecord {
        id: row.get(1),
        name: row.get(2),
        description: row.get(3),
        bot_id: row.get(4),
        secret: row.get(5),
        authenticate: row.get(6),
        schedule: row.get(7),
        timezone: row.get(8),
        session_duration_ms: row.get(9),
        blueprint_id: row.get(10),
        meta: serde_json::from_str(&row.get::<_, String>(11)).unwrap_or_else(|_| Value::Object(Default::default())),
        last_trigger_at: row.get(12),
        created_at: row.get(13),
        updated_at: row.get(14),
    }
}

fn link_row(row: &Row) -> TriggerEventLink {
    TriggerEventLink {
        event_id: row.get(0),
        trigger_id: row.get(1),
        conversation_id: row.get(2),
        contact_user_id: row.get(3),
        status: row.get(4),
        attempt: row.get::<_, i64>(5) as u32,
    }
}

async fn find_link<C: GenericClient>(
    client: &C,
    event_id: &str,
    lock: bool,
) -> anyhow::Result<Option<TriggerEventLink>> {
    let sql = format!(
        "SELECT event_id, trigger_id, conversation_id, contact_user_id, status, attempt
         FROM trigger_events WHERE event_id = $1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    Ok(query_opt(client, &sql, &[&event_id]).await?.as_ref().map(link_row))
}

/// The session's conversation while it is fresh, else a new one (which becomes the
/// session's). Without a session every event opens its own conversation.
async fn session_conversation<C: GenericClient>(
    tx: &C,
    resolution: &EventResolution,
) -> anyhow::Result<ConversationRecord> {
    if let Some(session) = &resolution.session {
        let current = query_opt(
            tx,
            "SELECT s.conversation_id, s.last_event_at FROM trigger_sessions s
             JOIN conversations c ON c.id = s.conversation_id AND c.installation_id = $3
             WHERE s.trigger_id = $1 AND s.session = $2",
            &[&resolution.trigger_id, session, &resolution.installation_id],
        )
        .await?;
        if let Some(row) = current {
            let (conversation_id, last_event_at): (String, i64) = (row.get(0), row.get(1));
            if resolution.received_at - last_event_at < resolution.session_duration_ms {
                execute(
                    tx,
                    "UPDATE trigger_sessions SET last_event_at = greatest(last_event_at, $3)
                     WHERE trigger_id = $1 AND session = $2",
                    &[&resolution.trigger_id, session, &resolution.received_at],
                )
                .await?;
                let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1");
                let row = tx.query_one(&sql, &[&conversation_id]).await?;
                return Ok(conversation_row(&row));
            }
        }
    }
    let conversation = create_conversation(tx, resolution).await?;
    if let Some(session) = &resolution.session {
        execute(
            tx,
            "INSERT INTO trigger_sessions (trigger_id, session, conversation_id, last_event_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (trigger_id, session) DO UPDATE SET conversation_id = $3, last_event_at = $4",
            &[
                &resolution.trigger_id,
                session,
                &conversation.id,
                &resolution.received_at,
            ],
        )
        .await?;
    }
    Ok(conversation)
}

/// A new conversation in the trigger channel, tagged with the trigger, the session and
/// the event that opened it; published as `chat:channel:created`.
async fn create_conversation<C: GenericClient>(
    tx: &C,
    resolution: &EventResolution,
) -> anyhow::Result<ConversationRecord> {
    let mut tags = Tags::new();
    tags.insert("triggerId".into(), resolution.trigger_id.clone());
    tags.insert("triggerEventId".into(), resolution.event_id.clone());
    if let Some(session) = &resolution.session {
        tags.insert("session".into(), session.clone());
    }
    insert_conversation(
        tx,
        &resolution.installation_id,
        &resolution.integration,
        &resolution.channel,
        &tags,
    )
    .await
}

/// Finds the installation's contact (by email, else phone, else name) and brings it up
/// to date, or creates it. Contacts are users whose tags are `email` and `phone`.
async fn upsert_contact<C: GenericClient>(tx: &C, installation_id: &str, contact: &Contact) -> anyhow::Result<String> {
    lock_key(tx, &format!("user:{installation_id}")).await?;
    let by_tag = "SELECT u.id, u.name, u.tags FROM users u
                  WHERE u.installation_id = $1
                    AND EXISTS (SELECT 1 FROM user_tags t WHERE t.owner_id = u.id AND t.key = $2 AND t.value = $3)
                  ORDER BY u.seq LIMIT 1";
    let found = match (&contact.email, &contact.phone, &contact.name) {
        (Some(email), _, _) => query_opt(tx, by_tag, &[&installation_id, &"email", email]).await?,
        (None, Some(phone), _) => query_opt(tx, by_tag, &[&installation_id, &"phone", phone]).await?,
        (None, None, Some(name)) => {
            query_opt(
                tx,
                "SELECT u.id, u.name, u.tags FROM users u
                 WHERE u.installation_id = $1 AND u.name = $2
                   AND EXISTS (SELECT 1 FROM conversation_contacts c WHERE c.user_id = u.id)
                 ORDER BY u.seq LIMIT 1",
                &[&installation_id, name],
            )
            .await?
        }
        (None, None, None) => anyhow::bail!("a contact needs a name, an email or a phone"),
    };
    let now = crate::time::now_ms();
    let mut tags = Tags::new();
    if let Some(email) = &contact.email {
        tags.insert("email".into(), email.clone());
    }
    if let Some(phone) = &contact.phone {
        tags.insert("phone".into(), phone.clone());
    }
    match found {
        Some(row) => {
            let (id, name, tags_text): (String, Option<String>, String) = (row.get(0), row.get(1), row.get(2));
            let mut merged: Tags = serde_json::from_str(&tags_text).unwrap_or_default();
            let before = merged.clone();
            merged.extend(tags);
            let new_name = contact.name.clone().or(name.clone());
            if merged != before || new_name != name {
                execute(
                    tx,
                    "UPDATE users SET name = $2, tags = $3, updated_at = $4 WHERE id = $1",
                    &[&id, &new_name, &serde_json::to_string(&merged)?, &now],
                )
                .await?;
                insert_tags(tx, "user", &id, &merged).await?;
            }
            Ok(id)
        }
        None => {
            let id = record_id("user");
            execute(
                tx,
                "INSERT INTO users (id, installation_id, tags, name, picture_url, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, NULL, $5, $5)",
                &[
                    &id,
                    &installation_id,
                    &serde_json::to_string(&tags)?,
                    &contact.name,
                    &now,
                ],
            )
            .await?;
            insert_tags(tx, "user", &id, &tags).await?;
            Ok(id)
        }
    }
}

impl TriggerStore for PostgresStore {
    fn insert_trigger(&self, trigger: &TriggerRecord) -> Pending<()> {
        let t = trigger.clone();
        self.run_changing("triggers", move |c| async move {
            execute(
                &c,
                "INSERT INTO triggers (id, name, description, bot_id, secret, authenticate, schedule, timezone,
                     session_duration_ms, blueprint_id, meta, last_trigger_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                &[
                    &t.id,
                    &t.name,
                    &t.description,
                    &t.bot_id,
                    &t.secret,
                    &t.authenticate,
                    &t.schedule,
                    &t.timezone,
                    &t.session_duration_ms,
                    &t.blueprint_id,
                    &t.meta.to_string(),
                    &t.last_trigger_at,
                    &t.created_at,
                    &t.updated_at,
                ],
            )
            .await?;
            Ok((c, ()))
        })
    }

    fn update_trigger(&self, trigger: &TriggerRecord) -> Pending<bool> {
        let t = trigger.clone();
        self.run_changing("triggers", move |c| async move {
            let changed = execute(
                &c,
                "UPDATE triggers SET name = $2, description = $3, bot_id = $4, secret = $5, authenticate = $6,
                     schedule = $7, timezone = $8, session_duration_ms = $9, blueprint_id = $10, meta = $11,
                     updated_at = $12
                 WHERE id = $1",
                &[
                    &t.id,
                    &t.name,
                    &t.description,
                    &t.bot_id,
                    &t.secret,
                    &t.authenticate,
                    &t.schedule,
                    &t.timezone,
                    &t.session_duration_ms,
                    &t.blueprint_id,
                    &t.meta.to_string(),
                    &t.updated_at,
                ],
            )
            .await?;
            Ok((c, changed > 0))
        })
    }

    fn delete_trigger(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.run_changing("triggers", move |mut c| async move {
            let tx = c.transaction().await?;
            let deleted = execute(&tx, "DELETE FROM triggers WHERE id = $1", &[&id]).await?;
            execute(&tx, "DELETE FROM trigger_sessions WHERE trigger_id = $1", &[&id]).await?;
            tx.commit().await?;
            Ok((c, deleted > 0))
        })
    }

    fn trigger(&self, id: &str) -> Pending<Option<TriggerRecord>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = $1");
            Ok(query_opt(&c, &sql, &[&id]).await?.as_ref().map(trigger_row))
        })
    }

    fn all_triggers(&self) -> Pending<Vec<TriggerRecord>> {
        self.run(move |c| async move {
            let sql = format!("SELECT {TRIGGER_COLUMNS} FROM triggers ORDER BY seq");
            Ok(query(&c, &sql, &[]).await?.iter().map(trigger_row).collect())
        })
    }

    fn list_triggers(&self, query_: &TriggerQuery) -> Pending<TriggerPage> {
        let request = query_.clone();
        self.run(move |c| async move {
            let mut conditions = Conditions::default();
            if let Some(cursor) = &request.cursor {
                let seq: i64 = query_opt(&c, "SELECT seq FROM triggers WHERE id = $1", &[cursor])
                    .await?
                    .map(|row| row.get(0))
                    .ok_or_else(|| StoreError::BadCursor(cursor.clone()))?;
                let placeholder = conditions.bind(seq);
                let comparison = if request.ascending { ">" } else { "<" };
                conditions.clauses.push(format!("seq {comparison} {placeholder}"));
            }
            if let Some(blueprint_id) = &request.blueprint_id {
                conditions.equal("blueprint_id", blueprint_id.clone());
            }
            for (key, value) in &request.meta {
                let key = conditions.bind(key.clone());
                let value = conditions.bind(value.clone());
                conditions.clauses.push(format!("(meta::jsonb ->> {key}) = {value}"));
            }
            let take = request.take.max(1);
            let sql = format!(
                "SELECT {TRIGGER_COLUMNS} FROM triggers{} ORDER BY seq {} LIMIT {}",
                conditions.where_clause(),
                if request.ascending { "ASC" } else { "DESC" },
                take + 1
            );
            let mut items: Vec<TriggerRecord> = query(&c, &sql, &refs(&conditions.params))
                .await?
                .iter()
                .map(trigger_row)
                .collect();
            let cursor = if items.len() > take {
                items.truncate(take);
                items.last().map(|t| t.id.clone())
            } else {
                None
            };
            Ok(TriggerPage { items, cursor })
        })
    }

    fn mark_triggered(&self, id: &str, at: i64) -> Pending<()> {
        let id = id.to_string();
        self.run(move |c| async move {
            execute(
                &c,
                "UPDATE triggers SET last_trigger_at = greatest(coalesce(last_trigger_at, 0), $2) WHERE id = $1",
                &[&id, &at],
            )
            .await?;
            Ok(())
        })
    }

    fn trigger_event(&self, event_id: &str) -> Pending<Option<TriggerEventLink>> {
        let event_id = event_id.to_owned();
        self.run(move |c| async move { find_link(&c, &event_id, false).await })
    }

    fn resolve_trigger_event(&self, resolution: &EventResolution) -> Pending<TriggerEventLink> {
        let resolution = resolution.clone();
        self.run_publishing(move |mut c| async move {
            let tx = c.transaction().await?;
            // One resolution per event, and one per session at a time.
            lock_key(&tx, &format!("trigger-event:{}", resolution.event_id)).await?;
            if let Some(session) = &resolution.session {
                lock_key(&tx, &format!("trigger-session:{}:{session}", resolution.trigger_id)).await?;
            }
            if let Some(link) = find_link(&tx, &resolution.event_id, false).await? {
                return Ok(link);
            }
            let conversation = session_conversation(&tx, &resolution).await?;
            let contact_user_id = match resolution.contact.as_ref().filter(|c| !c.is_empty()) {
                Some(contact) => {
                    let user_id = upsert_contact(&tx, &resolution.installation_id, contact).await?;
                    execute(
                        &tx,
                        "INSERT INTO conversation_contacts (conversation_id, user_id, created_at) VALUES ($1, $2, $3)
                         ON CONFLICT DO NOTHING",
                        &[&conversation.id, &user_id, &resolution.received_at],
                    )
                    .await?;
                    add_participant_row(&tx, &conversation.id, &user_id, resolution.received_at).await?;
                    Some(user_id)
                }
                None => None,
            };
            let now = crate::time::now_ms();
            execute(
                &tx,
                "INSERT INTO trigger_events (event_id, trigger_id, conversation_id, contact_user_id, status, attempt, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, 'running', 0, $5, $5)",
                &[&resolution.event_id, &resolution.trigger_id, &conversation.id, &contact_user_id, &now],
            )
            .await?;
            let mut received = resolution.received_event.clone();
            received.conversation_id = Some(conversation.id.clone());
            received.user_id = contact_user_id.clone();
            insert_event_row(&tx, &EventRow::new(&received)).await?;
            tx.commit().await?;
            Ok(TriggerEventLink {
                event_id: resolution.event_id.clone(),
                trigger_id: resolution.trigger_id.clone(),
                conversation_id: conversation.id,
                contact_user_id,
                status: "running".into(),
                attempt: 0,
            })
        })
    }

    fn record_trigger_outcome(
        &self,
        event_id: &str,
        status: &str,
        attempt: u32,
        outcome: &EventRecord,
    ) -> Pending<bool> {
        let (event_id, status, outcome) = (event_id.to_string(), status.to_string(), EventRow::new(outcome));
        self.run_publishing(move |mut c| async move {
            let tx = c.transaction().await?;
            if let Some(link) = find_link(&tx, &event_id, true).await? {
                if link.status == "finished" {
                    return Ok(false);
                }
                execute(
                    &tx,
                    "UPDATE trigger_events SET status = $2, attempt = $3, updated_at = $4 WHERE event_id = $1",
                    &[&event_id, &status, &i64::from(attempt), &crate::time::now_ms()],
                )
                .await?;
            }
            insert_event_row(&tx, &outcome).await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}
