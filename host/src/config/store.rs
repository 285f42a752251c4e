//! Where sluice keeps what it records (`[store]`): the embedded SQLite files in the data
//! folder by default, or a PostgreSQL database several replicas share.

use serde::Deserialize;

/// The `[store]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://user:password@host:port/database`: keep everything in PostgreSQL.
    /// Unset: the embedded SQLite store in the data folder. `--store` and
    /// `SLUICE_STORE_URL` win over it.
    pub url: Option<String>,
    /// Connections to PostgreSQL this replica keeps at most (default 16).
    pub pool_size: Option<usize>,
    /// The key that seals the plugins' sidecars in PostgreSQL, the same for every
    /// replica: 32 bytes, as 64 hex digits or in base64. `SLUICE_STORE_SECRET_KEY` wins
    /// over it.
    pub secret_key: Option<String>,
}
