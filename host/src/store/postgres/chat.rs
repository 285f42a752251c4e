//! Conversations, users and messages ([`ChatStore`] for [`PostgresStore`]). New
//! conversations and messages are published to the outbox in the transaction that
//! records them.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::PostgresStore;
use super::dedupe::{Kind, recorded_under, remember};
use super::outbox::publish;
use super::rows::{
    CONVERSATION_COLUMNS, Conditions, MESSAGE_COLUMNS, USER_COLUMNS, conversation_row, edit_tags, execute, insert_tags,
    lock_key, message_row, page, query_opt, refs, sorted_page, user_row,
};
use crate::ids::record_id;
use crate::store::outbox::{conversation_data, message_data, printed};
use crate::store::{
    CONVERSATION_DELETION, ChatStore, ConversationRecord, DedupeKey, EntityQuery, MessageRecord, Page, Pending,
    TagChanges, TagEdits, Tags, USER_DELETION, UserChanges, UserRecord,
};
use crate::time::now_ms;

/// Makes a user a participant of a conversation, inside the caller's transaction.
pub(super) async fn add_participant_row<C: GenericClient>(
    tx: &C,
    conversation_id: &str,
    user_id: &str,
    now: i64,
) -> anyhow::Result<()> {
    execute(
        tx,
        "INSERT INTO participants (conversation_id, user_id, created_at) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING",
        &[&conversation_id, &user_id, &now],
    )
    .await?;
    Ok(())
}

/// Runs a deletion ([`CONVERSATION_DELETION`], [`USER_DELETION`]) of `id` in one
/// transaction; `false` when there was nothing to delete.
async fn delete_with(client: &mut deadpool_postgres::Object, statements: &[&str], id: &str) -> anyhow::Result<bool> {
    let tx = client.transaction().await?;
    let mut deleted = false;
    for (index, statement) in statements.iter().enumerate() {
        let count = execute(&tx, &statement.replace("{id}", "$1"), &[&id]).await?;
        if index == 0 {
            deleted = count > 0;
        }
    }
    tx.commit().await?;
    Ok(deleted)
}

/// A user to create (`createUser`, `getOrCreateUser`), owned to move into a store task.
struct NewUser {
    installation_id: Option<String>,
    tags: Tags,
    name: Option<String>,
    picture_url: Option<String>,
}

impl NewUser {
    fn new(installation_id: Option<&str>, tags: &Tags, name: Option<&str>, picture_url: Option<&str>) -> NewUser {
        NewUser {
            installation_id: installation_id.map(str::to_string),
            tags: tags.clone(),
            name: name.map(str::to_string),
            picture_url: picture_url.map(str::to_string),
        }
    }

    /// Inserts the user with its tags, inside the caller's transaction.
    async fn insert<C: GenericClient>(&self, tx: &C) -> anyhow::Result<UserRecord> {
        let NewUser {
            installation_id,
            tags,
            name,
            picture_url,
        } = self;
        let user = UserRecord::new(
            installation_id.as_deref(),
            tags,
            name.as_deref(),
            picture_url.as_deref(),
            now_ms(),
        );
        execute(
            tx,
            "INSERT INTO users (id, installation_id, tags, name, picture_url, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)",
            &[
                &user.id,
                installation_id,
                &serde_json::to_string(tags)?,
                name,
                picture_url,
                &user.created_at,
            ],
        )
        .await?;
        insert_tags(tx, "user", &user.id, tags).await?;
        Ok(user)
    }
}

/// A conversation to create (`createConversation`, `getOrCreateConversation`), owned to
/// move into a store task.
struct NewConversation {
    installation_id: String,
    integration: String,
    channel: String,
    tags: Tags,
}

impl NewConversation {
    fn new(installation_id: &str, integration: &str, channel: &str, tags: &Tags) -> NewConversation {
        NewConversation {
            installation_id: installation_id.to_string(),
            integration: integration.to_string(),
            channel: channel.to_string(),
            tags: tags.clone(),
        }
    }

    /// Inserts and publishes the conversation ([`insert_conversation`]).
    async fn insert<C: GenericClient>(&self, tx: &C) -> anyhow::Result<ConversationRecord> {
        insert_conversation(tx, &self.installation_id, &self.integration, &self.channel, &self.tags).await
    }
}

