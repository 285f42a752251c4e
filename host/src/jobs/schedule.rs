//! Trigger schedules: cron expressions (checked when a trigger is created or updated)
//! and the scheduler that queues a trigger's run each time its schedule comes due.
//!
//! An expression has the standard 5 fields (minute hour day-of-month month day-of-week)
//! or, as an extension, 6 with seconds first (`*/10 * * * * *`: every ten seconds);
//! `@hourly`, `@daily`, `@weekly`, `@monthly` and `@yearly` work too. It is read in the
//! trigger's `timezone` (IANA name, UTC by default). Runs missed while sluice was not
//! running are not made up: after a start the next run is the next one from now.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use tokio::sync::Notify;

use crate::time::now_ms;

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    timezone: chrono_tz::Tz,
}

impl Schedule {
    /// Checks an expression and a time zone; the error names the problem and says what
    /// is accepted.
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Schedule, String> {
        let timezone = match timezone {
            None => chrono_tz::UTC,
            Some(name) => chrono_tz::Tz::from_str(name).map_err(|_| {
                format!("timezone {name:?} is not an IANA time zone name (for example \"Europe/Berlin\" or \"UTC\")")
            })?,
        };
        let fields = expression.split_whitespace().count();
        if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "triggerSchedule {expression:?} has {fields} field(s); a cron expression has 5 \
                 (minute hour day-of-month month day-of-week, for example \"0 0 * * *\"), or 6 with seconds first"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|error| format!("triggerSchedule {expression:?} is not a valid cron expression: {error}"))?;
        let schedule = Schedule { cron, timezone };
        if schedule.next_after(now_ms()).is_none() {
            return Err(format!("triggerSchedule {expression:?} never comes due"));
        }
        Ok(schedule)
    }

    /// The first time (ms) the schedule comes due strictly after `after_ms`.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = self.timezone.timestamp_millis_opt(after_ms).single()?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|next| next.with_timezone(&Utc).timestamp_millis())
    }
}

/// One scheduled trigger: its schedule and when it runs next.
struct Entry {
    /// The expression and time zone it was built from, to notice changes.
    source: (String, Option<String>),
    schedule: Schedule,
    next_at: Option<i64>,
}

/// When each scheduled trigger runs next; the scheduler loop fires them.
#[derive(Default)]
pub struct Timetable {
    entries: Mutex<HashMap<String, Entry>>,
    /// Woken when a schedule changed, so the loop recomputes its sleep.
    pub changed: Notify,
}

impl Timetable {
    /// Sets (or, with `None`, removes) a trigger's schedule. Unchanged schedules keep
    /// their next run.
    pub fn set(&self, trigger_id: &str, schedule: Option<(&str, Option<&str>)>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match schedule {
            None => {
                if entries.remove(trigger_id).is_none() {
                    return;
                }
            }
            Some((expression, timezone)) => {
                let source = (expression.to_string(), timezone.map(String::from));
                if entries.get(trigger_id).is_some_and(|e| e.source == source) {
                    return;
                }
                match Schedule::parse(expression, timezone) {
                    Ok(schedule) => {
                        let next_at = schedule.next_after(now_ms());
                        entries.insert(
                            trigger_id.to_string(),
                            Entry {
                                source,
                                schedule,
                                next_at,
                            },
                        );
                    }
                    Err(problem) => {
                        tracing::warn!(trigger = %trigger_id, %problem, "the trigger's schedule is not valid; it will not run on schedule");
                        entries.remove(trigger_id);
                    }
                }
            }
        }
        drop(entries);
        self.changed.notify_one();
    }

    /// When the trigger runs next on its schedule.
    pub fn next_at(&self, trigger_id: &str) -> Option<i64> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.get(trigger_id).and_then(|e| e.next_at)
    }

    /// Takes the triggers due at `now` (moving each to its next run after `now`), and
    /// tells when the next one is due.
    pub fn take_due(&self, now: i64) -> (Vec<(String, i64)>, Option<i64>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut due = Vec::new();
        for (id, entry) in entries.iter_mut() {
            if let Some(at) = entry.next_at
                && at <= now
            {
                due.push((id.clone(), at));
                entry.next_at = entry.schedule.next_after(now);
            }
        }
        let next = entries.values().filter_map(|e| e.next_at).min();
        (due, next)
    }
}

/// Runs until the process ends: sleeps until the next due schedule (or a change), then
/// hands each due trigger and its slot time to `fire`.
pub async fn run<F, Fut>(timetable: Arc<Timetable>, fire: F)
where
    F: Fn(String, i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        let (due, next) = timetable.take_due(now_ms());
        for (trigger_id, slot) in due {
            fire(trigger_id, slot).await;
        }
        let wait = match next {
            Some(at) => Duration::from_millis((at - now_ms()).clamp(0, 60_000) as u64),
            None => Duration::from_secs(60),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = timetable.changed.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_and_six_field_expressions_are_accepted() {
        let daily = Schedule::parse("0 0 * * *", None).unwrap();
        // 2024-01-15T10:30:00Z -> next midnight UTC.
        assert_eq!(daily.next_after(1_705_314_600_000), Some(1_705_363_200_000));
        let every_two_seconds = Schedule::parse("*/2 * * * * *", None).unwrap();
        assert_eq!(every_two_seconds.next_after(1_705_314_600_000), Some(1_705_314_602_000));
        assert!(Schedule::parse("@hourly", None).is_ok());
    }

    #[test]
    fn time_zones_shift_the_schedule() {
        let berlin = Schedule::parse("0 0 * * *", Some("Europe/Berlin")).unwrap();
        // Midnight in Berlin in January is 23:00 UTC.
        assert_eq!(berlin.next_after(1_705_314_600_000), Some(1_705_359_600_000));
    }

    #[test]
    fn bad_expressions_name_the_problem() {
        let error = Schedule::parse("0 0 * *", None).unwrap_err();
        assert!(error.contains("has 4 field(s)"), "{error}");
        let error = Schedule::parse("61 * * * *", None).unwrap_err();
        assert!(error.contains("not a valid cron expression"), "{error}");
        let error = Schedule::parse("0 0 * * *", Some("Mars/Olympus")).unwrap_err();
        assert!(error.contains("Mars/Olympus"), "{error}");
        assert!(Schedule::parse("every day", None).is_err());
    }

    #[test]
    fn the_timetable_moves_due_triggers_on() {
        let timetable = Timetable::default();
        timetable.set("trg", Some(("* * * * * *", None)));
        let next = timetable.next_at("trg").unwrap();
        let (due, after) = timetable.take_due(next);
        assert_eq!(due, [("trg".to_string(), next)]);
        assert_eq!(after, Some(next + 1000));
        timetable.set("trg", None);
        assert_eq!(timetable.next_at("trg"), None);
    }
}
