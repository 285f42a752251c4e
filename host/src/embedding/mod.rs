//! The embedding API: sluice as a library that an application mounts in its own server.
//! [`Host::builder`] configures and starts a host; [`Host::router`] is its HTTP surface
//! to nest under any prefix; the other methods of [`Host`] call into it in-process.
//! `sluice serve` is built on this API (its own are the process's concerns: signals, the
//! open-file limit, the listeners and their accept loop).

mod calls;
mod feed;

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use tokio::sync::watch;

pub use calls::{ActionResult, Error, EventList, EventQuery, Message, StateScope};
pub use feed::{Envelope, EventFeed};

use crate::config::HostConfig;
use crate::delivery::Delivery;
use crate::http::health::{Health, Phase};
use crate::http::{self, App};
use crate::ids::{record_id, secret_token};
use crate::jobs::Jobs;
use crate::plugins::{FolderWatcher, HostIdentity, PluginHost};
use crate::precompile::CacheLocation;
pub use crate::runtime::Tiering;
use crate::runtime::{Profiling, Runtime};
use crate::store::{self, PostgresStore, SharedStore, SqliteStore, Tags};
use crate::telemetry::metrics::metrics;

/// How long running requests (and trigger events) may take to finish when the host stops.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// How long webhook attempts in flight may take to finish when the host stops.
pub const DELIVERY_STOP_TIMEOUT: Duration = Duration::from_secs(5);

/// The host configuration: limits, delivery, subscriptions, NATS and triggers, in the
/// format of the host configuration file (docs/configuration.md). The default is what
/// `sluice serve` runs with when given no file.
#[derive(Debug, Clone, Default)]
pub struct Config(pub(crate) HostConfig);

impl Config {
    /// Parses the host configuration from TOML text.
    pub fn from_toml(text: &str) -> anyhow::Result<Config> {
        Ok(Config(
            toml::from_str(text).context("not a valid sluice configuration")?,
        ))
    }

    /// Reads the host configuration file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        HostConfig::load(path).map(Config)
    }

    /// The `public-url` it sets, if any.
    pub fn public_url(&self) -> Option<String> {
        self.0.public_url.clone()
    }
}

/// Where the host keeps what it records.
#[derive(Debug, Clone)]
enum StoreChoice {
    /// The embedded SQLite store in this folder (also the API token, the compiled-code
    /// cache and copies of the plugins each installation ran).
    Folder(PathBuf),
    /// The embedded store in a temporary folder, removed when the host is dropped.
    Temporary,
}

/// What a host shows before it is built: the health checks, the router that requests
/// served while loading wait for, and the host itself for the metrics' state gauges.
struct StartUp {
    health: Health,
    router: watch::Sender<Option<Router>>,
    serving: http::metrics::Serving,
}

impl fmt::Debug for StartUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StartUp")
            .field("phase", &self.health.phase())
            .finish_non_exhaustive()
    }
}

/// Configures and starts a [`Host`]; from [`Host::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until build() is awaited"]
pub struct HostBuilder {
    store: StoreChoice,
    store_url: Option<String>,
    plugins_dir: Option<PathBuf>,
    watch_plugins: bool,
    plugins: Vec<(String, Vec<u8>, Option<String>)>,
    config: Config,
    api_token: Option<String>,
    public_url: Option<String>,
    cache_dir: Option<PathBuf>,
    cache_key: Option<PathBuf>,
    profiling: Profiling,
    tiering: Tiering,
    metrics_route: bool,
    start_up: Arc<StartUp>,
}

impl HostBuilder {
    /// Keeps the store in `folder` (created if missing): the embedded SQLite store, the
    /// API token when none is given, the compiled-code cache. The default is
    /// `./sluice-data`.
    pub fn data_dir(mut self, folder: impl Into<PathBuf>) -> HostBuilder {
        self.store = StoreChoice::Folder(folder.into());
        self
    }

    /// Keeps everything in a temporary folder, removed when the host is dropped: for
    /// tests, and for applications that need nothing kept across restarts.
    pub fn temporary(mut self) -> HostBuilder {
        self.store = StoreChoice::Temporary;
        self
    }

    /// Keeps what the host records in the PostgreSQL database at `url`
    /// (`postgres://user:password@host/db`), which several hosts may share, instead of the
    /// embedded SQLite store; the data folder still holds the API token, the code cache and
    /// this host's replica id. Without one, the configuration's `[store] url`, if any; the
    /// configuration also sets the pool size.
    pub fn store_url(mut self, url: impl Into<String>) -> HostBuilder {
        self.store_url = Some(url.into()).filter(|url: &String| !url.is_empty());
        self
    }

