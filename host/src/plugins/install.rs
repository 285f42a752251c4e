//! Installing, replacing and removing a plugin from code (the embedding API, and anything
//! else that hands sluice a component rather than dropping it into the folder).
//!
//! The plugins folder stays the one truth: a plugin given as bytes is checked first (it
//! must compile and speak the contract, its sidecar must parse), then written into the
//! folder the way an editor saves a file (a temporary name, then a rename) and applied with
//! [`PluginHost::sync`], the same atomic swap hot reload makes. So an installation made
//! from code keeps its webhook URL across restarts like any other, and a refused one never
//! reaches the folder: the version serving before keeps serving.

use std::path::{Path, PathBuf};
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
    /// Answers the installation now serving.
    pub async fn install(
        &self,
        name: &str,
        bytes: Vec<u8>,
        sidecar: Option<&str>,
    ) -> Result<Arc<Installation>, InstallError> {
        valid_installation_name(name).map_err(InstallError::InvalidName)?;
        let bytes: Arc<[u8]> = bytes.into();
        // Checked before anything is written; kept alive so that the sync below shares
        // this compiled code instead of compiling it again.
        let _checked = self
            .runtime
            .load(bytes.clone())
            .await
            .map_err(|error| InstallError::Refused(format!("{error:#}")))?;
        if let Some(text) = sidecar {
            Sidecar::parse(text)
                .map_err(|error| InstallError::Refused(format!("the sidecar is not valid: {error:#}")))?;
        }
        let file = self.plugin_file(name);
        if let Some(text) = sidecar {
            write_atomically(&Sidecar::path_for(&file), text.as_bytes()).await?;
        }
        write_atomically(&file, &bytes).await?;
        let report = self.sync().await?;
        if let Some(failure) = report
            .failed
            .iter()
            .find(|failure| failure.file == format!("{name}.wasm"))
        {
            return Err(InstallError::Refused(failure.reason.clone()));
        }
        self.registry
            .by_id_or_name(name)
            .ok_or_else(|| InstallError::Host(anyhow::anyhow!("installation {name} is not serving after the install")))
    }

    /// Removes installation `name` (its plugin file and sidecar; `unregister` runs, what
    /// it produced stays). Answers whether there was one.
    pub async fn uninstall(&self, name: &str) -> anyhow::Result<bool> {
        valid_installation_name(name).map_err(anyhow::Error::msg)?;
        let file = self.plugin_file(name);
        let existed = remove_if_present(&file).await?;
        remove_if_present(&Sidecar::path_for(&file)).await?;
        let report = self.sync().await?;
        Ok(existed || report.removed.iter().any(|removed| removed == name))
    }

    fn plugin_file(&self, name: &str) -> PathBuf {
        self.plugins_dir().join(format!("{name}.wasm"))
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
