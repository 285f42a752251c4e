//! The wasmtime engines of a host: the optimising one (Cranelift, pooling allocator) and,
//! for large plugins, a baseline one (Winch) whose code serves while the optimised code is
//! compiled ([`Tiering`]); epoch interruption driven by a single ticker thread, the linker
//! with every import a plugin may use, and a cache of optimised code on disk
//! ([`CodeCache`]). The bottom of the runtime: it knows nothing of plugins.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{
    Config, Enabled, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig, ProfilingStrategy, Strategy,
};

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

/// Plugins at least this large are compiled by the baseline compiler first (with
/// [`Tiering::Auto`]): Python and JavaScript plugins, which carry their interpreter
/// (12-18 MB), take Cranelift 20-40 s on two cores; a Rust or C plugin (well under 1 MB)
/// takes it under a second, less than compiling it twice would cost.
pub const BASELINE_MIN_BYTES: usize = 1 << 20;

/// The wasmtime engines, their linkers and the compiled-code cache.
pub struct Engine {
    /// The optimising engine (Cranelift): the code plugins run at full speed.
    pub(super) wasmtime: wasmtime::Engine,
    pub(super) linker: Linker<HostState>,
    /// The baseline engine (Winch), unless tiering is off.
    baseline: Option<(wasmtime::Engine, Linker<HostState>)>,
    tiering: Tiering,
    cache: Option<CodeCache>,
    /// Held while optimised code is compiled in the background: one plugin at a time, so
    /// that a folder of new plugins does not take every core at once.
    optimising: std::sync::Mutex<()>,
    pub(super) ticker: EpochTicker,
}

/// How plugins are compiled before they serve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Tiering {
    /// Plugins of 1 MiB (`BASELINE_MIN_BYTES`) and more without optimised code in the cache are
    /// compiled by the baseline compiler (Winch, seconds) and serve at once; their
    /// optimised code (Cranelift) is compiled in the background, written to the cache, and
    /// replaces the baseline code when ready. Smaller plugins are compiled optimised.
    #[default]
    Auto,
    /// Every plugin is compiled optimised before it serves.
    Off,
    /// Every plugin runs baseline code only, never optimised, and the cache is not used:
    /// for measuring the baseline code.
    BaselineOnly,
}

/// Which compiler made the code a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeTier {
    /// Winch's: compiled in a fraction of the time, runs slower.
    Baseline,
    /// Cranelift's, at `OptLevel::Speed`.
    Optimised,
}

impl CodeTier {
    /// How logs and the admin API name it.
    pub fn as_str(self) -> &'static str {
        match self {
            CodeTier::Baseline => "baseline",
            CodeTier::Optimised => "optimised",
        }
    }
}

