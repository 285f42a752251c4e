//! The sandbox's cost per request, in process: a fresh instance from the plugin's
//! `InstancePre`, the `handler` call, the store dropped — what every typed call (`CompiledPlugin::handle_webhook`) does for
//! every webhook request, without HTTP around it.
//!
//! Plugins measured, when their built components exist (`bench/run` builds them all):
//! - `bench (Rust)`: bench/guests/plugin, the load benchmark's plugin (parses a 1.1 KB
//!   webhook into typed structs, answers a summary; no host calls) — the per-call target
//!   is judged on it;
//! - `bench (Rust, no_std)`: the same plugin built with its `lean` feature (no standard
//!   library, so no WASI imports; a fixed-arena allocator), to show how much of the cost
//!   is the plugin's build rather than the host;
//! - `webhook (Rust|Python|JS)`: the webhook example in each language
//!   (`<target>/guests/wasm32-wasip2/release/webhook.wasm`,
//!   `<target>/bench-guests/{python,js}/webhook.wasm`), its handler recording one event
//!   (schema check and an in-memory store).
//!
//! Each plugin is measured three ways: instantiated and dropped without a call (the floor
//! every call pays), with `definition` (the smallest export) and with `handler`. The bench
//! plugin's work is also measured natively (`native (Rust)/bench work`), the reference for
//! what its `handler` costs inside the sandbox.
//!
//! Run: `cargo bench -p sluice --features bench --bench sandbox` (or `bench/run`, which prints the medians
//! in its table).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::bench::{
    AllowList, CallContext, CallFor, Caller, CompiledPlugin, Limits, OutboundClient, Profiling, Runtime, SharedStore,
    SqliteStore, Tiering, WebhookRequest,
};

/// The cargo target folder (`<target>/release/deps/sandbox-*` is this binary).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the bench binary has a path");
    exe.ancestors()
        .nth(3)
        .expect("<target>/<profile>/deps/<bench>")
        .to_path_buf()
}

struct Subject {
    /// `plugin (language)`.
    name: &'static str,
    path: PathBuf,
    /// The webhook request the handler gets.
    request: fn() -> WebhookRequest,
}

fn subjects() -> Vec<Subject> {
    let target = target_dir();
    vec![
        Subject {
            name: "bench (Rust)",
            path: target.join("bench-guests/wasm32-wasip2/release/bench_plugin.wasm"),
            request: bench_request,
        },
        Subject {
            name: "bench (Rust, no_std)",
            path: target.join("bench-guests-lean/wasm32-wasip2/release/bench_plugin.wasm"),
            request: bench_request,
        },
        Subject {
            name: "webhook (Rust)",
            path: target.join("guests/wasm32-wasip2/release/webhook.wasm"),
            request: webhook_request,
        },
        Subject {
            name: "webhook (Python)",
            path: target.join("bench-guests/python/webhook.wasm"),
            request: webhook_request,
        },
        Subject {
            name: "webhook (JS)",
            path: target.join("bench-guests/js/webhook.wasm"),
            request: webhook_request,
        },
    ]
}

fn bench_request() -> WebhookRequest {
    WebhookRequest {
        method: "POST".into(),
        path: "/".into(),
        query: String::new(),
        headers: vec![
            ("host".into(), "127.0.0.1:8080".into()),
            ("content-type".into(), "application/json".into()),
            ("content-length".into(), bench_work::SAMPLE_BODY.len().to_string()),
        ],
        body: bench_work::SAMPLE_BODY.to_vec(),
    }
}

fn webhook_request() -> WebhookRequest {
    WebhookRequest {
        query: "source=bench".into(),
        ..bench_request()
    }
}

/// A loaded plugin and everything a call needs.
struct Loaded {
    plugin: Arc<CompiledPlugin>,
    caller: Arc<Caller>,
    limits: Limits,
    context: CallContext,
}

fn load(runtime: &Runtime, tokio: &tokio::runtime::Runtime, path: &Path, store: &SharedStore) -> Loaded {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let plugin = tokio
        .block_on(runtime.load(bytes.into()))
        .unwrap_or_else(|e| panic!("cannot load {}: {e:#}", path.display()));
    let caller = Arc::new(Caller::new(
        "inst_bench".into(),
        "bench".into(),
        plugin.definition.clone(),
        store.clone(),
        AllowList::default(),
        OutboundClient::new(),
        Duration::from_secs(3600),
    ));
    let context = CallContext {
        bot_id: "bot_bench".into(),
        bot_user_id: "user_bench".into(),
        integration_id: "inst_bench".into(),
        integration_alias: "bench".into(),
        webhook_id: "0123456789abcdef0123456789abcdef".into(),
        webhook_url: "http://127.0.0.1:8080/webhooks/0123456789abcdef0123456789abcdef".into(),
        configuration: "{}".into(),
    };
    Loaded {
        plugin,
        caller,
        limits: Limits::default(),
        context,
    }
}

/// One fresh-instance handler call; panics unless the plugin answered 200.
async fn call(loaded: &Loaded, request: WebhookRequest) {
    let call = CallFor {
        caller: &loaded.caller,
        limits: &loaded.limits,
        context: &loaded.context,
        request_id: "req_bench",
    };
    let (result, _report) = loaded.plugin.handle_webhook(call, request).await;
    match result {
        Ok(Ok(answer)) if answer.status == 200 => {}
        other => panic!("the handler did not answer 200: {other:?}"),
    }
}

fn sandbox(c: &mut Criterion) {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let runtime = Runtime::new(None, Profiling::Off, Tiering::Off).expect("the engine");
    let store: SharedStore = Arc::new(SqliteStore::in_memory().expect("an in-memory store"));
    let mut group = c.benchmark_group("sandbox");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);

    // The bench plugin's work done natively, without a sandbox: what its `handler` would
    // cost if the guest's code ran as fast as the host's.
    group.bench_function("native (Rust)/bench work", |b| {
        b.iter(|| bench_work::handle(std::hint::black_box(bench_work::SAMPLE_BODY)).expect("the sample is a webhook"))
    });

    for subject in subjects() {
        if !subject.path.exists() {
            eprintln!(
                "sandbox: skipping {}: {} is not built",
                subject.name,
                subject.path.display()
            );
            continue;
        }
        let loaded = load(&runtime, &tokio, &subject.path, &store);
        let request = (subject.request)();
        // Fails loudly now rather than in the middle of a measurement.
        tokio.block_on(call(&loaded, request.clone()));

        // The floor: a fresh instance, no export called.
        group.bench_function(format!("{}/instantiate + drop", subject.name), |b| {
            b.iter(|| {
                let result = tokio.block_on(loaded.plugin.instantiate_and_drop());
                assert!(result.is_ok(), "{result:?}");
            })
        });
        // The smallest export, `definition`.
        group.bench_function(format!("{}/instantiate + definition + drop", subject.name), |b| {
            b.iter(|| {
                let result = tokio.block_on(loaded.plugin.probe());
                assert!(result.is_ok(), "{result:?}");
            })
        });
        group.bench_function(format!("{}/instantiate + handler + drop", subject.name), |b| {
            b.iter_batched(
                || request.clone(),
                |request| tokio.block_on(call(&loaded, request)),
                criterion::BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, sandbox);
criterion_main!(benches);
