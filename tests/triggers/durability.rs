//! Reliability of trigger events across a crash: a stream of events from concurrent
//! senders, the host killed with SIGKILL while some events are queued and some are
//! running, a restart, and then, by id: every acknowledged event was processed, no event's
//! execution was recorded twice, a run repeats only for an event that was running at the
//! kill (at-least-once), and no event sent with an idempotency key was queued twice even
//! though its sender resent it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::harness::{Host, eventually, guest};
use serde_json::{Value, json};

const SENDERS: usize = 8;
/// Senders send until the host is back and they have sent a few more; this many at most.
const MOST_EVENTS_PER_SENDER: usize = 400;
const EVENTS_AFTER_RESTART: usize = 5;
const WORKERS: usize = 4;
/// The event each of the first senders makes wait at a gate (an installation state the
/// test sets after the restart): it is certainly running at the kill, on any machine.
const HELD_EVENT: usize = 10;
const SENDERS_WITH_A_HELD_EVENT: usize = 2;
const GATE: &str = "durability-gate";

fn held(n: usize) -> bool {
    n % MOST_EVENTS_PER_SENDER == HELD_EVENT && n / MOST_EVENTS_PER_SENDER < SENDERS_WITH_A_HELD_EVENT
}

fn event_body(n: usize) -> String {
    let mut body = json!({ "n": n, "sleepAfterMs": 30 });
    if held(n) {
        body["holdUntilState"] = json!(GATE);
    }
    body.to_string()
}

/// What a sender learnt: for each of its events, every event id an acknowledgement
/// named (a resend after a lost answer may name a second one).
#[derive(Default)]
struct Acknowledged {
    ids: BTreeMap<usize, BTreeSet<String>>,
    /// Events whose request failed at least once (no answer: the host was down).
    resent: BTreeSet<usize>,
}

fn keyed(n: usize) -> bool {
    n.is_multiple_of(2)
}

