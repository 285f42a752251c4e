//! Delivery fan-out benchmark: drives the webhook example plugin at a fixed rate (open
//! loop) so that every request records one event, while sluice delivers every event to
//! N webhook subscriptions on a loopback receiver. Prints, per second, events recorded,
//! deliveries received per subscription, the backlog (recorded minus delivered to the
//! slowest subscription) and ingestion latency; then how long the backlog takes to drain.
//!
//! `--saturate` finds the highest rate sustained instead: it offers `--rate` for
//! `--seconds`, then steps the rate up by half until a step is not sustained, then
//! bisects between the last sustained step and the first that was not, to within 5%.
//! A step is sustained when every request was answered on schedule and every event was
//! delivered to every subscription without a growing backlog (see [`Step::verdict`]).
//! It reports that rate in events/s (each delivered to every subscription).
//!
//! `--slow` adds one more subscription whose receiver never answers (every attempt runs
//! into the attempt timeout), to show that a slow receiver does not slow ingestion or the
//! other subscriptions. Run by bench/delivery-fanout.sh.
//!
//! `--native PATH` runs the same load, receiver and report against the limit instead of
//! sluice: `PATH fan-out` (bench/native), a native hyper + tokio program that reads each
//! request as the webhook plugin does and sends the same signed envelope to every
//! subscription, in memory, with nothing around it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

// The black-box tests' harness starts sluice with the plugin, as in the tests.
#[allow(dead_code, reason = "the harness serves the tests too; this uses a part of it")]
#[path = "../tests/harness/mod.rs"]
mod harness;

use harness::{Host, guest};

struct Options {
    /// Events/s offered (in `--saturate` mode, the first step's).
    rate: u64,
    /// Seconds of load (in `--saturate` mode, per step).
    seconds: u64,
    subscriptions: usize,
    slow: bool,
    /// The bench-native binary: measure its fan-out mode instead of sluice.
    native: Option<PathBuf>,
    /// The `sluice` binary to measure (default: the one built with this example).
    sluice: Option<PathBuf>,
    saturate: bool,
}

fn options() -> Options {
    let mut options = Options {
        rate: 5000,
        seconds: 20,
        subscriptions: 4,
        slow: false,
        native: None,
        sluice: None,
        saturate: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .expect("a number after the flag")
        };
        match arg.as_str() {
            "--rate" => options.rate = value(),
            "--seconds" => options.seconds = value(),
            "--subscriptions" => options.subscriptions = value() as usize,
            "--slow" => options.slow = true,
            "--saturate" => options.saturate = true,
            "--native" => options.native = Some(args.next().expect("the bench-native binary after --native").into()),
            "--sluice" => options.sluice = Some(args.next().expect("the sluice binary after --sluice").into()),
            other => {
                panic!(
                    "unknown argument {other}; use --rate N --seconds N --subscriptions N [--saturate] [--slow] [--native PATH | --sluice PATH]"
                )
            }
        }
    }
    options
}

/// What the load is sent to: sluice with the webhook example plugin, or the native
/// fan-out (the limit).
enum Subject {
    Sluice(Box<Host>),
    Native(NativeFanOut),
}

impl Subject {
    fn webhook_url(&self) -> String {
        match self {
            Subject::Sluice(host) => host.webhook_url("webhook"),
            Subject::Native(native) => format!("{}/webhook", native.base),
        }
    }

    fn describe(&self) -> String {
        match self {
            Subject::Sluice(host) => format!("sluice at {} (data in {})", host.base, host.data.display()),
            Subject::Native(native) => format!("native fan-out (the limit) at {}", native.base),
        }
    }

    fn pid(&self) -> Option<u32> {
        match self {
            Subject::Sluice(host) => host.pid(),
            Subject::Native(native) => Some(native.child.id()),
        }
    }
}

/// `bench-native fan-out`, stopped when dropped.
struct NativeFanOut {
    child: Child,
    base: String,
}

