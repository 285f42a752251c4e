//! `sluice compile FILE...`: compiles plugins' optimised code into the compiled-code cache
//! ahead of time, exactly the entries `sluice serve` would write (same engine settings,
//! same key), so that they serve at full speed from their first request.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context as _;

use crate::runtime::{CacheKey, CodeCache, Profiling, Runtime, Tiering};

/// Where the cache and its key are: as `sluice serve` finds them.
#[derive(Debug, Clone)]
pub struct CacheLocation {
    pub data_dir: PathBuf,
    /// `None` means `<data>/cache`.
    pub cache_dir: Option<PathBuf>,
    /// `None` means `<data>/cache-key`.
    pub cache_key: Option<PathBuf>,
}

impl CacheLocation {
    /// Opens the cache, creating the folders and the key when missing.
    pub fn open(&self) -> anyhow::Result<CodeCache> {
        let key = self
            .cache_key
            .clone()
            .unwrap_or_else(|| self.data_dir.join("cache-key"));
        if let Some(folder) = key.parent().filter(|folder| !folder.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).with_context(|| format!("cannot create {}", folder.display()))?;
        }
        let dir = self.cache_dir.clone().unwrap_or_else(|| self.data_dir.join("cache"));
        CodeCache::open(dir, CacheKey::load_or_create(&key)?)
    }
}

/// Compiles each file (checking it against the contract as `sluice serve` would) and
/// prints one line per file; fails if any file is not a plugin this host can run.
pub async fn compile(files: &[PathBuf], location: &CacheLocation) -> anyhow::Result<()> {
    let runtime = Runtime::new(Some(location.open()?), Profiling::Off, Tiering::Off)?;
    let mut failed = 0;
    for file in files {
        match compile_one(&runtime, file).await {
            Ok(line) => println!("{line}"),
            Err(error) => {
                failed += 1;
                eprintln!("{}: {error:#}", file.display());
            }
        }
    }
    anyhow::ensure!(
        failed == 0,
        "{failed} of {} plugin file(s) could not be compiled",
        files.len()
    );
    Ok(())
}

async fn compile_one(runtime: &Runtime, file: &Path) -> anyhow::Result<String> {
    let bytes = std::fs::read(file).context("cannot read the file")?;
    let started = Instant::now();
    let plugin = runtime.load(bytes.into()).await?;
    let what = match plugin.code_source {
        crate::runtime::CodeSource::Cache => "already in the cache",
        _ => "compiled into the cache",
    };
    Ok(format!(
        "{}: {} {}, {what} in {} ms",
        file.display(),
        plugin.definition.name,
        plugin.definition.version,
        started.elapsed().as_millis()
    ))
}
