//! WASI for one call, granting nothing, and the plugin's stdout and stderr: each line
//! goes to the host log, tagged with the plugin and the request.

use std::sync::Arc;

use bytes::Bytes;
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// WASI for one call: no preopened directories, no environment, no arguments, no
/// sockets, no name lookups. It is linked so guest toolchains work, but it grants
/// nothing; stdout and stderr go to the host log.
pub(super) fn wasi_context(label: &Arc<str>, request_id: &Arc<str>) -> WasiCtx {
    WasiCtx::builder()
        .stdout(PluginOutput::new("stdout", label.clone(), request_id.clone()))
        .stderr(PluginOutput::new("stderr", label.clone(), request_id.clone()))
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build()
}

/// A plugin's stdout or stderr: each line goes to the host log, tagged with the plugin.
struct PluginOutput {
    stream: &'static str,
    label: Arc<str>,
    request_id: Arc<str>,
}

impl PluginOutput {
    fn new(stream: &'static str, label: Arc<str>, request_id: Arc<str>) -> PluginOutput {
        PluginOutput {
            stream,
            label,
            request_id,
        }
    }
}

impl wasmtime_wasi::cli::IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(tokio::io::sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger {
            stream: self.stream,
            label: self.label.clone(),
            request_id: self.request_id.clone(),
            pending: Vec::new(),
        })
    }
}

/// Splits what a plugin writes into lines and logs each one.
struct LineLogger {
    stream: &'static str,
    label: Arc<str>,
    request_id: Arc<str>,
    pending: Vec<u8>,
}

/// Longest line kept whole; longer output is logged in pieces of this size.
const MAX_LINE: usize = 16 * 1024;

impl LineLogger {
    fn emit(&self, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches('\r');
        tracing::info!(target: "plugin", plugin = %self.label, request_id = %self.request_id, stream = self.stream, "{text}");
    }
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.pending.extend_from_slice(&bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            self.emit(&line[..line.len() - 1]);
        }
        while self.pending.len() >= MAX_LINE {
            let piece: Vec<u8> = self.pending.drain(..MAX_LINE).collect();
            self.emit(&piece);
        }
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(MAX_LINE)
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.emit(&rest);
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}
