//! Health checks for supervisors and load balancers, public and small:
//! - `GET /healthz`: the process is alive and serving HTTP (200 `{"status":"ok"}`);
//! - `GET /readyz`: it should get traffic: 200 `{"status":"ready"}`, or 503
//!   `{"status":"not-ready","reason":...}` while plugins are loading, while the store cannot
//!   be reached, or while draining after a stop signal.
//!
//! They are served from the moment the listener is bound, before the plugins load
//! ([`while_loading`]); every other request waits for the whole router then.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRef, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::watch;
use tower::ServiceExt as _;
use utoipa::{OpenApi, ToSchema};

use super::AppState;
use super::routes::{Routes, get};
use crate::store::SharedStore;

/// How long `/readyz` waits for the store before calling it unreachable: a store that
/// answers this slowly cannot serve requests either.
pub const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where the host is in its life, as `/readyz` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Plugins are loading; requests other than health checks wait.
    Loading = 0,
    Serving = 1,
    /// A stop signal arrived: running requests finish, new traffic should go elsewhere.
    Draining = 2,
}

/// What the health checks look at; clones share it. Made before the store is open, so
/// that the checks answer from the start (the default is loading, with no store yet).
#[derive(Clone, Default)]
pub struct Health {
    phase: Arc<AtomicU8>,
    store: Arc<OnceLock<SharedStore>>,
}

impl Health {
    /// The store `/readyz` checks once serving.
    pub fn set_store(&self, store: SharedStore) {
        let _ = self.store.set(store);
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Ordering::Release);
    }

    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Loading,
            1 => Phase::Serving,
            _ => Phase::Draining,
        }
    }

    /// Why the host should not get traffic now, if it should not.
    async fn not_ready_because(&self) -> Option<&'static str> {
        match self.phase() {
            Phase::Loading => return Some("loading plugins"),
            Phase::Draining => return Some("draining"),
            Phase::Serving => {}
        }
        let Some(store) = self.store.get() else {
            return Some("loading plugins");
        };
        match tokio::time::timeout(STORE_CHECK_TIMEOUT, store.check_reachable()).await {
            Ok(Ok(())) => None,
            Ok(Err(error)) => {
                tracing::warn!(error = format!("{error:#}"), "readiness: the store is unreachable");
                Some("store unreachable")
            }
            Err(_) => {
                tracing::warn!(
                    timeout_ms = STORE_CHECK_TIMEOUT.as_millis(),
                    "readiness: the store did not answer in time"
                );
                Some("store unreachable")
            }
        }
    }
}

impl FromRef<AppState> for Health {
    fn from_ref(app: &AppState) -> Health {
        app.health.clone()
    }
}

/// The OpenAPI tag of the health checks and metrics.
pub const TAG: &str = "operations";

/// The health checks' part of the OpenAPI document (public).
#[derive(OpenApi)]
#[openapi(paths(healthz, readyz))]
pub struct Api;

/// What a health check answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    /// `ok` (healthz); `ready` or `not-ready` (readyz).
    pub status: &'static str,
    /// Why it is not ready: `loading plugins`, `store unreachable` or `draining`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// Whether the process is alive and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = TAG, operation_id = "healthz",
    responses((status = 200, description = "Alive", body = HealthAnswer, example = json!({"status": "ok"}))))]
pub(super) async fn healthz() -> Response {
    axum::Json(HealthAnswer {
        status: "ok",
        reason: None,
    })
    .into_response()
}

/// Whether the host should get traffic.
#[utoipa::path(get, path = "/readyz", tag = TAG, operation_id = "readyz",
    responses(
        (status = 200, description = "Ready", body = HealthAnswer, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready, and why", body = HealthAnswer,
            example = json!({"status": "not-ready", "reason": "loading plugins"})),
    ))]
pub(super) async fn readyz(State(health): State<Health>) -> Response {
    match health.not_ready_because().await {
        None => axum::Json(HealthAnswer {
            status: "ready",
            reason: None,
        })
        .into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(HealthAnswer {
                status: "not-ready",
                reason: Some(reason),
            }),
        )
            .into_response(),
    }
}

/// The health routes, as the route table lists them.
pub fn routes() -> Routes {
    Routes::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The router served while plugins load: the health checks answer at once, and every
/// other request waits until `full` holds the whole router, then goes through it.
pub fn while_loading(health: Health, full: watch::Receiver<Option<Router>>) -> Router {
    Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .with_state(health)
        .fallback(move |request: Request| {
            let mut full = full.clone();
            async move {
                let router = match full.wait_for(Option::is_some).await {
                    Ok(router) => router.clone(),
                    Err(_) => None,
                };
                match router {
                    Some(router) => router.oneshot(request).await.into_response(),
                    None => super::ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        "sluice is stopping",
                    )
                    .into_response(),
                }
            }
        })
}
