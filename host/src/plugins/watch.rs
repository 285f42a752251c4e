//! Hot reload: watches the plugins folder while serving and brings the installations in
//! line with it ([`PluginHost::sync_except`]) once the folder has been quiet for
//! [`DEBOUNCE`].
//!
//! A file still being copied in is not loaded half-written: where the platform reports
//! when a writer closes a file (inotify on Linux), a plugin or sidecar file that was
//! created or written and not closed yet is left out of the reload (its earlier version
//! keeps serving) until it is closed. Elsewhere the debounce alone covers it. Writing
//! to a temporary name and renaming into place is always safe: only `<name>.wasm` and
//! `<name>.toml` are read, and hidden files (`.name.wasm`) are ignored.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;

use super::PluginHost;
use crate::time::now_ms;

/// How long the folder must be quiet before a reload: a copy or an editor's save often
/// comes as a burst of events.
pub const DEBOUNCE: Duration = Duration::from_millis(250);

/// Whether this platform's watcher reports a writer closing a file.
const REPORTS_CLOSE_WRITE: bool = cfg!(any(target_os = "linux", target_os = "android"));

/// Watches the plugins folder until dropped.
pub struct FolderWatcher {
    _watcher: RecommendedWatcher,
    task: tokio::task::JoinHandle<()>,
    /// Serves what other replicas change in a shared store.
    follower: tokio::task::JoinHandle<()>,
}

impl Drop for FolderWatcher {
    fn drop(&mut self) {
        self.task.abort();
        self.follower.abort();
    }
}

/// How often a replica on a shared store reads the installations again when no change
/// was announced (a lost notification connection misses some).
pub const STORE_POLL: Duration = Duration::from_secs(2);

/// Whether `path` is a file the plugins folder is made of: `<name>.wasm` or `<name>.toml`,
/// not hidden (editors and copy tools write to hidden or other temporary names first).
fn is_plugin_file(path: &Path) -> bool {
    let hidden = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_none_or(|n| n.starts_with('.'));
    !hidden && path.extension().is_some_and(|ext| ext == "wasm" || ext == "toml")
}

/// Whether an event may have changed what a reload reads. Opening, reading and closing a
/// file without writing are reported too (inotify), and a reload reads every plugin file:
/// counting those would make each reload, or any backup tool passing by, start the next.
fn may_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// The plugin file a plugin or sidecar file belongs to.
fn plugin_of(path: &Path) -> PathBuf {
    path.with_extension("wasm")
}

/// Plugin and sidecar files written to and not closed yet. The watcher's own thread
/// keeps it current as events arrive, so a reload that is already running sees a file
/// that started being copied in after the reload began.
#[derive(Default)]
struct BeingWritten(Mutex<HashSet<PathBuf>>);

impl BeingWritten {
    fn note(&self, event: &notify::Event) {
        let mut files = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for path in event.paths.iter().filter(|p| is_plugin_file(p)) {
            match event.kind {
                EventKind::Create(CreateKind::File | CreateKind::Any)
                | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any)
                    if REPORTS_CLOSE_WRITE =>
                {
                    files.insert(path.clone());
                }
                // Closed, removed, renamed away or renamed into place (write-then-rename):
                // nobody is writing to this name any more.
                EventKind::Access(AccessKind::Close(AccessMode::Write))
                | EventKind::Remove(RemoveKind::File | RemoveKind::Any)
                | EventKind::Modify(ModifyKind::Name(_)) => {
                    files.remove(path);
                }
                // Attributes and anything else: complete as far as we can tell.
                _ => {}
            }
        }
    }

    fn snapshot(&self) -> HashSet<PathBuf> {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }

    /// Whether the plugin file or its sidecar is still being written.
    fn holds(&self, plugin_file: &Path) -> bool {
        let files = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        files.contains(plugin_file) || files.contains(&plugin_file.with_extension("toml"))
    }
}

impl FolderWatcher {
    /// Starts watching `host`'s plugins folder; changes are applied from a task on the
    /// current tokio runtime.
    pub fn start(host: Arc<PluginHost>) -> anyhow::Result<FolderWatcher> {
        let (events_tx, events) = mpsc::unbounded_channel();
        let being_written = Arc::new(BeingWritten::default());
        let noted = being_written.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = &event {
                noted.note(event);
            }
            let _ = events_tx.send(event);
        })
        .context("cannot watch the plugins folder")?;
        let folder = host.plugins_dir().to_path_buf();
        watcher
            .watch(&folder, RecursiveMode::NonRecursive)
            .with_context(|| format!("cannot watch the plugins folder {}", folder.display()))?;
        tracing::info!(folder = %folder.display(), "watching the plugins folder: added, replaced and removed plugins are applied while serving");
        let follower = tokio::spawn(follow_store(host.clone()));
        let task = tokio::spawn(reload_loop(host, events, being_written));
        Ok(FolderWatcher {
            _watcher: watcher,
            task,
            follower,
        })
    }
}

