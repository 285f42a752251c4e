//! Delivery fan-out benchmark: drives the webhook example plugin at a fixed rate (open
//! loop) so that every request records one event, while sluice delivers every event to
//! N webhook subscriptions on a loopback receiver. Prints, per second, events recorded,
//! deliveries received per subscription, the backlog (recorded minus delivered to the
//! slowest subscription) and ingestion latency; then how long the backlog takes to drain.
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
    rate: u64,
    seconds: u64,
    subscriptions: usize,
    slow: bool,
    /// The bench-native binary: measure its fan-out mode instead of sluice.
    native: Option<PathBuf>,
}

fn options() -> Options {
    let mut options = Options {
        rate: 5000,
        seconds: 20,
        subscriptions: 4,
        slow: false,
        native: None,
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
            "--native" => options.native = Some(args.next().expect("the bench-native binary after --native").into()),
            other => {
                panic!("unknown argument {other}; use --rate N --seconds N --subscriptions N [--slow] [--native PATH]")
            }
        }
    }
    options
}

/// What the load is sent to: sluice with the webhook example plugin, or the native
/// fan-out (the limit).
enum Subject {
    Sluice(Host),
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
            Subject::Sluice(
                Host::builder()
                    .plugin("webhook", guest("webhook"), None)
                    .config(&config)
                    .env("SLUICE_LOG", "warn")
                    .start(),
            )
        }
    };
    let webhook = subject.webhook_url();
    println!(
        "{}, {} subscription(s){} on {receiver}, {} events/s for {} s",
        subject.describe(),
        options.subscriptions,
        if options.slow { " + 1 that never answers" } else { "" },
        options.rate,
        options.seconds
    );

    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let recorded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
    let server_pid = subject.pid().map(|pid| pid.to_string());
    let cpu_now = || (server_pid.as_deref().and_then(cpu_seconds), cpu_seconds("self"));
    let cpu_before = cpu_now();
    let started = Instant::now();
    let load = {
        let (recorded, failed, latencies) = (recorded.clone(), failed.clone(), latencies.clone());
        let (rate, seconds) = (options.rate, options.seconds);
        runtime.spawn(async move {
            // Open loop: requests start on schedule whether or not earlier ones finished
            // (up to 2048 at once, so an overloaded host shows as failures, not as a
            // slower generator).
            let in_flight = Arc::new(tokio::sync::Semaphore::new(2048));
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            let begun = Instant::now();
            let total = rate * seconds;
            let mut sent = 0;
            while sent < total {
                ticks.tick().await;
                // As many as the schedule says by now, whatever the tick's jitter.
                let due = ((begun.elapsed().as_secs_f64() * rate as f64) as u64).min(total);
                while sent < due {
                    sent += 1;
                    let Ok(slot) = in_flight.clone().try_acquire_owned() else {
                        failed.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    let request = client
                        .post(&webhook)
                        .header("content-type", "application/json")
                        .body(format!("{{\"order\":{sent},\"item\":\"bench\",\"amount\":12.5}}"));
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
            }
            // The load is over once every request it made has been answered.
            let _ = in_flight.acquire_many(2048).await;
        })
    };

    let delivered_min = |counts: &Counts| {
        counts
            .per_path
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    let mut last = (0u64, vec![0u64; options.subscriptions]);
    let mut backlogs = Vec::new();
    let mut all_latencies: Vec<u64> = Vec::new();
    println!(
        "{:>4} {:>9} {:>24} {:>8} {:>9} {:>9}",
        "s", "recorded", "delivered/s per sub", "backlog", "p50 ms", "p99 ms"
    );
    while !load.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let now_recorded = recorded.load(Ordering::Relaxed);
        let now_delivered: Vec<u64> = counts.per_path.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let per_sub: Vec<String> = now_delivered
            .iter()
            .zip(&last.1)
            .map(|(n, l)| (n - l).to_string())
            .collect();
        let backlog = now_recorded.saturating_sub(delivered_min(&counts));
        backlogs.push(backlog);
        let mut window: Vec<u64> = std::mem::take(&mut *latencies.lock().unwrap());
        window.sort_unstable();
        all_latencies.extend_from_slice(&window);
        println!(
            "{:>4} {:>9} {:>24} {:>8} {:>9.2} {:>9.2}",
            started.elapsed().as_secs(),
            now_recorded - last.0,
            per_sub.join(" "),
            backlog,
            percentile(&window, 0.5),
            percentile(&window, 0.99)
        );
        last = (now_recorded, now_delivered);
    }
    let load_seconds = started.elapsed().as_secs_f64();
    let cpu_after = cpu_now();
    let total_recorded = recorded.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    while delivered_min(&counts) < total_recorded && drain_started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = drain_started.elapsed().as_secs_f64();
    let delivered: u64 = counts.per_path.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let status = match &subject {
        Subject::Sluice(host) => Some(host.api_get("/v1/delivery").body),
        Subject::Native(_) => None,
    };
    println!();
    println!(
        "recorded {total_recorded} events in {load_seconds:.1} s ({:.0}/s), {} refused or failed",
        total_recorded as f64 / load_seconds,
        failed.load(Ordering::Relaxed)
    );
    println!(
        "delivered {delivered} webhooks ({:.0}/s during the run + drain); backlog at the end of the load {}, drained in {drained:.2} s",
        delivered as f64 / (load_seconds + drained),
        backlogs.last().copied().unwrap_or(0)
    );
    let half = backlogs.len() / 2;
    let first_half = backlogs[..half].iter().copied().max().unwrap_or(0);
    let second_half = backlogs[half..].iter().copied().max().unwrap_or(0);
    println!(
        "largest backlog: first half {first_half}, second half {second_half} (a growing backlog shows as a larger second half)"
    );
    let share = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) => format!(
            "{:.1} s ({:.0}% of one core)",
            after - before,
            100.0 * (after - before) / load_seconds
        ),
        _ => "unknown".into(),
    };
    println!(
        "cpu during the load: {} {}, this benchmark (load + receiver) {}",
        if options.native.is_some() {
            "native fan-out"
        } else {
            "sluice"
        },
        share(cpu_before.0, cpu_after.0),
        share(cpu_before.1, cpu_after.1)
    );
    if let Some(status) = status {
        println!("delivery status: {status}");
    }
    drop(subject);
    // One line for bench/run's table (bench/driver/src/script.rs): deliveries per second
    // and the webhook requests' latency over the whole run.
    all_latencies.extend(std::mem::take(&mut *latencies.lock().unwrap()));
    all_latencies.sort_unstable();
    println!(
        "result per_s={:.0} p50_ms={:.3} p99_ms={:.3}",
        delivered as f64 / (load_seconds + drained),
        percentile(&all_latencies, 0.5),
        percentile(&all_latencies, 0.99)
    );
    let failed = failed.load(Ordering::Relaxed);
    if failed > 0 || delivered_min(&counts) < total_recorded {
        eprintln!("the run is not valid: {failed} requests failed or not every event was delivered");
        std::process::exit(1);
    }
}
