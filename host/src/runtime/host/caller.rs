//! The installation a call runs for: what the imports need to scope and check, and the
//! checks themselves. Everything a plugin reaches through the imports is its own
//! installation's: another installation's conversations, users, messages and state
//! are "not found", never read or written.

use std::sync::Arc;
use std::time::Duration;

use super::convert::{
    declared_tags, error, invalid, not_found, parse_json, parse_object, storage, wit_event, wit_message,
};
use crate::ids::record_id;
use crate::runtime::bindings::types::{self as wit, ErrorKind};
use crate::runtime::definition::{PluginDefinition, scope_from_wit};
use crate::runtime::outbound::{AllowList, OutboundClient};
use crate::store::{
    ConversationRecord, DedupeKey, EventRecord, MessageRecord, SharedStore, StateKey, StateScope, UserRecord,
};
use crate::time::now_ms;

/// The installation a call runs for: what the imports need to scope and check.
pub struct Caller {
    /// Installation id (the plugin's `integration-id`).
    pub installation_id: String,
    /// The plugin's definition, which what it hands over is checked against.
    pub definition: Arc<PluginDefinition>,
    /// Where what the plugin records is kept.
    pub store: SharedStore,
    /// The outside origins the plugin may call.
    pub allow_list: AllowList,
    /// The connections its calls to them share.
    pub outbound_client: OutboundClient,
    /// How long a dedupe key the plugin gives holds (`dedupe-retention-hours`).
    pub dedupe_retention: Duration,
    /// [`Caller::label`], built once: every call's state and log lines carry it.
    shared_label: Arc<str>,
    /// The installation's name, as metrics label what it does.
    pub installation_name: Arc<str>,
}

impl Caller {
    /// The scope of calls for installation `installation_id`, named `installation_name`
    /// in log lines; dedupe keys hold for `dedupe_retention`; outbound calls go through
    /// `outbound_client`.
    pub fn new(
        installation_id: String,
        installation_name: String,
        definition: Arc<PluginDefinition>,
        store: SharedStore,
        allow_list: AllowList,
        outbound_client: OutboundClient,
        dedupe_retention: Duration,
    ) -> Caller {
        let shared_label = format!("{}/{}", definition.name, installation_name).into();
        Caller {
            installation_id,
            definition,
            store,
            allow_list,
            outbound_client,
            dedupe_retention,
            shared_label,
            installation_name: installation_name.into(),
        }
    }

    /// `integration/installation` for log lines.
    pub fn label(&self) -> String {
        self.shared_label.to_string()
    }

    /// [`Caller::label`] without a copy.
    pub fn shared_label(&self) -> &Arc<str> {
        &self.shared_label
    }
}

impl Caller {
    pub(super) async fn own_conversation(&self, id: &str) -> Result<ConversationRecord, wit::Error> {
        let lookup = id.to_string();
        let found = self
            .store
            .conversation(&lookup)
            .await
            .map_err(|e| storage(&self.label(), "reading a conversation", e))?;
        found
            .filter(|c| c.installation_id == self.installation_id)
            .ok_or_else(|| not_found(format!("this installation has no conversation {id}")))
    }

    pub(super) async fn own_user(&self, id: &str) -> Result<UserRecord, wit::Error> {
        let lookup = id.to_string();
        let found = self
            .store
            .user(&lookup)
            .await
            .map_err(|e| storage(&self.label(), "reading a user", e))?;
        found
            .filter(|u| u.installation_id.as_deref() == Some(self.installation_id.as_str()))
            .ok_or_else(|| not_found(format!("this installation has no user {id}")))
    }

    pub(super) async fn own_message(&self, id: &str) -> Result<MessageRecord, wit::Error> {
        let lookup = id.to_string();
        let found = self
            .store
            .message(&lookup)
            .await
            .map_err(|e| storage(&self.label(), "reading a message", e))?;
        found
            .filter(|m| m.installation_id == self.installation_id)
            .ok_or_else(|| not_found(format!("this installation has no message {id}")))
    }

    /// The store key for a plugin's state, after checking the plugin may use it.
    pub(super) async fn state_key(
        &self,
        scope: wit::StateScope,
        id: String,
        name: String,
    ) -> Result<StateKey, wit::Error> {
        let scope = scope_from_wit(scope);
        match scope {
            StateScope::Integration if id != self.installation_id => {
                return Err(error(
                    ErrorKind::Forbidden,
                    format!(
                        "integration state belongs under this installation's own id {}, not {id}",
                        self.installation_id
                    ),
                ));
            }
            StateScope::Conversation => {
                self.own_conversation(&id).await?;
            }
            StateScope::User => {
                self.own_user(&id).await?;
            }
            _ => {}
        }
        if name.is_empty() {
            return Err(invalid("the state name is empty"));
        }
        Ok(StateKey {
            installation_id: self.installation_id.clone(),
            scope,
            owner_id: id,
            name,
        })
    }

