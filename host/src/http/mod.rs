//! The HTTP surfaces, one module each:
//! - [`webhooks`]: `ANY /webhooks/{id}[/{*path}]`, the installations' webhook URLs;
//! - [`chat`]: the bot API under `/v1/chat`, in the shapes of the Botpress chat API;
//! - [`admin`]: `/v1/admin`, what the host is running;
//! - [`subscriptions`]: `/v1/subscriptions`, `/v1/deliveries`, `/v1/delivery`: webhook
//!   subscriptions, their deliveries and attempts;
//! - [`stream`]: `GET /v1/stream`, every event as Server-Sent Events, with the API token
//!   or a short-lived stream ticket (`POST /v1/stream/tickets`).
//! - [`triggers`]: the ChatBotKit-compatible trigger API and its event endpoint.
//!
//! The `/v1` routes need the API token (`Authorization: Bearer <token>`); webhooks are
//! public and each plugin decides how to authenticate its callers.

pub mod admin;
pub mod auth;
pub mod bodies;
pub mod chat;
pub mod errors;
pub mod server;
pub mod shapes;
pub mod stream;
pub mod subscriptions;
pub mod triggers;
pub mod webhooks;

use std::sync::Arc;

use axum::Router;
use axum::routing::any;

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
}

/// Shared handle to [`App`], the router's state.
pub type AppState = Arc<App>;

/// The whole HTTP surface.
pub fn router(app: AppState) -> Router {
    let protected = Router::new()
        .merge(chat::routes())
        .merge(admin::routes())
        .merge(subscriptions::routes())
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            auth::require_api_token,
        ));
    Router::new()
        .route("/webhooks/{webhook_id}", any(webhooks::receive))
        .route("/webhooks/{webhook_id}/{*path}", any(webhooks::receive))
        .merge(protected)
        // The stream takes a stream ticket as well as the API token (browsers'
        // EventSource cannot send the token), so it checks them itself.
        .merge(stream::routes(app.clone()))
        .merge(triggers::routes(app.clone()))
        .fallback(|| async { ApiError::not_found("no such route; see the README for the routes sluice serves") })
        .method_not_allowed_fallback(|method: axum::http::Method| async move {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                format!("this route does not take {method}; the Allow header lists the methods it takes"),
            )
        })
        // Bodies read by extractors (`Json`, `Bytes`); webhooks and trigger events read
        // theirs under their own limits.
        .layer(axum::extract::DefaultBodyLimit::max(errors::API_BODY_LIMIT))
        // Outermost, so that a body refused anywhere (a limit, a secret, an unknown
        // route) is still read to its end and the client gets to read why.
        .layer(tower::util::MapRequestLayer::new(bodies::linger_on_drop))
        .with_state(app)
}
