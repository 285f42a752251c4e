//! The state of one call (`HostState`, the `T` of `Store<T>`) and the host functions a
//! plugin imports: `client` (events, state, conversations, users, messages) and
//! `logger`. Every import is scoped to the installation the call runs for and checks
//! what the plugin hands over against the plugin's own definition.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::bindings::types::{self as wit, ErrorKind};
use super::bindings::{client, logger};
use super::definition::{PluginDefinition, scope_from_wit};
use super::outbound::{AllowList, OutboundPolicy};
use crate::ids::record_id;
use crate::store::{
    self, ConversationRecord, EventRecord, MessageRecord, SharedStore, StateKey, StateScope, Tags, UserRecord,
};
use crate::time::{iso8601, now_ms};

/// The installation a call runs for: what the imports need to scope and check.
pub struct Caller {
    /// Installation id (the plugin's `integration-id`).
    pub installation_id: String,
    /// Installation name (the plugin's `integration-alias`).
    pub installation_name: String,
    pub definition: Arc<PluginDefinition>,
    pub store: SharedStore,
    pub allow_list: AllowList,
    /// [`Caller::label`], built once: every call's state and log lines carry it.
    shared_label: Arc<str>,
}

impl Caller {
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
            installation_name,
            definition,
            store,
            allow_list,
            shared_label,
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

/// One line a plugin logged during a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// At most this many log lines are kept per call (all of them still go to the host log).
const MAX_KEPT_LOG_LINES: usize = 200;

/// A record a plugin created during a call (`event`, `conversation`, `user`, `message`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CreatedRecord {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: String,
}

/// At most this many created records are kept per call.
const MAX_KEPT_CREATED: usize = 1000;

/// The memory limit of one call.
pub struct MemoryLimiter {
    pub max_bytes: usize,
}

/// A plugin tried to grow its memory past its limit.
#[derive(Debug, thiserror::Error)]
#[error("the plugin tried to grow its memory to {desired} bytes, over its limit of {limit} bytes")]
pub struct MemoryLimitExceeded {
    pub limit: usize,
    pub desired: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            return Err(wasmtime::Error::new(MemoryLimitExceeded {
                limit: self.max_bytes,
                desired,
            }));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// The label of calls made while a plugin loads (no installation yet).
static LOADING_LABEL: std::sync::LazyLock<Arc<str>> = std::sync::LazyLock::new(|| "loading".into());

/// Everything one call can reach.
pub struct HostState {
    /// Built on the plugin's first WASI call: most calls make none, and a `WasiCtx`
    /// (random generators, clocks, streams) is the dearest part of a call's state.
    wasi: Option<WasiCtx>,
    http: WasiHttpCtx,
    outbound: OutboundPolicy,
    table: ResourceTable,
    pub(crate) memory: MemoryLimiter,
    /// `None` while the host reads `definition()`, which must not call the host.
    caller: Option<Arc<Caller>>,
    request_id: Arc<str>,
    pub(crate) label: Arc<str>,
    /// What the plugin logged, for the call's report.
    pub(crate) logs: Vec<LogLine>,
    /// What the plugin created, for the call's report.
    pub(crate) created: Vec<CreatedRecord>,
}

impl HostState {
    pub fn new(caller: Option<Arc<Caller>>, request_id: &str, max_memory_bytes: usize) -> HostState {
        let label: Arc<str> = match &caller {
            Some(caller) => caller.shared_label().clone(),
            None => Arc::clone(&LOADING_LABEL),
        };
        let request_id: Arc<str> = request_id.into();
        let allow_list = caller.as_ref().map(|c| c.allow_list.clone()).unwrap_or_default();
        HostState {
            wasi: None,
            http: WasiHttpCtx::new(),
            outbound: OutboundPolicy::new(allow_list, label.clone(), request_id.clone()),
            table: ResourceTable::new(),
            memory: MemoryLimiter {
                max_bytes: max_memory_bytes,
            },
            caller,
            request_id,
            label,
            logs: Vec::new(),
            created: Vec::new(),
        }
    }

