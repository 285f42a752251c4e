//! The one wasmtime engine of a host: pooling allocator, epoch interruption driven by a
//! single ticker thread, the linker with every import a plugin may use, and a cache of
//! compiled code on disk ([`CodeCache`]). The bottom of the runtime: it knows nothing of
//! plugins.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Enabled, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, ProfilingStrategy};

use super::bindings::Integration;
use super::code_cache::CodeCache;
use super::host::HostState;
use crate::config::MAX_MEMORY_BYTES;

/// How often the epoch advances. A running plugin yields to the executor once per tick
/// and its deadline is checked then, so this is also the deadline's precision.
pub const EPOCH_TICK: Duration = Duration::from_millis(5);

/// How many plugin instances may be alive at once, across all plugins. More concurrent
/// calls get a 503 that asks to retry.
pub const MAX_CONCURRENT_INSTANCES: u32 = 1000;

/// How much of a pooled memory or table a call may have written and still have it reset
/// by copying (the rest is unmapped and faults back in on the next call).
const KEEP_RESIDENT_BYTES: usize = 2 << 20;

/// The wasmtime engine, the linker and the compiled-code cache.
pub struct Engine {
    pub(super) wasmtime: wasmtime::Engine,
    pub(super) linker: Linker<HostState>,
    cache: Option<CodeCache>,
    pub(super) ticker: EpochTicker,
}

/// Whether the plugins' compiled code is described for outside profilers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Profiling {
    /// Nothing is written for profilers.
    #[default]
    Off,
    /// `/tmp/perf-<pid>.map`, which `perf report` reads to name JIT code.
    PerfMap,
}

/// Where a component's compiled code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeSource {
    Compiled,
    Cache,
    /// The same plugin (same SHA-256) was already loaded, for another installation or an
    /// earlier version of this one: its code is shared, not loaded twice.
    Shared,
}

impl CodeSource {
    /// How logs and the admin API name it.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeSource::Compiled => "compiled",
            CodeSource::Cache => "cache",
            CodeSource::Shared => "shared",
        }
    }
}

impl Engine {
    /// Builds the engine. With a `cache`, compiled code is kept there, keyed by the
    /// plugin's SHA-256 and the engine's settings, and reused on the next start; with
    /// [`Profiling::PerfMap`] the plugins' code is described for a profiler.
    pub fn new(cache: Option<CodeCache>, profiling: Profiling) -> anyhow::Result<Engine> {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(MAX_CONCURRENT_INSTANCES)
            .total_core_instances(MAX_CONCURRENT_INSTANCES * 4)
            .total_memories(MAX_CONCURRENT_INSTANCES * 2)
            .total_tables(MAX_CONCURRENT_INSTANCES * 4)
            .total_stacks(MAX_CONCURRENT_INSTANCES)
            .max_memory_size(MAX_MEMORY_BYTES as usize)
            // Guests written in Python or JavaScript bring several core modules each.
            .max_core_instances_per_component(64)
            .max_memories_per_component(8)
            .max_tables_per_component(64)
            .table_elements(100_000)
            .max_core_instance_size(8 << 20)
            .max_component_instance_size(8 << 20)
            // A slot's memory and tables go back to their initial contents after every
            // call (nothing survives from one call to the next), but by copying back only
            // the pages the call wrote (found with the PAGEMAP_SCAN ioctl where the
            // kernel has it) instead of unmapping everything: the next call on the slot
            // takes no page faults and the host no TLB shootdowns.
            .pagemap_scan(Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT_BYTES)
            .table_keep_resident(KEEP_RESIDENT_BYTES);

        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        if profiling == Profiling::PerfMap {
            config.profiler(ProfilingStrategy::PerfMap);
        }
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasmtime engine")?;

        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Integration::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;

        let ticker = EpochTicker::start(engine.clone());
        Ok(Engine {
            wasmtime: engine,
            linker,
            cache,
            ticker,
        })
    }

    /// The SHA-256 of a plugin file, hex encoded.
    pub fn content_hash(bytes: &[u8]) -> String {
        hex::encode(Sha256::digest(bytes))
    }

