//! Outbound webhooks: one worker per subscription sends its pending deliveries (several
//! in flight at once), signs each request the Standard Webhooks way, classifies the
//! answer, and schedules retries by the retry policy (a schedule of waits, with jitter).
//! Results go to one recorder task that writes them in batches, so the store sees a few
//! transactions a second however many requests are made.
//!
//! A slow or dead receiver only fills its own worker's slots: other subscriptions, and
//! the webhook ingress that records events, never wait for it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use http::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER, USER_AGENT};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use super::signing;
use super::target::{GuardedResolver, TargetPolicy, refusal};
use crate::causes::with_causes;
use crate::config::{DeliveryConfig, RetryPolicy};
use crate::store::{AttemptRecord, DeliveryStatus, PendingDelivery, SharedStore, SubscriptionRecord};
use crate::telemetry::{metrics, traces};
use crate::time::now_ms;

/// Deliveries fetched from the store at once per subscription.
const FETCH_BATCH: usize = 512;
/// New deliveries a worker's [`Handoff`] holds at most.
const HANDOFF_LIMIT: usize = FETCH_BATCH;
/// Attempt results written in one transaction at most.
const RECORD_BATCH: usize = 4096;
/// The longest `Retry-After` honoured (a day); longer asks are cut to it.
const RETRY_AFTER_CAP_MS: i64 = 86_400_000;
/// How much of an error answer's body goes into the attempt's error.
const ERROR_BODY_CHARS: usize = 200;
/// The most of an answer's body read (to reuse the connection); a longer one is cut off.
const ANSWER_BYTES: usize = 64 * 1024;

/// The pooled HTTP(S) client webhooks are sent with; names resolve through the target
/// policy.
type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector<GuardedResolver>>, Full<Bytes>>;

/// The HTTP client and the rules every attempt follows.
pub struct WebhookSender {
    client: Client,
    policy: TargetPolicy,
    config: DeliveryConfig,
    retry: RetryPolicy,
    bot_id: String,
    user_agent: HeaderValue,
}

