//! Bringing the installations in line with the plugins folder and the store.
//!
//! The store says which plugins are installed: their records, code and sidecars. A sync
//! first takes the folder's changes to the store: a plugin file (or sidecar) that differs
//! from what this host last read from it is checked and, if it loads, installed for
//! every replica; a file that is gone from the folder is uninstalled (`unregister` runs
//! once). It then serves what the store holds. With the embedded store every installation
//! came through the folder, so what the host last read is what the store keeps; with a
//! shared store each replica remembers what it read (`<data>/plugins-folder.json`), so
//! that a replica whose folder is empty, or stale, changes nothing for the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::installation::{HostIdentity, Installation, InstallationStatus};
use super::registry::{LoadFailure, Registry, Snapshot};
use crate::config::Sidecar;
use crate::ids::{record_id, secret_token};
use crate::runtime::outbound::OutboundClient;
use crate::runtime::{AllowList, Answer, Caller, CompiledPlugin, Runtime};
use crate::store::{InstallationRecord, SharedStore};
use crate::time::now_ms;

/// What one [`PluginHost::sync`] changed.
#[derive(Debug, Default, Clone)]
pub struct SyncReport {
    /// Names of installations created.
    pub installed: Vec<String>,
    /// Names of installations whose plugin or sidecar changed.
    pub updated: Vec<String>,
    /// Names of installations removed (their file is gone, or another replica removed them).
    pub removed: Vec<String>,
    /// Files that could not be loaded (an earlier version may still be serving).
    pub failed: Vec<LoadFailure>,
}

impl SyncReport {
    fn changed_anything(&self) -> bool {
        !(self.installed.is_empty() && self.updated.is_empty() && self.removed.is_empty())
    }
}

/// Owns the installations: takes the plugins folder's changes to the store, runs
/// `register` and `unregister`, and publishes each new state of the world to the
/// [`Registry`].
pub struct PluginHost {
    pub runtime: Arc<Runtime>,
    pub store: SharedStore,
    pub identity: Arc<HostIdentity>,
    pub registry: Registry,
    plugins_dir: PathBuf,
    /// Copies of plugin versions that sluice kept before the store held plugin code: an
    /// installation made then runs `unregister` from there.
    kept_dir: PathBuf,
    /// What this replica last read from each plugin file, with a shared store.
    folder_memory: PathBuf,
    sync_lock: tokio::sync::Mutex<()>,
}

/// What a host last read from a plugin file and its sidecar: their SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Seen {
    plugin: String,
    sidecar: String,
}

impl Seen {
    fn of(plugin_hash: &str, sidecar_text: &str) -> Seen {
        Seen {
            plugin: plugin_hash.to_string(),
            sidecar: Runtime::content_hash(sidecar_text.as_bytes()),
        }
    }
}

/// A plugin offered for installation: a file read from the folder, or bytes given from
/// code (the admin API, the embedding API).
struct Offered {
    file: PathBuf,
    name: String,
    bytes: Arc<[u8]>,
    hash: String,
    sidecar_text: String,
}

/// Plugins compiled during one sync (by installation name), and plugin code read from
/// the folder (by hash).
#[derive(Default)]
struct Loaded {
    compiled: HashMap<String, Arc<CompiledPlugin>>,
    folder_code: HashMap<String, Arc<[u8]>>,
}

/// What one sync hands to [`PluginHost::serve`] beside the records to serve.
#[derive(Default)]
struct SyncFindings {
    /// Files refused, by installation name: each name keeps its serving version, if any.
    refused: BTreeMap<String, LoadFailure>,
    /// Failures listed so far, which the snapshot keeps listing.
    failures: Vec<LoadFailure>,
    /// What the sync compiled and read.
    loaded: Loaded,
    /// Names the sync created (their `register` runs).
    created: HashSet<String>,
    /// Whether installations that have problems are built again.
    retry_problems: bool,
}

impl SyncFindings {
    /// A sync that reads no file and creates nothing: it serves what the store holds,
    /// keeping `failures` listed and installations with problems as they are.
    fn store_only(failures: Vec<LoadFailure>) -> SyncFindings {
        SyncFindings {
            failures,
            ..SyncFindings::default()
        }
    }
}

