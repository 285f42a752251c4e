//! Configuration: the host's own file (`--config`) with its sections, and the sidecar
//! `<name>.toml` beside each plugin that configures its installation. A leaf: every room
//! reads its settings from here, and nothing here reads another room.

pub mod delivery;
pub mod plugins;
pub mod sidecar;
pub mod store;
pub mod telemetry;
pub mod triggers;

pub use delivery::{DeliveryConfig, NatsConfig, RetryPolicy, SubscriptionConfig};
pub use plugins::PluginsConfig;
pub use sidecar::{HostPattern, Limits, MAX_MEMORY_BYTES, Sidecar};
pub use store::StoreConfig;
pub use telemetry::{TelemetryConfig, TracesSettings};
pub use triggers::TriggerSettings;

use std::path::Path;

use anyhow::Context as _;
use serde::Deserialize;

/// The host's configuration file (`sluice serve --config FILE`). Every field is optional;
/// command-line flags win over the file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct HostConfig {
    /// Bearer token for the bot and admin APIs.
    pub api_token: Option<String>,
    /// Base URL outside platforms use to reach this host (webhook URLs start with it).
    pub public_url: Option<String>,
    /// How outbound webhooks are sent (`[delivery]`).
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// Webhook subscriptions defined in the file (`[[subscriptions]]`).
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionConfig>,
    /// Publish every event to NATS JetStream (`[nats]`).
    pub nats: Option<NatsConfig>,
    /// Trigger workers, retries and limits (the `[triggers]` table).
    #[serde(default)]
    pub triggers: TriggerSettings,
    /// Where everything is kept (`[store]`): SQLite in the data folder, or PostgreSQL.
    #[serde(default)]
    pub store: StoreConfig,
    /// How plugins are taken in (`[plugins]`): the upload route's size limit.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Where traces are sent (`[telemetry]`).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

impl HostConfig {
    /// Reads the host configuration file.
    pub fn load(path: &Path) -> anyhow::Result<HostConfig> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{} is not a valid sluice configuration file", path.display()))
    }
}