/// Inserts a new conversation with its tags and publishes it as `chat:channel:created`,
/// inside the caller's transaction.
pub(super) async fn insert_conversation<C: GenericClient>(
    tx: &C,
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
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
        &[
            &conversation.id,
            &installation_id,
            &integration,
            &channel,
            &serde_json::to_string(tags)?,
            &now,
        ],
    )
    .await?;
    insert_tags(tx, "conversation", &conversation.id, tags).await?;
    publish(
        tx,
        "chat:channel:created",
        Some(installation_id),
        now,
        &conversation_data(&conversation),
    )
    .await?;
    Ok(conversation)
}

/// Records a message with its tags, counts it on its conversation and publishes it as
/// `chat:message:new`, inside the caller's transaction.
async fn insert_message_row<C: GenericClient>(tx: &C, message: &MessageRecord) -> anyhow::Result<()> {
    let payload = printed(&message.payload);
    execute(
        tx,
        "INSERT INTO messages (id, installation_id, conversation_id, user_id, type, payload, direction, tags, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            &message.id,
            &message.installation_id,
            &message.conversation_id,
            &message.user_id,
            &message.message_type,
            &payload.get(),
            &message.direction,
            &serde_json::to_string(&message.tags)?,
            &message.created_at,
            &message.updated_at,
        ],
    )
    .await?;
    insert_tags(tx, "message", &message.id, &message.tags).await?;
    execute(
        tx,
        "UPDATE conversations SET message_count = message_count + 1, updated_at = $2 WHERE id = $1",
        &[&message.conversation_id, &message.created_at],
    )
    .await?;
    add_participant_row(tx, &message.conversation_id, &message.user_id, message.created_at).await?;
    publish(
        tx,
        "chat:message:new",
        Some(&message.installation_id),
        message.created_at,
        &message_data(message, &payload),
    )
    .await?;
    Ok(())
}

impl ChatStore for PostgresStore {
    fn get_or_create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<(ConversationRecord, bool)> {
        let new = NewConversation::new(installation_id, integration, channel, tags);
        self.run_publishing(move |mut c| async move {
            let tx = c.transaction().await?;
            lock_key(&tx, &format!("conversation:{}:{}", new.installation_id, new.channel)).await?;
            let mut conditions = Conditions::default();
            conditions.equal("installation_id", new.installation_id.clone());
            conditions.equal("channel", new.channel.clone());
            conditions.tags("conversation", "conversations.id", &new.tags);
            let sql = format!(
                "SELECT {CONVERSATION_COLUMNS} FROM conversations{} ORDER BY seq LIMIT 1",
                conditions.where_clause()
            );
            if let Some(row) = query_opt(&tx, &sql, &refs(&conditions.params)).await? {
                return Ok((conversation_row(&row), false));
            }
            let conversation = new.insert(&tx).await?;
            tx.commit().await?;
            Ok((conversation, true))
        })
    }

