//! Host-wide settings kept in the store, and the installations remembered across restarts.

use std::sync::Arc;

use tokio::sync::watch;

use super::Pending;

/// An installed plugin, as remembered across restarts.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallationRecord {
    /// Installation id (`inst_...`), also the integration id plugins see.
    pub id: String,
    /// Installation name: the plugin file name without `.wasm`.
    pub name: String,
    /// The unguessable id in the webhook URL.
    pub webhook_id: String,
    /// SHA-256 of the plugin file the installation last ran.
    pub plugin_hash: String,
    /// The sidecar text the installation runs with (empty without one). A shared store
    /// keeps it sealed (see [`super::sealing`]); records carry it in plain text.
    pub sidecar: String,
    /// When `register` last succeeded, if it ever did.
    pub registered_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Settings and installations. Every call answers with a [`Pending`], like every part of [`super::Store`].
pub trait MetaStore {
    /// A host-wide setting kept in the store (the bot id, for example).
    fn meta(&self, key: &str) -> Pending<Option<String>>;
    fn set_meta(&self, key: &str, value: &str) -> Pending<()>;

    /// Every installation, by name, with its sidecar in plain text.
    fn installations(&self) -> Pending<Vec<InstallationRecord>>;
    /// Creates or replaces an installation record, in one transaction with `code`, the
    /// plugin whose hash is `record.plugin_hash` (`None` when the store has it already).
    /// Code no installation runs any more is dropped.
    fn save_installation(&self, record: &InstallationRecord, code: Option<Arc<[u8]>>) -> Pending<()>;
    /// Forgets an installation, and its code unless another one runs it; what it produced
    /// stays. Answers whether this call removed it: of replicas removing one installation
    /// at once, one hears `true` and runs `unregister`.
    fn delete_installation(&self, id: &str) -> Pending<bool>;
    /// A plugin's code, by its SHA-256 (of the installations' `plugin_hash`).
    fn plugin_code(&self, hash: &str) -> Pending<Option<Vec<u8>>>;
    /// Claims running `register` for an installation not registered yet (marking it
    /// registered at `at`): of replicas asking at once, one hears `true`.
    fn claim_registration(&self, id: &str, at: i64) -> Pending<bool>;
    /// Gives a claim back after `register` failed, so that a later start tries again.
    fn release_registration(&self, id: &str) -> Pending<()>;
    /// Whether several replicas may share this store (then it, not a plugins folder, says
    /// which plugins are installed).
    fn is_shared(&self) -> bool;

    /// Whether this replica leads `role` (`delivery`, say): of the replicas sharing a
    /// store, one at a time does the role's work, and another takes over when it dies.
    /// The watch changes when leadership is won or lost; the embedded store has one
    /// replica, always the leader.
    fn leadership(&self, role: &str) -> watch::Receiver<bool>;

    /// Changes when another replica changed what every replica keeps in memory
    /// (subscriptions, triggers), so that it is read again; with one replica (the
    /// embedded store) it never changes.
    fn changes(&self) -> watch::Receiver<u64>;

    /// Whether the store can be reached as a restart would reach it, and takes writes:
    /// `Ok` if so, else why not (for the log; `GET /readyz` says only "store unreachable").
    fn check_reachable(&self) -> Pending<()>;
}
