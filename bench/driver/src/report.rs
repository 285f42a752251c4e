//! The table: medians with min–max over the rounds, ratios to the limit (a) and the
//! peer (c), resident memory, the sandbox micro-benchmarks, and the targets.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::Value;

/// One measured round of one configuration.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// Requests (or events, deliveries) per second.
    pub per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Everything measured for one configuration.
#[derive(Debug)]
pub struct RowReport {
    pub key: &'static str,
    pub label: String,
    pub skipped: Option<String>,
    pub samples: Vec<Measurement>,
    /// Rounds of a script row that were not valid (some answer failed), with why; they
    /// count in no figure.
    pub invalid: Vec<String>,
    pub rss_idle_kib: Vec<u64>,
    pub rss_load_kib: Vec<u64>,
}

/// How the run was made.
#[derive(Debug)]
pub struct Setting {
    pub rounds: usize,
    pub duration: u64,
    pub warmup: u64,
    pub connections: usize,
    pub server_cpu: usize,
    pub load_cpu: usize,
    pub load_before: Option<f64>,
    pub load_after: Option<f64>,
    /// How the machine's idle CPUs wait (see `idle_cpus` in main.rs).
    pub idle_cpus: Option<String>,
    pub smoke: bool,
}

/// One criterion micro-benchmark: its id and median time per iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct MicroResult {
    pub id: String,
    pub median_ns: f64,
}

/// Median, minimum and maximum.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

pub fn spread(values: impl IntoIterator<Item = f64>) -> Option<Spread> {
    let mut values: Vec<f64> = values.into_iter().collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    let median = if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    };
    Some(Spread {
        median,
        min: values[0],
        max: values[values.len() - 1],
    })
}

impl RowReport {
    fn throughput(&self) -> Option<Spread> {
        spread(self.samples.iter().map(|s| s.per_s))
    }

    fn p50(&self) -> Option<Spread> {
        spread(self.samples.iter().map(|s| s.p50_ms))
    }

    fn p99(&self) -> Option<Spread> {
        spread(self.samples.iter().map(|s| s.p99_ms))
    }
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn milliseconds(spread: Option<Spread>) -> String {
    match spread {
        Some(s) => format!("{:.2} ({:.2}–{:.2})", s.median, s.min, s.max),
        None => "–".into(),
    }
}

fn mebibytes(values: &[u64]) -> String {
    match spread(values.iter().map(|&v| v as f64)) {
        Some(s) => format!("{:.1} MiB", s.median / 1024.0),
        None => "–".into(),
    }
}

fn find<'a>(reports: &'a [RowReport], key: &str) -> Option<&'a RowReport> {
    reports.iter().find(|r| r.key == key && !r.samples.is_empty())
}

