//! Traces (`[telemetry]`): where sluice sends its OpenTelemetry spans. Unset, and without
//! the standard `OTEL_EXPORTER_OTLP_*` variables, no span is made or sent.

use serde::Deserialize;

/// The `[telemetry]` table. The standard OpenTelemetry variables win over it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP collector's base URL (`http://collector:4318`); spans go to
    /// `<endpoint>/v1/traces`. `OTEL_EXPORTER_OTLP_ENDPOINT` wins over it.
    pub otlp_endpoint: Option<String>,
    /// The full URL spans are sent to, when it is not `<otlp-endpoint>/v1/traces`.
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` wins over it.
    pub otlp_traces_endpoint: Option<String>,
    /// The `service.name` the spans carry (default `sluice`). `OTEL_SERVICE_NAME` wins.
    pub service_name: Option<String>,
}

/// Where spans go and under which name, when they are sent at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracesSettings {
    /// The full URL of the collector's OTLP/HTTP traces endpoint.
    pub traces_endpoint: String,
    pub service_name: String,
}

impl TelemetryConfig {
    /// What the environment (`env`: a variable's value by name) and this table ask for:
    /// `None` when no endpoint is set anywhere (or `OTEL_SDK_DISABLED=true`).
    pub fn traces(&self, env: impl Fn(&str) -> Option<String>) -> Option<TracesSettings> {
        let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if set("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        let under_base = |base: String| format!("{}/v1/traces", base.trim_end_matches('/'));
        let traces_endpoint = set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| set("OTEL_EXPORTER_OTLP_ENDPOINT").map(under_base))
            .or_else(|| self.otlp_traces_endpoint.clone().filter(|url| !url.is_empty()))
            .or_else(|| self.otlp_endpoint.clone().filter(|url| !url.is_empty()).map(under_base))?;
        let service_name = set("OTEL_SERVICE_NAME")
            .or_else(|| self.service_name.clone().filter(|name| !name.is_empty()))
            .unwrap_or_else(|| "sluice".into());
        Some(TracesSettings {
            traces_endpoint,
            service_name,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn traces(config: &TelemetryConfig, env: &[(&str, &str)]) -> Option<TracesSettings> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        config.traces(|name| env.get(name).cloned())
    }

    #[test]
    fn nothing_configured_means_no_traces() {
        assert_eq!(traces(&TelemetryConfig::default(), &[]), None);
        assert_eq!(
            traces(&TelemetryConfig::default(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]),
            None
        );
    }

    #[test]
    fn the_variables_win_over_the_file_and_the_base_url_gets_the_traces_path() {
        let file = TelemetryConfig {
            otlp_endpoint: Some("http://file:4318/".into()),
            otlp_traces_endpoint: None,
            service_name: Some("bots".into()),
        };
        let from_file = traces(&file, &[]).unwrap();
        assert_eq!(from_file.traces_endpoint, "http://file:4318/v1/traces");
        assert_eq!(from_file.service_name, "bots");
        let from_env = traces(
            &file,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_SERVICE_NAME", "edge"),
            ],
        )
        .unwrap();
        assert_eq!(from_env.traces_endpoint, "http://env:4318/v1/traces");
        assert_eq!(from_env.service_name, "edge");
        let exact = traces(
            &file,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://env:4318/custom"),
            ],
        )
        .unwrap();
        assert_eq!(exact.traces_endpoint, "http://env:4318/custom");
        assert_eq!(traces(&file, &[("OTEL_SDK_DISABLED", "true")]), None);
    }
}