    fn created(&mut self, kind: &'static str, id: &str) {
        if self.created.len() < MAX_KEPT_CREATED {
            self.created.push(CreatedRecord {
                kind,
                id: id.to_string(),
            });
        }
    }

    fn caller(&self) -> Result<Arc<Caller>, wit::Error> {
        self.caller
            .clone()
            .ok_or_else(|| error(ErrorKind::Forbidden, "definition() must not call the host"))
    }
}

/// WASI for one call: no preopened directories, no environment, no arguments, no
/// sockets, no name lookups. It is linked so guest toolchains work, but it grants
/// nothing; stdout and stderr go to the host log.
fn wasi_context(label: &Arc<str>, request_id: &Arc<str>) -> WasiCtx {
    WasiCtx::builder()
        .stdout(PluginOutput::new("stdout", label.clone(), request_id.clone()))
        .stderr(PluginOutput::new("stderr", label.clone(), request_id.clone()))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: self
                .wasi
                .get_or_insert_with(|| wasi_context(&self.label, &self.request_id)),
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
        }
    }
}

/// A plugin's stdout or stderr: each line goes to the host log, tagged with the plugin.
struct PluginOutput {
    stream: &'static str,
    label: Arc<str>,
    request_id: Arc<str>,
}

impl PluginOutput {
    fn new(stream: &'static str, label: Arc<str>, request_id: Arc<str>) -> PluginOutput {
        PluginOutput {
            stream,
            label,
            request_id,
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger {
            stream: self.stream,
            label: self.label.clone(),
            request_id: self.request_id.clone(),
            pending: Vec::new(),
        })
    }
}

/// Splits what a plugin writes into lines and logs each one.
struct LineLogger {
    stream: &'static str,
    label: Arc<str>,
    request_id: Arc<str>,
    pending: Vec<u8>,
}

