//! Conversations, users and messages ([`ChatStore`] for [`SqliteStore`]). New
//! conversations and messages are published to the outbox in the transaction that
//! records them.

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde_json::Value;

use super::dedupe::{Kind, recorded_under, remember};
use super::outbox::publish;
use super::rows::{
    CONVERSATION_COLUMNS, MESSAGE_COLUMNS, USER_COLUMNS, conversation_row, insert_tags, message_row, one, page,
    sorted_page, tag_conditions, user_row,
};
use super::{SqliteStore, execute};
use crate::ids::record_id;
use crate::store::outbox::{conversation_data, message_data, printed};
use crate::store::{
    CONVERSATION_DELETION, ChatStore, ConversationRecord, DedupeKey, EntityQuery, MessageRecord, Page, Pending,
    TagChanges, TagEdits, Tags, USER_DELETION, UserChanges, UserRecord,
};
use crate::time::now_ms;

/// Who takes part in which conversation: added by the bot, by writing a message, or as a
/// trigger event's contact (those before this migration included). Lists ordered by
/// update have their indexes.
pub(super) const PARTICIPANTS_MIGRATION: &str = r#"
CREATE TABLE participants (
    conversation_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, user_id)
);
CREATE INDEX participants_by_user ON participants (user_id);
INSERT OR IGNORE INTO participants (conversation_id, user_id, created_at)
    SELECT conversation_id, user_id, MIN(created_at) FROM messages GROUP BY conversation_id, user_id;
INSERT OR IGNORE INTO participants (conversation_id, user_id, created_at)
    SELECT conversation_id, user_id, created_at FROM conversation_contacts;
CREATE INDEX conversations_by_update ON conversations (updated_at, seq);
CREATE INDEX users_by_update ON users (updated_at, seq);
"#;

/// Makes a user a participant of a conversation, inside the caller's transaction.
pub(super) fn add_participant_row(
    tx: &Connection,
    conversation_id: &str,
    user_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT OR IGNORE INTO participants (conversation_id, user_id, created_at) VALUES (?1, ?2, ?3)",
        params![conversation_id, user_id, now],
    )?;
    Ok(())
}

/// Brings the `<kind>_tags` rows of `owner_id` in line with `edits`, inside the caller's
/// transaction.
fn edit_tags(tx: &Connection, kind: &str, owner_id: &str, edits: &TagEdits) -> anyhow::Result<()> {
    for key in &edits.removed {
        execute(
            tx,
            &format!("DELETE FROM {kind}_tags WHERE owner_id = ?1 AND key = ?2"),
            params![owner_id, key],
        )?;
    }
    insert_tags(tx, kind, owner_id, &edits.set)
}

/// Runs a deletion ([`CONVERSATION_DELETION`], [`USER_DELETION`]) of `id`, inside the
/// caller's transaction; `false` when there was nothing to delete.
fn delete_with(tx: &Connection, statements: &[&str], id: &str) -> anyhow::Result<bool> {
    let mut deleted = false;
    for (index, statement) in statements.iter().enumerate() {
        let count = execute(tx, &statement.replace("{id}", "?1"), [id])?;
        if index == 0 {
            deleted = count > 0;
        }
    }
    Ok(deleted)
}

/// Inserts a new user with its tags, inside the caller's transaction.
fn insert_user(
    tx: &Connection,
    installation_id: Option<&str>,
    tags: &Tags,
    name: Option<&str>,
    picture_url: Option<&str>,
) -> anyhow::Result<UserRecord> {
    let user = UserRecord::new(installation_id, tags, name, picture_url, now_ms());
    execute(
        tx,
        "INSERT INTO users (id, installation_id, tags, name, picture_url, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            user.id,
            installation_id,
            serde_json::to_string(tags)?,
            name,
            picture_url,
            user.created_at
        ],
    )?;
    insert_tags(tx, "user", &user.id, tags)?;
    Ok(user)
}

