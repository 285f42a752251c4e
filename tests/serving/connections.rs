//! Connections under a low open-file limit: sluice raises its soft limit to the hard one,
//! caps its connections below it, and closes the connections idle the longest so that a
//! new client is served even while a thousand idle ones are held open.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Host, guest, raise_own_open_file_limit};

const IDLE: usize = 1000;

fn connect(host: &Host) -> TcpStream {
    TcpStream::connect(host.url("").trim_start_matches("http://")).expect("sluice accepts connections")
}

#[test]
fn a_webhook_is_answered_while_a_thousand_idle_connections_are_held_at_a_1024_limit() {
    assert!(
        raise_own_open_file_limit() > IDLE as u64 + 100,
        "the test holds {IDLE} connections itself"
    );
    // As a shell's `ulimit -n 1024`: no room to raise it.
    let host = Host::builder()
        .plugin("webhook", guest("webhook"), None)
        .open_file_limit(1024, 1024)
        .start();
    let line = host
        .output
        .wait_for("open files", Duration::from_secs(5))
        .expect("the limit is logged");
    assert!(
        line.contains("soft_limit=1024") && line.contains("hard_limit=1024"),
        "{line}"
    );
    let cap = host
        .output
        .wait_for("max_connections=", Duration::from_secs(5))
        .expect("the cap is logged");
    assert!(cap.contains("max_connections=896"), "{cap}");
    let url = host.webhook_url("webhook");

    // Half never send anything, half made a request and keep their connection alive.
    let mut held = Vec::with_capacity(IDLE);
    for n in 0..IDLE {
        let mut stream = connect(&host);
        if n % 2 == 1 {
            stream
                .write_all(b"GET /no/such/route HTTP/1.1\r\nhost: sluice\r\n\r\n")
                .unwrap();
            let mut answer = [0u8; 512];
            let read = stream.read(&mut answer).unwrap_or(0);
            // Those sluice already closed to make room may answer nothing.
            assert!(
                read == 0 || answer.starts_with(b"HTTP/1.1 404"),
                "{:?}",
                String::from_utf8_lossy(&answer[..read])
            );
        }
        held.push(stream);
    }

    let answer = host.post(&url, r#"{"while":"crowded"}"#);
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        host.output
            .wait_for("connection limit reached", Duration::from_secs(5))
            .is_some(),
        "reaching the cap is logged:\n{}",
        host.output.text()
    );
    // The host is within its limit, and it is the idle ones that were closed.
    let open = std::fs::read_dir(format!("/proc/{}/fd", host.pid().unwrap()))
        .unwrap()
        .count();
    assert!(open <= 1024, "{open} descriptors open");
    drop(held);
    assert_eq!(host.post(&url, "{}").status, 200, "and still serves");
}

#[test]
fn the_soft_open_file_limit_is_raised_to_the_hard_one_at_start() {
    // As systemd starts a service without LimitNOFILE: a soft limit of 1,024 under a
    // higher hard one.
    let hard = raise_own_open_file_limit().min(4096);
    let host = Host::builder().open_file_limit(1024, hard).start();
    let line = host
        .output
        .wait_for("open files", Duration::from_secs(5))
        .expect("the limit is logged");
    assert!(
        line.contains("raised the soft limit to the hard limit")
            && line.contains("soft_limit=1024")
            && line.contains(&format!("hard_limit={hard}")),
        "{line}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", host.pid().unwrap())).unwrap();
    let open_files = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    assert_eq!(
        open_files.split_whitespace().skip(3).take(2).collect::<Vec<_>>(),
        [hard.to_string(), hard.to_string()],
        "{open_files}"
    );
}
