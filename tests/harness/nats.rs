//! A NATS server with JetStream for the delivery tests: `nats-server -js` on a free
//! loopback port with its store in a temporary folder (scripts/setup installs it), and a
//! JetStream consumer that reads a stream from its start.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::Value;

/// A running `nats-server`; stopped on drop.
pub struct NatsServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// One message read from a stream.
#[derive(Debug, Clone)]
pub struct StreamMessage {
    /// The `Nats-Msg-Id` header.
    pub id: String,
    pub subject: String,
    pub payload: Value,
}

impl NatsServer {
    /// Starts `nats-server -js` on a free loopback port.
    pub fn start() -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let mut server = NatsServer {
            port,
            dir: tempfile::tempdir().expect("a temporary folder"),
            child: None,
        };
        server.launch();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn launch(&mut self) {
        // Debian installs it in /usr/sbin, which a non-root PATH may lack.
        let binary = if std::path::Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server"
        } else {
            "nats-server"
        };
        let child = Command::new(binary)
            .args(["-js", "-a", "127.0.0.1", "-p", &self.port.to_string(), "-sd"])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run nats-server ({e}); scripts/setup installs it"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on port {}",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (SIGKILL: as abrupt as a crash); its stored streams stay.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "nats-server is still running");
        self.launch();
    }

    /// Reads every message of `stream` from its start with a JetStream pull consumer,
    /// as many as the stream holds when called.
    pub fn read_stream(&self, stream: &str) -> Vec<StreamMessage> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = async_nats::connect(self.url()).await.expect("connect to nats-server");
            let jetstream = async_nats::jetstream::new(client);
            let mut stream = jetstream.get_stream(stream).await.expect("the stream exists");
            let count = stream.info().await.expect("stream info").state.messages as usize;
            let consumer = stream
                .create_consumer(async_nats::jetstream::consumer::pull::Config {
                    ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
                    ..Default::default()
                })
                .await
                .expect("a pull consumer");
            let mut messages = consumer.messages().await.expect("consume");
            let mut read = Vec::with_capacity(count);
            while read.len() < count {
                let message = tokio::time::timeout(Duration::from_secs(20), messages.next())
                    .await
                    .expect("the stream's messages arrive")
                    .expect("the consumer goes on")
                    .expect("a message");
                let id = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.to_string())
                    .unwrap_or_default();
                read.push(StreamMessage {
                    id,
                    subject: message.subject.to_string(),
                    payload: serde_json::from_slice(&message.payload).unwrap_or(Value::Null),
                });
                message.ack().await.expect("ack");
            }
            read
        })
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.stop();
    }
}
