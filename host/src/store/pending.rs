//! An answer from the store that has not arrived yet: a write waiting for its commit, or
//! a read running off the async threads.
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

/// The outcome of a store call: of a write once its transaction is committed, of a read
/// once it ran.
#[must_use = "a store call runs whether or not it is awaited (a write is committed), but its answer is lost when it is dropped"]
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

    /// Blocks the thread until the answer is there (tests that are not async, work
    /// already on a blocking thread). Not for async code: await instead.
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
    let value = received.map_err(|_| anyhow!("the store stopped before answering"))??;
    Ok(*value
        .downcast::<T>()
        .expect("the writer answers each write with the value its work returned"))
}

fn answered_twice() -> anyhow::Error {
    anyhow!("this store write was already answered")
}

impl<T: Send + 'static> Pending<T> {
    /// Runs `work` as a task of the tokio runtime and answers with what it returns: how a
    /// backend whose calls are async by nature (a server database) answers. The task
    /// runs whether or not the answer is awaited, like every store call.
    pub(crate) fn from_future(work: impl Future<Output = anyhow::Result<T>> + Send + 'static) -> Pending<T> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Pending::failed(anyhow!("this store is called from inside a tokio runtime"));
        };
        let (reply, answer) = oneshot::channel();
        runtime.spawn(async move {
            let _ = reply.send(work.await.map(|value| Box::new(value) as Box<dyn Any + Send>));
        });
        Pending::waiting(answer)
    }

    /// Runs `work` on a thread that may block (tokio's blocking pool when there is a
    /// runtime, else right here) and answers with what it returns: how a backend whose
    /// calls block answers without holding an async worker thread.
    pub(crate) fn off_thread(work: impl FnOnce() -> anyhow::Result<T> + Send + 'static) -> Pending<T> {
        let (reply, answer) = oneshot::channel();
        let run = move || {
            let _ = reply.send(work().map(|value| Box::new(value) as Box<dyn Any + Send>));
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(run)),
            Err(_) => run(),
        }
        Pending::waiting(answer)
    }
}
