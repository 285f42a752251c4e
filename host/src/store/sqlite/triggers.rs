//! The trigger part of the embedded store ([`TriggerStore`] for [`SqliteStore`]).

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;

use super::chat::{add_participant_row, insert_conversation};
use super::events::insert_event_row;
use super::rows::{CONVERSATION_COLUMNS, conversation_row, insert_tags};
use super::{SqliteStore, execute};
use crate::ids::record_id;
use crate::store::events::EventRow;
use crate::store::{
    Contact, ConversationRecord, EventRecord, EventResolution, Pending, StoreError, Tags, TriggerEventLink,
    TriggerPage, TriggerQuery, TriggerRecord, TriggerStore,
};

/// Schema: triggers, their sessions, the conversation each event resolved to, and the
/// contacts linked to conversations.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE triggers (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    description TEXT,
    bot_id TEXT NOT NULL,
    secret TEXT NOT NULL,
    authenticate INTEGER NOT NULL,
    schedule TEXT,
    timezone TEXT,
    session_duration_ms INTEGER NOT NULL,
    blueprint_id TEXT,
    meta TEXT NOT NULL,
    last_trigger_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX triggers_by_blueprint ON triggers (blueprint_id, seq);

CREATE TABLE trigger_sessions (
    trigger_id TEXT NOT NULL,
    session TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    last_event_at INTEGER NOT NULL,
    PRIMARY KEY (trigger_id, session)
);

