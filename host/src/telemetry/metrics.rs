//! The Prometheus metrics of the host: one registry for the process ([`metrics`]), whose
//! families every room records into as things happen, and the gauges that describe a
//! state (queue depth, pending deliveries, NATS) set just before each scrape from what
//! the rooms report ([`Snapshot`]).
//!
//! Labels are bounded: installations, operations, outcomes, status classes, subscription
//! ids, the `allowed-hosts` entry a plugin's outbound call matched. Nothing per request or
//! per user.

use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The host's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstallationLabel {
    installation: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WebhookLabels {
    installation: String,
    /// `2xx` ... `5xx`.
    status: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    installation: String,
    operation: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallOutcomeLabels {
    installation: String,
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutboundLabels {
    installation: String,
    /// The `allowed-hosts` entry the call matched; empty for denied calls.
    host: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DatabaseLabel {
    database: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabel {
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstallationOutcome {
    installation: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionLabel {
    subscription: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriptionOutcome {
    subscription: String,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    source: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from 100 µs to about 100 s.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.0001, 4.0, 11))
}

/// Seconds, from 1 ms to about 17 min (compiling, delivering across retries).
fn long_seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 4.0, 11))
}

/// Bytes, from 64 KiB to 4 GiB.
fn bytes() -> Histogram {
    Histogram::new(exponential_buckets(65_536.0, 4.0, 9))
}

/// Counts, from 1 to 512.
fn counts() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 10))
}

/// How a plugin call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    Ok,
    /// The plugin answered with its own error.
    PluginError,
    Trap,
    Deadline,
    MemoryLimit,
    /// No instance was free.
    Busy,
}

impl CallOutcome {
    fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::PluginError => "plugin_error",
            CallOutcome::Trap => "trap",
            CallOutcome::Deadline => "deadline",
            CallOutcome::MemoryLimit => "memory_limit",
            CallOutcome::Busy => "busy",
        }
    }
}

/// A state the rooms report at scrape time.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Installations by status (`active`, `needs-configuration`, `register-failed`).
    pub installations: Vec<(String, i64)>,
    /// Plugin files that could not be loaded.
    pub refused_files: i64,
    /// Trigger events by status (`queued`, `running`, ...).
    pub trigger_queue: Vec<(String, i64)>,
    /// Per subscription: pending and dead-lettered deliveries.
    pub deliveries: Vec<(String, i64, i64)>,
    /// The NATS sink, when configured: connected, and outbox entries not yet published.
    pub nats: Option<(bool, i64)>,
}

/// Every metric family of the host.
pub struct Metrics {
    registry: Registry,
    /// Scrapes one at a time: the state gauges are cleared and set for each.
    scraping: Mutex<()>,

