//! The plugins folder and the installations made from it.
//!
//! Every `<name>.wasm` in the folder is one installation named `<name>`, configured by
//! the sidecar `<name>.toml` beside it. [`PluginHost::sync`] brings the installations in
//! line with the folder: it installs new files (and calls `register`), reloads changed
//! ones, and removes installations whose file is gone (calling `unregister` from a copy
//! kept in the data folder). The [`Registry`] is what request handlers read: an atomic
//! snapshot, so a request that started on one version of a plugin finishes on it.
//! [`FolderWatcher`] applies changes to the folder while serving (hot reload), and
//! [`install`] the plugins given from code, through the folder too.

pub mod install;
pub mod installation;
pub mod registry;
pub mod sync;
pub mod watch;

pub use install::InstallError;
pub use installation::{HostIdentity, Installation};
pub use registry::Snapshot;
pub use sync::PluginHost;
pub use watch::FolderWatcher;
