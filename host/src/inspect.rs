//! `sluice inspect FILE.wasm`: checks a plugin against the contract this host speaks and
//! prints its definition (events, actions, channels, states, configuration schema), its
//! size, how long it takes to compile, and the source language its `producers` section
//! names.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Value, json};

use crate::runtime::contract::{ContractMismatch, PACKAGE, VERSION};
use crate::runtime::{CompiledPlugin, LoadError, PluginDefinition, Profiling, Runtime, Tiering};

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

/// What a component says about how it was made, from its `producers` custom sections.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Producers {
    /// Source languages (for example `C11`, `Rust`, `JavaScript`): the ones the component
    /// itself names, else the ones of its first core module. In components made by
    /// wit-component (`wasm-tools component new`, `jco new`, Rust's wasm32-wasip2 linker)
    /// the first module is the plugin's own code; the WASI adapter (written in Rust) and the
    /// shims come after it, so they do not count.
    pub languages: Vec<String>,
    /// The tools the component itself names as having made it (`processed-by`), with
    /// their versions.
    pub processed_by: Vec<String>,
}

impl Producers {
    /// Reads the `producers` sections of a component; what cannot be read is left out, as
    /// the sections are informational.
    pub fn read(bytes: &[u8]) -> Producers {
        use wasmparser::{Encoding, KnownCustom, Parser, Payload};
        let mut producers = Producers::default();
        let mut first_module_languages = Vec::new();
        // The encodings of the modules and components the parser is inside, outermost first.
        let mut nesting: Vec<Encoding> = Vec::new();
        let mut modules_seen = 0;
        for payload in Parser::new(0).parse_all(bytes) {
            let Ok(payload) = payload else { break };
            match payload {
                Payload::Version { encoding, .. } => {
                    if encoding == Encoding::Module {
                        modules_seen += 1;
                    }
                    nesting.push(encoding);
                }
                Payload::End(_) => {
                    nesting.pop();
                }
                Payload::CustomSection(section) => {
                    let KnownCustom::Producers(fields) = section.as_known() else {
                        continue;
                    };
                    let top_level = nesting.len() == 1;
                    let in_first_module = nesting.last() == Some(&Encoding::Module) && modules_seen == 1;
                    for field in fields.into_iter().flatten() {
                        let values = field
                            .values
                            .into_iter()
                            .flatten()
                            .map(|value| format!("{} {}", value.name, value.version).trim().to_string());
                        let list = match field.name {
                            "language" if top_level => &mut producers.languages,
                            "language" if in_first_module => &mut first_module_languages,
                            "processed-by" if top_level => &mut producers.processed_by,
                            _ => continue,
                        };
                        for value in values {
                            if !list.contains(&value) {
                                list.push(value);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        if producers.languages.is_empty() {
            producers.languages = first_module_languages;
        }
        producers
    }
}

/// A plugin that compiled and fits the contract, with what `sluice inspect` reports
/// besides its definition.
pub struct Inspected {
    pub plugin: Arc<CompiledPlugin>,
    /// How long compiling it to native code and checking it took here (no cache is used).
    pub compile_time: Duration,
    pub producers: Producers,
}

/// Compiles and checks `file`; on success returns the loaded plugin.
pub async fn load(file: &Path) -> Result<Inspected, InspectError> {
    let label = file.display().to_string();
    let bytes = std::fs::read(file).map_err(|error| InspectError::Unreadable {
        file: label.clone(),
        error,
    })?;
    let producers = Producers::read(&bytes);
    let runtime = Runtime::new(None, Profiling::Off, Tiering::Off).map_err(|error| InspectError::NotAComponent {
        file: label.clone(),
        reason: format!("{error:#}"),
    })?;
    let started = std::time::Instant::now();
    let plugin = runtime.load(bytes.into()).await.map_err(|error| match error {
        LoadError::NotAComponent(reason) => InspectError::NotAComponent { file: label, reason },
        LoadError::Contract(mismatch) => InspectError::Contract { file: label, mismatch },
        LoadError::Definition(reason) => InspectError::Definition { file: label, reason },
    })?;
    Ok(Inspected {
        plugin,
        compile_time: started.elapsed(),
        producers,
    })
}

/// The report as JSON (`sluice inspect --json`).
pub fn report_json(file: &Path, inspected: &Inspected) -> Value {
    let plugin = &inspected.plugin;
    json!({
        "file": file.display().to_string(),
        "size": plugin.size,
        "sha256": plugin.hash,
        "compileMs": inspected.compile_time.as_millis() as u64,
        "producers": {
            "languages": inspected.producers.languages,
            "processedBy": inspected.producers.processed_by,
        },
        "contract": { "package": PACKAGE, "version": VERSION, "matches": true },
        "definition": plugin.definition.to_json(),
    })
}

/// A size in bytes as people read it (`46.2 KiB`, `17.9 MiB`).
fn human_size(bytes: usize) -> String {
    const UNITS: [&str; 3] = ["KiB", "MiB", "GiB"];
    if bytes < 1024 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes as f64 / 1024.0;
    let mut unit = 0;
    while size >= 1024.0 && unit + 1 < UNITS.len() {
        size /= 1024.0;
        unit += 1;
    }
    format!("{size:.1} {}", UNITS[unit])
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
pub fn report_text(file: &Path, inspected: &Inspected) -> String {
    let plugin = &inspected.plugin;
    let about = About {
        size: plugin.size,
        hash: &plugin.hash,
        compile_time: inspected.compile_time,
        producers: &inspected.producers,
    };
    text_report(file, &about, &plugin.definition)
}

/// What the text report says about the file itself.
struct About<'a> {
    size: usize,
    hash: &'a str,
    compile_time: Duration,
    producers: &'a Producers,
}

fn text_report(file: &Path, about: &About, definition: &PluginDefinition) -> String {
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
    let _ = writeln!(
        out,
        "file: {} ({}, {} bytes, sha256 {})",
        file.display(),
        human_size(about.size),
        about.size,
        about.hash
    );
    let languages = &about.producers.languages;
    let _ = writeln!(
        out,
        "language: {}",
        if languages.is_empty() {
            "not recorded (the component's producers section names none)".to_string()
        } else {
            languages.join(", ")
        }
    );
    if !about.producers.processed_by.is_empty() {
        let _ = writeln!(out, "built with: {}", about.producers.processed_by.join(", "));
    }
    let _ = writeln!(out, "compiled in: {:.2} s", about.compile_time.as_secs_f64());
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
    let inspected = load(file).await?;
    let report = if as_json {
        serde_json::to_string_pretty(&report_json(file, &inspected)).context("cannot print the report")? + "\n"
    } else {
        report_text(file, &inspected)
    };
    print!("{report}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `producers` custom section: (field, [(name, version)]).
    fn producers_section(fields: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
        fn name(out: &mut Vec<u8>, text: &str) {
            out.push(text.len() as u8);
            out.extend_from_slice(text.as_bytes());
        }
        let mut payload = Vec::new();
        name(&mut payload, "producers");
        payload.push(fields.len() as u8);
        for (field, values) in fields {
            name(&mut payload, field);
            payload.push(values.len() as u8);
            for (value, version) in *values {
                name(&mut payload, value);
                name(&mut payload, version);
            }
        }
        section(0, &payload)
    }

    fn section(id: u8, payload: &[u8]) -> Vec<u8> {
        assert!(payload.len() < 128, "one-byte sizes only");
        let mut out = vec![id, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    /// A component holding `sections` (custom sections and core modules).
    fn component(sections: &[Vec<u8>]) -> Vec<u8> {
        let mut out = b"\0asm\x0d\0\x01\0".to_vec();
        sections.iter().for_each(|s| out.extend_from_slice(s));
        out
    }

    /// A core module section holding `sections`.
    fn module(sections: &[Vec<u8>]) -> Vec<u8> {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        sections.iter().for_each(|s| module.extend_from_slice(s));
        section(1, &module)
    }

    #[test]
    fn the_language_is_the_first_modules_when_the_component_names_none() {
        // As `jco new` or `wasm-tools component new` make it: the plugin's module, then the
        // WASI adapter (written in Rust).
        let bytes = component(&[
            module(&[producers_section(&[
                ("language", &[("C11", "")]),
                ("processed-by", &[("Debian clang", "14.0.6")]),
            ])]),
            module(&[producers_section(&[("language", &[("Rust", "")])])]),
            producers_section(&[("processed-by", &[("wit-component", "0.259.0")])]),
        ]);
        let producers = Producers::read(&bytes);
        assert_eq!(producers.languages, ["C11"]);
        assert_eq!(producers.processed_by, ["wit-component 0.259.0"]);
    }

    #[test]
    fn the_components_own_language_comes_first() {
        let bytes = component(&[
            module(&[producers_section(&[("language", &[("C11", ""), ("Rust", "")])])]),
            producers_section(&[
                ("processed-by", &[("ComponentizeJS", "0.23.0")]),
                ("language", &[("JavaScript", "")]),
            ]),
        ]);
        let producers = Producers::read(&bytes);
        assert_eq!(producers.languages, ["JavaScript"]);
        assert_eq!(producers.processed_by, ["ComponentizeJS 0.23.0"]);
    }

    #[test]
    fn no_producers_section_means_nothing_is_recorded() {
        let bytes = component(&[
            module(&[]),
            module(&[producers_section(&[("language", &[("Rust", "")])])]),
        ]);
        assert_eq!(Producers::read(&bytes), Producers::default());
        assert_eq!(Producers::read(b"not wasm"), Producers::default());
    }

    #[test]
    fn the_text_report_shows_every_part_of_the_definition() {
        let definition = PluginDefinition::example();
        let producers = Producers {
            languages: vec!["C11".into()],
            processed_by: vec!["wit-component 0.259.0".into()],
        };
        let about = About {
            size: 47_309,
            hash: "abc",
            compile_time: Duration::from_millis(420),
            producers: &producers,
        };
        let text = text_report(Path::new("chat.wasm"), &about, &definition);
        for expected in [
            "chat 1.2.3 (Chat)",
            "file: chat.wasm (46.2 KiB, 47309 bytes, sha256 abc)",
            "language: C11\nbuilt with: wit-component 0.259.0\ncompiled in: 0.42 s\n",
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
