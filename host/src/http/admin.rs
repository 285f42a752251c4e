//! `/v1/admin`: what the host runs, plugins installed and removed through the API (for
//! every replica on a shared store), and, at `/v1/admin/routes`, the route table (see
//! [`super::routes`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;
use super::errors::{ApiError, ApiResult};
use super::extract::PathParams;
use super::routes::{Routes, get, put_plugin_upload};
use super::upload::PluginUpload;
use crate::plugins::Installation;
use crate::time::iso8601;

pub fn routes() -> Routes {
    Routes::new()
        .route("/v1/admin/installations", get(list_installations))
        .route(
            "/v1/admin/plugins/{name}",
            put_plugin_upload(put_plugin).delete(delete_plugin),
        )
}

/// Installs the uploaded plugin as installation `name` (201), or replaces its plugin and,
/// if sent, its sidecar (200). A component that does not load, or a sidecar that does not
/// parse, is refused (400) and the version serving before keeps serving.
async fn put_plugin(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    upload: PluginUpload,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (installation, created) = app
        .plugins
        .install(&name, upload.component, upload.sidecar.as_deref())
        .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(installation_json(&installation))))
}

/// Uninstalls installation `name` (`unregister` runs once; what it recorded stays).
async fn delete_plugin(State(app): State<AppState>, PathParams(name): PathParams<String>) -> ApiResult<StatusCode> {
    if app.plugins.uninstall(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no plugin is installed as {name:?}")))
    }
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
