//! The `[triggers]` table of the host configuration file: how many trigger events run at
//! once, their retries and limits.

use std::time::Duration;

use serde::Deserialize;

/// The `[triggers]` table of the host configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct TriggerSettings {
    /// How many trigger events run at once (0 queues events without running them).
    pub workers: usize,
    /// Attempts per event before it is marked failed.
    pub max_attempts: u32,
    /// Wait before the first retry; each later retry waits twice as long.
    pub retry_base_ms: u64,
    /// The longest wait between retries.
    pub retry_max_ms: u64,
    /// Largest event body accepted (413 above it).
    pub max_body_bytes: u64,
    /// Finished events are forgotten by the queue (with their idempotency keys) after
    /// this many hours; their history stays in the store.
    pub retention_hours: u64,
}

impl Default for TriggerSettings {
    fn default() -> Self {
        TriggerSettings {
            workers: 8,
            max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            max_body_bytes: 1 << 20,
            retention_hours: 24 * 7,
        }
    }
}

impl TriggerSettings {
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_attempts >= 1, "triggers.max-attempts must be at least 1");
        anyhow::ensure!(self.retry_base_ms >= 1, "triggers.retry-base-ms must be at least 1");
        anyhow::ensure!(
            self.retry_max_ms >= self.retry_base_ms,
            "triggers.retry-max-ms must be at least triggers.retry-base-ms"
        );
        anyhow::ensure!(self.workers <= 1000, "triggers.workers can be at most 1000");
        Ok(())
    }

    /// The wait before attempt `attempt + 1` after attempt `attempt` failed.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(32);
        Duration::from_millis(self.retry_base_ms.saturating_mul(factor).min(self.retry_max_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let settings = TriggerSettings {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..Default::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| settings.backoff(a).as_millis() as u64).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1_000, 1_000]);
    }
}
