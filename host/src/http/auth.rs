//! The API token check for `/v1` routes.

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::ids::secrets_match;

/// Lets the request through only with `Authorization: Bearer <API token>`.
pub async fn require_api_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer ")));
    match given {
        Some(token) if secrets_match(token.trim().as_bytes(), app.api_token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the API token is wrong").into_response(),
        None => {
            ApiError::unauthorized("this route needs the API token: send Authorization: Bearer <token>").into_response()
        }
    }
}