    pub(super) async fn create_event(
        &self,
        event_type: String,
        payload: String,
        conversation_id: Option<String>,
        user_id: Option<String>,
        message_id: Option<String>,
        dedupe_key: Option<String>,
    ) -> Result<(wit::Event, bool), wit::Error> {
        let dedupe_key = dedupe_key.map(|key| self.dedupe_key(key)).transpose()?;
        let caller = self;
        let definition = &caller.definition;
        let prefix = format!("{}:", definition.name);
        let short = event_type.strip_prefix(&prefix).unwrap_or(&event_type);
        let Some(declared) = definition.events.get(short) else {
            let mut known: Vec<&str> = definition.events.keys().map(String::as_str).collect();
            known.sort();
            return Err(invalid(format!(
                "event type {event_type:?} is not declared by integration {} (declared: {})",
                definition.name,
                if known.is_empty() {
                    "none".into()
                } else {
                    known.join(", ")
                }
            )));
        };
        let payload = parse_json(&format!("the payload of event {short}"), &payload)?;
        declared.schema.check(&payload).map_err(|problems| {
            invalid(format!(
                "the payload of event {short} does not match its schema: {problems}"
            ))
        })?;
        if let Some(id) = &conversation_id {
            self.own_conversation(id).await?;
        }
        if let Some(id) = &user_id {
            self.own_user(id).await?;
        }
        if let Some(id) = &message_id {
            self.own_message(id).await?;
        }
        let record = EventRecord {
            id: record_id("evt"),
            installation_id: Some(self.installation_id.clone()),
            event_type: format!("{prefix}{short}"),
            payload,
            conversation_id,
            user_id,
            message_id,
            status: "processed".into(),
            failure_reason: None,
            created_at: now_ms(),
        };
        let (record, created) = match &dedupe_key {
            None => self.store.insert_event(&record).await.map(|()| (record, true)),
            Some(key) => self
                .store
                .insert_event_once(&record, key)
                .await
                .map(|first| first.map_or((record, true), |first| (first, false))),
        }
        .map_err(|e| storage(&self.label(), "storing the event", e))?;
        let event = wit_event(&record);
        if created {
            tracing::debug!(plugin = %self.label(), event_id = %event.id, event_type = %event.type_, "event recorded");
        } else {
            tracing::info!(plugin = %self.label(), event_id = %event.id, dedupe_key = ?dedupe_key.map(|k| k.key),
                "a retried delivery: the event was recorded before under this dedupe key");
        }
        Ok((event, created))
    }

    /// Records an incoming message, checked against the channel's declared types and tags;
    /// once per dedupe key when there is one.
    pub(super) async fn create_message(
        &self,
        conversation_id: String,
        user_id: String,
        message_type: String,
        payload: String,
        tags: Vec<(String, String)>,
        dedupe_key: Option<String>,
    ) -> Result<(wit::Message, bool), wit::Error> {
        let dedupe_key = dedupe_key.map(|key| self.dedupe_key(key)).transpose()?;
        let conversation = self.own_conversation(&conversation_id).await?;
        self.own_user(&user_id).await?;
        let Some(channel) = self.definition.channels.get(&conversation.channel) else {
            return Err(invalid(format!(
                "conversation {conversation_id} is in channel {:?}, which integration {} does not declare",
                conversation.channel, self.definition.name
            )));
        };
        let Some(schema) = channel.messages.get(&message_type) else {
            let mut known: Vec<&str> = channel.messages.keys().map(String::as_str).collect();
            known.sort();
            return Err(invalid(format!(
                "message type {message_type:?} is not declared for channel {} (declared: {})",
                conversation.channel,
                known.join(", ")
            )));
        };
        let payload = parse_object(&format!("the payload of the {message_type} message"), &payload)?;
        schema.check(&payload).map_err(|problems| {
            invalid(format!(
                "the {message_type} message does not match its schema: {problems}"
            ))
        })?;
        let tags = declared_tags(
            &format!("messages of channel {}", conversation.channel),
            tags,
            &channel.message_tags,
        )?;
        let now = now_ms();
        let message = MessageRecord {
            id: record_id("msg"),
            installation_id: self.installation_id.clone(),
            conversation_id,
            user_id,
            message_type,
            payload,
            direction: "incoming".into(),
            tags,
            created_at: now,
            updated_at: now,
        };
        let (message, created) = match &dedupe_key {
            None => self.store.insert_message(&message).await.map(|()| (message, true)),
            Some(key) => self.store.insert_message_once(&message, key).await,
        }
        .map_err(|e| storage(&self.label(), "storing the message", e))?;
        if !created {
            tracing::info!(plugin = %self.label(), message_id = %message.id, dedupe_key = ?dedupe_key.map(|k| k.key),
                "a retried delivery: the message was recorded before under this dedupe key");
        }
        Ok((wit_message(&message), created))
    }

