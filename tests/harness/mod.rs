//! The black-box test harness: builds the guest plugins from source, starts the real
//! `sluice` binary on port 0 in a temporary folder, and talks HTTP to it.
//!
//! ```ignore
//! let host = Host::builder().plugin("webhook", guest("webhook"), None).start();
//! let answer = host.post(&host.webhook_url("webhook"), "{}");
//! assert_eq!(answer.status, 200);
//! ```
//!
//! It learns what the host is doing from the host itself: the address from the JSON line
//! `sluice serve` prints once it is ready, everything else from the HTTP API (hot reload
//! from `GET /v1/admin/installations`). What the host prints is kept in [`Output`] for
//! the tests of what it logs.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod fake_platform;
pub mod nats;
pub mod otlp;
pub mod postgres;
pub mod prometheus;
pub mod receiver;

/// The API token every test host is started with.
pub const API_TOKEN: &str = "test-token";

/// How long a host may take to start (it may compile plugins cold: a Python or
/// JavaScript component takes a minute of CPU on a busy two-core machine).
const START_TIMEOUT: Duration = Duration::from_secs(600);

/// The repository root (the harness belongs to the `sluice` package in host/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the repository")
        .to_path_buf()
}

/// The `sluice` binary Cargo built for these tests, so always the current one. Cargo
/// tells test targets where it is; an example using the harness (bench/delivery_fanout.rs)
/// is not told, and runs the binary of its own profile, which its script builds with it.
pub fn sluice_binary() -> PathBuf {
    if let Some(binary) = option_env!("CARGO_BIN_EXE_sluice") {
        return PathBuf::from(binary);
    }
    let exe = std::env::current_exe().expect("the example has a path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/examples/<example>")
        .join("sluice");
    assert!(
        binary.exists(),
        "{} is missing: build it with the example (`cargo build -p sluice --bins --examples`)",
        binary.display()
    );
    binary
}

/// The cargo target folder sluice was built into (`target/` or `$CARGO_TARGET_DIR`); the
/// guest plugins and the tests' shared code cache are kept there too.
pub fn target_dir() -> PathBuf {
    sluice_binary()
        .parent()
        .and_then(Path::parent)
        .expect("<target>/<profile>/sluice")
        .to_path_buf()
}

/// Raises this process's soft open-file limit to its hard limit (tests that hold many
/// connections need more than a common default of 1,024); answers the limit.
pub fn raise_own_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) and setrlimit(2) read and write only the struct passed.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

