//! A replica killed (SIGKILL) in the middle of mixed load, several times: every
//! acknowledged webhook and trigger event is stored, every trigger event reaches `done`,
//! and every envelope reaches its subscriber at least once, whichever replica leads
//! delivery when.

use std::collections::HashSet;
use std::time::Duration;

use serde_json::json;

use super::{path_of, replicas_with};
use crate::harness::receiver::Receiver;

const CONFIG: &str =
    "[delivery]\nallow-loopback = true\nretry-initial-ms = 200\nretry-max-ms = 2000\n\n[triggers]\nworkers = 4\n";

#[test]
fn a_replica_killed_mid_load_loses_nothing_acknowledged() {
    let receiver = Receiver::start();
    let Some((_, mut hosts)) = replicas_with(2, CONFIG) else {
        return;
    };
    let subscribed = hosts[0].api_post(
        "/v1/subscriptions",
        &json!({ "url": receiver.url("/hook"), "types": ["webhook:*"] }),
    );
    assert_eq!(subscribed.status, 201, "{}", subscribed.body);
    let trigger = hosts[0].create_trigger(&json!({ "botId": "recorder", "authenticate": false }));
    let trigger_id = trigger["id"].as_str().unwrap().to_string();
    let webhook = path_of(&hosts[0].webhook_url("webhook"));

    let (mut webhooks, mut events) = (Vec::new(), Vec::new());
    for round in 0..3 {
        let victim = round % 2;
        for n in 0..30 {
            if n == 15 {
                hosts[victim].kill();
            }
            for (index, host) in hosts.iter().enumerate() {
                if index == victim && n >= 15 {
                    continue;
                }
                let body = json!({ "round": round, "n": n, "replica": index }).to_string();
                let answer = host.post(&host.url(&webhook), &body);
                if answer.status == 200 {
                    webhooks.push(answer.json()["eventId"].as_str().unwrap().to_string());
                }
                let answer = host.post(&host.trigger_event_url(&trigger_id), &body);
                if answer.status == 200 {
                    events.push(answer.header("x-sluice-event-id").unwrap().to_string());
                }
            }
        }
        hosts[victim].start_again();
    }
    assert!(
        webhooks.len() >= 120 && events.len() >= 120,
        "the survivor kept serving"
    );

    for id in &webhooks {
        let stored = hosts[1].api_get(&format!("/v1/chat/events/{id}"));
        assert_eq!(stored.status, 200, "acknowledged webhook event {id} is stored");
    }
    for id in &events {
        hosts[0].trigger_event_in(&trigger_id, id, "done");
    }
    let wanted: HashSet<String> = webhooks.iter().cloned().collect();
    receiver.wait_until(Duration::from_secs(120), "every envelope at least once", |received| {
        let got: HashSet<String> = received
            .iter()
            .filter(|r| r.answered < 300)
            .filter_map(|r| r.json()["data"]["event"]["id"].as_str().map(String::from))
            .collect();
        wanted.is_subset(&got)
    });
}