/// The whole report as text (a Markdown table and a few lines).
pub fn render(setting: &Setting, reports: &[RowReport], micro: &[MicroResult]) -> String {
    let mut out = String::new();
    let load = |value: Option<f64>| value.map(|v| format!("{v:.2}")).unwrap_or_else(|| "?".into());
    let _ = writeln!(
        out,
        "\n{}{} round(s) × {} s measured after {} s warm-up, alternating; {} connections; \
         server on CPU {}, wrk on CPU {}; load average {} before, {} after{}",
        if setting.smoke {
            "SMOKE RUN (numbers not meaningful): "
        } else {
            ""
        },
        setting.rounds,
        setting.duration,
        setting.warmup,
        setting.connections,
        setting.server_cpu,
        setting.load_cpu,
        load(setting.load_before),
        load(setting.load_after),
        match &setting.idle_cpus {
            Some(idle) => format!("; idle CPUs: {idle}"),
            None => String::new(),
        },
    );
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "| configuration | per second, median (min–max) | p50 ms | p99 ms | vs (a) | vs (c) | RSS idle | RSS under load |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let limit = find(reports, "a").and_then(RowReport::throughput);
    let peer = find(reports, "c").and_then(RowReport::throughput);
    for report in reports {
        let name = format!("({}) {}", report.key, report.label);
        if let Some(reason) = &report.skipped {
            let _ = writeln!(out, "| {name} | not run: {reason} | | | | | | |");
            continue;
        }
        let name = match report.invalid.len() {
            0 => name,
            n => format!(
                "{name} ({n} of {} rounds invalid, left out: {})",
                n + report.samples.len(),
                report.invalid[0]
            ),
        };
        let Some(throughput) = report.throughput() else {
            let _ = writeln!(out, "| {name} | no measurement | | | | | | |");
            continue;
        };
        // Only (a)-(c) do the same work; other rows have their own units.
        let comparable = ["a", "b", "c"].contains(&report.key);
        let versus_limit = limit
            .filter(|_| comparable)
            .map(|l| format!("{:.1}%", 100.0 * throughput.median / l.median))
            .unwrap_or_else(|| "–".into());
        let versus_peer = peer
            .filter(|_| comparable)
            .map(|p| format!("{:.1}×", throughput.median / p.median))
            .unwrap_or_else(|| "–".into());
        let _ = writeln!(
            out,
            "| {name} | {} ({}–{}) | {} | {} | {versus_limit} | {versus_peer} | {} | {} |",
            thousands(throughput.median),
            thousands(throughput.min),
            thousands(throughput.max),
            milliseconds(report.p50()),
            milliseconds(report.p99()),
            mebibytes(&report.rss_idle_kib),
            mebibytes(&report.rss_load_kib),
        );
    }

    render_reference(&mut out, reports);
    render_fan_out(&mut out, reports);

    if !micro.is_empty() {
        let _ = writeln!(out, "\nSandbox cost per request, in process (criterion, median):");
        for result in micro {
            let _ = writeln!(out, "  {:<62} {:>9.2} µs", result.id, result.median_ns / 1000.0);
        }
    }

    if !setting.smoke {
        let _ = writeln!(out, "\nTargets:");
        let sluice = find(reports, "b");
        let verdict = |met: bool| if met { "met" } else { "MISSED" };
        match (sluice.and_then(RowReport::throughput), limit) {
            (Some(b), Some(a)) => {
                let ratio = b.median / a.median;
                let _ = writeln!(
                    out,
                    "  (b) ≥ {:.0}% of (a) requests/s: {:.1}% ({})",
                    100.0 * SHARE_OF_LIMIT,
                    100.0 * ratio,
                    verdict(ratio >= SHARE_OF_LIMIT)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  (b) ≥ {:.0}% of (a) requests/s: not measured",
                    100.0 * SHARE_OF_LIMIT
                );
            }
        }
        match (sluice.and_then(RowReport::throughput), peer) {
            (Some(b), Some(c)) => {
                let ratio = b.median / c.median;
                let _ = writeln!(
                    out,
                    "  (b) ≥ {MULTIPLE_OF_PEER}× (c) requests/s: {ratio:.1}× ({})",
                    verdict(ratio >= MULTIPLE_OF_PEER)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  (b) ≥ {MULTIPLE_OF_PEER}× (c) requests/s: not measured (no wasmtime)"
                );
            }
        }
        let speed = limit.map(|a| MachineSpeed::of_run(a.median, peer.map(|c| c.median)));
        if let Some(p99) = sluice.and_then(RowReport::p99) {
            let _ = writeln!(
                out,
                "  (b) p99 ≤ {P99_MS} ms: {:.2} ms ({})",
                p99.median,
                verdict(p99.median <= P99_MS)
            );
            if let Some(speed) = &speed {
                let _ = writeln!(out, "{}", speed.judge(P99_MS, p99.median, "ms"));
            }
        }
        match micro.iter().find(|m| m.id == RUST_HANDLER_MICRO) {
            Some(m) => {
                let micros = m.median_ns / 1000.0;
                let _ = writeln!(
                    out,
                    "  fresh instance + call of the Rust plugin ≤ {CALL_MICROS} µs: {micros:.2} µs ({})",
                    verdict(micros <= CALL_MICROS)
                );
                if let Some(speed) = &speed {
                    let _ = writeln!(out, "{}", speed.judge(CALL_MICROS, micros, "µs"));
                }
                let median_of = |id: &str| micro.iter().find(|m| m.id == id).map(|m| m.median_ns / 1000.0);
                if let (Some(floor), Some(native)) = (median_of(RUST_FLOOR_MICRO), median_of(NATIVE_WORK_MICRO)) {
                    let _ = writeln!(
                        out,
                        "    of which the fresh instance alone (instantiate + drop) {floor:.2} µs; \
                         the same work natively {native:.2} µs"
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "  fresh instance + call of the Rust plugin ≤ {CALL_MICROS} µs: not measured (run without --no-micro)"
                );
            }
        }
        let _ = writeln!(out, "{}", fan_out_target(reports));
    }
    out
}

/// This build against the reference build (`--reference-sluice`): the ratio of the
/// medians, and round by round (each round measured both, one after the other).
fn render_reference(out: &mut String, reports: &[RowReport]) {
    let pairs: Vec<_> = ["b", "d", "e"]
        .into_iter()
        .filter_map(|key| {
            let reference = format!("{key}-ref");
            Some((key, find(reports, key)?, find(reports, &reference)?))
        })
        .collect();
    if pairs.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nThis build against the reference build (per second, this ÷ reference):"
    );
    for (key, this, reference) in pairs {
        let (Some(a), Some(b)) = (this.throughput(), reference.throughput()) else {
            continue;
        };
        let by_round = if this.samples.len() == reference.samples.len() {
            let ratios: Vec<String> = this
                .samples
                .iter()
                .zip(&reference.samples)
                .map(|(t, r)| format!("{:.3}", t.per_s / r.per_s))
                .collect();
            format!("; by round {}", ratios.join(", "))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "  ({key}) {} vs {}: {:.3}{by_round}",
            thousands(a.median),
            thousands(b.median),
            a.median / b.median
        );
    }
}

