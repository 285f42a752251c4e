//! Loading plugins: compiling a component (or taking its code from the cache, or from a
//! plugin already loaded), checking it against the contract and reading its definition;
//! for a plugin that starts on baseline code, compiling its optimised code in the
//! background and swapping it in.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use wasmtime::component::Component;

use super::code_cache::CodeCache;
use super::contract::ContractMismatch;
use super::definition::PluginDefinition;
use super::engine::{CodeSource, CodeTier, Engine, FirstCode, Profiling, Tiering};
use super::exports::PluginExports;
use super::plugin::CompiledPlugin;
use super::sandbox::{CodeSlot, PluginCode};
use crate::telemetry::metrics;

/// Why a file is not a plugin this host can run.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Not a WebAssembly component wasmtime can compile.
    #[error("not a valid WebAssembly component: {0}")]
    NotAComponent(String),
    /// A component, but built against another contract (or another version of it).
    #[error(transparent)]
    Contract(#[from] ContractMismatch),
    /// It matches the contract, but its `definition()` failed or is not usable.
    #[error("{0}")]
    Definition(String),
}

/// The plugin runtime of a host: one engine, and every plugin loaded on it.
pub struct Runtime {
    engine: Arc<Engine>,
    /// The plugins in use, by SHA-256: every copy loaded, so that the code stays
    /// shareable as long as any installation still uses it.
    loaded: Mutex<HashMap<String, Vec<Weak<CompiledPlugin>>>>,
}

impl Runtime {
    /// Starts the engines. With a `cache`, optimised code is kept there and reused on the
    /// next start (see [`Engine::new`]); `tiering` says whether large plugins serve on
    /// baseline code first.
    pub fn new(cache: Option<CodeCache>, profiling: Profiling, tiering: Tiering) -> anyhow::Result<Runtime> {
        Ok(Runtime {
            engine: Arc::new(Engine::new(cache, profiling, tiering)?),
            loaded: Mutex::default(),
        })
    }

    /// The SHA-256 of a plugin file, hex encoded.
    pub fn content_hash(bytes: &[u8]) -> String {
        Engine::content_hash(bytes)
    }

    /// Compiles `bytes` (or takes them from the cache, or shares the code of the same
    /// plugin already loaded), links them against the contract and reads the plugin's
    /// definition. The error says what is wrong with the file. A plugin loaded on
    /// baseline code has its optimised code compiled in the background.
    pub async fn load(&self, bytes: Arc<[u8]>) -> Result<Arc<CompiledPlugin>, LoadError> {
        let hashed = bytes.clone();
        let hash = tokio::task::spawn_blocking(move || Engine::content_hash(&hashed))
            .await
            .map_err(|error| LoadError::NotAComponent(format!("the hashing thread failed: {error}")))?;
        self.load_hashed(bytes, hash).await
    }

    /// [`Runtime::load`] for bytes whose SHA-256 (hex) is already known.
    pub async fn load_hashed(&self, bytes: Arc<[u8]>, hash: String) -> Result<Arc<CompiledPlugin>, LoadError> {
        if let Some(plugin) = self.already_loaded(&hash) {
            metrics().plugin_loaded(CodeSource::Shared.as_str(), None);
            return Ok(plugin);
        }
        let loaded = self.compile_and_prepare(bytes, hash).await;
        if loaded.is_err() {
            metrics().plugin_load_failed();
        }
        loaded
    }

    async fn compile_and_prepare(&self, bytes: Arc<[u8]>, hash: String) -> Result<Arc<CompiledPlugin>, LoadError> {
        let engine = self.engine.clone();
        let compile_hash = hash.clone();
        let size = bytes.len();
        let started = Instant::now();
        let compiled = bytes.clone();
        let first = tokio::task::spawn_blocking(move || engine.first_code(&compiled, &compile_hash))
            .await
            .map_err(|error| LoadError::NotAComponent(format!("the compiler thread failed: {error}")))?
            .map_err(|error| LoadError::NotAComponent(format!("{error:#}")))?;
        let (code_source, tier) = (first.source, first.tier);
        let compiled_in = (code_source == CodeSource::Compiled).then(|| started.elapsed());
        let plugin = self.prepare(first, hash.clone(), size).await?;
        metrics().plugin_loaded(code_source.as_str(), compiled_in);
        if tier == CodeTier::Baseline && self.engine.optimises_later() {
            self.optimise_in_background(&plugin, bytes);
        }
        self.remember_loaded(hash, &plugin);
        Ok(plugin)
    }

