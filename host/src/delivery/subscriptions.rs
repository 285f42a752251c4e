//! Subscriptions: created, changed and deleted through the API, or defined in the
//! configuration file (which is then their truth); disabling and re-enabling one (which
//! keeps its place); and sending deliveries again, one (resend) or every dead one since a
//! time (recover), each in a new round of attempts.

use std::collections::HashMap;

use super::Delivery;
use super::filter::TypeFilter;
use super::signing;
use super::webhooks::{WebhookSender, WorkerMessage};
use crate::config::SubscriptionConfig;
use crate::ids::record_id;
use crate::store::{
    DeliveryRecord, RecoveryProgress, RecoveryRecord, Requeue, SharedStore, SubscriptionRecord, SubscriptionSource,
};
use crate::time::{iso8601, now_ms};

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
    /// A round of attempts is already running for the delivery.
    #[error("{0}")]
    Running(String),
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
    /// Where a disabled subscription that is enabled again starts: `None` is
    /// [`Resume::Backlog`].
    pub resume: Option<Resume>,
}

/// Where a subscription that is enabled again starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resume {
    /// Where it stopped: what was recorded while it was disabled is delivered.
    Backlog,
    /// Now: the deliveries created while it was disabled are skipped.
    Now,
}

/// What enabling a disabled subscription did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// It delivers its backlog: this many deliveries are pending.
    Backlog { pending: i64 },
    /// It starts from now: this many deliveries created while it was disabled were skipped.
    Now { skipped: usize },
}

impl Delivery {
    /// Creates a subscription through the API.
    pub async fn create(&self, input: SubscriptionInput) -> Result<SubscriptionRecord, SubscriptionError> {
        let Some(url) = input.url else {
            return Err(SubscriptionError::Invalid(
                "url is missing: give the address sluice should POST events to".into(),
            ));
        };
        let now = now_ms();
        let mut record = SubscriptionRecord {
            id: record_id("sub"),
            url,
            types: input.types.unwrap_or_default(),
            secret: input.secret.unwrap_or_else(signing::new_secret),
            enabled: input.enabled.unwrap_or(true),
            description: input.description.flatten(),
            source: SubscriptionSource::Api,
            created_at: now,
            updated_at: now,
            disabled_at: None,
        };
        if !record.enabled {
            record.disabled_at = Some(now);
        }
        validate(&record, &self.sender).map_err(SubscriptionError::Invalid)?;
        let saved = record.clone();
        self.store.save_subscription(&saved).await?;
        self.run_worker(record.clone());
        self.rebuild_routes();
        Ok(record)
    }

    /// Changes the fields given. Enabling a disabled subscription resumes it where
    /// `input.resume` says, and answers what that did.
    pub async fn update(
        &self,
        id: &str,
        input: SubscriptionInput,
    ) -> Result<(SubscriptionRecord, Option<Resumed>), SubscriptionError> {
        let mut record = self.api_owned(id).await?;
        let was_enabled = record.enabled;
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
        let now = now_ms();
        record.updated_at = now;
        validate(&record, &self.sender).map_err(SubscriptionError::Invalid)?;
        let mut resumed = None;
        match (was_enabled, record.enabled) {
            (true, false) => record.disabled_at = Some(now),
            (false, true) => {
                let disabled_at = record.disabled_at.take().unwrap_or(now);
                resumed = Some(match input.resume.unwrap_or(Resume::Backlog) {
                    Resume::Now => Resumed::Now {
                        skipped: self.store.skip_unattempted_deliveries(&record.id, disabled_at).await?,
                    },
                    Resume::Backlog => Resumed::Backlog {
                        pending: self.pending_count(&record.id).await?,
                    },
                });
            }
            _ => {}
        }
        let saved = record.clone();
        self.store.save_subscription(&saved).await?;
        self.run_worker(record.clone());
        self.rebuild_routes();
        Ok((record, resumed))
    }

    async fn pending_count(&self, id: &str) -> anyhow::Result<i64> {
        let counts = self.store.delivery_counts().await?;
        Ok(counts
            .into_iter()
            .find(|(subscription, _)| subscription == id)
            .map_or(0, |(_, counts)| counts.pending))
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

    /// Sends a delivered or dead-lettered delivery again, in a new round of attempts;
    /// refused while a round is running (of concurrent calls, one starts the round).
    pub async fn resend(&self, seq: i64) -> Result<DeliveryRecord, SubscriptionError> {
        let not_found = || SubscriptionError::NotFound(format!("delivery dlv_{seq} does not exist"));
        match self
            .store
            .requeue_delivery(seq, now_ms())
            .await?
            .ok_or_else(not_found)?
        {
            Requeue::Running(record) => Err(SubscriptionError::Running(self.running_round(&record))),
            Requeue::Started(record) => {
                self.hand_to_worker(&record.subscription_id, vec![seq]);
                Ok(record)
            }
        }
    }

    /// Says which round of a pending delivery is running, for the answer refusing a resend.
    fn running_round(&self, record: &DeliveryRecord) -> String {
        let started_by = match (&record.recovery_id, record.round) {
            (Some(recovery), _) => format!(", started by recovery {recovery}"),
            (None, 1) => ", its first".to_string(),
            (None, _) => ", started by a resend".to_string(),
        };
        let next = record
            .next_attempt_at
            .map(|at| format!("; the next is due at {}", iso8601(at)))
            .unwrap_or_default();
        format!(
            "delivery dlv_{} is already being sent: round {} is running{started_by}, with {} of its {} attempt(s) made{next}. Resend it once the round is over (GET /v1/deliveries/dlv_{} shows its status)",
            record.seq,
            record.round,
            record.attempts - record.round_start,
            self.sender.retry_policy().max_attempts,
            record.seq
        )
    }

    /// Sends every dead delivery of a subscription created at or after `since` (ms)
    /// again, each in a new round of attempts.
    pub async fn recover(&self, subscription_id: &str, since: i64) -> Result<RecoveryProgress, SubscriptionError> {
        let lookup = subscription_id.to_string();
        if self.store.subscription(&lookup).await?.is_none() {
            return Err(SubscriptionError::NotFound(format!(
                "subscription {subscription_id} does not exist"
            )));
        }
        let mut recovery = RecoveryRecord {
            id: record_id("rcv"),
            subscription_id: subscription_id.to_string(),
            since,
            total: 0,
            created_at: now_ms(),
        };
        let seqs = self.store.start_recovery(&recovery).await?;
        recovery.total = seqs.len() as i64;
        tracing::info!(
            recovery = %recovery.id,
            subscription = %subscription_id,
            deliveries = seqs.len(),
            since = %iso8601(since),
            "recovering dead deliveries"
        );
        if !seqs.is_empty() {
            self.hand_to_worker(subscription_id, seqs);
        }
        Ok(RecoveryProgress {
            pending: recovery.total,
            delivered: 0,
            dead: 0,
            recovery,
        })
    }

    /// Tells a subscription's worker that deliveries are pending again.
    fn hand_to_worker(&self, subscription_id: &str, seqs: Vec<i64>) {
        if let Some(worker) = self.lock_workers().get(subscription_id) {
            let _ = worker.inbox.send(WorkerMessage::Requeued(seqs));
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
pub(super) async fn sync_configured(
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
            // Kept while it stays disabled; re-enabled in the file, it delivers its backlog.
            disabled_at: if entry.enabled {
                None
            } else {
                previous.and_then(|p| p.disabled_at).or(Some(now))
            },
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