    /// Installs every `<name>.wasm` in `folder` (with its `<name>.toml` sidecar). With the
    /// embedded store, plugins given with [`HostBuilder::plugin`] and
    /// [`Host::install_plugin`] are written there too (with PostgreSQL the store keeps
    /// them). Without it, the folder is `<data folder>/installed`.
    pub fn plugins_dir(mut self, folder: impl Into<PathBuf>) -> HostBuilder {
        self.plugins_dir = Some(folder.into());
        self
    }

    /// Applies changes to the plugins folder while serving (hot reload), as `sluice serve`
    /// does. Off by default.
    pub fn watch_plugins(mut self, watch: bool) -> HostBuilder {
        self.watch_plugins = watch;
        self
    }

    /// Installs the component `bytes` as installation `name` when the host starts, with
    /// `sidecar` (the TOML of a `<name>.toml` file) as its configuration. A plugin that
    /// cannot be installed fails [`HostBuilder::build`].
    pub fn plugin(mut self, name: &str, bytes: impl Into<Vec<u8>>, sidecar: Option<&str>) -> HostBuilder {
        self.plugins
            .push((name.to_string(), bytes.into(), sidecar.map(str::to_string)));
        self
    }

    /// The host configuration (limits, delivery, triggers); see [`Config`].
    pub fn config(mut self, config: Config) -> HostBuilder {
        self.config = config;
        self
    }

    /// The bearer token the bot, trigger management and admin APIs require. Without one:
    /// the configuration's, else the one kept in the data folder, else a new one (kept
    /// there; [`Host::api_token`] answers it).
    pub fn api_token(mut self, token: impl Into<String>) -> HostBuilder {
        self.api_token = Some(token.into()).filter(|t: &String| !t.is_empty());
        self
    }

    /// The URL outside platforms reach the host's routes at, including the prefix the
    /// application nests [`Host::router`] under (`https://example.com/integrations`):
    /// webhook URLs start with it. Without one, the configuration's, else
    /// `http://127.0.0.1`.
    pub fn public_url(mut self, url: impl Into<String>) -> HostBuilder {
        self.public_url = Some(url.into());
        self
    }

    /// Keeps compiled plugin code in `folder` instead of `<data folder>/cache`.
    pub fn cache_dir(mut self, folder: impl Into<PathBuf>) -> HostBuilder {
        self.cache_dir = Some(folder.into());
        self
    }

    /// Authenticates the compiled-code cache's entries with the key in `file` (created,
    /// mode 0600, when missing) instead of `<data folder>/cache-key`: hosts that share a
    /// cache folder share its key.
    pub fn cache_key(mut self, file: impl Into<PathBuf>) -> HostBuilder {
        self.cache_key = Some(file.into());
        self
    }

    /// Writes a perf map of the plugins' compiled code (`/tmp/perf-<pid>.map`), so that
    /// `perf` names the plugins' functions.
    pub fn perf_map(mut self, enabled: bool) -> HostBuilder {
        self.profiling = if enabled { Profiling::PerfMap } else { Profiling::Off };
        self
    }

    /// Whether large plugins serve on baseline code first while their optimised code is
    /// compiled in the background; [`Tiering::Auto`] by default, as `sluice serve`.
    pub fn tiering(mut self, tiering: Tiering) -> HostBuilder {
        self.tiering = tiering;
        self
    }

    /// Serves `GET /metrics` (the Prometheus metrics, public) on [`Host::router`] too. Off
    /// by default; [`HostBuilder::ops_router`] serves them on a listener of their own.
    pub fn metrics_route(mut self, serve: bool) -> HostBuilder {
        self.metrics_route = serve;
        self
    }

    /// A router to serve while [`HostBuilder::build`] runs, so that the application
    /// listens from the start: `/healthz` answers at once and `/readyz` answers 503
    /// (`loading plugins`) until the host serves; every other request waits for the build
    /// and then goes through [`Host::router`] (503 if the build failed). Once the host is
    /// built, serving [`Host::router`] itself saves that detour.
    pub fn loading_router(&self) -> Router {
        http::health::while_loading(self.start_up.health.clone(), self.start_up.router.subscribe())
    }

    /// `GET /metrics`, `/healthz` and `/readyz` alone, for a listener of their own that
    /// scrapers and probes reach: they answer from now on, through the build, serving and
    /// draining. Until the host is built, the metrics are the counters alone.
    pub fn ops_router(&self) -> Router {
        http::metrics::ops_router(self.start_up.health.clone(), self.start_up.serving.clone())
    }

