//! The load benchmark's driver (run it through `bench/run`, which builds what it needs).
//!
//! Starts every configuration ([`rows`]) pinned to the server CPU, checks its reply is
//! exactly the expected bytes, then measures over alternating rounds: each round runs
//! every configuration once (a warm-up, then the measured run with wrk pinned to the
//! load CPU), starting from a different configuration each round. Prints one table:
//! medians with min–max, ratios to the limit and the peer, resident memory idle and
//! under load, and the in-process sandbox cost from the criterion micro-benchmarks.

mod report;
mod rows;
mod script;
mod server;
mod wrk;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;

use report::{Measurement, RowReport};
use rows::{Row, RowKind, Running};

/// The command line of `bench-driver`.
#[derive(Debug, Parser)]
#[command(about = "Runs the sluice load benchmark and prints one table (use bench/run)")]
pub struct Options {
    /// The release `sluice` binary.
    #[arg(long)]
    pub sluice: PathBuf,
    /// The native hyper server (bench/native).
    #[arg(long)]
    pub native: PathBuf,
    /// The benchmark's sluice plugin component (bench/guests/plugin).
    #[arg(long)]
    pub plugin: PathBuf,
    /// The benchmark's wasi:http proxy component (bench/guests/proxy).
    #[arg(long)]
    pub proxy: PathBuf,
    /// The `wasmtime` binary for the peer row (default: the one on PATH, if any).
    #[arg(long)]
    pub wasmtime: Option<PathBuf>,
    /// The bench/ folder (script rows live there).
    #[arg(long, default_value = "bench")]
    pub bench_dir: PathBuf,
    /// Rounds; each round measures every configuration once.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Measured seconds per configuration and round.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Warm-up seconds before each measured run.
    #[arg(long, default_value_t = 2)]
    pub warmup: u64,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 32)]
    pub connections: usize,
    /// The CPU the servers are pinned to.
    #[arg(long, default_value_t = 0)]
    pub server_cpu: usize,
    /// The CPU wrk is pinned to.
    #[arg(long, default_value_t = 1)]
    pub load_cpu: usize,
    /// How many installations sluice loads (all copies of the bench plugin; one is loaded).
    #[arg(long, default_value_t = 10)]
    pub plugins: usize,
    /// Only the load benchmark's (a)-(c): skip the slower script rows (queued ingest,
    /// delivery fan-out and its limit).
    #[arg(long)]
    pub quick: bool,
    /// Smoke mode: one short round, everything checked, no targets judged.
    #[arg(long)]
    pub smoke: bool,
    /// Criterion's output folder, for the sandbox micro-benchmarks' figures.
    #[arg(long)]
    pub criterion: Option<PathBuf>,
    /// Another `sluice` binary (a build from before a change) measured in the same rounds:
    /// rows (b-ref), (d-ref) and (e-ref) repeat (b), (d) and (e) with it, and the table
    /// gives the ratios.
    #[arg(long)]
    pub reference_sluice: Option<PathBuf>,
    /// Only these rows, by key (comma-separated, e.g. `b,b-ref,d,d-ref` or `e0,e,e-ref`).
    #[arg(long, value_delimiter = ',')]
    pub rows: Vec<String>,
}

