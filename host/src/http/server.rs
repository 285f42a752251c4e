//! The HTTP server: accepts connections and serves the router on each, gives a client
//! [`HEAD_READ_TIMEOUT`] to send a request's head, writes answers in batches
//! ([`answers_in_batches`]), and stops gracefully.
//!
//! `axum::serve` does the same minus the time limit: without one, a client that sends a
//! request head a byte at a time, or opens connections and sends nothing, holds them
//! forever, and enough such clients take every file descriptor the host has.

use std::convert::Infallible;
use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use axum::Router;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tower::ServiceExt as _;

/// How long a client has to send a request's head (a new connection's first, or the next
/// one on a kept-alive connection) before the connection is closed.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `stop` completes, then stops accepting and waits
/// for the open connections to finish their requests (bound it from outside).
pub async fn run(listener: TcpListener, router: Router, stop: impl Future<Output = ()>) {
    let connections = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEAD_READ_TIMEOUT);
    let mut stop = std::pin::pin!(stop);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    pause_after(error).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Answers go out as soon as they are written, not held back by Nagle's algorithm
        // until the client acknowledges the previous one.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY on a connection");
        }
        let connection = http.serve_connection(TokioIo::new(stream), answers_in_batches(router.clone()));
        let connection = connections.watch(connection);
        tokio::spawn(async move {
            // A client that goes away or sends garbage ends only its own connection.
            let _ = connection.await;
        });
    }
    drop(listener);
    connections.shutdown().await;
}

/// The router as a connection's service, each answer held back until the requests that
/// were ready when it was handled have been handled too, so that their answers leave
/// together.
///
/// Writing an answer to a client that sleeps until it comes wakes the client, and waking
/// a sleeping CPU (an interrupt to it; in a VM, a trip through the hypervisor) can cost
/// more than handling a webhook. Going once to the back of the run queue when the answer
/// is ready puts its write after the tasks that are ready to run, so a client sending on
/// many connections is woken once per batch of answers instead of once per answer, while
/// requests that arrive later do not hold it back. Row (b) of `bench/run`, wrk woken per
/// second: about 16,000 for 16,000 to 19,000 answers before, about 1,700 for 24,000 to
/// 28,000 after. A lone request is answered at once (nothing else is ready).
pub fn answers_in_batches<B>(
    router: Router,
) -> impl hyper::service::Service<hyper::Request<B>, Response = Response, Error = Infallible, Future: Send> + Clone
where
    B: hyper::body::Body<Data = bytes::Bytes, Error: Into<axum::BoxError>> + Send + 'static,
{
    hyper::service::service_fn(move |request: hyper::Request<B>| {
        let answer = router.clone().oneshot(request);
        async move {
            let response = answer.await;
            after_the_ready_tasks().await;
            response
        }
    })
}

/// Lets every task that is ready to run go first: the task wakes itself and returns, which
/// puts it at the back of the run queue. Not `tokio::task::yield_now`: that one waits for
/// the I/O driver's next poll, so answers would also wait behind requests that arrived
/// after them (measured: a higher p99 and no more throughput).
async fn after_the_ready_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// A failed accept: a connection that died while queued is only that connection's
/// problem; anything else (out of file descriptors) gets a pause, so the loop does not
/// spin while it lasts.
async fn pause_after(error: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::body::Body;
    use axum::extract::Path;
    use axum::routing::get;
    use hyper::service::Service as _;

    use super::*;

    /// Three requests ready at once, on the router behind [`answers_in_batches`]: what
    /// happened, in order.
    async fn three_requests_at_once() -> Vec<String> {
        let log = Arc::new(Mutex::new(Vec::<String>::new()));
        let handled = log.clone();
        let router = Router::new().route(
            "/{n}",
            get(move |Path(n): Path<u32>| {
                let handled = handled.clone();
                async move {
                    handled.lock().unwrap().push(format!("handled {n}"));
                    "ok"
                }
            }),
        );
        let service = answers_in_batches::<Body>(router);
        let answered = log.clone();
        // Spawned from one task, so that all three are ready before any runs.
        tokio::spawn(async move {
            let requests: Vec<_> = (1..=3)
                .map(|n| {
                    let service = service.clone();
                    let answered = answered.clone();
                    tokio::spawn(async move {
                        let request = hyper::Request::get(format!("/{n}")).body(Body::empty()).unwrap();
                        let response = service.call(request).await.unwrap();
                        assert_eq!(response.status(), 200);
                        answered.lock().unwrap().push(format!("answered {n}"));
                    })
                })
                .collect();
            for request in requests {
                request.await.unwrap();
            }
        })
        .await
        .unwrap();
        log.lock().unwrap().clone()
    }

    fn every_request_is_handled_before_the_first_answer_leaves(log: &[String]) {
        assert_eq!(log.len(), 6, "{log:?}");
        assert!(log[..3].iter().all(|entry| entry.starts_with("handled")), "{log:?}");
        let mut answers = log[3..].to_vec();
        answers.sort();
        assert_eq!(answers, ["answered 1", "answered 2", "answered 3"], "{log:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn answers_leave_after_the_requests_already_waiting_are_handled() {
        let log = three_requests_at_once().await;
        every_request_is_handled_before_the_first_answer_leaves(&log);
        // One thread, first come first served: answers leave in the order handled.
        assert_eq!(
            log,
            [
                "handled 1",
                "handled 2",
                "handled 3",
                "answered 1",
                "answered 2",
                "answered 3"
            ]
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn answers_leave_in_batches_on_the_runtime_sluice_serves_on_too() {
        let log = three_requests_at_once().await;
        every_request_is_handled_before_the_first_answer_leaves(&log);
    }
}