    webhook_requests: Family<WebhookLabels, Counter>,
    webhook_duration: Histograms<InstallationLabel>,
    plugin_calls: Family<CallOutcomeLabels, Counter>,
    plugin_duration: Histograms<CallLabels>,
    plugin_memory: Histograms<InstallationLabel>,
    outbound_requests: Family<OutboundLabels, Counter>,
    store_commit_duration: Histograms<DatabaseLabel>,
    store_commit_batch: Histograms<DatabaseLabel>,
    trigger_queue: Family<StatusLabel, Gauge>,
    trigger_runs: Family<InstallationOutcome, Counter>,
    trigger_retries: Family<InstallationLabel, Counter>,
    schedule_runs: Family<InstallationLabel, Counter>,
    deliveries_pending: Family<SubscriptionLabel, Gauge>,
    deliveries_dead: Family<SubscriptionLabel, Gauge>,
    delivery_attempts: Family<SubscriptionOutcome, Counter>,
    delivery_latency: Histograms<SubscriptionLabel>,
    stream_clients: Gauge,
    nats_connected: Gauge,
    nats_backlog: Gauge,
    installations: Family<StatusLabel, Gauge>,
    plugin_files_refused: Gauge,
    plugin_load_failures: Counter,
    plugin_loads: Family<SourceLabel, Counter>,
    plugin_compile_duration: Histogram,
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("sluice");
        let metrics = Metrics {
            registry: Registry::default(),
            scraping: Mutex::new(()),
            webhook_requests: Family::default(),
            webhook_duration: Family::new_with_constructor(seconds),
            plugin_calls: Family::default(),
            plugin_duration: Family::new_with_constructor(seconds),
            plugin_memory: Family::new_with_constructor(bytes),
            outbound_requests: Family::default(),
            store_commit_duration: Family::new_with_constructor(seconds),
            store_commit_batch: Family::new_with_constructor(counts),
            trigger_queue: Family::default(),
            trigger_runs: Family::default(),
            trigger_retries: Family::default(),
            schedule_runs: Family::default(),
            deliveries_pending: Family::default(),
            deliveries_dead: Family::default(),
            delivery_attempts: Family::default(),
            delivery_latency: Family::new_with_constructor(long_seconds),
            stream_clients: Gauge::default(),
            nats_connected: Gauge::default(),
            nats_backlog: Gauge::default(),
            installations: Family::default(),
            plugin_files_refused: Gauge::default(),
            plugin_load_failures: Counter::default(),
            plugin_loads: Family::default(),
            plugin_compile_duration: long_seconds(),
        };
        let m = &metrics;
        registry.register(
            "webhook_requests",
            "Webhook requests answered, by installation and status class",
            m.webhook_requests.clone(),
        );
        registry.register_with_unit(
            "webhook_request_duration",
            "Time from a webhook request's arrival to its answer, by installation (the plugin's share is sluice_plugin_call_duration_seconds{operation=\"webhook\"})",
            Unit::Seconds,
            m.webhook_duration.clone(),
        );
        registry.register(
            "plugin_calls",
            "Plugin calls by installation, operation and outcome (ok, plugin_error, trap, deadline, memory_limit, busy)",
            m.plugin_calls.clone(),
        );
        registry.register_with_unit(
            "plugin_call_duration",
            "Time a plugin call took, instantiation included, by installation and operation",
            Unit::Seconds,
            m.plugin_duration.clone(),
        );
        registry.register_with_unit(
            "plugin_memory",
            "A plugin instance's linear memory at the end of a call, by installation",
            Unit::Bytes,
            m.plugin_memory.clone(),
        );
        registry.register(
            "outbound_requests",
            "Plugins' outbound HTTP requests by installation, allowed-hosts entry and outcome (ok, failed, denied; denied ones have no host)",
            m.outbound_requests.clone(),
        );
        registry.register_with_unit(
            "store_commit_duration",
            "Time one group commit of the store took, fsync included, by database (store, queue)",
            Unit::Seconds,
            m.store_commit_duration.clone(),
        );
        registry.register(
            "store_commit_batch_size",
            "Writes committed together in one group commit, by database",
            m.store_commit_batch.clone(),
        );
        registry.register(
            "trigger_queue_depth",
            "Trigger events in the queue by status",
            m.trigger_queue.clone(),
        );
        registry.register(
            "trigger_runs",
            "Trigger event attempts by installation and outcome (ok, failed, given_up)",
            m.trigger_runs.clone(),
        );
        registry.register(
            "trigger_retries",
            "Trigger events queued again after a failed attempt, by installation",
            m.trigger_retries.clone(),
        );
        registry.register(
            "trigger_schedule_runs",
            "Events queued by trigger schedules, by installation",
            m.schedule_runs.clone(),
        );
        registry.register(
            "deliveries_pending",
            "Webhook deliveries waiting to be sent or retried, by subscription",
            m.deliveries_pending.clone(),
        );
        registry.register(
            "deliveries_dead_lettered",
            "Webhook deliveries dead-lettered (every attempt of their round failed), by subscription",
            m.deliveries_dead.clone(),
        );
        registry.register(
            "delivery_attempts",
            "Webhook delivery attempts by subscription and outcome (delivered, failed)",
            m.delivery_attempts.clone(),
        );
        registry.register_with_unit(
            "delivery_latency",
            "Time from an event's recording to its delivery's 2xx, by subscription",
            Unit::Seconds,
            m.delivery_latency.clone(),
        );
        registry.register(
            "stream_clients",
            "Clients connected to the live stream",
            m.stream_clients.clone(),
        );
        registry.register(
            "nats_connected",
            "1 while the NATS sink is connected (absent without one: 0)",
            m.nats_connected.clone(),
        );
        registry.register(
            "nats_backlog",
            "Outbox entries the NATS sink has not published yet",
            m.nats_backlog.clone(),
        );
        registry.register("installations", "Installations by status", m.installations.clone());
        registry.register(
            "plugin_files_refused",
            "Plugin files in the plugins folder that could not be loaded",
            m.plugin_files_refused.clone(),
        );
        registry.register(
            "plugin_load_failures",
            "Attempts to load a plugin file that failed",
            m.plugin_load_failures.clone(),
        );
        registry.register(
            "plugin_loads",
            "Plugin versions loaded, by where their compiled code came from (compiled, cache, shared)",
            m.plugin_loads.clone(),
        );
        registry.register_with_unit(
            "plugin_compile_duration",
            "Time compiling a plugin took (loads from the code cache are not compiled)",
            Unit::Seconds,
            m.plugin_compile_duration.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// A webhook request was answered with `status` after `elapsed`.
    pub fn webhook_request(&self, installation: &str, status: u16, elapsed: Duration) {
        let status = match status {
            100..=199 => "1xx",
            200..=299 => "2xx",
            300..=399 => "3xx",
            400..=499 => "4xx",
            _ => "5xx",
        };
        self.webhook_requests
            .get_or_create(&WebhookLabels {
                installation: installation.to_string(),
                status,
            })
            .inc();
        self.webhook_duration
            .get_or_create(&InstallationLabel {
                installation: installation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// A plugin call for `operation` (`webhook`, `trigger-event`, `action`, `message`,
    /// `register`, `unregister`) ended with `outcome` after `elapsed`, its instance's
    /// memory at `memory_bytes`.
    pub fn plugin_call(
        &self,
        installation: &str,
        operation: &'static str,
        outcome: CallOutcome,
        elapsed: Duration,
        memory_bytes: usize,
    ) {
        self.plugin_calls
            .get_or_create(&CallOutcomeLabels {
                installation: installation.to_string(),
                operation,
                outcome: outcome.as_str(),
            })
            .inc();
        self.plugin_duration
            .get_or_create(&CallLabels {
                installation: installation.to_string(),
                operation,
            })
            .observe(elapsed.as_secs_f64());
        self.plugin_memory
            .get_or_create(&InstallationLabel {
                installation: installation.to_string(),
            })
            .observe(memory_bytes as f64);
    }

    /// A plugin's outbound request to the `allowed-hosts` entry `host` ended with
    /// `outcome` (`ok`, `failed`, or `denied` with an empty `host`).
    pub fn outbound_request(&self, installation: &str, host: &str, outcome: &'static str) {
        self.outbound_requests
            .get_or_create(&OutboundLabels {
                installation: installation.to_string(),
                host: host.to_string(),
                outcome,
            })
            .inc();
    }

    /// `database` committed `writes` writes in one transaction in `elapsed`.
    pub fn store_commit(&self, database: &'static str, writes: usize, elapsed: Duration) {
        let label = DatabaseLabel { database };
        self.store_commit_duration
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
        self.store_commit_batch.get_or_create(&label).observe(writes as f64);
    }

    /// An attempt at a trigger event ended (`ok`, `failed`: to be retried, `given_up`).
    pub fn trigger_run(&self, installation: &str, outcome: &'static str) {
        self.trigger_runs
            .get_or_create(&InstallationOutcome {
                installation: installation.to_string(),
                outcome,
            })
            .inc();
        if outcome == "failed" {
            self.trigger_retries
                .get_or_create(&InstallationLabel {
                    installation: installation.to_string(),
                })
                .inc();
        }
    }

    /// A trigger's schedule queued an event.
    pub fn schedule_run(&self, installation: &str) {
        self.schedule_runs
            .get_or_create(&InstallationLabel {
                installation: installation.to_string(),
            })
            .inc();
    }

    /// A delivery attempt to `subscription` ended (`delivered`, `failed`); a delivered
    /// one `latency` after its event was recorded.
    pub fn delivery_attempt(&self, subscription: &str, delivered: bool, latency: Duration) {
        let outcome = if delivered { "delivered" } else { "failed" };
        self.delivery_attempts
            .get_or_create(&SubscriptionOutcome {
                subscription: subscription.to_string(),
                outcome,
            })
            .inc();
        if delivered {
            self.delivery_latency
                .get_or_create(&SubscriptionLabel {
                    subscription: subscription.to_string(),
                })
                .observe(latency.as_secs_f64());
        }
    }

    /// The live stream's client count: `+1` when one connects, `-1` when it leaves.
    pub fn stream_clients(&self) -> &Gauge {
        &self.stream_clients
    }

    /// A plugin version was loaded; `compiled_in` when its code was compiled now.
    pub fn plugin_loaded(&self, source: &'static str, compiled_in: Option<Duration>) {
        self.plugin_loads.get_or_create(&SourceLabel { source }).inc();
        if let Some(elapsed) = compiled_in {
            self.plugin_compile_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// Loading a plugin file failed.
    pub fn plugin_load_failed(&self) {
        self.plugin_load_failures.inc();
    }

    /// The metrics in the OpenMetrics text format, the state gauges set from `snapshot`.
    pub fn encode(&self, snapshot: Snapshot) -> String {
        let _one_scrape = self.scraping.lock().unwrap_or_else(|p| p.into_inner());
        fill(&self.installations, snapshot.installations.into_iter(), |status| {
            StatusLabel { status }
        });
        self.plugin_files_refused.set(snapshot.refused_files);
        fill(&self.trigger_queue, snapshot.trigger_queue.into_iter(), |status| {
            StatusLabel { status }
        });
        self.deliveries_pending.clear();
        self.deliveries_dead.clear();
        for (subscription, pending, dead) in snapshot.deliveries {
            let label = SubscriptionLabel { subscription };
            self.deliveries_pending.get_or_create(&label).set(pending);
            self.deliveries_dead.get_or_create(&label).set(dead);
        }
        let (connected, backlog) = snapshot.nats.unwrap_or((false, 0));
        self.nats_connected.set(i64::from(connected));
        self.nats_backlog.set(backlog);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String does not fail");
        text
    }
}

/// Sets a gauge family to exactly `values` (labels no longer reported disappear).
fn fill<L>(family: &Family<L, Gauge>, values: impl Iterator<Item = (String, i64)>, label: impl Fn(String) -> L)
where
    L: Clone + std::hash::Hash + Eq,
{
    family.clear();
    for (name, value) in values {
        family.get_or_create(&label(name)).set(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_show_in_the_text_with_their_labels() {
        let metrics = Metrics::new();
        metrics.webhook_request("shop", 401, Duration::from_millis(3));
        metrics.webhook_request("shop", 200, Duration::from_millis(3));
        metrics.webhook_request("shop", 200, Duration::from_millis(3));
        metrics.plugin_call("shop", "webhook", CallOutcome::Trap, Duration::from_millis(1), 1 << 20);
        let text = metrics.encode(Snapshot {
            trigger_queue: vec![("queued".into(), 4)],
            ..Snapshot::default()
        });
        assert!(
            text.contains("sluice_webhook_requests_total{installation=\"shop\",status=\"2xx\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_webhook_requests_total{installation=\"shop\",status=\"4xx\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "sluice_plugin_calls_total{installation=\"shop\",operation=\"webhook\",outcome=\"trap\"} 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("sluice_trigger_queue_depth{status=\"queued\"} 4\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_webhook_request_duration_seconds_count{installation=\"shop\"} 3\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn state_gauges_show_only_what_the_last_snapshot_reported() {
        let metrics = Metrics::new();
        let snapshot = |subscription: &str| Snapshot {
            deliveries: vec![(subscription.to_string(), 3, 1)],
            ..Snapshot::default()
        };
        let _ = metrics.encode(snapshot("old"));
        let text = metrics.encode(snapshot("new"));
        assert!(
            text.contains("sluice_deliveries_pending{subscription=\"new\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("sluice_deliveries_dead_lettered{subscription=\"new\"} 1\n"),
            "{text}"
        );
        assert!(!text.contains("\"old\""), "{text}");
    }
}
