//! `sluice serve`: opens the store, loads the plugins folder, and serves HTTP until
//! SIGTERM or Ctrl-C, then drains running requests and exits.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use crate::config::HostConfig;
use crate::delivery::Delivery;
use crate::http::health::{Health, Phase};
use crate::http::{self, App};
use crate::jobs::Jobs;
use crate::plugins::{FolderWatcher, PluginHost};
use crate::precompile::CacheLocation;
use crate::runtime::{Profiling, Runtime, Tiering};
use crate::store::{self, PostgresStore, SharedStore, SqliteStore};

use crate::embedding::{DELIVERY_STOP_TIMEOUT, DRAIN_TIMEOUT, identity, kept_api_token};
use crate::ids::record_id;

/// What `sluice serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    pub listen: String,
    pub public_url: Option<String>,
    pub api_token: Option<String>,
    pub config: Option<PathBuf>,
    /// A PostgreSQL URL to keep everything in; `None` means the configuration file's, else
    /// the embedded SQLite store.
    pub store_url: Option<String>,
    /// Compiled-code cache folder; `None` means `<data>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// The key that authenticates the cache's entries; `None` means `<data>/cache-key`.
    pub cache_key: Option<PathBuf>,
    /// Write a perf map of the plugins' compiled code (see [`Profiling`]).
    pub profiling: Profiling,
    /// Whether large plugins serve on baseline code first (see [`Tiering`]).
    pub tiering: Tiering,
    /// How long to go on serving after a stop signal, with `/readyz` answering 503, so
    /// that load balancers stop sending traffic before connections are refused.
    pub drain_delay: Duration,
    /// Where `GET /metrics` is served.
    pub metrics: MetricsAt,
}

/// Where `GET /metrics` is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsAt {
    /// On the main listener, beside everything else.
    Main,
    /// On an address of its own, with the health checks (and not on the main listener).
    Listen(String),
    Off,
}

/// The most connections the metrics listener takes at once: scrapers and probes.
const METRICS_CONNECTIONS: usize = 64;

/// The API token: the flag or environment, else the configuration file, else the one
/// kept in the data folder, else a new one (kept there and printed once).
fn api_token(options: &ServeOptions, config: &HostConfig) -> anyhow::Result<(String, bool)> {
    match options.api_token.clone().or_else(|| config.api_token.clone()) {
        Some(token) if !token.is_empty() => Ok((token, false)),
        _ => kept_api_token(&options.data_dir, true),
    }
}

fn ensure_dir(path: &Path, what: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create the {what} {}", path.display()))
}

