//! A plugin ready to run: its compiled component, the pre-linked instance template
//! every call starts from, and its checked definition.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use wasmtime::component::Component;

use super::bindings::IntegrationPre;
use super::definition::PluginDefinition;
use super::engine::{CodeSource, Runtime};
use super::exports::PluginExports;
use super::host::HostState;
use super::sandbox::{Invocation, Outcome};
use crate::config::Limits;

/// A compiled plugin. Cheap to share: calls only read it.
pub struct CompiledPlugin {
    /// SHA-256 of the plugin file.
    pub hash: String,
    /// Size of the plugin file in bytes.
    pub size: usize,
    pub(crate) pre: IntegrationPre<HostState>,
    /// Where its exports are; their types are checked on the first call.
    pub(crate) exports: PluginExports,
    pub(crate) exports_checked: AtomicBool,
    pub definition: Arc<PluginDefinition>,
    /// Whether the code came from the compiled-code cache.
    pub code_source: CodeSource,
}

impl std::fmt::Debug for CompiledPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledPlugin")
            .field("name", &self.definition.name)
            .field("hash", &self.hash)
            .finish()
    }
}

impl Runtime {
    /// Compiles `bytes` (or takes them from the cache, or shares the code of the same
    /// plugin already loaded), links them against the contract and reads the plugin's
    /// definition. The error says what is wrong with the file: not a component, a
    /// different contract, a bad definition.
    pub async fn load(self: &Arc<Self>, bytes: Arc<[u8]>) -> anyhow::Result<Arc<CompiledPlugin>> {
        let hashed = bytes.clone();
        let hash = tokio::task::spawn_blocking(move || Runtime::content_hash(&hashed)).await?;
        self.load_hashed(bytes, hash).await
    }

    /// [`Runtime::load`] for bytes whose SHA-256 (hex) is already known.
    pub async fn load_hashed(self: &Arc<Self>, bytes: Arc<[u8]>, hash: String) -> anyhow::Result<Arc<CompiledPlugin>> {
        if let Some(plugin) = self.already_loaded(&hash) {
            return Ok(plugin);
        }
        let runtime = self.clone();
        let compile_hash = hash.clone();
        let compile_bytes = bytes.clone();
        let (component, code_source) =
            tokio::task::spawn_blocking(move || runtime.compile(&compile_bytes, &compile_hash))
                .await
                .context("the compiler thread failed")?
                .context("not a valid WebAssembly component")?;
        let plugin = self.prepare(&component, hash.clone(), bytes.len(), code_source).await?;
        self.remember_loaded(hash, &plugin);
        Ok(plugin)
    }

    /// The plugin with this SHA-256 if one is loaded: its code and definition, shared.
    fn already_loaded(&self, hash: &str) -> Option<Arc<CompiledPlugin>> {
        let plugin = {
            let loaded = self.loaded.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            loaded.get(hash)?.iter().find_map(std::sync::Weak::upgrade)?
        };
        let copy = Arc::new(CompiledPlugin {
            hash: plugin.hash.clone(),
            size: plugin.size,
            pre: plugin.pre.clone(),
            exports: plugin.exports,
            exports_checked: AtomicBool::new(plugin.exports_checked.load(Ordering::Relaxed)),
            definition: plugin.definition.clone(),
            code_source: CodeSource::Shared,
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
    pub async fn prepare(
        &self,
        component: &Component,
        hash: String,
        size: usize,
        code_source: CodeSource,
    ) -> anyhow::Result<Arc<CompiledPlugin>> {
        let pre = self.check_contract(component)?;
        let exports = PluginExports::find(component)?;
        let probe = CompiledPlugin {
            hash: hash.clone(),
            size,
            pre: pre.clone(),
            exports,
            exports_checked: AtomicBool::new(false),
            definition: Arc::new(PluginDefinition::empty()),
            code_source,
        };
        let (outcome, _) = self
            .invoke(&probe, None, "load", &Limits::default(), Invocation::Definition)
            .await;
        let outcome = outcome.context("calling definition() failed")?;
        let Outcome::Definition(definition) = outcome else {
            unreachable!("definition() answers a definition")
        };
        let definition = PluginDefinition::from_wit(definition).context("the plugin's definition is not valid")?;
        Ok(Arc::new(CompiledPlugin {
            hash,
            size,
            pre,
            exports,
            exports_checked: AtomicBool::new(probe.exports_checked.into_inner()),
            definition: Arc::new(definition),
            code_source,
        }))
    }
}
