//! Background work: triggers and the durable queue of their events.
//!
//! - [`queue`]: the durable queue of trigger events, kept by the store (an event is on
//!   disk before its sender hears `{"ok":true}`);
//! - [`worker`]: the pool that claims queued events and runs the trigger's plugin for
//!   each, with retries and exponential backoff, recording every outcome on the event's
//!   conversation;
//! - [`schedule`]: cron schedules, and the loop that queues a trigger's run each time its
//!   schedule comes due;
//! - [`Jobs`]: what the HTTP layer talks to: the triggers (kept in the store, with an
//!   in-memory copy for the event endpoint), the queue, the worker pool and the schedules.

pub mod queue;
pub mod schedule;
pub mod worker;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, Semaphore};

use crate::config::TriggerSettings;
use crate::plugins::PluginHost;
use crate::store::{SharedStore, TriggerRecord};
use crate::telemetry::metrics;
use crate::time::now_ms;
use queue::{Enqueued, JobSource, NewJob, Queue};
use schedule::Timetable;

/// The channel trigger conversations are created in. A plugin that wants to record
/// messages in them declares a channel of this name.
pub const TRIGGER_CHANNEL: &str = "trigger";

/// The header the host adds to every trigger event a plugin receives: `event`, `invoke`
/// or `schedule`.
pub const SOURCE_HEADER: &str = "x-sluice-trigger-source";

/// The triggers, their queue, the workers and the schedules.
pub struct Jobs {
    pub settings: TriggerSettings,
    pub queue: Queue,
    pub timetable: Arc<Timetable>,
    pub store: SharedStore,
    pub plugins: Arc<PluginHost>,
    /// Every trigger by id, for the event endpoint (which must not wait on the store).
    triggers: ArcSwap<HashMap<String, Arc<TriggerRecord>>>,
    /// Serialises changes to `triggers`.
    editing: tokio::sync::Mutex<()>,
    /// One permit per worker; a running event holds one.
    slots: Arc<Semaphore>,
    stopping: AtomicBool,
    stop: Notify,
}

impl Jobs {
    /// Loads the triggers and starts the workers, the scheduler and the pruning of old
    /// jobs.
    pub async fn start(
        store: SharedStore,
        plugins: Arc<PluginHost>,
        settings: TriggerSettings,
    ) -> anyhow::Result<Arc<Jobs>> {
        settings.check()?;
        let queue = Queue::new(store.clone());
        let triggers = store.all_triggers().await?;
        let timetable = Arc::new(Timetable::default());
        for trigger in &triggers {
            if let Some(expression) = &trigger.schedule {
                timetable.set(&trigger.id, Some((expression, trigger.timezone.as_deref())));
            }
        }
        let jobs = Arc::new(Jobs {
            slots: Arc::new(Semaphore::new(settings.workers)),
            settings,
            queue,
            timetable,
            store,
            plugins,
            triggers: ArcSwap::from_pointee(triggers.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect()),
            editing: tokio::sync::Mutex::new(()),
            stopping: AtomicBool::new(false),
            stop: Notify::new(),
        });
        if jobs.settings.workers > 0 {
            tokio::spawn(worker::dispatch(jobs.clone()));
        } else {
            tracing::warn!("triggers.workers is 0: trigger events are queued but not run");
        }
        let scheduled = jobs.clone();
        tokio::spawn(schedule::run(jobs.timetable.clone(), move |trigger_id, slot| {
            let jobs = scheduled.clone();
            async move { jobs.run_on_schedule(&trigger_id, slot).await }
        }));
        tokio::spawn(prune_forever(jobs.clone()));
        tokio::spawn(follow_changes(jobs.clone()));
        Ok(jobs)
    }

    /// The name of the installation a trigger's events go to (empty when none has its
    /// id or name), as metrics label them.
    pub(crate) fn installation_name(&self, trigger: &TriggerRecord) -> String {
        self.plugins
            .registry
            .by_id_or_name(&trigger.bot_id)
            .map(|installation| installation.name().to_string())
            .unwrap_or_default()
    }

    /// The trigger `id`, if it exists, as this replica knows it.
    pub fn trigger(&self, id: &str) -> Option<Arc<TriggerRecord>> {
        self.triggers.load().get(id).cloned()
    }

    /// The trigger `id`, if it exists: as this replica knows it, else from the store (a
    /// trigger another replica created a moment ago), which is then kept.
    pub async fn find_trigger(&self, id: &str) -> anyhow::Result<Option<Arc<TriggerRecord>>> {
        if let Some(trigger) = self.trigger(id) {
            return Ok(Some(trigger));
        }
        let Some(found) = self.store.trigger(id).await? else {
            return Ok(None);
        };
        let found = Arc::new(found);
        let mut triggers = HashMap::clone(&self.triggers.load());
        triggers.insert(found.id.clone(), found.clone());
        self.triggers.store(Arc::new(triggers));
        Ok(Some(found))
    }

    /// Reads every trigger again (another replica changed them): the in-memory copies
    /// and their schedules.
    async fn reload_triggers(&self) -> anyhow::Result<()> {
        let _one_at_a_time = self.editing.lock().await;
        let triggers = self.store.all_triggers().await?;
        let known: HashMap<String, Arc<TriggerRecord>> =
            triggers.into_iter().map(|t| (t.id.clone(), Arc::new(t))).collect();
        for id in self.triggers.load().keys() {
            if !known.contains_key(id) {
                self.timetable.set(id, None);
            }
        }
        for trigger in known.values() {
            self.timetable.set(
                &trigger.id,
                trigger.schedule.as_deref().map(|e| (e, trigger.timezone.as_deref())),
            );
        }
        self.triggers.store(Arc::new(known));
        Ok(())
    }