/// Refuses to start on a data folder sluice cannot write (a read-only mount, another
/// user's folder), naming it, rather than failing in the store with an SQLite code. The
/// files already there must be writable too.
fn ensure_writable(data_dir: &Path) -> anyhow::Result<()> {
    let not_writable = |path: &Path, error: std::io::Error| {
        anyhow::anyhow!(
            "the data folder {} is not writable ({} cannot be written: {error}); sluice keeps its store there: \
             give the user running sluice write access to it, or choose another folder with --data",
            data_dir.display(),
            path.display()
        )
    };
    let probe = data_dir.join(format!(".write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|error| not_writable(&probe, error))?;
    let _ = std::fs::remove_file(&probe);
    for entry in std::fs::read_dir(data_dir)
        .with_context(|| format!("cannot read the data folder {}", data_dir.display()))?
        .flatten()
    {
        let path = entry.path();
        if entry.file_type().is_ok_and(|kind| kind.is_file()) {
            std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(|error| not_writable(&path, error))?;
        }
    }
    Ok(())
}

/// Raises the soft open-file limit to the hard one (each connection takes a descriptor:
/// a limit of 1,024, common for services, is reached by about a thousand idle clients),
/// logs both, and answers the limit in force.
fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limits = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (limits.current, limits.maximum) else {
        tracing::info!("open files: no limit");
        return u64::MAX;
    };
    let wanted = hard.unwrap_or(u64::MAX);
    if wanted > soft {
        let raised = rustix::process::Rlimit {
            current: Some(wanted),
            maximum: hard,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => {
                tracing::info!(
                    soft_limit = soft,
                    hard_limit = wanted,
                    "open files: raised the soft limit to the hard limit"
                );
                return wanted;
            }
            Err(error) => {
                tracing::warn!(soft_limit = soft, hard_limit = wanted, %error, "open files: cannot raise the soft limit");
            }
        }
    } else {
        tracing::info!(
            soft_limit = soft,
            hard_limit = wanted,
            "open files: the soft limit is already the hard limit"
        );
    }
    soft
}

/// Opens the store the options and configuration name: PostgreSQL when a URL is given,
/// else the embedded SQLite store in the data folder.
async fn open_store(options: &ServeOptions, config: &HostConfig) -> anyhow::Result<SharedStore> {
    let url = options.store_url.clone().or_else(|| config.store.url.clone());
    let Some(url) = url.filter(|url| !url.is_empty()) else {
        return Ok(Arc::new(SqliteStore::open(&options.data_dir)?));
    };
    let pool_size = config.store.pool_size.unwrap_or(store::postgres::DEFAULT_POOL_SIZE);
    let replica_id = replica_id(&options.data_dir)?;
    let store = PostgresStore::connect(&url, pool_size, replica_id.clone()).await?;
    tracing::info!(store = %store::postgres::redacted(&url), replica = %replica_id, "keeping everything in PostgreSQL");
    Ok(Arc::new(store))
}

/// This replica's stable name, kept in `<data>/replica-id`: the trigger events it claims
/// carry it, so that after a restart it gives back the claims it left.
fn replica_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("replica-id");
    if let Ok(id) = std::fs::read_to_string(&path)
        && !id.trim().is_empty()
    {
        return Ok(id.trim().to_string());
    }
    let id = record_id("rep");
    std::fs::write(&path, &id).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    // Listen for stop signals from the start, so one that arrives while plugins load
    // still ends in a clean stop rather than the default kill.
    let mut stop = StopSignals::listen()?;
    let config = match &options.config {
        Some(path) => HostConfig::load(path)?,
        None => HostConfig::default(),
    };
    ensure_dir(&options.data_dir, "data folder")?;
    ensure_writable(&options.data_dir)?;
    ensure_dir(&options.plugins_dir, "plugins folder")?;
    let open_file_limit = raise_open_file_limit();
    let max_connections = http::server::connection_cap(open_file_limit);
    tracing::info!(
        max_connections,
        open_file_limit,
        "serving at most {max_connections} connections at once; beyond that the connections idle the longest are closed"
    );
    let store = open_store(&options, &config).await?;
    let (api_token, generated) = api_token(&options, &config)?;

    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    // Served from now on: the health checks answer while the plugins load, and every
    // other request waits for the whole router (see http::health).
    let health = Health::new(store.clone());
    let (full_router, full_router_rx) = tokio::sync::watch::channel(None);
    let (routers, routers_rx) =
        tokio::sync::watch::channel(http::health::while_loading(health.clone(), full_router_rx));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(http::server::run(listener, routers_rx, max_connections, async {
        let _ = stop_rx.await;
    }));
    let serving: http::metrics::Serving = Arc::default();
    let mut metrics_url = None;
    if let MetricsAt::Listen(metrics_address) = &options.metrics {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_address)
            .await
            .with_context(|| format!("cannot listen on {metrics_address} for metrics"))?;
        let at = metrics_listener.local_addr()?;
        let (_, router) = tokio::sync::watch::channel(http::metrics::ops_router(health.clone(), serving.clone()));
        // Never stopped: it answers until the process exits.
        tokio::spawn(http::server::run(
            metrics_listener,
            router,
            METRICS_CONNECTIONS,
            std::future::pending(),
        ));
        tracing::info!(address = %at, "serving /metrics, /healthz and /readyz on http://{at}");
        metrics_url = Some(format!("http://{at}"));
    }
    // For programs that start sluice: where the health checks answer while plugins load.
    println!(
        "{}",
        serde_json::json!({ "event": "loading", "listen": format!("http://{address}") })
    );
    let _ = std::io::stdout().flush();

    let public_url = options
        .public_url
        .clone()
        .or(config.public_url.clone())
        .unwrap_or_else(|| format!("http://{address}"));
    let identity = identity(&store, public_url).await?;
    // Delivery starts before the plugins so that it follows the outbox from the first
    // event they record.
    let delivery = Delivery::start(
        store.clone(),
        config.delivery.clone(),
        config.subscriptions.clone(),
        config.nats.clone(),
        identity.bot_id.clone(),
    )
    .await
    .context("cannot start event delivery")?;

    let cache = CacheLocation {
        data_dir: options.data_dir.clone(),
        cache_dir: options.cache_dir.clone(),
        cache_key: options.cache_key.clone(),
    }
    .open()?;
    let runtime = Arc::new(Runtime::new(Some(cache), options.profiling, options.tiering)?);
    let plugins = Arc::new(PluginHost::new(
        runtime,
        store.clone(),
        identity,
        options.plugins_dir.clone(),
        &options.data_dir,
    )?);
    plugins.sync().await?;
    // Hot reload: from here on, changes to the plugins folder are applied while serving.
    let _watcher = FolderWatcher::start(plugins.clone())?;
    let jobs = Jobs::start(store.clone(), plugins.clone(), config.triggers.clone()).await?;

    // Serving from here; the lines below tell whoever started sluice.
    let app = Arc::new(App {
        plugins: plugins.clone(),
        store,
        api_token: api_token.clone(),
        delivery: delivery.clone(),
        jobs: jobs.clone(),
        health: health.clone(),
    });
    let _ = serving.set(app.clone());
    let router = http::router(app, options.metrics == MetricsAt::Main);
    let _start_up_router = routers.send_replace(router.clone());
    full_router.send_replace(Some(router));
    health.set_phase(Phase::Serving);
    let snapshot = plugins.registry.snapshot();
    println!(
        "sluice {} serving {} installation(s) from {}",
        env!("CARGO_PKG_VERSION"),
        snapshot.installations.len(),
        options.plugins_dir.display()
    );
    for installation in snapshot.installations.values() {
        println!(
            "  {:<20} {:<20} {:<20} {}",
            installation.name(),
            format!(
                "{} {}",
                installation.plugin.definition.name, installation.plugin.definition.version
            ),
            installation.status.as_str(),
            installation.webhook_url()
        );
        for problem in &installation.problems {
            println!("      problem: {problem}");
        }
    }
    for failure in &snapshot.failures {
        println!("  {:<20} refused: {}", failure.file, failure.reason);
    }
    // Kept until serving ends, it would keep every start-up version's code alive after
    // hot reload replaced or removed it.
    drop(snapshot);
    if generated {
        println!(
            "generated an API token (kept in {}): {api_token}",
            options.data_dir.join("api-token").display()
        );
    }
    println!("listening on http://{address}");
    // The same for programs that start sluice (tests, supervisors), as one JSON line.
    let mut ready = serde_json::json!({
        "event": "ready",
        "listen": format!("http://{address}"),
        "installations": plugins.registry.snapshot().installations.len(),
    });
    if let Some(url) = metrics_url {
        ready["metrics"] = url.into();
    }
    println!("{ready}");
    let _ = std::io::stdout().flush();

    tokio::select! {
        _ = &mut server => anyhow::bail!("the HTTP server stopped by itself"),
        signal = stop.next() => {
            health.set_phase(Phase::Draining);
            if !options.drain_delay.is_zero() {
                tracing::info!(
                    %signal,
                    drain_delay_s = options.drain_delay.as_secs_f64(),
                    "stopping: /readyz answers 503 while requests are still served, for the drain delay (a second signal ends it)"
                );
                tokio::select! {
                    () = tokio::time::sleep(options.drain_delay) => {}
                    signal = stop.next() => tracing::info!(%signal, "ending the drain delay"),
                }
            }
            tracing::info!(%signal, "stopping: no new connections; letting running requests finish");
        }
    }
    let _ = stop_tx.send(());
    // Live streams end and webhook attempts in flight finish while requests drain.
    let (drained, ()) = tokio::join!(
        tokio::time::timeout(DRAIN_TIMEOUT, server),
        delivery.stop(DELIVERY_STOP_TIMEOUT)
    );
    match drained {
        Ok(_) => {}
        Err(_) => tracing::warn!(
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "requests still running after the drain timeout; exiting anyway"
        ),
    }
    jobs.shutdown(DRAIN_TIMEOUT).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM and SIGINT, listened for from start-up on.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Registers the stop signals now, so that one arriving at any time after is kept.
    fn listen() -> anyhow::Result<StopSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(StopSignals {
            terminate: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            interrupt: signal(SignalKind::interrupt()).context("cannot listen for SIGINT")?,
        })
    }

    /// The name of the next stop signal received.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}
