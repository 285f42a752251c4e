//! What the host tells whoever operates it besides its log: Prometheus [`metrics`] and
//! OpenTelemetry [`traces`]. A leaf: every room records into it, and it uses none of them.

pub mod metrics;
pub mod traces;

pub use metrics::{CallOutcome, metrics};
