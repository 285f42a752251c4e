//! `sluice serve`: opens the store, loads the plugins folder, and serves HTTP until
//! SIGTERM or Ctrl-C, then drains running requests and exits.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;

use crate::http::server;
use crate::{Config, DRAIN_TIMEOUT, Host, HostBuilder, Tiering};

/// What `sluice serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    pub listen: String,
    pub public_url: Option<String>,
    pub api_token: Option<String>,
    /// A PostgreSQL URL to keep everything in; `None` means the configuration file's, else
    /// the embedded SQLite store.
    pub store_url: Option<String>,
    /// Compiled-code cache folder; `None` means `<data>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// The key that authenticates the cache's entries; `None` means `<data>/cache-key`.
    pub cache_key: Option<PathBuf>,
    /// Write a perf map of the plugins' compiled code (see [`HostBuilder::perf_map`]).
    pub perf_map: bool,
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

/// The host the options describe, on the embedding API; `address` is where the main
/// listener listens.
fn host_builder(options: &ServeOptions, config: Config, address: SocketAddr) -> HostBuilder {
    let public_url = options
        .public_url
        .clone()
        .or(config.public_url())
        .unwrap_or_else(|| format!("http://{address}"));
    let mut builder = Host::builder()
        .data_dir(&options.data_dir)
        .plugins_dir(&options.plugins_dir)
        .watch_plugins(true)
        .config(config)
        .public_url(public_url)
        .perf_map(options.perf_map)
        .tiering(options.tiering)
        .metrics_route(options.metrics == MetricsAt::Main);
    if let Some(token) = &options.api_token {
        builder = builder.api_token(token);
    }
    if let Some(url) = &options.store_url {
        builder = builder.store_url(url);
    }
    if let Some(folder) = &options.cache_dir {
        builder = builder.cache_dir(folder);
    }
    if let Some(file) = &options.cache_key {
        builder = builder.cache_key(file);
    }
    builder
}

/// Serves until SIGTERM or Ctrl-C, configured by `options` and the host configuration
/// file (`--config`, read by the command line).
pub async fn serve(options: ServeOptions, config: Config) -> anyhow::Result<()> {
    // Listen for stop signals from the start, so one that arrives while plugins load
    // still ends in a clean stop rather than the default kill.
    let mut stop = StopSignals::listen()?;
    ensure_dir(&options.data_dir, "data folder")?;
    ensure_writable(&options.data_dir)?;
    let open_file_limit = raise_open_file_limit();
    let max_connections = server::connection_cap(open_file_limit);
    tracing::info!(
        max_connections,
        open_file_limit,
        "serving at most {max_connections} connections at once; beyond that the connections idle the longest are closed"
    );

    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    let builder = host_builder(&options, config, address);
    // Served from now on: the health checks answer while the plugins load, and every
    // other request waits for the host's router. Each connection keeps the router served
    // when it was accepted; those accepted once the host serves get its router directly.
    let (routers, routers_rx) = tokio::sync::watch::channel(builder.loading_router());
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut server = tokio::spawn(server::run(listener, routers_rx, max_connections, async {
        let _ = stop_rx.await;
    }));
    let mut metrics_url = None;
    if let MetricsAt::Listen(metrics_address) = &options.metrics {
        let metrics_listener = tokio::net::TcpListener::bind(metrics_address)
            .await
            .with_context(|| format!("cannot listen on {metrics_address} for metrics"))?;
        let at = metrics_listener.local_addr()?;
        let (_, router) = tokio::sync::watch::channel(builder.ops_router());
        // Never stopped: it answers until the process exits.
        tokio::spawn(server::run(
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

    let host = builder.build().await?;
    let _loading_router = routers.send_replace(host.router());
    print_installations(&host, &options);
    if host.api_token_generated() {
        println!(
            "generated an API token (kept in {}): {}",
            options.data_dir.join("api-token").display(),
            host.api_token()
        );
    }
    println!("listening on http://{address}");
    // The same for programs that start sluice (tests, supervisors), as one JSON line.
    let mut ready = serde_json::json!({
        "event": "ready",
        "listen": format!("http://{address}"),
        "installations": host.installations().len(),
    });
    if let Some(url) = metrics_url {
        ready["metrics"] = url.into();
    }
    println!("{ready}");
    let _ = std::io::stdout().flush();

    tokio::select! {
        _ = &mut server => anyhow::bail!("the HTTP server stopped by itself"),
        signal = stop.next() => {
            host.start_draining();
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
    // Live streams end, webhook attempts in flight and trigger events finish while
    // requests drain.
    let (drained, ()) = tokio::join!(tokio::time::timeout(DRAIN_TIMEOUT, server), host.shutdown());
    if drained.is_err() {
        tracing::warn!(
            timeout_s = DRAIN_TIMEOUT.as_secs(),
            "requests still running after the drain timeout; exiting anyway"
        );
    }
    Ok(())
}

/// The start-up table: each installation, its plugin, status and webhook URL, and the
/// files refused.
fn print_installations(host: &Host, options: &ServeOptions) {
    let installations = host.installations();
    println!(
        "sluice {} serving {} installation(s) from {}",
        env!("CARGO_PKG_VERSION"),
        installations.len(),
        options.plugins_dir.display()
    );
    for installation in &installations {
        println!(
            "  {:<20} {:<20} {:<20} {}",
            installation.name,
            format!("{} {}", installation.integration, installation.version),
            installation.status,
            installation.webhook_url
        );
        for problem in &installation.problems {
            println!("      problem: {problem}");
        }
    }
    for failure in host.load_failures() {
        println!("  {:<20} refused: {}", failure.file, failure.reason);
    }
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