fn main() -> anyhow::Result<()> {
    let mut options = Options::parse();
    if options.smoke {
        options.rounds = 1;
        options.duration = 1;
        options.warmup = 0;
    }
    anyhow::ensure!(options.rounds > 0, "--rounds must be at least 1");
    let load_before = load_average();

    let body_dir = tempfile::tempdir()?;
    let body_file = body_dir.path().join("body.json");
    std::fs::write(&body_file, bench_work::SAMPLE_BODY)?;
    let script_file = body_dir.path().join("post.lua");
    std::fs::write(&script_file, wrk::post_script(&body_file))?;
    let load = wrk::Load {
        cpu: options.load_cpu,
        connections: options.connections,
        script: &script_file,
    };

    let rows = rows::rows(&options);
    let mut reports: Vec<RowReport> = rows.iter().map(RowReport::new).collect();
    let mut running: Vec<Option<Running>> = Vec::new();
    for (row, report) in rows.iter().zip(&mut reports) {
        running.push(match &row.kind {
            RowKind::Http { start } => {
                eprintln!("bench: starting ({}) {}", row.key, row.label);
                let started = start(&options)
                    .and_then(|r| rows::check_reply(&r.url).map(|()| r))
                    .with_context(|| format!("configuration ({}) {}", row.key, row.label))?;
                // Idle: started, plugins loaded, one request answered.
                std::thread::sleep(Duration::from_millis(500));
                report.rss_idle_kib.push(started.server.rss_kib().unwrap_or(0));
                Some(started)
            }
            _ => None,
        });
    }

    for round in 0..options.rounds {
        // Alternate: each round starts from the next configuration.
        for offset in 0..rows.len() {
            let index = (round + offset) % rows.len();
            let row = &rows[index];
            let report = &mut reports[index];
            let measured = match (&row.kind, &running[index]) {
                (RowKind::Http { .. }, Some(server)) => measure_http(&load, server, &options, report),
                (RowKind::Script { path, args, sluice }, _) => {
                    script::run(path, args, sluice, &options).map(|result| {
                        report.rss_idle_kib.extend(result.rss_idle_kib);
                        report.rss_load_kib.extend(result.rss_load_kib);
                        Measurement {
                            per_s: result.per_s,
                            p50_ms: result.p50_ms,
                            p99_ms: result.p99_ms,
                        }
                    })
                }
                _ => continue,
            };
            // A measured run keeps going past an invalid round of a script row (an
            // overloaded moment, say): the table says so and leaves the round out. Smoke
            // runs check everything, so there it fails the run.
            let measured = match measured {
                Err(error) if !options.smoke && error.downcast_ref::<script::InvalidRound>().is_some() => {
                    let invalid = error.downcast::<script::InvalidRound>().expect("checked above");
                    eprintln!(
                        "bench: round {}/{} ({}) not valid, left out: {}\n{}",
                        round + 1,
                        options.rounds,
                        row.key,
                        invalid.summary,
                        invalid.output
                    );
                    report.invalid.push(invalid.summary);
                    continue;
                }
                other => other,
            };
            let measured = measured.with_context(|| {
                format!(
                    "configuration ({}) {}, round {}{}",
                    row.key,
                    row.label,
                    round + 1,
                    running[index]
                        .as_ref()
                        .map(|r| format!("; server output:\n{}", r.server.output()))
                        .unwrap_or_default()
                )
            })?;
            eprintln!(
                "bench: round {}/{} ({}) {:>10.0}/s  p50 {:.3} ms  p99 {:.3} ms",
                round + 1,
                options.rounds,
                row.key,
                measured.per_s,
                measured.p50_ms,
                measured.p99_ms
            );
            report.samples.push(measured);
        }
    }
    drop(running);

    let micro = options
        .criterion
        .as_deref()
        .map(report::criterion_estimates)
        .unwrap_or_default();
    let setting = report::Setting {
        rounds: options.rounds,
        duration: options.duration,
        warmup: options.warmup,
        connections: options.connections,
        server_cpu: options.server_cpu,
        load_cpu: options.load_cpu,
        load_before,
        load_after: load_average(),
        idle_cpus: idle_cpus(),
        smoke: options.smoke,
    };
    print!("{}", report::render(&setting, &reports, &micro));
    Ok(())
}

/// A warm-up, then the measured run while sampling the server's resident size.
fn measure_http(
    load: &wrk::Load,
    running: &Running,
    options: &Options,
    report: &mut RowReport,
) -> anyhow::Result<Measurement> {
    if options.warmup > 0 {
        load.run(&running.url, Duration::from_secs(options.warmup))?;
    }
    let pid = running.server.pid();
    let peak = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(rss) = server::rss_kib(pid) {
                    peak.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let result = load.run(&running.url, Duration::from_secs(options.duration));
    done.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let result = result?;
    report.rss_load_kib.push(peak.load(Ordering::Relaxed));
    Ok(Measurement {
        per_s: result.requests_per_s,
        p50_ms: result.p50_ms,
        p99_ms: result.p99_ms,
    })
}

/// How this machine's idle CPUs wait for work. It decides what waking wrk costs the
/// server: in a VM whose `haltpoll` driver may not poll (`guest_halt_poll_ns` 0), every
/// wakeup of an idle vCPU is a trip through the hypervisor, and a server that leaves wrk
/// idle between answers pays it on each one (bench/README.md, "History").
fn idle_cpus() -> Option<String> {
    let driver = std::fs::read_to_string("/sys/devices/system/cpu/cpuidle/current_driver").ok()?;
    let driver = driver.trim();
    let poll_ns = std::fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .ok()
        .and_then(|ns| ns.trim().parse::<u64>().ok());
    Some(match poll_ns {
        Some(ns) if driver == "haltpoll" => format!("cpuidle {driver}, halt polling up to {} µs", ns / 1000),
        _ => format!("cpuidle {driver}"),
    })
}

/// The 1-minute load average, to report how busy the machine was.
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl RowReport {
    fn new(row: &Row) -> RowReport {
        RowReport {
            key: row.key,
            label: row.label.clone(),
            skipped: match &row.kind {
                RowKind::Skipped { reason } => Some(reason.clone()),
                _ => None,
            },
            samples: Vec::new(),
            invalid: Vec::new(),
            rss_idle_kib: Vec::new(),
            rss_load_kib: Vec::new(),
        }
    }
}
