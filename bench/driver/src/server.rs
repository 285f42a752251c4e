//! A server under test: a child process pinned to one CPU with `taskset`, its output
//! drained on threads (so it never blocks on a full pipe), killed when dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// How many of a server's last output lines are kept for error messages.
const KEPT_LINES: usize = 40;

pub struct Server {
    child: Child,
    lines: Receiver<String>,
    tail: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Starts `program args` pinned to `cpu`.
    pub fn start(cpu: usize, program: &Path, args: &[String], env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let mut command = Command::new("taskset");
        command
            .arg("-c")
            .arg(cpu.to_string())
            .arg(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot start {} (is taskset installed?)", program.display()))?;
        let (sender, lines) = mpsc::channel();
        let tail = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        for stream in [Box::new(stdout) as Box<dyn Read + Send>, Box::new(stderr)] {
            let sender = sender.clone();
            let tail = tail.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    {
                        let mut tail = tail.lock().unwrap();
                        if tail.len() == KEPT_LINES {
                            tail.remove(0);
                        }
                        tail.push(line.clone());
                    }
                    let _ = sender.send(line);
                }
            });
        }
        Ok(Server { child, lines, tail })
    }

    /// The process id (`taskset` execs the server, so this is the server itself).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the first output line `ready` accepts and returns what it extracted.
    pub fn wait_for<T>(&mut self, timeout: Duration, ready: impl Fn(&str) -> Option<T>) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the server exited ({status}) before it was ready:\n{}", self.output());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left.min(Duration::from_millis(200))) {
                Ok(line) => {
                    if let Some(found) = ready(&line) {
                        return Ok(found);
                    }
                }
                Err(RecvTimeoutError::Timeout) if Instant::now() < deadline => {}
                Err(_) => bail!("the server was not ready within {timeout:?}:\n{}", self.output()),
            }
        }
    }

    /// The server's last output lines.
    pub fn output(&self) -> String {
        self.tail.lock().unwrap().join("\n")
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of a process in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The text after `prefix` up to the next whitespace, in a line containing `prefix`.
pub fn after<'a>(line: &'a str, prefix: &str) -> Option<&'a str> {
    let start = line.find(prefix)? + prefix.len();
    line[start..].split_whitespace().next()
}

/// A free TCP port on loopback, for servers that cannot listen on port 0 and report it.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