    /// Opens the store, loads the plugins (and runs `register` for new installations),
    /// and starts the background work: trigger workers and schedules, event delivery,
    /// and folder watching when asked for. Must be awaited on a multi-threaded tokio
    /// runtime.
    pub async fn build(self) -> anyhow::Result<Host> {
        let config = self.config.0;
        let (data_dir, temporary) = match &self.store {
            StoreChoice::Folder(folder) => (folder.clone(), None),
            StoreChoice::Temporary => {
                let folder = tempfile::Builder::new()
                    .prefix("sluice-")
                    .tempdir()
                    .context("cannot create a temporary folder for the host")?;
                (folder.path().to_path_buf(), Some(folder))
            }
        };
        ensure_dir(&data_dir, "data folder")?;
        let plugins_dir = self.plugins_dir.clone().unwrap_or_else(|| data_dir.join("installed"));
        ensure_dir(&plugins_dir, "plugins folder")?;
        let store = match self.store_url.clone().or_else(|| config.store.url.clone()) {
            Some(url) if !url.is_empty() => open_postgres(&url, &config, &data_dir, &plugins_dir).await?,
            _ => Arc::new(SqliteStore::open(&data_dir)?) as SharedStore,
        };
        let start_up = self.start_up;
        start_up.health.set_store(store.clone());
        let (api_token, generated_token) = match self.api_token.clone().or_else(|| config.api_token.clone()) {
            Some(token) if !token.is_empty() => (token, false),
            _ => kept_api_token(&data_dir, temporary.is_none())?,
        };
        let public_url = self
            .public_url
            .clone()
            .or(config.public_url.clone())
            .unwrap_or_else(|| "http://127.0.0.1".to_string());
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
        // A temporary host compiles afresh unless given a cache folder to share.
        let cache = match (&self.cache_dir, &temporary) {
            (None, Some(_)) => None,
            _ => Some(
                CacheLocation {
                    data_dir: data_dir.clone(),
                    cache_dir: self.cache_dir.clone(),
                    cache_key: self.cache_key.clone(),
                }
                .open()?,
            ),
        };
        let runtime = Arc::new(Runtime::new(cache, self.profiling, self.tiering)?);
        let plugins = Arc::new(PluginHost::new(
            runtime,
            store.clone(),
            identity,
            plugins_dir,
            &data_dir,
        )?);
        plugins.sync().await?;
        for (name, bytes, sidecar) in self.plugins {
            plugins
                .install(&name, bytes, sidecar.as_deref())
                .await
                .with_context(|| format!("cannot install plugin {name}"))?;
        }
        let watcher = if self.watch_plugins {
            Some(FolderWatcher::start(plugins.clone())?)
        } else {
            None
        };
        let jobs = Jobs::start(store.clone(), plugins.clone(), config.triggers.clone()).await?;
        let app = Arc::new(App {
            plugins,
            store,
            api_token,
            delivery,
            jobs,
            health: start_up.health.clone(),
            max_upload_bytes: config.plugins.max_upload_bytes(),
        });
        let _ = start_up.serving.set(app.clone());
        let host = Host {
            inner: Arc::new(Inner {
                app,
                generated_token,
                data_dir,
                metrics_route: self.metrics_route,
                start_up,
                _watcher: watcher,
                _temporary: temporary,
            }),
        };
        // Requests that came in while loading go on now.
        host.inner.start_up.router.send_replace(Some(host.router()));
        host.inner.start_up.health.set_phase(Phase::Serving);
        Ok(host)
    }
}

/// A running plugin host: its installations, store, trigger workers and event delivery.
/// Cheap to clone; every clone is the same host.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    app: http::AppState,
    generated_token: bool,
    data_dir: PathBuf,
    metrics_route: bool,
    /// Held for the routers given out before the build, which follow it.
    start_up: Arc<StartUp>,
    _watcher: Option<FolderWatcher>,
    /// A temporary host's folder, removed when the host goes.
    _temporary: Option<tempfile::TempDir>,
}

/// One installation, as [`Host::installations`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstallationInfo {
    /// The installation's name (its plugin file's name without `.wasm`).
    pub name: String,
    /// Its id, as plugins and the bot API see it.
    pub id: String,
    /// The integration the plugin declares, and its version.
    pub integration: String,
    /// The integration's version.
    pub version: String,
    /// `active`, `needs-configuration` or `register-failed`.
    pub status: String,
    /// What is wrong, when it is not active.
    pub problems: Vec<String>,
    /// The URL its platform sends webhooks to.
    pub webhook_url: String,
}

