//! A fake chat platform with Slack's Web API shape, served on loopback for the tests of
//! integrations that call out (guest-examples/chat, tests/plugins/courier). It records
//! every request it gets, and can be told to answer slowly, to refuse, or to rate-limit
//! (429 with `Retry-After`, as Slack does).
//!
//! Methods (all `POST /api/<method>`, answered `{"ok": true, ...}`):
//! `chat.postMessage` (answers a fresh `ts`), `webhooks.create` (answers a fresh `id`),
//! `webhooks.update`; any other path is recorded and answered `{"ok": true}`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// One request the platform received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    /// Path and query, for example `/api/chat.postMessage`.
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body as JSON (`Value::String` when it is not JSON).
    pub body: Value,
    /// The client's end of the connection it came on.
    pub peer: SocketAddr,
}

#[derive(Default)]
struct Behaviour {
    /// How long to wait before answering.
    delay: Duration,
    /// Answer `{"ok": false, "error": ...}` with this error.
    refusal: Option<String>,
    /// Answer 429 `{"ok": false, "error": "ratelimited"}` with this `Retry-After`.
    rate_limit: Option<u32>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<Recorded>>,
    arrived: Condvar,
    behaviour: Mutex<Behaviour>,
    counter: AtomicU64,
}

/// The running fake platform; stopped on drop.
pub struct FakePlatform {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path_and_query().map(|p| p.to_string()).unwrap_or_default(),
        headers: headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into())),
        peer,
    };
    let (delay, refusal, rate_limit) = {
        let behaviour = shared.behaviour.lock().unwrap();
        (behaviour.delay, behaviour.refusal.clone(), behaviour.rate_limit)
    };
    let path = uri.path().to_string();
    shared.requests.lock().unwrap().push(recorded);
    shared.arrived.notify_all();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(seconds) = rate_limit {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(axum::http::header::RETRY_AFTER, seconds.to_string())],
            axum::Json(json!({ "ok": false, "error": "ratelimited" })),
        )
            .into_response();
    }
    if let Some(error) = refusal {
        return (StatusCode::OK, axum::Json(json!({ "ok": false, "error": error }))).into_response();
    }
    let n = shared.counter.fetch_add(1, Ordering::SeqCst) + 1;
    let body = match path.as_str() {
        "/api/chat.postMessage" => json!({ "ok": true, "ts": format!("1700000000.{n:06}") }),
        "/api/webhooks.create" => json!({ "ok": true, "id": format!("W{n:04}") }),
        _ => json!({ "ok": true }),
    };
    (StatusCode::OK, axum::Json(body)).into_response()
}

impl FakePlatform {
    /// Starts the platform on a free loopback port.
    pub fn start() -> FakePlatform {
        let shared = Arc::new(Shared::default());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = Router::new().fallback(answer).with_state(shared.clone());
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
        });
        FakePlatform {
            base,
            shared,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The Web API's base URL, the `apiUrl` of the chat integration.
    pub fn api_url(&self) -> String {
        format!("{}/api", self.base)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// The requests to Web API method `method` (for example `chat.postMessage`).
    pub fn calls(&self, method: &str) -> Vec<Recorded> {
        let path = format!("/api/{method}");
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }

    /// Waits until `count` requests to `method` arrived; returns them.
    pub fn wait_for_calls(&self, method: &str, count: usize, timeout: Duration) -> Vec<Recorded> {
        let deadline = Instant::now() + timeout;
        let path = format!("/api/{method}");
        let mut requests = self.shared.requests.lock().unwrap();
        loop {
            let matching: Vec<Recorded> = requests.iter().filter(|r| r.path == path).cloned().collect();
            let now = Instant::now();
            if matching.len() >= count || now >= deadline {
                return matching;
            }
            requests = self.shared.arrived.wait_timeout(requests, deadline - now).unwrap().0;
        }
    }

    /// Answers every later request only after `delay`.
    pub fn answer_after(&self, delay: Duration) {
        self.shared.behaviour.lock().unwrap().delay = delay;
    }

    /// Answers every later request 429 with `Retry-After: seconds` (`None`: normally).
    pub fn rate_limit(&self, seconds: Option<u32>) {
        self.shared.behaviour.lock().unwrap().rate_limit = seconds;
    }

    /// Answers every later request `{"ok": false, "error": error}` (`None`: normally).
    pub fn refuse_with(&self, error: Option<&str>) {
        self.shared.behaviour.lock().unwrap().refusal = error.map(String::from);
    }
}

impl Drop for FakePlatform {
    fn drop(&mut self) {
        // Stop accepting; a request still sleeping in `answer_after` finishes on its own
        // thread, which is not waited for.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        drop(self.thread.take());
    }
}

/// The `x-slack-signature` of a webhook call: `v0=` + hex(HMAC-SHA256(secret,
/// `v0:{timestamp}:{body}`)).
pub fn chat_signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    let digest = mac.finalize().into_bytes();
    format!("v0={}", digest.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Now, in Unix seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// The signing secret the chat integration is configured with in tests.
pub const CHAT_SIGNING_SECRET: &str = "chat-signing-secret";
/// The bot token the chat integration is configured with in tests.
pub const CHAT_BOT_TOKEN: &str = "xoxb-test-token";

/// A sidecar for the chat integration talking to `platform`, allowed to reach `allowed`.
pub fn chat_sidecar(platform: &FakePlatform, allowed: &[&str], timeout_ms: Option<u64>) -> String {
    let hosts: Vec<String> = allowed.iter().map(|h| format!("{h:?}")).collect();
    let mut sidecar = format!(
        "allowed-hosts = [{}]\n\n[configuration]\napiUrl = {:?}\nsigningSecret = {CHAT_SIGNING_SECRET:?}\nbotToken = {CHAT_BOT_TOKEN:?}\n",
        hosts.join(", "),
        platform.api_url()
    );
    if let Some(timeout_ms) = timeout_ms {
        sidecar.push_str(&format!("\n[limits]\ntimeout-ms = {timeout_ms}\n"));
    }
    sidecar
}

/// Sends `body` to a chat webhook URL, signed with `timestamp` and the test secret.
pub fn post_signed_chat(host: &super::Host, url: &str, body: &Value, timestamp: i64) -> super::Answer {
    post_signed_chat_text(host, url, &body.to_string(), timestamp)
}

/// [`post_signed_chat`] with the body as it is to be sent.
pub fn post_signed_chat_text(host: &super::Host, url: &str, body: &str, timestamp: i64) -> super::Answer {
    let body = body.to_string();
    host.send(
        host.client()
            .post(url)
            .header("content-type", "application/json")
            .header("x-slack-request-timestamp", timestamp.to_string())
            .header(
                "x-slack-signature",
                chat_signature(CHAT_SIGNING_SECRET, timestamp, &body),
            )
            .body(body),
    )
}