impl WebhookSender {
    pub fn new(config: &DeliveryConfig, bot_id: String) -> anyhow::Result<WebhookSender> {
        let policy = TargetPolicy::from(config);
        let mut http = HttpConnector::new_with_resolver(GuardedResolver { policy });
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.attempt_timeout().min(Duration::from_secs(10))));
        let https = HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // No redirects are followed (a redirect could lead anywhere, past the target
        // checks) and no proxy is used (it would resolve names itself): receivers answer
        // where they are asked.
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Ok(WebhookSender {
            client,
            policy,
            config: config.clone(),
            retry: config.retry_policy(),
            bot_id,
            user_agent: HeaderValue::from_static(concat!("sluice/", env!("CARGO_PKG_VERSION"))),
        })
    }

    pub fn policy(&self) -> TargetPolicy {
        self.policy
    }

    /// How many attempts a round has and how long to wait between them.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Makes attempt number `delivery.attempts + 1` and says what it left the delivery in.
    pub async fn attempt(&self, target: &Target, delivery: &PendingDelivery) -> AttemptRecord {
        let number = delivery.attempts + 1;
        let started_at = now_ms();
        let clock = Instant::now();
        let timeout = self.config.attempt_timeout();
        // Part of the trace of the write that recorded the event, when it was traced.
        let span = tracing::info_span!(
            target: traces::TARGET,
            "delivery attempt",
            otel.name = "delivery attempt",
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            webhook.id = %delivery.entry.id,
            delivery = delivery.seq,
            attempt = number,
            http.response.status_code = tracing::field::Empty,
        );
        let parent = match &delivery.entry.traceparent {
            Some(traceparent) if traces::enabled() => traces::from_traceparent(traceparent),
            _ => Default::default(),
        };
        traces::begin(&span, parent);
        let sent = tracing::Instrument::instrument(self.send(target, delivery, &span), span.clone());
        let answer = match tokio::time::timeout(timeout, sent).await {
            Ok(answer) => answer,
            Err(_) => Err(Verdict::Retry {
                error: format!(
                    "no answer within {} ms (delivery.attempt-timeout-ms)",
                    self.config.attempt_timeout_ms
                ),
                retry_after_ms: None,
            }),
        };
        let duration_ms = clock.elapsed().as_millis() as i64;
        let (status_code, verdict) = match answer {
            Ok((status, verdict)) => (Some(status as i64), verdict),
            Err(verdict) => (None, verdict),
        };
        if let Some(status) = status_code {
            span.record("http.response.status_code", status);
        }
        if !matches!(verdict, Verdict::Delivered) {
            span.record("otel.status_code", "ERROR");
        }
        // The attempt's place in its round: a resend or recovery starts the schedule again.
        let in_round = number - delivery.round_start;
        let last_allowed = in_round >= self.retry.max_attempts as i64;
        let (outcome, error, next_attempt_at) = match verdict {
            Verdict::Delivered => (DeliveryStatus::Delivered, None, None),
            Verdict::GiveUp(error) => (DeliveryStatus::Dead, Some(error), None),
            Verdict::Retry { error, .. } if last_allowed => (
                DeliveryStatus::Dead,
                Some(format!(
                    "{error}; gave up after {in_round} attempt(s) of this round (delivery.max-attempts, delivery.retry-schedule-ms)"
                )),
                None,
            ),
            Verdict::Retry { error, retry_after_ms } => {
                let wait = self.retry.wait_ms(in_round, jitter()).max(retry_after_ms.unwrap_or(0));
                (DeliveryStatus::Pending, Some(error), Some(now_ms() + wait))
            }
        };
        AttemptRecord {
            delivery_seq: delivery.seq,
            number,
            started_at,
            duration_ms,
            status_code,
            error,
            outcome,
            next_attempt_at,
        }
    }

    /// One POST; `Ok` when the receiver answered (with the verdict on its answer).
    async fn send(
        &self,
        target: &Target,
        delivery: &PendingDelivery,
        span: &tracing::Span,
    ) -> Result<(u16, Verdict), Verdict> {
        let (uri, key) = target.ready().map_err(|e| Verdict::GiveUp(e.to_string()))?;
        let body = delivery.entry.envelope(&self.bot_id);
        let timestamp = now_ms() / 1000;
        let signature = signing::sign(key, &delivery.entry.id, timestamp, body.as_bytes());
        let mut request = http::Request::post(uri.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, self.user_agent.clone())
            .header("webhook-id", &delivery.entry.id)
            .header("webhook-timestamp", timestamp)
            .header("webhook-signature", signature)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Verdict::GiveUp(format!("the request cannot be built: {e}")))?;
        traces::inject(span, request.headers_mut());
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| network_verdict(&error))?;
        let status = response.status();
        let retry_after_ms = retry_after_ms(response.headers().get(RETRY_AFTER));
        // Read the answer to its end, so that the connection goes back to the pool.
        let text = match Limited::new(response.into_body(), ANSWER_BYTES).collect().await {
            Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
            Err(_) => String::new(),
        };
        if status.is_success() {
            return Ok((status.as_u16(), Verdict::Delivered));
        }
        let excerpt: String = text.chars().take(ERROR_BODY_CHARS).collect();
        let said = if excerpt.trim().is_empty() {
            String::new()
        } else {
            format!(": {}", excerpt.trim())
        };
        let error = format!("the receiver answered {status}{said}");
        let retryable = status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT;
        let verdict = if retryable {
            Verdict::Retry { error, retry_after_ms }
        } else {
            Verdict::GiveUp(format!(
                "{error}; not retried (only network errors, timeouts, 408, 429 and 5xx are): fix the receiver, then send the delivery again through the API"
            ))
        };
        Ok((status.as_u16(), verdict))
    }
}

/// What a failed request means: a refused target is given up on, anything else retried.
fn network_verdict(error: &hyper_util::client::legacy::Error) -> Verdict {
    if let Some(refused) = refusal(error) {
        return Verdict::GiveUp(refused.to_string());
    }
    let head = if error.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    Verdict::Retry {
        error: with_causes(head, error),
        retry_after_ms: None,
    }
}