/// Delivery fan-out at saturation against its limit: (e) and (e0) found the highest rate
/// they sustain by the same search, in the same rounds.
fn render_fan_out(out: &mut String, reports: &[RowReport]) {
    let (Some(sluice), Some(limit)) = (find(reports, "e"), find(reports, "e0")) else {
        return;
    };
    let (Some(e), Some(e0)) = (sluice.throughput(), limit.throughput()) else {
        return;
    };
    let by_round = if sluice.samples.len() == limit.samples.len() {
        let ratios: Vec<String> = sluice
            .samples
            .iter()
            .zip(&limit.samples)
            .map(|(s, l)| format!("{:.1}%", 100.0 * s.per_s / l.per_s))
            .collect();
        format!("; by round {}", ratios.join(", "))
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "\nDelivery fan-out at saturation (events/s sustained, each to 4 subscriptions): (e) {}, (e0) {}: {:.1}%{by_round}",
        thousands(e.median),
        thousands(e0.median),
        100.0 * e.median / e0.median
    );
}

/// The fan-out target's line: (e) against (e0), both at saturation.
fn fan_out_target(reports: &[RowReport]) -> String {
    const TARGET: &str = "  (e) ≥ 75% of (e0) at saturation";
    match (
        find(reports, "e").and_then(RowReport::throughput),
        find(reports, "e0").and_then(RowReport::throughput),
    ) {
        (Some(e), Some(e0)) => {
            let ratio = e.median / e0.median;
            format!(
                "{TARGET}: {:.1}% ({})",
                100.0 * ratio,
                if ratio >= 0.75 { "met" } else { "MISSED" }
            )
        }
        _ => format!("{TARGET}: not measured (run without --quick)"),
    }
}

/// The targets (performance, round two): (b)'s requests/s as a share of (a)'s and a
/// multiple of (c)'s, (b)'s p99, and a fresh instance + call of the Rust bench plugin.
const SHARE_OF_LIMIT: f64 = 0.55;
const MULTIPLE_OF_PEER: f64 = 5.0;
const P99_MS: f64 = 1.5;
const CALL_MICROS: f64 = 10.0;

/// The figures the targets were set beside (`bench/run --quick`, 2026-12-02), measured on
/// this machine with the same method: (a) and (c) in requests per second.
const TARGETS_SET_AT_LIMIT: f64 = 78_859.0;
const TARGETS_SET_AT_PEER: f64 = 10_322.0;

/// How much slower this run's machine is than the one the targets were set on.
///
/// This machine's speed changes from day to day (the same build measured 17 to 44 µs per
/// call on different days), so a target in absolute time (the p99, the per-call time) is
/// also judged against references measured in the same run: (a) and (c) against the
/// figures they had when the targets were set. Of their two slow-downs the smaller is
/// applied, the stricter reading.
struct MachineSpeed {
    slow_down: f64,
    references: String,
}

impl MachineSpeed {
    fn of_run(limit: f64, peer: Option<f64>) -> MachineSpeed {
        let by_limit = TARGETS_SET_AT_LIMIT / limit;
        match peer {
            Some(peer) => MachineSpeed {
                slow_down: by_limit.min(TARGETS_SET_AT_PEER / peer),
                references: format!(
                    "(a) {} and (c) {} per second then, {} and {} in this run",
                    thousands(TARGETS_SET_AT_LIMIT),
                    thousands(TARGETS_SET_AT_PEER),
                    thousands(limit),
                    thousands(peer)
                ),
            },
            None => MachineSpeed {
                slow_down: by_limit,
                references: format!(
                    "(a) {} per second then, {} in this run",
                    thousands(TARGETS_SET_AT_LIMIT),
                    thousands(limit)
                ),
            },
        }
    }

