//! Load from `wrk`, pinned to its own CPU: the webhook body POSTed over a fixed number of
//! keep-alive connections; requests/s and the latency percentiles wrk reports.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
pub struct LoadResult {
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// How wrk is run.
pub struct Load<'a> {
    pub cpu: usize,
    pub connections: usize,
    /// The Lua script that sets the method, headers and body.
    pub script: &'a Path,
}

/// The Lua script making every request a POST of `body_file`.
pub fn post_script(body_file: &Path) -> String {
    format!(
        "local f = assert(io.open({path:?}, \"rb\"))\n\
         wrk.method = \"POST\"\n\
         wrk.body = f:read(\"*a\")\n\
         f:close()\n\
         wrk.headers[\"Content-Type\"] = \"application/json\"\n",
        path = body_file.display().to_string()
    )
}

impl Load<'_> {
    /// Runs wrk against `url` for `duration`. Fails when any answer was not 2xx or a
    /// socket failed: such a run measures something else than the work.
    pub fn run(&self, url: &str, duration: Duration) -> anyhow::Result<LoadResult> {
        let seconds = duration.as_secs_f64().ceil().max(1.0) as u64;
        let output = Command::new("taskset")
            .arg("-c")
            .arg(self.cpu.to_string())
            .arg("wrk")
            .args(["-t1", "--latency", "--timeout", "10s"])
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{seconds}s"))
            .arg("-s")
            .arg(self.script)
            .arg(url)
            .output()
            .context("cannot run wrk (install it: apt-get install wrk)")?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        if !output.status.success() {
            bail!(
                "wrk failed ({}):\n{text}\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
        parse(&text).with_context(|| format!("cannot read wrk's report:\n{text}"))
    }
}

/// Reads wrk's report (`--latency`).
pub fn parse(text: &str) -> anyhow::Result<LoadResult> {
    let mut requests_per_s = None;
    let mut p50 = None;
    let mut p99 = None;
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", value] => requests_per_s = Some(value.parse::<f64>()?),
            ["50%", value] => p50 = Some(milliseconds(value)?),
            ["99%", value] => p99 = Some(milliseconds(value)?),
            ["Non-2xx", "or", "3xx", "responses:", count] => {
                bail!("{count} answers were not 2xx: the server failed under load")
            }
            ["Socket", "errors:", ..] => bail!("wrk saw socket errors: {line}"),
            _ => {}
        }
    }
    Ok(LoadResult {
        requests_per_s: requests_per_s.context("no Requests/sec line")?,
        p50_ms: p50.context("no 50% latency line")?,
        p99_ms: p99.context("no 99% latency line")?,
    })
}

/// `265.55us`, `1.20ms`, `2.00s` → milliseconds.
fn milliseconds(value: &str) -> anyhow::Result<f64> {
    let (number, scale) = if let Some(n) = value.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = value.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = value.strip_suffix('s') {
        (n, 1000.0)
    } else {
        bail!("latency {value} has no unit")
    };
    Ok(number.parse::<f64>().with_context(|| format!("latency {value}"))? * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 10s test @ http://127.0.0.1:8080/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   265.55us   45.32us   2.10ms   90.12%
    Req/Sec   121.00k     3.12k  125.00k    75.00%
  Latency Distribution
     50%  260.00us
     75%  280.00us
     90%  300.00us
     99%    1.40ms
  1210000 requests in 10.00s, 200.00MB read
Requests/sec: 121000.50
Transfer/sec:     20.00MB
";

    #[test]
    fn reads_throughput_and_percentiles() {
        let result = parse(REPORT).unwrap();
        assert_eq!(result.requests_per_s, 121000.5);
        assert!((result.p50_ms - 0.26).abs() < 1e-9);
        assert!((result.p99_ms - 1.4).abs() < 1e-9);
    }

    #[test]
    fn failed_answers_make_the_run_invalid() {
        let report = REPORT.replace("Requests/sec", "  Non-2xx or 3xx responses: 12\nRequests/sec");
        assert!(parse(&report).unwrap_err().to_string().contains("12 answers"));
        let report = REPORT.replace(
            "Requests/sec",
            "  Socket errors: connect 0, read 3, write 0, timeout 0\nRequests/sec",
        );
        assert!(parse(&report).unwrap_err().to_string().contains("socket errors"));
    }
}
