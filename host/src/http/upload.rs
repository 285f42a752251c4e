//! The body of a plugin upload (`PUT /v1/admin/plugins/{name}`): the component alone,
//! sent as `application/wasm`, or `multipart/form-data` with the component in a part
//! named `component` and, optionally, its sidecar's TOML in a part named `sidecar`. The
//! whole body is read within `[plugins] max-upload-bytes` (413 over it), refused before
//! it is read when its declared length is already over.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;

use super::bodies::read_limited;
use super::{ApiError, AppState};

/// What a plugin upload carries.
#[derive(Debug)]
pub struct PluginUpload {
    /// The component's bytes (checked later, when it is loaded).
    pub component: Vec<u8>,
    /// The sidecar's TOML, if sent; without one an installation keeps its sidecar.
    pub sidecar: Option<String>,
}

/// The part names of a multipart upload.
const COMPONENT_PART: &str = "component";
const SIDECAR_PART: &str = "sidecar";

impl FromRequest<AppState> for PluginUpload {
    type Rejection = ApiError;

    async fn from_request(request: Request, app: &AppState) -> Result<PluginUpload, ApiError> {
        let limit = app.max_upload_bytes;
        let media = request
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.split(';').next())
            .map(|media| media.trim().to_ascii_lowercase());
        let multipart = match media.as_deref() {
            Some("application/wasm") => false,
            Some("multipart/form-data") => true,
            other => return Err(unsupported_media_type(other)),
        };
        let (parts, body) = request.into_parts();
        let bytes = read_limited(&parts.headers, body, limit).await.map_err(|unread| {
            unread.answer(|| {
                ApiError::payload_too_large(format!(
                    "the upload is over the limit of {limit} bytes ([plugins] max-upload-bytes)"
                ))
            })
        })?;
        if !multipart {
            return Ok(PluginUpload {
                component: bytes.to_vec(),
                sidecar: None,
            });
        }
        // Read within the limit above; axum's own default limit is lifted on this route.
        let request = Request::from_parts(parts, axum::body::Body::from(bytes));
        let mut form = Multipart::from_request(request, &())
            .await
            .map_err(|rejection| ApiError::bad_request(rejection.body_text()))?;
        let mut component = None;
        let mut sidecar = None;
        while let Some(field) = form.next_field().await.map_err(not_multipart)? {
            match field.name() {
                Some(COMPONENT_PART) => component = Some(field.bytes().await.map_err(not_multipart)?.to_vec()),
                Some(SIDECAR_PART) => {
                    let text = field.text().await.map_err(not_multipart)?;
                    sidecar = Some(text);
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown part {:?}: send the component in a part named {COMPONENT_PART:?} and, optionally, its sidecar's TOML in one named {SIDECAR_PART:?}",
                        other.unwrap_or_default()
                    )));
                }
            }
        }
        let component = component.ok_or_else(|| {
            ApiError::bad_request(format!(
                "the form has no part named {COMPONENT_PART:?} holding the component"
            ))
        })?;
        Ok(PluginUpload { component, sidecar })
    }
}

fn not_multipart(error: axum::extract::multipart::MultipartError) -> ApiError {
    ApiError::bad_request(format!("the multipart body is not valid: {}", error.body_text()))
}

fn unsupported_media_type(sent: Option<&str>) -> ApiError {
    let sent = match sent {
        Some(media) => format!("Content-Type {media:?}"),
        None => "no Content-Type".to_string(),
    };
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!(
            "send the component as application/wasm, or multipart/form-data with parts {COMPONENT_PART:?} and {SIDECAR_PART:?}; this request has {sent}"
        ),
    )
}
