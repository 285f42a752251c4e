//! The compiled-code cache on disk: native code the engine compiled, kept so that a restart
//! (or another host sharing the folder) need not compile a plugin again.
//!
//! Cached code is loaded as native code, so whoever can write the folder could otherwise
//! run code in the host. Every entry therefore carries an HMAC-SHA256 keyed by a secret
//! that only sluice reads (the cache key, kept in the data folder), over the entry's name
//! (plugin and engine settings) and its code: an entry written by anyone without the key,
//! or moved to another plugin's name, fails the check and is never handed to wasmtime.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What every entry starts with: says what the file is, and which layout follows.
const MAGIC: &[u8; 16] = b"sluice-cwasm-v2\n";
/// The HMAC-SHA256 after the magic.
const TAG_LEN: usize = 32;
/// How many random bytes a new cache key has.
const KEY_LEN: usize = 32;

/// The secret that authenticates cache entries. Hosts share a cache by sharing this key.
#[derive(Clone)]
pub struct CacheKey(Vec<u8>);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    /// Reads the key from `path` (hex, at least 32 bytes), or creates one there (mode
    /// 0600) when the file does not exist. Hosts starting at once on the same new path
    /// all end up with the one key that was written first.
    pub fn load_or_create(path: &Path) -> anyhow::Result<CacheKey> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text).with_context(|| format!("the cache key {} is not usable", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(error) => Err(error).with_context(|| format!("cannot read the cache key {}", path.display())),
        }
        .inspect(|_| warn_if_others_can_read(path))
    }

    fn parse(text: &str) -> anyhow::Result<CacheKey> {
        let key = hex::decode(text.trim()).context("it is not hex")?;
        anyhow::ensure!(
            key.len() >= KEY_LEN,
            "it has {} bytes; a cache key has at least {KEY_LEN} (64 hex digits)",
            key.len()
        );
        Ok(CacheKey(key))
    }

    fn create(path: &Path) -> anyhow::Result<CacheKey> {
        let text = format!("{}\n", crate::ids::secret_token(KEY_LEN));
        // Written whole under a name of its own, then linked into place: a hard link
        // never replaces a key another host put there meanwhile, and no host reads a
        // half-written one.
        let temporary = path.with_extension(format!("{}.{}.tmp", std::process::id(), crate::ids::secret_token(4)));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options
            .open(&temporary)
            .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()));
        let linked = written.and_then(|()| match std::fs::hard_link(&temporary, path) {
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
            other => other,
        });
        let _ = std::fs::remove_file(&temporary);
        linked.with_context(|| format!("cannot create the cache key {}", path.display()))?;
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the cache key {}", path.display()))?;
        tracing::info!(path = %path.display(), "created the compiled-code cache key");
        Self::parse(&text).with_context(|| format!("the cache key {} is not usable", path.display()))
    }

    fn tag(&self, name: &str, code: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(MAGIC);
        mac.update(&(name.len() as u64).to_le_bytes());
        mac.update(name.as_bytes());
        mac.update(code);
        mac
    }
}

/// The key authenticates the code sluice runs: say so when others can read it.
fn warn_if_others_can_read(path: &Path) {
    #[cfg(unix)]
    if let Ok(metadata) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = metadata.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = %format!("{:o}", mode & 0o777),
                "the compiled-code cache key can be read by other users: whoever can read it and write the cache folder can run code in sluice; chmod 600 it");
        }
    }
}

/// Why a cache entry was not used.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error("it is not a compiled-code cache entry of this sluice")]
    NotAnEntry,
    #[error("its MAC does not match: it was written under another cache key, altered, or belongs to another plugin")]
    WrongMac,
    #[error("it cannot be read: {0}")]
    Unreadable(std::io::Error),
}

/// A folder of compiled code and the key its entries are checked with.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
    key: CacheKey,
}

impl CodeCache {
    /// The cache in `dir` (created when missing), its entries checked with `key`.
    pub fn open(dir: PathBuf, key: CacheKey) -> anyhow::Result<CodeCache> {
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the code cache {}", dir.display()))?;
        Ok(CodeCache { dir, key })
    }

    /// Where the entry of `name` (plugin hash and engine settings) is.
    pub(super) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.cwasm"))
    }

    /// The code of the entry at `path`, if it is there and passes the check; `Ok(None)`
    /// when there is no entry.
    pub(super) fn read(&self, path: &Path, name: &str) -> Result<Option<Vec<u8>>, Refused> {
        let mut entry = match std::fs::read(path) {
            Ok(entry) => entry,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(Refused::Unreadable(error)),
        };
        if entry.len() < MAGIC.len() + TAG_LEN || !entry.starts_with(MAGIC) {
            return Err(Refused::NotAnEntry);
        }
        let (tag, code) = entry[MAGIC.len()..].split_at(TAG_LEN);
        // Constant time, though timing would tell an attacker little here.
        self.key
            .tag(name, code)
            .verify_slice(tag)
            .map_err(|_| Refused::WrongMac)?;
        entry.drain(..MAGIC.len() + TAG_LEN);
        Ok(Some(entry))
    }

    /// Writes `code` as the entry of `name`, atomically: readers see the old entry or the
    /// new one, whole.
    pub(super) fn write(&self, path: &Path, name: &str, code: &[u8]) -> std::io::Result<()> {
        let tag = self.key.tag(name, code).finalize().into_bytes();
        // A name of its own: hosts sharing a cache folder may write the same entry.
        let temporary = path.with_extension(format!("{}.{}.tmp", std::process::id(), crate::ids::secret_token(4)));
        let written = std::fs::File::create(&temporary).and_then(|mut file| {
            file.write_all(MAGIC)?;
            file.write_all(&tag)?;
            file.write_all(code)
        });
        let renamed = written.and_then(|()| std::fs::rename(&temporary, path));
        if renamed.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        renamed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(dir: &Path, key: &str) -> CodeCache {
        let key_path = dir.join(key);
        CodeCache::open(dir.join("cache"), CacheKey::load_or_create(&key_path).unwrap()).unwrap()
    }

    #[test]
    fn an_entry_reads_back_under_its_key_and_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let ours = cache(dir.path(), "ours");
        let path = ours.path("plugin-a");
        ours.write(&path, "plugin-a", b"native code").unwrap();
        assert_eq!(ours.read(&path, "plugin-a").unwrap().unwrap(), b"native code");

        // The same bytes under another plugin's name: refused.
        assert!(matches!(ours.read(&path, "plugin-b"), Err(Refused::WrongMac)));
        // Under another key: refused.
        let theirs = cache(dir.path(), "theirs");
        assert!(matches!(theirs.read(&path, "plugin-a"), Err(Refused::WrongMac)));
        // One byte of code changed: refused.
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(ours.read(&path, "plugin-a"), Err(Refused::WrongMac)));
        // Not an entry at all (the earlier layout: a SHA-256, then the code).
        std::fs::write(&path, [0u8; 40]).unwrap();
        assert!(matches!(ours.read(&path, "plugin-a"), Err(Refused::NotAnEntry)));
        assert!(ours.read(&ours.path("missing"), "missing").unwrap().is_none());
    }

    #[test]
    fn a_new_key_is_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache-key");
        let first = CacheKey::load_or_create(&path).unwrap();
        assert_eq!(first.0.len(), KEY_LEN);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(
            CacheKey::load_or_create(&path).unwrap().0,
            first.0,
            "read back, not replaced"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );

        std::fs::write(&path, "abcd\n").unwrap();
        let short = CacheKey::load_or_create(&path).unwrap_err();
        assert!(format!("{short:#}").contains("at least 32"), "{short:#}");
    }
}
