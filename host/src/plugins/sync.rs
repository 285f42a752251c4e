//! Bringing the installations in line with the plugins folder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::installation::{HostIdentity, Installation, InstallationStatus};
use super::registry::{LoadFailure, Registry, Snapshot};
use crate::config::Sidecar;
use crate::ids::{record_id, secret_token};
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
    /// Names of installations removed because their file is gone.
    pub removed: Vec<String>,
    /// Files that could not be loaded (an earlier version may still be serving).
    pub failed: Vec<LoadFailure>,
}

/// Owns the installations: loads plugin files, keeps records, runs `register` and
/// `unregister`, and publishes each new state of the world to the [`Registry`].
pub struct PluginHost {
    pub runtime: Arc<Runtime>,
    pub store: SharedStore,
    pub identity: Arc<HostIdentity>,
    pub registry: Registry,
    plugins_dir: PathBuf,
    /// Copies of every plugin version an installation ran, by hash, so `unregister` can
    /// run after the file left the plugins folder.
    kept_dir: PathBuf,
    sync_lock: tokio::sync::Mutex<()>,
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
        let kept_dir = data_dir.join("plugins");
        std::fs::create_dir_all(&kept_dir).with_context(|| format!("cannot create {}", kept_dir.display()))?;
        Ok(PluginHost {
            runtime,
            store,
            identity: Arc::new(identity),
            registry: Registry::default(),
            plugins_dir,
            kept_dir,
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

    fn kept_copy(&self, hash: &str) -> PathBuf {
        self.kept_dir.join(format!("{hash}.wasm"))
    }

    /// Brings the installations in line with the plugins folder and publishes the result.
    /// Unchanged installations keep serving untouched; a file that fails to load leaves
    /// its earlier version serving.
    pub async fn sync(&self) -> anyhow::Result<SyncReport> {
        self.sync_except(&|_: &Path| false).await
    }

    /// Like [`PluginHost::sync`], but leaves the plugin files for which `unsettled` is true
    /// (files still being written) as they are: their current version, if any, keeps
    /// serving. It is asked just before each file is read.
    pub async fn sync_except(&self, unsettled: &(dyn Fn(&Path) -> bool + Sync)) -> anyhow::Result<SyncReport> {
        let _one_at_a_time = self.sync_lock.lock().await;
        let current = self.registry.snapshot();
        let records: HashMap<String, InstallationRecord> = self
            .store
            .installations()
            .await?
            .into_iter()
            .map(|r| (r.name.clone(), r))
            .collect();

        let mut report = SyncReport::default();
        let mut installations = BTreeMap::new();
        let mut present = HashSet::new();
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
            let previous = current.installations.get(&name).cloned();
            if unsettled(&file) {
                if let Some(previous) = previous {
                    installations.insert(name, previous);
                }
                continue;
            }
            match self.load_one(&file, &name, previous.as_ref(), records.get(&name)).await {
                Ok(Some(installation)) => {
                    if previous.is_some() {
                        report.updated.push(name.clone());
                    } else {
                        report.installed.push(name.clone());
                    }
                    installations.insert(name, installation);
                }
                Ok(None) => {
                    installations.insert(name, previous.expect("unchanged means there is a previous version"));
                }
                Err(error) => {
                    let reason = format!("{error:#}");
                    match &previous {
                        Some(_) => {
                            tracing::error!(file = %label, %reason, "plugin file refused; the previous version keeps serving")
                        }
                        None => tracing::error!(file = %label, %reason, "plugin file refused"),
                    }
                    report.failed.push(LoadFailure {
                        file: label,
                        reason,
                        webhook_id: records.get(&name).map(|r| r.webhook_id.clone()),
                    });
                    if let Some(previous) = previous {
                        installations.insert(name, previous);
                    }
                }
            }
        }

        for (name, record) in &records {
            if !present.contains(name) {
                self.remove(record, current.installations.get(name)).await;
                report.removed.push(name.clone());
            }
        }

        let snapshot = Snapshot::new(installations, report.failed.clone());
        let mut in_use: HashSet<String> = snapshot.installations.values().map(|i| i.plugin.hash.clone()).collect();
        in_use.extend(
            records
                .values()
                .filter(|r| present.contains(&r.name))
                .map(|r| r.plugin_hash.clone()),
        );
        self.prune_kept_copies(&in_use);
        self.registry.replace(snapshot);
        Ok(report)
    }

    /// Loads one plugin file. `Ok(None)` means nothing changed since `previous`.
    async fn load_one(
        &self,
        file: &Path,
        name: &str,
        previous: Option<&Arc<Installation>>,
        record: Option<&InstallationRecord>,
    ) -> anyhow::Result<Option<Arc<Installation>>> {
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
        let (sidecar, sidecar_text) = Sidecar::load_for(file)?;
        if let Some(previous) = previous
            && previous.plugin.hash == hash
            && previous.sidecar == sidecar
            && previous.status == InstallationStatus::Active
        {
            return Ok(None);
        }
        let plugin = match previous {
            Some(previous) if previous.plugin.hash == hash => previous.plugin.clone(),
            _ => self.runtime.load_hashed(bytes.clone(), hash.clone()).await?,
        };
        let kept = self.kept_copy(&hash);
        if !kept.exists() {
            let temporary = kept.with_extension("tmp");
            tokio::fs::write(&temporary, &bytes)
                .await
                .context("cannot keep a copy of the plugin in the data folder")?;
            tokio::fs::rename(&temporary, &kept).await?;
        }

        let now = now_ms();
        let event = match (previous, record) {
            (Some(_), _) => "plugin replaced",
            (None, Some(_)) => "plugin loaded",
            (None, None) => "plugin installed",
        };
        let mut record = match record {
            Some(record) => InstallationRecord {
                plugin_hash: hash.clone(),
                sidecar: sidecar_text,
                updated_at: now,
                ..record.clone()
            },
            None => InstallationRecord {
                id: record_id("inst"),
                name: name.to_string(),
                webhook_id: secret_token(16),
                plugin_hash: hash.clone(),
                sidecar: sidecar_text,
                registered_at: None,
                created_at: now,
                updated_at: now,
            },
        };

        let mut installation = self.installation(file, record.clone(), plugin, sidecar)?;
        if installation.status == InstallationStatus::Active && record.registered_at.is_none() {
            match lifecycle_outcome(installation.register(&record_id("req")).await.0) {
                Ok(()) => record.registered_at = Some(now_ms()),
                Err(problem) => {
                    installation.status = InstallationStatus::RegisterFailed;
                    installation.problems.push(format!(
                        "register failed: {problem}; fix it and replace the plugin file or restart"
                    ));
                }
            }
            installation.record = record.clone();
        }
        let saved = record.clone();
        self.store.save_installation(&saved).await?;
        let plugin = &installation.plugin;
        tracing::info!(installation = %name, file = %file_label(file), plugin = %plugin.definition.name, version = %plugin.definition.version,
            status = installation.status.as_str(), code = %plugin.code_source.as_str(), tier = %plugin.tier().as_str(), webhook_url = %installation.webhook_url(),
            "{event}");
        for problem in &installation.problems {
            tracing::warn!(installation = %name, "{problem}");
        }
        Ok(Some(Arc::new(installation)))
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

    /// Removes an installation whose file is gone: runs `unregister` (from the serving
    /// version, or the kept copy after a restart) and forgets the installation. What it
    /// produced stays in the store.
    async fn remove(&self, record: &InstallationRecord, serving: Option<&Arc<Installation>>) {
        let name = &record.name;
        let installation = match serving {
            Some(installation) => Some(installation.clone()),
            None => match self.load_kept_copy(record).await {
                Ok(installation) => Some(Arc::new(installation)),
                Err(error) => {
                    tracing::warn!(installation = %name, error = %format!("{error:#}"), "cannot run unregister: the kept copy of the plugin is unusable");
                    None
                }
            },
        };
        if let Some(installation) = installation
            && record.registered_at.is_some()
        {
            match lifecycle_outcome(installation.unregister(&record_id("req")).await.0) {
                Ok(()) => tracing::info!(installation = %name, "unregistered"),
                Err(problem) => {
                    tracing::warn!(installation = %name, %problem, "unregister failed; removing the installation anyway")
                }
            }
        }
        let id = record.id.clone();
        if let Err(error) = self.store.delete_installation(&id).await {
            tracing::error!(installation = %name, error = %format!("{error:#}"), "cannot forget the removed installation");
        }
        tracing::info!(installation = %name, "plugin removed: its file is gone from the plugins folder");
    }

    async fn load_kept_copy(&self, record: &InstallationRecord) -> anyhow::Result<Installation> {
        let kept = self.kept_copy(&record.plugin_hash);
        let bytes: Arc<[u8]> = tokio::fs::read(&kept)
            .await
            .with_context(|| format!("cannot read {}", kept.display()))?
            .into();
        let plugin = self.runtime.load(bytes).await?;
        let sidecar = Sidecar::parse(&record.sidecar).context("the kept sidecar is not valid any more")?;
        let file = self.plugins_dir.join(format!("{}.wasm", record.name));
        self.installation(&file, record.clone(), plugin, sidecar)
    }

    /// Deletes kept copies no installation refers to any more.
    fn prune_kept_copies(&self, hashes_in_use: &HashSet<String>) {
        let Ok(entries) = std::fs::read_dir(&self.kept_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let in_use = name
                .strip_suffix(".wasm")
                .is_some_and(|hash| hashes_in_use.contains(hash));
            if name.ends_with(".wasm") && !in_use {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}