/// A subscription as its attempts use it: its url parsed and checked against the target
/// policy, and its signing key decoded, once per change of settings rather than once per
/// attempt.
pub struct Target {
    pub subscription: Arc<SubscriptionRecord>,
    ready: Result<(http::Uri, Vec<u8>), String>,
}

impl Target {
    pub fn new(subscription: Arc<SubscriptionRecord>, policy: TargetPolicy) -> Target {
        let ready = Self::prepare(&subscription, policy);
        Target { subscription, ready }
    }

    fn prepare(subscription: &SubscriptionRecord, policy: TargetPolicy) -> Result<(http::Uri, Vec<u8>), String> {
        let invalid =
            |e: &dyn std::fmt::Display| format!("the subscription's url {:?} is not valid: {e}", subscription.url);
        let url = url::Url::parse(&subscription.url).map_err(|e| invalid(&e))?;
        policy.check_url(&url).map_err(|e| e.to_string())?;
        let uri = http::Uri::try_from(url.as_str()).map_err(|e| invalid(&e))?;
        let key = signing::secret_key(&subscription.secret)
            .map_err(|e| format!("the subscription's secret is not usable: {e}"))?;
        Ok((uri, key))
    }

    /// Where to send and the key to sign with, or why the subscription cannot be sent to.
    fn ready(&self) -> Result<(&http::Uri, &[u8]), &str> {
        match &self.ready {
            Ok((uri, key)) => Ok((uri, key)),
            Err(error) => Err(error),
        }
    }
}

/// What an answer (or its absence) means for the delivery.
enum Verdict {
    Delivered,
    Retry { error: String, retry_after_ms: Option<i64> },
    GiveUp(String),
}

/// A number in [0, 1) from the OS random source, for [`RetryPolicy::wait_ms`].
fn jitter() -> f64 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    u16::from_le_bytes(bytes) as f64 / 65536.0
}

/// `Retry-After` as milliseconds: seconds, or an HTTP date.
fn retry_after_ms(value: Option<&HeaderValue>) -> Option<i64> {
    let text = value?.to_str().ok()?.trim();
    let ms = match text.parse::<i64>() {
        Ok(seconds) => seconds.saturating_mul(1000),
        Err(_) => chrono::DateTime::parse_from_rfc2822(text).ok()?.timestamp_millis() - now_ms(),
    };
    Some(ms.clamp(0, RETRY_AFTER_CAP_MS))
}

