//! `/v1/admin`: what the host runs, plugins installed and removed through the API (for
//! every replica on a shared store), and, at `/v1/admin/routes`, the route table (see
//! [`super::routes`]).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::errors::{ApiError, ApiResult};
use super::extract::PathParams;
use super::routes::{RouteTable, Routes, get, put_plugin_upload};
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

/// Install the uploaded plugin as installation `name` (201), or replace its plugin and,
/// if sent, its sidecar (200). A component that does not load, or a sidecar that does not
/// parse, is refused (400) and the version serving before keeps serving.
#[utoipa::path(put, path = "/v1/admin/plugins/{name}", tag = TAG, operation_id = "putPlugin",
    params(("name" = String, Path, description = "The installation's name: letters, digits, - and _")),
    request_body(content_type = "application/wasm", description = "The component; or multipart/form-data with parts component and sidecar"),
    responses(
        (status = 201, description = "Installed", body = InstallationShown),
        (status = 200, description = "Replaced", body = InstallationShown)))]
async fn put_plugin(
    State(app): State<AppState>,
    PathParams(name): PathParams<String>,
    upload: PluginUpload,
) -> ApiResult<(StatusCode, Json<InstallationShown>)> {
    let (installation, created) = app
        .plugins
        .install(&name, upload.component, upload.sidecar.as_deref())
        .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(installation_json(&installation))))
}

/// Uninstall installation `name` (`unregister` runs once; what it recorded stays).
#[utoipa::path(delete, path = "/v1/admin/plugins/{name}", tag = TAG, operation_id = "deletePlugin",
    params(("name" = String, Path, description = "The installation's name")),
    responses((status = 204, description = "Removed")))]
async fn delete_plugin(State(app): State<AppState>, PathParams(name): PathParams<String>) -> ApiResult<StatusCode> {
    if app.plugins.uninstall(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no plugin is installed as {name:?}")))
    }
}

/// The OpenAPI tag of the admin API.
pub const TAG: &str = "admin";

/// The admin API's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(list_installations, put_plugin, delete_plugin, route_table))]
pub struct Api;

/// An installation: a plugin file in the plugins folder, and how it runs.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstallationShown {
    pub id: String,
    /// The file's name without `.wasm`.
    pub name: String,
    #[schema(required)]
    pub file: Option<String>,
    pub plugin: PluginShown,
    pub webhook_id: String,
    pub webhook_url: String,
    /// `ready`, or what keeps it from serving.
    pub status: String,
    pub problems: Vec<String>,
    pub limits: LimitsShown,
    /// The outside origins the plugin may call.
    pub allowed_hosts: Vec<String>,
    /// When its `register` last ran.
    #[schema(required)]
    pub registered_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// The plugin an installation runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct PluginShown {
    pub name: String,
    pub version: String,
    pub title: String,
    /// The component's SHA-256, in hex.
    pub sha256: String,
    /// Where its native code came from (compiled now, or the cache).
    pub code: String,
    /// The compiler tier serving it (baseline or optimised).
    pub tier: String,
}

/// An installation's limits per call.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsShown {
    pub max_body_bytes: u64,
    pub max_memory_bytes: u64,
    pub timeout_ms: u64,
}

/// A plugin file that could not be loaded.
#[derive(Debug, Serialize, ToSchema)]
pub struct FailureShown {
    pub file: String,
    /// Always `failed`.
    pub status: String,
    pub problems: Vec<String>,
}

/// Hot reload: the reloads finished so far (the first one to start after a change to the
/// folder applies it), and the files it waits for.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReloadsShown {
    pub count: u64,
    #[schema(required)]
    pub last_at: Option<String>,
    pub still_being_written: Vec<String>,
}

/// The bot the installations serve: bot API clients write as `botId` (or its user).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BotShown {
    pub id: String,
    pub user_id: String,
}

/// What the host runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct Installations {
    pub installations: Vec<InstallationShown>,
    pub failures: Vec<FailureShown>,
    pub reloads: ReloadsShown,
    pub bot: BotShown,
}

/// An installation as the admin API shows it.
pub fn installation_json(installation: &Installation) -> InstallationShown {
    let definition = &installation.plugin.definition;
    InstallationShown {
        id: installation.id().to_string(),
        name: installation.name().to_string(),
        file: installation.file.file_name().map(|n| n.to_string_lossy().into_owned()),
        plugin: PluginShown {
            name: definition.name.clone(),
            version: definition.version.clone(),
            title: definition.title.clone(),
            sha256: installation.plugin.hash.clone(),
            code: installation.plugin.code_source.as_str().to_string(),
            tier: installation.plugin.tier().as_str().to_string(),
        },
        webhook_id: installation.record.webhook_id.clone(),
        webhook_url: installation.webhook_url(),
        status: installation.status.as_str().to_string(),
        problems: installation.problems.clone(),
        limits: LimitsShown {
            max_body_bytes: installation.sidecar.limits.max_body_bytes,
            max_memory_bytes: installation.sidecar.limits.max_memory_bytes,
            timeout_ms: installation.sidecar.limits.timeout_ms,
        },
        allowed_hosts: installation.sidecar.allowed_hosts.clone(),
        registered_at: installation.record.registered_at.map(iso8601),
        created_at: iso8601(installation.record.created_at),
        updated_at: iso8601(installation.record.updated_at),
    }
}

/// List the installations, the plugin files that failed to load, and hot reloads.
#[utoipa::path(get, path = "/v1/admin/installations", tag = TAG, operation_id = "listInstallations",
    responses((status = 200, description = "What the host runs", body = Installations)))]
async fn list_installations(State(app): State<AppState>) -> Json<Installations> {
    // Read before the snapshot: a reload counted here is then already in the snapshot.
    let reloads = app.plugins.registry.reload_status();
    let snapshot = app.plugins.registry.snapshot();
    let identity = &app.plugins.identity;
    Json(Installations {
        installations: snapshot.installations.values().map(|i| installation_json(i)).collect(),
        failures: snapshot
            .failures
            .iter()
            .map(|f| FailureShown {
                file: f.file.clone(),
                status: "failed".to_string(),
                problems: vec![f.reason.clone()],
            })
            .collect(),
        reloads: ReloadsShown {
            count: reloads.count,
            last_at: reloads.last_at.map(iso8601),
            still_being_written: reloads.still_being_written,
        },
        bot: BotShown {
            id: identity.bot_id.clone(),
            user_id: identity.bot_user_id.clone(),
        },
    })
}

/// List every route the host serves, with its method, access and body.
#[utoipa::path(get, path = "/v1/admin/routes", tag = TAG, operation_id = "listRoutes",
    responses((status = 200, description = "The route table", body = RouteTable)))]
#[allow(
    dead_code,
    reason = "documents the route the route table answers itself (routes::Routes::into_router_listed_at)"
)]
fn route_table() {}
