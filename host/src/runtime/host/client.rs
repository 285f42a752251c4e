//! The `client` imports: events, state, conversations, users and messages, each scoped
//! to the calling installation (see [`Caller`]) and checked against its definition.

use tracing::Instrument as _;

use super::convert::{declared_tags, invalid, parse_object, storage, wit_conversation, wit_message, wit_user};
use super::import_span;
use super::{HostState, wit};
use crate::runtime::bindings::client;

impl wit::Host for HostState {}

impl HostState {
    /// Notes a newly recorded event in the call's report; answers what the plugin sees.
    fn note_event(&mut self, outcome: Result<(wit::Event, bool), wit::Error>) -> Result<wit::Event, wit::Error> {
        outcome.map(|(event, created)| {
            if created {
                self.created("event", &event.id);
            }
            event
        })
    }

    /// Notes a newly recorded message in the call's report; answers what the plugin sees.
    fn note_message(&mut self, outcome: Result<(wit::Message, bool), wit::Error>) -> Result<wit::Message, wit::Error> {
        outcome.map(|(message, created)| {
            if created {
                self.created("message", &message.id);
            }
            message
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
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = caller
                .create_event(event_type, payload, conversation_id, user_id, message_id, None)
                .await;
            Ok(self.note_event(outcome))
        }
        .instrument(import_span("client.create-event"))
        .await
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
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = caller
                .create_event(
                    event_type,
                    payload,
                    conversation_id,
                    user_id,
                    message_id,
                    Some(dedupe_key),
                )
                .await;
            Ok(self.note_event(outcome))
        }
        .instrument(import_span("client.create-event-once"))
        .await
    }

    async fn get_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async {
                let key = caller.state_key(scope, id, name).await?;
                let found = caller
                    .store
                    .state(&key)
                    .await
                    .map_err(|e| storage(&caller.label(), "reading state", e))?;
                Ok(found.map(|state| state.payload.to_string()))
            };
            Ok(outcome.await)
        }
        .instrument(import_span("client.get-state"))
        .await
    }

    async fn set_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
        payload: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async {
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
            };
            Ok(outcome.await)
        }
        .instrument(import_span("client.set-state"))
        .await
    }

    async fn delete_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async {
                let key = caller.state_key(scope, id, name).await?;
                caller
                    .store
                    .delete_state(&key)
                    .await
                    .map_err(|e| storage(&caller.label(), "deleting state", e))?;
                Ok(())
            };
            Ok(outcome.await)
        }
        .instrument(import_span("client.delete-state"))
        .await
    }

    async fn get_or_create_conversation(
        &mut self,
        channel: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::Conversation, wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async {
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
            };
            Ok(outcome.await.map(|(conversation, created)| {
                if created {
                    self.created("conversation", &conversation.id);
                }
                conversation
            }))
        }
        .instrument(import_span("client.get-or-create-conversation"))
        .await
    }

    async fn get_conversation(&mut self, id: String) -> wasmtime::Result<Result<wit::Conversation, wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async { Ok(wit_conversation(&caller.own_conversation(&id).await?)) };
            Ok(outcome.await)
        }
        .instrument(import_span("client.get-conversation"))
        .await
    }

    async fn get_or_create_user(
        &mut self,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::User, wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async {
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
            };
            Ok(outcome.await.map(|(user, created)| {
                if created {
                    self.created("user", &user.id);
                }
                user
            }))
        }
        .instrument(import_span("client.get-or-create-user"))
        .await
    }

    async fn get_user(&mut self, id: String) -> wasmtime::Result<Result<wit::User, wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async { Ok(wit_user(&caller.own_user(&id).await?)) };
            Ok(outcome.await)
        }
        .instrument(import_span("client.get-user"))
        .await
    }

    async fn create_message(
        &mut self,
        conversation_id: String,
        user_id: String,
        message_type: String,
        payload: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::Message, wit::Error>> {
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = caller
                .create_message(conversation_id, user_id, message_type, payload, tags, None)
                .await;
            Ok(self.note_message(outcome))
        }
        .instrument(import_span("client.create-message"))
        .await
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
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = caller
                .create_message(conversation_id, user_id, message_type, payload, tags, Some(dedupe_key))
                .await;
            Ok(self.note_message(outcome))
        }
        .instrument(import_span("client.create-message-once"))
        .await
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
        async move {
            let caller = match self.caller() {
                Ok(caller) => caller,
                Err(error) => return Ok(Err(error)),
            };
            let outcome = async { Ok(wit_message(&caller.own_message(&id).await?)) };
            Ok(outcome.await)
        }
        .instrument(import_span("client.get-message"))
        .await
    }
}
