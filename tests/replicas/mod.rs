//! Several `sluice` replicas on one PostgreSQL database: what one records the others
//! read, trigger events and schedules run once across the cluster, and a replica killed
//! mid-load loses nothing that was acknowledged.
//!
//! These run in the PostgreSQL pass only (`SLUICE_TEST_STORE=postgres`); in the SQLite
//! pass each returns at once.

mod kill;
mod plugins;
mod sharing;

use serde_json::Value;

use crate::harness::postgres;
use crate::harness::{Host, guest};

/// `count` replicas with the webhook example and the trigger probe, started one after
/// another on one fresh database; `None` outside the PostgreSQL pass.
fn replicas(count: usize) -> Option<(String, Vec<Host>)> {
    replicas_with(count, "")
}

/// [`replicas`] with the host configuration file `config`.
fn replicas_with(count: usize, config: &str) -> Option<(String, Vec<Host>)> {
    if !postgres::enabled() {
        return None;
    }
    let url = postgres::fresh_database();
    let hosts = (0..count)
        .map(|_| {
            Host::builder()
                .plugin("webhook", guest("webhook"), None)
                .plugin("recorder", guest("trigger_probe"), None)
                .config(config)
                .postgres(&url)
                .start()
        })
        .collect();
    Some((url, hosts))
}

/// The path of a URL (`/webhooks/<id>`), without the replica's address.
fn path_of(url: &str) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    rest[rest.find('/').unwrap()..].to_string()
}

/// The trigger probe's `processed` events of `trigger`, as one replica lists them.
fn processed(host: &Host, trigger: &str) -> Vec<Value> {
    host.events(Some("tprobe:processed"))
        .into_iter()
        .filter(|e| e["payload"]["triggerId"] == trigger)
        .collect()
}
