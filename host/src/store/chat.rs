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

/// What a list is ordered by: creation (the order records were made in) or last update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortField {
    #[default]
    CreatedAt,
    UpdatedAt,
}

/// Which way a list runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SortDirection {
    /// Newest (or most recently updated) first.
    #[default]
    Desc,
    Asc,
}

/// The order of a list of conversations or users (messages are always newest first).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sort {
    pub field: SortField,
    pub direction: SortDirection,
}

/// Changes to a user: tags (a `None` value removes the tag), and, when given, its name and
/// picture (`Some(None)` clears them).
#[derive(Debug, Clone, Default)]
pub struct UserChanges {
    pub tags: TagChanges,
    pub name: Option<Option<String>>,
    pub picture_url: Option<Option<String>>,
}

/// Filters for listing conversations, users or messages, newest first unless `sort`
/// says otherwise.
#[derive(Debug, Clone, Default)]
pub struct EntityQuery {
    pub installation_id: Option<String>,
    /// Messages: those of the conversation; users: its participants.
    pub conversation_id: Option<String>,
    /// Conversations only: the channel.
    pub channel: Option<String>,
    /// Conversations only: the integration's name.
    pub integration: Option<String>,
    pub tags: Tags,
    /// Conversations and users only.
    pub sort: Sort,
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
    /// Creates a conversation whatever conversations carry the same tags (publishing
    /// `chat:channel:created`).
    fn create_conversation(
        &self,
        installation_id: &str,
        integration: &str,
        channel: &str,
        tags: &Tags,
    ) -> Pending<ConversationRecord>;
    fn conversation(&self, id: &str) -> Pending<Option<ConversationRecord>>;
    fn conversations(&self, query: &EntityQuery) -> Pending<Page<ConversationRecord>>;
    /// Changes a conversation's tags (a `None` value removes the tag). `None` when there
    /// is no such conversation.
    fn update_conversation(&self, id: &str, tags: &TagChanges) -> Pending<Option<ConversationRecord>>;
    /// Deletes a conversation with its messages, participants and conversation state.
    /// `false` when there was no such conversation.
    fn delete_conversation(&self, id: &str) -> Pending<bool>;

    /// Finds the installation's user carrying all of `tags`, or creates it. `true` when
    /// it was created.
    fn get_or_create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<(UserRecord, bool)>;
    /// Creates a user whatever users carry the same tags.
    fn create_user(
        &self,
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
    ) -> Pending<UserRecord>;
    fn user(&self, id: &str) -> Pending<Option<UserRecord>>;
    /// Users, newest first unless sorted otherwise; with a conversation, its participants.
    fn users(&self, query: &EntityQuery) -> Pending<Page<UserRecord>>;
    /// Changes a user. `None` when there is no such user.
    fn update_user(&self, id: &str, changes: &UserChanges) -> Pending<Option<UserRecord>>;
    /// Deletes a user with their participations and user state (their messages stay).
    /// `false` when there was no such user.
    fn delete_user(&self, id: &str) -> Pending<bool>;

    /// Makes a user a participant of a conversation (whoever writes a message in it, or
    /// is a trigger event's contact, already is one). Adding one twice is no error.
    fn add_participant(&self, conversation_id: &str, user_id: &str) -> Pending<()>;
    /// The user, when they take part in the conversation.
    fn participant(&self, conversation_id: &str, user_id: &str) -> Pending<Option<UserRecord>>;
    /// `false` when the user was not a participant.
    fn remove_participant(&self, conversation_id: &str, user_id: &str) -> Pending<bool>;

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
    /// Deletes a message and uncounts it on its conversation. `false` when there was no
    /// such message.
    fn delete_message(&self, id: &str) -> Pending<bool>;
}

// What both SQL backends share: records made and changed the same way, and what a
// deletion takes with it.

impl UserRecord {
    /// A new user, made at `now`.
    pub(crate) fn new(
        installation_id: Option<&str>,
        tags: &Tags,
        name: Option<&str>,
        picture_url: Option<&str>,
        now: i64,
    ) -> Self {
        UserRecord {
            id: crate::ids::record_id("user"),
            installation_id: installation_id.map(str::to_string),
            tags: tags.clone(),
            name: name.map(str::to_string),
            picture_url: picture_url.map(str::to_string),
            created_at: now,
            updated_at: now,
        }
    }

    /// Applies `changes`, updated at `now`; answers what the `user_tags` rows need.
    pub(crate) fn change(&mut self, changes: &UserChanges, now: i64) -> TagEdits {
        if let Some(name) = &changes.name {
            self.name = name.clone();
        }
        if let Some(picture_url) = &changes.picture_url {
            self.picture_url = picture_url.clone();
        }
        self.updated_at = now;
        TagEdits::apply(&mut self.tags, &changes.tags)
    }
}

/// Tag changes applied to a record's tags: what its `<kind>_tags` rows need.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct TagEdits {
    /// Tags to insert or overwrite.
    pub(crate) set: Tags,
    /// Keys to delete.
    pub(crate) removed: Vec<String>,
}

impl TagEdits {
    /// Applies `changes` to `tags` (a `None` value removes the tag).
    pub(crate) fn apply(tags: &mut Tags, changes: &TagChanges) -> Self {
        let mut edits = TagEdits::default();
        for (key, value) in changes {
            match value {
                Some(value) => {
                    tags.insert(key.clone(), value.clone());
                    edits.set.insert(key.clone(), value.clone());
                }
                None => {
                    tags.remove(key);
                    edits.removed.push(key.clone());
                }
            }
        }
        edits
    }
}

/// What deleting a conversation deletes, each statement taking the conversation's id,
/// written `{id}` for each backend to spell as its placeholder. The first statement
/// deletes the conversation itself.
pub(crate) const CONVERSATION_DELETION: &[&str] = &[
    "DELETE FROM conversations WHERE id = {id}",
    "DELETE FROM conversation_tags WHERE owner_id = {id}",
    "DELETE FROM message_tags WHERE owner_id IN (SELECT id FROM messages WHERE conversation_id = {id})",
    "DELETE FROM messages WHERE conversation_id = {id}",
    "DELETE FROM participants WHERE conversation_id = {id}",
    "DELETE FROM conversation_contacts WHERE conversation_id = {id}",
    "DELETE FROM trigger_sessions WHERE conversation_id = {id}",
    "DELETE FROM states WHERE scope = 'conversation' AND owner_id = {id}",
];

/// What deleting a user deletes (their messages stay), like [`CONVERSATION_DELETION`].
pub(crate) const USER_DELETION: &[&str] = &[
    "DELETE FROM users WHERE id = {id}",
    "DELETE FROM user_tags WHERE owner_id = {id}",
    "DELETE FROM participants WHERE user_id = {id}",
    "DELETE FROM conversation_contacts WHERE user_id = {id}",
    "DELETE FROM states WHERE scope = 'user' AND owner_id = {id}",
];
