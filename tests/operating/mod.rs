//! What whoever runs sluice looks at: the health checks (`/healthz`, `/readyz`), the
//! metrics as a real Prometheus scrapes them, the traces as a collector receives them,
//! and the log in JSON.

mod health;
mod logs;
mod metrics;
mod traces;
