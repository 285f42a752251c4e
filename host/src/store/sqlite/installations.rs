//! Host-wide settings and installations ([`MetaStore`] for [`SqliteStore`]).

use std::sync::Arc;

use anyhow::Context as _;
use rusqlite::{Connection, params};

use super::rows::{installation_row, one};
use super::{SqliteStore, execute};
use crate::store::{InstallationRecord, MetaStore, Pending};

/// The table of plugin code, by hash: every installation's plugin, so that `unregister`
/// can run after its file left the plugins folder.
pub(super) const PLUGIN_CODE_MIGRATION: &str = r#"
CREATE TABLE plugin_code (
    hash TEXT PRIMARY KEY,
    code BLOB NOT NULL,
    created_at INTEGER NOT NULL
);
"#;

/// Drops the code no installation runs any more.
fn drop_unused_code(c: &Connection) -> rusqlite::Result<usize> {
    execute(
        c,
        "DELETE FROM plugin_code WHERE hash NOT IN (SELECT plugin_hash FROM installations)",
        [],
    )
}

impl MetaStore for SqliteStore {
    fn meta(&self, key: &str) -> Pending<Option<String>> {
        let key = key.to_owned();
        self.read(move |c| {
            let key = key.as_str();
            one(c, "SELECT value FROM meta WHERE key = ?1", key, |row| row.get(0))
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Pending<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.write(move |c| {
            execute(
                c,
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
            Ok(())
        })
    }

    fn installations(&self) -> Pending<Vec<InstallationRecord>> {
        self.read(move |c| {
            let mut statement = c.prepare_cached(
                "SELECT id, name, webhook_id, plugin_hash, sidecar, registered_at, created_at, updated_at
                 FROM installations ORDER BY name",
            )?;
            Ok(statement
                .query_map([], installation_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn save_installation(&self, record: &InstallationRecord, code: Option<Arc<[u8]>>) -> Pending<()> {
        let record = record.clone();
        self.write(move |c| {
            if let Some(code) = &code {
                execute(
                    c,
                    "INSERT INTO plugin_code (hash, code, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO NOTHING",
                    params![record.plugin_hash, &code[..], record.updated_at],
                )?;
            }
            execute(c,
                "INSERT INTO installations (id, name, webhook_id, plugin_hash, sidecar, registered_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (id) DO UPDATE SET
                    name = ?2, webhook_id = ?3, plugin_hash = ?4, sidecar = ?5, registered_at = ?6, updated_at = ?8",
                params![
                    record.id,
                    record.name,
                    record.webhook_id,
                    record.plugin_hash,
                    record.sidecar,
                    record.registered_at,
                    record.created_at,
                    record.updated_at
                ],
            )?;
            drop_unused_code(c)?;
            Ok(())
        })
    }

    fn delete_installation(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.write(move |c| {
            let removed = execute(c, "DELETE FROM installations WHERE id = ?1", [&id])? > 0;
            drop_unused_code(c)?;
            Ok(removed)
        })
    }

    fn plugin_code(&self, hash: &str) -> Pending<Option<Vec<u8>>> {
        let hash = hash.to_owned();
        self.read(move |c| {
            one(
                c,
                "SELECT code FROM plugin_code WHERE hash = ?1",
                hash.as_str(),
                |row| row.get(0),
            )
        })
    }

    fn claim_registration(&self, id: &str, at: i64) -> Pending<bool> {
        let id = id.to_string();
        self.write(move |c| {
            let claimed = execute(
                c,
                "UPDATE installations SET registered_at = ?2 WHERE id = ?1 AND registered_at IS NULL",
                params![id, at],
            )?;
            Ok(claimed > 0)
        })
    }

    fn release_registration(&self, id: &str) -> Pending<()> {
        let id = id.to_string();
        self.write(move |c| {
            execute(c, "UPDATE installations SET registered_at = NULL WHERE id = ?1", [&id])?;
            Ok(())
        })
    }

    fn is_shared(&self) -> bool {
        false
    }

    fn leadership(&self, _role: &str) -> tokio::sync::watch::Receiver<bool> {
        // One process owns the files: it leads every role, for good.
        self.leader.subscribe()
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the databases can be opened afresh at their paths and the writer takes
    /// writes. The store's open connections go on working on a file that was moved,
    /// deleted or lost with its mount, so only a new connection finds that out (as a
    /// restart would); a writer that stopped or hangs answers late or not at all.
    fn check_reachable(&self) -> Pending<()> {
        let files = self.files.clone();
        let writer = self.writer.clone();
        Pending::off_thread(move || {
            for path in &files {
                let connection = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .with_context(|| format!("cannot open {}", path.display()))?;
                connection
                    .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
                    .with_context(|| format!("cannot read {}", path.display()))?;
            }
            writer
                .write(|_| Ok(()))
                .wait()
                .context("the store's writer does not take writes")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn installation(id: &str, name: &str) -> InstallationRecord {
        InstallationRecord {
            id: id.into(),
            name: name.into(),
            webhook_id: format!("wh_{id}"),
            plugin_hash: "hash".into(),
            sidecar: String::new(),
            registered_at: None,
            created_at: 1,
            updated_at: 1,
        }
    }

    #[test]
    fn settings_are_kept_and_replaced() {
        let store = SqliteStore::in_memory().unwrap();
        assert_eq!(store.meta("bot_id").wait().unwrap(), None);
        store.set_meta("bot_id", "bot_1").wait().unwrap();
        store.set_meta("bot_id", "bot_2").wait().unwrap();
        assert_eq!(store.meta("bot_id").wait().unwrap().as_deref(), Some("bot_2"));
    }

    #[test]
    fn installations_are_saved_by_id_listed_by_name_and_forgotten() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .save_installation(&installation("inst_b", "orders"), Some(b"code".as_slice().into()))
            .wait()
            .unwrap();
        store
            .save_installation(&installation("inst_a", "shop"), None)
            .wait()
            .unwrap();
        let registered = InstallationRecord {
            plugin_hash: "new hash".into(),
            registered_at: Some(5),
            updated_at: 5,
            created_at: 99,
            ..installation("inst_b", "orders")
        };
        store
            .save_installation(&registered, Some(b"new code".as_slice().into()))
            .wait()
            .unwrap();
        let all = store.installations().wait().unwrap();
        assert_eq!(
            all.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
            ["orders", "shop"]
        );
        assert_eq!(all[0].plugin_hash, "new hash");
        assert_eq!(all[0].registered_at, Some(5));
        assert_eq!(
            all[0].created_at, 1,
            "a replaced installation keeps when it was created"
        );
        // Another installation cannot take a name in use.
        assert!(
            store
                .save_installation(&installation("inst_c", "shop"), None)
                .wait()
                .is_err()
        );
        assert_eq!(
            store.plugin_code("new hash").wait().unwrap().as_deref(),
            Some(b"new code".as_slice())
        );
        assert_eq!(
            store.plugin_code("hash").wait().unwrap().as_deref(),
            Some(b"code".as_slice()),
            "shop still runs it"
        );
        assert!(store.delete_installation("inst_b").wait().unwrap());
        assert!(!store.delete_installation("inst_b").wait().unwrap(), "removed once");
        assert_eq!(store.installations().wait().unwrap().len(), 1);
        assert_eq!(
            store.plugin_code("new hash").wait().unwrap(),
            None,
            "code no installation runs is dropped"
        );
    }

    #[test]
    fn register_is_claimed_once_until_given_back() {
        let store = SqliteStore::in_memory().unwrap();
        store
            .save_installation(&installation("inst_a", "shop"), None)
            .wait()
            .unwrap();
        assert!(store.claim_registration("inst_a", 7).wait().unwrap());
        assert!(!store.claim_registration("inst_a", 8).wait().unwrap());
        assert_eq!(store.installations().wait().unwrap()[0].registered_at, Some(7));
        store.release_registration("inst_a").wait().unwrap();
        assert!(store.claim_registration("inst_a", 9).wait().unwrap());
    }
}
