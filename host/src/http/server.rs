//! The HTTP server: accepts connections and serves the router on each, gives every
//! request its id ([`RequestIds`]), gives a client [`HEAD_READ_TIMEOUT`] to send a
//! request's head, writes answers in batches ([`answers_in_batches`]), keeps the number of
//! open connections under a cap ([`connection_cap`]), and stops gracefully.
//!
//! `axum::serve` does the same minus the time limit and the cap: without them, a client
//! that sends a request head a byte at a time, or opens connections and sends nothing,
//! holds them, and enough such clients take every file descriptor the host has; the host
//! then cannot accept anyone until one of them goes. So when the cap is reached the
//! connection idle the longest (no request running, no answer being sent) is closed for
//! each new one: keep-alive clients reconnect, new clients are served, and running
//! requests and live streams are never cut.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower::ServiceExt as _;

use super::request_id::RequestIds;

/// How long a client has to send a request's head (a new connection's first, or the next
/// one on a kept-alive connection) before the connection is closed.
pub const HEAD_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How many connections may be open at once under an open-file limit of `limit`: an
/// eighth of it (at least 64 and at most 1,024 descriptors, never more than half) is
/// kept for everything else the host opens (its store, plugin files, the compiled-code
/// cache, outbound HTTP calls, webhook deliveries, NATS).
pub fn connection_cap(limit: u64) -> usize {
    let reserve = (limit / 8).clamp(64, 1024).min(limit / 2);
    usize::try_from(limit - reserve).unwrap_or(usize::MAX).max(1)
}

