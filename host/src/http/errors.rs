//! Errors as the APIs show them: the Botpress API error shape
//! `{"id", "code", "type", "message"}`, with the request id as `id` so the log line can be
//! found.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::ids::record_id;

/// The largest body the APIs (bot, admin, subscriptions, trigger management) read.
pub const API_BODY_LIMIT: usize = 2 << 20;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Botpress error type (`InvalidPayload`, `ResourceNotFound`, ...).
    pub kind: &'static str,
    pub message: String,
    /// The request id (a fresh error id when there is none).
    pub id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            id: None,
        }
    }

    /// Tags the error with the request it answers.
    pub fn with_id(mut self, id: impl Into<String>) -> ApiError {
        self.id = Some(id.into());
        self
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidPayload", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFound", message)
    }

    pub fn payload_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", message)
    }

    /// A JSON body of the API over [`API_BODY_LIMIT`].
    pub fn api_body_too_large() -> ApiError {
        ApiError::payload_too_large(format!("the body is over the API's limit of {API_BODY_LIMIT} bytes"))
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", message)
    }

    /// A failure inside the host: the detail goes to the log, the caller gets the id.
    pub fn internal(error: anyhow::Error) -> ApiError {
        let id = record_id("err");
        tracing::error!(error_id = %id, error = %format!("{error:#}"), "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("internal error; the host log has the details under {id}"),
        )
        .with_id(id)
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        if let Some(store_error) = error.downcast_ref::<crate::store::StoreError>() {
            return ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", store_error.to_string());
        }
        ApiError::internal(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = self.id.unwrap_or_else(|| record_id("err"));
        let body = json!({ "id": id, "code": self.status.as_u16(), "type": self.kind, "message": self.message });
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is read and thrown away only within bounds (see
            // `bodies`), and not at all from a client still waiting for `100 Continue`:
            // the connection may not carry another request, so say so.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response
    }
}

/// Handler results.
pub type ApiResult<T> = Result<T, ApiError>;
