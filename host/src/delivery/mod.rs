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
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};

use self::fanout::Route;
use self::history::prune_history;
use self::nats::{NatsSink, NatsStatus};
use self::runtime::DeliveryRuntime;
use self::subscriptions::sync_configured;
use self::webhooks::{WebhookSender, WorkerHandle};
use crate::config::{DeliveryConfig, NatsConfig, SubscriptionConfig};
use crate::store::{AttemptRecord, SharedStore, SubscriptionRecord};

/// How long the fan-out and the attempt recorder, woken from idle, wait for more before
/// they write: what arrives meanwhile shares their transaction, so that under load an
/// event costs a fraction of a commit instead of one each (a few ms of delivery latency).
const GATHER: Duration = Duration::from_millis(2);

/// Where delivery stands (`GET /v1/delivery`).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryOverview {
    pub outbox: OutboxPosition,
    pub fan_out: FanOutPosition,
    /// Each subscription's backlog.
    pub subscriptions: Vec<SubscriptionBacklog>,
    /// The JetStream sink, when one is configured.
    #[schema(required)]
    pub nats: Option<nats::NatsSinkStatus>,
}

/// The outbox: where its newest entry is, and the delivered format.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct OutboxPosition {
    /// The position of the newest committed entry.
    pub head: i64,
    /// The envelope's format version.
    pub format: u32,
}

/// How far fan-out (making deliveries from the outbox) has come.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct FanOutPosition {
    /// The last outbox position fanned out.
    pub cursor: i64,
}

/// One subscription's deliveries not yet delivered.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionBacklog {
    pub id: String,
    pub pending: i64,
    pub dead: i64,
    /// Attempts running now.
    pub in_flight: usize,
}

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
    /// Whether this replica leads delivery (see [`Delivery::start_leading`]).
    leading: AtomicBool,
    /// What runs while it leads.
    leader_tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
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
            bot_id,
            sender,
            workers: Mutex::new(HashMap::new()),
            routes: ArcSwap::from_pointee(Vec::new()),
            results,
            stopping,
            tasks: Mutex::new(Vec::new()),
            recorder: Mutex::new(Some(recorder)),
            nats: nats_status,
            leading: AtomicBool::new(false),
            leader_tasks: Mutex::new(Vec::new()),
        });
        // One replica of those sharing the store sends: the one leading delivery. The
        // embedded store's one replica leads from the start, before plugins record.
        let mut leading = store.leadership("delivery");
        if *leading.borrow_and_update() {
            delivery.start_leading().await?;
        }
        let follower = delivery
            .runtime
            .handle()
            .spawn(delivery.clone().follow_leadership(leading));
        delivery.lock_tasks().push(follower);
        Ok(delivery)
    }

    /// Starts what only the leading replica runs: the fan-out, a webhook worker per
    /// subscription, pruning and the NATS sink.
    async fn start_leading(self: &Arc<Self>) -> anyhow::Result<()> {
        self.leading.store(true, Ordering::SeqCst);
        for subscription in self.store.subscriptions().await? {
            self.run_worker(subscription);
        }
        self.rebuild_routes();
        let mut tasks = vec![self.runtime.handle().spawn(self.clone().fan_out())];
        if self.config.retention_s > 0 {
            let mut readers = vec![FANOUT_CURSOR];
            if self.nats.is_some() {
                readers.push(nats::CURSOR);
            }
            let retention = Duration::from_secs(self.config.retention_s);
            tasks.push(
                self.runtime
                    .handle()
                    .spawn(prune_history(self.store.clone(), retention, readers)),
            );
        }
        if let Some((config, status)) = &self.nats {
            let mut sink = NatsSink::new(self.store.clone(), config.clone(), self.bot_id.clone());
            sink.status = status.clone();
            tasks.push(
                self.runtime
                    .handle()
                    .spawn(sink.run(self.store.outbox_published(), self.stopping.subscribe())),
            );
        }
        self.leading_tasks().extend(tasks);
        Ok(())
    }

    /// Stops what only the leading replica runs; attempts in flight finish and are
    /// recorded (a delivery may then be sent again by the new leader: at least once).
    fn stop_leading(&self) {
        self.leading.store(false, Ordering::SeqCst);
        for task in self.leading_tasks().drain(..) {
            task.abort();
        }
        for (_, worker) in self.lock_workers().drain() {
            worker.task.abort();
        }
        self.rebuild_routes();
    }

    /// Follows this replica's leadership of delivery, and, while leading, changes other
    /// replicas made to subscriptions.
    async fn follow_leadership(self: Arc<Self>, mut leading: watch::Receiver<bool>) {
        let mut changes = self.store.changes();
        loop {
            tokio::select! {
                changed = leading.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let lead = *leading.borrow_and_update();
                    if lead && !self.leading.load(Ordering::SeqCst) {
                        if let Err(error) = self.start_leading().await {
                            tracing::error!(error = %format!("{error:#}"), "cannot start delivering; retrying");
                            self.stop_leading();
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            leading.mark_changed();
                        }
                    } else if !lead && self.leading.load(Ordering::SeqCst) {
                        self.stop_leading();
                    }
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The store tells of no changes (one replica): only leadership.
                        changes = watch::channel(0).1;
                        continue;
                    }
                    if self.leading.load(Ordering::SeqCst)
                        && let Err(error) = self.reload_subscriptions().await
                    {
                        tracing::error!(error = %format!("{error:#}"), "cannot reload the subscriptions");
                    }
                }
            }
        }
    }

    /// Brings the workers in line with the subscriptions in the store (changed by
    /// another replica).
    async fn reload_subscriptions(&self) -> anyhow::Result<()> {
        let subscriptions = self.store.subscriptions().await?;
        let kept: std::collections::HashSet<String> = subscriptions.iter().map(|s| s.id.clone()).collect();
        self.lock_workers().retain(|id, worker| {
            let keep = kept.contains(id);
            if !keep {
                worker.task.abort();
            }
            keep
        });
        for subscription in subscriptions {
            let unchanged = self
                .lock_workers()
                .get(&subscription.id)
                .is_some_and(|worker| **worker.settings.borrow() == subscription);
            if !unchanged {
                self.run_worker(subscription);
            }
        }
        self.rebuild_routes();
        Ok(())
    }

    fn leading_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.leader_tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<tokio::task::JoinHandle<()>>> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn lock_workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkerHandle>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the worker of a subscription, or hands it new settings.
    pub(super) fn run_worker(&self, subscription: SubscriptionRecord) {
        if !self.leading.load(Ordering::SeqCst) {
            // The leading replica sends; it reloads subscriptions when they change.
            return;
        }
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
    pub async fn status(&self) -> anyhow::Result<DeliveryOverview> {
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
        let subscriptions = counts
            .into_iter()
            .map(|(id, counts)| SubscriptionBacklog {
                in_flight: in_flight.get(&id).copied().unwrap_or(0),
                id,
                pending: counts.pending,
                dead: counts.dead,
            })
            .collect();
        let nats = self
            .nats
            .as_ref()
            .map(|(config, status)| NatsSink::status(status, config, nats_cursor.unwrap_or(0)));
        Ok(DeliveryOverview {
            outbox: OutboxPosition {
                head,
                format: crate::envelope::FORMAT_VERSION,
            },
            fan_out: FanOutPosition {
                cursor: fan_out.unwrap_or(0),
            },
            subscriptions,
            nats,
        })
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
        for task in self.leading_tasks().drain(..) {
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
