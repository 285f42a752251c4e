//! `/v1/admin`: what the host runs (and, at `/v1/admin/routes`, the route table: see
//! [`super::routes`]).

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::routes::{Routes, get};
use crate::plugins::Installation;
use crate::time::iso8601;

pub fn routes() -> Routes {
    Routes::new().route("/v1/admin/installations", get(list_installations))
}

/// An installation as the admin API shows it.
pub fn installation_json(installation: &Installation) -> Value {
    let definition = &installation.plugin.definition;
    json!({
        "id": installation.id(),
        "name": installation.name(),
        "file": installation.file.file_name().map(|n| n.to_string_lossy().into_owned()),
        "plugin": {
            "name": definition.name,
            "version": definition.version,
            "title": definition.title,
            "sha256": installation.plugin.hash,
            "code": installation.plugin.code_source.as_str(),
            "tier": installation.plugin.tier().as_str(),
        },
        "webhookId": installation.record.webhook_id,
        "webhookUrl": installation.webhook_url(),
        "status": installation.status.as_str(),
        "problems": installation.problems,
        "limits": {
            "maxBodyBytes": installation.sidecar.limits.max_body_bytes,
            "maxMemoryBytes": installation.sidecar.limits.max_memory_bytes,
            "timeoutMs": installation.sidecar.limits.timeout_ms,
        },
        "allowedHosts": installation.sidecar.allowed_hosts,
        "registeredAt": installation.record.registered_at.map(iso8601),
        "createdAt": iso8601(installation.record.created_at),
        "updatedAt": iso8601(installation.record.updated_at),
    })
}

async fn list_installations(State(app): State<AppState>) -> Json<Value> {
    // Read before the snapshot: a reload counted here is then already in the snapshot.
    let reloads = app.plugins.registry.reload_status();
    let snapshot = app.plugins.registry.snapshot();
    let installations: Vec<Value> = snapshot.installations.values().map(|i| installation_json(i)).collect();
    let failures: Vec<Value> = snapshot
        .failures
        .iter()
        .map(|f| json!({ "file": f.file, "status": "failed", "problems": [f.reason] }))
        .collect();
    let identity = &app.plugins.identity;
    Json(json!({
        "installations": installations,
        "failures": failures,
        // Hot reload: the reloads finished so far (the first one to start after a change
        // to the folder applies it), and the files it waits for.
        "reloads": {
            "count": reloads.count,
            "lastAt": reloads.last_at.map(iso8601),
            "stillBeingWritten": reloads.still_being_written,
        },
        // The bot the installations serve: bot API clients write as `botId` (or its user).
        "bot": { "id": identity.bot_id, "userId": identity.bot_user_id },
    }))
}