/// Serves the router `routers` holds on `listener`, at most `max_connections` connections
/// at once, until `stop` completes; then stops accepting and waits for the open
/// connections to finish their requests (bound it from outside). Each connection is
/// served by the router held when it was accepted (the start-up router until the plugins
/// are loaded, see [`super::health::while_loading`]).
pub async fn run(
    listener: TcpListener,
    routers: tokio::sync::watch::Receiver<Router>,
    max_connections: usize,
    stop: impl Future<Output = ()>,
) {
    let connections = Arc::new(Connections::new(max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(HEAD_READ_TIMEOUT);
    let mut stop = std::pin::pin!(stop);
    loop {
        // Over the cap with nothing idle to close (rare: every connection is running a
        // request): accept again once one ends or goes idle, looked at every 100 ms.
        if !connections.make_room(&mut stop).await {
            break;
        }
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    pause_after(error, &connections).await;
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
        let (slot, activity) = connections.open();
        if connections.over_cap() {
            connections.close_idlest();
        }
        let router = routers.borrow().clone();
        let connection = http.serve_connection(TokioIo::new(stream), answers_in_batches(router, activity.clone()));
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            // A client that goes away or sends garbage ends only its own connection.
            tokio::select! {
                _ = connection.as_mut() => {}
                () = activity.close.notified() => {
                    // A connection that never sent a request has nothing to finish, and
                    // hyper would wait for its first request; one that did closes once
                    // idle, at once if it is idle now.
                    if activity.served.load(Ordering::Acquire) {
                        connection.as_mut().graceful_shutdown();
                        let _ = connection.await;
                    }
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    connections.close_all();
    connections.all_ended().await;
}

/// The open connections.
struct Connections {
    max: usize,
    registry: Mutex<Registry>,
    /// Notified whenever a connection ends.
    ended: Notify,
    /// Connections' activity is timed from here.
    epoch: Instant,
}

#[derive(Default)]
struct Registry {
    open: HashMap<u64, Arc<Activity>>,
    next_id: u64,
    /// Open connections not told to close.
    staying: usize,
    /// The cap was reached and the log said so (and that every connection was busy);
    /// said again once it is reached anew.
    said_full: bool,
    said_all_busy: bool,
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            max,
            registry: Mutex::new(Registry::default()),
            ended: Notify::new(),
            epoch: Instant::now(),
        }
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts a new connection in until its [`Slot`] is dropped.
    fn open(self: &Arc<Self>) -> (Slot, Arc<Activity>) {
        let activity = Arc::new(Activity::new(self.epoch));
        let mut registry = self.registry();
        let id = registry.next_id;
        registry.next_id += 1;
        registry.open.insert(id, activity.clone());
        registry.staying += 1;
        if registry.staying > self.max && !registry.said_full {
            registry.said_full = true;
            tracing::warn!(
                max_connections = self.max,
                "connection limit reached: closing the connections idle the longest so that new clients are \
                 served (the limit follows the open-file limit: raise that with LimitNOFILE or ulimit -n)"
            );
        }
        (
            Slot {
                connections: self.clone(),
                id,
            },
            activity,
        )
    }

    fn over_cap(&self) -> bool {
        self.registry().staying > self.max
    }

    /// Waits until the open connections are within the cap, closing idle ones to get
    /// there; `false` when `stop` came first.
    async fn make_room(&self, stop: &mut Pin<&mut impl Future<Output = ()>>) -> bool {
        loop {
            let ended = self.ended.notified();
            if !self.over_cap() || self.close_idlest() {
                return true;
            }
            tokio::select! {
                _ = tokio::time::timeout(Duration::from_millis(100), ended) => {}
                () = stop.as_mut() => return false,
            }
        }
    }

    /// Tells the connection idle the longest to close; whether there was one.
    fn close_idlest(&self) -> bool {
        let mut registry = self.registry();
        let idlest = registry
            .open
            .values()
            .filter(|activity| !activity.closing.load(Ordering::Relaxed) && activity.is_idle())
            .min_by_key(|activity| activity.last_active.load(Ordering::Relaxed))
            .cloned();
        let Some(idlest) = idlest else {
            if !registry.said_all_busy {
                registry.said_all_busy = true;
                tracing::warn!(
                    max_connections = self.max,
                    "connection limit reached and no connection is idle: new connections wait until one ends"
                );
            }
            return false;
        };
        idlest.closing.store(true, Ordering::Relaxed);
        idlest.close.notify_one();
        registry.staying -= 1;
        true
    }

    fn close_all(&self) {
        let mut registry = self.registry();
        for activity in registry.open.values() {
            if !activity.closing.swap(true, Ordering::Relaxed) {
                activity.close.notify_one();
            }
        }
        registry.staying = 0;
    }

    fn ended(&self, id: u64) {
        let mut registry = self.registry();
        if let Some(activity) = registry.open.remove(&id)
            && !activity.closing.load(Ordering::Relaxed)
        {
            registry.staying -= 1;
        }
        // Said again only after falling well below the cap, not at every connection.
        if registry.staying < self.max - self.max / 10 {
            registry.said_full = false;
            registry.said_all_busy = false;
        }
        drop(registry);
        self.ended.notify_waiters();
    }

    async fn one_ended(&self) {
        self.ended.notified().await
    }

    async fn all_ended(&self) {
        loop {
            let ended = self.ended.notified();
            if self.registry().open.is_empty() {
                return;
            }
            ended.await;
        }
    }
}

/// A connection's place among the open ones, given up when dropped.
struct Slot {
    connections: Arc<Connections>,
    id: u64,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.ended(self.id);
    }
}

/// What a connection is doing, as its requests leave it.
pub struct Activity {
    /// Requests being handled or answered (the answer's body not yet sent).
    in_flight: AtomicUsize,
    /// The connection sent a request.
    served: AtomicBool,
    /// When it was last busy (opened, or an answer sent), in milliseconds since `since`.
    last_active: AtomicU64,
    since: Instant,
    /// Told to close.
    closing: AtomicBool,
    close: Notify,
}

impl Activity {
    /// A connection opened now; its times count from `since`, the same for every
    /// connection of a server so that they compare.
    pub fn new(since: Instant) -> Activity {
        let activity = Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            last_active: AtomicU64::new(0),
            since,
            closing: AtomicBool::new(false),
            close: Notify::new(),
        };
        activity.last_active.store(activity.now(), Ordering::Relaxed);
        activity
    }

    fn now(&self) -> u64 {
        u64::try_from(self.since.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.store(true, Ordering::Release);
    }

    fn finished(&self) {
        self.last_active.store(self.now(), Ordering::Relaxed);
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }
}

/// An answer's body: its connection counts as busy until the body is dropped, sent or
/// abandoned (a live stream keeps it busy while it lasts).
pub struct TrackedBody {
    inner: Body,
    activity: Arc<Activity>,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        self.activity.finished();
    }
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
///
/// Each request gets its id here ([`RequestIds`]), and counts on `activity` until its
/// answer's body is dropped ([`TrackedBody`]).
pub fn answers_in_batches<B>(
    router: Router,
    activity: Arc<Activity>,
) -> impl hyper::service::Service<hyper::Request<B>, Response = Response<TrackedBody>, Error = Infallible, Future: Send>
+ Clone
where
    B: hyper::body::Body<Data = bytes::Bytes, Error: Into<axum::BoxError>> + Send + 'static,
{
    let router = RequestIds::new(router);
    hyper::service::service_fn(move |request: hyper::Request<B>| {
        activity.started();
        let answer = router.clone().oneshot(request);
        let activity = activity.clone();
        async move {
            let response = answer.await;
            after_the_ready_tasks().await;
            response.map(|response| response.map(|inner| TrackedBody { inner, activity }))
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
/// problem. Out of file descriptors (something else took the room the cap keeps), the
/// connection idle the longest is closed to make room; anything else, or nothing to
/// close, gets a pause, so the loop does not spin while it lasts.
async fn pause_after(error: std::io::Error, connections: &Connections) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    let out_of_descriptors = matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() || code == rustix::io::Errno::NFILE.raw_os_error()
    );
    if out_of_descriptors && connections.close_idlest() {
        tracing::warn!(%error, "cannot accept a connection: closed the connection idle the longest to make room");
        let _ = tokio::time::timeout(Duration::from_secs(1), connections.one_ended()).await;
        return;
    }
    tracing::error!(%error, "cannot accept a connection; pausing for a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

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
        let service = answers_in_batches::<Body>(router, Arc::new(Activity::new(Instant::now())));
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

    #[test]
    fn the_cap_leaves_room_for_the_hosts_own_files() {
        assert_eq!(connection_cap(1024), 896);
        assert_eq!(connection_cap(256), 192);
        assert_eq!(connection_cap(100), 50);
        assert_eq!(connection_cap(1 << 20), (1 << 20) - 1024);
    }

    #[tokio::test]
    async fn over_the_cap_the_connection_idle_the_longest_is_told_to_close_never_a_busy_one() {
        let connections = Arc::new(Connections::new(2));
        let (_first_slot, first) = connections.open();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (_second_slot, second) = connections.open();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let (third_slot, third) = connections.open();
        assert!(connections.over_cap());
        // The oldest is running a request: the next oldest goes.
        first.started();
        assert!(connections.close_idlest());
        assert!(second.closing.load(Ordering::Relaxed) && !first.closing.load(Ordering::Relaxed));
        assert!(!connections.over_cap(), "the one closing no longer counts");
        // Its answer sent, the oldest is idle again, but active more recently than the
        // third, which goes next.
        tokio::time::sleep(Duration::from_millis(5)).await;
        first.finished();
        let (_fourth_slot, _fourth) = connections.open();
        assert!(connections.close_idlest());
        assert!(third.closing.load(Ordering::Relaxed) && !first.closing.load(Ordering::Relaxed));
        drop(third_slot);
        assert_eq!(
            connections.registry().open.len(),
            3,
            "a connection counts until it ends"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn answers_leave_in_batches_on_the_runtime_sluice_serves_on_too() {
        let log = three_requests_at_once().await;
        every_request_is_handled_before_the_first_answer_leaves(&log);
    }
}