    /// Compiles the plugin's optimised code on a thread of its own (one plugin at a time)
    /// and puts it in the plugin's code slot, shared by every copy of the plugin: calls
    /// that start after that run on it. Nothing is compiled if no installation uses the
    /// plugin any more by the time its turn comes.
    fn optimise_in_background(&self, plugin: &Arc<CompiledPlugin>, bytes: Arc<[u8]>) {
        let slot = Arc::downgrade(&plugin.code);
        let engine = self.engine.clone();
        let hash = plugin.hash.clone();
        let name = plugin.definition.name.clone();
        let spawned = std::thread::Builder::new()
            .name("sluice-optimise".into())
            .spawn(move || {
                let _turn = engine.optimising_turn();
                if slot.strong_count() == 0 {
                    return;
                }
                let started = Instant::now();
                let optimised = engine.compile_optimised(&bytes, &hash).and_then(|component| {
                    Ok(PluginCode {
                        pre: engine.check_contract(&component)?,
                        exports: PluginExports::find(&component)?,
                        exports_checked: AtomicBool::new(false),
                        tier: CodeTier::Optimised,
                    })
                });
                let elapsed_ms = started.elapsed().as_millis() as u64;
                match (optimised, slot.upgrade()) {
                    (Ok(code), Some(slot)) => {
                        slot.replace(code);
                        tracing::info!(plugin = %name, plugin_sha256 = %hash, elapsed_ms, "optimised code ready: new calls run on it");
                    }
                    (Ok(_), None) => {}
                    (Err(error), _) => {
                        tracing::error!(plugin = %name, plugin_sha256 = %hash, error = %format!("{error:#}"), "cannot compile optimised code; the plugin keeps running on baseline code");
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::error!(plugin = %plugin.definition.name, %error, "cannot start compiling optimised code; the plugin keeps running on baseline code");
        }
    }

    /// The plugin with this SHA-256 if one is loaded: its code and definition, shared.
    fn already_loaded(&self, hash: &str) -> Option<Arc<CompiledPlugin>> {
        let plugin = {
            let loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            loaded.get(hash)?.iter().find_map(Weak::upgrade)?
        };
        let copy = Arc::new(CompiledPlugin {
            hash: plugin.hash.clone(),
            size: plugin.size,
            definition: plugin.definition.clone(),
            code_source: CodeSource::Shared,
            code: plugin.code.clone(),
            engine: plugin.engine.clone(),
        });
        self.remember_loaded(hash.to_string(), &copy);
        Some(copy)
    }

    /// Notes a loaded plugin (forgetting those no installation uses any more).
    fn remember_loaded(&self, hash: String, plugin: &Arc<CompiledPlugin>) {
        let mut loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for copies in loaded.values_mut() {
            copies.retain(|copy| copy.strong_count() > 0);
        }
        loaded.retain(|_, copies| !copies.is_empty());
        loaded.entry(hash).or_default().push(Arc::downgrade(plugin));
    }

    /// Checks a compiled component against the contract, links it and reads its
    /// definition.
    async fn prepare(&self, first: FirstCode, hash: String, size: usize) -> Result<Arc<CompiledPlugin>, LoadError> {
        let component: &Component = &first.component;
        let pre = self.engine.check_contract(component)?;
        let exports = PluginExports::find(component).map_err(|error| LoadError::Definition(format!("{error:#}")))?;
        let mut plugin = CompiledPlugin {
            hash,
            size,
            definition: Arc::new(PluginDefinition::empty()),
            code_source: first.source,
            code: Arc::new(CodeSlot::new(PluginCode {
                pre,
                exports,
                exports_checked: AtomicBool::new(false),
                tier: first.tier,
            })),
            engine: self.engine.clone(),
        };
        let definition = plugin
            .read_definition()
            .await
            .map_err(|failure| LoadError::Definition(format!("calling definition() failed: {failure}")))?;
        let definition = PluginDefinition::from_wit(definition)
            .map_err(|error| LoadError::Definition(format!("the plugin's definition is not valid: {error:#}")))?;
        plugin.definition = Arc::new(definition);
        Ok(Arc::new(plugin))
    }
}
