//! Clients that hold connections without finishing their requests are disconnected, and
//! the host goes on serving everyone else.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::{Host, guest};

fn connect(host: &Host) -> TcpStream {
    let address = host.url("").trim_start_matches("http://").to_string();
    TcpStream::connect(address).expect("sluice accepts connections")
}

/// Whether the server closed the connection within `within` (it sent nothing first).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buffer = [0u8; 1024];
    match stream.read(&mut buffer) {
        Ok(0) => true,
        Ok(n) => panic!("the server answered: {:?}", String::from_utf8_lossy(&buffer[..n])),
        Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => true,
        Err(error) => panic!("still open after {within:?}: {error}"),
    }
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected_after_30_s() {
    let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
    let url = host.webhook_url("webhook");
    let path = url.split_once("/webhooks/").unwrap().1;

    let mut silent = connect(&host);
    let mut trickling = connect(&host);
    write!(trickling, "POST /webhooks/{path} HTTP/1.1\r\nhost: x\r\n").unwrap();

    // Meanwhile everyone else is served.
    assert_eq!(host.post(&url, "{}").status, 200);

    assert!(closed_within(&mut silent, Duration::from_secs(45)));
    assert!(closed_within(&mut trickling, Duration::from_secs(15)));
    assert_eq!(host.post(&url, "{}").status, 200, "and still is");
}
