//! `callAction`: `POST /v1/chat/actions` with `{type: "<integration>:<action>", input}`
//! answers `{output, meta: {cached, cost}}`.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use serde::Deserialize;
use serde_json::{Value, json};

use super::body;
use crate::bot;
use crate::http::errors::ApiResult;
use crate::http::{ApiError, AppState};
use crate::ids::record_id;

/// Body of `callAction`.
#[derive(Debug, Deserialize)]
pub struct CallBody {
    #[serde(rename = "type")]
    action_type: String,
    input: Value,
}

pub async fn call(
    State(app): State<AppState>,
    request: Result<Json<CallBody>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let request = body("callAction", request)?;
    let request_id = record_id("req");
    let answer = bot::call_action(&app.plugins, &request.action_type, request.input, &request_id)
        .await
        .map_err(|error| ApiError::from(error).with_id(request_id))?;
    Ok(Json(json!({
        "output": answer.output,
        "meta": { "cached": false, "cost": answer.cost },
    })))
}