/// Inserts a new conversation with its tags and publishes it as `chat:channel:created`,
/// inside the caller's transaction.
pub(super) fn insert_conversation(
    tx: &Connection,
    installation_id: &str,
    integration: &str,
    channel: &str,
    tags: &Tags,
) -> anyhow::Result<ConversationRecord> {
    let now = now_ms();
    let conversation = ConversationRecord {
        id: record_id("conv"),
        installation_id: installation_id.to_string(),
        integration: integration.to_string(),
        channel: channel.to_string(),
        tags: tags.clone(),
        message_count: 0,
        created_at: now,
        updated_at: now,
    };
    execute(
        tx,
        "INSERT INTO conversations (id, installation_id, integration, channel, tags, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        params![
            conversation.id,
            installation_id,
            integration,
            channel,
            serde_json::to_string(tags)?,
            now
        ],
    )?;
    insert_tags(tx, "conversation", &conversation.id, tags)?;
    publish(
        tx,
        "chat:channel:created",
        Some(installation_id),
        now,
        &conversation_data(&conversation),
    )?;
    Ok(conversation)
}

/// Inserts a message with its tags, counts it on its conversation and publishes it as
/// `chat:message:new`, inside the caller's transaction.
fn insert_message_row(tx: &Connection, message: &MessageRecord) -> anyhow::Result<()> {
    let payload = printed(&message.payload);
    execute(tx,
        "INSERT INTO messages (id, installation_id, conversation_id, user_id, type, payload, direction, tags, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            message.id,
            message.installation_id,
            message.conversation_id,
            message.user_id,
            message.message_type,
            payload.get(),
            message.direction,
            serde_json::to_string(&message.tags)?,
            message.created_at,
            message.updated_at
        ],
    )?;
    insert_tags(tx, "message", &message.id, &message.tags)?;
    execute(
        tx,
        "UPDATE conversations SET message_count = message_count + 1, updated_at = ?2 WHERE id = ?1",
        params![message.conversation_id, message.created_at],
    )?;
    add_participant_row(tx, &message.conversation_id, &message.user_id, message.created_at)?;
    publish(
        tx,
        "chat:message:new",
        Some(&message.installation_id),
        message.created_at,
        &message_data(message, &payload),
    )
}

