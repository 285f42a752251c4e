//! The limit of the delivery fan-out benchmark (`bench/delivery_fanout.rs --native`): a
//! native hyper + tokio program doing the work sluice does per event, with nothing around
//! it (no sandbox, no store).
//!
//! Every request it receives (any method, any path) is read the way the webhook example
//! plugin reads it (the body parsed with serde_json, the query and headers collected)
//! into a `webhook:event`, answered `{"ok":true,"eventId":...}`, and queued in memory for
//! every target. Each target has one queue, taken in order of arrival with up to
//! `--in-flight` requests at once, like a sluice subscription's worker. Every delivery is
//! the envelope sluice sends (`{"id","type","time","integrationId","botId","data"}`)
//! POSTed with its Standard Webhooks headers (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`) over a
//! keep-alive hyper client; a failed attempt is tried again, up to `--max-attempts`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderMap};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Map, Value, json};
use sha2::Sha256;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc};

pub const USAGE: &str = "bench-native fan-out --listen ADDR --target URL [--target URL ...] \
     [--secret whsec_BASE64] [--in-flight N] [--attempt-timeout-ms N] [--max-attempts N]";

/// The event type the webhook example plugin records (its event `event`).
const EVENT_TYPE: &str = "webhook:event";
const INTEGRATION_ID: &str = "inst_bench_native";
const BOT_ID: &str = "bench-native";

#[derive(Debug)]
pub struct Options {
    pub listen: String,
    pub targets: Vec<Uri>,
    /// A `whsec_` secret; a new one when not given.
    pub secret: Option<String>,
    /// Requests in flight per target at most (sluice's `delivery.max-in-flight` default).
    pub in_flight: usize,
    pub attempt_timeout: Duration,
    pub max_attempts: u32,
}

impl Options {
    /// The options after `bench-native fan-out`.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut options = Options {
            listen: "127.0.0.1:0".into(),
            targets: Vec::new(),
            secret: None,
            in_flight: 32,
            attempt_timeout: Duration::from_secs(2),
            max_attempts: 3,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let mut value = || {
                args.next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("{flag} needs a value"))
            };
            let number = |text: &str| {
                text.parse::<u64>()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("{flag} takes a whole number above 0, not {text:?}"))
            };
            match flag.as_str() {
                "--listen" => options.listen = value()?.to_string(),
                "--target" => {
                    let text = value()?;
                    let uri: Uri = text
                        .parse()
                        .map_err(|e| format!("--target {text:?} is not a URL ({e})"))?;
                    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                        return Err(format!(
                            "--target {text:?}: give an http:// URL with a host (this client speaks plain HTTP/1.1)"
                        ));
                    }
                    options.targets.push(uri);
                }
                "--secret" => options.secret = Some(value()?.to_string()),
                "--in-flight" => options.in_flight = number(value()?)? as usize,
                "--attempt-timeout-ms" => options.attempt_timeout = Duration::from_millis(number(value()?)?),
                "--max-attempts" => options.max_attempts = number(value()?)? as u32,
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if options.targets.is_empty() {
            return Err("give at least one --target URL to deliver to".into());
        }
        Ok(options)
    }
}

/// One recorded event, shared by every target's queue.
struct Event {
    id: String,
    envelope: Bytes,
}

