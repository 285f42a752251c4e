//! A real PostgreSQL 15 for the tests: one cluster per checkout, started by the first
//! test that needs it and shared by every test process after it (nextest runs each
//! test in a process of its own), with a fresh database per test.
//!
//! The cluster lives in `/tmp/sluice-test-postgres-<hash of the checkout's path>`, made
//! with Debian's `initdb` and `pg_ctl` (run as the `postgres` user when the tests run as
//! root: `initdb` refuses root), listening on a free loopback port. `scripts/test` stops
//! it after the run (`pg_ctl stop`); a later run starts it again.
//!
//! `SLUICE_TEST_STORE=postgres` runs every test host on PostgreSQL ([`enabled`]).
//! [`StoreProxy`] sits between a host and the database, to cut the connection and bring
//! it back, as a lost database would.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use super::{FileLock, repo_root, run};

/// Where Debian's postgresql-15 package puts its programs.
const BIN: &str = "/usr/lib/postgresql/15/bin";

/// The key test hosts on PostgreSQL seal sidecars with (`SLUICE_STORE_SECRET_KEY`).
pub const SECRET_KEY: &str = "c2x1aWNlIHRlc3Qgc3RvcmUga2V5OiAzMiBieXRlcyE=";

/// Whether this run keeps every test host's store in PostgreSQL
/// (`SLUICE_TEST_STORE=postgres`).
pub fn enabled() -> bool {
    std::env::var("SLUICE_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// The test cluster's folder for this checkout.
pub fn cluster_dir() -> PathBuf {
    use sha2::{Digest, Sha256};
    let checkout = repo_root();
    let hash = format!("{:x}", Sha256::digest(checkout.to_string_lossy().as_bytes()));
    PathBuf::from(format!("/tmp/sluice-test-postgres-{}", &hash[..12]))
}

/// The running test cluster's port, starting it if it is not running.
fn cluster_port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let dir = cluster_dir();
        std::fs::create_dir_all(&dir).unwrap();
        let _lock = FileLock::acquire(&dir.join("lock"));
        let port_file = dir.join("port");
        if let Some(port) = std::fs::read_to_string(&port_file)
            .ok()
            .and_then(|text| text.trim().parse::<u16>().ok())
            && TcpStream::connect(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
        start_cluster(&dir, &port_file)
    })
}

fn as_postgres(program: &str) -> Command {
    let path = Path::new(BIN).join(program);
    assert!(
        path.exists(),
        "{} is missing: install PostgreSQL 15 (scripts/setup --tests does)",
        path.display()
    );
    // SAFETY: geteuid(2) reads the calling process's effective user id.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

fn start_cluster(dir: &Path, port_file: &Path) -> u16 {
    let data = dir.join("data");
    // SAFETY: geteuid(2) reads the calling process's effective user id.
    let root = unsafe { libc::geteuid() } == 0;
    if root {
        run(
            Command::new("chown").arg("postgres:postgres").arg(dir),
            "chown of the test cluster's folder",
        );
    }
    if !data.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&data);
        run(
            as_postgres("initdb").arg("-D").arg(&data).args([
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]),
            "initdb of the test cluster",
        );
    }
    let port = free_port();
    // Durability settings off: a test cluster is thrown away, and fsyncs would only slow
    // the suite down. Connections: several hosts per test, tests side by side.
    let options = format!(
        "-p {port} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=600 -c shared_buffers=64MB",
        dir.display()
    );
    run(
        as_postgres("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("log"))
            .args(["-o", &options, "-w", "start"]),
        "pg_ctl start of the test cluster",
    );
    std::fs::write(port_file, port.to_string()).unwrap();
    port
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A new, empty database on the test cluster; answers its URL.
pub fn fresh_database() -> String {
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let port = cluster_port();
    let name = format!(
        "sluice_{}_{}_{}",
        std::process::id(),
        COUNT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    run(
        Command::new(Path::new(BIN).join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres", "-q", "-c"])
            .arg(format!("CREATE DATABASE {name}")),
        "CREATE DATABASE on the test cluster",
    );
    database_url(port, &name)
}

/// The URL of database `name` on the test cluster through `port`.
fn database_url(port: u16, name: &str) -> String {
    format!("postgres://postgres:secret@127.0.0.1:{port}/{name}")
}

/// Runs `sql` on the database at `url` with `psql`; answers what it printed (unaligned,
/// tuples only).
pub fn psql(url: &str, sql: &str) -> String {
    let output = Command::new(Path::new(BIN).join("psql"))
        .args(["-X", "-A", "-t", "-q", "-d", url, "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A TCP proxy in front of the test cluster that can lose the database: [`cut`] closes
/// every connection through it and refuses new ones, [`restore`] lets them through again.
///
/// [`cut`]: StoreProxy::cut
/// [`restore`]: StoreProxy::restore
pub struct StoreProxy {
    port: u16,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl StoreProxy {
    /// A proxy to the test cluster on a free port.
    pub fn start() -> StoreProxy {
        let target = cluster_port();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (refusing, tracked) = (cut.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if refusing.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                {
                    let mut open = tracked.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        StoreProxy { port, cut, open }
    }

    /// The URL of `database_url`'s database through this proxy.
    pub fn url(&self, direct_url: &str) -> String {
        let name = direct_url.rsplit('/').next().unwrap();
        database_url(self.port, name)
    }

    /// Loses the database: every connection through the proxy is closed, new ones too.
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Brings the database back.
    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

/// Copies bytes from `from` to `to` until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buffer = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if to.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}
