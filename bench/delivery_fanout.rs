//! Delivery fan-out benchmark: drives the webhook example plugin at a fixed rate (open
//! loop) so that every request records one event, while sluice delivers every event to
//! N webhook subscriptions on a loopback receiver. Prints, per second, events recorded,
//! deliveries received per subscription, the backlog (recorded minus delivered to the
//! slowest subscription) and ingestion latency; then how long the backlog takes to drain.
//!
//! `--slow` adds one more subscription whose receiver never answers (every attempt runs
//! into the attempt timeout), to show that a slow receiver does not slow ingestion or the
//! other subscriptions. Run by bench/delivery-fanout.sh.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use sluice_tests::{Host, guest};

struct Options {
    rate: u64,
    seconds: u64,
    subscriptions: usize,
    slow: bool,
}

fn options() -> Options {
    let mut options = Options {
        rate: 5000,
        seconds: 20,
        subscriptions: 4,
        slow: false,
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
            other => panic!("unknown argument {other}; use --rate N --seconds N --subscriptions N [--slow]"),
        }
    }
    options
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

    let mut config = String::from("[delivery]\nallow-loopback = true\nattempt-timeout-ms = 2000\nmax-attempts = 3\n");
    for index in 0..options.subscriptions {
        config.push_str(&format!(
            "\n[[subscriptions]]\nid = \"s{index}\"\nurl = \"http://{receiver}/s{index}\"\n"
        ));
    }
    if options.slow {
        config.push_str(&format!(
            "\n[[subscriptions]]\nid = \"slow\"\nurl = \"http://{receiver}/slow\"\n"
        ));
    }
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .config(&config)
        .env("SLUICE_LOG", "warn")
        .start();
    let webhook = host.webhook_url("webhook");
    println!(
        "sluice at {} (data in {}), {} subscription(s){} on {receiver}, {} events/s for {} s",
        host.base,
        host.data.display(),
        options.subscriptions,
        if options.slow { " + 1 that never answers" } else { "" },
        options.rate,
        options.seconds
    );

    let client = reqwest::Client::builder().pool_max_idle_per_host(512).build().unwrap();
    let recorded = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<u64>::new()));
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
    let total_recorded = recorded.load(Ordering::Relaxed);
    let drain_started = Instant::now();
    while delivered_min(&counts) < total_recorded && drain_started.elapsed() < Duration::from_secs(120) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let drained = drain_started.elapsed().as_secs_f64();
    let delivered: u64 = counts.per_path.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let status = host.api_get("/v1/delivery").body;
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
    println!("delivery status: {status}");
    drop(host);
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
