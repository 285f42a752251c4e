//! Script rows: an executable that measures one round of something wrk cannot drive
//! (queued ingest, delivery fan-out) and reports it in one line.
//!
//! The driver runs it once per round, with its arguments and these environment variables:
//! `BENCH_DURATION_S` (measured seconds), `BENCH_WARMUP_S` (warm-up seconds before),
//! `BENCH_CONNECTIONS`, `BENCH_SERVER_CPU` and `BENCH_LOAD_CPU` (pin with
//! `taskset -c`), `BENCH_SLUICE` (the release `sluice` binary the row measures), `BENCH_NATIVE` (the
//! `bench-native` binary), `BENCH_SMOKE` (`1` in smoke mode). Its last output line
//! starting with `result ` carries `key=value` pairs: `per_s` (throughput) and
//! `p50_ms`, `p99_ms` (latency), and optionally `rss_idle_kib`, `rss_load_kib` (the
//! server's resident size). It exits 0 when the round is valid (every answer correct),
//! anything else otherwise.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::Options;

/// What a script reported for one round.
#[derive(Debug, Clone, Copy)]
pub struct ScriptResult {
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub rss_idle_kib: Option<u64>,
    pub rss_load_kib: Option<u64>,
}

/// A round whose script ran but found it not valid (some answer failed): what it said.
#[derive(Debug)]
pub struct InvalidRound {
    /// The script's last line on stderr, its verdict.
    pub summary: String,
    pub output: String,
}

impl std::fmt::Display for InvalidRound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n{}", self.summary, self.output)
    }
}

impl std::error::Error for InvalidRound {}

pub fn run(path: &Path, args: &[String], sluice: &Path, options: &Options) -> anyhow::Result<ScriptResult> {
    let output = Command::new(path)
        .args(args)
        .env("BENCH_DURATION_S", options.duration.to_string())
        .env("BENCH_WARMUP_S", options.warmup.to_string())
        .env("BENCH_CONNECTIONS", options.connections.to_string())
        .env("BENCH_SERVER_CPU", options.server_cpu.to_string())
        .env("BENCH_LOAD_CPU", options.load_cpu.to_string())
        .env("BENCH_SLUICE", sluice)
        .env("BENCH_NATIVE", &options.native)
        .env("BENCH_SMOKE", if options.smoke { "1" } else { "0" })
        .output()
        .with_context(|| format!("cannot run {}", path.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let summary = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .to_string();
        return Err(InvalidRound {
            summary: format!("{} failed ({}): {summary}", path.display(), output.status),
            output: format!("{stdout}\n{stderr}"),
        }
        .into());
    }
    parse(&stdout).with_context(|| format!("{} printed no valid `result` line:\n{stdout}", path.display()))
}

pub fn parse(output: &str) -> anyhow::Result<ScriptResult> {
    let line = output
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("result "))
        .context("no line starts with `result `")?;
    let pairs: HashMap<&str, &str> = line
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let number = |key: &str| -> anyhow::Result<f64> {
        pairs
            .get(key)
            .with_context(|| format!("`{key}=` is missing"))?
            .parse()
            .with_context(|| format!("`{key}=` is not a number"))
    };
    let optional = |key: &str| pairs.get(key).and_then(|v| v.parse().ok());
    Ok(ScriptResult {
        per_s: number("per_s")?,
        p50_ms: number("p50_ms")?,
        p99_ms: number("p99_ms")?,
        rss_idle_kib: optional("rss_idle_kib"),
        rss_load_kib: optional("rss_load_kib"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_result_line() {
        let result = parse("warming up\nresult per_s=1 p50_ms=2 p99_ms=3\nresult per_s=1200.5 p50_ms=0.8 p99_ms=2.5 rss_load_kib=20480\n").unwrap();
        assert_eq!(result.per_s, 1200.5);
        assert_eq!(result.p99_ms, 2.5);
        assert_eq!(result.rss_idle_kib, None);
        assert_eq!(result.rss_load_kib, Some(20480));
    }

    #[test]
    fn says_what_is_missing() {
        let error = parse("result per_s=10 p50_ms=1\n").unwrap_err();
        assert!(error.to_string().contains("p99_ms"), "{error}");
        assert!(parse("nothing\n").is_err());
    }
}
