//! Tokens and secrets from `Authorization: Bearer <token>`: the API token check for the
//! `/v1` routes and the trigger management routes, and [`bearer_token`], which every
//! place that reads a token or secret goes through (trigger events read their trigger's
//! secret with it).

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::ids::secrets_match;

/// The token of an `Authorization: Bearer <token>` header. The scheme's name is
/// case-insensitive (RFC 9110, 11.1: `bearer`, `BEARER` and `Bearer` are one scheme),
/// and space around the token does not count.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Lets the request through only with `Authorization: Bearer <API token>`.
pub async fn require_api_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    match bearer_token(request.headers()) {
        Some(token) if secrets_match(token.as_bytes(), app.api_token.as_bytes()) => next.run(request).await,
        Some(_) => ApiError::unauthorized("the API token is wrong").into_response(),
        None => {
            ApiError::unauthorized("this route needs the API token: send Authorization: Bearer <token>").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(value: &'static str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value.parse().unwrap());
        bearer_token(&headers).map(String::from)
    }

    #[test]
    fn the_scheme_is_read_whatever_its_case() {
        for value in [
            "Bearer t0k",
            "bearer t0k",
            "BEARER t0k",
            "BeArEr t0k",
            "Bearer   t0k ",
            "Bearer\tt0k",
        ] {
            assert_eq!(token(value).as_deref(), Some("t0k"), "{value:?}");
        }
        for value in ["Basic dXNlcg==", "Bearer", "Bearer ", "Bearert0k", "t0k"] {
            assert_eq!(token(value), None, "{value:?}");
        }
    }
}