CREATE TABLE trigger_events (
    event_id TEXT PRIMARY KEY,
    trigger_id TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    contact_user_id TEXT,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE conversation_contacts (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX conversation_contacts_by_user ON conversation_contacts (user_id);
"#;

const TRIGGER_COLUMNS: &str = "seq, id, name, description, bot_id, secret, authenticate, schedule, timezone, \
     session_duration_ms, blueprint_id, meta, last_trigger_at, created_at, updated_at";

fn trigger_row(row: &Row) -> rusqlite::Result<TriggerRecord> {
    Ok(TriggerRecord {
        id: row.get(1)?,
        name: row.get(2)?,
        description: row.get(3)?,
        bot_id: row.get(4)?,
        secret: row.get(5)?,
        authenticate: row.get(6)?,
        schedule: row.get(7)?,
        timezone: row.get(8)?,
        session_duration_ms: row.get(9)?,
        blueprint_id: row.get(10)?,
        meta: serde_json::from_str(&row.get::<_, String>(11)?).unwrap_or_else(|_| Value::Object(Default::default())),
        last_trigger_at: row.get(12)?,
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
    })
}

fn link_row(row: &Row) -> rusqlite::Result<TriggerEventLink> {
    Ok(TriggerEventLink {
        event_id: row.get(0)?,
        trigger_id: row.get(1)?,
        conversation_id: row.get(2)?,
        contact_user_id: row.get(3)?,
        status: row.get(4)?,
        attempt: row.get(5)?,
    })
}

fn find_link(connection: &Connection, event_id: &str) -> anyhow::Result<Option<TriggerEventLink>> {
    Ok(connection
        .prepare_cached(
            "SELECT event_id, trigger_id, conversation_id, contact_user_id, status, attempt
             FROM trigger_events WHERE event_id = ?1",
        )?
        .query_row([event_id], link_row)
        .optional()?)
}

/// The session's conversation while it is fresh, else a new one (which becomes the
/// session's). Without a session every event opens its own conversation.
fn session_conversation(tx: &Connection, resolution: &EventResolution) -> anyhow::Result<ConversationRecord> {
    if let Some(session) = &resolution.session {
        let current: Option<(String, i64)> = tx
            .prepare_cached(
                "SELECT s.conversation_id, s.last_event_at FROM trigger_sessions s
                 JOIN conversations c ON c.id = s.conversation_id AND c.installation_id = ?3
                 WHERE s.trigger_id = ?1 AND s.session = ?2",
            )?
            .query_row(
                params![resolution.trigger_id, session, resolution.installation_id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((conversation_id, last_event_at)) = current
            && resolution.received_at - last_event_at < resolution.session_duration_ms
        {
            execute(
                tx,
                "UPDATE trigger_sessions SET last_event_at = MAX(last_event_at, ?3) WHERE trigger_id = ?1 AND session = ?2",
                params![resolution.trigger_id, session, resolution.received_at],
            )?;
            let conversation = tx
                .prepare_cached(&format!(
                    "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"
                ))?
                .query_row([&conversation_id], conversation_row)?;
            return Ok(conversation);
        }
    }
    let conversation = create_conversation(tx, resolution)?;
    if let Some(session) = &resolution.session {
        execute(
            tx,
            "INSERT INTO trigger_sessions (trigger_id, session, conversation_id, last_event_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (trigger_id, session) DO UPDATE SET conversation_id = ?3, last_event_at = ?4",
            params![resolution.trigger_id, session, conversation.id, resolution.received_at],
        )?;
    }
    Ok(conversation)
}

/// A new conversation in the trigger channel, tagged with the trigger, the session and
/// the event that opened it; published as `chat:channel:created`.
fn create_conversation(tx: &Connection, resolution: &EventResolution) -> anyhow::Result<ConversationRecord> {
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
}

/// Finds the installation's contact (by email, else phone, else name) and brings it up
/// to date, or creates it. Contacts are users whose tags are `email` and `phone`.
fn upsert_contact(tx: &Connection, installation_id: &str, contact: &Contact) -> anyhow::Result<String> {
    let by_tag = |key: &str, value: &str| -> anyhow::Result<Option<(String, Option<String>, String)>> {
        Ok(tx
            .prepare_cached(
                "SELECT u.id, u.name, u.tags FROM users u
                 WHERE u.installation_id = ?1
                   AND EXISTS (SELECT 1 FROM user_tags t WHERE t.owner_id = u.id AND t.key = ?2 AND t.value = ?3)
                 ORDER BY u.seq LIMIT 1",
            )?
            .query_row(params![installation_id, key, value], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?)
    };
    let found = match (&contact.email, &contact.phone, &contact.name) {
        (Some(email), _, _) => by_tag("email", email)?,
        (None, Some(phone), _) => by_tag("phone", phone)?,
        (None, None, Some(name)) => tx
            .prepare_cached(
                "SELECT u.id, u.name, u.tags FROM users u
                 WHERE u.installation_id = ?1 AND u.name = ?2
                   AND EXISTS (SELECT 1 FROM conversation_contacts c WHERE c.user_id = u.id)
                 ORDER BY u.seq LIMIT 1",
            )?
            .query_row(params![installation_id, name], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?,
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
        Some((id, name, tags_text)) => {
            let mut merged: Tags = serde_json::from_str(&tags_text).unwrap_or_default();
            let before = merged.clone();
            merged.extend(tags);
            let new_name = contact.name.clone().or(name.clone());
            if merged != before || new_name != name {
                execute(
                    tx,
                    "UPDATE users SET name = ?2, tags = ?3, updated_at = ?4 WHERE id = ?1",
                    params![id, new_name, serde_json::to_string(&merged)?, now],
                )?;
                insert_tags(tx, "user", &id, &merged)?;
            }
            Ok(id)
        }
        None => {
            let id = record_id("user");
            execute(
                tx,
                "INSERT INTO users (id, installation_id, tags, name, picture_url, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, NULL, ?5, ?5)",
                params![id, installation_id, serde_json::to_string(&tags)?, contact.name, now],
            )?;
            insert_tags(tx, "user", &id, &tags)?;
            Ok(id)
        }
    }
}

impl TriggerStore for SqliteStore {
    fn insert_trigger(&self, trigger: &TriggerRecord) -> Pending<()> {
        let trigger = trigger.clone();
        self.write(move |c| {
            execute(
                c,
                "INSERT INTO triggers (id, name, description, bot_id, secret, authenticate, schedule, timezone,
                     session_duration_ms, blueprint_id, meta, last_trigger_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                params![
                    trigger.id,
                    trigger.name,
                    trigger.description,
                    trigger.bot_id,
                    trigger.secret,
                    trigger.authenticate,
                    trigger.schedule,
                    trigger.timezone,
                    trigger.session_duration_ms,
                    trigger.blueprint_id,
                    trigger.meta.to_string(),
                    trigger.last_trigger_at,
                    trigger.created_at,
                    trigger.updated_at
                ],
            )?;
            Ok(())
        })
    }

    fn update_trigger(&self, trigger: &TriggerRecord) -> Pending<bool> {
        let trigger = trigger.clone();
        self.write(move |c| {
            let changed = execute(
                c,
                "UPDATE triggers SET name = ?2, description = ?3, bot_id = ?4, secret = ?5, authenticate = ?6,
                     schedule = ?7, timezone = ?8, session_duration_ms = ?9, blueprint_id = ?10, meta = ?11,
                     updated_at = ?12
                 WHERE id = ?1",
                params![
                    trigger.id,
                    trigger.name,
                    trigger.description,
                    trigger.bot_id,
                    trigger.secret,
                    trigger.authenticate,
                    trigger.schedule,
                    trigger.timezone,
                    trigger.session_duration_ms,
                    trigger.blueprint_id,
                    trigger.meta.to_string(),
                    trigger.updated_at
                ],
            )?;
            Ok(changed > 0)
        })
    }

    fn delete_trigger(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.write(move |tx| {
            let deleted = execute(tx, "DELETE FROM triggers WHERE id = ?1", [&id])?;
            execute(tx, "DELETE FROM trigger_sessions WHERE trigger_id = ?1", [&id])?;
            Ok(deleted > 0)
        })
    }

    fn trigger(&self, id: &str) -> Pending<Option<TriggerRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let id = id.as_str();
            Ok(
                c.prepare_cached(&format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE id = ?1"))?
                    .query_row([id], trigger_row)
                    .optional()?,
            )
        })
    }

    fn all_triggers(&self) -> Pending<Vec<TriggerRecord>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(&format!("SELECT {TRIGGER_COLUMNS} FROM triggers ORDER BY seq"))?;
            Ok(statement
                .query_map([], trigger_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn list_triggers(&self, query: &TriggerQuery) -> Pending<TriggerPage> {
        let query = query.clone();
        self.read(move |c| {
            let query = &query;
            let mut sql = format!("SELECT {TRIGGER_COLUMNS} FROM triggers WHERE 1");
            let mut values: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(cursor) = &query.cursor {
                let seq: i64 = c
                    .prepare_cached("SELECT seq FROM triggers WHERE id = ?1")?
                    .query_row([cursor], |row| row.get(0))
                    .optional()?
                    .ok_or_else(|| StoreError::BadCursor(cursor.clone()))?;
                sql.push_str(if query.ascending {
                    " AND seq > ?"
                } else {
                    " AND seq < ?"
                });
                values.push(seq.into());
            }
            if let Some(blueprint_id) = &query.blueprint_id {
                sql.push_str(" AND blueprint_id = ?");
                values.push(blueprint_id.clone().into());
            }
            for (key, value) in &query.meta {
                // Keys are checked by the caller (letters, digits, `_`, `-`), so quoting
                // them inside the JSON path is safe.
                sql.push_str(&format!(" AND CAST(json_extract(meta, '$.\"{key}\"') AS TEXT) = ?"));
                values.push(value.clone().into());
            }
            let take = query.take.max(1);
            sql.push_str(if query.ascending {
                " ORDER BY seq ASC"
            } else {
                " ORDER BY seq DESC"
            });
            sql.push_str(&format!(" LIMIT {}", take + 1));
            let mut items = c
                .prepare(&sql)?
                .query_map(rusqlite::params_from_iter(values), trigger_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
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
        self.write(move |c| {
            execute(
                c,
                "UPDATE triggers SET last_trigger_at = MAX(COALESCE(last_trigger_at, 0), ?2) WHERE id = ?1",
                params![id, at],
            )?;
            Ok(())
        })
    }

    fn trigger_event(&self, event_id: &str) -> Pending<Option<TriggerEventLink>> {
        let event_id = event_id.to_owned();
        self.read(move |c| {
            let event_id = event_id.as_str();
            find_link(c, event_id)
        })
    }

    fn resolve_trigger_event(&self, resolution: &EventResolution) -> Pending<TriggerEventLink> {
        let resolution = resolution.clone();
        self.write(move |tx| {
            let resolution = &resolution;
            if let Some(link) = find_link(tx, &resolution.event_id)? {
                return Ok(link);
            }
            let conversation = session_conversation(tx, resolution)?;
            let contact_user_id = match resolution.contact.as_ref().filter(|c| !c.is_empty()) {
                Some(contact) => {
                    let user_id = upsert_contact(tx, &resolution.installation_id, contact)?;
                    execute(tx,
                        "INSERT OR IGNORE INTO conversation_contacts (conversation_id, user_id, created_at) VALUES (?1, ?2, ?3)",
                        params![conversation.id, user_id, resolution.received_at],
                    )?;
                    add_participant_row(tx, &conversation.id, &user_id, resolution.received_at)?;
                    Some(user_id)
                }
                None => None,
            };
            let now = crate::time::now_ms();
            execute(tx,
                "INSERT INTO trigger_events (event_id, trigger_id, conversation_id, contact_user_id, status, attempt, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, 'running', 0, ?5, ?5)",
                params![resolution.event_id, resolution.trigger_id, conversation.id, contact_user_id, now],
            )?;
            let mut received = resolution.received_event.clone();
            received.conversation_id = Some(conversation.id.clone());
            received.user_id = contact_user_id.clone();
            insert_event_row(tx, &EventRow::new(&received))?;
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
        self.write(move |tx| {
            let event_id = event_id.as_str();
            if let Some(link) = find_link(tx, event_id)? {
                if link.status == "finished" {
                    return Ok(false);
                }
                execute(
                    tx,
                    "UPDATE trigger_events SET status = ?2, attempt = ?3, updated_at = ?4 WHERE event_id = ?1",
                    params![event_id, status, attempt, crate::time::now_ms()],
                )?;
            }
            insert_event_row(tx, &outcome)?;
            Ok(true)
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::prelude::*;
    use crate::store::{EntityQuery, EventQuery};

    fn received(event_id: &str) -> EventRecord {
        EventRecord {
            id: record_id("evt"),
            installation_id: Some("inst_a".into()),
            event_type: "trigger:event:received".into(),
            payload: json!({ "eventId": event_id }),
            conversation_id: None,
            user_id: None,
            message_id: None,
            status: "processed".into(),
            failure_reason: None,
            created_at: 0,
        }
    }

    fn resolution(
        event_id: &str,
        session: Option<&str>,
        received_at: i64,
        contact: Option<Contact>,
    ) -> EventResolution {
        EventResolution {
            event_id: event_id.into(),
            trigger_id: "trg_1".into(),
            installation_id: "inst_a".into(),
            integration: "orders".into(),
            channel: "trigger".into(),
            session: session.map(String::from),
            session_duration_ms: 1000,
            received_at,
            contact,
            received_event: received(event_id),
        }
    }

    #[test]
    fn sessions_share_a_conversation_while_fresh() {
        let store = SqliteStore::in_memory().unwrap();
        let first = store
            .resolve_trigger_event(&resolution("tev_1", Some("s"), 10_000, None))
            .wait()
            .unwrap();
        let second = store
            .resolve_trigger_event(&resolution("tev_2", Some("s"), 10_999, None))
            .wait()
            .unwrap();
        assert_eq!(first.conversation_id, second.conversation_id);
        // Measured from the session's last event, not its first.
        let third = store
            .resolve_trigger_event(&resolution("tev_3", Some("s"), 11_500, None))
            .wait()
            .unwrap();
        assert_eq!(first.conversation_id, third.conversation_id);
        let stale = store
            .resolve_trigger_event(&resolution("tev_4", Some("s"), 12_500, None))
            .wait()
            .unwrap();
        assert_ne!(first.conversation_id, stale.conversation_id);
        let other = store
            .resolve_trigger_event(&resolution("tev_5", Some("t"), 12_500, None))
            .wait()
            .unwrap();
        assert_ne!(stale.conversation_id, other.conversation_id);
        let lone_a = store
            .resolve_trigger_event(&resolution("tev_6", None, 12_500, None))
            .wait()
            .unwrap();
        let lone_b = store
            .resolve_trigger_event(&resolution("tev_7", None, 12_500, None))
            .wait()
            .unwrap();
        assert_ne!(lone_a.conversation_id, lone_b.conversation_id);

        // Resolving again answers the first resolution and records nothing new.
        let again = store
            .resolve_trigger_event(&resolution("tev_1", Some("s"), 99_999, None))
            .wait()
            .unwrap();
        assert_eq!(again, first);
        let received = store
            .events(&EventQuery {
                event_type: Some("trigger:event:received".into()),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(received.items.len(), 7);
        let conversation = store.conversation(&first.conversation_id).wait().unwrap().unwrap();
        assert_eq!(conversation.channel, "trigger");
        assert_eq!(conversation.tags.get("session").map(String::as_str), Some("s"));
        assert_eq!(conversation.tags.get("triggerId").map(String::as_str), Some("trg_1"));
    }

    #[test]
    fn contacts_are_found_by_email_and_updated() {
        let store = SqliteStore::in_memory().unwrap();
        let ann = Contact {
            name: Some("Ann".into()),
            email: Some("ann@example.com".into()),
            phone: None,
        };
        let first = store
            .resolve_trigger_event(&resolution("tev_1", None, 0, Some(ann)))
            .wait()
            .unwrap();
        let renamed = Contact {
            name: Some("Ann Smith".into()),
            email: Some("ann@example.com".into()),
            phone: Some("555-0123".into()),
        };
        let second = store
            .resolve_trigger_event(&resolution("tev_2", None, 0, Some(renamed)))
            .wait()
            .unwrap();
        let user_id = first.contact_user_id.clone().unwrap();
        assert_eq!(second.contact_user_id.as_deref(), Some(user_id.as_str()));
        let user = store.user(&user_id).wait().unwrap().unwrap();
        assert_eq!(user.name.as_deref(), Some("Ann Smith"));
        assert_eq!(user.tags.get("phone").map(String::as_str), Some("555-0123"));
        // Linked to both conversations.
        for conversation_id in [&first.conversation_id, &second.conversation_id] {
            let users = store
                .users(&EntityQuery {
                    conversation_id: Some(conversation_id.clone()),
                    ..Default::default()
                })
                .wait()
                .unwrap();
            assert_eq!(users.items.len(), 1);
            assert_eq!(users.items[0].id, user_id);
        }
        let by_name = Contact {
            name: Some("Ann Smith".into()),
            ..Default::default()
        };
        let third = store
            .resolve_trigger_event(&resolution("tev_3", None, 0, Some(by_name)))
            .wait()
            .unwrap();
        assert_eq!(third.contact_user_id.as_deref(), Some(user_id.as_str()));
    }

    #[test]
    fn a_finished_event_is_recorded_once() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .resolve_trigger_event(&resolution("tev_1", None, 0, None))
            .wait()
            .unwrap();
        let outcome = |kind: &str| EventRecord {
            id: record_id("evt"),
            event_type: kind.into(),
            ..received("tev_1")
        };
        assert!(
            store
                .record_trigger_outcome("tev_1", "failed", 1, &outcome("trigger:execution:failed"))
                .wait()
                .unwrap()
        );
        assert!(
            store
                .record_trigger_outcome("tev_1", "finished", 2, &outcome("trigger:execution:finished"))
                .wait()
                .unwrap()
        );
        assert!(
            !store
                .record_trigger_outcome("tev_1", "finished", 3, &outcome("trigger:execution:finished"))
                .wait()
                .unwrap()
        );
        let link = store.trigger_event("tev_1").wait().unwrap().unwrap();
        assert_eq!((link.status.as_str(), link.attempt), ("finished", 2));
        let finished = store
            .events(&EventQuery {
                event_type: Some("trigger:execution:finished".into()),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(finished.items.len(), 1);
    }

    #[test]
    fn triggers_page_by_cursor_in_both_orders() {
        let store = SqliteStore::in_memory().unwrap();
        for n in 0..5 {
            store
                .insert_trigger(&TriggerRecord {
                    id: format!("trg_{n}"),
                    name: Some(format!("t{n}")),
                    description: None,
                    bot_id: "orders".into(),
                    secret: "s".into(),
                    authenticate: false,
                    schedule: None,
                    timezone: None,
                    session_duration_ms: 1000,
                    blueprint_id: (n % 2 == 0).then(|| "bp".to_string()),
                    meta: json!({ "team": if n < 3 { "a" } else { "b" } }),
                    last_trigger_at: None,
                    created_at: n,
                    updated_at: n,
                })
                .wait()
                .unwrap();
        }
        let ids = |page: &TriggerPage| page.items.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        let first = store
            .list_triggers(&TriggerQuery {
                take: 2,
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(ids(&first), ["trg_4", "trg_3"]);
        let second = store
            .list_triggers(&TriggerQuery {
                take: 2,
                cursor: first.cursor.clone(),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(ids(&second), ["trg_2", "trg_1"]);
        let ascending = store
            .list_triggers(&TriggerQuery {
                take: 10,
                ascending: true,
                blueprint_id: Some("bp".into()),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(ids(&ascending), ["trg_0", "trg_2", "trg_4"]);
        assert!(ascending.cursor.is_none());
        let team_b = store
            .list_triggers(&TriggerQuery {
                take: 10,
                meta: vec![("team".into(), "b".into())],
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(ids(&team_b), ["trg_4", "trg_3"]);
        let error = store
            .list_triggers(&TriggerQuery {
                take: 2,
                cursor: Some("trg_nope".into()),
                ..Default::default()
            })
            .wait()
            .unwrap_err();
        assert!(error.downcast_ref::<StoreError>().is_some());
    }
}
