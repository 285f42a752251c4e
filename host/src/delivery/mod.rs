//! Event delivery: everything the host records reaches the user's application.
//!
//! The store publishes every recorded event, new conversation and message to its outbox
//! in the same transaction as the write. From there:
//! - the fan-out task reads the outbox in order and creates one pending delivery per
//!   matching subscription (and moves its cursor) in one transaction ([`fanout`]);
//! - one worker per subscription sends its deliveries as signed webhooks, with retries
//!   and dead-lettering ([`webhooks`]);
//! - the JetStream sink publishes every entry to NATS ([`nats`]);
//! - `GET /v1/stream` follows the outbox as Server-Sent Events ([`stream`]).
//!
//! Each sends an entry in its envelope ([`crate::envelope`]), the entry's data as stored.
//! All of them read the outbox through cursors kept in the store, so a crash loses
//! nothing: what was not delivered, acknowledged or recorded is sent again (receivers
//! see each envelope id at least once; JetStream drops the repeats by id).
//!
//! Every delivery is sent in rounds of attempts: the first when it is created, another
//! for each resend or recovery; a round is kept in the store, so a restart continues it
//! with the attempts it has left.
//!
//! Subscriptions are managed in [`subscriptions`]; finished history is forgotten after
//! its retention ([`history`]); delivery runs on threads of its own ([`runtime`]).

mod fanout;
pub mod filter;
mod history;
pub mod nats;
mod runtime;
pub mod signing;
pub mod stream;
mod subscriptions;
pub mod target;
pub mod webhooks;

pub use fanout::FANOUT_CURSOR;
pub use subscriptions::{Resume, Resumed, SubscriptionError, SubscriptionInput};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use self::fanout::Route;
use self::history::prune_history;
use self::nats::{NatsSink, NatsStatus};
use self::runtime::DeliveryRuntime;
use self::subscriptions::sync_configured;
use self::webhooks::{WebhookSender, WorkerHandle};
use crate::config::{DeliveryConfig, NatsConfig, SubscriptionConfig};
use crate::store::{AttemptRecord, SharedStore, SubscriptionRecord};

/// The running delivery machinery.
pub struct Delivery {
    runtime: DeliveryRuntime,
    store: SharedStore,
    pub config: DeliveryConfig,
    pub bot_id: String,
    sender: Arc<WebhookSender>,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Enabled subscriptions and their filters, rebuilt on every change.
    routes: ArcSwap<Vec<Route>>,
    results: mpsc::Sender<AttemptRecord>,
    stopping: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    recorder: Mutex<Option<tokio::task::JoinHandle<()>>>,
    nats: Option<(NatsConfig, Arc<Mutex<NatsStatus>>)>,
}

