//! The NATS JetStream sink: every outbox entry is published to `<prefix>.<type>` with the
//! entry id as `Nats-Msg-Id`, so JetStream drops a re-publish within its duplicate
//! window. The sink's cursor moves past an entry only once JetStream has acknowledged
//! it (and everything before it); while NATS is unreachable, entries wait in the outbox
//! and go out, in order, when it is back. The status API shows the client's own view of
//! its connection, so NATS going away shows at once, whether or not anything waits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::connection::State;
use async_nats::{Event, jetstream};
use tokio::sync::watch;

use crate::config::NatsConfig;
use crate::store::SharedStore;

/// The sink's cursor in `delivery_cursors`.
pub const CURSOR: &str = "nats";
/// Entries published before their acknowledgements are awaited.
const BATCH: usize = 512;
/// How long an acknowledgement may take before the batch is tried again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What the status API shows of the sink.
#[derive(Debug, Default)]
pub struct NatsStatus {
    /// The sink's client, once made: its connection state is the truth about NATS.
    pub client: Option<async_nats::Client>,
    pub last_error: Option<String>,
}

pub struct NatsSink {
    store: SharedStore,
    config: NatsConfig,
    bot_id: String,
    pub status: Arc<Mutex<NatsStatus>>,
}

/// The JetStream sink, as `GET /v1/delivery` shows it.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsSinkStatus {
    pub url: String,
    pub stream: String,
    pub subject_prefix: String,
    pub connected: bool,
    /// `connected`, `connecting` or `disconnected`.
    pub state: String,
    #[schema(required)]
    pub last_error: Option<String>,
    /// The last outbox position published.
    pub cursor: i64,
}

impl NatsSink {
    pub fn new(store: SharedStore, config: NatsConfig, bot_id: String) -> NatsSink {
        NatsSink {
            store,
            config,
            bot_id,
            status: Arc::default(),
        }
    }

    pub fn status(status: &Mutex<NatsStatus>, config: &NatsConfig, cursor: i64) -> NatsSinkStatus {
        let status = status.lock().unwrap_or_else(|p| p.into_inner());
        let state = match status.client.as_ref().map(async_nats::Client::connection_state) {
            Some(State::Connected) => "connected",
            Some(State::Pending) | None => "connecting",
            Some(State::Disconnected) => "disconnected",
        };
        NatsSinkStatus {
            url: config.url.clone(),
            stream: config.stream.clone(),
            subject_prefix: config.subject_prefix.clone(),
            connected: state == "connected",
            state: state.to_string(),
            last_error: status.last_error.clone(),
            cursor,
        }
    }

    fn note(&self, error: Option<String>) {
        self.status.lock().unwrap_or_else(|p| p.into_inner()).last_error = error;
    }

