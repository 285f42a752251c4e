//! Errors as the APIs show them: the Botpress API error shape
//! `{"id", "code", "type", "message"}`, with the request id ([`RequestId`]) as `id`, and
//! a log line carrying the same id: at debug for a refused request (4xx), at error, with
//! the cause, for a failure (5xx).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::request_id::RequestId;

/// The largest body the APIs (bot, admin, subscriptions, trigger management) read.
pub const API_BODY_LIMIT: usize = 2 << 20;

/// An error as every API answers it (the Botpress API's error shape).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(as = Error, example = json!({
    "id": "req_01J2Z3QK8V6S1T7M5N4P3R2Q1W", "code": 404, "type": "ResourceNotFound",
    "message": "conversation conv_1 does not exist"
}))]
pub struct ErrorBody {
    /// The request id, as in the `x-sluice-request-id` header and the host's log.
    pub id: String,
    /// The HTTP status.
    pub code: u16,
    /// What kind of error: `InvalidPayload`, `InvalidQuery`, `InvalidIdentifier`,
    /// `InvalidDataFormat`, `Unauthorized`, `ResourceNotFound`, `MethodNotFound`,
    /// `PayloadTooLarge`, `UnsupportedMediaType`, `Conflict`, `Internal`, `Unavailable`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// What was wrong, for a person to read.
    pub message: String,
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Botpress error type (`InvalidPayload`, `ResourceNotFound`, ...).
    pub kind: &'static str,
    pub message: String,
    /// Seconds the caller should wait before trying again (`Retry-After`), when known.
    pub retry_after: Option<u32>,
    /// The cause is already in the log, under the request id.
    logged: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
            logged: false,
        }
    }

    /// The same error, telling the caller to wait `seconds` before trying again.
    pub fn with_retry_after(mut self, seconds: Option<u32>) -> ApiError {
        self.retry_after = seconds;
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

    /// A failure inside the host: the cause goes to the log under the request id, the
    /// caller gets the id.
    pub fn internal(error: anyhow::Error) -> ApiError {
        ApiError::internal_cause(format!("{error:#}"))
    }

    /// [`ApiError::internal`] of a cause already put in words.
    pub fn internal_cause(cause: String) -> ApiError {
        let id = RequestId::current_or_new();
        tracing::error!(request_id = %id, error = %cause, "internal error");
        let mut answer = ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal",
            format!("internal error; the host log has the details under {id}"),
        );
        answer.logged = true;
        answer
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(error: anyhow::Error) -> ApiError {
        if crate::store::StoreError::is_unavailable(&error) {
            return ApiError::unavailable(format!("{error:#}"));
        }
        if let Some(store_error) = error.downcast_ref::<crate::store::StoreError>() {
            return ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", store_error.to_string());
        }
        ApiError::internal(error)
    }
}

impl From<crate::plugins::InstallError> for ApiError {
    fn from(error: crate::plugins::InstallError) -> ApiError {
        use crate::plugins::InstallError;
        match error {
            InstallError::InvalidName(message) => ApiError::new(StatusCode::BAD_REQUEST, "InvalidIdentifier", message),
            InstallError::Refused(message) => ApiError::bad_request(message),
            InstallError::Host(error) => ApiError::from(error),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = RequestId::current_or_new();
        let (status, kind, message) = (self.status.as_u16(), self.kind, &self.message);
        if self.status.is_server_error() {
            if !self.logged {
                tracing::error!(request_id = %id, status, kind, reason = %message, "request failed");
            }
        } else {
            tracing::debug!(request_id = %id, status, kind, reason = %message, "request refused");
        }
        let body = ErrorBody {
            id: id.as_str().to_string(),
            code: status,
            kind: kind.to_string(),
            message: self.message,
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
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
