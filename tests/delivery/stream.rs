//! `GET /v1/stream`: events as Server-Sent Events, filtered by type, resumed from
//! `Last-Event-ID` without gaps.

use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{API_TOKEN, Host, guest};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// One SSE event: its id and its data as JSON.
struct SseEvent {
    id: String,
    data: Value,
}

/// An open stream read on a thread; events arrive on a channel.
struct SseStream {
    events: mpsc::Receiver<SseEvent>,
}

impl SseStream {
    fn open(host: &Host, query: &str, last_event_id: Option<&str>) -> SseStream {
        let client = reqwest::blocking::Client::builder().timeout(None).build().unwrap();
        let mut request = client
            .get(host.url(&format!("/v1/stream{query}")))
            .bearer_auth(API_TOKEN);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().expect("the stream opens");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-type").unwrap().to_str().unwrap(),
            "text/event-stream"
        );
        let (sender, events) = mpsc::channel();
        std::thread::spawn(move || {
            let (mut id, mut data) = (String::new(), String::new());
            for line in BufReader::new(response).lines() {
                let Ok(line) = line else { return };
                if let Some(value) = line.strip_prefix("id:") {
                    id = value.trim().to_string();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                } else if line.is_empty() && !data.is_empty() {
                    let event = SseEvent {
                        id: std::mem::take(&mut id),
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
