//! How plugins are taken in (`[plugins]`): the admin API's upload route.

use serde::Deserialize;

/// The largest plugin upload taken by default: room for components that carry an
/// interpreter (a Python component is about 20 MB).
pub const DEFAULT_MAX_UPLOAD_BYTES: u64 = 64 << 20;

/// The `[plugins]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct PluginsConfig {
    /// The largest body `PUT /v1/admin/plugins/{name}` reads, in bytes (default 64 MiB);
    /// a larger one is answered 413.
    pub max_upload_bytes: Option<u64>,
}

impl PluginsConfig {
    /// The upload limit in force.
    pub fn max_upload_bytes(&self) -> u64 {
        self.max_upload_bytes.unwrap_or(DEFAULT_MAX_UPLOAD_BYTES)
    }
}
