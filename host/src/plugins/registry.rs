//! The live set of installations, swapped atomically when the plugins folder changes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::Installation;

/// A plugin file that could not be installed, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadFailure {
    pub file: String,
    pub reason: String,
    /// The webhook id of the installation the file was, when it ran before (a restart
    /// with a broken file): its URL answers 503 with the reason instead of 404, so a
    /// platform sending to it hears it is worth retrying.
    pub webhook_id: Option<String>,
}

/// One consistent view of every installation.
#[derive(Default)]
pub struct Snapshot {
    /// By installation name.
    pub installations: BTreeMap<String, Arc<Installation>>,
    /// Plugin files that failed to load and have no earlier version serving.
    pub failures: Vec<LoadFailure>,
    by_webhook: HashMap<String, Arc<Installation>>,
    by_id: HashMap<String, Arc<Installation>>,
    failed_by_webhook: HashMap<String, LoadFailure>,
}

impl Snapshot {
    pub fn new(installations: BTreeMap<String, Arc<Installation>>, failures: Vec<LoadFailure>) -> Snapshot {
        let by_webhook = installations
            .values()
            .map(|i| (i.record.webhook_id.clone(), i.clone()))
            .collect();
        let by_id = installations
            .values()
            .map(|i| (i.record.id.clone(), i.clone()))
            .collect();
        let failed_by_webhook = failures
            .iter()
            .filter_map(|f| Some((f.webhook_id.clone()?, f.clone())))
            .collect();
        Snapshot {
            installations,
            failures,
            by_webhook,
            by_id,
            failed_by_webhook,
        }
    }

    pub fn by_webhook(&self, webhook_id: &str) -> Option<&Arc<Installation>> {
        self.by_webhook.get(webhook_id)
    }

    /// The failure that keeps a known webhook's installation from loading.
    pub fn failure_by_webhook(&self, webhook_id: &str) -> Option<&LoadFailure> {
        self.failed_by_webhook.get(webhook_id)
    }

    pub fn by_id(&self, id: &str) -> Option<&Arc<Installation>> {
        self.by_id.get(id)
    }

    /// By installation id or name.
    pub fn by_id_or_name(&self, key: &str) -> Option<&Arc<Installation>> {
        self.installations.get(key).or_else(|| self.by_id(key))
    }
}

/// What hot reload ([`super::FolderWatcher`]) has done while serving: what the admin API
/// shows, so an operator (or a test) can tell a change to the folder was applied.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadStatus {
    /// Reloads finished since start (the start-up load is not one).
    pub count: u64,
    /// When the last one finished (milliseconds since the epoch).
    pub last_at: Option<i64>,
    /// Plugin and sidecar files the last pass left out because a writer still has them
    /// open; they are loaded once it closes them.
    pub still_being_written: Vec<String>,
}

/// The registry request handlers read; [`super::PluginHost`] replaces its snapshot.
#[derive(Default)]
pub struct Registry {
    current: ArcSwap<Snapshot>,
    reloads: Mutex<ReloadStatus>,
}

impl Registry {
    /// The current snapshot. Holding it keeps every installation in it alive.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn by_webhook(&self, webhook_id: &str) -> Option<Arc<Installation>> {
        self.current.load().by_webhook(webhook_id).cloned()
    }

    pub fn failure_by_webhook(&self, webhook_id: &str) -> Option<LoadFailure> {
        self.current.load().failure_by_webhook(webhook_id).cloned()
    }

    pub fn by_id_or_name(&self, key: &str) -> Option<Arc<Installation>> {
        self.current.load().by_id_or_name(key).cloned()
    }

    pub(crate) fn replace(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
    }

    pub fn reload_status(&self) -> ReloadStatus {
        self.reloads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Records a finished reload; its result is already what [`Registry::snapshot`] serves.
    pub(crate) fn note_reload(&self, at: i64) {
        let mut status = self.reloads.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        status.count += 1;
        status.last_at = Some(at);
    }

    pub(crate) fn note_still_being_written(&self, files: Vec<String>) {
        self.reloads
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .still_being_written = files;
    }
}
