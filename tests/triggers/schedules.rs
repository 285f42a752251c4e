//! Trigger schedules: a seconds-level cron expression (sluice accepts 6 fields, seconds
//! first) runs the trigger on schedule, `nextTriggerAt`/`lastTriggerAt` tell when, the
//! schedule survives a restart, and clearing it stops the runs.

use std::time::Duration;

use crate::harness::{Host, eventually, guest};
use serde_json::{Value, json};

/// The scheduled runs of `trigger` the plugin processed, oldest first.
fn scheduled_runs(host: &Host, trigger: &str) -> Vec<Value> {
    let mut runs: Vec<Value> = host
        .events(Some("tprobe:processed"))
        .into_iter()
        .filter(|e| e["payload"]["triggerId"] == trigger && e["payload"]["source"] == "schedule")
        .collect();
    runs.reverse();
    runs
}

fn fetch(host: &Host, id: &str) -> Value {
    let answer = host.api_get(&format!("/api/v1/integration/trigger/{id}/fetch"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()
}

#[test]
fn a_schedule_runs_the_trigger_and_shows_when() {
    let mut host = Host::builder().plugin("recorder", guest("trigger_probe"), None).start();
    let created = host.create_trigger(&json!({ "botId": "recorder", "triggerSchedule": "* * * * * *" }));
    let id = created["id"].as_str().unwrap().to_string();
    let first_next = created["nextTriggerAt"]
        .as_i64()
        .expect("nextTriggerAt of a scheduled trigger");
    assert_eq!(first_next % 1000, 0, "every second, on the second");
    assert_eq!(created["lastTriggerAt"], Value::Null);

    let runs = eventually("two scheduled runs", Duration::from_secs(30), || {
        let runs = scheduled_runs(&host, &id);
        (runs.len() >= 2).then_some(runs)
    });
    for run in &runs {
        assert_eq!(run["payload"]["method"], "POST");
        assert_eq!(run["payload"]["body"], "");
        assert_eq!(run["payload"]["session"], Value::Null);
    }
    assert_ne!(
        runs[0]["payload"]["conversationId"], runs[1]["payload"]["conversationId"],
        "scheduled runs carry no session: one conversation each"
    );
    let fetched = fetch(&host, &id);
    let last = fetched["lastTriggerAt"].as_i64().expect("lastTriggerAt after a run");
    let next = fetched["nextTriggerAt"].as_i64().unwrap();
    assert!(last >= first_next, "{last} >= {first_next}");
    assert!(next > first_next && next % 1000 == 0, "{next}");

    // The schedule is kept across a restart.
    host.restart();
    let before = scheduled_runs(&host, &id).len();
    assert!(fetch(&host, &id)["nextTriggerAt"].as_i64().is_some());
    eventually("a scheduled run after the restart", Duration::from_secs(30), || {
        (scheduled_runs(&host, &id).len() > before).then_some(())
    });

    // Cleared, it stops.
    let cleared = host.api_post(
        &format!("/api/v1/integration/trigger/{id}/update"),
        &json!({ "triggerSchedule": null }),
    );
    assert_eq!(cleared.status, 200, "{}", cleared.body);
    assert_eq!(fetch(&host, &id)["nextTriggerAt"], Value::Null);
    // Let anything queued before the update run, then let two schedule slots pass.
    let queued_before = host
        .api_get(&format!("/v1/integration/trigger/{id}/events?take=100"))
        .json()["items"]
        .as_array()
        .unwrap()
        .len();
    eventually("the queue to drain", Duration::from_secs(30), || {
        let items = host
            .api_get(&format!("/v1/integration/trigger/{id}/events?take=100"))
            .json()["items"]
            .clone();
        items
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["status"] == "done")
            .then_some(())
    });
    std::thread::sleep(Duration::from_millis(2200));
    let queued_after = host
        .api_get(&format!("/v1/integration/trigger/{id}/events?take=100"))
        .json()["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(
        queued_after, queued_before,
        "no run was queued after the schedule was cleared"
    );
}

#[test]
fn a_schedule_in_a_time_zone_and_a_deleted_scheduled_trigger() {
    let host = Host::builder().plugin("recorder", guest("trigger_probe"), None).start();
    let created = host.create_trigger(&json!({
        "botId": "recorder",
        "schedule": "*/2 * * * * *",
        "timezone": "Asia/Kolkata"
    }));
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["triggerSchedule"], "*/2 * * * * *");
    assert_eq!(created["timezone"], "Asia/Kolkata");
    eventually("a scheduled run", Duration::from_secs(30), || {
        (!scheduled_runs(&host, &id).is_empty()).then_some(())
    });
    let deleted = host.api_post(&format!("/api/v1/integration/trigger/{id}/delete"), &json!({}));
    assert_eq!(deleted.status, 200);
    let runs = scheduled_runs(&host, &id).len();
    std::thread::sleep(Duration::from_millis(2500));
    // A run already running when it was deleted may still finish; none starts after.
    assert!(scheduled_runs(&host, &id).len() <= runs + 1);
}
