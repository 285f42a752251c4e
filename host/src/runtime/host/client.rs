//! The `client` imports: events, state, conversations, users and messages, each scoped
//! to the calling installation (see [`Caller`]) and checked against its definition.

use super::convert::{declared_tags, invalid, parse_object, storage, wit_conversation, wit_message, wit_user};
use super::{HostState, wit};
use crate::ids::record_id;
use crate::runtime::bindings::client;
use crate::store::MessageRecord;
use crate::time::now_ms;

impl wit::Host for HostState {}

impl client::Host for HostState {
    async fn create_event(
        &mut self,
        event_type: String,
        payload: String,
        conversation_id: Option<String>,
        user_id: Option<String>,
        message_id: Option<String>,
    ) -> wasmtime::Result<Result<wit::Event, wit::Error>> {
        let caller = match self.caller() {
            Ok(caller) => caller,
            Err(error) => return Ok(Err(error)),
        };
        let outcome = caller
            .create_event(event_type, payload, conversation_id, user_id, message_id)
            .await;
        if let Ok(event) = &outcome {
            self.created("event", &event.id);
        }
        Ok(outcome)
    }

    async fn get_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
    ) -> wasmtime::Result<Result<Option<String>, wit::Error>> {
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

    async fn set_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
        payload: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
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

    async fn delete_state(
        &mut self,
        scope: wit::StateScope,
        id: String,
        name: String,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
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

    async fn get_or_create_conversation(
        &mut self,
        channel: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::Conversation, wit::Error>> {
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

    async fn get_conversation(&mut self, id: String) -> wasmtime::Result<Result<wit::Conversation, wit::Error>> {
        let caller = match self.caller() {
            Ok(caller) => caller,
            Err(error) => return Ok(Err(error)),
        };
        let outcome = async { Ok(wit_conversation(&caller.own_conversation(&id).await?)) };
        Ok(outcome.await)
    }

    async fn get_or_create_user(
        &mut self,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::User, wit::Error>> {
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

    async fn get_user(&mut self, id: String) -> wasmtime::Result<Result<wit::User, wit::Error>> {
        let caller = match self.caller() {
            Ok(caller) => caller,
            Err(error) => return Ok(Err(error)),
        };
        let outcome = async { Ok(wit_user(&caller.own_user(&id).await?)) };
        Ok(outcome.await)
    }

    async fn create_message(
        &mut self,
        conversation_id: String,
        user_id: String,
        message_type: String,
        payload: String,
        tags: Vec<(String, String)>,
    ) -> wasmtime::Result<Result<wit::Message, wit::Error>> {
        let caller = match self.caller() {
            Ok(caller) => caller,
            Err(error) => return Ok(Err(error)),
        };
        let outcome = async {
            let conversation = caller.own_conversation(&conversation_id).await?;
            caller.own_user(&user_id).await?;
            let Some(channel) = caller.definition.channels.get(&conversation.channel) else {
                return Err(invalid(format!(
                    "conversation {conversation_id} is in channel {:?}, which integration {} does not declare",
                    conversation.channel, caller.definition.name
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
                installation_id: caller.installation_id.clone(),
                conversation_id,
                user_id,
                message_type,
                payload,
                direction: "incoming".into(),
                tags,
                created_at: now,
                updated_at: now,
            };
            let answer = wit_message(&message);
            caller
                .store
                .insert_message(&message)
                .await
                .map_err(|e| storage(&caller.label(), "storing the message", e))?;
            Ok(answer)
        };
        let outcome = outcome.await;
        if let Ok(message) = &outcome {
            self.created("message", &message.id);
        }
        Ok(outcome)
    }

    async fn get_message(&mut self, id: String) -> wasmtime::Result<Result<wit::Message, wit::Error>> {
        let caller = match self.caller() {
            Ok(caller) => caller,
            Err(error) => return Ok(Err(error)),
        };
        let outcome = async { Ok(wit_message(&caller.own_message(&id).await?)) };
        Ok(outcome.await)
    }
}
