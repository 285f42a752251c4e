//! What whoever runs sluice looks at: the health checks (`/healthz`, `/readyz`) and the
//! log in JSON.

mod health;
mod logs;
