//! A plugin's `definition`, checked once at load time and kept with compiled JSON Schema
//! validators, so every later check (configuration, events, actions, messages, state)
//! is a lookup and a validation, never a parse.

use std::collections::HashMap;

use anyhow::{Context as _, bail};
use serde::Serialize;
use serde_json::Value;

use super::bindings::types as wit;
use crate::store::StateScope;

/// A compiled JSON Schema and its source.
pub struct Schema {
    source: Value,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl Schema {
    /// Compiles `text`; `what` names the schema in the error.
    pub fn compile(what: &str, text: &str) -> anyhow::Result<Schema> {
        let source: Value = serde_json::from_str(text).with_context(|| format!("{what} is not valid JSON"))?;
        let validator = jsonschema::validator_for(&source)
            .map_err(|error| anyhow::anyhow!("{what} is not a valid JSON Schema: {error}"))?;
        Ok(Schema { source, validator })
    }

    /// The schema as JSON.
    pub fn source(&self) -> &Value {
        &self.source
    }

    /// Checks `value`; the error lists every problem with the field it is about
    /// (for example `/order_id: "x" is not of type "integer"`).
    pub fn check(&self, value: &Value) -> Result<(), String> {
        let problems: Vec<String> = self
            .validator
            .iter_errors(value)
            .map(|error| {
                let path = error.instance_path().to_string();
                if path.is_empty() {
                    error.to_string()
                } else {
                    format!("{path}: {error}")
                }
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }
}

/// An action's schemas.
#[derive(Debug)]
pub struct ActionDefinition {
    pub title: String,
    pub description: String,
    pub input: Schema,
    pub output: Schema,
}

/// A channel's message types and tag names.
#[derive(Debug)]
pub struct ChannelDefinition {
    pub title: String,
    pub description: String,
    pub messages: HashMap<String, Schema>,
    pub conversation_tags: Vec<String>,
    pub message_tags: Vec<String>,
}

/// An event type.
#[derive(Debug)]
pub struct EventDefinition {
    pub title: String,
    pub description: String,
    pub schema: Schema,
}

/// A plugin's definition with compiled schemas.
#[derive(Debug)]
pub struct PluginDefinition {
    pub name: String,
    pub version: String,
    pub title: String,
    pub description: String,
    pub configuration: Option<Schema>,
    pub events: HashMap<String, EventDefinition>,
    pub actions: HashMap<String, ActionDefinition>,
    pub channels: HashMap<String, ChannelDefinition>,
    pub states: HashMap<(StateScope, String), Schema>,
    pub user_tags: Vec<String>,
}

/// Integration, event, action, channel and message names: a letter first, then letters,
/// digits, `_` or `-` (as Botpress identifiers, but allowing camelCase).
fn check_name(what: &str, name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name.len() <= 100;
    if !valid {
        bail!("{what} {name:?} is not a valid name: start with a letter, then use letters, digits, _ or -");
    }
    Ok(())
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a str>) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names {
        if !seen.insert(name) {
            bail!("{what} {name:?} is declared twice");
        }
    }
    Ok(())
}

impl PluginDefinition {
    /// A definition with nothing declared, for the call that reads the real one.
    pub fn empty() -> PluginDefinition {
        PluginDefinition {
            name: String::new(),
            version: String::new(),
            title: String::new(),
            description: String::new(),
            configuration: None,
            events: HashMap::new(),
            actions: HashMap::new(),
            channels: HashMap::new(),
            states: HashMap::new(),
            user_tags: Vec::new(),
        }
    }

    /// Checks the definition a plugin returned and compiles its schemas.
    pub(super) fn from_wit(definition: wit::Definition) -> anyhow::Result<PluginDefinition> {
        check_name("the integration name", &definition.name)?;
        if definition.name.chars().any(|c| c.is_ascii_uppercase()) {
            bail!("the integration name {:?} must be lower case", definition.name);
        }
        let configuration = definition
            .configuration_schema
            .as_deref()
            .map(|text| Schema::compile("the configuration schema", text))
            .transpose()?;

        unique("event", definition.events.iter().map(|e| e.name.as_str()))?;
        let mut events = HashMap::new();
        for event in definition.events {
            check_name("event", &event.name)?;
            let schema = Schema::compile(&format!("the schema of event {}", event.name), &event.schema)?;
            events.insert(
                event.name,
                EventDefinition {
                    title: event.title,
                    description: event.description,
                    schema,
                },
            );
        }

        unique("action", definition.actions.iter().map(|a| a.name.as_str()))?;
        let mut actions = HashMap::new();
        for action in definition.actions {
            check_name("action", &action.name)?;
            let input = Schema::compile(
                &format!("the input schema of action {}", action.name),
                &action.input_schema,
            )?;
            let output = Schema::compile(
                &format!("the output schema of action {}", action.name),
                &action.output_schema,
            )?;
            actions.insert(
                action.name,
                ActionDefinition {
                    title: action.title,
                    description: action.description,
                    input,
                    output,
                },
            );
        }

        unique("channel", definition.channels.iter().map(|c| c.name.as_str()))?;
        let mut channels = HashMap::new();
        for channel in definition.channels {
            check_name("channel", &channel.name)?;
            unique(
                &format!("message type of channel {}", channel.name),
                channel.messages.iter().map(|m| m.name.as_str()),
            )?;
            let mut messages = HashMap::new();
            for message in channel.messages {
                check_name("message type", &message.name)?;
                let what = format!(
                    "the schema of message type {} in channel {}",
                    message.name, channel.name
                );
                messages.insert(message.name, Schema::compile(&what, &message.schema)?);
            }
            channels.insert(
                channel.name,
                ChannelDefinition {
                    title: channel.title,
                    description: channel.description,
                    messages,
                    conversation_tags: channel.conversation_tags,
                    message_tags: channel.message_tags,
                },
            );
        }

        let mut states = HashMap::new();
        for state in definition.states {
            check_name("state", &state.name)?;
            let scope = scope_from_wit(state.scope);
            let schema = Schema::compile(&format!("the schema of state {}", state.name), &state.schema)?;
            if states.insert((scope, state.name.clone()), schema).is_some() {
                bail!("state {:?} is declared twice for scope {}", state.name, scope.as_str());
            }
        }

        Ok(PluginDefinition {
            name: definition.name,
            version: definition.version,
            title: definition.title,
            description: definition.description,
            configuration,
            events,
            actions,
            channels,
            states,
            user_tags: definition.user_tags,
        })
    }

    /// A definition that declares one of everything, for tests of what shows it.
    #[cfg(test)]
    pub(crate) fn example() -> PluginDefinition {
        PluginDefinition::from_wit(wit::Definition {
            name: "chat".into(),
            version: "1.2.3".into(),
            title: "Chat".into(),
            description: "Talks.".into(),
            configuration_schema: Some(r#"{"type":"object","properties":{"token":{"type":"string"}}}"#.into()),
            events: vec![wit::EventDefinition {
                name: "joined".into(),
                title: "Joined".into(),
                description: "Someone joined.".into(),
                schema: r#"{"type":"object"}"#.into(),
            }],
            actions: vec![wit::ActionDefinition {
                name: "kick".into(),
                title: "Kick".into(),
                description: "Removes someone.".into(),
                input_schema: r#"{"type":"object","properties":{"userId":{"type":"string"}}}"#.into(),
                output_schema: r#"{"type":"object"}"#.into(),
            }],
            channels: vec![wit::ChannelDefinition {
                name: "room".into(),
                title: "Room".into(),
                description: "A chat room.".into(),
                messages: vec![wit::MessageDefinition {
                    name: "text".into(),
                    schema: r#"{"type":"object"}"#.into(),
                }],
                conversation_tags: vec!["roomId".into()],
                message_tags: vec!["messageId".into()],
            }],
            states: vec![wit::StateDefinition {
                name: "cursor".into(),
                scope: wit::StateScope::Integration,
                schema: r#"{"type":"object"}"#.into(),
            }],
            user_tags: vec!["handle".into()],
        })
        .expect("the example definition is valid")
    }

    /// Checks an installation's configuration against the configuration schema; the
    /// error names each missing or wrong field.
    pub fn check_configuration(&self, configuration: &Value) -> Result<(), String> {
        match &self.configuration {
            Some(schema) => schema.check(configuration),
            None => Ok(()),
        }
    }

    /// Checks a state's payload against the schema declared for it; a state the plugin
    /// does not declare takes any payload. The error names each missing or wrong field.
    pub fn check_state(&self, scope: StateScope, name: &str, payload: &Value) -> Result<(), String> {
        match self.states.get(&(scope, name.to_string())) {
            Some(schema) => schema.check(payload),
            None => Ok(()),
        }
    }

    /// The definition as JSON, for `sluice inspect` and the admin API.
    pub fn to_json(&self) -> Value {
        fn sorted<T>(map: &HashMap<String, T>) -> Vec<(&String, &T)> {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            entries
        }
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Doc<'a> {
            name: &'a str,
            version: &'a str,
            title: &'a str,
            description: &'a str,
            configuration: Option<&'a Value>,
            events: serde_json::Map<String, Value>,
            actions: serde_json::Map<String, Value>,
            channels: serde_json::Map<String, Value>,
            states: serde_json::Map<String, Value>,
            user: Value,
        }
        let events = sorted(&self.events)
            .into_iter()
            .map(|(name, e)| {
                (
                    name.clone(),
                    serde_json::json!({"title": e.title, "description": e.description, "schema": e.schema.source()}),
                )
            })
            .collect();
        let actions = sorted(&self.actions)
            .into_iter()
            .map(|(name, a)| {
                (
                    name.clone(),
                    serde_json::json!({
                        "title": a.title, "description": a.description,
                        "input": {"schema": a.input.source()}, "output": {"schema": a.output.source()}
                    }),
                )
            })
            .collect();
        let channels = sorted(&self.channels)
            .into_iter()
            .map(|(name, c)| {
                let messages: serde_json::Map<String, Value> = sorted(&c.messages)
                    .into_iter()
                    .map(|(m, schema)| (m.clone(), serde_json::json!({"schema": schema.source()})))
                    .collect();
                (
                    name.clone(),
                    serde_json::json!({
                        "title": c.title, "description": c.description, "messages": messages,
                        "conversation": {"tags": c.conversation_tags}, "message": {"tags": c.message_tags}
                    }),
                )
            })
            .collect();
        let mut state_entries: Vec<_> = self.states.iter().collect();
        state_entries.sort_by(|a, b| a.0.1.cmp(&b.0.1));
        let states = state_entries
            .into_iter()
            .map(|((scope, name), schema)| {
                (
                    name.clone(),
                    serde_json::json!({"type": scope.as_str(), "schema": schema.source()}),
                )
            })
            .collect();
        serde_json::to_value(Doc {
            name: &self.name,
            version: &self.version,
            title: &self.title,
            description: &self.description,
            configuration: self.configuration.as_ref().map(|s| s.source()),
            events,
            actions,
            channels,
            states,
            user: serde_json::json!({"tags": self.user_tags}),
        })
        .unwrap_or_default()
    }
}

/// The store's scope for a WIT state scope.
pub(super) fn scope_from_wit(scope: wit::StateScope) -> StateScope {
    match scope {
        wit::StateScope::Integration => StateScope::Integration,
        wit::StateScope::Conversation => StateScope::Conversation,
        wit::StateScope::User => StateScope::User,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition() -> wit::Definition {
        wit::Definition {
            name: "shop".into(),
            version: "1.0.0".into(),
            title: "Shop".into(),
            description: String::new(),
            configuration_schema: Some(
                r#"{"type":"object","required":["shopName"],"properties":{"shopName":{"type":"string"}}}"#.into(),
            ),
            events: vec![wit::EventDefinition {
                name: "newOrderCreated".into(),
                title: String::new(),
                description: String::new(),
                schema: r#"{"type":"object","properties":{"order_id":{"type":"number"}},"required":["order_id"]}"#
                    .into(),
            }],
            actions: vec![],
            channels: vec![],
            states: vec![],
            user_tags: vec![],
        }
    }

    #[test]
    fn checks_name_the_field() {
        let definition = PluginDefinition::from_wit(definition()).unwrap();
        let problem = definition.check_configuration(&serde_json::json!({})).unwrap_err();
        assert!(problem.contains("shopName"), "{problem}");
        let problem = definition.events["newOrderCreated"]
            .schema
            .check(&serde_json::json!({"order_id": "x"}))
            .unwrap_err();
        assert!(problem.starts_with("/order_id"), "{problem}");
        assert!(
            definition.events["newOrderCreated"]
                .schema
                .check(&serde_json::json!({"order_id": 3}))
                .is_ok()
        );
    }

    #[test]
    fn refuses_bad_schemas_and_names() {
        let mut bad = definition();
        bad.events[0].schema = r#"{"type": 12}"#.into();
        let error = PluginDefinition::from_wit(bad).unwrap_err().to_string();
        assert!(error.contains("event newOrderCreated"), "{error}");

        let mut bad = definition();
        bad.name = "Shop Thing".into();
        assert!(PluginDefinition::from_wit(bad).is_err());

        let mut twice = definition();
        twice.events.push(twice.events[0].clone());
        assert!(
            PluginDefinition::from_wit(twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
    }
}
