//! A write handed to the store's writer and not yet committed.
//!
//! Writes wait for a group commit (an fsync shared with other writes). Async code awaits
//! the [`Pending`] and holds no thread while it waits; blocking code calls
//! [`Pending::wait`].

use std::any::Any;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use anyhow::anyhow;
use tokio::sync::oneshot;

/// What the writer answers for one write: its value, type-erased, or why it failed.
pub(crate) type Answer = anyhow::Result<Box<dyn Any + Send>>;

/// The outcome of a store write, once its transaction is committed.
#[must_use = "a store write is committed whether or not it is awaited, but its error is lost when it is dropped"]
pub struct Pending<T> {
    state: State,
    value: PhantomData<fn() -> T>,
}

enum State {
    Waiting(oneshot::Receiver<Answer>),
    /// Failed before reaching the writer.
    Failed(Option<anyhow::Error>),
}

impl<T: Send + 'static> Pending<T> {
    pub(crate) fn waiting(answer: oneshot::Receiver<Answer>) -> Pending<T> {
        Pending {
            state: State::Waiting(answer),
            value: PhantomData,
        }
    }

    pub(crate) fn failed(error: anyhow::Error) -> Pending<T> {
        Pending {
            state: State::Failed(Some(error)),
            value: PhantomData,
        }
    }

    /// Blocks the thread until the write is committed. Not for async code: await instead.
    pub fn wait(self) -> anyhow::Result<T> {
        match self.state {
            State::Waiting(answer) => unpack(answer.blocking_recv()),
            State::Failed(error) => Err(error.unwrap_or_else(answered_twice)),
        }
    }
}

impl<T: Send + 'static> Future for Pending<T> {
    type Output = anyhow::Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Pending holds no self-references: every field is Unpin whatever T is.
        let this = self.get_mut();
        match &mut this.state {
            State::Waiting(answer) => Pin::new(answer).poll(cx).map(unpack),
            State::Failed(error) => Poll::Ready(Err(error.take().unwrap_or_else(answered_twice))),
        }
    }
}

fn unpack<T: 'static>(received: Result<Answer, oneshot::error::RecvError>) -> anyhow::Result<T> {
    let value = received.map_err(|_| anyhow!("the store's writer stopped before committing"))??;
    Ok(*value
        .downcast::<T>()
        .expect("the writer answers each write with the value its work returned"))
}

fn answered_twice() -> anyhow::Error {
    anyhow!("this store write was already answered")
}
