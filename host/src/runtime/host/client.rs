//! The `client` imports: events, state, conversations, users and messages, each scoped
//! to the calling installation (see [`Caller`]) and checked against its definition.

use std::sync::Arc;

use tracing::Instrument as _;

use super::convert::{declared_tags, invalid, parse_object, storage, wit_conversation, wit_message, wit_user};
use super::import_span;
use super::{Caller, HostState, wit};
use crate::runtime::bindings::client;

impl wit::Host for HostState {}

/// Runs import `name` for `caller` (the calling installation, or the refusal of a call
/// made while the plugin loads) in the import's span.
async fn for_caller<T, F>(
    name: &'static str,
    caller: Result<Arc<Caller>, wit::Error>,
    import: impl FnOnce(Arc<Caller>) -> F,
) -> Result<T, wit::Error>
where
    F: Future<Output = Result<T, wit::Error>>,
{
    async move { import(caller?).await }.instrument(import_span(name)).await
}

impl HostState {
    /// Notes a record an import newly created (a `kind`, with its `id`) in the call's
    /// report; answers what the plugin sees.
    fn note_created<T>(
        &mut self,
        kind: &'static str,
        id: impl FnOnce(&T) -> &str,
        outcome: Result<(T, bool), wit::Error>,
    ) -> Result<T, wit::Error> {
        outcome.map(|(record, created)| {
            if created {
                self.created(kind, id(&record));
            }
            record
        })
    }
}

impl client::Host for HostState {
    async fn create_event(
        &mut self,
        event_type: String,
        payload: String,
        conversation_id: Option<String>,
        user_id: Option<String>,
        message_id: Option<String>,
    ) -> wasmtime::Result<Result<wit::Event, wit::Error>> {
        let outcome = for_caller("client.create-event", self.caller(), |caller| async move {
            caller
                .create_event(event_type, payload, conversation_id, user_id, message_id, None)
                .await
        })
        .await;
        Ok(self.note_created("event", |event| event.id.as_str(), outcome))
    }

    async fn create_event_once(
        &mut self,
        dedupe_key: String,
        event_type: String,
        payload: String,
        conversation_id: Option<String>,
        user_id: Option<String>,
        message_id: Option<String>,
    ) -> wasmtime::Result<Result<wit::Event, wit::Error>> {
        let outcome = for_caller("client.create-event-once", self.caller(), |caller| async move {
            caller
                .create_event(
                    event_type,
                    payload,
                    conversation_id,
                    user_id,
                    message_id,
                    Some(dedupe_key),
                )
                .await
        })
        .await;
        Ok(self.note_created("event", |event| event.id.as_str(), outcome))
    }

    async fn get_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, wit::Error>> {
        Ok(for_caller("client.get-state", self.caller(), |caller| async move {
            let key = caller.state_key(scope, id, name).await?;
            let found = caller
                .store
                .state(&key)
                .await
                .map_err(|e| storage(&caller.label(), "reading state", e))?;
            Ok(found.map(|state| state.payload.to_string()))
        })
        .await)
    }

