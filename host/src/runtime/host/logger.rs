//! The `logger` import: a plugin's log lines go to the host log, tagged with the plugin
//! and the request, and are kept (up to a limit) for the call's report.

use tracing::Instrument as _;

use super::{HostState, LogLine, MAX_KEPT_LOG_LINES, import_span};
use crate::runtime::bindings::logger;

impl logger::Host for HostState {
    async fn log(&mut self, level: logger::Level, message: String) -> wasmtime::Result<()> {
        async move {
            let (plugin, request_id) = (&self.label, &self.request_id);
            let level = match level {
                logger::Level::Debug => {
                    tracing::debug!(target: "plugin", %plugin, %request_id, "{message}");
                    "debug"
                }
                logger::Level::Info => {
                    tracing::info!(target: "plugin", %plugin, %request_id, "{message}");
                    "info"
                }
                logger::Level::Warn => {
                    tracing::warn!(target: "plugin", %plugin, %request_id, "{message}");
                    "warn"
                }
                logger::Level::Error => {
                    tracing::error!(target: "plugin", %plugin, %request_id, "{message}");
                    "error"
                }
            };
            if self.logs.len() < MAX_KEPT_LOG_LINES {
                self.logs.push(LogLine { level, message });
            }
            Ok(())
        }
        .instrument(import_span("logger.log"))
        .await
    }
}