    /// Stores a new or changed trigger and brings the in-memory copy and its schedule
    /// up to date.
    pub async fn save_trigger(&self, trigger: TriggerRecord, new: bool) -> anyhow::Result<bool> {
        let _one_at_a_time = self.editing.lock().await;
        let saved = trigger.clone();
        let stored = if new {
            self.store.insert_trigger(&saved).await.map(|()| true)?
        } else {
            self.store.update_trigger(&saved).await?
        };
        if stored {
            self.timetable.set(
                &trigger.id,
                trigger.schedule.as_deref().map(|e| (e, trigger.timezone.as_deref())),
            );
            let mut triggers = HashMap::clone(&self.triggers.load());
            triggers.insert(trigger.id.clone(), Arc::new(trigger));
            self.triggers.store(Arc::new(triggers));
        }
        Ok(stored)
    }

    /// Deletes a trigger: its event URL answers 404 from now on, its schedule stops and
    /// its queued events are cancelled. Its conversations stay.
    pub async fn delete_trigger(&self, id: &str) -> anyhow::Result<bool> {
        let _one_at_a_time = self.editing.lock().await;
        let key = id.to_string();
        let deleted = self.store.delete_trigger(&key).await?;
        let mut triggers = HashMap::clone(&self.triggers.load());
        triggers.remove(id);
        self.triggers.store(Arc::new(triggers));
        self.timetable.set(id, None);
        if deleted {
            let cancelled = self.queue.cancel_trigger(id).await?;
            tracing::info!(trigger = %id, cancelled, "trigger deleted");
        }
        Ok(deleted)
    }

    /// Queues an event; returns once it is on disk.
    pub async fn enqueue(&self, job: NewJob) -> anyhow::Result<Enqueued> {
        self.queue.enqueue(job).await
    }

    /// Queues a run of the trigger now (the `invoke` endpoint), with `body` as its JSON
    /// body.
    pub async fn invoke(&self, trigger: &TriggerRecord, body: bytes::Bytes) -> anyhow::Result<Enqueued> {
        let now = now_ms();
        let queued = self
            .enqueue(self.own_job(trigger, JobSource::Invoke, None, body, now))
            .await?;
        let id = trigger.id.clone();
        self.store.mark_triggered(&id, now).await?;
        Ok(queued)
    }

    /// A job the host makes for a trigger (invoke, schedule).
    fn own_job(
        &self,
        trigger: &TriggerRecord,
        source: JobSource,
        idempotency_key: Option<String>,
        body: bytes::Bytes,
        now: i64,
    ) -> NewJob {
        let mut headers = vec![(SOURCE_HEADER.to_string(), source.as_str().to_string())];
        let content_type = (!body.is_empty()).then(|| "application/json".to_string());
        if let Some(content_type) = &content_type {
            headers.push(("content-type".into(), content_type.clone()));
        }
        NewJob {
            trigger_id: trigger.id.clone(),
            source,
            idempotency_key,
            method: "POST".into(),
            content_type,
            query: String::new(),
            headers,
            body,
            session: None,
            contact: None,
            received_at: now,
            budget: self.settings.max_attempts,
        }
    }

    /// Queues the run of a schedule slot (once per slot, even if asked twice).
    async fn run_on_schedule(&self, trigger_id: &str, slot: i64) {
        let Some(trigger) = self.trigger(trigger_id) else {
            return;
        };
        let now = now_ms();
        let job = self.own_job(
            &trigger,
            JobSource::Schedule,
            Some(format!("schedule@{slot}")),
            bytes::Bytes::new(),
            now,
        );
        match self.enqueue(job).await {
            Ok(queued) => {
                tracing::info!(trigger = %trigger_id, event = %queued.id, "scheduled run queued");
                metrics().schedule_run(&self.installation_name(&trigger));
                let id = trigger_id.to_string();
                if let Err(error) = self.store.mark_triggered(&id, now).await {
                    tracing::error!(trigger = %trigger_id, error = %format!("{error:#}"), "cannot record the scheduled run");
                }
            }
            Err(error) => {
                tracing::error!(trigger = %trigger_id, error = %format!("{error:#}"), "cannot queue the scheduled run")
            }
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Stops claiming events and waits (up to `timeout`) for running ones to finish.
    /// Events still running after that run again at the next start.
    pub async fn shutdown(&self, timeout: Duration) {
        self.stopping.store(true, Ordering::Release);
        self.stop.notify_waiters();
        let workers = self.settings.workers as u32;
        if workers == 0 {
            return;
        }
        match tokio::time::timeout(timeout, self.slots.acquire_many(workers)).await {
            Ok(_) => tracing::info!("trigger workers stopped"),
            Err(_) => tracing::warn!("trigger events still running at exit; they run again at the next start"),
        }
    }
}

/// Reads the triggers again whenever another replica changed them.
async fn follow_changes(jobs: Arc<Jobs>) {
    let mut changes = jobs.store.changes();
    while changes.changed().await.is_ok() {
        if let Err(error) = jobs.reload_triggers().await {
            tracing::error!(error = %format!("{error:#}"), "cannot reload the triggers");
        }
    }
}

/// Forgets old finished jobs once an hour.
async fn prune_forever(jobs: Arc<Jobs>) {
    let retention = jobs.settings.retention_hours as i64 * 3_600_000;
    loop {
        match jobs.queue.prune(now_ms() - retention).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "forgot finished trigger events past their retention"),
            Err(error) => tracing::warn!(error = %format!("{error:#}"), "cannot prune the trigger queue"),
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}