async fn reload_loop(
    host: Arc<PluginHost>,
    mut events: mpsc::UnboundedReceiver<notify::Result<notify::Event>>,
    being_written: Arc<BeingWritten>,
) {
    // Files changed since the last reload, and files already reported as being written.
    let mut changed: HashSet<PathBuf> = HashSet::new();
    let mut reported: HashSet<PathBuf> = HashSet::new();
    loop {
        // The first event of a burst, then every event until the folder is quiet.
        let Some(first) = events.recv().await else { return };
        let mut next = Some(first);
        while let Some(event) = next {
            match event {
                Ok(event) if may_change_content(&event.kind) => {
                    changed.extend(event.paths.into_iter().filter(|p| is_plugin_file(p)))
                }
                Ok(_read_only) => {}
                Err(error) => tracing::warn!(error = %error, "plugins folder watcher error"),
            }
            next = match tokio::time::timeout(DEBOUNCE, events.recv()).await {
                Ok(Some(event)) => Some(event),
                Ok(None) => return,
                Err(_quiet) => None,
            };
        }

        let writing = being_written.snapshot();
        for file in &writing {
            if reported.insert(file.clone()) {
                tracing::info!(file = %file_name(file), "plugin file is still being written; it is loaded once the writer closes it");
            }
        }
        reported.retain(|file| writing.contains(file));
        let mut held_back: Vec<String> = writing.iter().map(|file| file_name(file)).collect();
        held_back.sort();
        host.registry.note_still_being_written(held_back);
        let ready: Vec<String> = changed
            .iter()
            .filter(|p| !being_written.holds(&plugin_of(p)))
            .map(|p| file_name(p))
            .collect();
        if ready.is_empty() {
            continue;
        }
        changed.retain(|p| being_written.holds(&plugin_of(p)));
        tracing::info!(files = %ready.join(", "), "plugins folder changed; reloading");
        let unsettled = |file: &Path| being_written.holds(file);
        match host.sync_except(&unsettled).await {
            Ok(report) => tracing::info!(
                installed = ?report.installed,
                updated = ?report.updated,
                removed = ?report.removed,
                refused = ?report.failed.iter().map(|f| &f.file).collect::<Vec<_>>(),
                "reload done"
            ),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "reload failed; the installations are unchanged")
            }
        }
        host.registry.note_reload(now_ms());
    }
}

/// With a shared store, serves what other replicas installed, replaced or removed: when a
/// change is announced, and every [`STORE_POLL`] in case an announcement was missed.
async fn follow_store(host: Arc<PluginHost>) {
    if !host.store.is_shared() {
        return;
    }
    let mut changes = host.store.changes();
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    tokio::time::sleep(STORE_POLL).await;
                }
            }
            () = tokio::time::sleep(STORE_POLL) => {}
        }
        match host.sync_from_store().await {
            Ok(report) if !report.installed.is_empty() || !report.updated.is_empty() || !report.removed.is_empty() => {
                tracing::info!(installed = ?report.installed, updated = ?report.updated, removed = ?report.removed, "applied the store's plugin changes")
            }
            Ok(_) => {}
            Err(error) => {
                tracing::debug!(error = %format!("{error:#}"), "cannot read the store's installations; trying again")
            }
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::RenameMode;

    #[test]
    fn only_visible_plugin_and_sidecar_files_count() {
        assert!(is_plugin_file(Path::new("/p/webhook.wasm")));
        assert!(is_plugin_file(Path::new("/p/webhook.toml")));
        assert!(!is_plugin_file(Path::new("/p/.webhook.wasm")));
        assert!(!is_plugin_file(Path::new("/p/webhook.wasm.tmp")));
        assert!(!is_plugin_file(Path::new("/p/webhook.wasm~")));
        assert!(!is_plugin_file(Path::new("/p/notes.txt")));
    }

    #[test]
    fn reading_a_file_is_not_a_change() {
        let read = [
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            EventKind::Access(AccessKind::Read),
            EventKind::Access(AccessKind::Close(AccessMode::Read)),
        ];
        assert!(read.iter().all(|kind| !may_change_content(kind)));
        let written = [
            EventKind::Access(AccessKind::Close(AccessMode::Write)),
            EventKind::Create(CreateKind::File),
            EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
            EventKind::Modify(ModifyKind::Name(RenameMode::To)),
            EventKind::Modify(ModifyKind::Metadata(notify::event::MetadataKind::Any)),
            EventKind::Remove(RemoveKind::File),
            EventKind::Any,
        ];
        assert!(written.iter().all(may_change_content));
    }

    #[test]
    fn a_file_is_being_written_until_closed() {
        let files = BeingWritten::default();
        let file = PathBuf::from("/p/new.wasm");
        files.note(&notify::Event::new(EventKind::Create(CreateKind::File)).add_path(file.clone()));
        files.note(
            &notify::Event::new(EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)))
                .add_path(file.clone()),
        );
        assert_eq!(files.holds(&file), REPORTS_CLOSE_WRITE);
        files.note(&notify::Event::new(EventKind::Access(AccessKind::Close(AccessMode::Write))).add_path(file.clone()));
        assert!(!files.holds(&file));
    }

    #[test]
    fn a_sidecar_being_written_holds_its_plugin_back() {
        let files = BeingWritten::default();
        files.note(&notify::Event::new(EventKind::Create(CreateKind::File)).add_path("/p/shop.toml".into()));
        assert_eq!(files.holds(Path::new("/p/shop.wasm")), REPORTS_CLOSE_WRITE);
    }

    #[test]
    fn a_file_renamed_into_place_is_complete() {
        let files = BeingWritten::default();
        let file = PathBuf::from("/p/new.wasm");
        files.note(&notify::Event::new(EventKind::Create(CreateKind::File)).add_path("/p/.new.wasm.part".into()));
        files.note(&notify::Event::new(EventKind::Modify(ModifyKind::Name(RenameMode::To))).add_path(file.clone()));
        assert!(files.snapshot().is_empty());
    }
}
