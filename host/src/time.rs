//! Wall-clock time as the store keeps it (milliseconds since the epoch) and as the APIs
//! show it (ISO 8601).

use chrono::{SecondsFormat, TimeZone, Utc};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// ISO 8601 with milliseconds and a `Z`, as the Botpress API shows times.
pub fn iso8601(ms: i64) -> String {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_iso8601_with_millis() {
        assert_eq!(super::iso8601(1_719_842_806_700), "2024-07-01T14:06:46.700Z");
    }
}
