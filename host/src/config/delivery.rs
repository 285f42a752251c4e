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
    /// Attempts per round (a delivery's first sending, or one through resend or recover)
    /// before it is dead-lettered; 1 means no retries. By default one more than the
    /// schedule has waits (8 with the exponential settings).
    pub max_attempts: Option<u32>,
    /// The waits between attempts, in ms: the first retry waits the first, and so on; the
    /// last repeats when `max-attempts` asks for more. Each wait gets up to a fifth more,
    /// at random. By default [`DEFAULT_RETRY_SCHEDULE_MS`].
    pub retry_schedule_ms: Option<Vec<u64>>,
    /// The exponential settings of earlier versions, instead of a schedule: the wait
    /// before the first retry; each further retry waits twice as long, plus up to half
    /// again of jitter.
    pub retry_initial_ms: Option<u64>,
    /// With `retry-initial-ms`: the longest wait between two attempts.
    pub retry_max_ms: Option<u64>,
    /// Requests in flight at once per subscription.
    pub max_in_flight: usize,
    /// How long finished deliveries (with their attempts) and delivered outbox entries
    /// are kept, in seconds; 0 keeps them for ever. Pending deliveries are always kept.
    pub retention_s: u64,
}

/// The waits between attempts unless `[delivery]` says otherwise, in the spirit of Svix's:
/// 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, so a delivery rides out about 28 hours of
/// its receiver being away before it is dead-lettered.
pub const DEFAULT_RETRY_SCHEDULE_MS: [u64; 7] =
    [5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000];

/// The longest wait a schedule may hold (30 days).
const LONGEST_WAIT_MS: u64 = 30 * 24 * 3_600_000;

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            allow_loopback: false,
            allow_private: false,
            attempt_timeout_ms: 10_000,
            max_attempts: None,
            retry_schedule_ms: None,
            retry_initial_ms: None,
            retry_max_ms: None,
            max_in_flight: 32,
            retention_s: 7 * 24 * 3600,
        }
    }
}

/// How long to wait between attempts: `[delivery]`'s retry settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryWaits {
    /// Fixed waits; the last repeats.
    Schedule(Vec<u64>),
    /// `initial_ms` doubled per retry, at most `max_ms` (the settings of earlier versions).
    Doubling { initial_ms: u64, max_ms: u64 },
}

/// The retry policy of every delivery round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub waits: RetryWaits,
    /// Attempts per round.
    pub max_attempts: u32,
}

impl RetryPolicy {
    /// The wait after attempt `attempt` of a round (1-based) failed, in ms, given `jitter`
    /// in [0, 1): a schedule's wait plus up to a fifth; a doubling wait plus up to half,
    /// at most `max_ms`. With doubling, jitter only adds, so every gap is at least twice
    /// the minimum of the one before.
    pub fn wait_ms(&self, attempt: i64, jitter: f64) -> i64 {
        let jitter = jitter.clamp(0.0, 1.0);
        match &self.waits {
            RetryWaits::Schedule(waits) => {
                let index = usize::try_from(attempt - 1)
                    .unwrap_or(0)
                    .min(waits.len().saturating_sub(1));
                let wait = waits.get(index).copied().unwrap_or(0) as f64;
                (wait * (1.0 + jitter / 5.0)) as i64
            }
            RetryWaits::Doubling { initial_ms, max_ms } => {
                let doublings = (attempt - 1).clamp(0, 40) as i32;
                let base = (*initial_ms as f64) * 2f64.powi(doublings);
                (base * (1.0 + jitter / 2.0)).min(*max_ms as f64) as i64
            }
        }
    }
}

impl DeliveryConfig {
    pub fn attempt_timeout(&self) -> Duration {
        Duration::from_millis(self.attempt_timeout_ms)
    }

