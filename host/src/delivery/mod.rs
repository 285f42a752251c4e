//! Event delivery: everything the host records reaches the user's application.
//!
//! The store publishes every recorded event, new conversation and message to its outbox
//! in the same transaction as the write. From there:
//! - the fan-out task reads the outbox in order and creates one pending delivery per
//!   matching subscription (and moves its cursor) in one transaction;
//! - one worker per subscription sends its deliveries as signed webhooks, with retries
//!   and dead-lettering ([`webhooks`]);
//! - the JetStream sink publishes every entry to NATS ([`nats`]);
//! - `GET /v1/stream` follows the outbox as Server-Sent Events ([`stream`]).
//!
//! Each sends an entry in its envelope ([`crate::envelope`]), the entry's data as stored.
//! All of them read the outbox through cursors kept in the store, so a crash loses
//! nothing: what was not delivered, acknowledged or recorded is sent again (receivers
//! see each envelope id at least once; JetStream drops the repeats by id).

pub mod filter;
pub mod nats;
pub mod signing;
pub mod stream;
pub mod target;
pub mod webhooks;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use self::filter::TypeFilter;
use self::nats::{NatsSink, NatsStatus};
use self::webhooks::{WebhookSender, WorkerHandle};
use crate::config::{DeliveryConfig, NatsConfig, SubscriptionConfig};
use crate::ids::record_id;
use crate::store::{
    self, AttemptRecord, DeliveryRecord, DeliveryStatus, SharedStore, SubscriptionRecord, SubscriptionSource,
};
use crate::time::now_ms;

/// The fan-out task's cursor in `delivery_cursors`.
pub const FANOUT_CURSOR: &str = "fanout";
/// Outbox entries fanned out in one transaction at most.
const FANOUT_BATCH: usize = 1000;

/// What is wrong with a subscription request.
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// Defined in the configuration file, so not changed through the API.
    #[error("{0}")]
    Managed(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The fields of a subscription a client sets.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionInput {
    pub url: Option<String>,
    pub types: Option<Vec<String>>,
    pub secret: Option<String>,
    pub enabled: Option<bool>,
    /// `Some(None)` clears it.
    pub description: Option<Option<String>>,
}

/// One subscription as the fan-out sees it.
struct Route {
    id: String,
    filter: TypeFilter,
    wake: Arc<Notify>,
}

/// The threads delivery runs on, apart from the request path's: the OS shares the CPU
/// between the two, so a flood of webhook requests cannot starve deliveries (their tasks
/// would otherwise queue behind every request in flight), and deliveries never delay a
/// request. Half the cores: more threads than that only hand work between threads (each
/// hand-off a wakeup), which cost a tenth of delivery's CPU on two cores.
struct DeliveryRuntime(Option<tokio::runtime::Runtime>);

impl DeliveryRuntime {
    fn start() -> anyhow::Result<DeliveryRuntime> {
        let threads = (std::thread::available_parallelism().map_or(2, |n| n.get()) / 2).max(1);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("sluice-delivery")
            .enable_all()
            .build()?;
        Ok(DeliveryRuntime(Some(runtime)))
    }

    fn handle(&self) -> &tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("the delivery runtime lives as long as Delivery")
            .handle()
    }
}

impl Drop for DeliveryRuntime {
    fn drop(&mut self) {
        // The last holder may be async code, or a task on this very runtime: shut it down
        // from a thread of its own, without waiting for what is still running.
        if let Some(runtime) = self.0.take() {
            let _ = std::thread::Builder::new()
                .name("sluice-delivery-stop".into())
                .spawn(move || runtime.shutdown_background());
        }
    }
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