    /// The verdict on `measured` against `target` (both in `unit`) scaled to this speed.
    fn judge(&self, target: f64, measured: f64, unit: &str) -> String {
        let here = target * self.slow_down;
        format!(
            "    at the speed of the machine the targets were set on ({}; slow-down {:.2}×): \
             ≤ {here:.2} {unit} here: {measured:.2} {unit} ({})",
            self.references,
            self.slow_down,
            if measured <= here { "met" } else { "MISSED" }
        )
    }
}

/// The micro-benchmark the per-call target is judged on.
pub const RUST_HANDLER_MICRO: &str = "sandbox/bench (Rust)/instantiate + handler + drop";

/// The same plugin instantiated and dropped without a call: the part of every call that
/// is wasmtime's fresh instance.
pub const RUST_FLOOR_MICRO: &str = "sandbox/bench (Rust)/instantiate + drop";

/// The bench plugin's work run natively, without a sandbox.
pub const NATIVE_WORK_MICRO: &str = "sandbox/native (Rust)/bench work";

/// Every `sandbox/...` micro-benchmark criterion has results for under `dir`.
pub fn criterion_estimates(dir: &Path) -> Vec<MicroResult> {
    let mut found = Vec::new();
    collect(dir, &mut found);
    found.sort_by(|a, b| a.id.cmp(&b.id));
    found
}

fn collect(dir: &Path, found: &mut Vec<MicroResult>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            if let Some(result) = read_estimate(&path) {
                found.push(result);
            }
        } else if path.file_name().is_some_and(|n| n != "base" && n != "report") {
            collect(&path, found);
        }
    }
}

