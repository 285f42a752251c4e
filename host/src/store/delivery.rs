//! What event delivery keeps: subscriptions (where to send what), deliveries (one outbox
//! entry owed to one subscription), the attempts made for each, and cursors (how far a
//! reader of the outbox has come). The delivery room (`crate::delivery`) drives them.

use super::{Page, PageRequest, Pending, RawOutboxEntry};

/// Where a subscription was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionSource {
    /// Created through the API; changed and deleted through it.
    Api,
    /// A `[[subscriptions]]` entry of the configuration file; the file is its truth.
    Config,
}

impl SubscriptionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionSource::Api => "api",
            SubscriptionSource::Config => "config",
        }
    }

    pub fn parse(text: &str) -> SubscriptionSource {
        if text == "config" {
            SubscriptionSource::Config
        } else {
            SubscriptionSource::Api
        }
    }
}

/// An application that wants events: signed webhooks to `url` for the types it asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionRecord {
    /// `sub_...` for subscriptions made through the API; the configured id otherwise.
    pub id: String,
    pub url: String,
    /// Event-type filters: exact types, or prefixes ending in `*`; empty means every type.
    pub types: Vec<String>,
    /// The Standard Webhooks signing secret, `whsec_<base64>`.
    pub secret: String,
    pub enabled: bool,
    pub description: Option<String>,
    pub source: SubscriptionSource,
    pub created_at: i64,
    pub updated_at: i64,
    /// When it was disabled (ms), while it is; `None` while enabled. Deliveries keep being
    /// created while it is disabled, so that re-enabling can send what it missed, or skip
    /// the deliveries created since this time.
    pub disabled_at: Option<i64>,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryStatus {
    /// Not delivered yet: waiting for its first attempt or for a retry.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// Given up (attempts exhausted or an answer not worth retrying): the dead-letter
    /// list, from where the API can send it again.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Dead => "dead",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryStatus> {
        Some(match text {
            "pending" => DeliveryStatus::Pending,
            "delivered" => DeliveryStatus::Delivered,
            "dead" => DeliveryStatus::Dead,
            _ => return None,
        })
    }
}

/// One outbox entry owed to one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRecord {
    pub seq: i64,
    pub subscription_id: String,
    pub outbox_seq: i64,
    /// The outbox entry's id: the envelope id and the `webhook-id` header.
    pub event_id: String,
    pub event_type: String,
    pub status: DeliveryStatus,
    /// Attempts made so far, every round together.
    pub attempts: i64,
    /// The round of attempts: 1 for the first sending, one more for each resend or recovery.
    pub round: i64,
    /// Attempts made before the current round.
    pub round_start: i64,
    /// The recovery that started the current round, if one did.
    pub recovery_id: Option<String>,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<i64>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A pending delivery with what is needed to send it.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub seq: i64,
    /// Attempts made so far.
    pub attempts: i64,
    /// Attempts made before the current round, as stored: a delivery sent again through
    /// the API gets a fresh round of `max-attempts`, numbered on from its earlier ones,
    /// and a restart continues the round with the attempts it has left.
    pub round_start: i64,
    pub next_attempt_at: i64,
    pub entry: RawOutboxEntry,
}

/// One attempt to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub delivery_seq: i64,
    /// 1 for the first attempt.
    pub number: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i64>,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// What the delivery became: `delivered`, `pending` (a retry is scheduled) or `dead`.
    pub outcome: DeliveryStatus,
    /// When the retry is due (outcome `pending`).
    pub next_attempt_at: Option<i64>,
}

/// What became of [`DeliveryStore::requeue_delivery`]'s request.
#[derive(Debug, Clone, PartialEq)]
pub enum Requeue {
    /// A new round started: the delivery is pending again, due now.
    Started(DeliveryRecord),
    /// The delivery is already pending: its current round is still running, and nothing
    /// changed.
    Running(DeliveryRecord),
}

/// A bulk resend: every dead delivery of a subscription created since a time, each
/// sent again in a new round tagged with the recovery's id.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryRecord {
    /// `rcv_...`.
    pub id: String,
    pub subscription_id: String,
    /// Dead deliveries created at or after this time (ms) are sent again.
    pub since: i64,
    /// How many deliveries it sent again.
    pub total: i64,
    pub created_at: i64,
}

/// A recovery and where the rounds it started stand.
#[derive(Debug, Clone, PartialEq)]
pub struct RecoveryProgress {
    pub recovery: RecoveryRecord,
    /// Deliveries whose current round the recovery started, by where they stand; a
    /// delivery resent again since, or forgotten after the retention, is no longer counted.
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
}

/// Pending and dead-lettered deliveries of one subscription.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeliveryCounts {
    pub pending: i64,
    pub dead: i64,
}