    async fn set_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
        payload: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(for_caller("client.set-state", self.caller(), |caller| async move {
            let key = caller.state_key(scope, id, name).await?;
            let payload = parse_object(&format!("the payload of state {}", key.name), &payload)?;
            caller
                .definition
                .check_state(key.scope, &key.name, &payload)
                .map_err(|problems| invalid(format!("state {} does not match its schema: {problems}", key.name)))?;
            caller
                .store
                .put_state(&key, &payload)
                .await
                .map_err(|e| storage(&caller.label(), "storing state", e))?;
            Ok(())
        })
        .await)
    }

    async fn delete_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        Ok(for_caller("client.delete-state", self.caller(), |caller| async move {
            let key = caller.state_key(scope, id, name).await?;
            caller
                .store
                .delete_state(&key)
                .await
                .map_err(|e| storage(&caller.label(), "deleting state", e))?;
            Ok(())
        })
        .await)
    }

    async fn get_or_create_conversation(
        &mut self,
        channel: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::Conversation, wit::Error>> {
        let outcome = for_caller(
            "client.get-or-create-conversation",
            self.caller(),
            |caller| async move {
                let Some(declared) = caller.definition.channels.get(&channel) else {
                    return Err(invalid(format!(
                        "channel {channel:?} is not declared by integration {}",
                        caller.definition.name
                    )));
                };
                if tags.is_empty() {
                    return Err(invalid("a conversation is found by its tags; give at least one"));
                }
                let tags = declared_tags(
                    &format!("conversations of channel {channel}"),
                    tags,
                    &declared.conversation_tags,
                )?;
                let (installation_id, integration) = (caller.installation_id.clone(), caller.definition.name.clone());
                let (conversation, created) = caller
                    .store
                    .get_or_create_conversation(&installation_id, &integration, &channel, &tags)
                    .await
                    .map_err(|e| storage(&caller.label(), "storing the conversation", e))?;
                Ok((wit_conversation(&conversation), created))
            },
        )
        .await;
        Ok(self.note_created("conversation", |conversation| conversation.id.as_str(), outcome))
    }

    async fn get_conversation(&mut self, id: String) -> wasmtime::Result<Result<wit::Conversation, wit::Error>> {
        Ok(
            for_caller("client.get-conversation", self.caller(), |caller| async move {
                Ok(wit_conversation(&caller.own_conversation(&id).await?))
            })
            .await,
        )
    }

    async fn get_or_create_user(
        &mut self,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::User, wit::Error>> {
        let outcome = for_caller("client.get-or-create-user", self.caller(), |caller| async move {
            if tags.is_empty() {
                return Err(invalid("a user is found by its tags; give at least one"));
            }
            let tags = declared_tags("users", tags, &caller.definition.user_tags)?;
            let installation_id = caller.installation_id.clone();
            let (user, created) = caller
                .store
                .get_or_create_user(Some(&installation_id), &tags, None, None)
                .await
                .map_err(|e| storage(&caller.label(), "storing the user", e))?;
            Ok((wit_user(&user), created))
        })
        .await;
        Ok(self.note_created("user", |user| user.id.as_str(), outcome))
    }

    async fn get_user(&mut self, id: String) -> wasmtime::Result<Result<wit::User, wit::Error>> {
        Ok(for_caller("client.get-user", self.caller(), |caller| async move {
            Ok(wit_user(&caller.own_user(&id).await?))
        })
        .await)
    }

    async fn create_message(
        &mut self,
        conversation_id: String,
        user_id: String,
        message_type: String,
        payload: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::Message, wit::Error>> {
        let outcome = for_caller("client.create-message", self.caller(), |caller| async move {
            caller
                .create_message(conversation_id, user_id, message_type, payload, tags, None)
                .await
        })
        .await;
        Ok(self.note_created("message", |message| message.id.as_str(), outcome))
    }

    async fn create_message_once(
        &mut self,
        dedupe_key: String,
        conversation_id: String,
        user_id: String,
        message_type: String,
        payload: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::Message, wit::Error>> {
        let outcome = for_caller("client.create-message-once", self.caller(), |caller| async move {
            caller
                .create_message(conversation_id, user_id, message_type, payload, tags, Some(dedupe_key))
                .await
        })
        .await;
        Ok(self.note_created("message", |message| message.id.as_str(), outcome))
    }

    async fn retry_after(&mut self, seconds: u32) -> wasmtime::Result<()> {
        async move {
            self.retry_after = Some(seconds);
            Ok(())
        }
        .instrument(import_span("client.retry-after"))
        .await
    }

    async fn get_message(&mut self, id: String) -> wasmtime::Result<Result<wit::Message, wit::Error>> {
        Ok(for_caller("client.get-message", self.caller(), |caller| async move {
            Ok(wit_message(&caller.own_message(&id).await?))
        })
        .await)
    }
}