    /// A dedupe key the plugin gave, checked, with the time before which keys expired.
    fn dedupe_key(&self, key: String) -> Result<DedupeKey, wit::Error> {
        if key.is_empty() || key.len() > MAX_DEDUPE_KEY_BYTES {
            return Err(invalid(format!(
                "a dedupe key is 1 to {MAX_DEDUPE_KEY_BYTES} bytes; this one has {}",
                key.len()
            )));
        }
        let retention = i64::try_from(self.dedupe_retention.as_millis()).unwrap_or(i64::MAX);
        Ok(DedupeKey {
            installation_id: self.installation_id.clone(),
            key,
            not_before: now_ms().saturating_sub(retention),
        })
    }
}

/// The longest dedupe key: platforms' delivery ids are far shorter.
const MAX_DEDUPE_KEY_BYTES: usize = 256;

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::{SqliteStore, Tags};

    fn definition() -> Arc<PluginDefinition> {
        let definition = PluginDefinition::from_wit(wit::Definition {
            name: "chat".into(),
            version: "1.0.0".into(),
            title: String::new(),
            description: String::new(),
            configuration_schema: None,
            events: vec![wit::EventDefinition {
                name: "seen".into(),
                title: String::new(),
                description: String::new(),
                schema: r#"{"type":"object","required":["n"],"properties":{"n":{"type":"integer"}}}"#.into(),
            }],
            actions: vec![],
            channels: vec![],
            states: vec![],
            user_tags: vec![],
        })
        .unwrap();
        Arc::new(definition)
    }

    /// Two installations of one plugin on one store, and a record of each kind owned by
    /// the second.
    struct World {
        mine: Caller,
        theirs: Caller,
        their_conversation: String,
        their_user: String,
        their_message: String,
    }

    async fn world() -> World {
        let store: SharedStore = Arc::new(SqliteStore::in_memory().unwrap());
        let caller = |id: &str| {
            Caller::new(
                id.into(),
                id.into(),
                definition(),
                store.clone(),
                AllowList::default(),
                OutboundClient::new(),
                Duration::from_secs(3600),
            )
        };
        let tags: Tags = [("channelId".to_string(), "C1".to_string())].into();
        let (conversation, _) = store
            .get_or_create_conversation("inst_theirs", "chat", "channel", &tags)
            .await
            .unwrap();
        let (user, _) = store
            .get_or_create_user(Some("inst_theirs"), &tags, None, None)
            .await
            .unwrap();
        let message = MessageRecord {
            id: record_id("msg"),
            installation_id: "inst_theirs".into(),
            conversation_id: conversation.id.clone(),
            user_id: user.id.clone(),
            message_type: "text".into(),
            payload: json!({"text": "hi"}),
            direction: "incoming".into(),
            tags: Tags::new(),
            created_at: now_ms(),
            updated_at: now_ms(),
        };
        store.insert_message(&message).await.unwrap();
        World {
            mine: caller("inst_mine"),
            theirs: caller("inst_theirs"),
            their_conversation: conversation.id,
            their_user: user.id,
            their_message: message.id,
        }
    }

    fn kind<T: std::fmt::Debug>(result: Result<T, wit::Error>) -> ErrorKind {
        result.expect_err("refused").kind
    }

    #[tokio::test]
    async fn another_installations_records_are_not_found() {
        let world = world().await;
        let mine = &world.mine;
        assert_eq!(
            kind(mine.own_conversation(&world.their_conversation).await),
            ErrorKind::NotFound
        );
        assert_eq!(kind(mine.own_user(&world.their_user).await), ErrorKind::NotFound);
        assert_eq!(kind(mine.own_message(&world.their_message).await), ErrorKind::NotFound);
        // Their owner reaches them.
        let theirs = &world.theirs;
        assert!(theirs.own_conversation(&world.their_conversation).await.is_ok());
        assert!(theirs.own_user(&world.their_user).await.is_ok());
        assert!(theirs.own_message(&world.their_message).await.is_ok());
    }

    #[tokio::test]
    async fn bot_users_belong_to_no_installation() {
        let world = world().await;
        let tags: Tags = [("role".to_string(), "bot".to_string())].into();
        let (bot_user, _) = world
            .mine
            .store
            .get_or_create_user(None, &tags, None, None)
            .await
            .unwrap();
        assert_eq!(kind(world.mine.own_user(&bot_user.id).await), ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn state_is_keyed_by_the_calling_installation_and_its_own_owners() {
        let world = world().await;
        let mine = &world.mine;
        let key = mine
            .state_key(wit::StateScope::Integration, "inst_mine".into(), "cursor".into())
            .await
            .unwrap();
        assert_eq!(key.installation_id, "inst_mine");
        assert_eq!(key.scope, StateScope::Integration);
        assert_eq!(
            kind(
                mine.state_key(wit::StateScope::Integration, "inst_theirs".into(), "cursor".into())
                    .await
            ),
            ErrorKind::Forbidden,
            "integration state lives under the caller's own id only"
        );
        assert_eq!(
            kind(
                mine.state_key(
                    wit::StateScope::Conversation,
                    world.their_conversation.clone(),
                    "s".into()
                )
                .await
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(
                mine.state_key(wit::StateScope::User, world.their_user.clone(), "s".into())
                    .await
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            kind(
                mine.state_key(wit::StateScope::Integration, "inst_mine".into(), String::new())
                    .await
            ),
            ErrorKind::InvalidInput
        );
        let theirs = world
            .theirs
            .state_key(
                wit::StateScope::Conversation,
                world.their_conversation.clone(),
                "s".into(),
            )
            .await
            .unwrap();
        assert_eq!(theirs.installation_id, "inst_theirs");
    }

    #[tokio::test]
    async fn events_are_checked_and_link_only_own_records() {
        let world = world().await;
        let mine = &world.mine;
        let create = |event_type: &str, payload: &str, conversation: Option<&String>| {
            mine.create_event(
                event_type.into(),
                payload.into(),
                conversation.cloned(),
                None,
                None,
                None,
            )
        };
        assert_eq!(kind(create("unknown", "{}", None).await), ErrorKind::InvalidInput);
        assert_eq!(
            kind(create("seen", r#"{"n":"x"}"#, None).await),
            ErrorKind::InvalidInput
        );
        assert_eq!(kind(create("seen", "not json", None).await), ErrorKind::InvalidInput);
        assert_eq!(
            kind(create("seen", r#"{"n":1}"#, Some(&world.their_conversation)).await),
            ErrorKind::NotFound,
            "an event cannot be linked to another installation's conversation"
        );
        let stored = mine.store.events(&Default::default()).await.unwrap();
        assert!(
            stored.items.is_empty(),
            "nothing refused was stored: {:?}",
            stored.items
        );

        let (event, created) = create("chat:seen", r#"{"n":1}"#, None).await.unwrap();
        assert!(created);
        assert_eq!(event.type_, "chat:seen");
        let stored = mine.store.event(&event.id).await.unwrap().unwrap();
        assert_eq!(stored.installation_id.as_deref(), Some("inst_mine"));
        assert_eq!(stored.payload, json!({"n": 1}));
    }

    #[tokio::test]
    async fn a_dedupe_key_records_once_per_installation_until_it_expires() {
        let world = world().await;
        async fn once(caller: &Caller, n: u32, key: &str) -> Result<(wit::Event, bool), wit::Error> {
            caller
                .create_event(
                    "seen".into(),
                    format!(r#"{{"n":{n}}}"#),
                    None,
                    None,
                    None,
                    Some(key.into()),
                )
                .await
        }
        let (first, created) = once(&world.mine, 1, "delivery-1").await.unwrap();
        assert!(created);
        let (again, created) = once(&world.mine, 2, "delivery-1").await.unwrap();
        assert!(!created, "the same key records nothing new");
        assert_eq!(again.id, first.id, "and answers the first event");
        assert_eq!(again.payload, first.payload);
        let (theirs, created) = once(&world.theirs, 3, "delivery-1").await.unwrap();
        assert!(created, "keys are per installation");
        assert_ne!(theirs.id, first.id);
        assert_eq!(kind(once(&world.mine, 4, "").await), ErrorKind::InvalidInput);
        assert_eq!(
            kind(once(&world.mine, 4, &"k".repeat(257)).await),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            world.mine.store.events(&Default::default()).await.unwrap().items.len(),
            2
        );

        // Keys hold for the installation's retention only.
        let forgetful = Caller::new(
            "inst_mine".into(),
            "inst_mine".into(),
            definition(),
            world.mine.store.clone(),
            AllowList::default(),
            OutboundClient::new(),
            Duration::ZERO,
        );
        std::thread::sleep(Duration::from_millis(2));
        let (later, created) = once(&forgetful, 5, "delivery-1").await.unwrap();
        assert!(created, "an expired key records anew");
        assert_ne!(later.id, first.id);
    }
}
