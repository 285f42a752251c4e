//! Plugins that trap, loop forever or eat memory get a clear error within their limit,
//! and the host goes on serving everyone else.

use std::time::{Duration, Instant};

use crate::harness::{Host, guest};

fn host() -> Host {
    Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .plugin("trap", guest("trap"), None)
        .plugin("spin", guest("spin"), Some("[limits]\ntimeout-ms = 1500\n"))
        .plugin("hog", guest("hog"), Some("[limits]\nmax-memory-bytes = 16777216\n"))
        .start()
}

fn webhook_still_works(host: &Host) {
    let answer = host.post(&host.webhook_url("webhook"), r#"{"after":"trouble"}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[test]
fn a_trap_answers_500_with_a_request_id_that_is_in_the_log() {
    let host = host();
    assert_eq!(
        host.post(&host.webhook_url("trap"), "{}").status,
        200,
        "the plugin works until provoked"
    );
    let answer = host.post(&format!("{}/misbehave", host.webhook_url("trap")), "{}");
    assert_eq!(answer.status, 500, "{}", answer.body);
    let error = answer.json();
    assert_eq!(error["type"], "PluginCrashed");
    assert!(error["message"].as_str().unwrap().contains("trapped"), "{error}");
    let request_id = error["id"].as_str().unwrap();
    assert_eq!(answer.header("x-sluice-request-id"), Some(request_id));
    assert!(
        host.output.wait_for(request_id, Duration::from_secs(5)).is_some(),
        "the log names the request"
    );
    assert!(
        host.output
            .wait_for("the trap plugin was provoked", Duration::from_secs(5))
            .is_some(),
        "the plugin's stderr reaches the host log"
    );
    webhook_still_works(&host);
}

#[test]
fn an_endless_loop_answers_504_at_its_deadline() {
    let host = host();
    let started = Instant::now();
    let answer = host.post(&format!("{}/misbehave", host.webhook_url("spin")), "{}");
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert_eq!(answer.json()["type"], "OperationTimeout");
    assert!(answer.json()["message"].as_str().unwrap().contains("1500 ms"));
    assert!(
        took >= Duration::from_millis(1400),
        "stopped at its deadline, not before ({took:?})"
    );
    assert!(took < Duration::from_secs(30), "stopped, not left running ({took:?})");
    webhook_still_works(&host);
}

/// How often the host's epoch thread has woken up so far (Linux: from /proc).
#[cfg(target_os = "linux")]
fn epoch_thread_wakeups(host: &Host) -> u64 {
    let tasks = format!("/proc/{}/task", host.pid().expect("the host runs"));
    for task in std::fs::read_dir(tasks).unwrap() {
        let task = task.unwrap().path();
        if std::fs::read_to_string(task.join("comm")).unwrap().trim() == "sluice-epoch" {
            let status = std::fs::read_to_string(task.join("status")).unwrap();
            let line = status
                .lines()
                .find(|l| l.starts_with("voluntary_ctxt_switches:"))
                .unwrap();
            return line.split_whitespace().nth(1).unwrap().parse().unwrap();
        }
    }
    panic!("the host has no sluice-epoch thread");
}

#[cfg(target_os = "linux")]
#[test]
fn an_idle_host_stops_ticking_and_still_stops_an_endless_loop_at_its_deadline() {
    let host = host();
    // Ticking every 5 ms would be 200 wake-ups a second; once idle for a second the
    // ticker parks.
    let quiet = crate::harness::wait_until(Duration::from_secs(10), || {
        let before = epoch_thread_wakeups(&host);
        std::thread::sleep(Duration::from_millis(500));
        epoch_thread_wakeups(&host) - before <= 2
    });
    assert!(quiet, "the idle host's epoch thread kept waking up");

    // The first call after that still has its deadline enforced.
    let started = Instant::now();
    let answer = host.post(&format!("{}/misbehave", host.webhook_url("spin")), "{}");
    let took = started.elapsed();
    assert_eq!(answer.status, 504, "{}", answer.body);
    assert!(took < Duration::from_secs(30), "stopped, not left running ({took:?})");
    webhook_still_works(&host);
}

#[test]
fn other_installations_are_served_while_one_loops() {
    let host = host();
    let spin_url = format!("{}/misbehave", host.webhook_url("spin"));
    let client = host.client().clone();
    let looping = std::thread::spawn(move || client.post(spin_url).body("{}").send().unwrap().status().as_u16());
    std::thread::sleep(Duration::from_millis(200));
    webhook_still_works(&host);
    assert_eq!(looping.join().unwrap(), 504);
}

#[test]
fn eating_memory_answers_500_naming_the_limit() {
    let host = host();
    let answer = host.post(&format!("{}/misbehave", host.webhook_url("hog")), "{}");
    assert_eq!(answer.status, 500, "{}", answer.body);
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("memory limit of 16777216 bytes"), "{message}");
    webhook_still_works(&host);
    assert_eq!(
        host.post(&host.webhook_url("hog"), "{}").status,
        200,
        "the next call gets a fresh instance"
    );
}

#[test]
fn running_out_of_memory_on_a_body_the_default_limit_admits_names_both_limits() {
    let host = host();
    let hog = host.installation("hog");
    // A thirty-second of its 16 MiB: the largest body hog takes by default.
    assert_eq!(hog["limits"]["maxBodyBytes"], 512 << 10);
    let answer = host.post(
        &format!("{}/misbehave", host.webhook_url("hog")),
        &"x".repeat(512 << 10),
    );
    assert_eq!(answer.status, 500, "{}", answer.body);
    let message = answer.json()["message"].as_str().unwrap().to_string();
    assert!(message.contains("memory limit of 16777216 bytes"), "{message}");
    assert!(message.contains("the request's body was 524288 bytes"), "{message}");
    assert!(
        message.contains("raise limits.max-memory-bytes in hog.toml, or lower limits.max-body-bytes"),
        "{message}"
    );
}

#[test]
fn the_sandbox_grants_no_files_environment_or_sockets() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let host = Host::builder()
        .plugin("probe", guest("probe"), Some("[configuration]\nname = \"p\"\n"))
        .env("SECRET_ENV", "leak")
        .start();
    let answer = host.send(
        host.client()
            .get(format!("{}/sandbox?connect={address}", host.webhook_url("probe"))),
    );
    assert_eq!(answer.status, 200, "{}", answer.body);
    let report = answer.json();
    assert_eq!(report["env"], 0, "no environment: {report}");
    assert_eq!(report["args"], 0, "no arguments: {report}");
    assert!(
        report["files"].as_str().unwrap().starts_with("refused"),
        "no files: {report}"
    );
    assert!(
        report["connect"].as_str().unwrap().starts_with("refused"),
        "no sockets: {report}"
    );
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "nothing connected to the listener");
}
