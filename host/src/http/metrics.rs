//! `GET /metrics`: the host's Prometheus metrics ([`crate::telemetry::metrics`]) in the
//! OpenMetrics text format, public so that scrapers need no token. Served on the main
//! listener, or with `--metrics-listen` on an address of its own together with the
//! health checks ([`ops_router`]), or not at all (`--no-metrics`).

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};

use super::health::Health;
use super::routes::{Routes, get};
use super::{App, AppState};
use crate::telemetry::metrics::{self, Snapshot, metrics};

/// The metrics route of the main listener.
pub fn routes() -> Routes {
    Routes::new().route("/metrics", get(scrape))
}

/// The metrics' part of the OpenAPI document (public).
#[derive(utoipa::OpenApi)]
#[openapi(paths(scrape))]
pub struct Api;

/// The host's metrics, for Prometheus.
#[utoipa::path(get, path = "/metrics", tag = super::health::TAG, operation_id = "metrics",
    responses((status = 200, description = "The metrics in the OpenMetrics text format",
        content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8", body = String)))]
async fn scrape(State(app): State<AppState>) -> Response {
    answer(Some(&app)).await
}

/// The host once it serves, for the metrics listener, which answers from its start.
pub type Serving = Arc<OnceLock<AppState>>;

/// The router of `--metrics-listen`: `/metrics` and the health checks. Served until the
/// process exits, draining included, so that scrapers and probes see the stop.
pub fn ops_router(health: Health, serving: Serving) -> Router {
    let health_routes = Router::new()
        .route("/healthz", axum::routing::get(super::health::healthz))
        .route("/readyz", axum::routing::get(super::health::readyz))
        .with_state(health);
    Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let serving = serving.clone();
                async move { answer(serving.get()).await }
            }),
        )
        .merge(health_routes)
}

/// The metrics, with the state gauges read from `app` (while plugins load there is no
/// host yet: the counters alone).
async fn answer(app: Option<&AppState>) -> Response {
    let snapshot = match app {
        Some(app) => snapshot(app).await,
        None => Snapshot::default(),
    };
    ([(CONTENT_TYPE, metrics::CONTENT_TYPE)], metrics().encode(snapshot)).into_response()
}

/// What the state gauges show: installations, the trigger queue, deliveries, NATS. A part
/// the store cannot answer now is left out of this scrape (and logged).
pub(crate) async fn snapshot(app: &App) -> Snapshot {
    let registry = app.plugins.registry.snapshot();
    let mut installations: Vec<(String, i64)> = Vec::new();
    for installation in registry.installations.values() {
        let status = installation.status.as_str();
        match installations.iter_mut().find(|(name, _)| name == status) {
            Some((_, count)) => *count += 1,
            None => installations.push((status.to_string(), 1)),
        }
    }
    let refused_files = registry.failures.len() as i64;
    drop(registry);
    let trigger_queue = app.store.job_counts().await.unwrap_or_else(|error| {
        tracing::warn!(error = %format!("{error:#}"), "metrics: cannot count the trigger queue");
        Vec::new()
    });
    let (deliveries, nats) = match app.delivery.status().await {
        Ok(status) => {
            let deliveries = status
                .subscriptions
                .into_iter()
                .map(|s| (s.id, s.pending, s.dead))
                .collect();
            let head = status.outbox.head;
            let nats = status.nats.map(|nats| (nats.connected, (head - nats.cursor).max(0)));
            (deliveries, nats)
        }
        Err(error) => {
            tracing::warn!(error = %format!("{error:#}"), "metrics: cannot read where delivery stands");
            (Vec::new(), None)
        }
    };
    Snapshot {
        installations,
        refused_files,
        trigger_queue,
        deliveries,
        nats,
    }
}
