//! A Prometheus server for the metrics tests: Debian's `prometheus` (scripts/setup
//! installs it) on a free loopback port, scraping one target every second, with its
//! storage in a temporary folder; queried through its HTTP API as a dashboard would.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A running `prometheus`; stopped on drop.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    _dir: tempfile::TempDir,
    child: Child,
    client: reqwest::blocking::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`host:port`) at `metrics_path` every second,
    /// and waits until it is ready.
    pub fn scraping(target: &str, metrics_path: &str) -> Prometheus {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\nscrape_configs:\n  - job_name: sluice\n    metrics_path: {metrics_path}\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free loopback port")
            .port();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start prometheus: run scripts/setup --tests (it installs Debian's prometheus)");
        let prometheus = Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
            child,
            client: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let ready = super::wait_until(Duration::from_secs(60), || {
            prometheus
                .client
                .get(format!("{}/-/ready", prometheus.base))
                .send()
                .is_ok_and(|answer| answer.status().is_success())
        });
        assert!(ready, "prometheus did not get ready on {}", prometheus.base);
        prometheus
    }

    /// The result of an instant query (`/api/v1/query`): `data.result`.
    pub fn query(&self, query: &str) -> Vec<Value> {
        let answer: Value = self
            .client
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", query)])
            .send()
            .and_then(|answer| answer.json())
            .unwrap_or_else(|error| panic!("prometheus did not answer {query}: {error}"));
        assert_eq!(answer["status"], "success", "{query}: {answer}");
        answer["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value `query` answers, once it answers one (scrapes come every second).
    pub fn value(&self, query: &str) -> Option<f64> {
        let result = self.query(query);
        let [series] = result.as_slice() else { return None };
        series["value"][1].as_str()?.parse().ok()
    }

    /// Waits until `query` answers `expected` (a later scrape may be needed); panics with
    /// the last answer when it does not within a minute.
    pub fn wait_for_value(&self, query: &str, expected: f64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let value = self.value(query);
            if value == Some(expected) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus answers {value:?} to {query}, not {expected}: {:?}",
                self.query(query)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
