//! The delivery sections of the host configuration file: `[delivery]`,
//! `[[subscriptions]]` and `[nats]` (see docs/delivery.md and docs/configuration.md).

use std::time::Duration;

use serde::Deserialize;

/// `[delivery]`: how outbound webhooks are sent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Allow webhook targets on loopback addresses (127.0.0.0/8, ::1, 0.0.0.0).
    pub allow_loopback: bool,
    /// Allow webhook targets on private, link-local, shared (CGNAT) and other
    /// non-public addresses.
    pub allow_private: bool,
    /// How long one attempt may take, connecting included.
    pub attempt_timeout_ms: u64,
    /// Attempts per delivery before it is dead-lettered (1 means no retries).
    pub max_attempts: u32,
    /// The wait before the first retry; each further retry waits twice as long, plus up to
    /// half again of jitter.
    pub retry_initial_ms: u64,
    /// The longest wait between two attempts.
    pub retry_max_ms: u64,
    /// Requests in flight at once per subscription.
    pub max_in_flight: usize,
    /// How long finished deliveries (with their attempts) and delivered outbox entries
    /// are kept, in seconds; 0 keeps them for ever. Pending deliveries are always kept.
    pub retention_s: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            allow_loopback: false,
            allow_private: false,
            attempt_timeout_ms: 10_000,
            max_attempts: 8,
            retry_initial_ms: 1_000,
            retry_max_ms: 3_600_000,
            max_in_flight: 32,
            retention_s: 7 * 24 * 3600,
        }
    }
}

impl DeliveryConfig {
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.attempt_timeout_ms > 0,
            "delivery.attempt-timeout-ms must be above 0"
        );
        anyhow::ensure!(self.max_attempts > 0, "delivery.max-attempts must be at least 1");
        anyhow::ensure!(self.max_in_flight > 0, "delivery.max-in-flight must be at least 1");
        anyhow::ensure!(
            self.retry_initial_ms <= self.retry_max_ms,
            "delivery.retry-initial-ms ({}) must not be above delivery.retry-max-ms ({})",
            self.retry_initial_ms,
            self.retry_max_ms
        );
        Ok(())
    }
}

/// One `[[subscriptions]]` entry: a webhook target defined in the file. The file is its
/// truth: it is created or updated at start, and removed when it leaves the file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct SubscriptionConfig {
    /// A stable id (letters, digits, `-` and `_`): deliveries are kept under it.
    pub id: String,
    pub url: String,
    /// Event types to send: exact (`chat:message:new`) or prefixes ending in `*`
    /// (`chat:*`); empty or absent means every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// `whsec_<base64>`; generated (and kept in the store) when absent.
    pub secret: Option<String>,
    #[serde(default = "enabled_by_default")]
    pub enabled: bool,
    pub description: Option<String>,
}

fn enabled_by_default() -> bool {
    true
}

/// `[nats]`: publish every event to a NATS JetStream stream.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct NatsConfig {
    /// For example `nats://127.0.0.1:4222`.
    pub url: String,
    /// The stream, created with file storage when it does not exist.
    #[serde(default = "default_stream")]
    pub stream: String,
    /// Events go to `<prefix>.<type>`, the type's `:` becoming `.`.
    #[serde(default = "default_subject_prefix")]
    pub subject_prefix: String,
    /// The stream's duplicate window (seconds) when sluice creates it: a re-publish of an
    /// event within it is dropped by JetStream.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window_s: u64,
}

fn default_stream() -> String {
    "SLUICE".into()
}

fn default_subject_prefix() -> String {
    "sluice".into()
}

fn default_duplicate_window() -> u64 {
    120
}

impl NatsConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.stream.is_empty()
                && self
                    .stream
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "nats.stream {:?} must be letters, digits, '-' or '_'",
            self.stream
        );
        anyhow::ensure!(
            !self.subject_prefix.is_empty()
                && self
                    .subject_prefix
                    .split('.')
                    .all(|token| !token.is_empty() && !token.contains(['*', '>', ' '])),
            "nats.subject-prefix {:?} must be dot-separated tokens without wildcards",
            self.subject_prefix
        );
        anyhow::ensure!(self.duplicate_window_s > 0, "nats.duplicate-window-s must be above 0");
        Ok(())
    }
}