/// Writes attempt results in batches; returns when every sender is gone and all is written.
pub async fn record(store: SharedStore, mut results: mpsc::Receiver<AttemptRecord>) {
    let mut batch = Vec::with_capacity(RECORD_BATCH);
    while results.recv_many(&mut batch, RECORD_BATCH).await > 0 {
        // Results of attempts that end close together share one transaction.
        tokio::time::sleep(super::GATHER).await;
        while batch.len() < RECORD_BATCH {
            match results.try_recv() {
                Ok(result) => batch.push(result),
                Err(_) => break,
            }
        }
        let attempts = std::mem::take(&mut batch);
        let count = attempts.len();
        // A store failure must not lose results: keep trying (the store logs why).
        let mut wait = Duration::from_millis(100);
        loop {
            let attempts = attempts.clone();
            match store.record_attempts(&attempts, now_ms()).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), count, "cannot record delivery attempts; trying again");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// What a worker is told through its inbox, in the order it happened.
#[derive(Debug)]
pub enum WorkerMessage {
    /// An attempt ended; `retry` is the delivery again when another attempt is due. Sent
    /// before the attempt goes to the recorder, so the worker has let go of a finished
    /// delivery before the store can show it finished (and let it be requeued).
    Attempted { seq: i64, retry: Option<PendingDelivery> },
    /// Deliveries made pending again in the store (a resend, a recovery), whose earlier
    /// round the store recorded as over: the worker reads them again.
    Requeued(Vec<i64>),
}

/// New deliveries the fan-out hands to a worker once they are committed, so that the
/// worker sends them without reading back what the fan-out just wrote (with four
/// subscriptions, four reads of every event). Only a shortcut past the store, which stays
/// the record: a worker behind the store (a backlog, disabled, a full handoff) drops what
/// was handed over and reads those deliveries from the store with the rest.
#[derive(Default)]
pub struct Handoff {
    /// In seq order: the fan-out, the one creator of deliveries, hands them over in the
    /// order it committed them.
    deliveries: Vec<PendingDelivery>,
    /// Some were dropped for lack of room.
    overflowed: bool,
}

impl Handoff {
    /// Hands over deliveries just committed, or drops them (and says so) when the worker
    /// has not taken enough of those before.
    pub fn hand(&mut self, deliveries: Vec<PendingDelivery>) {
        if self.overflowed || self.deliveries.len() + deliveries.len() > HANDOFF_LIMIT {
            self.overflowed = true;
            self.deliveries = Vec::new();
        } else {
            self.deliveries.extend(deliveries);
        }
    }

    /// What was handed over since the last look, and whether some was dropped.
    fn take(&mut self) -> (Vec<PendingDelivery>, bool) {
        (
            std::mem::take(&mut self.deliveries),
            std::mem::replace(&mut self.overflowed, false),
        )
    }
}

/// What the engine holds of a running worker.
pub struct WorkerHandle {
    pub settings: watch::Sender<Arc<SubscriptionRecord>>,
    /// New deliveries were created for this subscription (and handed over here).
    pub wake: Arc<Notify>,
    pub handoff: Arc<Mutex<Handoff>>,
    pub inbox: mpsc::UnboundedSender<WorkerMessage>,
    pub slots: Arc<Semaphore>,
    pub task: tokio::task::JoinHandle<()>,
}

/// Starts the worker of one subscription on `runtime`.
pub fn spawn_worker(
    runtime: &tokio::runtime::Handle,
    store: SharedStore,
    sender: Arc<WebhookSender>,
    subscription: SubscriptionRecord,
    results: mpsc::Sender<AttemptRecord>,
    stopping: watch::Receiver<bool>,
) -> WorkerHandle {
    let (settings, settings_rx) = watch::channel(Arc::new(subscription));
    let wake = Arc::new(Notify::new());
    let handoff = Arc::new(Mutex::new(Handoff::default()));
    let (inbox, inbox_rx) = mpsc::unbounded_channel();
    let slots = Arc::new(Semaphore::new(sender.config.max_in_flight));
    let worker = Worker {
        store,
        sender,
        settings: settings_rx,
        wake: wake.clone(),
        handoff: handoff.clone(),
        inbox: inbox_rx,
        inbox_tx: inbox.clone(),
        slots: slots.clone(),
        results,
        stopping,
    };
    let task = runtime.spawn(worker.run());
    WorkerHandle {
        settings,
        wake,
        handoff,
        inbox,
        slots,
        task,
    }
}

struct Worker {
    store: SharedStore,
    sender: Arc<WebhookSender>,
    settings: watch::Receiver<Arc<SubscriptionRecord>>,
    wake: Arc<Notify>,
    handoff: Arc<Mutex<Handoff>>,
    inbox: mpsc::UnboundedReceiver<WorkerMessage>,
    /// The inbox's sender, for the attempts this worker starts.
    inbox_tx: mpsc::UnboundedSender<WorkerMessage>,
    slots: Arc<Semaphore>,
    results: mpsc::Sender<AttemptRecord>,
    stopping: watch::Receiver<bool>,
}

/// The deliveries a worker holds, each once: ready to send, waiting for a retry's time,
/// due and about to be read again, or in flight. A delivery is held from when it is read
/// from the store until an attempt delivers it or dead-letters it, so it is never sent
/// twice at once, and a resend cannot start a second round beside a running one.
///
/// A delivery waiting for its time is held without its event: retries can wait for hours
/// (the default schedule spans a day), and during an outage every delivery waits, so each
/// holds a few dozen bytes rather than its envelope, which is read again when it is due.
#[derive(Default)]
struct Held {
    ready: VecDeque<PendingDelivery>,
    later: BinaryHeap<Reverse<(i64, i64)>>,
    waiting: HashMap<i64, Waiting>,
    /// Due, to be read from the store again.
    due: BTreeMap<i64, Waiting>,
    /// Every seq held, in flight included.
    seqs: HashSet<i64>,
}

/// What the worker keeps of a delivery waiting for its next attempt: its count of
/// attempts is the worker's, which the store may not have recorded yet.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    attempts: i64,
    round_start: i64,
    next_attempt_at: i64,
}