#[test]
fn acknowledged_events_survive_sigkill_and_run_at_least_once() {
    let mut host = Host::builder()
        .plugin("recorder", guest("trigger_probe"), None)
        .config(&format!(
            "[triggers]\nworkers = {WORKERS}\nretry-base-ms = 20\nretry-max-ms = 200\n"
        ))
        .start();
    let trigger = host.create_trigger(&json!({ "botId": "recorder" }));
    let id = trigger["id"].as_str().unwrap().to_string();
    let event_url = Arc::new(RwLock::new(host.trigger_event_url(&id)));
    let acknowledged = Arc::new(std::sync::Mutex::new(Acknowledged::default()));
    let sent = Arc::new(AtomicUsize::new(0));
    let host_down = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));

    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (event_url, acknowledged, sent, host_down, restarted) = (
                event_url.clone(),
                acknowledged.clone(),
                sent.clone(),
                host_down.clone(),
                restarted.clone(),
            );
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(30))
                    .build()
                    .unwrap();
                let mut sent_after_restart = 0;
                for i in 0..MOST_EVENTS_PER_SENDER {
                    if restarted.load(Ordering::SeqCst) {
                        if sent_after_restart == EVENTS_AFTER_RESTART {
                            return;
                        }
                        sent_after_restart += 1;
                    }
                    let n = sender * MOST_EVENTS_PER_SENDER + i;
                    loop {
                        let url = event_url.read().unwrap().clone();
                        let mut request = client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(event_body(n));
                        if keyed(n) {
                            request = request.header("idempotency-key", format!("event-{n}"));
                        }
                        match request.send() {
                            Ok(answer) if answer.status() == 200 => {
                                let event_id = answer.headers()["x-sluice-event-id"].to_str().unwrap().to_string();
                                acknowledged.lock().unwrap().ids.entry(n).or_default().insert(event_id);
                                sent.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Ok(answer) => panic!("event {n}: status {}", answer.status()),
                            Err(_) => {
                                // No answer (the host is down or died mid-request): send
                                // the same event again, with the same key if it has one.
                                acknowledged.lock().unwrap().resent.insert(n);
                                while host_down.load(Ordering::SeqCst) {
                                    std::thread::sleep(Duration::from_millis(10));
                                }
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_millis(60));
                }
                panic!("sender {sender}: {MOST_EVENTS_PER_SENDER} events sent and the host was not yet back");
            })
        })
        .collect();

    // Kill once some events are done while others still wait and a held one runs.
    let statuses = |host: &Host| -> Vec<(String, String)> {
        let mut events = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/integration/trigger/{id}/events?take=100");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let page = host.api_get(&path).json();
            for event in page["items"].as_array().unwrap() {
                events.push((
                    event["id"].as_str().unwrap().to_string(),
                    event["status"].as_str().unwrap().to_string(),
                ));
            }
            match page["cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return events,
            }
        }
    };
    let count = |events: &[(String, String)], status: &str| events.iter().filter(|(_, s)| s == status).count();
    let at_kill = eventually(
        "events done, queued and running at once",
        Duration::from_secs(60),
        || {
            let events = statuses(&host);
            let held_running = host.events(Some("tprobe:processed")).iter().any(|run| {
                held(run["payload"]["n"].as_u64().unwrap() as usize)
                    && events.contains(&(
                        run["payload"]["eventId"].as_str().unwrap().to_string(),
                        "running".into(),
                    ))
            });
            (count(&events, "done") >= 10 && count(&events, "queued") >= 10 && held_running).then_some(events)
        },
    );
    let running_at_kill: Vec<String> = at_kill
        .iter()
        .filter(|(_, s)| s == "running")
        .map(|(id, _)| id.clone())
        .collect();
    host_down.store(true, Ordering::SeqCst);
    host.kill();
    let sent_before_kill = sent.load(Ordering::SeqCst);
    host.start_again();
    *event_url.write().unwrap() = host.trigger_event_url(&id);
    let integration_id = host.installation("recorder")["id"].as_str().unwrap().to_string();
    let gate = host.api_post(
        &format!("/v1/chat/states/integration/{integration_id}/{GATE}"),
        &json!({ "payload": {} }),
    );
    assert_eq!(gate.status, 200, "{}", gate.body);
    restarted.store(true, Ordering::SeqCst);
    host_down.store(false, Ordering::SeqCst);

    for sender in senders {
        sender.join().unwrap();
    }
    // Resend every keyed event whose first try went unanswered, and some that were
    // answered, as senders retrying lost answers do: each must answer the same id.
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let mut resends: Vec<usize> = acknowledged.resent.iter().copied().filter(|n| keyed(*n)).collect();
    resends.extend(acknowledged.ids.keys().copied().filter(|n| keyed(*n)).step_by(7));
    for n in resends {
        let answer = host.send(
            host.client()
                .post(host.trigger_event_url(&id))
                .header("content-type", "application/json")
                .header("idempotency-key", format!("event-{n}"))
                .body(event_body(n)),
        );
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert_eq!(answer.header("idempotent-replayed"), Some("true"), "event {n}");
        let event_id = answer.header("x-sluice-event-id").unwrap();
        assert!(
            acknowledged.ids[&n].contains(event_id),
            "event {n}: a resend names the first id"
        );
    }

    // Wait until the queue is empty: everything done.
    eventually("every event to be done", Duration::from_secs(180), || {
        statuses(&host).iter().all(|(_, s)| s == "done").then_some(())
    });

    // What ran, by event id: the plugin's own records (one per run) and the host's
    // recorded executions (one per event).
    let mut runs: HashMap<String, usize> = HashMap::new();
    let mut event_ids_of: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for run in host.events(Some("tprobe:processed")) {
        let event_id = run["payload"]["eventId"].as_str().unwrap().to_string();
        let n = run["payload"]["n"].as_u64().unwrap() as usize;
        *runs.entry(event_id.clone()).or_insert(0) += 1;
        event_ids_of.entry(n).or_default().insert(event_id);
    }
    let mut executions: HashMap<String, Value> = HashMap::new();
    for finished in host.events(Some("trigger:execution:finished")) {
        let event_id = finished["payload"]["eventId"].as_str().unwrap().to_string();
        assert!(
            executions.insert(event_id.clone(), finished).is_none(),
            "event {event_id}: its execution was recorded twice"
        );
    }

    // Every event was acknowledged in the end, and every acknowledged event processed.
    let sent_events: BTreeSet<usize> = event_ids_of.keys().copied().collect();
    assert_eq!(
        acknowledged.ids.keys().copied().collect::<BTreeSet<_>>(),
        sent_events,
        "the events acknowledged are the events processed"
    );
    for (n, ids) in &acknowledged.ids {
        for event_id in ids {
            assert!(
                executions.contains_key(event_id),
                "event {n} ({event_id}) was acknowledged but never processed"
            );
            assert!(runs.get(event_id).copied().unwrap_or(0) >= 1);
        }
    }
    // A run repeats only for events that were running when the host died: their
    // recorded execution is a later attempt, and there are at most as many as workers.
    let repeated: Vec<&String> = runs.iter().filter(|(_, count)| **count > 1).map(|(id, _)| id).collect();
    for event_id in &repeated {
        let attempt = executions[*event_id]["payload"]["attempt"].as_u64().unwrap();
        assert!(
            attempt >= 2,
            "{event_id} ran twice but its execution is attempt {attempt}"
        );
    }
    assert!(
        repeated.len() <= WORKERS,
        "{} events re-ran; at most {WORKERS} were running",
        repeated.len()
    );
    assert!(runs.values().all(|count| *count <= 2));
    // And events caught running were run again after the restart.
    let rerun: Vec<&String> = running_at_kill
        .iter()
        .filter(|id| executions[*id]["payload"]["attempt"].as_u64().unwrap() >= 2)
        .collect();
    assert!(
        !rerun.is_empty(),
        "none of {running_at_kill:?} ran again after the kill"
    );
    // Keyed events were queued once, whatever their senders resent.
    for n in sent_events.iter().copied().filter(|n| keyed(*n)) {
        assert_eq!(
            event_ids_of[&n].len(),
            1,
            "keyed event {n} was queued as {:?}",
            event_ids_of[&n]
        );
    }
    // An unkeyed event is queued twice only when its sender resent it after a lost answer.
    for (n, ids) in &event_ids_of {
        if ids.len() > 1 {
            assert!(!keyed(*n) && acknowledged.resent.contains(n), "event {n}: {ids:?}");
        }
    }
    eprintln!(
        "at the kill: {} done, {} running, {} queued; {sent_before_kill} acknowledged before it; \
         {} runs repeated; {} events resent",
        count(&at_kill, "done"),
        running_at_kill.len(),
        count(&at_kill, "queued"),
        repeated.len(),
        acknowledged.resent.len()
    );
}