/// Longest line kept whole; longer output is logged in pieces of this size.
const MAX_LINE: usize = 16 * 1024;

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        tracing::info!(target: "plugin", plugin = %self.label, request_id = %self.request_id, stream = self.stream, "{text}");
    }
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.pending.extend_from_slice(&bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        while self.pending.len() >= MAX_LINE {
            let piece: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            self.emit(&piece);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

fn error(kind: ErrorKind, message: impl Into<String>) -> wit::Error {
    wit::Error {
        kind,
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> wit::Error {
    error(ErrorKind::InvalidInput, message)
}

fn not_found(message: impl Into<String>) -> wit::Error {
    error(ErrorKind::NotFound, message)
}

/// A store failure: logged in full, reported to the plugin as `internal`.
fn storage(label: &str, what: &str, failure: anyhow::Error) -> wit::Error {
    tracing::error!(plugin = %label, error = %format!("{failure:#}"), "store failure while {what}");
    error(
        ErrorKind::Internal,
        format!("the host could not finish {what}; see the host log"),
    )
}

fn parse_json(what: &str, text: &str) -> Result<Value, wit::Error> {
    serde_json::from_str(text).map_err(|e| invalid(format!("{what} is not valid JSON: {e}")))
}

fn parse_object(what: &str, text: &str) -> Result<Value, wit::Error> {
    let value = parse_json(what, text)?;
    if !value.is_object() {
        return Err(invalid(format!("{what} must be a JSON object")));
    }
    Ok(value)
}

/// Checks tag names against the declared ones and turns them into [`Tags`].
fn declared_tags(what: &str, tags: Vec<(String, String)>, declared: &[String]) -> Result<Tags, wit::Error> {
    let mut checked = Tags::new();
    for (key, value) in tags {
        if !declared.iter().any(|d| d == &key) {
            let known = if declared.is_empty() {
                "none".to_string()
            } else {
                declared.join(", ")
            };
            return Err(invalid(format!(
                "tag {key:?} is not declared for {what} (declared: {known})"
            )));
        }
        checked.insert(key, value);
    }
    Ok(checked)
}

pub fn wit_tags(tags: &Tags) -> Vec<(String, String)> {
    tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub fn wit_event(event: &EventRecord) -> wit::Event {
    wit::Event {
        id: event.id.clone(),
        type_: event.event_type.clone(),
        payload: event.payload.to_string(),
        conversation_id: event.conversation_id.clone(),
        user_id: event.user_id.clone(),
        message_id: event.message_id.clone(),
        created_at: iso8601(event.created_at),
    }
}

pub fn wit_conversation(conversation: &ConversationRecord) -> wit::Conversation {
    wit::Conversation {
        id: conversation.id.clone(),
        channel: conversation.channel.clone(),
        integration: conversation.integration.clone(),
        tags: wit_tags(&conversation.tags),
        created_at: iso8601(conversation.created_at),
        updated_at: iso8601(conversation.updated_at),
    }
}

pub fn wit_user(user: &UserRecord) -> wit::User {
    wit::User {
        id: user.id.clone(),
        tags: wit_tags(&user.tags),
        name: user.name.clone(),
        picture_url: user.picture_url.clone(),
        created_at: iso8601(user.created_at),
        updated_at: iso8601(user.updated_at),
    }
}

pub fn wit_message(message: &MessageRecord) -> wit::Message {
    wit::Message {
        id: message.id.clone(),
        conversation_id: message.conversation_id.clone(),
        user_id: message.user_id.clone(),
        type_: message.message_type.clone(),
        payload: message.payload.to_string(),
        direction: if message.direction == "outgoing" {
            wit::Direction::Outgoing
        } else {
            wit::Direction::Incoming
        },
        tags: wit_tags(&message.tags),
        created_at: iso8601(message.created_at),
        updated_at: iso8601(message.updated_at),
    }
}

impl Caller {
    async fn own_conversation(&self, id: &str) -> Result<ConversationRecord, wit::Error> {
        let lookup = id.to_string();
        let found = store::blocking(&self.store, move |s| s.conversation(&lookup))
            .await
            .map_err(|e| storage(&self.label(), "reading a conversation", e))?;
        found
            .filter(|c| c.installation_id == self.installation_id)
            .ok_or_else(|| not_found(format!("this installation has no conversation {id}")))
    }

    async fn own_user(&self, id: &str) -> Result<UserRecord, wit::Error> {
        let lookup = id.to_string();
        let found = store::blocking(&self.store, move |s| s.user(&lookup))
            .await
            .map_err(|e| storage(&self.label(), "reading a user", e))?;
        found
            .filter(|u| u.installation_id.as_deref() == Some(self.installation_id.as_str()))
            .ok_or_else(|| not_found(format!("this installation has no user {id}")))
    }

    async fn own_message(&self, id: &str) -> Result<MessageRecord, wit::Error> {
        let lookup = id.to_string();
        let found = store::blocking(&self.store, move |s| s.message(&lookup))
            .await
            .map_err(|e| storage(&self.label(), "reading a message", e))?;
        found
            .filter(|m| m.installation_id == self.installation_id)
            .ok_or_else(|| not_found(format!("this installation has no message {id}")))
    }

    /// The store key for a plugin's state, after checking the plugin may use it.
    async fn state_key(&self, scope: wit::StateScope, id: String, name: String) -> Result<StateKey, wit::Error> {
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

    async fn create_event(
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
            let found = store::blocking(&caller.store, move |s| s.state(&key))
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

impl logger::Host for HostState {
    async fn log(&mut self, level: logger::Level, message: String) -> wasmtime::Result<()> {
        let (plugin, request_id) = (&self.label, &self.request_id);
        let level = match level {
            logger::Level::Debug => {
                tracing::debug!(target: "plugin", %plugin, %request_id, "{message}");
                "debug"
            }
            logger::Level::Info => {
                tracing::info!(target: "plugin", %plugin, %request_id, "{message}");
                "info"
            }
            logger::Level::Warn => {
                tracing::warn!(target: "plugin", %plugin, %request_id, "{message}");
                "warn"
            }
            logger::Level::Error => {
                tracing::error!(target: "plugin", %plugin, %request_id, "{message}");
                "error"
            }
        };
        if self.logs.len() < MAX_KEPT_LOG_LINES {
            self.logs.push(LogLine { level, message });
        }
        Ok(())
    }
}