impl Delivery {
    /// Checks the configuration, brings configured subscriptions into the store, and
    /// starts the fan-out, the webhook workers and the NATS sink.
    pub async fn start(
        store: SharedStore,
        config: DeliveryConfig,
        subscriptions: Vec<SubscriptionConfig>,
        nats: Option<NatsConfig>,
        bot_id: String,
    ) -> anyhow::Result<Arc<Delivery>> {
        config.check()?;
        if let Some(nats) = &nats {
            nats.check()?;
        }
        let sender = Arc::new(WebhookSender::new(&config, bot_id.clone())?);
        sync_configured(&store, &subscriptions, &sender).await?;
        // Readers that never ran start at the head: what was recorded before delivery
        // was set up is not replayed to new targets.
        let mut cursors = vec![FANOUT_CURSOR];
        if nats.is_some() {
            cursors.push(nats::CURSOR);
        }
        let head = *store.outbox_published().borrow();
        for name in cursors {
            if store.cursor(name).await?.is_none() {
                store.set_cursor(name, head).await?;
            }
        }

        let (results, results_rx) = mpsc::channel(16_384);
        let (stopping, _) = watch::channel(false);
        let runtime = DeliveryRuntime::start()?;
        let recorder = runtime.handle().spawn(webhooks::record(store.clone(), results_rx));
        let nats_status = nats
            .as_ref()
            .map(|c| (c.clone(), Arc::new(Mutex::new(NatsStatus::default()))));
        let delivery = Arc::new(Delivery {
            runtime,
            store: store.clone(),
            config,
            bot_id: bot_id.clone(),
            sender,
            workers: Mutex::new(HashMap::new()),
            routes: ArcSwap::from_pointee(Vec::new()),
            results,
            stopping,
            tasks: Mutex::new(Vec::new()),
            recorder: Mutex::new(Some(recorder)),
            nats: nats_status.clone(),
        });
        for subscription in store.subscriptions().await? {
            delivery.run_worker(subscription);
        }
        delivery.rebuild_routes();

        let fan_out = delivery.runtime.handle().spawn(delivery.clone().fan_out());
        delivery.lock_tasks().push(fan_out);
        if delivery.config.retention_s > 0 {
            let mut readers = vec![FANOUT_CURSOR];
            if delivery.nats.is_some() {
                readers.push(nats::CURSOR);
            }
            let retention = Duration::from_secs(delivery.config.retention_s);
            let pruner = delivery
                .runtime
                .handle()
                .spawn(prune_history(store.clone(), retention, readers));
            delivery.lock_tasks().push(pruner);
        }
        if let Some((config, status)) = nats_status {
            let mut sink = NatsSink::new(store.clone(), config, bot_id);
            sink.status = status;
            let task = delivery
                .runtime
                .handle()
                .spawn(sink.run(store.outbox_published(), delivery.stopping.subscribe()));
            delivery.lock_tasks().push(task);
        }
        Ok(delivery)
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock_workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkerHandle>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the worker of a subscription, or hands it new settings.
    pub(super) fn run_worker(&self, subscription: SubscriptionRecord) {
        let mut workers = self.lock_workers();
        if let Some(worker) = workers.get(&subscription.id) {
            worker.settings.send_replace(Arc::new(subscription));
            worker.wake.notify_one();
            return;
        }
        let id = subscription.id.clone();
        let worker = webhooks::spawn_worker(
            self.runtime.handle(),
            self.store.clone(),
            self.sender.clone(),
            subscription,
            self.results.clone(),
            self.stopping.subscribe(),
        );
        workers.insert(id, worker);
    }

    /// Where delivery stands: the outbox head, each reader's cursor, pending and dead
    /// deliveries per subscription, the NATS sink.
    pub async fn status(&self) -> anyhow::Result<Value> {
        let head = *self.store.outbox_published().borrow();
        let (fan_out, nats_cursor, counts) = (
            self.store.cursor(FANOUT_CURSOR).await?,
            self.store.cursor(nats::CURSOR).await?,
            self.store.delivery_counts().await?,
        );
        let in_flight: HashMap<String, usize> = self
            .lock_workers()
            .iter()
            .map(|(id, w)| (id.clone(), self.config.max_in_flight - w.slots.available_permits()))
            .collect();
        let subscriptions: Vec<Value> = counts
            .into_iter()
            .map(|(id, counts)| {
                json!({
                    "id": id,
                    "pending": counts.pending,
                    "dead": counts.dead,
                    "inFlight": in_flight.get(&id).copied().unwrap_or(0),
                })
            })
            .collect();
        let nats = self
            .nats
            .as_ref()
            .map(|(config, status)| NatsSink::status_json(status, config, nats_cursor.unwrap_or(0)));
        Ok(json!({
            "outbox": { "head": head, "format": crate::envelope::FORMAT_VERSION },
            "fanOut": { "cursor": fan_out.unwrap_or(0) },
            "subscriptions": subscriptions,
            "nats": nats,
        }))
    }

    /// Turns true when the host stops (live streams end then).
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.subscribe()
    }

    /// Stops starting new attempts, lets those in flight finish (up to `timeout`) and
    /// writes their results. What is left is sent again at the next start.
    pub async fn stop(&self, timeout: Duration) {
        self.stopping.send_replace(true);
        let slots: Vec<(Arc<tokio::sync::Semaphore>, u32)> = self
            .lock_workers()
            .values()
            .map(|w| (w.slots.clone(), self.config.max_in_flight as u32))
            .collect();
        let drained = async {
            for (slots, all) in slots {
                let _ = slots.acquire_many(all).await;
            }
        };
        if tokio::time::timeout(timeout, drained).await.is_err() {
            tracing::warn!("webhook attempts still running at stop; they are sent again at the next start");
        }
        for task in self.lock_tasks().drain(..) {
            task.abort();
        }
        for worker in self.lock_workers().values() {
            worker.task.abort();
        }
        // The recorder ends once every sender of results is gone; ours is the last
        // long-lived one, so wait for what is queued to be written.
        let recorder = self.recorder.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(recorder) = recorder {
            let flushed = async {
                while self.results.capacity() < self.results.max_capacity() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            };
            let _ = tokio::time::timeout(timeout, flushed).await;
            // Give the last batch time to commit.
            let _ = tokio::time::timeout(Duration::from_millis(500), recorder).await;
        }
    }
}