/// A plugin file that could not be loaded, as [`Host::load_failures`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoadFailure {
    /// The file's name in the plugins folder.
    pub file: String,
    /// Why it was refused.
    pub reason: String,
}

impl Host {
    /// A builder with the defaults `sluice serve` has: the embedded store in
    /// `./sluice-data`, no plugins folder watching.
    pub fn builder() -> HostBuilder {
        HostBuilder {
            store: StoreChoice::Folder(PathBuf::from("sluice-data")),
            store_url: None,
            plugins_dir: None,
            watch_plugins: false,
            plugins: Vec::new(),
            config: Config::default(),
            api_token: None,
            public_url: None,
            cache_dir: None,
            cache_key: None,
            profiling: Profiling::Off,
            tiering: Tiering::Auto,
            metrics_route: false,
            start_up: Arc::new(StartUp {
                health: Health::default(),
                router: watch::Sender::new(None),
                serving: Arc::default(),
            }),
        }
    }

    /// The host's HTTP surface: the webhook routes (`/webhooks/...`), the bot API
    /// (`/v1/chat`), the trigger API, subscriptions, the event stream and admin, with
    /// their errors and request ids; `/metrics` too when the builder was asked
    /// ([`HostBuilder::metrics_route`]). Nest it under any prefix
    /// (`Router::new().nest("/integrations", host.router())`) and give the builder the
    /// matching [`HostBuilder::public_url`].
    pub fn router(&self) -> Router {
        http::router(self.inner.app.clone(), self.inner.metrics_route)
            .layer(tower::layer::layer_fn(http::request_id::RequestIds::new))
    }

    /// The host's Prometheus metrics now, in the OpenMetrics text format
    /// (`application/openmetrics-text`): for an application that serves its own `/metrics`.
    pub async fn metrics_text(&self) -> String {
        metrics().encode(http::metrics::snapshot(&self.inner.app).await)
    }

    /// The API token the `/v1` routes require.
    pub fn api_token(&self) -> &str {
        &self.inner.app.api_token
    }

    /// Whether [`Host::api_token`] was generated at this start (and kept in the data
    /// folder's `api-token` file).
    pub fn api_token_generated(&self) -> bool {
        self.inner.generated_token
    }

    /// The data folder (a temporary one for a [`HostBuilder::temporary`] host).
    pub fn data_dir(&self) -> &Path {
        &self.inner.data_dir
    }

    /// The plugins folder.
    pub fn plugins_dir(&self) -> &Path {
        self.inner.app.plugins.plugins_dir()
    }

    /// The installations serving now, by name.
    pub fn installations(&self) -> Vec<InstallationInfo> {
        self.inner
            .app
            .plugins
            .registry
            .snapshot()
            .installations
            .values()
            .map(|installation| InstallationInfo {
                name: installation.name().to_string(),
                id: installation.id().to_string(),
                integration: installation.plugin.definition.name.clone(),
                version: installation.plugin.definition.version.clone(),
                status: installation.status.as_str().to_string(),
                problems: installation.problems.clone(),
                webhook_url: installation.webhook_url(),
            })
            .collect()
    }

    /// The plugin files that could not be loaded at the last change of the folder.
    pub fn load_failures(&self) -> Vec<LoadFailure> {
        self.inner
            .app
            .plugins
            .registry
            .snapshot()
            .failures
            .iter()
            .map(|failure| LoadFailure {
                file: failure.file.clone(),
                reason: failure.reason.clone(),
            })
            .collect()
    }

    /// Installs the component `bytes` as installation `name`, or replaces its plugin (the
    /// same atomic swap as hot reload: requests running finish on the old version), with
    /// `sidecar` as its configuration (without one, the current sidecar stays). A
    /// component that does not load is refused with the reason, and the version serving
    /// before keeps serving.
    pub async fn install_plugin(
        &self,
        name: &str,
        bytes: impl Into<Vec<u8>>,
        sidecar: Option<&str>,
    ) -> Result<InstallationInfo, Error> {
        let (installation, _created) = self.inner.app.plugins.install(name, bytes.into(), sidecar).await?;
        Ok(self
            .installations()
            .into_iter()
            .find(|info| info.id == installation.id())
            .expect("an installed plugin is listed"))
    }

    /// Removes installation `name` (`unregister` runs; what it recorded stays). Answers
    /// whether there was one.
    pub async fn remove_plugin(&self, name: &str) -> Result<bool, Error> {
        Ok(self.inner.app.plugins.uninstall(name).await?)
    }