/// Runs a command to completion, panicking with its output when it fails.
pub fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Builds every Rust guest (guest-examples/ and tests/plugins/) once per test process and
/// returns the component for the crate `name`.
pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let out = BUILT.get_or_init(|| {
        let target = target_dir().join("guests");
        run(
            cargo_of_this_build()
                .args(["build", "--release", "--target", "wasm32-wasip2", "--manifest-path"])
                .arg(repo_root().join("guest-examples/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .env_remove("CARGO_TARGET_DIR"),
            "building the guest plugins (is the wasm32-wasip2 target installed? scripts/setup adds it)",
        );
        target.join("wasm32-wasip2/release")
    });
    let path = out.join(format!("{name}.wasm"));
    assert!(path.exists(), "guest {name} was not built at {}", path.display());
    path
}

/// The Cargo that built this program, with the `rustc` beside it. Run by a test, Cargo
/// tells rustup's `rustc` which toolchain to use; run on its own (the benchmark runs the
/// delivery-fanout example so), that `rustc` would be the machine's default toolchain,
/// which may lack the `wasm32-wasip2` target the pinned one has.
fn cargo_of_this_build() -> Command {
    let cargo = Path::new(env!("CARGO"));
    let mut command = Command::new(cargo);
    let rustc = cargo.with_file_name("rustc");
    if std::env::var_os("RUSTC").is_none() && rustc.is_file() {
        command.env("RUSTC", rustc);
    }
    command
}

/// A loopback port where nothing answers: bound but never listened on, so a connection is
/// refused, and held until dropped, so no other test's server can take it meanwhile (a port
/// merely freed again can be, and then the connection is reset instead of refused).
pub struct DownPort {
    _bound: socket2::Socket,
    pub port: u16,
}

impl DownPort {
    pub fn bind() -> DownPort {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a TCP socket");
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("a loopback port");
        let port = socket.local_addr().unwrap().as_socket().unwrap().port();
        DownPort { _bound: socket, port }
    }
}

/// Polls `condition` (every 10 ms) until it holds or `timeout` passes; whether it held.
/// For state only visible by asking (an HTTP answer), where no log line tells.
pub fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What a `sluice` command (other than serve) did.
#[derive(Debug)]
pub struct CommandOutput {
    pub success: bool,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `sluice ARGS` to completion in `dir`.
pub fn sluice_command(dir: &Path, args: &[&str]) -> CommandOutput {
    let output = Command::new(sluice_binary())
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run sluice");
    CommandOutput {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The body as JSON (panics with the body when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {:?}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// `{prefix}[{"id":0},{"id":1},...]{suffix}`, exactly `total` bytes long (spaces pad the
/// array): a body of many small JSON records, the shape that costs a plugin that reads
/// the body into a tree of values the most memory for its size.
pub fn small_records_body(prefix: &str, suffix: &str, total: usize) -> String {
    let mut body = String::with_capacity(total);
    body.push_str(prefix);
    body.push('[');
    let end = total - suffix.len() - 1;
    let mut n = 0;
    loop {
        let record = format!("{}{{\"id\":{n}}}", if n == 0 { "" } else { "," });
        if body.len() + record.len() > end {
            break;
        }
        body.push_str(&record);
        n += 1;
    }
    body.push_str(&" ".repeat(end - body.len()));
    body.push(']');
    body.push_str(suffix);
    assert_eq!(body.len(), total);
    body
}

/// POSTs `body` the way many clients do (Python's `urllib` and `requests`, Node's
/// `fetch`): the whole request is written before anything is read. Returns the raw answer,
/// head and body. Panics when writing fails: a server that closes on a body it refuses,
/// instead of reading it to the end, resets the connection and the client never sees why.
pub fn post_whole_then_read(url: &str, headers: &[(&str, &str)], body: &[u8]) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (address, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = std::net::TcpStream::connect(address).expect("sluice accepts connections");
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).expect("the request head is written");
    stream
        .write_all(body)
        .unwrap_or_else(|error| panic!("writing the {} byte body failed: {error}", body.len()));
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("the answer is read");
    String::from_utf8_lossy(&answer).into_owned()
}

/// One plugin to drop into the plugins folder before start.
struct PluginFile {
    name: String,
    wasm: PathBuf,
    sidecar: Option<String>,
}

/// Configures and starts a host.
pub struct HostBuilder {
    plugins: Vec<PluginFile>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    config: Option<String>,
    own_code_cache: bool,
    open_files: Option<(u64, u64)>,
    store: StoreChoice,
    binary: Option<PathBuf>,
}

/// Which store a test host keeps its records in.
enum StoreChoice {
    /// SQLite, or a fresh PostgreSQL database when the run says so
    /// ([`postgres::enabled`]).
    AsTheRunSays,
    /// The embedded SQLite store whatever the run says: for tests of the SQLite files.
    Sqlite,
    /// This PostgreSQL database.
    Postgres(String),
}

impl HostBuilder {
    /// Keeps the host's records in the PostgreSQL database at `url` (`--store`).
    pub fn postgres(mut self, url: &str) -> Self {
        self.store = StoreChoice::Postgres(url.into());
        self
    }

    /// Keeps the host's records in the embedded SQLite store even in the PostgreSQL run:
    /// for the few tests that look into the SQLite files themselves.
    pub fn sqlite_only(mut self) -> Self {
        self.store = StoreChoice::Sqlite;
        self
    }

    /// Installs `wasm` as `<name>.wasm`, with `<name>.toml` holding `sidecar` if given.
    pub fn plugin(mut self, name: &str, wasm: impl Into<PathBuf>, sidecar: Option<&str>) -> Self {
        self.plugins.push(PluginFile {
            name: name.into(),
            wasm: wasm.into(),
            sidecar: sidecar.map(String::from),
        });
        self
    }

    /// Extra arguments to `sluice serve`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Keeps compiled code in the host's own data folder (`<data>/cache`, its key in
    /// `<data>/cache-key`). By default every test host shares one cache folder and its key
    /// in the target folder, so a plugin is compiled once per test run rather than once
    /// per test (Python and JavaScript components take seconds to compile).
    pub fn own_code_cache(mut self) -> Self {
        self.own_code_cache = true;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Starts sluice with these open-file limits (soft, hard), as `ulimit -n` in a shell
    /// or `LimitNOFILE` in a systemd unit would.
    pub fn open_file_limit(mut self, soft: u64, hard: u64) -> Self {
        self.open_files = Some((soft, hard));
        self
    }

    /// Runs this `sluice` binary instead of the one built with the tests: a benchmark
    /// measuring a reference build beside the current one (bench/delivery_fanout.rs).
    #[allow(
        dead_code,
        reason = "the fan-out benchmark runs a reference build; the tests run their own"
    )]
    pub fn binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = Some(binary.into());
        self
    }

    /// The host configuration file (TOML), passed with `--config`.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }

    pub fn start(self) -> Host {
        self.start_until("ready")
    }

    /// Starts the host and returns as soon as its health checks answer, while its plugins
    /// may still be loading; [`Host::wait_until_ready`] waits for the rest.
    pub fn start_loading(self) -> Host {
        self.start_until("loading")
    }

    fn start_until(mut self, event: &'static str) -> Host {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let plugins = dir.path().join("plugins");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&plugins).unwrap();
        for plugin in &self.plugins {
            std::fs::copy(&plugin.wasm, plugins.join(format!("{}.wasm", plugin.name)))
                .unwrap_or_else(|e| panic!("cannot copy {}: {e}", plugin.wasm.display()));
            if let Some(sidecar) = &plugin.sidecar {
                std::fs::write(plugins.join(format!("{}.toml", plugin.name)), sidecar).unwrap();
            }
        }
        if let Some(config) = &self.config {
            let path = dir.path().join("sluice.toml");
            std::fs::write(&path, config).unwrap();
            self.args.push("--config".into());
            self.args.push(path.to_string_lossy().into_owned());
        }
        let store_url = match self.store {
            StoreChoice::Postgres(url) => Some(url),
            StoreChoice::AsTheRunSays if postgres::enabled() => Some(postgres::fresh_database()),
            StoreChoice::AsTheRunSays | StoreChoice::Sqlite => None,
        };
        if let Some(url) = store_url {
            self.args.push("--store".into());
            self.args.push(url);
            // Sidecars are sealed in PostgreSQL; a test's own key (or none) wins.
            self.env
                .insert(0, ("SLUICE_STORE_SECRET_KEY".into(), postgres::SECRET_KEY.into()));
        }
        let mut args = self.args;
        if !self.own_code_cache {
            let (cache, key) = shared_code_cache();
            let large: Vec<PathBuf> = self
                .plugins
                .iter()
                .map(|plugin| plugin.wasm.clone())
                .filter(|wasm| std::fs::metadata(wasm).is_ok_and(|m| m.len() >= LARGE_PLUGIN_BYTES))
                .collect();
            precompile(&large, &cache, &key);
            args.push("--cache".into());
            args.push(cache.to_string_lossy().into_owned());
            // Shared with the cache's key, as hosts sharing a cache are.
            args.push("--cache-key".into());
            args.push(key.to_string_lossy().into_owned());
        }
        let mut host = Host {
            binary: self.binary.unwrap_or_else(sluice_binary),
            _dir: dir,
            plugins,
            data,
            args,
            env: self.env,
            open_files: self.open_files,
            child: None,
            base: String::new(),
            metrics_base: None,
            output: Arc::new(Output::default()),
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(60))
                // sluice closes a connection that sends no request head for 30 s: one idle
                // that long may be closing just as it is reused (IncompleteMessage).
                .pool_idle_timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        host.launch_until(event);
        host
    }
}

/// Plugins this large (Python, JavaScript) serve on baseline code first when their
/// optimised code is not in the cache (sluice's `BASELINE_MIN_BYTES`).
const LARGE_PLUGIN_BYTES: u64 = 1 << 20;

/// The compiled-code cache every test host shares (unless it keeps its own), and its key.
fn shared_code_cache() -> (PathBuf, PathBuf) {
    (
        target_dir().join("test-code-cache"),
        target_dir().join("test-code-cache.key"),
    )
}

/// Puts the optimised code of `plugins` into the shared cache with `sluice compile`, once
/// per test run (later calls find it there): tests then run on the code a warm host runs,
/// and no host spends its test compiling optimised code in the background.
fn precompile(plugins: &[PathBuf], cache: &Path, key: &Path) {
    if plugins.is_empty() {
        return;
    }
    let _one_at_a_time = FileLock::acquire(&target_dir().join("test-code-cache.lock"));
    let mut command = Command::new(sluice_binary());
    command
        .arg("compile")
        .arg("--cache")
        .arg(cache)
        .arg("--cache-key")
        .arg(key)
        .args(plugins)
        .env("SLUICE_LOG", "warn");
    run(&mut command, "sluice compile");
}

/// What the host printed (stdout and stderr), line by line. Tests of what the host logs
/// read it; nothing waits on it to learn that the host did something (the host's API
/// says that), except for the address in the ready line.
#[derive(Default)]
pub struct Output {
    lines: Mutex<Vec<String>>,
    changed: Condvar,
}

impl Output {
    fn push(&self, line: String) {
        self.lines.lock().unwrap().push(line);
        self.changed.notify_all();
    }

    /// Waits until a line after `mark` gives `Some` to `find`, and returns that.
    fn wait_for_match<T>(&self, mark: usize, timeout: Duration, mut find: impl FnMut(&str) -> Option<T>) -> Option<T> {
        let deadline = Instant::now() + timeout;
        let mut lines = self.lines.lock().unwrap();
        loop {
            if let Some(found) = lines.iter().skip(mark).find_map(|line| find(line)) {
                return Some(found);
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            lines = self.changed.wait_timeout(lines, deadline - now).unwrap().0;
        }
    }

    /// Waits until a line containing `needle` was printed (since start). The host prints
    /// through two pipes read by two threads, so a line it printed before answering a
    /// request may arrive here a moment after the answer.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Option<String> {
        self.wait_for_since(0, &[needle], timeout)
    }

    /// How many lines were printed so far: pass it to [`Output::wait_for_since`] or
    /// [`Output::lines_since`] for the lines printed after this point.
    pub fn mark(&self) -> usize {
        self.lines.lock().unwrap().len()
    }

    /// Waits until a line containing every one of `needles` was printed after `mark`.
    pub fn wait_for_since(&self, mark: usize, needles: &[&str], timeout: Duration) -> Option<String> {
        self.wait_for_match(mark, timeout, |line| {
            needles
                .iter()
                .all(|needle| line.contains(needle))
                .then(|| line.to_string())
        })
    }

    /// Waits for the JSON line `sluice serve` prints on stdout for `event`: `loading` once
    /// its health checks answer, before the plugins load, `ready` once it serves
    /// (`{"event":"ready","listen":"http://127.0.0.1:PORT","installations":N}`).
    fn wait_for_event(&self, event: &str, timeout: Duration) -> Option<Value> {
        self.wait_for_match(0, timeout, |line| {
            let line: Value = serde_json::from_str(line).ok()?;
            (line["event"] == event).then_some(line)
        })
    }

    /// Every line containing `needle` printed after `mark`.
    pub fn lines_since(&self, mark: usize, needle: &str) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .skip(mark)
            .filter(|l| l.contains(needle))
            .cloned()
            .collect()
    }

    pub fn text(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    fn clear(&self) {
        self.lines.lock().unwrap().clear();
    }
}

/// A running `sluice serve` in its own temporary folder. Killed on drop.
pub struct Host {
    /// The `sluice` binary it runs.
    binary: PathBuf,
    /// The temporary folder holding plugins/ and data/, removed when the host is dropped.
    _dir: tempfile::TempDir,
    pub plugins: PathBuf,
    pub data: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    open_files: Option<(u64, u64)>,
    child: Option<Child>,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// Where `--metrics-listen` serves, `http://127.0.0.1:<port>` (from the ready line).
    pub metrics_base: Option<String>,
    /// Everything the host printed (stdout and stderr) since its last start.
    pub output: Arc<Output>,
    client: reqwest::blocking::Client,
}

impl Host {
    pub fn builder() -> HostBuilder {
        HostBuilder {
            plugins: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            config: None,
            own_code_cache: false,
            open_files: None,
            store: StoreChoice::AsTheRunSays,
            binary: None,
        }
    }

    fn launch(&mut self) {
        self.launch_until("ready");
    }

    /// Starts sluice and waits for its JSON line `event` (see [`Output::wait_for_event`]).
    fn launch_until(&mut self, event: &str) {
        self.output.clear();
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--plugins")
            .arg(&self.plugins)
            .arg("--data")
            .arg(&self.data)
            .args(["--listen", "127.0.0.1:0", "--api-token", API_TOKEN])
            .args(&self.args)
            .env("SLUICE_LOG", "info,sluice=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some((soft, hard)) = self.open_files {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit {
                rlim_cur: soft,
                rlim_max: hard,
            };
            // SAFETY: setrlimit(2) is async-signal-safe, so it may run between fork and exec;
            // `limit` is a plain value copied into the closure.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let mut child = command.spawn().expect("cannot start sluice");
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = self.output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    output.push(line);
                }
            });
        }
        // Until the line, or until sluice exits without it (then fail at once).
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = loop {
            if let Some(ready) = self.output.wait_for_event(event, Duration::from_millis(200)) {
                break ready;
            }
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                // What it printed last may still be on its way from the pipes.
                std::thread::sleep(Duration::from_millis(200));
                panic!(
                    "sluice did not start (exit: {exited:?}); it printed:\n{}",
                    self.output.text()
                );
            }
        };
        self.child = Some(child);
        self.metrics_base = ready["metrics"].as_str().map(String::from);
        self.base = ready["listen"]
            .as_str()
            .unwrap_or_else(|| panic!("the ready line names the address it listens on: {ready}"))
            .to_string();
    }

    /// Waits for the ready line of a host started with [`HostBuilder::start_loading`].
    pub fn wait_until_ready(&self) {
        let ready = self.output.wait_for_event("ready", START_TIMEOUT);
        assert!(
            ready.is_some(),
            "sluice did not get ready; it printed:\n{}",
            self.output.text()
        );
    }

    /// Sends `signal` (`libc::SIGTERM`, ...) to the running host.
    pub fn signal(&self, signal: i32) {
        if let Some(child) = &self.child {
            // SAFETY: kill(2) on the pid of a child this process started and still holds.
            unsafe {
                libc::kill(child.id() as i32, signal);
            }
        }
    }

    /// The running host's process id (benchmarks read its CPU time in /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        let status = self.child.as_mut().expect("running").wait().unwrap();
        self.child = None;
        status
    }

    /// Waits for the host to exit (after a signal) and answers how it did.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let status = self.child.as_mut().expect("running").wait().unwrap();
        self.child = None;
        status
    }

    /// Sends SIGKILL and waits for the exit.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Stops the host (SIGTERM) and starts it again on the same folders (a new port).
    pub fn restart(&mut self) {
        if self.child.is_some() {
            let status = self.stop();
            assert!(status.success(), "sluice exited with {status} on SIGTERM");
        }
        self.launch();
    }

    /// Starts the host again after a kill or stop.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the host is still running");
        self.launch();
    }

    /// Drops `wasm` into the running host's plugins folder as `<name>.wasm`, the safe way:
    /// written under a hidden temporary name, then renamed into place.
    pub fn drop_plugin(&self, name: &str, wasm: &Path) {
        let temporary = self.plugins.join(format!(".{name}.wasm.partial"));
        std::fs::copy(wasm, &temporary).unwrap_or_else(|e| panic!("cannot copy {}: {e}", wasm.display()));
        std::fs::rename(&temporary, self.plugins.join(format!("{name}.wasm"))).unwrap();
    }

    /// Drops raw bytes into the plugins folder as `<name>.wasm` (write-then-rename).
    pub fn drop_plugin_bytes(&self, name: &str, bytes: &[u8]) {
        let temporary = self.plugins.join(format!(".{name}.wasm.partial"));
        std::fs::write(&temporary, bytes).unwrap();
        std::fs::rename(&temporary, self.plugins.join(format!("{name}.wasm"))).unwrap();
    }

    /// Writes the sidecar `<name>.toml` (write-then-rename).
    pub fn write_sidecar(&self, name: &str, text: &str) {
        let temporary = self.plugins.join(format!(".{name}.toml.partial"));
        std::fs::write(&temporary, text).unwrap();
        std::fs::rename(&temporary, self.plugins.join(format!("{name}.toml"))).unwrap();
    }

    /// Removes `<name>.wasm` from the plugins folder.
    pub fn remove_plugin(&self, name: &str) {
        std::fs::remove_file(self.plugins.join(format!("{name}.wasm"))).unwrap();
    }

    /// How many hot reloads the host finished so far (the admin API's `reloads.count`):
    /// take it before changing the plugins folder, and pass it to [`Host::wait_for_reload`].
    pub fn reloads(&self) -> u64 {
        self.admin_installations()["reloads"]["count"]
            .as_u64()
            .expect("the admin API counts reloads")
    }

    /// Waits until a reload finished after `reloads` (see [`Host::reloads`]) and the admin
    /// API's listing shows what it should have applied (`applied`, said as `what`); returns
    /// that listing. Panics with the last listing and the host's output on timeout.
    pub fn wait_for_reload(
        &self,
        reloads: u64,
        what: &str,
        timeout: Duration,
        applied: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let listing = self.admin_installations();
            let counted = listing["reloads"]["count"]
                .as_u64()
                .is_some_and(|count| count > reloads);
            if counted && applied(&listing) {
                return listing;
            }
            assert!(
                Instant::now() < deadline,
                "no reload applied {what} within {timeout:?}; the admin API shows {listing:#}\nthe host printed:\n{}",
                self.output.text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until a reload after `reloads` installed `name`, and returns its webhook URL.
    pub fn wait_for_installed(&self, reloads: u64, name: &str, timeout: Duration) -> String {
        let listing = self.wait_for_reload(reloads, &format!("a new installation {name}"), timeout, |listing| {
            installation_in(listing, name).is_some()
        });
        installation_in(&listing, name).unwrap()["webhookUrl"]
            .as_str()
            .expect("an installation has a webhook URL")
            .to_string()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends a request; `token` adds the API token.
    pub fn send(&self, request: reqwest::blocking::RequestBuilder) -> Answer {
        let response = request.send().expect("the request reached sluice");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().unwrap_or_default();
        Answer { status, headers, body }
    }

    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// POST with a body, no API token (for webhook URLs).
    pub fn post(&self, url: &str, body: &str) -> Answer {
        self.send(
            self.client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
    }

    /// GET `path` of the API with the API token.
    pub fn api_get(&self, path: &str) -> Answer {
        self.send(self.client.get(self.url(path)).bearer_auth(API_TOKEN))
    }

    /// POST JSON to `path` of the API with the API token.
    pub fn api_post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.client.post(self.url(path)).bearer_auth(API_TOKEN).json(body))
    }

    /// DELETE `path` of the API with the API token.
    pub fn api_delete(&self, path: &str) -> Answer {
        self.send(self.client.delete(self.url(path)).bearer_auth(API_TOKEN))
    }

    /// Uploads a plugin as installation `name` (`PUT /v1/admin/plugins/{name}` with the
    /// API token): the component alone as `application/wasm`, or, with a `sidecar`, a
    /// multipart form of the two.
    pub fn upload_plugin(&self, name: &str, wasm: &[u8], sidecar: Option<&str>) -> Answer {
        let request = self
            .client
            .put(self.url(&format!("/v1/admin/plugins/{name}")))
            .bearer_auth(API_TOKEN);
        let request = match sidecar {
            None => request.header("content-type", "application/wasm").body(wasm.to_vec()),
            Some(sidecar) => {
                let (content_type, body) = multipart_form(&[("component", wasm), ("sidecar", sidecar.as_bytes())]);
                request.header("content-type", content_type).body(body)
            }
        };
        self.send(request)
    }

    /// The admin API's listing, `GET /v1/admin/installations`: installations, failures,
    /// hot reload, the bot.
    pub fn admin_installations(&self) -> Value {
        let answer = self.api_get("/v1/admin/installations");
        assert_eq!(answer.status, 200, "{}", answer.body);
        answer.json()
    }

    /// The admin API's view of installation `name`.
    pub fn installation(&self, name: &str) -> Value {
        let listing = self.admin_installations();
        installation_in(&listing, name)
            .cloned()
            .unwrap_or_else(|| panic!("no installation {name}: {listing}"))
    }

    /// The webhook URL of installation `name`, as the admin API reports it.
    pub fn webhook_url(&self, name: &str) -> String {
        self.installation(name)["webhookUrl"].as_str().unwrap().to_string()
    }

    /// Every event the bot API lists (all pages), newest first, optionally of one type.
    pub fn events(&self, event_type: Option<&str>) -> Vec<Value> {
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = "/v1/chat/events?pageSize=100".to_string();
            if let Some(event_type) = event_type {
                path.push_str(&format!("&type={event_type}"));
            }
            if let Some(token) = &token {
                path.push_str(&format!("&nextToken={token}"));
            }
            let answer = self.api_get(&path);
            assert_eq!(answer.status, 200, "{}", answer.body);
            let page = answer.json();
            events.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["meta"]["nextToken"].as_str() {
                Some(next) => token = Some(next.to_string()),
                None => return events,
            }
        }
    }
}

