//! `GET /v1/stream`: events as Server-Sent Events, filtered by type, resumed from
//! `Last-Event-ID` without gaps (and reset when that id is beyond the head), opened with
//! the API token or, as a browser's `EventSource` would, with a stream ticket in the URL.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{API_TOKEN, Host, guest};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// One SSE event: its id, its name (`event:`, when it has one) and its data as JSON.
struct SseEvent {
    id: String,
    name: Option<String>,
    data: Value,
}

/// An open stream read on a thread; events arrive on a channel.
struct SseStream {
    events: mpsc::Receiver<SseEvent>,
}

impl SseStream {
    fn open(host: &Host, query: &str, last_event_id: Option<&str>) -> SseStream {
        let mut request = Self::client()
            .get(host.url(&format!("/v1/stream{query}")))
            .bearer_auth(API_TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        Self::from(request)
    }

    fn client() -> reqwest::blocking::Client {
        reqwest::blocking::Client::builder().timeout(None).build().unwrap()
    }

    fn from(request: reqwest::blocking::RequestBuilder) -> SseStream {
        let response = request.send().expect("the stream opens");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-type").unwrap().to_str().unwrap(),
            "text/event-stream"
        );
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut id, mut name, mut data) = (String::new(), None, String::new());
            for line in BufReader::new(response).lines() {
                let Ok(line) = line else { return };
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().to_string();
                } else if let Some(value) = line.strip_prefix("event:") {
                    name = Some(value.trim().to_string());
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let event = SseEvent {
                        id: std::mem::take(&mut id),
                        name: name.take(),
                        data: serde_json::from_str(&std::mem::take(&mut data)).unwrap(),
                    };
                    if sender.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        SseStream { events }
    }

    fn take(&self, count: usize) -> Vec<SseEvent> {
        (0..count)
            .map(|n| {
                self.events
                    .recv_timeout(WAIT)
                    .unwrap_or_else(|_| panic!("stream event {} of {count} did not come", n + 1))
            })
            .collect()
    }
}

fn probe_host() -> Host {
    Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"probe\"\n"))
        .start()
}