impl Held {
    /// Takes a delivery read from the store, unless it is held already.
    fn take(&mut self, delivery: PendingDelivery, now: i64) {
        if self.seqs.insert(delivery.seq) {
            self.schedule(delivery, now);
        }
    }

    fn schedule(&mut self, delivery: PendingDelivery, now: i64) {
        if delivery.next_attempt_at > now {
            self.later.push(Reverse((delivery.next_attempt_at, delivery.seq)));
            let waiting = Waiting {
                attempts: delivery.attempts,
                round_start: delivery.round_start,
                next_attempt_at: delivery.next_attempt_at,
            };
            self.waiting.insert(delivery.seq, waiting);
        } else {
            self.ready.push_back(delivery);
        }
    }

    /// An attempt ended: wait for the retry, or let the delivery go.
    fn attempted(&mut self, seq: i64, retry: Option<PendingDelivery>, now: i64) {
        match retry {
            Some(delivery) => self.schedule(delivery, now),
            None => {
                self.seqs.remove(&seq);
            }
        }
    }

    /// Moves the deliveries whose time has come to `due`.
    fn come_due(&mut self, now: i64) {
        while let Some(Reverse((at, seq))) = self.later.peek().copied() {
            if at > now {
                break;
            }
            self.later.pop();
            if let Some(waiting) = self.waiting.remove(&seq) {
                self.due.insert(seq, waiting);
            }
        }
    }
}

