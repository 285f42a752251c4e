//! The `sluice` command line. `main.rs` parses [`Cli`] and hands it to [`run`].

// The doc comments of the argument types are the `--help` text, written for a terminal.
#![allow(
    rustdoc::invalid_html_tags,
    reason = "the doc comments are clap's --help text, not HTML"
)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::Config;
use crate::config::TracesSettings;
use crate::precompile::{CacheLocation, compile};
use crate::runtime::Tiering;
use crate::scaffold::{Language, new_project};
use crate::serve::{MetricsAt, ServeOptions, serve};
use crate::telemetry::traces::{LogTraceIds, Tracing, WithTraceId, for_the_log, up_to};

/// A small, fast WebAssembly plugin host for chatbot and platform integrations.
#[derive(Debug, Parser)]
#[command(name = "sluice", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr: `text` for people, `json` for one JSON object
    /// a line with the same fields.
    #[arg(long, global = true, env = "SLUICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The format of log lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text each (in colour on a terminal).
    Text,
    /// One JSON object each: `timestamp`, `level`, `target`, `message` and the fields.
    Json,
}

/// The commands of `sluice`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every plugin (*.wasm) in the plugins folder, each at its own webhook URL.
    Serve(ServeArgs),
    /// Check a plugin against this host's contract and print its definition.
    Inspect(InspectArgs),
    /// Create a plugin project that builds into a working component.
    New(NewArgs),
    /// Compile plugins' optimised code into the compiled-code cache ahead of `sluice
    /// serve`, so that they serve at full speed from their first request.
    Compile(CompileArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at /openapi.json).
    Openapi,
}

/// `sluice compile`.
#[derive(Debug, Args)]
pub struct CompileArgs {
    /// The plugin components (.wasm).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The data folder of the `sluice serve` the code is for (its cache and cache key).
    #[arg(long, default_value = "sluice-data")]
    pub data: PathBuf,
    /// The cache folder, when `sluice serve` is given one. Default: <data>/cache.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// The cache key, when `sluice serve` is given one. Default: <data>/cache-key.
    #[arg(long)]
    pub cache_key: Option<PathBuf>,
}

/// `sluice serve --tiering`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TieringArg {
    /// Large plugins (Python, JavaScript) serve on quickly compiled baseline code first,
    /// replaced by optimised code compiled in the background.
    Auto,
    /// Every plugin is compiled optimised before it serves.
    Off,
    /// Baseline code only, never optimised, no cache (for measurements).
    BaselineOnly,
}

/// `sluice inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The plugin component (.wasm).
    pub file: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `sluice new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The plugin's name (lower-case letters, digits, - and _); also its integration name.
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: Language,
    /// Folder to create (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// `sluice serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Folder of plugins: every <name>.wasm is an installation, configured by <name>.toml.
    #[arg(long, default_value = "plugins")]
    pub plugins: PathBuf,
    /// Folder where sluice keeps its store, compiled code and API token.
    #[arg(long, default_value = "sluice-data")]
    pub data: PathBuf,
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Base URL outside platforms use to reach this host; webhook URLs start with it.
    /// Default: http://<listen address>.
    #[arg(long)]
    pub public_url: Option<String>,
    /// Bearer token for the bot and admin APIs. Default: the configuration file's, else
    /// one generated at first start and kept in the data folder.
    #[arg(long, env = "SLUICE_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<String>,
    /// Host configuration file (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Keep everything in this PostgreSQL database (postgres://user:password@host/db),
    /// which several sluice replicas may share. Default: the configuration file's
    /// `[store] url`, else the embedded SQLite store in the data folder.
    #[arg(long, env = "SLUICE_STORE_URL", hide_env_values = true)]
    pub store: Option<String>,
    /// Folder for compiled plugin code, reused across restarts (and hosts sharing it).
    /// Default: <data>/cache.
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// The secret that authenticates compiled code in the cache (created, mode 0600, when
    /// missing). Hosts sharing a cache folder share this key file. Default: <data>/cache-key.
    #[arg(long)]
    pub cache_key: Option<PathBuf>,
    /// Name plugin functions for `perf`: write /tmp/perf-<pid>.map, where `perf report`
    /// finds the name of every compiled plugin function (`wasm[N]::function[M]` and the
    /// export names), instead of showing them as unknown JIT code.
    #[arg(long, env = "SLUICE_PERF_MAP")]
    pub perf_map: bool,
    /// How plugins without optimised code in the cache are compiled before they serve.
    #[arg(long, value_enum, default_value = "auto")]
    pub tiering: TieringArg,
    /// Seconds to go on serving after SIGTERM or Ctrl-C with /readyz answering 503, so
    /// that load balancers take the host out before it stops accepting connections (a
    /// second signal ends the delay).
    #[arg(long, env = "SLUICE_DRAIN_DELAY", default_value_t = 0.0, value_name = "SECONDS")]
    pub drain_delay: f64,
    /// Serve GET /metrics (and the health checks) on this address instead of the main
    /// listener, for example 127.0.0.1:9464.
    #[arg(
        long,
        env = "SLUICE_METRICS_LISTEN",
        value_name = "ADDR",
        conflicts_with = "no_metrics"
    )]
    pub metrics_listen: Option<String>,
    /// Do not serve GET /metrics.
    #[arg(long)]
    pub no_metrics: bool,
}