struct Ingest {
    queues: Vec<mpsc::UnboundedSender<Arc<Event>>>,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Serves until the process is stopped.
pub async fn run(options: Options) -> Result<(), String> {
    let secret = options.secret.clone().unwrap_or_else(new_secret);
    let key: Arc<[u8]> = secret_key(&secret)?.into();

    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(options.attempt_timeout));
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector);

    let given_up = Arc::new(AtomicU64::new(0));
    let mut queues = Vec::new();
    for target in &options.targets {
        let (queue, pending) = mpsc::unbounded_channel();
        queues.push(queue);
        let worker = Worker {
            client: client.clone(),
            target: target.clone(),
            key: key.clone(),
            attempt_timeout: options.attempt_timeout,
            max_attempts: options.max_attempts,
            given_up: given_up.clone(),
        };
        tokio::spawn(worker.run(pending, options.in_flight));
    }
    tokio::spawn(report_given_up(given_up));

    let ingest = Arc::new(Ingest { queues });
    let listener = TcpListener::bind(&options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let address: SocketAddr = listener.local_addr().map_err(|e| e.to_string())?;
    println!(
        "fan-out to {} target(s), {} in flight each, signed with {secret}",
        options.targets.len(),
        options.in_flight
    );
    println!("listening on http://{address}");
    loop {
        let (stream, _) = listener.accept().await.map_err(|e| format!("cannot accept: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let ingest = ingest.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| receive(ingest.clone(), request));
            // A client that goes away mid-request is not the server's problem.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Records one event and queues it for every target, then answers.
async fn receive(ingest: Arc<Ingest>, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = match body.collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Ok(reply(
                StatusCode::BAD_REQUEST,
                json!({ "error": "the body could not be read" }),
            ));
        }
    };
    // What the webhook example plugin makes of a request.
    let payload = json!({
        "body": serde_json::from_slice::<Value>(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned())),
        "query": query_object(parts.uri.query().unwrap_or("")),
        "headers": headers_object(&parts.headers),
        "method": parts.method.as_str(),
        "path": parts.uri.path(),
    });
    let time = now_ms();
    let event_id = format!("evt_{}", ulid::Ulid::new());
    // The event in the shape sluice stores and delivers it (host/src/http/shapes.rs).
    let data = json!({ "event": {
        "id": event_id,
        "createdAt": iso8601(time),
        "type": EVENT_TYPE,
        "payload": payload,
        "status": "processed",
        "failureReason": null,
        "integrationId": INTEGRATION_ID,
    }});
    let id = format!("ntf_{}", ulid::Ulid::new());
    let envelope = format!(
        r#"{{"id":"{id}","type":"{EVENT_TYPE}","time":{time},"integrationId":"{INTEGRATION_ID}","botId":"{BOT_ID}","data":{data}}}"#
    );
    let event = Arc::new(Event {
        id,
        envelope: Bytes::from(envelope),
    });
    for queue in &ingest.queues {
        // The workers live as long as the process.
        let _ = queue.send(event.clone());
    }
    Ok(reply(StatusCode::OK, json!({ "ok": true, "eventId": event_id })))
}

fn reply(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, "application/json".parse().expect("a valid header"));
    response
}

