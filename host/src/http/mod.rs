//! The HTTP surfaces, one module each:
//! - [`webhooks`]: `ANY /webhooks/{id}[/{*path}]`, the installations' webhook URLs;
//! - [`chat`]: the bot API under `/v1/chat`, in the shapes of the Botpress chat API;
//! - [`admin`]: `/v1/admin`, what the host is running;
//! - [`subscriptions`]: `/v1/subscriptions`, `/v1/deliveries`, `/v1/delivery`: webhook
//!   subscriptions, their deliveries and attempts;
//! - [`stream`]: `GET /v1/stream`, every event as Server-Sent Events, with the API token
//!   or a short-lived stream ticket (`POST /v1/stream/tickets`).
//! - [`triggers`]: the ChatBotKit-compatible trigger API and its event endpoint;
//! - [`health`]: `GET /healthz` and `GET /readyz`, public;
//! - [`metrics`]: `GET /metrics`, public, unless served on its own address or off;
//! - [`openapi`]: `GET /openapi.json`, the OpenAPI document of all of these, public.
//!
//! The `/v1` routes need the API token (`Authorization: Bearer <token>`); webhooks are
//! public and each plugin decides how to authenticate its callers.
//!
//! What every route shares: the route table the router is built from ([`routes`]), the
//! extractors that read bodies, paths and queries by one rule ([`extract`]), the request
//! id every answer carries ([`request_id`]), the span of each request while traces are
//! exported ([`spans`]), the error shape ([`errors`]), bodies read under limits
//! ([`bodies`]), plugin uploads ([`upload`]) and the server with its connection limits
//! ([`server`]).

pub mod admin;
pub mod auth;
pub mod bodies;
pub mod chat;
pub mod errors;
pub mod extract;
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod request_id;
pub mod routes;
pub mod server;
pub mod shapes;
pub mod spans;
pub mod stream;
pub mod subscriptions;
pub mod triggers;
pub mod upload;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;

use crate::delivery::Delivery;
use crate::jobs::Jobs;
use crate::plugins::PluginHost;
use crate::store::SharedStore;

pub use errors::ApiError;

/// What every handler can reach.
pub struct App {
    pub plugins: Arc<PluginHost>,
    pub store: SharedStore,
    /// The bearer token the bot and admin APIs require.
    pub api_token: String,
    /// Event delivery: subscriptions, webhooks, the stream.
    pub delivery: Arc<Delivery>,
    /// Triggers, their queue and workers.
    pub jobs: Arc<Jobs>,
    /// What the health checks look at.
    pub health: health::Health,
    /// The largest plugin upload read (`[plugins] max-upload-bytes`).
    pub max_upload_bytes: u64,
}

/// Shared handle to [`App`], the router's state.
pub type AppState = Arc<App>;

/// Where the route table is answered.
pub const ROUTE_TABLE_PATH: &str = "/v1/admin/routes";

/// The whole HTTP surface, `/metrics` included when `with_metrics`. The server gives
/// each request its id ([`request_id`]).
pub fn router(app: AppState, with_metrics: bool) -> Router {
    let protected = routes::Routes::new()
        .merge(chat::routes())
        .merge(admin::routes())
        .merge(subscriptions::routes())
        .require_api_token(&app);
    let mut public = health::routes().route(openapi::PATH, routes::get(openapi::serve));
    if with_metrics {
        public = public.merge(metrics::routes());
    }
    let routes = routes::Routes::new()
        .merge(public)
        .merge(webhooks::routes())
        .merge(protected)
        // The stream takes a stream ticket as well as the API token (browsers'
        // EventSource cannot send the token), so it checks them itself.
        .merge(stream::routes(&app))
        .merge(triggers::routes(&app))
        .into_router_listed_at(ROUTE_TABLE_PATH, &app);
    // Only while traces are exported: a request costs nothing more otherwise.
    let routes = if crate::telemetry::traces::enabled() {
        routes.route_layer(axum::middleware::from_fn(spans::traced))
    } else {
        routes
    };
    routes
        .fallback(|| async { ApiError::not_found("no such route; see the README for the routes sluice serves") })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotFound",
                format!("this route does not take {method}; the Allow header lists the methods it takes"),
            )
        })
        // Outermost, so that a body refused anywhere (a limit, a secret, an unknown
        // route) is still read to its end and the client gets to read why.
        .layer(tower::util::MapRequestLayer::new(bodies::linger_on_drop))
        .with_state(app)
}
