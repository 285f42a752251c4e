//! The configurations the benchmark measures, one table row each.
//!
//! Adding a row is one entry in [`rows`]:
//! - an HTTP server: a [`RowKind::Http`] whose `start` launches it pinned to the server
//!   CPU and returns the URL to POST the webhook body to (its reply is checked against
//!   `bench_work::EXPECTED_REPLY` unless `expected` says otherwise, then wrk loads it);
//! - anything else (queued ingest, delivery fan-out): a [`RowKind::Script`], an
//!   executable under bench/ that runs one measured round itself (see [`crate::script`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::Options;
use crate::server::{self, Server};

/// How long a server may take to start (sluice compiles its plugins on a cold cache).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The API token of the sluice servers the benchmark starts.
const API_TOKEN: &str = "bench-token";

pub struct Row {
    /// Short key shown before the label: `a`, `b`, `c`, ...
    pub key: &'static str,
    pub label: String,
    pub kind: RowKind,
}

pub enum RowKind {
    /// A server loaded with wrk.
    Http {
        start: fn(&Options) -> anyhow::Result<Running>,
    },
    /// An executable that measures one round itself, with its arguments and the `sluice`
    /// binary it runs.
    Script {
        path: PathBuf,
        args: Vec<String>,
        sluice: PathBuf,
    },
    /// Not measured in this run, and why.
    Skipped { reason: String },
}

/// A started server and where to send requests.
pub struct Running {
    pub server: Server,
    pub url: String,
    /// The server's folder, removed when the row is done.
    pub _dir: Option<tempfile::TempDir>,
}

/// Every configuration, in table order, narrowed to `--rows` when given.
pub fn rows(options: &Options) -> Vec<Row> {
    let mut rows = all_rows(options);
    if !options.rows.is_empty() {
        rows.retain(|row| options.rows.iter().any(|key| key == row.key));
    }
    rows
}

fn all_rows(options: &Options) -> Vec<Row> {
    let mut rows = vec![
        Row {
            key: "a",
            label: "native hyper + tokio (the limit)".into(),
            kind: RowKind::Http { start: start_native },
        },
        Row {
            key: "b",
            label: format!(
                "sluice, fresh instance per request ({} plugins loaded)",
                options.plugins
            ),
            kind: RowKind::Http { start: start_sluice },
        },
    ];
    if let Some(reference) = &options.reference_sluice {
        rows.push(Row {
            key: "b-ref",
            label: format!("(b) with the reference build {}", reference.display()),
            kind: RowKind::Http {
                start: start_reference_sluice,
            },
        });
    }
    rows.push(match wasmtime(options) {
        Some(_) => Row {
            key: "c",
            label: "wasmtime serve, wasi:http proxy (the peer)".into(),
            kind: RowKind::Http { start: start_wasmtime },
        },
        None => Row {
            key: "c",
            label: "wasmtime serve, wasi:http proxy (the peer)".into(),
            kind: RowKind::Skipped {
                reason: "wasmtime is not on PATH (cargo install wasmtime-cli --version 50.0.1 --locked)".into(),
            },
        },
    });
    if options.quick {
        return rows;
    }
    // Not the same work as (a)-(c): their own units, no ratios.
    rows.push(Row {
        key: "d",
        label: "sluice, queued trigger ingest (events/s accepted durably, workers = 0)".into(),
        kind: RowKind::Script {
            path: options.bench_dir.join("rows/trigger-ingest"),
            args: Vec::new(),
            sluice: options.sluice.clone(),
        },
    });
    if let Some(reference) = &options.reference_sluice {
        rows.push(Row {
            key: "d-ref",
            label: format!("(d) with the reference build {}", reference.display()),
            kind: RowKind::Script {
                path: options.bench_dir.join("rows/trigger-ingest"),
                args: Vec::new(),
                sluice: reference.clone(),
            },
        });
    }
    // The limit of (e): the same load, receiver and saturation search, the fan-out done
    // natively in memory.
    rows.push(Row {
        key: "e0",
        label: "native fan-out to 4 webhook subscriptions, in memory (the limit of (e); events/s sustained at saturation, each delivered 4 times; not pinned)"
            .into(),
        kind: RowKind::Script {
            path: options.bench_dir.join("rows/delivery-fanout-native"),
            args: Vec::new(),
            sluice: options.sluice.clone(),
        },
    });
    rows.push(Row {
        key: "e",
        label: "sluice, delivery fan-out to 4 webhook subscriptions (events/s sustained at saturation, each delivered 4 times; not pinned)".into(),
        kind: RowKind::Script {
            path: options.bench_dir.join("rows/delivery-fanout"),
            args: Vec::new(),
            sluice: options.sluice.clone(),
        },
    });
    if let Some(reference) = &options.reference_sluice {
        rows.push(Row {
            key: "e-ref",
            label: format!("(e) with the reference build {}", reference.display()),
            kind: RowKind::Script {
                path: options.bench_dir.join("rows/delivery-fanout"),
                args: Vec::new(),
                sluice: reference.clone(),
            },
        });
    }
    // The store's cost: the same paths on SQLite and on PostgreSQL, and on two replicas
    // sharing the database (bench/run starts PostgreSQL for the run when it is there).
    let store_row = |key: &'static str, label: &str, args: &[&str]| Row {
        key,
        label: label.into(),
        kind: if args[1] == "postgres" && std::env::var_os("BENCH_PG_URL").is_none() {
            RowKind::Skipped {
                reason: "PostgreSQL 15 is not installed (scripts/setup --tests installs it)".into(),
            }
        } else {
            RowKind::Script {
                path: options.bench_dir.join("rows/store-path"),
                args: args.iter().map(|arg| arg.to_string()).collect(),
                sluice: options.sluice.clone(),
            }
        },
    };
    rows.extend([
        store_row(
            "f",
            "sluice, webhook recording an event, SQLite (requests/s)",
            &["webhook", "sqlite"],
        ),
        store_row(
            "f-pg",
            "sluice, webhook recording an event, PostgreSQL (requests/s; PostgreSQL not pinned)",
            &["webhook", "postgres"],
        ),
        store_row(
            "f-pg2",
            "two sluice replicas on one PostgreSQL, one wrk each, rates added (requests/s; both pinned to the server CPU)",
            &["webhook", "postgres", "2"],
        ),
        store_row(
            "d-pg",
            "sluice, queued trigger ingest, PostgreSQL (events/s; PostgreSQL not pinned)",
            &["trigger", "postgres"],
        ),
        store_row(
            "d-pg2",
            "two sluice replicas on one PostgreSQL, queued trigger ingest, rates added (events/s)",
            &["trigger", "postgres", "2"],
        ),
    ]);
    rows
}

