//! The fan-out: reads the outbox in order and creates the deliveries each entry owes
//! (one per matching subscription), moving its cursor in the same transaction, so every
//! entry is fanned out exactly once. Once they are committed it hands the new deliveries
//! to their workers in memory ([`Handoff`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use super::filter::TypeFilter;
use super::webhooks::Handoff;
use super::{Delivery, GATHER};
use crate::store::PendingDelivery;
use crate::time::now_ms;

/// The fan-out task's cursor in `delivery_cursors`.
pub const FANOUT_CURSOR: &str = "fanout";
/// Outbox entries fanned out in one transaction at most.
const FANOUT_BATCH: usize = 1000;

/// One subscription as the fan-out sees it.
pub(super) struct Route {
    id: String,
    filter: TypeFilter,
    wake: Arc<Notify>,
    handoff: Arc<Mutex<Handoff>>,
}

impl Delivery {
    /// Rebuilds the routes from the subscriptions, after every change. Disabled ones
    /// have routes too: they keep their place by being owed deliveries that wait, unsent,
    /// until they are enabled again (or skipped then).
    pub(super) fn rebuild_routes(&self) {
        let workers = self.lock_workers();
        let mut routes: Vec<Route> = workers
            .values()
            .map(|worker| {
                let settings = worker.settings.borrow();
                Route {
                    id: settings.id.clone(),
                    filter: TypeFilter::parse(&settings.types).unwrap_or_default(),
                    wake: worker.wake.clone(),
                    handoff: worker.handoff.clone(),
                }
            })
            .collect();
        routes.sort_by(|a, b| a.id.cmp(&b.id));
        self.routes.store(Arc::new(routes));
    }

    /// Reads the outbox in order and creates the deliveries each entry owes.
    pub(super) async fn fan_out(self: Arc<Self>) {
        let mut published = self.store.outbox_published();
        let mut stopping = self.stopping.subscribe();
        let mut cursor = match self.store.cursor(FANOUT_CURSOR).await {
            Ok(cursor) => cursor.unwrap_or(0),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot read the fan-out cursor; webhooks are not delivered");
                return;
            }
        };
        loop {
            if *stopping.borrow() {
                return;
            }
            let head = *published.borrow_and_update();
            let routes = self.routes.load_full();
            let entries = if routes.is_empty() {
                // Nobody to deliver to: move past what was published without reading it.
                if head > cursor {
                    match self.store.fan_out(&[], FANOUT_CURSOR, head, now_ms()).await {
                        Ok(_) => cursor = head,
                        Err(error) => {
                            tracing::error!(error = %format!("{error:#}"), "cannot move the fan-out cursor; trying again")
                        }
                    }
                }
                Vec::new()
            } else {
                let after = cursor;
                match self.store.raw_outbox_after(after, FANOUT_BATCH).await {
                    Ok(entries) => entries,
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "cannot read the outbox; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            let Some(last) = entries.last().map(|entry| entry.seq) else {
                tokio::select! {
                    _ = published.changed() => {}
                    // In case a commit was missed: a cheap look once in a while.
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stopping.changed() => return,
                }
                tokio::time::sleep(GATHER).await;
                continue;
            };
            // Each delivery owed, as (route, entry); the store takes (subscription id, seq).
            let mut owners = Vec::new();
            for (entry_index, entry) in entries.iter().enumerate() {
                for (route_index, route) in routes.iter().enumerate() {
                    if route.filter.matches(&entry.entry_type) {
                        owners.push((route_index, entry_index));
                    }
                }
            }
            let owed: Vec<(String, i64)> = owners
                .iter()
                .map(|&(route, entry)| (routes[route].id.clone(), entries[entry].seq))
                .collect();
            let now = now_ms();
            let write = self.store.fan_out(&owed, FANOUT_CURSOR, last, now).await;
            match write {
                Ok(seqs) => {
                    cursor = last;
                    let mut handed: Vec<Vec<PendingDelivery>> = vec![Vec::new(); routes.len()];
                    for (seq, (route_index, entry_index)) in seqs.into_iter().zip(owners) {
                        handed[route_index].push(PendingDelivery {
                            seq,
                            attempts: 0,
                            round_start: 0,
                            next_attempt_at: now,
                            entry: entries[entry_index].clone(),
                        });
                    }
                    for (route, deliveries) in routes.iter().zip(handed) {
                        if !deliveries.is_empty() {
                            route.handoff.lock().unwrap_or_else(|p| p.into_inner()).hand(deliveries);
                            route.wake.notify_one();
                        }
                    }
                }
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "cannot create deliveries; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
