//! The chat: conversations in the channels of integrations, the users taking part, and
//! their messages, each found by its tags.

use serde_json::Value;

use super::{DedupeKey, Page, PageRequest, Pending, TagChanges, Tags};

/// A conversation in one channel of an integration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConversationRecord {
    pub id: String,
    pub installation_id: String,
    /// Name of the integration (from its definition).
    pub integration: String,
    pub channel: String,
    pub tags: Tags,
    pub message_count: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Someone taking part in conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    /// The installation the user belongs to (`None` for users the bot created).
    pub installation_id: Option<String>,
    pub tags: Tags,
    pub name: Option<String>,
    pub picture_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// One message in a conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageRecord {
    pub id: String,
    pub installation_id: String,
    pub conversation_id: String,
    pub user_id: String,
    pub message_type: String,
    pub payload: Value,
    /// `incoming` (platform to bot) or `outgoing` (bot to platform).
    pub direction: String,
    pub tags: Tags,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Filters for listing conversations, users or messages, newest first.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    pub installation_id: Option<String>,
    pub conversation_id: Option<String>,
    /// Conversations only: the channel.
    pub channel: Option<String>,
    /// Conversations only: the integration's name.
    pub integration: Option<String>,
    pub tags: Tags,
    pub page: PageRequest,
}

/// The chat part of the store. Every call answers with a [`Pending`].
pub trait ChatStore {
    /// Finds the installation's conversation in `channel` carrying all of `tags`, or
    /// creates it (publishing `chat:channel:created`). `true` when it was created.
    fn get_or_create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<(ConversationRecord, bool)>;
    fn conversation(&self, id: &str) -> Pending<Option<ConversationRecord>>;
    fn conversations(&self, query: &EntityQuery) -> Pending<Page<ConversationRecord>>;

    /// Finds the installation's user carrying all of `tags`, or creates it. `true` when
    /// it was created.
    fn get_or_create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<(UserRecord, bool)>;
    fn user(&self, id: &str) -> Pending<Option<UserRecord>>;
    /// Users, newest first; with a conversation, those who wrote in it and the contacts
    /// linked to it.
    fn users(&self, query: &EntityQuery) -> Pending<Page<UserRecord>>;

    /// Records a message (publishing `chat:message:new`) and counts it on its conversation.
    fn insert_message(&self, message: &MessageRecord) -> Pending<()>;
    /// Records `message` like [`ChatStore::insert_message`] unless the installation already
    /// recorded a message under `key` since `key.not_before`: then nothing is written and
    /// that first message is the answer. `true` when `message` was recorded. A key whose
    /// message is gone records anew.
    fn insert_message_once(&self, message: &MessageRecord, key: &DedupeKey) -> Pending<(MessageRecord, bool)>;
    fn message(&self, id: &str) -> Pending<Option<MessageRecord>>;
    /// Changes a message's tags (a `None` value removes the tag) and, when given, its
    /// payload. `None` when there is no such message.
    fn update_message(&self, id: &str, tags: &TagChanges, payload: Option<&Value>) -> Pending<Option<MessageRecord>>;
    fn messages(&self, query: &EntityQuery) -> Pending<Page<MessageRecord>>;
}