/// An installation name is the file name without `.wasm`: letters, digits, `-`, `_`.
fn installation_name(file: &Path) -> Result<String, String> {
    let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    valid_installation_name(stem)
        .map(|()| stem.to_string())
        .map_err(|_| "rename it: a plugin file name may use only letters, digits, - and _".into())
}

/// Checks an installation name: 1 to 64 letters, digits, `-` and `_`.
pub(super) fn valid_installation_name(name: &str) -> Result<(), String> {
    let valid =
        !name.is_empty() && name.len() <= 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "{name:?} cannot be an installation name: use 1 to 64 letters, digits, - and _"
        ))
    }
}

/// What `register` or `unregister` ended with; the error says what went wrong.
fn lifecycle_outcome(answer: Answer<()>) -> Result<(), String> {
    match answer {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error.message),
        Err(failure) => Err(failure.to_string()),
    }
}

fn file_label(file: &Path) -> String {
    file.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl PluginHost {
    pub fn new(
        runtime: Arc<Runtime>,
        store: SharedStore,
        identity: HostIdentity,
        plugins_dir: PathBuf,
        data_dir: &Path,
    ) -> anyhow::Result<PluginHost> {
        Ok(PluginHost {
            runtime,
            store,
            identity: Arc::new(identity),
            registry: Registry::default(),
            plugins_dir,
            kept_dir: data_dir.join("plugins"),
            folder_memory: data_dir.join("plugins-folder.json"),
            sync_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn plugins_dir(&self) -> &Path {
        &self.plugins_dir
    }

    /// The `*.wasm` files in the plugins folder, sorted by name.
    fn plugin_files(&self) -> anyhow::Result<Vec<PathBuf>> {
        let entries = std::fs::read_dir(&self.plugins_dir)
            .with_context(|| format!("cannot read the plugins folder {}", self.plugins_dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|ext| ext == "wasm") && path.is_file())
            .collect();
        files.sort();
        Ok(files)
    }

    pub(super) fn plugin_file(&self, name: &str) -> PathBuf {
        self.plugins_dir.join(format!("{name}.wasm"))
    }

    /// The installations the store keeps, by name.
    async fn records(&self) -> anyhow::Result<BTreeMap<String, InstallationRecord>> {
        Ok(self
            .store
            .installations()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect())
    }

    /// What this host last read from each plugin file: with the embedded store, what the
    /// store keeps (every installation came through the folder); with a shared one, what
    /// this replica remembers.
    fn folder_memory(&self, records: &BTreeMap<String, InstallationRecord>) -> BTreeMap<String, Seen> {
        if !self.store.is_shared() {
            return records
                .values()
                .map(|r| (r.name.clone(), Seen::of(&r.plugin_hash, &r.sidecar)))
                .collect();
        }
        match std::fs::read(&self.folder_memory) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|error| {
                tracing::warn!(file = %self.folder_memory.display(), %error, "cannot read what the plugins folder held; every file in it counts as new");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        }
    }

    fn keep_folder_memory(&self, seen: &BTreeMap<String, Seen>) {
        if !self.store.is_shared() {
            return;
        }
        let temporary = self.folder_memory.with_extension("json.part");
        let written = serde_json::to_vec_pretty(seen)
            .map_err(std::io::Error::other)
            .and_then(|json| std::fs::write(&temporary, json))
            .and_then(|()| std::fs::rename(&temporary, &self.folder_memory));
        if let Err(error) = written {
            tracing::warn!(file = %self.folder_memory.display(), %error, "cannot keep what the plugins folder held");
        }
    }

    /// Brings the installations in line with the plugins folder's changes and the store,
    /// and publishes the result. Unchanged installations keep serving untouched; a file
    /// that fails to load leaves its earlier version serving.
    pub async fn sync(&self) -> anyhow::Result<SyncReport> {
        self.sync_except(&|_: &Path| false).await
    }

    /// Like [`PluginHost::sync`], but leaves the plugin files for which `unsettled` is true
    /// (files still being written) as they are: their current version, if any, keeps
    /// serving. It is asked just before each file is read.
    pub async fn sync_except(&self, unsettled: &(dyn Fn(&Path) -> bool + Sync)) -> anyhow::Result<SyncReport> {
        self.sync_seeded(unsettled, None).await
    }

    /// [`PluginHost::sync`] with `checked` (a plugin already loaded for installation
    /// `name`) used instead of loading its file again: the installation then shows where
    /// its code really came from.
    pub(super) async fn sync_with_checked(
        &self,
        name: &str,
        checked: Arc<CompiledPlugin>,
    ) -> anyhow::Result<SyncReport> {
        self.sync_seeded(&|_: &Path| false, Some((name, checked))).await
    }

    async fn sync_seeded(
        &self,
        unsettled: &(dyn Fn(&Path) -> bool + Sync),
        checked: Option<(&str, Arc<CompiledPlugin>)>,
    ) -> anyhow::Result<SyncReport> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let current = self.registry.snapshot();
        let mut records = self.records().await?;
        let mut seen = self.folder_memory(&records);
        let mut report = SyncReport::default();
        let mut loaded = Loaded::default();
        if let Some((name, plugin)) = checked {
            loaded.compiled.insert(name.to_string(), plugin);
        }
        let mut refused: BTreeMap<String, LoadFailure> = BTreeMap::new();
        let mut present = HashSet::new();
        let mut created = HashSet::new();

        // The folder's changes go to the store.
        for file in self.plugin_files()? {
            let label = file_label(&file);
            let name = match installation_name(&file) {
                Ok(name) => name,
                Err(reason) => {
                    report.failed.push(LoadFailure {
                        file: label,
                        reason,
                        webhook_id: None,
                    });
                    continue;
                }
            };
            present.insert(name.clone());
            if unsettled(&file) {
                continue;
            }
            let previous = current.installations.get(&name);
            let published = match self.read_offered(&file, &name).await {
                Ok(offered) => {
                    let now_seen = Seen::of(&offered.hash, &offered.sidecar_text);
                    loaded.folder_code.insert(offered.hash.clone(), offered.bytes.clone());
                    if seen.get(&name) == Some(&now_seen) {
                        continue;
                    }
                    self.publish(offered, records.get(&name), previous, &mut loaded)
                        .await
                        .map(|record| (record, now_seen))
                }
                Err(error) => Err(error),
            };
            match published {
                Ok((record, now_seen)) => {
                    if !records.contains_key(&name) {
                        created.insert(name.clone());
                    }
                    seen.insert(name.clone(), now_seen);
                    records.insert(name, record);
                }
                Err(error) => {
                    let reason = format!("{error:#}");
                    match previous {
                        Some(_) => {
                            tracing::error!(file = %label, %reason, "plugin file refused; the previous version keeps serving")
                        }
                        None => tracing::error!(file = %label, %reason, "plugin file refused"),
                    }
                    let failure = LoadFailure {
                        file: label,
                        reason,
                        webhook_id: records.get(&name).map(|r| r.webhook_id.clone()),
                    };
                    refused.insert(name, failure);
                }
            }
        }

        // Files gone from the folder: uninstalled for every replica.
        let gone: Vec<String> = seen.keys().filter(|name| !present.contains(*name)).cloned().collect();
        for name in gone {
            seen.remove(&name);
            if let Some(record) = records.remove(&name) {
                self.remove(
                    &record,
                    current.installations.get(&name),
                    "its file is gone from the plugins folder",
                )
                .await;
                report.removed.push(name);
            }
        }
        self.keep_folder_memory(&seen);
        self.prune_kept_copies(&records);

        let findings = SyncFindings {
            refused,
            failures: std::mem::take(&mut report.failed),
            loaded,
            created,
            retry_problems: true,
        };
        self.serve(records, &current, findings, &mut report).await;
        Ok(report)
    }

    /// Serves what the store holds now, leaving the plugins folder aside: what another
    /// replica installed, replaced or removed.
    pub async fn sync_from_store(&self) -> anyhow::Result<SyncReport> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let current = self.registry.snapshot();
        let records = self.records().await?;
        let mut report = SyncReport::default();
        // Files of this folder that failed stay listed until the store serves their name.
        let failures: Vec<LoadFailure> = current
            .failures
            .iter()
            .filter(|failure| {
                let name = failure.file.strip_suffix(".wasm").unwrap_or(&failure.file);
                !records.contains_key(name)
            })
            .cloned()
            .collect();
        let unchanged = records.len() == current.installations.len()
            && failures.len() == current.failures.len()
            && records.iter().all(|(name, record)| {
                current
                    .installations
                    .get(name)
                    .is_some_and(|serving| same_version(serving, record))
            });
        if !unchanged {
            self.serve(records, &current, SyncFindings::store_only(failures), &mut report)
                .await;
        }
        Ok(report)
    }

    /// Uninstalls `name` for every replica (`unregister` runs once), whichever replica's
    /// folder it came from. Answers whether there was such an installation.
    pub async fn forget(&self, name: &str) -> anyhow::Result<bool> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let current = self.registry.snapshot();
        let mut records = self.records().await?;
        let Some(record) = records.remove(name) else {
            return Ok(false);
        };
        let mut seen = self.folder_memory(&records);
        seen.remove(name);
        self.keep_folder_memory(&seen);
        self.remove(
            &record,
            current.installations.get(name),
            "it was deleted through the admin API",
        )
        .await;
        let mut report = SyncReport {
            removed: vec![name.to_string()],
            ..SyncReport::default()
        };
        let findings = SyncFindings::store_only(current.failures.clone());
        self.serve(records, &current, findings, &mut report).await;
        Ok(true)
    }

    /// Installs `bytes` (loaded and checked as `checked`) as installation `name` for every
    /// replica, leaving the plugins folder aside: how a shared store takes plugins given
    /// from code. `sidecar` replaces the installation's configuration; without one it
    /// keeps its own.
    pub(super) async fn install_offered(
        &self,
        name: &str,
        bytes: Arc<[u8]>,
        checked: Arc<CompiledPlugin>,
        sidecar: Option<&str>,
    ) -> anyhow::Result<SyncReport> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let current = self.registry.snapshot();
        let mut records = self.records().await?;
        let record = records.get(name);
        let sidecar_text = match sidecar {
            Some(text) => text.to_string(),
            None => record.map(|r| r.sidecar.clone()).unwrap_or_default(),
        };
        let offered = Offered {
            file: self.plugin_file(name),
            name: name.to_string(),
            hash: checked.hash.clone(),
            bytes,
            sidecar_text,
        };
        let created: HashSet<String> = record.is_none().then(|| name.to_string()).into_iter().collect();
        let mut loaded = Loaded::default();
        loaded.compiled.insert(name.to_string(), checked);
        let record = self
            .publish(offered, record, current.installations.get(name), &mut loaded)
            .await?;
        records.insert(name.to_string(), record);
        // A file of this name refused earlier is no longer what the name stands for.
        let findings = SyncFindings {
            failures: current
                .failures
                .iter()
                .filter(|failure| failure.file != format!("{name}.wasm"))
                .cloned()
                .collect(),
            loaded,
            created,
            retry_problems: true,
            ..SyncFindings::default()
        };
        let mut report = SyncReport::default();
        self.serve(records, &current, findings, &mut report).await;
        Ok(report)
    }

    /// Reads a plugin file and its sidecar (checking the sidecar parses).
    async fn read_offered(&self, file: &Path, name: &str) -> anyhow::Result<Offered> {
        // Hashing an interpreter-sized plugin takes tens of milliseconds: not on a thread
        // that serves requests.
        let path = file.to_path_buf();
        let (bytes, hash) = tokio::task::spawn_blocking(move || {
            let bytes: Arc<[u8]> = std::fs::read(path)?.into();
            let hash = Runtime::content_hash(&bytes);
            std::io::Result::Ok((bytes, hash))
        })
        .await?
        .context("cannot read the file")?;
        let (_, sidecar_text) = Sidecar::load_for(file)?;
        Ok(Offered {
            file: file.to_path_buf(),
            name: name.to_string(),
            bytes,
            hash,
            sidecar_text,
        })
    }

    /// Checks a changed plugin file (it must load) and keeps it in the store as the
    /// installation's new version. Answers the record now kept.
    async fn publish(
        &self,
        offered: Offered,
        record: Option<&InstallationRecord>,
        previous: Option<&Arc<Installation>>,
        loaded: &mut Loaded,
    ) -> anyhow::Result<InstallationRecord> {
        let Offered {
            file,
            name,
            bytes,
            hash,
            sidecar_text,
        } = offered;
        // The check: it must load (compile, and speak the contract).
        let plugin = match (previous, loaded.compiled.get(&name)) {
            (Some(previous), _) if previous.plugin.hash == hash => previous.plugin.clone(),
            (_, Some(checked)) if checked.hash == hash => checked.clone(),
            _ => self.runtime.load_hashed(bytes.clone(), hash.clone()).await?,
        };
        loaded.compiled.insert(name.clone(), plugin);
        if let Some(record) = record
            && record.plugin_hash == hash
            && record.sidecar == sidecar_text
        {
            return Ok(record.clone());
        }
        let now = now_ms();
        let new_code = record.is_none_or(|record| record.plugin_hash != hash);
        let record = match record {
            Some(record) => InstallationRecord {
                plugin_hash: hash,
                sidecar: sidecar_text,
                updated_at: now,
                ..record.clone()
            },
            None => InstallationRecord {
                id: record_id("inst"),
                name: name.clone(),
                webhook_id: secret_token(16),
                plugin_hash: hash,
                sidecar: sidecar_text,
                registered_at: None,
                created_at: now,
                updated_at: now,
            },
        };
        self.store
            .save_installation(&record, new_code.then_some(bytes))
            .await
            .with_context(|| format!("cannot keep {} in the store", file_label(&file)))?;
        Ok(record)
    }

    /// Publishes a snapshot of what `records` say is installed: unchanged installations
    /// keep serving as they are, the others are built (and registered, once for every
    /// replica). A name the sync refused keeps its serving version, if any.
    async fn serve(
        &self,
        records: BTreeMap<String, InstallationRecord>,
        current: &Snapshot,
        findings: SyncFindings,
        report: &mut SyncReport,
    ) {
        let SyncFindings {
            refused,
            mut failures,
            loaded,
            created,
            retry_problems,
        } = findings;
        let mut installations = BTreeMap::new();
        for (name, record) in &records {
            let previous = current.installations.get(name);
            if let Some(failure) = refused.get(name) {
                failures.push(failure.clone());
                if let Some(previous) = previous {
                    installations.insert(name.clone(), previous.clone());
                }
                continue;
            }
            if let Some(previous) = previous
                && same_version(previous, record)
                && (previous.status == InstallationStatus::Active || !retry_problems)
            {
                installations.insert(name.clone(), previous.clone());
                continue;
            }
            match self.build(record, previous, &loaded, created.contains(name)).await {
                Ok(installation) => {
                    if previous.is_some() {
                        report.updated.push(name.clone());
                    } else {
                        report.installed.push(name.clone());
                    }
                    installations.insert(name.clone(), installation);
                }
                Err(error) => {
                    let reason = format!("{error:#}");
                    tracing::error!(installation = %name, %reason, "cannot serve the installation");
                    failures.push(LoadFailure {
                        file: format!("{name}.wasm"),
                        reason,
                        webhook_id: Some(record.webhook_id.clone()),
                    });
                    if let Some(previous) = previous {
                        installations.insert(name.clone(), previous.clone());
                    }
                }
            }
        }
        // Refused files of names the store does not know.
        failures.extend(
            refused
                .into_iter()
                .filter(|(name, _)| !records.contains_key(name))
                .map(|(_, failure)| failure),
        );
        for name in current.installations.keys() {
            if !records.contains_key(name) && !report.removed.contains(name) {
                tracing::info!(installation = %name, "plugin removed: another replica uninstalled it");
                report.removed.push(name.clone());
            }
        }
        failures.sort_by(|a, b| a.file.cmp(&b.file));
        report.failed = failures.clone();
        if report.changed_anything()
            || failures != current.failures
            || installations.len() != current.installations.len()
        {
            self.registry.replace(Snapshot::new(installations, failures));
        }
    }

    /// Builds the installation a record describes, registering it if no replica has.
    async fn build(
        &self,
        record: &InstallationRecord,
        previous: Option<&Arc<Installation>>,
        loaded: &Loaded,
        created: bool,
    ) -> anyhow::Result<Arc<Installation>> {
        let name = &record.name;
        let file = self.plugin_file(name);
        let plugin = self.plugin_for(name, &record.plugin_hash, previous, loaded).await?;
        let sidecar_name = file_label(&Sidecar::path_for(&file));
        let sidecar = tracing::warn_span!("sidecar", file = %sidecar_name)
            .in_scope(|| Sidecar::parse(&record.sidecar))
            .with_context(|| format!("{sidecar_name} is not a valid sidecar file"))?;
        let mut installation = self.installation(&file, record.clone(), plugin, sidecar)?;
        if installation.status == InstallationStatus::Active && record.registered_at.is_none() {
            let now = now_ms();
            // Of the replicas serving the new installation, the one that claims it registers.
            if self.store.claim_registration(&record.id, now).await? {
                match lifecycle_outcome(installation.register(&record_id("req")).await.0) {
                    Ok(()) => installation.record.registered_at = Some(now),
                    Err(problem) => {
                        if let Err(error) = self.store.release_registration(&record.id).await {
                            tracing::warn!(installation = %name, error = %format!("{error:#}"), "cannot note that register failed");
                        }
                        installation.status = InstallationStatus::RegisterFailed;
                        installation.problems.push(format!(
                            "register failed: {problem}; fix it and replace the plugin file or restart"
                        ));
                    }
                }
            }
        }
        let event = match (previous, created) {
            (Some(_), _) => "plugin replaced",
            (None, true) => "plugin installed",
            (None, false) => "plugin loaded",
        };
        let plugin = &installation.plugin;
        tracing::info!(installation = %name, file = %file_label(&file), plugin = %plugin.definition.name, version = %plugin.definition.version,
            status = installation.status.as_str(), code = %plugin.code_source.as_str(), tier = %plugin.tier().as_str(), webhook_url = %installation.webhook_url(),
            "{event}");
        for problem in &installation.problems {
            tracing::warn!(installation = %name, "{problem}");
        }
        Ok(Arc::new(installation))
    }

    /// The compiled plugin of `hash`: the serving one, one compiled in this sync, or
    /// compiled from the folder's file or the store's copy.
    async fn plugin_for(
        &self,
        name: &str,
        hash: &str,
        previous: Option<&Arc<Installation>>,
        loaded: &Loaded,
    ) -> anyhow::Result<Arc<CompiledPlugin>> {
        if let Some(previous) = previous
            && previous.plugin.hash == hash
        {
            return Ok(previous.plugin.clone());
        }
        if let Some(plugin) = loaded.compiled.get(name)
            && plugin.hash == hash
        {
            return Ok(plugin.clone());
        }
        let bytes = match loaded.folder_code.get(hash) {
            Some(bytes) => bytes.clone(),
            None => self.stored_code(hash).await?,
        };
        Ok(self.runtime.load_hashed(bytes, hash.to_string()).await?)
    }

    /// A plugin's code from the store, or from the copy kept in the data folder before
    /// the store held code.
    async fn stored_code(&self, hash: &str) -> anyhow::Result<Arc<[u8]>> {
        if let Some(code) = self.store.plugin_code(hash).await? {
            return Ok(code.into());
        }
        let kept = self.kept_dir.join(format!("{hash}.wasm"));
        match tokio::fs::read(&kept).await {
            Ok(code) => Ok(code.into()),
            Err(_) => anyhow::bail!("the store holds no code for plugin {hash}"),
        }
    }

    /// Builds an installation from its parts and works out its status.
    fn installation(
        &self,
        file: &Path,
        record: InstallationRecord,
        plugin: Arc<CompiledPlugin>,
        sidecar: Sidecar,
    ) -> anyhow::Result<Installation> {
        let configuration = sidecar.configuration_json();
        let sidecar_name = file_label(&Sidecar::path_for(file));
        let mut problems = Vec::new();
        if let Err(problem) = plugin.definition.check_configuration(&configuration) {
            problems.push(format!(
                "the configuration does not match what plugin {} needs: {problem}; set it in the [configuration] table of {sidecar_name}",
                plugin.definition.name
            ));
        }
        let status = if problems.is_empty() {
            InstallationStatus::Active
        } else {
            InstallationStatus::NeedsConfiguration
        };
        let caller = Arc::new(Caller::new(
            record.id.clone(),
            record.name.clone(),
            plugin.definition.clone(),
            self.store.clone(),
            AllowList::new(&sidecar.allowed_hosts)?,
            OutboundClient::trusting(&sidecar.trusted_certificates()?)?,
            sidecar.dedupe_retention(),
        ));
        let context = Installation::call_context(&record, &self.identity, &configuration);
        Ok(Installation {
            record,
            file: file.to_path_buf(),
            plugin,
            sidecar,
            status,
            problems,
            caller,
            identity: self.identity.clone(),
            context,
        })
    }

    /// Uninstalls: the store forgets the installation, and the replica whose removal did
    /// it runs `unregister` (from the serving version, or the store's copy). What it
    /// produced stays in the store.
    async fn remove(&self, record: &InstallationRecord, serving: Option<&Arc<Installation>>, why: &str) {
        let name = &record.name;
        let installation = match serving {
            Some(installation) => Some(installation.clone()),
            None => match self.load_stored(record).await {
                Ok(installation) => Some(Arc::new(installation)),
                Err(error) => {
                    tracing::warn!(installation = %name, error = %format!("{error:#}"), "cannot run unregister: the stored copy of the plugin is unusable");
                    None
                }
            },
        };
        match self.store.delete_installation(&record.id).await {
            Ok(true) => {}
            // Another replica removed it (and ran unregister).
            Ok(false) => return,
            Err(error) => {
                tracing::error!(installation = %name, error = %format!("{error:#}"), "cannot forget the removed installation");
                return;
            }
        }
        if let Some(installation) = installation
            && record.registered_at.is_some()
        {
            match lifecycle_outcome(installation.unregister(&record_id("req")).await.0) {
                Ok(()) => tracing::info!(installation = %name, "unregistered"),
                Err(problem) => {
                    tracing::warn!(installation = %name, %problem, "unregister failed; the installation is removed anyway")
                }
            }
        }
        tracing::info!(installation = %name, "plugin removed: {why}");
    }

    async fn load_stored(&self, record: &InstallationRecord) -> anyhow::Result<Installation> {
        let bytes = self.stored_code(&record.plugin_hash).await?;
        let plugin = self.runtime.load(bytes).await?;
        let sidecar = Sidecar::parse(&record.sidecar).context("the kept sidecar is not valid any more")?;
        self.installation(&self.plugin_file(&record.name), record.clone(), plugin, sidecar)
    }

    /// Deletes the copies kept in the data folder before the store held plugin code, once
    /// no installation runs them.
    fn prune_kept_copies(&self, records: &BTreeMap<String, InstallationRecord>) {
        let Ok(entries) = std::fs::read_dir(&self.kept_dir) else {
            return;
        };
        let in_use: HashSet<&str> = records.values().map(|r| r.plugin_hash.as_str()).collect();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let used = name.strip_suffix(".wasm").is_some_and(|hash| in_use.contains(hash));
            if name.ends_with(".wasm") && !used {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// Whether the serving installation runs the record's plugin and sidecar.
fn same_version(serving: &Installation, record: &InstallationRecord) -> bool {
    serving.plugin.hash == record.plugin_hash && serving.record.sidecar == record.sidecar
}