impl Worker {
    async fn run(mut self) {
        // New deliveries are taken once, in seq order, past `after`: from the handoff
        // while the worker is level with the store, from the store otherwise; due and
        // requeued ones are read again by their seqs.
        let mut after = 0i64;
        let mut store_drained = false;
        let mut held = Held::default();
        let mut requeued: BTreeSet<i64> = BTreeSet::new();
        let mut target = Arc::new(Target::new(self.settings.borrow().clone(), self.sender.policy));
        loop {
            if *self.stopping.borrow() {
                return;
            }
            while let Ok(message) = self.inbox.try_recv() {
                Self::receive(message, &mut held, &mut requeued);
            }
            let enabled = self.settings.borrow().enabled;
            let (handed, overflowed) = self.handoff.lock().unwrap_or_else(|p| p.into_inner()).take();
            if overflowed {
                store_drained = false;
            } else if !handed.is_empty() {
                if enabled && store_drained && held.ready.len() < FETCH_BATCH {
                    // Level with the store: these are the deliveries created since it was
                    // read (a read that saw some of them already moved `after` past them).
                    let now = now_ms();
                    for delivery in handed {
                        if delivery.seq > after {
                            after = delivery.seq;
                            held.take(delivery, now);
                        }
                    }
                } else {
                    // Behind the store: they are in it, past `after`, read with the rest.
                    store_drained = false;
                }
            }
            if enabled && held.ready.len() < FETCH_BATCH / 2 && !store_drained {
                let id = self.settings.borrow().id.clone();
                match self.store.pending_deliveries(&id, after, FETCH_BATCH).await {
                    Ok(fetched) => {
                        store_drained = fetched.len() < FETCH_BATCH;
                        let now = now_ms();
                        for delivery in fetched {
                            after = after.max(delivery.seq);
                            held.take(delivery, now);
                        }
                    }
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "cannot read pending deliveries");
                        store_drained = true;
                    }
                }
            }
            if !requeued.is_empty() {
                self.read_requeued(&mut requeued, &mut held).await;
            }
            let now = now_ms();
            held.come_due(now);
            if enabled && held.ready.len() < FETCH_BATCH / 2 && !held.due.is_empty() {
                self.read_due(&mut held).await;
            }
            if enabled && let Some(delivery) = held.ready.pop_front() {
                let slot = tokio::select! {
                    slot = self.slots.clone().acquire_owned() => slot,
                    _ = self.stopping.changed() => return,
                };
                let Ok(slot) = slot else { return };
                let subscription = self.settings.borrow().clone();
                if !Arc::ptr_eq(&subscription, &target.subscription) {
                    target = Arc::new(Target::new(subscription, self.sender.policy));
                }
                let target = target.clone();
                let sender = self.sender.clone();
                let results = self.results.clone();
                let inbox = self.inbox_tx.clone();
                tokio::spawn(async move {
                    let attempt = sender.attempt(&target, &delivery).await;
                    let delivered = attempt.outcome == DeliveryStatus::Delivered;
                    let since_recorded =
                        Duration::from_millis(u64::try_from(now_ms() - delivery.entry.time).unwrap_or(0));
                    metrics().delivery_attempt(&target.subscription.id, delivered, since_recorded);
                    let retry = (attempt.outcome == DeliveryStatus::Pending).then(|| PendingDelivery {
                        attempts: attempt.number,
                        next_attempt_at: attempt.next_attempt_at.unwrap_or_default(),
                        ..delivery
                    });
                    let seq = attempt.delivery_seq;
                    let _ = inbox.send(WorkerMessage::Attempted { seq, retry });
                    let _ = results.send(attempt).await;
                    drop(slot);
                });
                continue;
            }
            // Nothing to send now: wait for new deliveries, a retry's time, a message,
            // a change of settings, or the stop.
            let next_due = held.later.peek().map(|Reverse((due, _))| *due);
            let sleep = match next_due {
                Some(due) if enabled => Duration::from_millis((due - now).max(0) as u64),
                _ => Duration::from_secs(3600),
            };
            tokio::select! {
                // New deliveries: in the handoff, or (when it overflowed) in the store.
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(sleep) => {}
                message = self.inbox.recv() => {
                    if let Some(message) = message {
                        Self::receive(message, &mut held, &mut requeued);
                    }
                }
                changed = self.settings.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    store_drained = false;
                }
                _ = self.stopping.changed() => return,
            }
        }
    }

    fn receive(message: WorkerMessage, held: &mut Held, requeued: &mut BTreeSet<i64>) {
        match message {
            WorkerMessage::Attempted { seq, retry } => held.attempted(seq, retry, now_ms()),
            WorkerMessage::Requeued(seqs) => requeued.extend(seqs),
        }
    }

    /// Reads the requeued deliveries from the store and takes those still pending (the
    /// others were finished or deleted meanwhile).
    async fn read_requeued(&self, requeued: &mut BTreeSet<i64>, held: &mut Held) {
        let id = self.settings.borrow().id.clone();
        while !requeued.is_empty() {
            let seqs: Vec<i64> = requeued.iter().take(FETCH_BATCH).copied().collect();
            match self.store.pending_deliveries_by_seq(&id, &seqs).await {
                Ok(pending) => {
                    let now = now_ms();
                    for delivery in pending {
                        held.take(delivery, now);
                    }
                    for seq in &seqs {
                        requeued.remove(seq);
                    }
                }
                Err(error) => {
                    // They stay pending in the store: the next start reads them.
                    tracing::error!(error = %format!("{error:#}"), "cannot read requeued deliveries");
                    requeued.clear();
                }
            }
        }
    }

    /// Reads due deliveries' events from the store again (a batch) and makes them ready,
    /// with the attempts this worker counted. One that is no longer pending (skipped, or
    /// its subscription deleted) is let go.
    async fn read_due(&self, held: &mut Held) {
        let id = self.settings.borrow().id.clone();
        let seqs: Vec<i64> = held.due.keys().take(FETCH_BATCH).copied().collect();
        match self.store.pending_deliveries_by_seq(&id, &seqs).await {
            Ok(pending) => {
                for delivery in pending {
                    if let Some(waiting) = held.due.remove(&delivery.seq) {
                        held.ready.push_back(PendingDelivery {
                            attempts: waiting.attempts,
                            round_start: waiting.round_start,
                            next_attempt_at: waiting.next_attempt_at,
                            ..delivery
                        });
                    }
                }
                for seq in &seqs {
                    if held.due.remove(seq).is_some() {
                        held.seqs.remove(seq);
                    }
                }
            }
            Err(error) => {
                // Try again in a second.
                tracing::error!(error = %format!("{error:#}"), "cannot read due deliveries");
                let again = now_ms() + 1000;
                for seq in seqs {
                    if let Some(mut waiting) = held.due.remove(&seq) {
                        waiting.next_attempt_at = again;
                        held.later.push(Reverse((again, seq)));
                        held.waiting.insert(seq, waiting);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_its_range() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }

    fn delivery() -> PendingDelivery {
        PendingDelivery {
            seq: 1,
            attempts: 0,
            round_start: 0,
            next_attempt_at: 0,
            entry: crate::store::RawOutboxEntry {
                seq: 1,
                id: "evt_1".into(),
                entry_type: "order:created".into(),
                time: 0,
                integration_id: None,
                data: "{}".into(),
                traceparent: None,
            },
        }
    }

    fn subscription(url: &str) -> Arc<SubscriptionRecord> {
        Arc::new(SubscriptionRecord {
            id: "s".into(),
            url: url.into(),
            types: Vec::new(),
            secret: signing::new_secret(),
            enabled: true,
            description: None,
            source: crate::store::SubscriptionSource::Api,
            created_at: 0,
            updated_at: 0,
            disabled_at: None,
        })
    }

    #[tokio::test]
    async fn network_failures_are_retried_and_refused_targets_given_up_with_the_reason() {
        let config = DeliveryConfig {
            allow_loopback: true,
            ..DeliveryConfig::default()
        };
        let sender = WebhookSender::new(&config, "bot".into()).unwrap();
        // A port nobody listens on: bind one, then free it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = Target::new(subscription(&format!("http://127.0.0.1:{port}/hook")), sender.policy());
        let attempt = sender.attempt(&target, &delivery()).await;
        assert_eq!(attempt.outcome, DeliveryStatus::Pending, "{attempt:?}");
        let error = attempt.error.unwrap();
        assert!(error.starts_with("cannot connect: "), "{error}");
        assert!(error.to_lowercase().contains("refused"), "{error}");

        let strict = WebhookSender::new(&DeliveryConfig::default(), "bot".into()).unwrap();
        let target = Target::new(subscription("http://localhost:9/hook"), strict.policy());
        let attempt = strict.attempt(&target, &delivery()).await;
        assert_eq!(attempt.outcome, DeliveryStatus::Dead, "{attempt:?}");
        assert!(attempt.error.unwrap().starts_with("refused to deliver to localhost"));
    }

    #[test]
    fn a_full_handoff_drops_what_comes_after_and_says_so() {
        let numbered = |from: i64, count: i64| {
            (from..from + count)
                .map(|seq| PendingDelivery { seq, ..delivery() })
                .collect::<Vec<_>>()
        };
        let mut handoff = Handoff::default();
        handoff.hand(numbered(1, 3));
        handoff.hand(numbered(4, 2));
        let (handed, overflowed) = handoff.take();
        assert_eq!(handed.iter().map(|d| d.seq).collect::<Vec<_>>(), [1, 2, 3, 4, 5]);
        assert!(!overflowed);

        handoff.hand(numbered(6, HANDOFF_LIMIT as i64 - 1));
        handoff.hand(numbered(6 + HANDOFF_LIMIT as i64, 2));
        // Once one is dropped, later ones are too: the worker reads them all from the store.
        handoff.hand(numbered(8 + HANDOFF_LIMIT as i64, 1));
        let (handed, overflowed) = handoff.take();
        assert!(handed.is_empty() && overflowed, "{} handed", handed.len());
        assert_eq!(handoff.take(), (Vec::new(), false), "taken once");
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let value = |text: &str| HeaderValue::from_str(text).unwrap();
        assert_eq!(retry_after_ms(Some(&value("3"))), Some(3000));
        assert_eq!(retry_after_ms(Some(&value("Wed, 21 Oct 2015 07:28:00 GMT"))), Some(0));
        assert_eq!(retry_after_ms(Some(&value("soon"))), None);
        assert_eq!(retry_after_ms(None), None);
    }
}
