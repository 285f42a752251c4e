//! Host-wide settings and installations ([`MetaStore`] for [`PostgresStore`]).

use std::sync::Arc;

use anyhow::Context as _;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use super::rows::{INSTALLATION_COLUMNS, execute, installation_row, query, query_opt};
use crate::store::sealing::{SecretKey, is_sealed};
use crate::store::{InstallationRecord, MetaStore, Pending};

/// Why a sidecar cannot be kept: the database is shared, and sidecars hold secrets.
pub const NO_SECRET_KEY: &str = "sidecars are kept in PostgreSQL sealed with the store's secret key, and none is set: \
     give every replica the same key in [store] secret-key or SLUICE_STORE_SECRET_KEY \
     (32 bytes as 64 hex digits or in base64; `openssl rand -base64 32` makes one)";

/// The sidecar of `record` as the database keeps it: sealed, or empty without one.
fn seal_sidecar(key: Option<&SecretKey>, record: &InstallationRecord) -> anyhow::Result<String> {
    if record.sidecar.is_empty() {
        return Ok(String::new());
    }
    let key = key.with_context(|| {
        format!(
            "cannot keep the sidecar of installation {}: {NO_SECRET_KEY}",
            record.name
        )
    })?;
    Ok(key.seal(&record.sidecar))
}

/// The sidecar of a record read from the database, in plain text.
fn open_sidecar(key: Option<&SecretKey>, record: &InstallationRecord) -> anyhow::Result<String> {
    if !is_sealed(&record.sidecar) {
        // Empty, or written before sidecars were sealed.
        return Ok(record.sidecar.clone());
    }
    let key = key.with_context(|| {
        format!(
            "cannot read the sidecar of installation {}: {NO_SECRET_KEY}",
            record.name
        )
    })?;
    key.open(&record.sidecar)
        .with_context(|| format!("cannot read the sidecar of installation {}", record.name))
}

/// Drops the code no installation runs any more.
async fn drop_unused_code<C: GenericClient>(c: &C) -> anyhow::Result<u64> {
    execute(
        c,
        "DELETE FROM plugin_code WHERE hash NOT IN (SELECT plugin_hash FROM installations)",
        &[],
    )
    .await
}

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
        let key = self.secret_key.clone();
        self.run(move |c| async move {
            let rows = query(
                &c,
                &format!("SELECT {INSTALLATION_COLUMNS} FROM installations ORDER BY name"),
                &[],
            )
            .await?;
            rows.iter()
                .map(|row| {
                    let mut record = installation_row(row);
                    record.sidecar = open_sidecar(key.as_deref(), &record)?;
                    Ok(record)
                })
                .collect()
        })
    }

    fn save_installation(&self, record: &InstallationRecord, code: Option<Arc<[u8]>>) -> Pending<()> {
        let sealed = match seal_sidecar(self.secret_key.as_deref(), record) {
            Ok(sealed) => sealed,
            Err(error) => return Pending::failed(error),
        };
        let r = record.clone();
        self.run_changing("installations", move |mut c| async move {
            let tx = c.transaction().await?;
            if let Some(code) = code {
                execute(
                    &tx,
                    "INSERT INTO plugin_code (hash, code, created_at) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
                    &[&r.plugin_hash, &&code[..], &r.updated_at],
                )
                .await?;
            }
            execute(
                &tx,
                "INSERT INTO installations (id, name, webhook_id, plugin_hash, sidecar, registered_at, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (id) DO UPDATE SET name = $2, webhook_id = $3, plugin_hash = $4, sidecar = $5,
                    registered_at = $6, updated_at = $8",
                &[
                    &r.id,
                    &r.name,
                    &r.webhook_id,
                    &r.plugin_hash,
                    &sealed,
                    &r.registered_at,
                    &r.created_at,
                    &r.updated_at,
                ],
            )
            .await?;
            drop_unused_code(&tx).await?;
            tx.commit().await?;
            Ok((c, ()))
        })
    }

    fn delete_installation(&self, id: &str) -> Pending<bool> {
        let id = id.to_string();
        self.run_changing("installations", move |mut c| async move {
            let tx = c.transaction().await?;
            let removed = execute(&tx, "DELETE FROM installations WHERE id = $1", &[&id]).await? > 0;
            drop_unused_code(&tx).await?;
            tx.commit().await?;
            Ok((c, removed))
        })
    }

    fn plugin_code(&self, hash: &str) -> Pending<Option<Vec<u8>>> {
        let hash = hash.to_string();
        self.run(move |c| async move {
            let row = query_opt(&c, "SELECT code FROM plugin_code WHERE hash = $1", &[&hash]).await?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    fn claim_registration(&self, id: &str, at: i64) -> Pending<bool> {
        let id = id.to_string();
        self.run_changing("installations", move |c| async move {
            let claimed = execute(
                &c,
                "UPDATE installations SET registered_at = $2 WHERE id = $1 AND registered_at IS NULL",
                &[&id, &at],
            )
            .await?;
            Ok((c, claimed > 0))
        })
    }

    fn release_registration(&self, id: &str) -> Pending<()> {
        let id = id.to_string();
        self.run_changing("installations", move |c| async move {
            execute(
                &c,
                "UPDATE installations SET registered_at = NULL WHERE id = $1",
                &[&id],
            )
            .await?;
            Ok((c, ()))
        })
    }

    fn is_shared(&self) -> bool {
        true
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
