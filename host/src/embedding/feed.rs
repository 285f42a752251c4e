//! The event feed in-process: the envelopes the delivery channels carry (signed webhooks,
//! the live stream, NATS), as a [`Stream`], so an embedding application reacts to
//! `chat:message:new` without a webhook to itself.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Stream;
use serde_json::Value;

use super::{Error, Host};
use crate::delivery::filter::TypeFilter;
use crate::delivery::stream::follow;
use crate::http::ApiError;

/// One notification, as every delivery channel carries it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Envelope {
    /// Its position in the host's outbox: give it to [`Host::feed`] as `after` to resume
    /// behind it (the live stream's `Last-Event-ID`).
    pub position: i64,
    /// The event type (`webhook:event`, `chat:message:new`, ...).
    pub event_type: String,
    /// The whole envelope: `{"id", "type", "time", "integrationId", "botId", "data"}`.
    pub json: Value,
}

/// The envelopes recorded after a position, live; from [`Host::feed`]. Ends when the host
/// shuts down (or the store cannot be read: feed again from the last position seen, and
/// nothing is missed).
pub struct EventFeed {
    inner: Pin<Box<dyn Stream<Item = Envelope> + Send>>,
}

impl Stream for EventFeed {
    type Item = Envelope;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Envelope>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl Host {
    /// The envelopes of the event types `types` matches (exact types, or prefixes ending
    /// in `*` such as `chat:*`; none means every type), recorded after outbox position
    /// `after`, or from now on without one; oldest first, then live.
    pub fn feed(&self, types: &[&str], after: Option<i64>) -> Result<EventFeed, Error> {
        let filter = TypeFilter::parse(types).map_err(ApiError::bad_request)?;
        let app = self.app();
        let after = after.unwrap_or_else(|| *app.store.outbox_published().borrow());
        let envelopes = follow(
            app.store.clone(),
            filter,
            after,
            app.delivery.bot_id.clone(),
            app.delivery.stopping(),
        );
        let envelopes = futures::StreamExt::filter_map(envelopes, |(position, text)| async move {
            match serde_json::from_str::<Value>(&text) {
                Ok(json) => Some(Envelope {
                    position,
                    event_type: json["type"].as_str().unwrap_or_default().to_string(),
                    json,
                }),
                Err(error) => {
                    tracing::error!(position, %error, "an outbox entry is not valid JSON; left out of the feed");
                    None
                }
            }
        });
        Ok(EventFeed {
            inner: Box::pin(envelopes),
        })
    }
}