/// The `wasmtime` binary: `--wasmtime`, else the one on PATH.
pub fn wasmtime(options: &Options) -> Option<PathBuf> {
    if let Some(path) = &options.wasmtime {
        return Some(path.clone());
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("wasmtime"))
            .find(|candidate| candidate.is_file())
    })
}

fn listening(line: &str) -> Option<String> {
    server::after(line, "listening on ").map(str::to_string)
}

fn start_native(options: &Options) -> anyhow::Result<Running> {
    let mut server = Server::start(options.server_cpu, &options.native, &["127.0.0.1:0".into()], &[])?;
    let base = server.wait_for(START_TIMEOUT, listening)?;
    Ok(Running {
        server,
        url: format!("{base}/"),
        _dir: None,
    })
}

fn start_sluice(options: &Options) -> anyhow::Result<Running> {
    start_sluice_binary(options, &options.sluice)
}

fn start_reference_sluice(options: &Options) -> anyhow::Result<Running> {
    let reference = options
        .reference_sluice
        .as_deref()
        .context("--reference-sluice is not given")?;
    start_sluice_binary(options, reference)
}

fn start_sluice_binary(options: &Options, sluice: &Path) -> anyhow::Result<Running> {
    let dir = tempfile::tempdir()?;
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins)?;
    for n in 0..options.plugins {
        std::fs::copy(&options.plugin, plugins.join(format!("bench-{n:02}.wasm")))
            .with_context(|| format!("cannot copy {}", options.plugin.display()))?;
    }
    let args: Vec<String> = vec![
        "serve".into(),
        "--plugins".into(),
        path_arg(&plugins),
        "--data".into(),
        path_arg(&dir.path().join("data")),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--api-token".into(),
        API_TOKEN.into(),
    ];
    let mut server = Server::start(options.server_cpu, sluice, &args, &[("SLUICE_LOG", "warn")])?;
    let base = server.wait_for(START_TIMEOUT, listening)?;
    let url = webhook_url(&base, "bench-00").with_context(|| server.output())?;
    Ok(Running {
        server,
        url,
        _dir: Some(dir),
    })
}

/// The webhook URL of installation `name`, from the admin API.
fn webhook_url(base: &str, name: &str) -> anyhow::Result<String> {
    let list: Value = reqwest::blocking::Client::new()
        .get(format!("{base}/v1/admin/installations"))
        .bearer_auth(API_TOKEN)
        .send()?
        .error_for_status()?
        .json()?;
    let installation = list["installations"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["name"] == name))
        .with_context(|| format!("sluice has no installation {name}: {list}"))?;
    if installation["status"] != "active" {
        bail!("installation {name} is not active: {installation}");
    }
    installation["webhookUrl"]
        .as_str()
        .map(str::to_string)
        .context("the installation has no webhookUrl")
}

fn start_wasmtime(options: &Options) -> anyhow::Result<Running> {
    let wasmtime = wasmtime(options).context("wasmtime is not on PATH")?;
    let address = format!("127.0.0.1:{}", server::free_port()?);
    // `-S cli` links the WASI CLI interfaces Rust's std imports besides wasi:http.
    let args: Vec<String> = vec![
        "serve".into(),
        "-S".into(),
        "cli".into(),
        "--addr".into(),
        address.clone(),
        path_arg(&options.proxy),
    ];
    let mut server = Server::start(options.server_cpu, &wasmtime, &args, &[])?;
    server.wait_for(START_TIMEOUT, |line| line.contains("Serving HTTP on").then_some(()))?;
    Ok(Running {
        server,
        url: format!("http://{address}/"),
        _dir: None,
    })
}

fn path_arg(path: &Path) -> String {
    path.display().to_string()
}

/// POSTs the sample body once and checks the answer is exactly the expected reply.
pub fn check_reply(url: &str) -> anyhow::Result<()> {
    let answer = reqwest::blocking::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(bench_work::SAMPLE_BODY)
        .send()
        .with_context(|| format!("cannot POST to {url}"))?;
    let status = answer.status();
    let body = answer.bytes()?;
    if status != 200 || body.as_ref() != bench_work::EXPECTED_REPLY {
        bail!(
            "{url} answered {status} {:?}; expected 200 {:?}",
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(bench_work::EXPECTED_REPLY)
        );
    }
    Ok(())
}
