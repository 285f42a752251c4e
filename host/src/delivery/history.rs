//! Delivery history does not grow without end: finished deliveries and delivered outbox
//! entries are forgotten after `delivery.retention-s`.

use std::time::Duration;

use crate::store::{self, SharedStore};
use crate::time::now_ms;

/// Deletes delivery history past its retention, checking a tenth of the retention apart
/// (once a minute at most), a batch per transaction so that other writes go in between.
pub(super) async fn prune_history(store: SharedStore, retention: Duration, readers: Vec<&'static str>) {
    const BATCH: usize = 5000;
    let every = (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::time::sleep(every).await;
        let before = now_ms() - retention.as_millis() as i64;
        let mut total = store::Pruned::default();
        loop {
            match store.prune_delivery_history(before, &readers, BATCH).await {
                Ok(pruned) => {
                    total.deliveries += pruned.deliveries;
                    total.outbox += pruned.outbox;
                    if pruned.deliveries < BATCH && pruned.outbox < BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %format!("{error:#}"), "cannot prune delivery history; trying again later");
                    break;
                }
            }
        }
        if total != store::Pruned::default() {
            tracing::info!(
                deliveries = total.deliveries,
                outbox = total.outbox,
                "forgot delivery history past its retention (delivery.retention-s)"
            );
        }
    }
}