/// A `multipart/form-data` body of `parts` (name, content), as a browser or `curl -F`
/// sends one: its Content-Type (with the boundary) and its bytes.
pub fn multipart_form(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "sluice-test-boundary-7d3f9a";
    let mut body = Vec::new();
    for (name, content) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// Installation `name` in the admin API's listing ([`Host::admin_installations`]).
pub fn installation_in<'a>(listing: &'a Value, name: &str) -> Option<&'a Value> {
    listing["installations"].as_array()?.iter().find(|i| i["name"] == name)
}

/// The failure listed for plugin file `file` in the admin API's listing.
pub fn failure_in<'a>(listing: &'a Value, file: &str) -> Option<&'a Value> {
    listing["failures"].as_array()?.iter().find(|f| f["file"] == file)
}

/// Polls `check` every 20 ms until it answers `Some`, and returns that; panics after
/// `timeout` saying what never happened.
pub fn eventually<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Triggers (the ChatBotKit-compatible trigger API).
impl Host {
    /// Creates a trigger (with the API token) and returns it; panics unless 200.
    pub fn create_trigger(&self, body: &Value) -> Value {
        let answer = self.api_post("/api/v1/integration/trigger/create", body);
        assert_eq!(answer.status, 200, "creating a trigger: {}", answer.body);
        answer.json()
    }