impl From<ServeArgs> for ServeOptions {
    fn from(args: ServeArgs) -> ServeOptions {
        ServeOptions {
            plugins_dir: args.plugins,
            data_dir: args.data,
            listen: args.listen,
            public_url: args.public_url,
            api_token: args.api_token,
            store_url: args.store.filter(|url| !url.is_empty()),
            cache_dir: args.cache,
            cache_key: args.cache_key,
            perf_map: args.perf_map,
            tiering: match args.tiering {
                TieringArg::Auto => Tiering::Auto,
                TieringArg::Off => Tiering::Off,
                TieringArg::BaselineOnly => Tiering::BaselineOnly,
            },
            drain_delay: Duration::try_from_secs_f64(args.drain_delay).unwrap_or_default(),
            metrics: match (args.no_metrics, args.metrics_listen) {
                (true, _) => MetricsAt::Off,
                (false, Some(address)) => MetricsAt::Listen(address),
                (false, None) => MetricsAt::Main,
            },
        }
    }
}

/// Starts logging to stderr in `format`, with the spans exported too when `traces` says
/// where (the export goes through `runtime`). Answers what to flush at the end.
fn init_logging(
    format: LogFormat,
    traces: Option<&TracesSettings>,
    runtime: &tokio::runtime::Runtime,
) -> anyhow::Result<Option<Tracing>> {
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter};
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    use tracing_subscriber::{Layer as _, Registry};

    let mut filter = tracing_subscriber::EnvFilter::try_from_env("SLUICE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // wasmtime-wasi-http warns about a plugin's failed outbound call without saying whose;
    // sluice logs those itself, with the plugin and request. Asked for by name, it shows.
    if !std::env::var("SLUICE_LOG").is_ok_and(|directives| directives.contains("wasmtime_wasi_http")) {
        filter = filter.add_directive("wasmtime_wasi_http=error".parse().expect("a valid directive"));
    }
    // The spans made for traces stay out of the log: its lines read the same either way.
    let most_verbose = filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    let filter = filter.and(up_to(most_verbose, for_the_log));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs: Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> = match format {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
            let text = tracing_subscriber::fmt::format().with_ansi(ansi);
            logs.with_ansi(ansi)
                .event_format(WithTraceId::text(text))
                .with_filter(filter)
                .boxed()
        }
        // The event's fields at the top level beside `message`, as text shows them.
        LogFormat::Json => {
            let json = tracing_subscriber::fmt::format().json().flatten_event(true);
            logs.json()
                .event_format(WithTraceId::json(json))
                .with_filter(filter)
                .boxed()
        }
    };
    let mut layers = vec![logs];
    let mut exporting = None;
    if let Some(settings) = traces {
        let (started, spans) = Tracing::start(settings, runtime.handle().clone())?;
        layers.push(spans.boxed());
        let spans_logged_or_traced = most_verbose.max(crate::telemetry::traces::SPAN_LEVEL);
        layers.push(LogTraceIds.with_filter(up_to(spans_logged_or_traced, |_| true)).boxed());
        exporting = Some(started);
    }
    tracing_subscriber::registry().with(layers).init();
    if let Some(settings) = traces {
        tracing::info!(endpoint = %settings.traces_endpoint, service = %settings.service_name, "exporting traces over OTLP/HTTP");
    }
    Ok(exporting)
}

/// Runs a parsed command line; the exit code is 0 on success.
pub fn run(cli: Cli) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // `sluice serve` reads its configuration first: its `[telemetry]` says where traces go.
    let config = match &cli.command {
        Command::Serve(args) => match args.config.as_deref().map(Config::load).transpose() {
            Ok(config) => config.unwrap_or_default(),
            Err(error) => {
                eprintln!("error: {error:#}");
                return ExitCode::FAILURE;
            }
        },
        _ => Config::default(),
    };
    let traces = match &cli.command {
        Command::Serve(_) => config.0.telemetry.traces(|name| std::env::var(name).ok()),
        _ => None,
    };
    let exporting = match init_logging(cli.log_format, traces.as_ref(), &runtime) {
        Ok(exporting) => exporting,
        Err(error) => {
            eprintln!("error: cannot export traces: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(ServeOptions::from(args), config).await,
            Command::Openapi => {
                println!("{}", crate::http::openapi::document_json());
                Ok(())
            }
            Command::Inspect(args) => crate::inspect::inspect(&args.file, args.json).await,
            Command::New(args) => new_project(&args.name, args.lang, args.dir),
            Command::Compile(args) => {
                let location = CacheLocation {
                    data_dir: args.data,
                    cache_dir: args.cache,
                    cache_key: args.cache_key,
                };
                compile(&args.files, &location).await
            }
        }
    });
    // The runtime still runs: the last spans are sent through it.
    if let Some(exporting) = exporting {
        exporting.shutdown();
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