    /// The retry policy these settings describe: a schedule (the default one unless
    /// `retry-schedule-ms` is given), or the doubling of earlier versions when
    /// `retry-initial-ms` or `retry-max-ms` is given.
    pub fn retry_policy(&self) -> RetryPolicy {
        let doubling = self.retry_initial_ms.is_some() || self.retry_max_ms.is_some();
        if doubling && self.retry_schedule_ms.is_none() {
            return RetryPolicy {
                waits: RetryWaits::Doubling {
                    initial_ms: self.retry_initial_ms.unwrap_or(1_000),
                    max_ms: self.retry_max_ms.unwrap_or(3_600_000),
                },
                max_attempts: self.max_attempts.unwrap_or(8),
            };
        }
        let schedule = self
            .retry_schedule_ms
            .clone()
            .unwrap_or_else(|| DEFAULT_RETRY_SCHEDULE_MS.to_vec());
        let max_attempts = self.max_attempts.unwrap_or(schedule.len() as u32 + 1);
        RetryPolicy {
            waits: RetryWaits::Schedule(schedule),
            max_attempts,
        }
    }

    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.attempt_timeout_ms > 0,
            "delivery.attempt-timeout-ms must be above 0"
        );
        anyhow::ensure!(self.max_attempts != Some(0), "delivery.max-attempts must be at least 1");
        anyhow::ensure!(self.max_in_flight > 0, "delivery.max-in-flight must be at least 1");
        let doubling = self.retry_initial_ms.is_some() || self.retry_max_ms.is_some();
        if let Some(schedule) = &self.retry_schedule_ms {
            anyhow::ensure!(
                !doubling,
                "delivery.retry-schedule-ms replaces retry-initial-ms and retry-max-ms (the exponential settings of earlier versions); keep one or the other"
            );
            anyhow::ensure!(
                !schedule.is_empty() || self.max_attempts.is_none_or(|n| n == 1),
                "delivery.retry-schedule-ms is empty, so there are no retries, but delivery.max-attempts asks for {}; give at least one wait",
                self.max_attempts.unwrap_or(1)
            );
            anyhow::ensure!(
                schedule.iter().all(|wait| *wait <= LONGEST_WAIT_MS),
                "delivery.retry-schedule-ms holds a wait above 30 days ({LONGEST_WAIT_MS} ms)"
            );
        }
        if doubling {
            let (initial, max) = (
                self.retry_initial_ms.unwrap_or(1_000),
                self.retry_max_ms.unwrap_or(3_600_000),
            );
            anyhow::ensure!(
                initial <= max,
                "delivery.retry-initial-ms ({initial}) must not be above delivery.retry-max-ms ({max})"
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> DeliveryConfig {
        let config: DeliveryConfig = toml::from_str(text).unwrap();
        config.check().unwrap();
        config
    }

    #[test]
    fn the_default_schedule_rides_out_a_day() {
        let policy = DeliveryConfig::default().retry_policy();
        assert_eq!(policy.max_attempts, 8);
        let total: i64 = (1..8).map(|attempt| policy.wait_ms(attempt, 0.0)).sum();
        assert!(total > 27 * 3_600_000, "{total}");
        assert_eq!(policy.wait_ms(1, 0.0), 5_000);
        assert_eq!(policy.wait_ms(7, 0.0), 36_000_000);
        // Jitter adds up to a fifth.
        assert_eq!(policy.wait_ms(1, 0.999_999), 5_999);
    }

    #[test]
    fn a_schedule_repeats_its_last_wait_for_more_attempts() {
        let policy = parse("retry-schedule-ms = [100, 300]\nmax-attempts = 5").retry_policy();
        assert_eq!(policy.max_attempts, 5);
        let waits: Vec<i64> = (1..5).map(|attempt| policy.wait_ms(attempt, 0.0)).collect();
        assert_eq!(waits, [100, 300, 300, 300]);
        assert_eq!(parse("retry-schedule-ms = [100, 300]").retry_policy().max_attempts, 3);
        assert_eq!(parse("retry-schedule-ms = []").retry_policy().max_attempts, 1);
    }

    #[test]
    fn the_exponential_settings_of_earlier_versions_still_work() {
        let policy = parse("retry-initial-ms = 100\nretry-max-ms = 10000").retry_policy();
        assert_eq!(policy.max_attempts, 8);
        assert_eq!(policy.wait_ms(1, 0.0), 100);
        assert_eq!(policy.wait_ms(2, 0.0), 200);
        assert_eq!(policy.wait_ms(3, 0.0), 400);
        // The largest jitter on one gap stays below the smallest on the next.
        assert!(policy.wait_ms(1, 0.999) < policy.wait_ms(2, 0.0));
        assert_eq!(policy.wait_ms(30, 0.0), 10_000);
        assert_eq!(
            parse("max-attempts = 3\nretry-initial-ms = 50")
                .retry_policy()
                .max_attempts,
            3
        );
    }

    #[test]
    fn mixed_or_impossible_retry_settings_are_refused() {
        let check = |text: &str| {
            toml::from_str::<DeliveryConfig>(text)
                .unwrap()
                .check()
                .unwrap_err()
                .to_string()
        };
        assert!(check("retry-schedule-ms = [100]\nretry-initial-ms = 50").contains("keep one"));
        assert!(check("retry-schedule-ms = []\nmax-attempts = 3").contains("at least one wait"));
        assert!(check("retry-initial-ms = 500\nretry-max-ms = 100").contains("must not be above"));
        assert!(check("max-attempts = 0").contains("at least 1"));
    }
}
