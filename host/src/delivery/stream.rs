//! Following the outbox live, for the Server-Sent Events stream: entries after a seq,
//! filtered by type, as envelopes; when caught up, wait for the next commit.

use std::collections::VecDeque;

use futures::Stream;
use tokio::sync::watch;

use super::filter::TypeFilter;
use crate::store::SharedStore;
use crate::telemetry::metrics;

/// Entries read from the store at once.
const BATCH: usize = 256;

/// The envelopes of entries after `after` that pass `filter`, with their seq, oldest
/// first, until the host stops. A store failure ends the stream too (the client
/// reconnects with `Last-Event-ID` and misses nothing).
pub fn follow(
    store: SharedStore,
    filter: TypeFilter,
    after: i64,
    bot_id: String,
    stopping: watch::Receiver<bool>,
) -> impl Stream<Item = (i64, String)> + Send + 'static {
    let published: watch::Receiver<i64> = store.outbox_published();
    let state = Follower {
        store,
        filter,
        after,
        bot_id,
        published,
        stopping,
        buffer: VecDeque::new(),
        _client: Connected::count(),
    };
    futures::stream::unfold(state, |mut state| async move {
        let item = state.next().await?;
        Some((item, state))
    })
}

struct Follower {
    store: SharedStore,
    filter: TypeFilter,
    after: i64,
    bot_id: String,
    published: watch::Receiver<i64>,
    stopping: watch::Receiver<bool>,
    buffer: VecDeque<(i64, String)>,
    _client: Connected,
}

/// A client of the stream, counted in the metrics while it follows.
struct Connected;

impl Connected {
    fn count() -> Connected {
        metrics().stream_clients().inc();
        Connected
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        metrics().stream_clients().dec();
    }
}

impl Follower {
    async fn next(&mut self) -> Option<(i64, String)> {
        loop {
            if *self.stopping.borrow() {
                return None;
            }
            if let Some(item) = self.buffer.pop_front() {
                return Some(item);
            }
            // Mark the current head as seen before reading, so a commit that lands
            // while reading still wakes the wait below.
            self.published.borrow_and_update();
            let after = self.after;
            let entries = match self.store.raw_outbox_after(after, BATCH).await {
                Ok(entries) => entries,
                Err(error) => {
                    tracing::error!(error = %format!("{error:#}"), "the event stream cannot read the outbox; closing it");
                    return None;
                }
            };
            if entries.is_empty() {
                tokio::select! {
                    changed = self.published.changed() => changed.ok()?,
                    _ = self.stopping.changed() => return None,
                }
                continue;
            }
            for entry in entries {
                self.after = entry.seq;
                if self.filter.matches(&entry.entry_type) {
                    self.buffer.push_back((entry.seq, entry.envelope(&self.bot_id)));
                }
            }
        }
    }
}
