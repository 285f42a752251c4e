//! Subscriptions: created, changed and deleted through the API, or defined in the
//! configuration file (which is then their truth); and sending a delivery again.

use std::collections::HashMap;

use super::Delivery;
use super::filter::TypeFilter;
use super::signing;
use super::webhooks::WebhookSender;
use crate::config::SubscriptionConfig;
use crate::ids::record_id;
use crate::store::{self, DeliveryRecord, DeliveryStatus, SharedStore, SubscriptionRecord, SubscriptionSource};
use crate::time::now_ms;

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

impl Delivery {
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
