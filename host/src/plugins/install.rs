//! Installing, replacing and removing a plugin from code (the admin API's upload route,
//! the embedding API, and anything else that hands sluice a component rather than
//! dropping it into the folder).
//!
//! A plugin given as bytes is checked first (it must compile and speak the contract, its
//! sidecar must parse); a refused one changes nothing, and the version serving before
//! keeps serving. It then takes the path a dropped file takes into the store, and serves
//! with the same atomic swap hot reload makes. Where it is kept differs by store, as the
//! truth does: with the embedded store the plugins folder is the truth, so the plugin is
//! written there (a temporary name, then a rename, the way an editor saves a file) and
//! keeps its webhook URL across restarts like any other file; with a shared store the
//! store is the truth, so it goes to the store alone, and no replica's folder changes.

use std::path::Path;
use std::sync::Arc;

use super::installation::Installation;
use super::sync::{PluginHost, valid_installation_name};
use crate::config::Sidecar;

/// Why a plugin given from code was not installed. Nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The name cannot be an installation name.
    #[error("{0}")]
    InvalidName(String),
    /// The bytes are not a component for this contract, or the sidecar is not valid.
    #[error("{0}")]
    Refused(String),
    /// The plugins folder could not be written, or the store failed.
    #[error(transparent)]
    Host(#[from] anyhow::Error),
}

impl PluginHost {
    /// Installs `bytes` as installation `name`, or replaces its plugin, with `sidecar`
    /// (TOML) as its configuration; without one, the sidecar already there (if any) stays.
    /// Answers the installation now serving, and whether it was created.
    pub async fn install(
        &self,
        name: &str,
        bytes: Vec<u8>,
        sidecar: Option<&str>,
    ) -> Result<(Arc<Installation>, bool), InstallError> {
        valid_installation_name(name).map_err(InstallError::InvalidName)?;
        let bytes: Arc<[u8]> = bytes.into();
        let checked = self
            .runtime
            .load(bytes.clone())
            .await
            .map_err(|error| InstallError::Refused(format!("{error:#}")))?;
        if let Some(text) = sidecar {
            Sidecar::parse(text)
                .map_err(|error| InstallError::Refused(format!("the sidecar is not valid: {error:#}")))?;
        }
        let report = if self.store.is_shared() {
            self.install_offered(name, bytes, checked, sidecar).await?
        } else {
            let file = self.plugin_file(name);
            if let Some(text) = sidecar {
                write_atomically(&Sidecar::path_for(&file), text.as_bytes()).await?;
            }
            write_atomically(&file, &bytes).await?;
            self.sync_with_checked(name, checked).await?
        };
        if let Some(failure) = report
            .failed
            .iter()
            .find(|failure| failure.file == format!("{name}.wasm"))
        {
            return Err(InstallError::Refused(failure.reason.clone()));
        }
        let installation = self.registry.by_id_or_name(name).ok_or_else(|| {
            InstallError::Host(anyhow::anyhow!("installation {name} is not serving after the install"))
        })?;
        Ok((installation, report.installed.iter().any(|installed| installed == name)))
    }

    /// Removes installation `name` for every replica: its plugin file and sidecar in
    /// this host's folder if there, and its record in the store (`unregister` runs once;
    /// what it produced stays). Its compiled plugin is dropped once the requests running
    /// on it finish. Answers whether there was one.
    pub async fn uninstall(&self, name: &str) -> Result<bool, InstallError> {
        valid_installation_name(name).map_err(InstallError::InvalidName)?;
        let file = self.plugin_file(name);
        let existed = remove_if_present(&file).await?;
        remove_if_present(&Sidecar::path_for(&file)).await?;
        if self.store.is_shared() {
            // It may have come from another replica's folder, or from code.
            let forgotten = self.forget(name).await?;
            return Ok(existed || forgotten);
        }
        let report = self.sync().await?;
        Ok(existed || report.removed.iter().any(|removed| removed == name))
    }
}

/// Writes `path` under a temporary name first, so the folder watcher (which only looks at
/// `*.wasm` and `*.toml`) never reads it half written.
async fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let temporary = path.with_extension(format!("{}.part", crate::ids::secret_token(6)));
    tokio::fs::write(&temporary, bytes)
        .await
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    tokio::fs::rename(&temporary, path)
        .await
        .with_context(|| format!("cannot move {} into place", path.display()))
}

async fn remove_if_present(path: &Path) -> anyhow::Result<bool> {
    use anyhow::Context as _;
    match tokio::fs::remove_file(path).await {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error).with_context(|| format!("cannot remove {}", path.display())),
    }
}