/// The query as an object; a repeated key holds an array (as the plugin does).
fn query_object(query: &str) -> Map<String, Value> {
    let mut object = Map::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = Value::String(value.into_owned());
        match object.get_mut(key.as_ref()) {
            None => {
                object.insert(key.into_owned(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(first) => *first = Value::Array(vec![first.take(), value]),
        }
    }
    object
}

/// The headers as an object; repeated headers joined with `, ` (as the plugin does).
fn headers_object(headers: &HeaderMap) -> Map<String, Value> {
    let mut object = Map::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        match object.get_mut(name.as_str()) {
            Some(Value::String(joined)) => {
                joined.push_str(", ");
                joined.push_str(&value);
            }
            _ => {
                object.insert(name.as_str().to_string(), Value::String(value.into_owned()));
            }
        }
    }
    object
}

/// One target's deliveries: its queue in order of arrival, up to `in_flight` at once.
struct Worker {
    client: HttpClient,
    target: Uri,
    key: Arc<[u8]>,
    attempt_timeout: Duration,
    max_attempts: u32,
    given_up: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self, mut pending: mpsc::UnboundedReceiver<Arc<Event>>, in_flight: usize) {
        let worker = Arc::new(self);
        let slots = Arc::new(Semaphore::new(in_flight));
        while let Some(event) = pending.recv().await {
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let worker = worker.clone();
            tokio::spawn(async move {
                worker.deliver(&event).await;
                drop(slot);
            });
        }
    }

    async fn deliver(&self, event: &Event) {
        let mut wait = Duration::from_millis(100);
        for attempt in 1..=self.max_attempts {
            match self.attempt(event).await {
                Ok(()) => return,
                Err(error) if attempt == self.max_attempts => {
                    self.given_up.fetch_add(1, Ordering::Relaxed);
                    eprintln!(
                        "gave up delivering {} to {} after {attempt} attempt(s): {error}",
                        event.id, self.target
                    );
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    }

    /// One signed POST; `Ok` when the receiver answered 2xx.
    async fn attempt(&self, event: &Event) -> Result<(), String> {
        let timestamp = now_ms() / 1000;
        let signature = sign(&self.key, &event.id, timestamp, &event.envelope);
        let request = Request::post(self.target.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", event.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(Full::new(event.envelope.clone()))
            .map_err(|e| e.to_string())?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| e.to_string())?;
            let status = response.status();
            // Read the answer to its end so that the connection goes back to the pool.
            response.into_body().collect().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("the receiver answered {status}"))
            }
        };
        tokio::time::timeout(self.attempt_timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {} ms", self.attempt_timeout.as_millis()))?
    }
}

/// Says, at most once a second, how many deliveries were given up so far.
async fn report_given_up(given_up: Arc<AtomicU64>) {
    let mut reported = 0;
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        ticks.tick().await;
        let now = given_up.load(Ordering::Relaxed);
        if now != reported {
            eprintln!("{now} deliveries given up so far");
            reported = now;
        }
    }
}

/// The `webhook-signature` value, as host/src/delivery/signing.rs makes it.
fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The key bytes of a `whsec_` secret.
fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret
        .strip_prefix("whsec_")
        .ok_or("--secret takes whsec_ followed by base64 (leave it out to have one generated)")?;
    let key = STANDARD
        .decode(encoded)
        .map_err(|e| format!("the --secret after whsec_ is not valid base64 ({e})"))?;
    if !(24..=64).contains(&key.len()) {
        return Err(format!(
            "the --secret holds {} bytes; Standard Webhooks asks for 24 to 64",
            key.len()
        ));
    }
    Ok(key)
}

fn new_secret() -> String {
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("the operating system's random source failed");
    format!("whsec_{}", STANDARD.encode(key))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn iso8601(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn signs_like_the_specs_example() {
        // The signing example of the Standard Webhooks reference library, as in the host.
        let key = secret_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        assert!(secret_key(&new_secret()).is_ok());
    }

    #[test]
    fn options_are_checked() {
        let options = Options::parse(&args(
            "--listen 127.0.0.1:9 --target http://127.0.0.1:1/s0 --target http://127.0.0.1:1/s1 --in-flight 8",
        ))
        .unwrap();
        assert_eq!(options.targets.len(), 2);
        assert_eq!(options.in_flight, 8);
        assert!(
            Options::parse(&args("--listen 127.0.0.1:0"))
                .unwrap_err()
                .contains("--target")
        );
        assert!(
            Options::parse(&args("--target https://x/"))
                .unwrap_err()
                .contains("http://")
        );
        assert!(
            Options::parse(&args("--target http://x/ --in-flight 0"))
                .unwrap_err()
                .contains("above 0")
        );
        assert!(
            Options::parse(&args("--target http://x/ --bogus"))
                .unwrap_err()
                .contains("--bogus")
        );
    }

    #[test]
    fn the_query_and_headers_are_read_as_the_plugin_reads_them() {
        let query = query_object("a=1&b=2&a=3");
        assert_eq!(Value::Object(query), json!({ "a": ["1", "3"], "b": "2" }));
        let mut headers = HeaderMap::new();
        headers.append("x-tag", "one".parse().unwrap());
        headers.append("x-tag", "two".parse().unwrap());
        assert_eq!(Value::Object(headers_object(&headers)), json!({ "x-tag": "one, two" }));
    }
}
