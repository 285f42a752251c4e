//! What other replicas did: a connection of its own `LISTEN`s for outbox numberings and
//! queued trigger work, and a poll every second covers what a lost connection missed.

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::Pool;
use futures::StreamExt as _;
use tokio::sync::{Notify, watch};
use tokio_postgres::{AsyncMessage, NoTls};

use super::outbox::{self, announce};
use super::queue;

/// The channel changes to subscriptions and triggers are announced on.
pub(super) const CHANGES: &str = "sluice_changes";

/// Follows notifications on a dedicated connection (made again when it is lost), and
/// polls the outbox head and wakes the claimers every [`outbox::POLL`] whatever happens.
pub(super) async fn follow(
    config: tokio_postgres::Config,
    pool: Pool,
    published: Arc<watch::Sender<i64>>,
    work: Arc<Notify>,
    changes: Arc<watch::Sender<u64>>,
) {
    let poll = {
        let (published, work) = (published.clone(), work.clone());
        async move {
            loop {
                tokio::time::sleep(outbox::POLL).await;
                if let Ok(client) = pool.get().await
                    && let Ok(row) = client.query_one("SELECT coalesce(max(seq), 0) FROM outbox", &[]).await
                {
                    announce(&published, row.get(0));
                }
                work.notify_one();
            }
        }
    };
    let listen = async move {
        loop {
            if let Err(error) = listen_once(&config, &published, &work, &changes).await {
                tracing::debug!(error = %format!("{error:#}"), "the store's notification connection was lost; reconnecting");
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    };
    tokio::join!(poll, listen);
}

async fn listen_once(
    config: &tokio_postgres::Config,
    published: &watch::Sender<i64>,
    work: &Notify,
    changes: &watch::Sender<u64>,
) -> anyhow::Result<()> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (sender, mut notifications) = futures::channel::mpsc::unbounded();
    let driver = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    if sender.unbounded_send(notification).is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    });
    client
        .batch_execute(&format!(
            "LISTEN {}; LISTEN {}; LISTEN {CHANGES}",
            outbox::CHANNEL,
            queue::CHANNEL
        ))
        .await?;
    // What changed while this connection was not listening is read again.
    changes.send_modify(|count| *count += 1);
    while let Some(notification) = notifications.next().await {
        match notification.channel() {
            outbox::CHANNEL => {
                if let Ok(seq) = notification.payload().parse::<i64>() {
                    announce(published, seq);
                }
            }
            queue::CHANNEL => work.notify_one(),
            CHANGES => changes.send_modify(|count| *count += 1),
            _ => {}
        }
    }
    drop(client);
    driver.await??;
    Ok(())
}
