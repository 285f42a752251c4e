//! `sluice serve`: opens the store, loads the plugins folder, and serves HTTP until
//! SIGTERM or Ctrl-C, then drains running requests and exits. Built on the embedding
//! API ([`Host`]) alone.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::{Config, Host};

/// What `sluice serve` needs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub plugins_dir: PathBuf,
    pub data_dir: PathBuf,
    pub listen: String,
    pub public_url: Option<String>,
    pub api_token: Option<String>,
    pub config: Option<PathBuf>,
    /// Compiled-code cache folder; `None` means `<data>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// Write a perf map of the plugins' compiled code (`/tmp/perf-<pid>.map`).
    pub perf_map: bool,
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

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    // Listen for stop signals from the start, so one that arrives while plugins load
    // still ends in a clean stop rather than the default kill.
    let stop = stop_signal()?;
    let config = match &options.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    ensure_dir(&options.data_dir, "data folder")?;
    ensure_writable(&options.data_dir)?;
    ensure_dir(&options.plugins_dir, "plugins folder")?;
    let listener = tokio::net::TcpListener::bind(&options.listen)
        .await
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let address = listener.local_addr()?;
    let mut builder = Host::builder()
        .data_dir(&options.data_dir)
        .plugins_dir(&options.plugins_dir)
        .watch_plugins(true)
        .perf_map(options.perf_map)
        .public_url(
            options
                .public_url
                .clone()
                .or(config.public_url())
                .unwrap_or_else(|| format!("http://{address}")),
        )
        .config(config);
    if let Some(token) = &options.api_token {
        builder = builder.api_token(token);
    }
    if let Some(cache_dir) = &options.cache_dir {
        builder = builder.cache_dir(cache_dir);
    }
    let host = builder.build().await?;

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
    if host.api_token_generated() {
        println!(
            "generated an API token (kept in {}): {}",
            options.data_dir.join("api-token").display(),
            host.api_token()
        );
    }
    println!("listening on http://{address}");
    // The same for programs that start sluice (tests, supervisors), as one JSON line.
    let ready = serde_json::json!({
        "event": "ready",
        "listen": format!("http://{address}"),
        "installations": host.installations().len(),
    });
    println!("{ready}");
    let _ = std::io::stdout().flush();

    host.serve(listener, async {
        let signal = stop.await;
        tracing::info!(%signal, "stop signal received");
    })
    .await
}

/// Registers the stop signals now; the future resolves with the name of the first one
/// received.
fn stop_signal() -> anyhow::Result<impl std::future::Future<Output = &'static str>> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("cannot listen for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
        }
    })
}