    /// The name of a plugin's cache entry: its SHA-256 and this engine's settings.
    fn cache_entry_name(&self, content_hash: &str) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.wasmtime.precompile_compatibility_hash().hash(&mut hasher);
        let engine_hash = hasher.finish();
        format!("{content_hash}-{engine_hash:016x}")
    }

    /// Compiles a component, or loads its compiled code from the cache. Blocking and
    /// CPU-heavy: call it from a blocking thread.
    ///
    /// An entry that fails the cache's check (see [`CodeCache`]) is never deserialized:
    /// the refusal is logged, naming the file, and the component is compiled again and
    /// its entry rewritten.
    pub(super) fn compile(&self, bytes: &[u8], content_hash: &str) -> anyhow::Result<(Component, CodeSource)> {
        let name = self.cache_entry_name(content_hash);
        if let Some(cache) = &self.cache {
            let path = cache.path(&name);
            match self.load_cached(cache, &path, &name) {
                Ok(Some(component)) => return Ok((component, CodeSource::Cache)),
                Ok(None) => {}
                Err(reason) => {
                    tracing::warn!(file = %path.display(), reason = %format!("{reason:#}"), "compiled-code cache entry refused; compiling again");
                }
            }
        }
        let started = std::time::Instant::now();
        let component = Component::new(&self.wasmtime, bytes).map_err(|error| anyhow::anyhow!("{error:#}"))?;
        tracing::debug!(plugin_sha256 = %content_hash, elapsed_ms = started.elapsed().as_millis() as u64, "compiled");
        if let Some(cache) = &self.cache {
            let path = cache.path(&name);
            let written = component
                .serialize()
                .map_err(|error| anyhow::anyhow!("{error:#}"))
                .and_then(|code| Ok(cache.write(&path, &name, &code)?));
            if let Err(error) = written {
                tracing::warn!(file = %path.display(), error = %format!("{error:#}"), "cannot write the compiled-code cache");
            }
        }
        Ok((component, CodeSource::Compiled))
    }

    /// Reads a cache entry, checks it and only then hands the code to wasmtime.
    fn load_cached(&self, cache: &CodeCache, path: &std::path::Path, name: &str) -> anyhow::Result<Option<Component>> {
        let Some(code) = cache.read(path, name)? else {
            return Ok(None);
        };
        // SAFETY: the entry's MAC, keyed by a secret only sluice reads, matches its name
        // (this plugin and these engine settings) and its code: the code is what an engine
        // with these settings serialized for this plugin (wasmtime checks its header and
        // engine compatibility too).
        let component = unsafe { Component::deserialize(&self.wasmtime, code) }
            .map_err(|error| anyhow::anyhow!("wasmtime cannot load it: {error:#}"))?;
        Ok(Some(component))
    }
}

/// How long the ticker keeps ticking with no plugin call running before it parks.
const IDLE_BEFORE_PARKING: Duration = Duration::from_secs(1);

/// Advances the engine's epoch every [`EPOCH_TICK`] on one thread while plugin calls run,
/// until dropped. After [`IDLE_BEFORE_PARKING`] without a call it parks, so an idle host
/// does not wake 200 times a second; the next call wakes it. Under load it never parks,
/// so a call costs a few uncontended atomic operations and no wake-up.
pub(crate) struct EpochTicker {
    shared: Arc<TickerShared>,
    thread: std::thread::Thread,
}

#[derive(Default)]
struct TickerShared {
    stop: AtomicBool,
    /// Plugin calls in flight: the ticker never parks while one runs (its deadline needs
    /// the ticks).
    running: AtomicUsize,
    /// Whether a call started since the ticker last looked.
    recent: AtomicBool,
    parked: AtomicBool,
}

/// Held while a plugin call runs; see [`EpochTicker::call_running`].
pub(crate) struct RunningCall<'a>(&'a EpochTicker);

impl Drop for RunningCall<'_> {
    fn drop(&mut self) {
        self.0.shared.running.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EpochTicker {
    fn start(engine: wasmtime::Engine) -> EpochTicker {
        let shared = Arc::new(TickerShared::default());
        let ticker = shared.clone();
        let idle_ticks_before_parking = (IDLE_BEFORE_PARKING.as_millis() / EPOCH_TICK.as_millis()) as u32;
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                let mut idle_ticks = 0;
                while !ticker.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                    if ticker.running.load(Ordering::SeqCst) > 0 || ticker.recent.swap(false, Ordering::SeqCst) {
                        idle_ticks = 0;
                        continue;
                    }
                    idle_ticks += 1;
                    if idle_ticks < idle_ticks_before_parking {
                        continue;
                    }
                    ticker.parked.store(true, Ordering::SeqCst);
                    // A call that started after the look above either sees `parked` and
                    // unparks this thread, or is seen here.
                    if ticker.running.load(Ordering::SeqCst) == 0 && !ticker.stop.load(Ordering::SeqCst) {
                        std::thread::park();
                    }
                    ticker.parked.store(false, Ordering::SeqCst);
                    idle_ticks = 0;
                }
            })
            .expect("cannot start the epoch ticker thread");
        EpochTicker {
            shared,
            thread: thread.thread().clone(),
        }
    }

    /// Marks a plugin call as running until the guard is dropped, waking the ticker if
    /// it is parked.
    pub(crate) fn call_running(&self) -> RunningCall<'_> {
        self.shared.running.fetch_add(1, Ordering::SeqCst);
        if !self.shared.recent.load(Ordering::Relaxed) {
            self.shared.recent.store(true, Ordering::Relaxed);
        }
        if self.shared.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        RunningCall(self)
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + IDLE_BEFORE_PARKING * 10;
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(EPOCH_TICK);
        }
    }

    #[test]
    fn the_ticker_parks_when_idle_ticks_while_a_call_runs_and_parks_again_after() {
        let ticker = EpochTicker::start(wasmtime::Engine::default());
        let parked = || ticker.shared.parked.load(Ordering::SeqCst);
        wait_until("the idle ticker parks", parked);

        let call = ticker.call_running();
        wait_until("a call wakes the ticker", || !parked());
        std::thread::sleep(IDLE_BEFORE_PARKING + IDLE_BEFORE_PARKING / 2);
        assert!(
            !parked(),
            "a running call keeps the ticker ticking, however long it runs"
        );

        drop(call);
        wait_until("the ticker parks once the call is over", parked);
    }
}