fn read_estimate(dir: &Path) -> Option<MicroResult> {
    let read =
        |name: &str| -> Option<Value> { serde_json::from_str(&std::fs::read_to_string(dir.join(name)).ok()?).ok() };
    let benchmark = read("benchmark.json")?;
    let estimates = read("estimates.json")?;
    let id = benchmark["full_id"].as_str()?.to_string();
    if !id.starts_with("sandbox/") {
        return None;
    }
    Some(MicroResult {
        id,
        median_ns: estimates["median"]["point_estimate"].as_f64()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(key: &'static str, per_s: &[f64]) -> RowReport {
        RowReport {
            key,
            label: format!("row {key}"),
            skipped: None,
            invalid: Vec::new(),
            samples: per_s
                .iter()
                .map(|&per_s| Measurement {
                    per_s,
                    p50_ms: 0.5,
                    p99_ms: 1.5,
                })
                .collect(),
            rss_idle_kib: vec![10 * 1024],
            rss_load_kib: vec![20 * 1024],
        }
    }

    /// A run of two 10-second rounds, as the tests render it unless they say otherwise.
    fn two_rounds() -> Setting {
        Setting {
            rounds: 2,
            duration: 10,
            warmup: 2,
            connections: 32,
            server_cpu: 0,
            load_cpu: 1,
            load_before: None,
            load_after: None,
            idle_cpus: None,
            smoke: false,
        }
    }

    #[test]
    fn spread_takes_the_median() {
        assert_eq!(
            spread([3.0, 1.0, 2.0]),
            Some(Spread {
                median: 2.0,
                min: 1.0,
                max: 3.0
            })
        );
        assert_eq!(spread([4.0, 1.0]).unwrap().median, 2.5);
        assert_eq!(spread([]), None);
    }

    #[test]
    fn a_reference_build_is_compared_round_by_round() {
        let setting = two_rounds();
        let text = render(
            &setting,
            &[row("b", &[40_000.0, 44_000.0]), row("b-ref", &[40_000.0, 40_000.0])],
            &[],
        );
        assert!(
            text.contains("(b) 42,000 vs 40,000: 1.050; by round 1.000, 1.100"),
            "{text}"
        );
    }

    #[test]
    fn the_table_has_ratios_and_verdicts() {
        let setting = Setting {
            rounds: 3,
            load_before: Some(0.5),
            idle_cpus: Some("cpuidle haltpoll, halt polling up to 0 µs".into()),
            ..two_rounds()
        };
        let reports = [
            row("a", &[100_000.0, 120_000.0, 110_000.0]),
            row("b", &[40_000.0, 44_000.0, 42_000.0]),
            row("c", &[9_000.0, 8_000.0, 10_000.0]),
        ];
        let micro = [MicroResult {
            id: RUST_HANDLER_MICRO.into(),
            median_ns: 12_345.0,
        }];
        let text = render(&setting, &reports, &micro);
        assert!(text.contains("| (b) row b | 42,000 (40,000–44,000) |"), "{text}");
        assert!(text.contains("38.2%"), "{text}");
        assert!(text.contains("4.7×"), "{text}");
        assert!(text.contains("(b) ≥ 55% of (a) requests/s: 38.2% (MISSED)"), "{text}");
        assert!(text.contains("(b) ≥ 5× (c) requests/s: 4.7× (MISSED)"), "{text}");
        assert!(text.contains("≤ 10 µs: 12.35 µs (MISSED)"), "{text}");
        // (a) 110,000/s is 0.72× of 78,859/s's time (faster), (c) 9,000/s 1.15× (slower
        // than 10,322/s): the stricter 0.72× applies.
        assert!(
            text.contains(
                "(a) 78,859 and (c) 10,322 per second then, 110,000 and 9,000 in this run; slow-down 0.72×): \
                 ≤ 7.17 µs here: 12.35 µs (MISSED)"
            ),
            "{text}"
        );
        assert!(text.contains("10.0 MiB"), "{text}");
        assert!(
            text.contains("; idle CPUs: cpuidle haltpoll, halt polling up to 0 µs"),
            "{text}"
        );
    }

    #[test]
    fn the_call_target_shows_the_fresh_instance_and_the_native_work() {
        let micro = |id: &str, median_ns: f64| MicroResult {
            id: id.into(),
            median_ns,
        };
        let text = render(
            &two_rounds(),
            &[],
            &[
                micro(RUST_HANDLER_MICRO, 18_000.0),
                micro(RUST_FLOOR_MICRO, 8_250.0),
                micro(NATIVE_WORK_MICRO, 3_000.0),
            ],
        );
        assert!(
            text.contains(
                "≤ 10 µs: 18.00 µs (MISSED)\n    of which the fresh instance alone (instantiate + drop) 8.25 µs; \
                 the same work natively 3.00 µs"
            ),
            "{text}"
        );
        let without = render(&two_rounds(), &[], &[micro(RUST_HANDLER_MICRO, 18_000.0)]);
        assert!(!without.contains("of which"), "{without}");
    }

    #[test]
    fn fan_out_is_judged_against_its_limit_at_saturation() {
        let setting = two_rounds();
        let text = render(
            &setting,
            &[row("e0", &[5_000.0, 5_200.0]), row("e", &[3_900.0, 3_800.0])],
            &[],
        );
        assert!(
            text.contains("(e) 3,850, (e0) 5,100: 75.5%; by round 78.0%, 73.1%"),
            "{text}"
        );
        assert!(text.contains("(e) ≥ 75% of (e0) at saturation: 75.5% (met)"), "{text}");
        let missed = render(&setting, &[row("e0", &[5_000.0]), row("e", &[2_500.0])], &[]);
        assert!(missed.contains("at saturation: 50.0% (MISSED)"), "{missed}");
        let unmeasured = render(&setting, &[row("e", &[2_500.0])], &[]);
        assert!(unmeasured.contains("at saturation: not measured"), "{unmeasured}");
    }

    #[test]
    fn absolute_targets_follow_the_machine_s_speed() {
        // Half the speed the targets were set at: twice the time.
        let slower = MachineSpeed::of_run(TARGETS_SET_AT_LIMIT / 2.0, None).judge(10.0, 15.0, "µs");
        assert!(
            slower.ends_with("slow-down 2.00×): ≤ 20.00 µs here: 15.00 µs (met)"),
            "{slower}"
        );
        // Half the speed by (a), but (c) runs as fast as then: the stricter reading holds.
        let stricter =
            MachineSpeed::of_run(TARGETS_SET_AT_LIMIT / 2.0, Some(TARGETS_SET_AT_PEER)).judge(1.5, 1.6, "ms");
        assert!(
            stricter.ends_with("slow-down 1.00×): ≤ 1.50 ms here: 1.60 ms (MISSED)"),
            "{stricter}"
        );
    }

    #[test]
    fn smoke_runs_judge_nothing() {
        let setting = Setting {
            rounds: 1,
            duration: 1,
            warmup: 0,
            smoke: true,
            ..two_rounds()
        };
        let text = render(&setting, &[row("a", &[1.0])], &[]);
        assert!(text.contains("SMOKE RUN"));
        assert!(!text.contains("Targets"));
    }
}
