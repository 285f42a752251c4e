//! A webhook receiver on loopback for the delivery tests: records every request it gets
//! (time, headers, body) and answers as told: 200, a failure for the first N requests,
//! a fixed status, slowly, or not at all (down: connections refused).
//!
//! ```no_run
//! let receiver = crate::harness::receiver::Receiver::start();
//! receiver.fail_next(2, 503);
//! // ... point a subscription at receiver.url("/hook") ...
//! let got = receiver.wait_for_count(3, std::time::Duration::from_secs(10));
//! ```

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    /// The status it was answered with.
    pub answered: u16,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Default)]
struct Behaviour {
    /// Answer this status to the next `failures` requests.
    failures: usize,
    failure_status: u16,
    retry_after: Option<String>,
    /// Answer every request with this status (after `failures` are used up).
    status: Option<u16>,
    /// Wait this long before answering.
    delay: Duration,
}

#[derive(Default)]
struct Shared {
    received: Mutex<Vec<Received>>,
    changed: Condvar,
    behaviour: Mutex<Behaviour>,
}

/// A running receiver. Dropping it stops it.
pub struct Receiver {
    runtime: tokio::runtime::Runtime,
    address: SocketAddr,
    shared: Arc<Shared>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Receiver {
    /// Starts on a free loopback port.
    pub fn start() -> Receiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the receiver");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port for the receiver");
        let address = listener.local_addr().unwrap();
        let receiver = Receiver {
            runtime,
            address,
            shared: Arc::new(Shared::default()),
            server: Mutex::new(None),
        };
        receiver.serve(listener);
        receiver
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let shared = self.shared.clone();
        let task = self.runtime.spawn(async move {
            // Connections live in this set, so that aborting the server drops them all
            // (a receiver that is down keeps no keep-alive connection open).
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = shared.clone();
                connections.spawn(async move {
                    let service = service_fn(move |request| answer(shared.clone(), request));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// Stops listening and drops every open connection: senders get connection refused.
    pub fn down(&self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
            let _ = self.runtime.block_on(task);
        }
    }

    /// Listens again on the same port.
    pub fn up(&self) {
        let address = self.address;
        let listener = self.runtime.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match tokio::net::TcpListener::bind(address).await {
                    Ok(listener) => return listener,
                    Err(e) if Instant::now() > deadline => panic!("cannot listen on {address} again: {e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        self.serve(listener);
    }

    /// Answers `status` to the next `count` requests.
    pub fn fail_next(&self, count: usize, status: u16) {
        let mut behaviour = self.shared.behaviour.lock().unwrap();
        behaviour.failures = count;
        behaviour.failure_status = status;
    }

    /// Sends `Retry-After: <value>` with failures.
    pub fn retry_after(&self, value: Option<&str>) {
        self.shared.behaviour.lock().unwrap().retry_after = value.map(String::from);
    }

    /// Answers every request with `status` (`None`: 200).
    pub fn always(&self, status: Option<u16>) {
        self.shared.behaviour.lock().unwrap().status = status;
    }

    /// Waits `delay` before answering.
    pub fn delay(&self, delay: Duration) {
        self.shared.behaviour.lock().unwrap().delay = delay;
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.received.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received, or panics after `timeout`
    /// showing what was received.
    pub fn wait_until(&self, timeout: Duration, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        let mut received = self.shared.received.lock().unwrap();
        loop {
            if done(&received) {
                return received.clone();
            }
            let now = Instant::now();
            if now >= deadline {
                let summary: Vec<String> = received
                    .iter()
                    .map(|r| format!("{} {} {}", r.answered, r.path, String::from_utf8_lossy(&r.body)))
                    .collect();
                panic!(
                    "the receiver did not get {what} within {timeout:?}; it got {} request(s):\n{}",
                    received.len(),
                    summary.join("\n")
                );
            }
            received = self.shared.changed.wait_timeout(received, deadline - now).unwrap().0;
        }
    }

    /// Waits for at least `count` requests.
    pub fn wait_for_count(&self, count: usize, timeout: Duration) -> Vec<Received> {
        self.wait_until(timeout, &format!("{count} request(s)"), |r| r.len() >= count)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let at = Instant::now();
    let path = request.uri().path().to_string();
    let headers = request.headers().clone();
    let body = request.into_body().collect().await?.to_bytes().to_vec();
    let (status, retry_after, delay) = {
        let mut behaviour = shared.behaviour.lock().unwrap();
        let status = if behaviour.failures > 0 {
            behaviour.failures -= 1;
            behaviour.failure_status
        } else {
            behaviour.status.unwrap_or(200)
        };
        (status, behaviour.retry_after.clone(), behaviour.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    {
        let mut received = shared.received.lock().unwrap();
        received.push(Received {
            at,
            path,
            headers,
            body,
            answered: status,
        });
        shared.changed.notify_all();
    }
    let mut response = Response::builder().status(status);
    if status >= 300
        && let Some(value) = retry_after
    {
        response = response.header("retry-after", value);
    }
    Ok(response
        .body(Full::new(Bytes::from(if status < 300 { "ok" } else { "not now" })))
        .unwrap())
}