    /// The event URL of a trigger.
    pub fn trigger_event_url(&self, trigger_id: &str) -> String {
        self.url(&format!("/api/v1/integration/trigger/{trigger_id}/event"))
    }

    /// The trigger's queued event `event_id` (sluice's events API), once it reached
    /// `status`.
    pub fn trigger_event_in(&self, trigger_id: &str, event_id: &str, status: &str) -> Value {
        eventually(
            &format!("event {event_id} to be {status}"),
            Duration::from_secs(60),
            || {
                let answer = self.api_get(&format!("/v1/integration/trigger/{trigger_id}/events/{event_id}"));
                assert_eq!(answer.status, 200, "{}", answer.body);
                let event = answer.json()["event"].clone();
                (event["status"] == status).then_some(event)
            },
        )
    }

    /// The bot API events of `event_type` whose payload's `eventId` is `event_id`.
    pub fn events_of(&self, event_type: &str, event_id: &str) -> Vec<Value> {
        self.events(Some(event_type))
            .into_iter()
            .filter(|e| e["payload"]["eventId"] == event_id)
            .collect()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The plugin toolchains scripts/setup installs in guest-tools/ (componentize-py in
/// `.venv`, componentize-js and jco in `node_modules`).
pub fn guest_tool(name: &str) -> PathBuf {
    let tools = repo_root().join("guest-tools");
    let path = match name {
        "componentize-py" => tools.join(".venv/bin/componentize-py"),
        "componentize-js" => tools.join("node_modules/.bin/componentize-js"),
        "jco" => tools.join("node_modules/.bin/jco"),
        other => panic!("no guest tool {other}"),
    };
    assert!(path.exists(), "{} is missing: run scripts/setup", path.display());
    path
}

/// The contract folder guests are built against.
pub fn wit_dir() -> PathBuf {
    repo_root().join("wit")
}

/// Builds a Python plugin: `componentize-py -d WIT -w integration componentize MODULE`
/// in `dir`, writing `out`.
pub fn build_python_plugin(dir: &Path, module: &str, wit: &Path, out: &Path) {
    run(
        Command::new(guest_tool("componentize-py"))
            .current_dir(dir)
            .arg("-d")
            .arg(wit)
            .args(["-w", "integration", "componentize", module, "-o"])
            .arg(out),
        &format!("componentize-py on {}", dir.display()),
    );
}

/// Builds a JavaScript plugin: `componentize-js ENTRY --wit WIT --world-name integration`
/// in `dir` (without wasi:http, which these plugins do not use), writing `out`.
pub fn build_js_plugin(dir: &Path, entry: &str, wit: &Path, out: &Path) {
    run(
        Command::new(guest_tool("componentize-js"))
            .current_dir(dir)
            .arg(entry)
            .arg("--wit")
            .arg(wit)
            .args(["--world-name", "integration", "-d", "http", "fetch-event", "-o"])
            .arg(out),
        &format!("componentize-js on {}", dir.display()),
    );
}

/// A hash of every file under `paths` (names and contents), to tell whether a build is
/// still up to date.
fn sources_hash(paths: &[PathBuf]) -> String {
    use sha2::{Digest, Sha256};
    fn walk(path: &Path, files: &mut Vec<PathBuf>) {
        if path.is_dir() {
            for entry in std::fs::read_dir(path).unwrap().flatten() {
                let name = entry.file_name();
                if name == "__pycache__" || name == "node_modules" || name == ".venv" {
                    continue;
                }
                walk(&entry.path(), files);
            }
        } else if path.is_file() {
            files.push(path.to_path_buf());
        }
    }
    let mut files = Vec::new();
    for path in paths {
        walk(path, &mut files);
    }
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(file.to_string_lossy().as_bytes());
        hasher.update(std::fs::read(&file).unwrap());
    }
    format!("{:x}", hasher.finalize())
}

/// Holds an exclusive lock on `path` (flock) until dropped, so parallel test processes
/// build a guest (or start the test database) once.
struct FileLock(#[allow(dead_code, reason = "held for its lock")] std::fs::File);

impl FileLock {
    fn acquire(path: &Path) -> FileLock {
        use std::os::fd::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", path.display()));
        // SAFETY: flock(2) on a descriptor this struct owns.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        assert_eq!(locked, 0, "cannot lock {}", path.display());
        FileLock(file)
    }
}

/// Builds `<target>/guests/<language>/<name>.wasm` with `build` unless a build of the same
/// sources (`inputs`) is already there. Python and JavaScript builds take tens of seconds,
/// and every test runs in its own process, so the result is kept across processes.
fn cached_build(language: &str, name: &str, inputs: &[PathBuf], build: impl FnOnce(&Path)) -> PathBuf {
    let dir = target_dir().join("guests").join(language);
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("{name}.wasm"));
    let stamp = dir.join(format!("{name}.sources"));
    let _lock = FileLock::acquire(&dir.join(format!("{name}.lock")));
    let hash = sources_hash(inputs);
    if out.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == hash) {
        return out;
    }
    let partial = dir.join(format!("{name}.partial.wasm"));
    build(&partial);
    std::fs::rename(&partial, &out).unwrap();
    std::fs::write(&stamp, hash).unwrap();
    out
}

/// The webhook example (guest-examples/webhook*) built from source in `language`
/// (`rust`, `python`, `js` or `c`).
pub fn webhook_build(language: &str) -> PathBuf {
    let examples = repo_root().join("guest-examples");
    let tools = repo_root().join("guest-tools");
    match language {
        "rust" => guest("webhook"),
        "python" => {
            let dir = examples.join("webhook-python");
            let inputs = [dir.clone(), wit_dir(), tools.join("requirements.txt")];
            cached_build("python", "webhook", &inputs, |out| {
                build_python_plugin(&dir, "app", &wit_dir(), out)
            })
        }
        "js" => {
            let dir = examples.join("webhook-js");
            let inputs = [dir.clone(), wit_dir(), tools.join("package-lock.json")];
            cached_build("js", "webhook", &inputs, |out| {
                build_js_plugin(&dir, "webhook.js", &wit_dir(), out)
            })
        }
        "c" => {
            let dir = examples.join("webhook-c");
            let inputs = [dir.clone(), tools.join("c"), tools.join("package-lock.json")];
            cached_build("c", "webhook", &inputs, |out| {
                run(
                    Command::new(dir.join("build.sh"))
                        .arg(out)
                        .env("JCO", guest_tool("jco")),
                    "guest-examples/webhook-c/build.sh",
                )
            })
        }
        other => panic!("no webhook build in {other}"),
    }
}
