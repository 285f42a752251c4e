//! `sluice inspect FILE.wasm`: checks a plugin against the contract this host speaks and
//! prints its definition (events, actions, channels, states, configuration schema).

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::runtime::contract::{ContractMismatch, PACKAGE, VERSION};
use crate::runtime::{CompiledPlugin, LoadError, PluginDefinition, Profiling, Runtime};

/// Why a file is not a plugin this host can run.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("cannot read {file}: {error}")]
    Unreadable { file: String, error: std::io::Error },
    #[error("{file} is not a WebAssembly component: {reason}")]
    NotAComponent { file: String, reason: String },
    #[error("{file} does not match the contract {package}@{version}:\n{problems}", package = PACKAGE, version = VERSION, problems = bullets(.mismatch))]
    Contract { file: String, mismatch: ContractMismatch },
    #[error("{file} matches the contract, but its definition is not usable: {reason}")]
    Definition { file: String, reason: String },
}

fn bullets(mismatch: &ContractMismatch) -> String {
    let mut text = String::new();
    for problem in &mismatch.problems {
        let _ = writeln!(text, "  - {problem}");
    }
    text.push_str("Rebuild the plugin against wit/ of this sluice (sluice new scaffolds a project that does).");
    text
}

/// Compiles and checks `file`; on success returns the loaded plugin.
pub async fn load(file: &Path) -> Result<Arc<CompiledPlugin>, InspectError> {
    let label = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|error| InspectError::Unreadable {
        file: label.clone(),
        error,
    })?;
    let runtime = Runtime::new(None, Profiling::Off).map_err(|error| InspectError::NotAComponent {
        file: label.clone(),
        reason: format!("{error:#}"),
    })?;
    runtime.load(bytes.into()).await.map_err(|error| match error {
        LoadError::NotAComponent(reason) => InspectError::NotAComponent { file: label, reason },
        LoadError::Contract(mismatch) => InspectError::Contract { file: label, mismatch },
        LoadError::Definition(reason) => InspectError::Definition { file: label, reason },
    })
}

/// The report as JSON (`sluice inspect --json`).
pub fn report_json(file: &Path, plugin: &CompiledPlugin) -> Value {
    json!({
        "file": file.display().to_string(),
        "size": plugin.size,
        "sha256": plugin.hash,
        "contract": { "package": PACKAGE, "version": VERSION, "matches": true },
        "definition": plugin.definition.to_json(),
    })
}

fn indented(value: &Value, indent: &str) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    pretty.lines().collect::<Vec<_>>().join(&format!("\n{indent}"))
}

fn section(
    out: &mut String,
    title: &str,
    entries: &serde_json::Map<String, Value>,
    body: impl Fn(&mut String, &Value),
) {
    if entries.is_empty() {
        let _ = writeln!(out, "{title}: none");
        return;
    }
    let _ = writeln!(out, "{title} ({}):", entries.len());
    for (name, entry) in entries {
        let title = entry["title"].as_str().unwrap_or_default();
        let description = entry["description"].as_str().unwrap_or_default();
        let _ = writeln!(
            out,
            "  {name}: {title}{}",
            if description.is_empty() {
                String::new()
            } else {
                format!(" - {description}")
            }
        );
        body(out, entry);
    }
}

/// The report as text (`sluice inspect`).
pub fn report_text(file: &Path, plugin: &CompiledPlugin) -> String {
    text_report(file, plugin.size, &plugin.hash, &plugin.definition)
}

fn text_report(file: &Path, size: usize, hash: &str, definition: &PluginDefinition) -> String {
    let definition = definition.to_json();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} ({})",
        definition["name"].as_str().unwrap_or_default(),
        definition["version"].as_str().unwrap_or_default(),
        definition["title"].as_str().unwrap_or_default()
    );
    let _ = writeln!(out, "  {}", definition["description"].as_str().unwrap_or_default());
    let _ = writeln!(out, "file: {} ({size} bytes, sha256 {hash})", file.display());
    let _ = writeln!(out, "contract: {PACKAGE}@{VERSION}, matches");
    out.push('\n');
    match definition.get("configuration").filter(|c| !c.is_null()) {
        Some(schema) => {
            let _ = writeln!(out, "configuration schema:\n  {}", indented(schema, "  "));
        }
        None => {
            let _ = writeln!(out, "configuration: none");
        }
    }
    let empty = serde_json::Map::new();
    let map = |key: &str| definition[key].as_object().unwrap_or(&empty).clone();
    section(&mut out, "events", &map("events"), |out, e| {
        let _ = writeln!(out, "    payload schema: {}", indented(&e["schema"], "    "));
    });
    section(&mut out, "actions", &map("actions"), |out, a| {
        let _ = writeln!(out, "    input schema: {}", indented(&a["input"]["schema"], "    "));
        let _ = writeln!(out, "    output schema: {}", indented(&a["output"]["schema"], "    "));
    });
    section(&mut out, "channels", &map("channels"), |out, c| {
        let messages: Vec<&String> = c["messages"]
            .as_object()
            .map(|m| m.keys().collect())
            .unwrap_or_default();
        let tags = |v: &Value| {
            v.as_array()
                .map(|t| t.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "    messages: {}",
            messages.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(", ")
        );
        let _ = writeln!(out, "    conversation tags: {}", tags(&c["conversation"]["tags"]));
        let _ = writeln!(out, "    message tags: {}", tags(&c["message"]["tags"]));
    });
    section(&mut out, "states", &map("states"), |out, s| {
        let _ = writeln!(out, "    scope: {}", s["type"].as_str().unwrap_or_default());
        let _ = writeln!(out, "    schema: {}", indented(&s["schema"], "    "));
    });
    let user_tags: Vec<&str> = definition["user"]["tags"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "user tags: {}",
        if user_tags.is_empty() {
            "none".to_string()
        } else {
            user_tags.join(", ")
        }
    );
    out
}

/// Runs `sluice inspect`: prints the report, or fails with what is wrong.
pub async fn inspect(file: &Path, as_json: bool) -> anyhow::Result<()> {
    let plugin = load(file).await?;
    let report = if as_json {
        serde_json::to_string_pretty(&report_json(file, &plugin)).context("cannot print the report")? + "\n"
    } else {
        report_text(file, &plugin)
    };
    print!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_report_shows_every_part_of_the_definition() {
        let definition = PluginDefinition::example();
        let text = text_report(Path::new("chat.wasm"), 10, "abc", &definition);
        for expected in [
            "chat 1.2.3 (Chat)",
            "contract: sluice:integration@0.1.0, matches",
            "configuration schema:",
            "\"token\"",
            "events (1):\n  joined: Joined - Someone joined.",
            "actions (1):\n  kick: Kick - Removes someone.",
            "\"userId\"",
            "channels (1):\n  room: Room - A chat room.",
            "messages: text",
            "conversation tags: roomId",
            "message tags: messageId",
            "states (1):",
            "scope: integration",
            "user tags: handle",
        ] {
            assert!(text.contains(expected), "{expected:?} is missing from:\n{text}");
        }
    }
}