impl ChatStore for SqliteStore {
    fn get_or_create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<(ConversationRecord, bool)> {
        let (installation_id, integration, channel, tags) = (
            installation_id.to_string(),
            integration.to_string(),
            channel.to_string(),
            tags.clone(),
        );
        self.write(move |tx| {
            let (installation_id, integration, channel, tags) =
                (installation_id.as_str(), integration.as_str(), channel.as_str(), &tags);
            let mut conditions = vec!["installation_id = ?".to_string(), "channel = ?".to_string()];
            let mut values: Vec<rusqlite::types::Value> =
                vec![installation_id.to_string().into(), channel.to_string().into()];
            tag_conditions("conversation", tags, &mut conditions, &mut values);
            let sql = format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE {} ORDER BY seq LIMIT 1",
                conditions.join(" AND ")
            );
            let found = tx
                .prepare_cached(&sql)?
                .query_row(params_from_iter(values), conversation_row)
                .optional()?;
            if let Some(conversation) = found {
                return Ok((conversation, false));
            }
            let conversation = insert_conversation(tx, installation_id, integration, channel, tags)?;
            Ok((conversation, true))
        })
    }

    fn create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<ConversationRecord> {
        let (installation_id, integration, channel, tags) = (
            installation_id.to_string(),
            integration.to_string(),
            channel.to_string(),
            tags.clone(),
        );
        self.write(move |tx| insert_conversation(tx, &installation_id, &integration, &channel, &tags))
    }

    fn update_conversation(&self, id: &str, tags: &TagChanges) -> Pending<Option<ConversationRecord>> {
        let now = now_ms();
        let (id, tags) = (id.to_string(), tags.clone());
        self.write(move |tx| {
            let id = id.as_str();
            let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1");
            let Some(mut conversation) = one(tx, &sql, id, conversation_row)? else {
                return Ok(None);
            };
            edit_tags(tx, "conversation", id, &TagEdits::apply(&mut conversation.tags, &tags))?;
            conversation.updated_at = now;
            execute(
                tx,
                "UPDATE conversations SET tags = ?2, updated_at = ?3 WHERE id = ?1",
                params![id, serde_json::to_string(&conversation.tags)?, now],
            )?;
            Ok(Some(conversation))
        })
    }

    fn delete_conversation(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.write(move |tx| delete_with(tx, CONVERSATION_DELETION, &id))
    }

    fn conversation(&self, id: &str) -> Pending<Option<ConversationRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let id = id.as_str();
            one(
                c,
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = ?1"),
                id,
                conversation_row,
            )
        })
    }

    fn conversations(&self, query: &EntityQuery) -> Pending<Page<ConversationRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        for (column, value) in [
            ("installation_id", &query.installation_id),
            ("channel", &query.channel),
            ("integration", &query.integration),
        ] {
            if let Some(value) = value {
                conditions.push(format!("{column} = ?"));
                values.push(value.clone().into());
            }
        }
        tag_conditions("conversation", &query.tags, &mut conditions, &mut values);
        let query = query.clone();
        self.read(move |c| {
            let query = &query;
            sorted_page(
                c,
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE 1"),
                conditions,
                values,
                &query.page,
                query.sort,
                conversation_row,
            )
        })
    }

    fn get_or_create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<(UserRecord, bool)> {
        let (installation_id, tags, name, picture_url) = (
            installation_id.map(str::to_string),
            tags.clone(),
            name.map(str::to_string),
            picture_url.map(str::to_string),
        );
        self.write(move |tx| {
            let (installation_id, tags, name, picture_url) = (
                installation_id.as_deref(),
                &tags,
                name.as_deref(),
                picture_url.as_deref(),
            );
            let mut conditions = vec!["installation_id IS ?".to_string()];
            let mut values: Vec<rusqlite::types::Value> = vec![installation_id.map(str::to_string).into()];
            tag_conditions("user", tags, &mut conditions, &mut values);
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE {} ORDER BY seq LIMIT 1",
                conditions.join(" AND ")
            );
            let found = tx
                .prepare_cached(&sql)?
                .query_row(params_from_iter(values), user_row)
                .optional()?;
            if let Some(user) = found {
                return Ok((user, false));
            }
            Ok((insert_user(tx, installation_id, tags, name, picture_url)?, true))
        })
    }

    fn create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<UserRecord> {
        let (installation_id, tags, name, picture_url) = (
            installation_id.map(str::to_string),
            tags.clone(),
            name.map(str::to_string),
            picture_url.map(str::to_string),
        );
        self.write(move |tx| {
            insert_user(
                tx,
                installation_id.as_deref(),
                &tags,
                name.as_deref(),
                picture_url.as_deref(),
            )
        })
    }

    fn update_user(&self, id: &str, changes: &UserChanges) -> Pending<Option<UserRecord>> {
        let now = now_ms();
        let (id, changes) = (id.to_string(), changes.clone());
        self.write(move |tx| {
            let id = id.as_str();
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1");
            let Some(mut user) = one(tx, &sql, id, user_row)? else {
                return Ok(None);
            };
            edit_tags(tx, "user", id, &user.change(&changes, now))?;
            execute(
                tx,
                "UPDATE users SET tags = ?2, name = ?3, picture_url = ?4, updated_at = ?5 WHERE id = ?1",
                params![id, serde_json::to_string(&user.tags)?, user.name, user.picture_url, now],
            )?;
            Ok(Some(user))
        })
    }

    fn delete_user(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.write(move |tx| delete_with(tx, USER_DELETION, &id))
    }

    fn add_participant(&self, conversation_id: &str, user_id: &str) -> Pending<()> {
        let (conversation_id, user_id) = (conversation_id.to_string(), user_id.to_string());
        self.write(move |tx| add_participant_row(tx, &conversation_id, &user_id, now_ms()))
    }

    fn participant(&self, conversation_id: &str, user_id: &str) -> Pending<Option<UserRecord>> {
        let (conversation_id, user_id) = (conversation_id.to_string(), user_id.to_string());
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = ?2
                 AND EXISTS (SELECT 1 FROM participants p WHERE p.conversation_id = ?1 AND p.user_id = ?2)"
            ))?
            .query_row(params![conversation_id, user_id], user_row)
            .optional()?)
        })
    }

    fn remove_participant(&self, conversation_id: &str, user_id: &str) -> Pending<bool> {
        let (conversation_id, user_id) = (conversation_id.to_string(), user_id.to_string());
        self.write(move |tx| {
            Ok(execute(
                tx,
                "DELETE FROM participants WHERE conversation_id = ?1 AND user_id = ?2",
                params![conversation_id, user_id],
            )? > 0)
        })
    }

    fn user(&self, id: &str) -> Pending<Option<UserRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let id = id.as_str();
            one(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"),
                id,
                user_row,
            )
        })
    }

    fn users(&self, query: &EntityQuery) -> Pending<Page<UserRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(installation_id) = &query.installation_id {
            conditions.push("installation_id = ?".into());
            values.push(installation_id.clone().into());
        }
        if let Some(conversation_id) = &query.conversation_id {
            conditions.push("id IN (SELECT user_id FROM participants WHERE conversation_id = ?)".into());
            values.push(conversation_id.clone().into());
        }
        tag_conditions("user", &query.tags, &mut conditions, &mut values);
        let query = query.clone();
        self.read(move |c| {
            let query = &query;
            sorted_page(
                c,
                &format!("SELECT {USER_COLUMNS} FROM users WHERE 1"),
                conditions,
                values,
                &query.page,
                query.sort,
                user_row,
            )
        })
    }

    fn insert_message(&self, message: &MessageRecord) -> Pending<()> {
        let message = message.clone();
        self.write(move |tx| insert_message_row(tx, &message))
    }

    fn insert_message_once(&self, message: &MessageRecord, key: &DedupeKey) -> Pending<(MessageRecord, bool)> {
        let (message, key) = (message.clone(), key.clone());
        self.write(move |tx| {
            if let Some(id) = recorded_under(tx, Kind::Message, &key)? {
                let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1");
                if let Some(first) = one(tx, &sql, id.as_str(), message_row)? {
                    return Ok((first, false));
                }
            }
            insert_message_row(tx, &message)?;
            remember(tx, Kind::Message, &key, &message.id, message.created_at)?;
            Ok((message.clone(), true))
        })
    }

    fn message(&self, id: &str) -> Pending<Option<MessageRecord>> {
        let id = id.to_owned();
        self.read(move |c| {
            let id = id.as_str();
            one(
                c,
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"),
                id,
                message_row,
            )
        })
    }

    fn update_message(&self, id: &str, tags: &TagChanges, payload: Option<&Value>) -> Pending<Option<MessageRecord>> {
        let now = now_ms();
        let (id, tags, payload) = (id.to_string(), tags.clone(), payload.cloned());
        self.write(move |tx| {
            let id = id.as_str();
            let found = tx
                .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = ?1"))?
                .query_row([id], message_row)
                .optional()?;
            let Some(mut message) = found else {
                return Ok(None);
            };
            edit_tags(tx, "message", id, &TagEdits::apply(&mut message.tags, &tags))?;
            if let Some(payload) = &payload {
                message.payload = payload.clone();
            }
            message.updated_at = now;
            execute(
                tx,
                "UPDATE messages SET tags = ?2, payload = ?3, updated_at = ?4 WHERE id = ?1",
                params![
                    id,
                    serde_json::to_string(&message.tags)?,
                    message.payload.to_string(),
                    now
                ],
            )?;
            Ok(Some(message))
        })
    }

    fn delete_message(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.write(move |tx| {
            let conversation_id: Option<String> = tx
                .prepare_cached("SELECT conversation_id FROM messages WHERE id = ?1")?
                .query_row([&id], |row| row.get(0))
                .optional()?;
            let Some(conversation_id) = conversation_id else {
                return Ok(false);
            };
            execute(tx, "DELETE FROM messages WHERE id = ?1", [&id])?;
            execute(tx, "DELETE FROM message_tags WHERE owner_id = ?1", [&id])?;
            execute(
                tx,
                "UPDATE conversations SET message_count = MAX(message_count - 1, 0) WHERE id = ?1",
                [&conversation_id],
            )?;
            Ok(true)
        })
    }

    fn messages(&self, query: &EntityQuery) -> Pending<Page<MessageRecord>> {
        let mut conditions = Vec::new();
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(conversation_id) = &query.conversation_id {
            conditions.push("conversation_id = ?".into());
            values.push(conversation_id.clone().into());
        }
        if let Some(installation_id) = &query.installation_id {
            conditions.push("installation_id = ?".into());
            values.push(installation_id.clone().into());
        }
        tag_conditions("message", &query.tags, &mut conditions, &mut values);
        let query = query.clone();
        self.read(move |c| {
            let query = &query;
            page(
                c,
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE 1"),
                conditions,
                values,
                &query.page,
                message_row,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::prelude::*;

    #[test]
    fn conversations_are_found_by_all_their_tags() {
        let store = SqliteStore::in_memory().unwrap();
        let tags: Tags = [("channelId".to_string(), "C1".to_string())].into();
        let (first, created) = store
            .get_or_create_conversation("inst_a", "chat", "channel", &tags)
            .wait()
            .unwrap();
        assert!(created);
        let (again, created) = store
            .get_or_create_conversation("inst_a", "chat", "channel", &tags)
            .wait()
            .unwrap();
        assert!(!created);
        assert_eq!(first.id, again.id);
        let (other_install, created) = store
            .get_or_create_conversation("inst_b", "chat", "channel", &tags)
            .wait()
            .unwrap();
        assert!(created);
        assert_ne!(other_install.id, first.id);
        let types: Vec<String> = store
            .outbox_after(0, 10)
            .wait()
            .unwrap()
            .into_iter()
            .map(|e| e.entry_type)
            .collect();
        assert_eq!(types, ["chat:channel:created", "chat:channel:created"]);
    }

    #[test]
    fn messages_count_on_their_conversation() {
        let store = SqliteStore::in_memory().unwrap();
        let (conversation, _) = store
            .get_or_create_conversation("inst_a", "chat", "channel", &Tags::new())
            .wait()
            .unwrap();
        let (user, _) = store
            .get_or_create_user(Some("inst_a"), &[("userId".into(), "U1".into())].into(), None, None)
            .wait()
            .unwrap();
        let now = now_ms();
        store
            .insert_message(&MessageRecord {
                id: "msg_1".into(),
                installation_id: "inst_a".into(),
                conversation_id: conversation.id.clone(),
                user_id: user.id.clone(),
                message_type: "text".into(),
                payload: json!({"text": "hi"}),
                direction: "incoming".into(),
                tags: [("messageId".to_string(), "m1".to_string())].into(),
                created_at: now,
                updated_at: now,
            })
            .wait()
            .unwrap();
        assert_eq!(
            store
                .conversation(&conversation.id)
                .wait()
                .unwrap()
                .unwrap()
                .message_count,
            1
        );
        let by_tag = store
            .messages(&EntityQuery {
                tags: [("messageId".to_string(), "m1".to_string())].into(),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(by_tag.items.len(), 1);
        assert_eq!(by_tag.items[0].payload, json!({"text": "hi"}));

        let changes: TagChanges = [
            ("messageId".to_string(), None),
            ("threadId".to_string(), Some("t1".to_string())),
        ]
        .into();
        let updated = store
            .update_message("msg_1", &changes, Some(&json!({"text": "edited"})))
            .wait()
            .unwrap()
            .unwrap();
        assert_eq!(updated.tags, [("threadId".to_string(), "t1".to_string())].into());
        assert_eq!(
            store.message("msg_1").wait().unwrap().unwrap().payload,
            json!({"text": "edited"})
        );
        let by_old_tag = store
            .messages(&EntityQuery {
                tags: [("messageId".to_string(), "m1".to_string())].into(),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert!(by_old_tag.items.is_empty(), "a removed tag no longer finds the message");
        let by_new_tag = store
            .messages(&EntityQuery {
                tags: [("threadId".to_string(), "t1".to_string())].into(),
                ..Default::default()
            })
            .wait()
            .unwrap();
        assert_eq!(by_new_tag.items.len(), 1);
        assert!(
            store
                .update_message("msg_nope", &changes, None)
                .wait()
                .unwrap()
                .is_none()
        );
    }
}
