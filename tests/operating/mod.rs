//! What whoever runs sluice looks at: the health checks (`/healthz`, `/readyz`), the
//! metrics as a real Prometheus scrapes them, and the log in JSON.

mod health;
mod logs;
mod metrics;
