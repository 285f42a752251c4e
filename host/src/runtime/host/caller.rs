//! The installation a call runs for: what the imports need to scope and check, and the
//! checks themselves. Everything a plugin reaches through the imports is its own
//! installation's: another installation's conversations, users, messages and state
//! are "not found", never read or written.

use std::sync::Arc;

use super::convert::{error, invalid, not_found, parse_json, storage, wit_event};
use crate::ids::record_id;
use crate::runtime::bindings::types::{self as wit, ErrorKind};
use crate::runtime::definition::{PluginDefinition, scope_from_wit};
use crate::runtime::outbound::AllowList;
use crate::store::{ConversationRecord, EventRecord, MessageRecord, SharedStore, StateKey, StateScope, UserRecord};
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
    /// [`Caller::label`], built once: every call's state and log lines carry it.
    shared_label: Arc<str>,
    /// The installation's name, as metrics label what it does.
    pub installation_name: Arc<str>,
}

impl Caller {
    /// The scope of calls for installation `installation_id`, named `installation_name`
    /// in log lines.
    pub fn new(
        installation_id: String,
        installation_name: String,
        definition: Arc<PluginDefinition>,
        store: SharedStore,
        allow_list: AllowList,
    ) -> Caller {
        let shared_label = format!("{}/{}", definition.name, installation_name).into();
        Caller {
            installation_id,
            definition,
            store,
            allow_list,
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
    ) -> Result<wit::Event, wit::Error> {
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
        let event = wit_event(&record);
        self.store
            .insert_event(&record)
            .await
            .map_err(|e| storage(&self.label(), "storing the event", e))?;
        tracing::debug!(plugin = %self.label(), event_id = %event.id, event_type = %event.type_, "event recorded");
        Ok(event)
    }
}

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
        let caller = |id: &str| Caller::new(id.into(), id.into(), definition(), store.clone(), AllowList::default());
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
            mine.create_event(event_type.into(), payload.into(), conversation.cloned(), None, None)
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

        let event = create("chat:seen", r#"{"n":1}"#, None).await.unwrap();
        assert_eq!(event.type_, "chat:seen");
        let stored = mine.store.event(&event.id).await.unwrap().unwrap();
        assert_eq!(stored.installation_id.as_deref(), Some("inst_mine"));
        assert_eq!(stored.payload, json!({"n": 1}));
    }
}