    fn conversation(&self, id: &str) -> Pending<Option<ConversationRecord>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1");
            Ok(query_opt(&c, &sql, &[&id]).await?.as_ref().map(conversation_row))
        })
    }

    fn conversations(&self, query: &EntityQuery) -> Pending<Page<ConversationRecord>> {
        let mut conditions = Conditions::default();
        for (column, value) in [
            ("installation_id", &query.installation_id),
            ("channel", &query.channel),
            ("integration", &query.integration),
        ] {
            if let Some(value) = value {
                conditions.equal(column, value.clone());
            }
        }
        conditions.tags("conversation", "conversations.id", &query.tags);
        let (request, sort) = (query.page.clone(), query.sort);
        self.run(move |c| async move {
            sorted_page(
                &c,
                &format!("SELECT {CONVERSATION_COLUMNS} FROM conversations"),
                conditions,
                &request,
                sort,
                |row| Ok(conversation_row(row)),
            )
            .await
        })
    }

    fn get_or_create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<(UserRecord, bool)> {
        let new = NewUser::new(installation_id, tags, name, picture_url);
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            lock_key(&tx, &format!("user:{}", new.installation_id.as_deref().unwrap_or(""))).await?;
            let mut conditions = Conditions::default();
            let placeholder = conditions.bind(new.installation_id.clone());
            conditions
                .clauses
                .push(format!("installation_id IS NOT DISTINCT FROM {placeholder}"));
            conditions.tags("user", "users.id", &new.tags);
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users{} ORDER BY seq LIMIT 1",
                conditions.where_clause()
            );
            if let Some(row) = query_opt(&tx, &sql, &refs(&conditions.params)).await? {
                return Ok((user_row(&row), false));
            }
            let user = new.insert(&tx).await?;
            tx.commit().await?;
            Ok((user, true))
        })
    }

    fn user(&self, id: &str) -> Pending<Option<UserRecord>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
            Ok(query_opt(&c, &sql, &[&id]).await?.as_ref().map(user_row))
        })
    }

    fn users(&self, query: &EntityQuery) -> Pending<Page<UserRecord>> {
        let mut conditions = Conditions::default();
        if let Some(installation_id) = &query.installation_id {
            conditions.equal("installation_id", installation_id.clone());
        }
        if let Some(conversation_id) = &query.conversation_id {
            let placeholder = conditions.bind(conversation_id.clone());
            conditions.clauses.push(format!(
                "id IN (SELECT user_id FROM participants WHERE conversation_id = {placeholder})"
            ));
        }
        conditions.tags("user", "users.id", &query.tags);
        let (request, sort) = (query.page.clone(), query.sort);
        self.run(move |c| async move {
            sorted_page(
                &c,
                &format!("SELECT {USER_COLUMNS} FROM users"),
                conditions,
                &request,
                sort,
                |row| Ok(user_row(row)),
            )
            .await
        })
    }

    fn insert_message(&self, message: &MessageRecord) -> Pending<()> {
        let message = message.clone();
        self.run_publishing(move |mut c| async move {
            let tx = c.transaction().await?;
            insert_message_row(&tx, &message).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn insert_message_once(&self, message: &MessageRecord, key: &DedupeKey) -> Pending<(MessageRecord, bool)> {
        let (message, key) = (message.clone(), key.clone());
        self.run_publishing(move |mut c| async move {
            let tx = c.transaction().await?;
            if let Some(id) = recorded_under(&tx, Kind::Message, &key).await? {
                let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
                if let Some(first) = query_opt(&tx, &sql, &[&id]).await? {
                    return Ok((message_row(&first)?, false));
                }
            }
            insert_message_row(&tx, &message).await?;
            remember(&tx, Kind::Message, &key, &message.id, message.created_at).await?;
            tx.commit().await?;
            Ok((message, true))
        })
    }

    fn message(&self, id: &str) -> Pending<Option<MessageRecord>> {
        let id = id.to_owned();
        self.run(move |c| async move {
            let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1");
            query_opt(&c, &sql, &[&id]).await?.as_ref().map(message_row).transpose()
        })
    }

    fn update_message(&self, id: &str, tags: &TagChanges, payload: Option<&Value>) -> Pending<Option<MessageRecord>> {
        let now = now_ms();
        let (id, tags, payload) = (id.to_string(), tags.clone(), payload.cloned());
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 FOR UPDATE");
            let Some(row) = query_opt(&tx, &sql, &[&id]).await? else {
                return Ok(None);
            };
            let mut message = message_row(&row)?;
            edit_tags(&tx, "message", &id, &TagEdits::apply(&mut message.tags, &tags)).await?;
            if let Some(payload) = payload {
                message.payload = payload;
            }
            message.updated_at = now;
            execute(
                &tx,
                "UPDATE messages SET tags = $2, payload = $3, updated_at = $4 WHERE id = $1",
                &[
                    &id,
                    &serde_json::to_string(&message.tags)?,
                    &message.payload.to_string(),
                    &now,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(message))
        })
    }

    fn messages(&self, query: &EntityQuery) -> Pending<Page<MessageRecord>> {
        let mut conditions = Conditions::default();
        if let Some(conversation_id) = &query.conversation_id {
            conditions.equal("conversation_id", conversation_id.clone());
        }
        if let Some(installation_id) = &query.installation_id {
            conditions.equal("installation_id", installation_id.clone());
        }
        conditions.tags("message", "messages.id", &query.tags);
        let request = query.page.clone();
        self.run(move |c| async move {
            page(
                &c,
                &format!("SELECT {MESSAGE_COLUMNS} FROM messages"),
                conditions,
                &request,
                message_row,
            )
            .await
        })
    }

    fn create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<ConversationRecord> {
        let new = NewConversation::new(installation_id, integration, channel, tags);
        self.run_publishing(move |mut c| async move {
            let tx = c.transaction().await?;
            let conversation = new.insert(&tx).await?;
            tx.commit().await?;
            Ok(conversation)
        })
    }

    fn update_conversation(&self, id: &str, tags: &TagChanges) -> Pending<Option<ConversationRecord>> {
        let now = now_ms();
        let (id, tags) = (id.to_string(), tags.clone());
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let sql = format!("SELECT {CONVERSATION_COLUMNS} FROM conversations WHERE id = $1 FOR UPDATE");
            let Some(row) = query_opt(&tx, &sql, &[&id]).await? else {
                return Ok(None);
            };
            let mut conversation = conversation_row(&row);
            edit_tags(
                &tx,
                "conversation",
                &id,
                &TagEdits::apply(&mut conversation.tags, &tags),
            )
            .await?;
            conversation.updated_at = now;
            execute(
                &tx,
                "UPDATE conversations SET tags = $2, updated_at = $3 WHERE id = $1",
                &[&id, &serde_json::to_string(&conversation.tags)?, &now],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(conversation))
        })
    }

    fn delete_conversation(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.run(move |mut c| async move { delete_with(&mut c, CONVERSATION_DELETION, &id).await })
    }

    fn create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<UserRecord> {
        let new = NewUser::new(installation_id, tags, name, picture_url);
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let user = new.insert(&tx).await?;
            tx.commit().await?;
            Ok(user)
        })
    }

    fn update_user(&self, id: &str, changes: &UserChanges) -> Pending<Option<UserRecord>> {
        let now = now_ms();
        let (id, changes) = (id.to_string(), changes.clone());
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 FOR UPDATE");
            let Some(row) = query_opt(&tx, &sql, &[&id]).await? else {
                return Ok(None);
            };
            let mut user = user_row(&row);
            edit_tags(&tx, "user", &id, &user.change(&changes, now)).await?;
            execute(
                &tx,
                "UPDATE users SET tags = $2, name = $3, picture_url = $4, updated_at = $5 WHERE id = $1",
                &[
                    &id,
                    &serde_json::to_string(&user.tags)?,
                    &user.name,
                    &user.picture_url,
                    &now,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Some(user))
        })
    }

    fn delete_user(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.run(move |mut c| async move { delete_with(&mut c, USER_DELETION, &id).await })
    }

    fn add_participant(&self, conversation_id: &str, user_id: &str) -> Pending<()> {
        let (conversation_id, user_id) = (conversation_id.to_string(), user_id.to_string());
        self.run(move |c| async move { add_participant_row(&c, &conversation_id, &user_id, now_ms()).await })
    }

    fn participant(&self, conversation_id: &str, user_id: &str) -> Pending<Option<UserRecord>> {
        let (conversation_id, user_id) = (conversation_id.to_string(), user_id.to_string());
        self.run(move |c| async move {
            let sql = format!(
                "SELECT {USER_COLUMNS} FROM users WHERE id = $2
                 AND EXISTS (SELECT 1 FROM participants p WHERE p.conversation_id = $1 AND p.user_id = $2)"
            );
            Ok(query_opt(&c, &sql, &[&conversation_id, &user_id])
                .await?
                .as_ref()
                .map(user_row))
        })
    }

    fn remove_participant(&self, conversation_id: &str, user_id: &str) -> Pending<bool> {
        let (conversation_id, user_id) = (conversation_id.to_string(), user_id.to_string());
        self.run(move |c| async move {
            Ok(execute(
                &c,
                "DELETE FROM participants WHERE conversation_id = $1 AND user_id = $2",
                &[&conversation_id, &user_id],
            )
            .await?
                > 0)
        })
    }

    fn delete_message(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let Some(row) = query_opt(
                &tx,
                "DELETE FROM messages WHERE id = $1 RETURNING conversation_id",
                &[&id],
            )
            .await?
            else {
                return Ok(false);
            };
            let conversation_id: String = row.get(0);
            execute(&tx, "DELETE FROM message_tags WHERE owner_id = $1", &[&id]).await?;
            execute(
                &tx,
                "UPDATE conversations SET message_count = GREATEST(message_count - 1, 0) WHERE id = $1",
                &[&conversation_id],
            )
            .await?;
            tx.commit().await?;
            Ok(true)
        })
    }
}