    /// Publishes the outbox until `stopping`; never gives up on NATS being away.
    pub async fn run(self, mut published: watch::Receiver<i64>, mut stopping: watch::Receiver<bool>) {
        let url = self.config.url.clone();
        let options = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .event_callback(move |event| {
                let url = url.clone();
                async move {
                    match event {
                        Event::Connected => tracing::info!(%url, "connected to NATS"),
                        Event::Disconnected => {
                            tracing::warn!(%url, "the connection to NATS is lost; reconnecting")
                        }
                        other => tracing::debug!(%url, event = %other, "NATS client event"),
                    }
                }
            });
        let client = match options.connect(self.config.url.as_str()).await {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(url = %self.config.url, error = %error, "the [nats] url cannot be used; events are not published to NATS");
                self.note(Some(format!("cannot use {}: {error}", self.config.url)));
                return;
            }
        };
        self.status.lock().unwrap_or_else(|p| p.into_inner()).client = Some(client.clone());
        let mut context = jetstream::new(client);
        context.set_timeout(ACK_TIMEOUT);
        let mut cursor = match self.store.cursor(CURSOR).await {
            Ok(cursor) => cursor.unwrap_or(0),
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), "cannot read the NATS cursor");
                return;
            }
        };
        let mut stream_ready = false;
        let mut wait = Duration::from_millis(100);
        let mut failing = false;
        loop {
            if *stopping.borrow() {
                return;
            }
            let outcome = async {
                if !stream_ready {
                    self.ensure_stream(&context).await?;
                    stream_ready = true;
                }
                self.publish_batch(&context, &mut cursor).await
            }
            .await;
            match outcome {
                Ok(0) => {
                    if failing {
                        tracing::info!("NATS is reachable again; publishing resumed");
                        failing = false;
                    }
                    wait = Duration::from_millis(100);
                    tokio::select! {
                        _ = published.changed() => {}
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                        _ = stopping.changed() => return,
                    }
                }
                Ok(_) => {
                    self.note(None);
                    failing = false;
                    wait = Duration::from_millis(100);
                }
                Err(error) => {
                    if !failing {
                        tracing::warn!(url = %self.config.url, error = %error, "cannot publish to NATS; events wait in the outbox and go out when it is back");
                        failing = true;
                    }
                    self.note(Some(error));
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = stopping.changed() => return,
                    }
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn ensure_stream(&self, context: &jetstream::Context) -> Result<(), String> {
        let config = jetstream::stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.>", self.config.subject_prefix)],
            storage: jetstream::stream::StorageType::File,
            duplicate_window: Duration::from_secs(self.config.duplicate_window_s),
            ..Default::default()
        };
        context
            .get_or_create_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| format!("cannot find or create the stream {}: {e}", self.config.stream))
    }

    /// Publishes the next entries after `cursor` and moves it past those acknowledged in
    /// order. Returns how many were acknowledged.
    async fn publish_batch(&self, context: &jetstream::Context, cursor: &mut i64) -> Result<usize, String> {
        let after = *cursor;
        let entries = self
            .store
            .raw_outbox_after(after, BATCH)
            .await
            .map_err(|e| format!("cannot read the outbox: {e:#}"))?;
        if entries.is_empty() {
            return Ok(0);
        }
        let mut pending = Vec::with_capacity(entries.len());
        let mut failure = None;
        for entry in &entries {
            let message = jetstream::message::PublishMessage::build()
                .message_id(&entry.id)
                .payload(entry.envelope(&self.bot_id).into());
            match context
                .send_publish(subject(&self.config.subject_prefix, &entry.entry_type), message)
                .await
            {
                Ok(ack) => pending.push((entry.seq, ack)),
                Err(error) => {
                    failure = Some(format!("cannot publish {}: {error}", entry.id));
                    break;
                }
            }
        }
        let mut acknowledged = 0;
        let mut through = *cursor;
        for (seq, ack) in pending {
            match ack.await {
                Ok(_) => {
                    through = seq;
                    acknowledged += 1;
                }
                Err(error) => {
                    failure.get_or_insert(format!("JetStream did not acknowledge: {error}"));
                    break;
                }
            }
        }
        if through > *cursor {
            self.store
                .set_cursor(CURSOR, through)
                .await
                .map_err(|e| format!("cannot keep the NATS cursor: {e:#}"))?;
            *cursor = through;
        }
        match failure {
            Some(error) => Err(error),
            None => Ok(acknowledged),
        }
    }
}

/// The NATS subject of an event type: `<prefix>.<type>` with the type's `:` as `.`, so
/// that `<prefix>.chat.>` selects every chat event. Characters a subject token cannot
/// hold become `_`.
pub fn subject(prefix: &str, event_type: &str) -> String {
    let tokens: Vec<String> = event_type
        .split(':')
        .map(|token| {
            let cleaned: String = token
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            if cleaned.is_empty() { "_".to_string() } else { cleaned }
        })
        .collect();
    format!("{prefix}.{}", tokens.join("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_follow_the_type() {
        assert_eq!(subject("sluice", "chat:message:new"), "sluice.chat.message.new");
        assert_eq!(subject("a.b", "shop:new order*"), "a.b.shop.new_order_");
        assert_eq!(subject("s", "x::y"), "s.x._.y");
    }
}
