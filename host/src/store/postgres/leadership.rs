//! Leadership: of the replicas sharing the database, the one holding a role's session
//! advisory lock does that role's work. The lock is held on a connection of its own,
//! checked every second; when the replica dies or loses the database its connection
//! goes, PostgreSQL releases the lock, and another replica takes it within a second.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::NoTls;

use super::locks;

/// How often a replica tries to take a role, and checks it still holds it.
const CHECK_EVERY: Duration = Duration::from_secs(1);

/// Competes for `role` for as long as the task runs, telling `leading` whether this
/// replica holds it.
pub(super) async fn compete(config: tokio_postgres::Config, role: String, leading: watch::Sender<bool>) {
    let key = locks::leadership(&role);
    loop {
        if let Ok((client, connection)) = config.connect(NoTls).await {
            let driver = tokio::spawn(connection);
            loop {
                let holding = *leading.borrow();
                let alive = if holding {
                    client.simple_query("SELECT 1").await.is_ok()
                } else {
                    match client.query_one("SELECT pg_try_advisory_lock($1)", &[&key]).await {
                        Ok(row) => {
                            if row.get::<_, bool>(0) {
                                tracing::info!(%role, "this replica now leads {role}");
                                leading.send_replace(true);
                            }
                            true
                        }
                        Err(_) => false,
                    }
                };
                if !alive || driver.is_finished() {
                    break;
                }
                tokio::time::sleep(CHECK_EVERY).await;
            }
            driver.abort();
        }
        if leading.send_replace(false) {
            tracing::warn!(%role, "this replica lost the lead of {role} (the store cannot be reached)");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