fn record_events(host: &Host, counts: std::ops::Range<i64>) {
    let url = host.webhook_url("probe");
    for count in counts {
        let answer = host.post(&format!("{url}/event/thing"), &json!({ "count": count }).to_string());
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
}

fn counts(events: &[SseEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e.data["data"]["event"]["payload"]["count"].as_i64().unwrap())
        .collect()
}

#[test]
fn the_stream_resumes_from_last_event_id_without_gaps() {
    let host = probe_host();
    let stream = SseStream::open(&host, "?types=probe:*", None);
    record_events(&host, 0..5);
    let first = stream.take(5);
    assert_eq!(counts(&first), [0, 1, 2, 3, 4]);
    assert_eq!(first[0].data["type"], "probe:thing");
    assert!(first[0].data["id"].as_str().unwrap().starts_with("ntf_"));
    drop(stream);

    // Recorded while nobody listened.
    record_events(&host, 5..10);
    let last_seen = first.last().unwrap().id.clone();
    let resumed = SseStream::open(&host, "?types=probe:*", Some(&last_seen));
    record_events(&host, 10..12);
    let rest = resumed.take(7);
    assert_eq!(
        counts(&rest),
        [5, 6, 7, 8, 9, 10, 11],
        "nothing missed, nothing repeated"
    );
    assert!(
        resumed.events.recv_timeout(Duration::from_millis(300)).is_err(),
        "no more than what was recorded"
    );

    // A resume from the start replays everything (and the filter still applies).
    let replay = SseStream::open(&host, "?types=probe:thing", Some("0"));
    assert_eq!(counts(&replay.take(12)), (0..12).collect::<Vec<_>>());
}

#[test]
fn the_stream_filters_by_type() {
    let host = probe_host();
    let other = SseStream::open(&host, "?types=chat:*", None);
    let all = SseStream::open(&host, "", None);
    record_events(&host, 0..2);
    assert_eq!(counts(&all.take(2)), [0, 1]);
    assert!(
        other.events.recv_timeout(Duration::from_millis(500)).is_err(),
        "a chat:* stream gets no probe events"
    );
}

#[test]
fn the_stream_checks_its_inputs() {
    let host = probe_host();
    let bad_id = host.send(
        host.client()
            .get(host.url("/v1/stream"))
            .bearer_auth(API_TOKEN)
            .header("last-event-id", "yesterday"),
    );
    assert_eq!(bad_id.status, 400, "{}", bad_id.body);
    assert!(bad_id.body.contains("Last-Event-ID"), "{}", bad_id.body);
    let bad_filter = host.api_get("/v1/stream?types=a*b");
    assert_eq!(bad_filter.status, 400, "{}", bad_filter.body);
    let anonymous = host.send(host.client().get(host.url("/v1/stream")));
    assert_eq!(anonymous.status, 401);
}

#[test]
fn a_last_event_id_beyond_the_head_gets_a_reset_and_the_stream_starts_over() {
    let host = probe_host();
    record_events(&host, 0..3);
    let head = host.api_get("/v1/delivery").json()["outbox"]["head"].as_i64().unwrap();
    // A client that outlived a wiped data folder comes back with an id from before.
    let stream = SseStream::open(&host, "?types=probe:*", Some("1000000"));
    let reset = stream.take(1).remove(0);
    assert_eq!(reset.name.as_deref(), Some("reset"));
    assert_eq!(reset.id, "0", "the browser resumes from the start if cut off now");
    assert_eq!(reset.data["reason"], "lastEventIdBeyondHead");
    assert_eq!(reset.data["lastEventId"], 1000000);
    assert_eq!(reset.data["head"], head);
    assert!(
        reset.data["message"].as_str().unwrap().contains("beyond"),
        "{}",
        reset.data
    );
    // Then everything kept, from the oldest entry on, and what comes next.
    let replayed = stream.take(3);
    assert!(replayed.iter().all(|e| e.name.is_none()));
    assert_eq!(counts(&replayed), [0, 1, 2]);
    record_events(&host, 3..4);
    assert_eq!(counts(&stream.take(1)), [3]);

    // At the head exactly, nothing is reset.
    let head = host.api_get("/v1/delivery").json()["outbox"]["head"].as_i64().unwrap();
    let at_head = SseStream::open(&host, "?types=probe:*", Some(&head.to_string()));
    record_events(&host, 4..5);
    let next = at_head.take(1);
    assert_eq!(next[0].name, None);
    assert_eq!(counts(&next), [4]);
}

#[test]
fn a_browser_opens_the_stream_with_a_short_lived_ticket_instead_of_the_token() {
    let host = probe_host();
    let mint = || {
        let answer = host.api_post("/v1/stream/tickets", &json!({}));
        assert_eq!(answer.status, 201, "{}", answer.body);
        answer.json()
    };
    let minted = mint();
    let ticket = minted["ticket"].as_str().unwrap().to_string();
    assert!(ticket.starts_with("stk_"), "{minted}");
    let expires = chrono::DateTime::parse_from_rfc3339(minted["expiresAt"].as_str().unwrap()).unwrap();
    let left = expires.signed_duration_since(chrono::Utc::now());
    assert!(
        left > chrono::TimeDelta::zero() && left <= chrono::TimeDelta::minutes(1),
        "{minted}"
    );
    let anonymous_mint = host.send(host.client().post(host.url("/v1/stream/tickets")));
    assert_eq!(anonymous_mint.status, 401, "minting takes the API token");

    // What an EventSource sends: no Authorization header, the ticket in the URL.
    let stream =
        SseStream::from(SseStream::client().get(host.url(&format!("/v1/stream?types=probe:*&ticket={ticket}"))));
    record_events(&host, 0..2);
    assert_eq!(counts(&stream.take(2)), [0, 1]);

    // Good once.
    let again = host.send(host.client().get(host.url(&format!("/v1/stream?ticket={ticket}"))));
    assert_eq!(again.status, 401, "{}", again.body);
    assert!(again.body.contains("used already"), "{}", again.body);
    assert!(again.body.contains("POST /v1/stream/tickets"), "{}", again.body);

    // For the stream alone: not another route, and not as a bearer token.
    let fresh = mint()["ticket"].as_str().unwrap().to_string();
    let elsewhere = host.send(
        host.client()
            .get(host.url(&format!("/v1/subscriptions?ticket={fresh}"))),
    );
    assert_eq!(elsewhere.status, 401, "{}", elsewhere.body);
    let as_bearer = host.send(host.client().get(host.url("/v1/subscriptions")).bearer_auth(&fresh));
    assert_eq!(as_bearer.status, 401, "{}", as_bearer.body);
    let stream_bearer = host.send(host.client().get(host.url("/v1/stream")).bearer_auth(&fresh));
    assert_eq!(stream_bearer.status, 401, "{}", stream_bearer.body);
    let forged = host.send(host.client().get(host.url("/v1/stream?ticket=stk_AAAA")));
    assert_eq!(forged.status, 401, "{}", forged.body);
    assert!(forged.body.contains("not one this host mints"), "{}", forged.body);
    // The unused ticket still opens a stream.
    let later = SseStream::from(SseStream::client().get(host.url(&format!("/v1/stream?types=probe:*&ticket={fresh}"))));
    record_events(&host, 2..3);
    assert_eq!(counts(&later.take(1)), [2]);
}