    /// Makes `/readyz` answer 503 (`draining`) from now on while requests are still served,
    /// so that load balancers stop sending traffic before the application stops accepting
    /// connections. [`Host::shutdown`] does it too.
    pub fn start_draining(&self) {
        self.inner.app.health.set_phase(Phase::Draining);
    }

    /// Stops the background work as `sluice serve` does at exit: `/readyz` answers 503,
    /// live event streams end,
    /// webhook attempts in flight get [`DELIVERY_STOP_TIMEOUT`] to finish, trigger
    /// workers stop claiming events and running ones get [`DRAIN_TIMEOUT`] (those still
    /// running then run again at the next start). Call it while (or after) the
    /// application's server drains.
    pub async fn shutdown(&self) {
        self.start_draining();
        self.inner.app.delivery.stop(DELIVERY_STOP_TIMEOUT).await;
        self.inner.app.jobs.shutdown(DRAIN_TIMEOUT).await;
        tracing::info!("stopped");
    }

    pub(crate) fn app(&self) -> &http::AppState {
        &self.inner.app
    }
}

fn ensure_dir(path: &Path, what: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(path).with_context(|| format!("cannot create the {what} {}", path.display()))
}

/// The PostgreSQL store at `url`, with the configuration's pool size and the key that
/// seals sidecars there.
async fn open_postgres(
    url: &str,
    config: &HostConfig,
    data_dir: &Path,
    plugins_dir: &Path,
) -> anyhow::Result<SharedStore> {
    let pool_size = config.store.pool_size.unwrap_or(store::postgres::DEFAULT_POOL_SIZE);
    let replica_id = replica_id(data_dir)?;
    let secret_key = secret_key(config)?;
    if secret_key.is_none() {
        refuse_sidecars_without_key(plugins_dir)?;
    }
    let store = PostgresStore::connect(url, pool_size, replica_id.clone(), secret_key).await?;
    tracing::info!(store = %store::postgres::redacted(url), replica = %replica_id, "keeping everything in PostgreSQL");
    Ok(Arc::new(store))
}

/// The key that seals sidecars in a shared store: `SLUICE_STORE_SECRET_KEY`, else
/// `[store] secret-key`.
fn secret_key(config: &HostConfig) -> anyhow::Result<Option<store::sealing::SecretKey>> {
    let text = std::env::var("SLUICE_STORE_SECRET_KEY")
        .ok()
        .or_else(|| config.store.secret_key.clone())
        .filter(|key| !key.trim().is_empty());
    text.map(|text| store::sealing::SecretKey::parse(&text)).transpose()
}

/// Refuses to start on a shared store without a secret key when the plugins folder has
/// sidecars to keep there: they would have to be kept in plain text.
fn refuse_sidecars_without_key(plugins_dir: &Path) -> anyhow::Result<()> {
    let Ok(entries) = std::fs::read_dir(plugins_dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_sidecar = path.extension().is_some_and(|ext| ext == "toml") && path.with_extension("wasm").is_file();
        if is_sidecar && std::fs::metadata(&path).is_ok_and(|meta| meta.len() > 0) {
            anyhow::bail!(
                "{} has a sidecar to keep in PostgreSQL; {}",
                plugins_dir.display(),
                store::postgres::installations::NO_SECRET_KEY
            );
        }
    }
    Ok(())
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

/// The API token kept in the data folder, else a new one (kept there when `keep`).
fn kept_api_token(data_dir: &Path, keep: bool) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join("api-token");
    if let Ok(token) = std::fs::read_to_string(&path)
        && !token.trim().is_empty()
    {
        return Ok((token.trim().to_string(), false));
    }
    let token = secret_token(24);
    if keep {
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        file.open(&path)
            .and_then(|mut f| f.write_all(token.as_bytes()))
            .with_context(|| format!("cannot keep the API token in {}", path.display()))?;
    }
    Ok((token, true))
}

/// The bot's id and its user, created once and kept in the store.
async fn identity(store: &SharedStore, public_url: String) -> anyhow::Result<HostIdentity> {
    let bot_id = match store.meta("bot_id").await? {
        Some(id) => id,
        None => {
            let id = record_id("bot");
            store.set_meta("bot_id", &id).await?;
            id
        }
    };
    let bot_tags: Tags = [("role".to_string(), "bot".to_string())].into();
    let (bot_user, _) = store.get_or_create_user(None, &bot_tags, Some("bot"), None).await?;
    Ok(HostIdentity {
        bot_id,
        bot_user_id: bot_user.id,
        public_url: public_url.trim_end_matches('/').to_string(),
    })
}
