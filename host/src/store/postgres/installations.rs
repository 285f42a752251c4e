//! Host-wide settings and installations ([`MetaStore`] for [`PostgresStore`]).

use super::PostgresStore;
use super::rows::{INSTALLATION_COLUMNS, execute, installation_row, query, query_opt};
use crate::store::{InstallationRecord, MetaStore, Pending};

impl MetaStore for PostgresStore {
    fn meta(&self, key: &str) -> Pending<Option<String>> {
        let key = key.to_owned();
        self.run(move |c| async move {
            let row = query_opt(&c, "SELECT value FROM meta WHERE key = $1", &[&key]).await?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn set_meta(&self, key: &str, value: &str) -> Pending<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.run(move |c| async move {
            execute(
                &c,
                "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
            .await?;
            Ok(())
        })
    }

    fn installations(&self) -> Pending<Vec<InstallationRecord>> {
        self.run(move |c| async move {
            let rows = query(
                &c,
                &format!("SELECT {INSTALLATION_COLUMNS} FROM installations ORDER BY name"),
                &[],
            )
            .await?;
            Ok(rows.iter().map(installation_row).collect())
        })
    }

    fn save_installation(&self, record: &InstallationRecord) -> Pending<()> {
        let r = record.clone();
        self.run(move |c| async move {
            execute(
                &c,
                "INSERT INTO installations (id, name, webhook_id, plugin_hash, sidecar, registered_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET name = $2, webhook_id = $3, plugin_hash = $4, sidecar = $5,
                    registered_at = $6, updated_at = $8",
                &[
                    &r.id,
                    &r.name,
                    &r.webhook_id,
                    &r.plugin_hash,
                    &r.sidecar,
                    &r.registered_at,
                    &r.created_at,
                    &r.updated_at,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn delete_installation(&self, id: &str) -> Pending<()> {
        let id = id.to_string();
        self.run(move |c| async move {
            execute(&c, "DELETE FROM installations WHERE id = $1", &[&id]).await?;
            Ok(())
        })
    }

    fn leadership(&self, role: &str) -> tokio::sync::watch::Receiver<bool> {
        self.compete_for(role)
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether the database answers, on a pooled connection (made afresh when the pool's
    /// were lost).
    fn check_reachable(&self) -> Pending<()> {
        self.run(move |c| async move {
            c.simple_query("SELECT 1").await?;
            Ok(())
        })
    }
}