/// What one pass of pruning deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Finished deliveries, with their attempts.
    pub deliveries: usize,
    pub outbox: usize,
    /// Recoveries none of whose rounds still runs.
    pub recoveries: usize,
}

/// Filters and paging for listing a subscription's deliveries, newest first.
#[derive(Debug, Clone, Default)]
pub struct DeliveryQuery {
    pub subscription_id: String,
    pub status: Option<DeliveryStatus>,
    pub page: PageRequest,
}

/// The delivery half of the store. Every call answers with a [`Pending`], like every part of
/// [`super::Store`].
pub trait DeliveryStore {
    fn subscriptions(&self) -> Pending<Vec<SubscriptionRecord>>;
    fn subscription(&self, id: &str) -> Pending<Option<SubscriptionRecord>>;
    /// Creates or replaces a subscription.
    fn save_subscription(&self, subscription: &SubscriptionRecord) -> Pending<()>;
    /// Deletes a subscription with its deliveries, their attempts and its recoveries;
    /// `false` when there was none.
    fn delete_subscription(&self, id: &str) -> Pending<bool>;

    /// How far the outbox reader `name` has come (`None` when it never ran).
    fn cursor(&self, name: &str) -> Pending<Option<i64>>;
    fn set_cursor(&self, name: &str, seq: i64) -> Pending<()>;

    /// Creates a pending delivery for each `(subscription id, outbox seq)` and moves the
    /// cursor `cursor` to `through`, in one transaction: every entry is fanned out once.
    /// Answers the new deliveries' seqs, in the order of `deliveries`.
    fn fan_out(&self, deliveries: &[(String, i64)], cursor: &str, through: i64, now: i64) -> Pending<Vec<i64>>;
    /// Pending deliveries of a subscription with a seq above `after`, oldest first.
    fn pending_deliveries(&self, subscription_id: &str, after: i64, limit: usize) -> Pending<Vec<PendingDelivery>>;
    /// The deliveries among `seqs` that are pending and owed to the subscription, in seq
    /// order (a worker reads a delivery again when its retry is due, or once it was
    /// requeued).
    fn pending_deliveries_by_seq(&self, subscription_id: &str, seqs: &[i64]) -> Pending<Vec<PendingDelivery>>;
    /// Records attempts and the state each left its delivery in, in one transaction.
    /// Attempts of deliveries that are gone (their subscription was deleted) are dropped.
    /// Every attempt keeps a number of its own: one whose number is already recorded for
    /// its delivery is recorded under the next number free.
    fn record_attempts(&self, attempts: &[AttemptRecord], now: i64) -> Pending<()>;

    fn delivery(&self, seq: i64) -> Pending<Option<DeliveryRecord>>;
    fn deliveries(&self, query: &DeliveryQuery) -> Pending<Page<DeliveryRecord>>;
    /// Every attempt of a delivery, first first.
    fn attempts(&self, delivery_seq: i64) -> Pending<Vec<AttemptRecord>>;
    /// Makes a delivered or dead delivery pending again, due at `now`, in a new round
    /// (`round` + 1, `round_start` = `attempts`, no recovery), atomically: of concurrent
    /// calls, one starts the round and the others find it running. `None` when there is
    /// no such delivery.
    fn requeue_delivery(&self, seq: i64, now: i64) -> Pending<Option<Requeue>>;
    /// Starts a recovery, in one transaction: every dead delivery of
    /// `recovery.subscription_id` created at or after `recovery.since` becomes pending,
    /// due at `recovery.created_at`, in a new round tagged with `recovery.id`; the
    /// recovery is kept with `total` set to how many there were. Returns their seqs, in
    /// order.
    fn start_recovery(&self, recovery: &RecoveryRecord) -> Pending<Vec<i64>>;
    /// A recovery with the counts of its deliveries.
    fn recovery(&self, id: &str) -> Pending<Option<RecoveryProgress>>;
    /// Deletes the pending deliveries of a subscription that were created at or after
    /// `since` (ms) and never attempted (re-enabling a subscription from now); how many.
    fn skip_unattempted_deliveries(&self, subscription_id: &str, since: i64) -> Pending<usize>;
    /// Pending and dead deliveries per subscription id.
    fn delivery_counts(&self) -> Pending<Vec<(String, DeliveryCounts)>>;
    /// Deletes delivery history from before `before` (ms), at most `limit` rows of each
    /// kind in one transaction: finished (delivered or dead) deliveries with their
    /// attempts, then outbox entries that every reader named in `readers` has passed and
    /// no remaining delivery refers to, and recoveries from before `before` none of
    /// whose deliveries is pending. Pending deliveries, and the entries they will send,
    /// are never deleted.
    fn prune_delivery_history(&self, before: i64, readers: &[&str], limit: usize) -> Pending<Pruned>;
}