/// The code a plugin serves with first, and where it came from.
pub(super) struct FirstCode {
    pub(super) component: Component,
    pub(super) source: CodeSource,
    pub(super) tier: CodeTier,
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
    /// Builds the engines. With a `cache`, optimised code is kept there, keyed by the
    /// plugin's SHA-256 and the engine's settings, and reused on the next start; with
    /// [`Profiling::PerfMap`] the plugins' code is described for a profiler.
    pub fn new(cache: Option<CodeCache>, profiling: Profiling, tiering: Tiering) -> anyhow::Result<Engine> {
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
        // The contract has no component-model async (nor does WASI 0.2): without
        // concurrency support a store sets up none of its task machinery, and
        // `call_async` runs the export on a fiber directly instead of through the
        // concurrent event loop.
        config
            .wasm_component_model(true)
            .concurrency_support(false)
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
        let linker = Self::linker(&engine)?;

        let baseline = match tiering {
            Tiering::Off => None,
            Tiering::Auto | Tiering::BaselineOnly => {
                // Instances of baseline code come from the on-demand allocator: it serves
                // only until the optimised code is ready, and a second pool would reserve
                // its address space for the host's whole life.
                let mut config = Config::new();
                config
                    .strategy(Strategy::Winch)
                    .wasm_component_model(true)
                    .concurrency_support(false)
                    .epoch_interruption(true)
                    .parallel_compilation(true);
                if profiling == Profiling::PerfMap {
                    config.profiler(ProfilingStrategy::PerfMap);
                }
                let baseline = wasmtime::Engine::new(&config)
                    .map_err(anyhow::Error::from)
                    .and_then(|engine| Ok((Self::linker(&engine)?, engine)));
                match baseline {
                    Ok((linker, engine)) => Some((engine, linker)),
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "no baseline compiler: every plugin is compiled optimised before it serves");
                        None
                    }
                }
            }
        };

        let mut ticked = vec![engine.clone()];
        ticked.extend(baseline.iter().map(|(engine, _)| engine.clone()));
        let ticker = EpochTicker::start(ticked);
        Ok(Engine {
            wasmtime: engine,
            linker,
            baseline,
            tiering,
            cache,
            optimising: std::sync::Mutex::new(()),
            ticker,
        })
    }

    /// A linker with every import a plugin may use.
    fn linker(engine: &wasmtime::Engine) -> anyhow::Result<Linker<HostState>> {
        let mut linker = Linker::<HostState>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        Integration::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |state| state)?;
        Ok(linker)
    }

    /// The linker of the engine `component` was compiled by.
    pub(super) fn linker_for(&self, component: &Component) -> &Linker<HostState> {
        match &self.baseline {
            Some((engine, linker)) if wasmtime::Engine::same(component.engine(), engine) => linker,
            _ => &self.linker,
        }
    }

    /// Whether baseline code is replaced by optimised code in the background.
    pub(super) fn optimises_later(&self) -> bool {
        self.tiering == Tiering::Auto
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

    /// The code a plugin serves with first: its optimised code from the cache, else
    /// baseline code when tiering asks for it (see [`Tiering`]), else optimised code
    /// compiled now (and written to the cache). Blocking and CPU-heavy: call it from a
    /// blocking thread.
    ///
    /// A cache entry that fails the cache's check (see [`CodeCache`]) is never
    /// deserialized: the refusal is logged, naming the file, and the component is
    /// compiled again and its entry rewritten.
    pub(super) fn first_code(&self, bytes: &[u8], content_hash: &str) -> anyhow::Result<FirstCode> {
        if self.tiering != Tiering::BaselineOnly
            && let Some(component) = self.read_cache(content_hash)
        {
            return Ok(FirstCode {
                component,
                source: CodeSource::Cache,
                tier: CodeTier::Optimised,
            });
        }
        let wants_baseline = match self.tiering {
            Tiering::Auto => bytes.len() >= BASELINE_MIN_BYTES,
            Tiering::BaselineOnly => true,
            Tiering::Off => false,
        };
        if let Some((engine, _)) = self.baseline.as_ref().filter(|_| wants_baseline) {
            let started = Instant::now();
            match Component::new(engine, bytes) {
                Ok(component) => {
                    tracing::debug!(plugin_sha256 = %content_hash, elapsed_ms = started.elapsed().as_millis() as u64, "compiled baseline code");
                    return Ok(FirstCode {
                        component,
                        source: CodeSource::Compiled,
                        tier: CodeTier::Baseline,
                    });
                }
                Err(error) => {
                    tracing::info!(plugin_sha256 = %content_hash, error = %format!("{error:#}"), "the baseline compiler cannot compile this plugin; compiling optimised code first");
                }
            }
        }
        Ok(FirstCode {
            component: self.compile_optimised(bytes, content_hash)?,
            source: CodeSource::Compiled,
            tier: CodeTier::Optimised,
        })
    }

    /// Compiles optimised code and writes it to the cache. Blocking and CPU-heavy.
    pub(super) fn compile_optimised(&self, bytes: &[u8], content_hash: &str) -> anyhow::Result<Component> {
        let started = Instant::now();
        let component = Component::new(&self.wasmtime, bytes).map_err(|error| anyhow::anyhow!("{error:#}"))?;
        tracing::debug!(plugin_sha256 = %content_hash, elapsed_ms = started.elapsed().as_millis() as u64, "compiled optimised code");
        if let Some(cache) = &self.cache {
            let name = self.cache_entry_name(content_hash);
            let path = cache.path(&name);
            let written = component
                .serialize()
                .map_err(|error| anyhow::anyhow!("{error:#}"))
                .and_then(|code| Ok(cache.write(&path, &name, &code)?));
            if let Err(error) = written {
                tracing::warn!(file = %path.display(), error = %format!("{error:#}"), "cannot write the compiled-code cache");
            }
        }
        Ok(component)
    }

    /// Optimised code compiled in the background waits here for its turn.
    pub(super) fn optimising_turn(&self) -> std::sync::MutexGuard<'_, ()> {
        self.optimising.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The plugin's optimised code from the cache, if there is an entry that passes the
    /// check; a refused one is logged.
    fn read_cache(&self, content_hash: &str) -> Option<Component> {
        let cache = self.cache.as_ref()?;
        let name = self.cache_entry_name(content_hash);
        let path = cache.path(&name);
        match self.load_cached(cache, &path, &name) {
            Ok(component) => component,
            Err(reason) => {
                tracing::warn!(file = %path.display(), reason = %format!("{reason:#}"), "compiled-code cache entry refused; compiling again");
                None
            }
        }
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
    fn start(engines: Vec<wasmtime::Engine>) -> EpochTicker {
        let shared = Arc::new(TickerShared::default());
        let ticker = shared.clone();
        let idle_ticks_before_parking = (IDLE_BEFORE_PARKING.as_millis() / EPOCH_TICK.as_millis()) as u32;
        let thread = std::thread::Builder::new()
            .name("sluice-epoch".into())
            .spawn(move || {
                let mut idle_ticks = 0;
                while !ticker.stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
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
        let ticker = EpochTicker::start(vec![wasmtime::Engine::default()]);
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
