//! What replicas share: webhooks recorded once and readable from any replica, trigger
//! events accepted by any replica run once each, a schedule runs once per due time for
//! the cluster, and a trigger made on one replica is served by the others at once.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use super::{path_of, processed, replicas};
use crate::harness::eventually;

#[test]
fn webhooks_sent_to_alternate_replicas_are_recorded_once_and_read_from_either() {
    let Some((_, hosts)) = replicas(2) else { return };
    let paths: Vec<String> = hosts.iter().map(|h| path_of(&h.webhook_url("webhook"))).collect();
    assert_eq!(paths[0], paths[1], "every replica gives the same webhook URL");
    let mut ids = Vec::new();
    for n in 0..20 {
        let host = &hosts[n % 2];
        let answer = host.post(&host.url(&paths[0]), &json!({ "n": n }).to_string());
        assert_eq!(answer.status, 200, "{}", answer.body);
        ids.push(answer.json()["eventId"].as_str().unwrap().to_string());
    }
    for host in &hosts {
        let events = host.events(Some("webhook:event"));
        let numbers: Vec<i64> = events
            .iter()
            .map(|e| e["payload"]["body"]["n"].as_i64().unwrap())
            .collect();
        assert_eq!(numbers.len(), 20, "each webhook once: {numbers:?}");
        assert_eq!(numbers.iter().collect::<HashSet<_>>().len(), 20, "{numbers:?}");
        for id in &ids {
            assert_eq!(host.api_get(&format!("/v1/chat/events/{id}")).status, 200);
        }
    }
}

#[test]
fn trigger_events_accepted_by_either_replica_all_run_once() {
    let Some((_, hosts)) = replicas(2) else { return };
    // Made on one replica, served by the other at once.
    let trigger = hosts[0].create_trigger(&json!({ "botId": "recorder", "authenticate": false }));
    let id = trigger["id"].as_str().unwrap().to_string();
    let mut accepted = Vec::new();
    for n in 0..30 {
        let host = &hosts[n % 2];
        let body = json!({ "n": n, "session": format!("s{}", n % 3) });
        let answer = host.post(&host.trigger_event_url(&id), &body.to_string());
        assert_eq!(answer.status, 200, "replica {}: {}", n % 2, answer.body);
        accepted.push(answer.header("x-sluice-event-id").unwrap().to_string());
    }
    for event in &accepted {
        hosts[1].trigger_event_in(&id, event, "done");
    }
    for host in &hosts {
        let runs = processed(host, &id);
        let events: Vec<&str> = runs.iter().map(|r| r["payload"]["eventId"].as_str().unwrap()).collect();
        assert_eq!(events.len(), 30, "each event's outcome once: {events:?}");
        assert_eq!(events.iter().collect::<HashSet<_>>().len(), 30);
        for event in &accepted {
            let finished = host.events_of("trigger:execution:finished", event);
            assert_eq!(finished.len(), 1, "{event}: {finished:?}");
        }
    }
}

#[test]
fn a_schedule_every_second_on_two_replicas_runs_once_a_second() {
    let Some((_, hosts)) = replicas(2) else { return };
    let trigger = hosts[0].create_trigger(&json!({ "botId": "recorder", "triggerSchedule": "* * * * * *" }));
    let id = trigger["id"].as_str().unwrap().to_string();
    // The other replica learns of the schedule from the store's change notice.
    eventually(
        "the second replica to know the schedule",
        Duration::from_secs(10),
        || {
            let fetched = hosts[1].api_get(&format!("/api/v1/integration/trigger/{id}/fetch"));
            fetched.json()["nextTriggerAt"].as_i64()
        },
    );
    let start = processed(&hosts[0], &id).len();
    std::thread::sleep(Duration::from_secs(10));
    let runs = processed(&hosts[1], &id).len() - start;
    assert!((9..=11).contains(&runs), "ten seconds, one run a second: {runs} runs");
}