impl NativeFanOut {
    fn start(binary: &PathBuf, targets: &[String]) -> NativeFanOut {
        let mut command = Command::new(binary);
        command.args(["fan-out", "--listen", "127.0.0.1:0"]);
        for target in targets {
            command.args(["--target", target]);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let mut lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let base = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    if let Some(base) = line.strip_prefix("listening on ") {
                        break base.trim().to_string();
                    }
                }
                _ => panic!("{} fan-out exited before listening", binary.display()),
            }
        };
        // Keep reading so that the server never blocks on a full pipe.
        std::thread::spawn(move || lines.for_each(drop));
        NativeFanOut { child, base }
    }
}

impl Drop for NativeFanOut {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU time (user + system) a process has used so far, in seconds (`/proc/PID/stat`).
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(ticks as f64 / per_second.max(1) as f64)
}

/// Counts deliveries per subscription path (`/s0`, `/s1`, ...); `/slow` never answers.
struct Counts {
    per_path: Vec<AtomicU64>,
}

async fn receive(
    counts: Arc<Counts>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let path = request.uri().path().to_string();
    let _ = request.into_body().collect().await?;
    if path == "/slow" {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(index) = path.strip_prefix("/s").and_then(|n| n.parse::<usize>().ok())
        && let Some(count) = counts.per_path.get(index)
    {
        count.fetch_add(1, Ordering::Relaxed);
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// The most requests in flight at once: past it, an overloaded subject shows as refused
/// requests rather than as a slower load.
const IN_FLIGHT: u32 = 2048;
/// How long a step's backlog may take to drain after its load.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// What stays up across steps: the runtime, the receiver, the subject and the client.
struct Bench {
    runtime: tokio::runtime::Runtime,
    counts: Arc<Counts>,
    subject: Subject,
    webhook: String,
    client: reqwest::Client,
    server_pid: Option<String>,
    /// Events recorded by the steps before (all delivered when a step starts).
    recorded_before: u64,
}

/// One step: a rate offered for some seconds, and what came of it.
struct Step {
    rate: u64,
    seconds: u64,
    /// Requests due by the schedule (fewer when the step was abandoned).
    offered: u64,
    recorded: u64,
    failed: u64,
    /// Why the load was stopped before its end, if it was.
    abandoned: Option<String>,
    /// From the first request to the last answer.
    load_seconds: f64,
    /// Once a second during the load: recorded minus delivered to the slowest subscription.
    backlogs: Vec<u64>,
    /// Seconds from the end of the load until every event was delivered everywhere (None:
    /// not within [`DRAIN_LIMIT`]).
    drained: Option<f64>,
    /// Webhooks received during the load and the drain, all subscriptions.
    delivered: u64,
    /// The webhook requests' latencies, µs, sorted.
    latencies: Vec<u64>,
    /// CPU seconds during the load: the subject, this benchmark (load + receiver).
    cpu: (Option<f64>, Option<f64>),
    /// What the store's writer did during the load and the drain (sluice only).
    store: Option<StoreWork>,
}

/// The store's group commits (from sluice's metrics): how many, the writes they held, and
/// the seconds the writer spent in them.
#[derive(Debug, Clone, Copy)]
struct StoreWork {
    commits: f64,
    writes: f64,
    seconds: f64,
}

impl StoreWork {
    /// The store database's commit figures from sluice's `/metrics`.
    fn of(host: &Host) -> Option<StoreWork> {
        let text = host.api_get("/metrics").body;
        let value = |name: &str| {
            text.lines()
                .find(|line| line.starts_with(name) && line.contains("database=\"store\""))
                .and_then(|line| line.rsplit(' ').next())
                .and_then(|value| value.parse::<f64>().ok())
        };
        Some(StoreWork {
            commits: value("sluice_store_commit_duration_seconds_count")?,
            writes: value("sluice_store_commit_batch_size_sum")?,
            seconds: value("sluice_store_commit_duration_seconds_sum")?,
        })
    }

    fn since(self, before: StoreWork) -> StoreWork {
        StoreWork {
            commits: self.commits - before.commits,
            writes: self.writes - before.writes,
            seconds: self.seconds - before.seconds,
        }
    }
}

impl Step {
    /// Whether the subject sustained the step's rate: every request answered on schedule,
    /// and every event delivered to every subscription with a backlog that stays under a
    /// quarter of a second's events and does not grow. `Err` says why not.
    fn verdict(&self) -> Result<(), String> {
        if let Some(why) = &self.abandoned {
            return Err(why.clone());
        }
        if self.failed > 0 {
            return Err(format!("{} requests failed or were refused", self.failed));
        }
        let schedule = self.seconds as f64;
        if self.load_seconds > schedule * 1.1 + 0.5 {
            return Err(format!(
                "ingestion fell behind: {:.1} s to answer {} s of requests",
                self.load_seconds, self.seconds
            ));
        }
        let rate = self.rate as f64;
        let last = self.backlogs.last().copied().unwrap_or(0) as f64;
        if last > rate / 4.0 {
            return Err(format!(
                "delivery fell behind: backlog {last} at the end of the load (over a quarter second's events)"
            ));
        }
        let half = self.backlogs.len() / 2;
        let mean = |part: &[u64]| part.iter().sum::<u64>() as f64 / part.len().max(1) as f64;
        let (first, second) = (mean(&self.backlogs[..half]), mean(&self.backlogs[half..]));
        if half > 0 && second > first + rate / 20.0 {
            return Err(format!(
                "delivery fell behind: the backlog grew from {first:.0} to {second:.0} on average"
            ));
        }
        match self.drained {
            Some(_) => Ok(()),
            None => Err(format!("the backlog did not drain within {} s", DRAIN_LIMIT.as_secs())),
        }
    }

    fn cpu_share(&self, seconds: Option<f64>) -> String {
        match seconds {
            Some(seconds) => format!("{:.0}%", 100.0 * seconds / self.load_seconds),
            None => "?".into(),
        }
    }

    /// The subject's CPU time per event recorded, µs.
    fn cpu_per_event(&self) -> String {
        match self.cpu.0 {
            Some(seconds) if self.recorded > 0 => format!("{:.0} µs", 1e6 * seconds / self.recorded as f64),
            _ => "?".into(),
        }
    }

    /// The store's commits and writer time per event recorded.
    fn store_per_event(&self) -> String {
        match self.store {
            Some(store) if self.recorded > 0 => {
                let events = self.recorded as f64;
                format!(
                    "store {:.2} commits and {:.2} writes per event ({:.1} writes per commit), writer {:.0} µs per event",
                    store.commits / events,
                    store.writes / events,
                    store.writes / store.commits.max(1.0),
                    1e6 * store.seconds / events
                )
            }
            _ => "store ?".into(),
        }
    }

    fn summary(&self) -> String {
        format!(
            "{:>6}/s × {} s: offered {:>6}, recorded {:>6}, backlog max {:>5}, end {:>5}, p50 {:.2} ms, p99 {:.2} ms, cpu {} (load + receiver {}), {} per event{}: {}",
            self.rate,
            self.seconds,
            self.offered,
            self.recorded,
            self.backlogs.iter().copied().max().unwrap_or(0),
            self.backlogs.last().copied().unwrap_or(0),
            percentile(&self.latencies, 0.5),
            percentile(&self.latencies, 0.99),
            self.cpu_share(self.cpu.0),
            self.cpu_share(self.cpu.1),
            self.cpu_per_event(),
            match self.store {
                Some(_) => format!(", {}", self.store_per_event()),
                None => String::new(),
            },
            match self.verdict() {
                Ok(()) => "sustained".to_string(),
                Err(why) => format!("NOT sustained ({why})"),
            }
        )
    }
}

impl Bench {
    fn delivered_min(&self) -> u64 {
        self.counts
            .per_path
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }

    fn delivered_all(&self) -> Vec<u64> {
        self.counts.per_path.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    fn store_now(&self) -> Option<StoreWork> {
        match &self.subject {
            Subject::Sluice(host) => StoreWork::of(host),
            Subject::Native(_) => None,
        }
    }

    fn cpu_now(&self) -> (Option<f64>, Option<f64>) {
        (self.server_pid.as_deref().and_then(cpu_seconds), cpu_seconds("self"))
    }

    /// Offers `rate` events/s for `seconds` (open loop), then waits for the backlog to
    /// drain. `per_second` prints a line each second; `abandon_behind` stops the load once
    /// the backlog is that many seconds' events or a request failed (the step is lost
    /// anyway, and stopping early keeps its backlog short to drain).
    fn step(&mut self, rate: u64, seconds: u64, per_second: bool, abandon_behind: Option<f64>) -> Step {
        let recorded = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
        let delivered_before: u64 = self.delivered_all().iter().sum();
        let cpu_before = self.cpu_now();
        let store_before = self.store_now();
        let started = Instant::now();
        let load = {
            let (recorded, failed, sent, stop, latencies) = (
                recorded.clone(),
                failed.clone(),
                sent.clone(),
                stop.clone(),
                latencies.clone(),
            );
            let (client, webhook) = (self.client.clone(), self.webhook.clone());
            let first_order = self.recorded_before;
            self.runtime.spawn(async move {
                // Open loop: requests start on schedule whether or not earlier ones
                // finished (up to IN_FLIGHT at once).
                let in_flight = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT as usize));
                let mut ticks = tokio::time::interval(Duration::from_millis(1));
                let begun = Instant::now();
                let total = rate * seconds;
                let mut count = 0;
                while count < total && !stop.load(Ordering::Relaxed) {
                    ticks.tick().await;
                    // As many as the schedule says by now, whatever the tick's jitter.
                    let due = ((begun.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                    while count < due {
                        count += 1;
                        let Ok(slot) = in_flight.clone().try_acquire_owned() else {
                            failed.fetch_add(1, Ordering::Relaxed);
                            continue;
                        };
                        let order = first_order + count;
                        let request = client
                            .post(&webhook)
                            .header("content-type", "application/json")
                            .body(format!("{{\"order\":{order},\"item\":\"bench\",\"amount\":12.5}}"));
                        let (recorded, failed, latencies) = (recorded.clone(), failed.clone(), latencies.clone());
                        tokio::spawn(async move {
                            let begun = Instant::now();
                            match request.send().await {
                                Ok(response) if response.status().is_success() => {
                                    recorded.fetch_add(1, Ordering::Relaxed);
                                    latencies.lock().unwrap().push(begun.elapsed().as_micros() as u64);
                                }
                                _ => {
                                    failed.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            drop(slot);
                        });
                    }
                    sent.store(count, Ordering::Relaxed);
                }
                // The load is over once every request it made has been answered.
                let _ = in_flight.acquire_many(IN_FLIGHT).await;
            })
        };

        let mut last = (0u64, self.delivered_all());
        let mut backlogs = Vec::new();
        let mut abandoned = None;
        if per_second {
            println!(
                "{:>4} {:>9} {:>24} {:>8} {:>9} {:>9}",
                "s", "recorded", "delivered/s per sub", "backlog", "p50 ms", "p99 ms"
            );
        }
        while !load.is_finished() {
            // Sleep in short slices so that the end of the load is seen soon.
            let second = Instant::now();
            while second.elapsed() < Duration::from_secs(1) && !load.is_finished() {
                std::thread::sleep(Duration::from_millis(20));
            }
            if second.elapsed() < Duration::from_millis(500) {
                break;
            }
            let now_recorded = recorded.load(Ordering::Relaxed);
            let now_delivered = self.delivered_all();
            let backlog = (self.recorded_before + now_recorded).saturating_sub(self.delivered_min());
            backlogs.push(backlog);
            if abandoned.is_none()
                && let Some(behind) = abandon_behind
            {
                let failures = failed.load(Ordering::Relaxed);
                if failures > 0 {
                    abandoned = Some(format!("{failures} requests failed or were refused; stopped"));
                } else if backlog as f64 > rate as f64 * behind {
                    abandoned = Some(format!("delivery fell behind: backlog {backlog}; stopped"));
                }
                if abandoned.is_some() {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            if per_second {
                let per_sub: Vec<String> = now_delivered
                    .iter()
                    .zip(&last.1)
                    .map(|(n, l)| (n - l).to_string())
                    .collect();
                let mut window: Vec<u64> = latencies.lock().unwrap().clone();
                window.sort_unstable();
                println!(
                    "{:>4} {:>9} {:>24} {:>8} {:>9.2} {:>9.2}",
                    started.elapsed().as_secs(),
                    now_recorded - last.0,
                    per_sub.join(" "),
                    backlog,
                    percentile(&window, 0.5),
                    percentile(&window, 0.99)
                );
            }
            last = (now_recorded, now_delivered);
        }
        let _ = self.runtime.block_on(load);
        let load_seconds = started.elapsed().as_secs_f64();
        let cpu_after = self.cpu_now();
        let recorded = recorded.load(Ordering::Relaxed);
        let drain_started = Instant::now();
        let all = self.recorded_before + recorded;
        while self.delivered_min() < all && drain_started.elapsed() < DRAIN_LIMIT {
            std::thread::sleep(Duration::from_millis(20));
        }
        let drained = (self.delivered_min() >= all).then(|| drain_started.elapsed().as_secs_f64());
        // The last attempts' records are written after their webhooks were received.
        std::thread::sleep(Duration::from_millis(200));
        let store = self
            .store_now()
            .zip(store_before)
            .map(|(after, before)| after.since(before));
        self.recorded_before = all;
        let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
        latencies.sort_unstable();
        let spent = |before: Option<f64>, after: Option<f64>| Some(after? - before?);
        Step {
            rate,
            seconds,
            offered: sent.load(Ordering::Relaxed),
            recorded,
            failed: failed.load(Ordering::Relaxed),
            abandoned,
            load_seconds,
            backlogs,
            drained,
            delivered: self.delivered_all().iter().sum::<u64>() - delivered_before,
            latencies,
            cpu: (spent(cpu_before.0, cpu_after.0), spent(cpu_before.1, cpu_after.1)),
            store,
        }
    }
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();

    let counts = Arc::new(Counts {
        per_path: (0..options.subscriptions).map(|_| AtomicU64::new(0)).collect(),
    });
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let receiver = listener.local_addr().unwrap();
    let serving = counts.clone();
    runtime.spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let counts = serving.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request| receive(counts.clone(), request));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });

    let mut targets: Vec<(String, String)> = (0..options.subscriptions)
        .map(|index| (format!("s{index}"), format!("http://{receiver}/s{index}")))
        .collect();
    if options.slow {
        targets.push(("slow".into(), format!("http://{receiver}/slow")));
    }
    let subject = match &options.native {
        Some(binary) => Subject::Native(NativeFanOut::start(
            binary,
            &targets.iter().map(|(_, url)| url.clone()).collect::<Vec<_>>(),
        )),
        None => {
            let mut config =
                String::from("[delivery]\nallow-loopback = true\nattempt-timeout-ms = 2000\nmax-attempts = 3\n");
            for (id, url) in &targets {
                config.push_str(&format!("\n[[subscriptions]]\nid = \"{id}\"\nurl = \"{url}\"\n"));
            }
            let mut host = Host::builder()
                .plugin("webhook", guest("webhook"), None)
                .config(&config)
                .env("SLUICE_LOG", "warn");
            if let Some(binary) = &options.sluice {
                host = host.binary(binary);
            }
            Subject::Sluice(Box::new(host.start()))
        }
    };
    println!(
        "{}, {} subscription(s){} on {receiver}, {}",
        subject.describe(),
        options.subscriptions,
        if options.slow { " + 1 that never answers" } else { "" },
        if options.saturate {
            format!(
                "saturation from {} events/s, {} s per step",
                options.rate, options.seconds
            )
        } else {
            format!("{} events/s for {} s", options.rate, options.seconds)
        }
    );
    let mut bench = Bench {
        runtime,
        counts,
        webhook: subject.webhook_url(),
        server_pid: subject.pid().map(|pid| pid.to_string()),
        subject,
        client: reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap(),
        recorded_before: 0,
    };
    let outcome = if options.saturate {
        saturate(&mut bench, &options)
    } else {
        fixed_rate(&mut bench, &options)
    };
    // Stops the subject: exiting does not run destructors.
    drop(bench);
    if let Err(why) = outcome {
        eprintln!("the run is not valid: {why}");
        std::process::exit(1);
    }
}

/// One step at the offered rate, reported second by second (bench/delivery-fanout.sh).
/// `Err` when a request failed or an event was not delivered everywhere.
fn fixed_rate(bench: &mut Bench, options: &Options) -> Result<(), String> {
    let step = bench.step(options.rate, options.seconds, true, None);
    let status = match &bench.subject {
        Subject::Sluice(host) => Some(host.api_get("/v1/delivery").body),
        Subject::Native(_) => None,
    };
    let drained = step.drained.unwrap_or(f64::NAN);
    println!();
    println!(
        "recorded {} events in {:.1} s ({:.0}/s), {} refused or failed",
        step.recorded,
        step.load_seconds,
        step.recorded as f64 / step.load_seconds,
        step.failed
    );
    println!(
        "delivered {} webhooks ({:.0}/s during the run + drain); backlog at the end of the load {}, drained in {drained:.2} s",
        step.delivered,
        step.delivered as f64 / (step.load_seconds + drained),
        step.backlogs.last().copied().unwrap_or(0)
    );
    let half = step.backlogs.len() / 2;
    let first_half = step.backlogs[..half].iter().copied().max().unwrap_or(0);
    let second_half = step.backlogs[half..].iter().copied().max().unwrap_or(0);
    println!(
        "largest backlog: first half {first_half}, second half {second_half} (a growing backlog shows as a larger second half)"
    );
    println!(
        "cpu during the load: {} {} ({} per event), this benchmark (load + receiver) {}",
        if options.native.is_some() {
            "native fan-out"
        } else {
            "sluice"
        },
        step.cpu_share(step.cpu.0),
        step.cpu_per_event(),
        step.cpu_share(step.cpu.1)
    );
    if step.store.is_some() {
        println!("{} (load and drain)", step.store_per_event());
    }
    println!(
        "verdict: {}",
        match step.verdict() {
            Ok(()) => "sustained".to_string(),
            Err(why) => format!("not sustained ({why})"),
        }
    );
    if let Some(status) = status {
        println!("delivery status: {status}");
    }
    // One line for bench/run's table (bench/driver/src/script.rs): events/s recorded and
    // delivered everywhere, and the webhook requests' latency.
    println!(
        "result per_s={:.0} p50_ms={:.3} p99_ms={:.3}",
        step.recorded as f64 / step.load_seconds,
        percentile(&step.latencies, 0.5),
        percentile(&step.latencies, 0.99)
    );
    if step.failed > 0 || step.drained.is_none() {
        return Err(format!(
            "{} requests failed or not every event was delivered",
            step.failed
        ));
    }
    Ok(())
}

/// The highest rate sustained: up by half from `--rate` until a step is not sustained,
/// then bisected to within 5%. `Err` when no rate was sustained.
fn saturate(bench: &mut Bench, options: &Options) -> Result<(), String> {
    // A short warm-up (connections, compiled code, the store's caches), not judged.
    let warm = bench.step((options.rate / 4).max(50), 1, false, Some(1.0));
    println!("warm-up {}", warm.summary());
    let (mut sustained, mut failed): (Option<Step>, Option<u64>) = (None, None);
    let mut rate = options.rate.max(50);
    loop {
        let step = bench.step(rate, options.seconds, false, Some(1.0));
        println!("step {}", step.summary());
        if step.drained.is_none() {
            // Later steps would start behind: what was sustained so far stands.
            failed = Some(rate);
            break;
        }
        if step.verdict().is_ok() {
            sustained = Some(step);
        } else {
            failed = Some(rate);
        }
        let low = sustained.as_ref().map(|s| s.rate);
        rate = match (low, failed) {
            (Some(low), None) => low + low / 2,
            (None, Some(high)) if high <= 100 => break,
            (None, Some(high)) => high / 2,
            (Some(low), Some(high)) if (high as f64) <= low as f64 * 1.05 => break,
            (Some(low), Some(high)) => (low + high) / 2,
            (None, None) => unreachable!("a step ran"),
        };
    }
    let Some(best) = sustained else {
        return Err(format!(
            "no rate was sustained (the lowest tried, {} events/s, was not)",
            failed.unwrap_or(0)
        ));
    };
    println!(
        "saturation: {} events/s sustained, each delivered to {} subscriptions ({} deliveries/s); {} events/s not",
        best.rate,
        options.subscriptions,
        best.rate * options.subscriptions as u64,
        failed.map(|f| f.to_string()).unwrap_or_else(|| "no rate tried".into())
    );
    println!(
        "result per_s={} p50_ms={:.3} p99_ms={:.3}",
        best.rate,
        percentile(&best.latencies, 0.5),
        percentile(&best.latencies, 0.99)
    );
    Ok(())
}