    fn lock_workers(&self) -> std::sync::MutexGuard<'_, HashMap<String, WorkerHandle>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the worker of a subscription, or hands it new settings.
    fn run_worker(&self, subscription: SubscriptionRecord) {
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

    fn rebuild_routes(&self) {
        let workers = self.lock_workers();
        let mut routes: Vec<Route> = workers
            .values()
            .filter_map(|worker| {
                let settings = worker.settings.borrow();
                if !settings.enabled {
                    return None;
                }
                Some(Route {
                    id: settings.id.clone(),
                    filter: TypeFilter::parse(&settings.types).unwrap_or_default(),
                    wake: worker.wake.clone(),
                })
            })
            .collect();
        routes.sort_by(|a, b| a.id.cmp(&b.id));
        self.routes.store(Arc::new(routes));
    }

    /// Reads the outbox in order and creates the deliveries each entry owes.
    async fn fan_out(self: Arc<Self>) {
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
                        Ok(()) => cursor = head,
                        Err(error) => {
                            tracing::error!(error = %format!("{error:#}"), "cannot move the fan-out cursor; trying again")
                        }
                    }
                }
                Vec::new()
            } else {
                let after = cursor;
                match self.store.outbox_types_after(after, FANOUT_BATCH).await {
                    Ok(entries) => entries,
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "cannot read the outbox; trying again");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
            };
            let Some(last) = entries.last().map(|(seq, _)| *seq) else {
                tokio::select! {
                    _ = published.changed() => {}
                    // In case a commit was missed: a cheap look once in a while.
                    _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    _ = stopping.changed() => return,
                }
                continue;
            };
            let mut owed = Vec::new();
            let mut woken = vec![false; routes.len()];
            for (seq, entry_type) in &entries {
                for (index, route) in routes.iter().enumerate() {
                    if route.filter.matches(entry_type) {
                        owed.push((route.id.clone(), *seq));
                        woken[index] = true;
                    }
                }
            }
            let write = self.store.fan_out(&owed, FANOUT_CURSOR, last, now_ms()).await;
            match write {
                Ok(()) => {
                    cursor = last;
                    for (route, woken) in routes.iter().zip(woken) {
                        if woken {
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

    /// Creates a subscription through the API.
    pub async fn create(&self, input: SubscriptionInput) -> Result<SubscriptionRecord, SubscriptionError> {
        let Some(url) = input.url else {
            return Err(SubscriptionError::Invalid(
                "url is missing: give the address sluice should POST events to".into(),
            ));
        };
        let now = now_ms();
        let record = SubscriptionRecord {
            id: record_id("sub"),
            url,
            types: input.types.unwrap_or_default(),
            secret: input.secret.unwrap_or_else(signing::new_secret),
            enabled: input.enabled.unwrap_or(true),
            description: input.description.flatten(),
            source: SubscriptionSource::Api,
            created_at: now,
            updated_at: now,
        };
        validate(&record, &self.sender).map_err(SubscriptionError::Invalid)?;
        let saved = record.clone();
        self.store.save_subscription(&saved).await?;
        self.run_worker(record.clone());
        self.rebuild_routes();
        Ok(record)
    }

    /// Changes the fields given.
    pub async fn update(&self, id: &str, input: SubscriptionInput) -> Result<SubscriptionRecord, SubscriptionError> {
        let mut record = self.api_owned(id).await?;
        if let Some(url) = input.url {
            record.url = url;
        }
        if let Some(types) = input.types {
            record.types = types;
        }
        if let Some(secret) = input.secret {
            record.secret = secret;
        }
        if let Some(enabled) = input.enabled {
            record.enabled = enabled;
        }
        if let Some(description) = input.description {
            record.description = description;
        }
        record.updated_at = now_ms();
        validate(&record, &self.sender).map_err(SubscriptionError::Invalid)?;
        let saved = record.clone();
        self.store.save_subscription(&saved).await?;
        self.run_worker(record.clone());
        self.rebuild_routes();
        Ok(record)
    }

    /// Deletes a subscription with its deliveries.
    pub async fn delete(&self, id: &str) -> Result<(), SubscriptionError> {
        self.api_owned(id).await?;
        if let Some(worker) = self.lock_workers().remove(id) {
            worker.task.abort();
        }
        self.rebuild_routes();
        let owned = id.to_string();
        self.store.delete_subscription(&owned).await?;
        Ok(())
    }

    async fn api_owned(&self, id: &str) -> Result<SubscriptionRecord, SubscriptionError> {
        let lookup = id.to_string();
        let record = self
            .store
            .subscription(&lookup)
            .await?
            .ok_or_else(|| SubscriptionError::NotFound(format!("subscription {id} does not exist")))?;
        if record.source == SubscriptionSource::Config {
            return Err(SubscriptionError::Managed(format!(
                "subscription {id} is defined in the configuration file; change it there and restart sluice"
            )));
        }
        Ok(record)
    }

    /// Sends a delivered or dead-lettered delivery again (as a new round of attempts).
    pub async fn resend(&self, seq: i64) -> Result<DeliveryRecord, SubscriptionError> {
        let record = self
            .store
            .delivery(seq)
            .await?
            .ok_or_else(|| SubscriptionError::NotFound(format!("delivery dlv_{seq} does not exist")))?;
        if record.status == DeliveryStatus::Pending {
            return Err(SubscriptionError::Managed(format!(
                "delivery dlv_{seq} is already pending; it is sent when its next attempt is due"
            )));
        }
        let subscription_id = record.subscription_id.clone();
        self.store.requeue_delivery(seq, now_ms()).await?;
        let pending = self
            .store
            .pending_deliveries(&subscription_id, seq - 1, 1)
            .await?
            .into_iter()
            .next();
        if let Some(pending) = pending.filter(|p| p.seq == seq) {
            // The resend starts a fresh round: max-attempts counts from here.
            let pending = store::PendingDelivery {
                round_start: pending.attempts,
                ..pending
            };
            if let Some(worker) = self.lock_workers().get(&record.subscription_id) {
                let _ = worker.requeued.send(pending);
            }
        }
        self.store
            .delivery(seq)
            .await?
            .ok_or_else(|| SubscriptionError::NotFound(format!("delivery dlv_{seq} does not exist")))
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
            "outbox": { "head": head },
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

/// Deletes delivery history past its retention, checking a tenth of the retention apart
/// (once a minute at most), a batch per transaction so that other writes go in between.
async fn prune_history(store: SharedStore, retention: Duration, readers: Vec<&'static str>) {
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

/// Checks a subscription's url, filters and secret.
fn validate(record: &SubscriptionRecord, sender: &WebhookSender) -> Result<(), String> {
    let url = url::Url::parse(&record.url).map_err(|e| {
        format!(
            "url {:?} is not a valid URL ({e}); give an absolute http or https URL",
            record.url
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(format!(
            "url {:?} must be an absolute http or https URL with a host",
            record.url
        ));
    }
    sender.policy().check_url(&url).map_err(|e| e.to_string())?;
    TypeFilter::parse(&record.types)?;
    signing::secret_key(&record.secret)?;
    Ok(())
}

/// Creates or updates the configured subscriptions and removes configured ones that
/// left the file (with their deliveries).
async fn sync_configured(
    store: &SharedStore,
    configured: &[SubscriptionConfig],
    sender: &WebhookSender,
) -> anyhow::Result<()> {
    let existing: HashMap<String, SubscriptionRecord> = store
        .subscriptions()
        .await?
        .into_iter()
        .map(|s| (s.id.clone(), s))
        .collect();
    let now = now_ms();
    let mut keep = Vec::new();
    for entry in configured {
        let valid_id = !entry.id.is_empty()
            && entry.id.len() <= 64
            && entry
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        anyhow::ensure!(
            valid_id,
            "[[subscriptions]] id {:?} must be 1 to 64 letters, digits, '-' or '_'",
            entry.id
        );
        anyhow::ensure!(
            !keep.contains(&entry.id),
            "[[subscriptions]] id {:?} appears twice; ids must be unique",
            entry.id
        );
        let previous = existing.get(&entry.id);
        if let Some(previous) = previous
            && previous.source == SubscriptionSource::Api
        {
            anyhow::bail!(
                "[[subscriptions]] id {:?} is already used by a subscription created through the API; pick another id",
                entry.id
            );
        }
        let record = SubscriptionRecord {
            id: entry.id.clone(),
            url: entry.url.clone(),
            types: entry.types.clone(),
            secret: entry
                .secret
                .clone()
                .or_else(|| previous.map(|p| p.secret.clone()))
                .unwrap_or_else(signing::new_secret),
            enabled: entry.enabled,
            description: entry.description.clone(),
            source: SubscriptionSource::Config,
            created_at: previous.map(|p| p.created_at).unwrap_or(now),
            updated_at: now,
        };
        validate(&record, sender).map_err(|e| anyhow::anyhow!("[[subscriptions]] {:?}: {e}", entry.id))?;
        if previous != Some(&record) {
            store.save_subscription(&record).await?;
        }
        keep.push(entry.id.clone());
    }
    for (id, record) in existing {
        if record.source == SubscriptionSource::Config && !keep.contains(&id) {
            tracing::info!(subscription = %id, "removing a subscription that left the configuration file");
            store.delete_subscription(&id).await?;
        }
    }
    Ok(())
}
