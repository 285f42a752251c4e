//! `callAction`: `POST /v1/chat/actions` with `{type: "<integration>:<action>", input}`
//! answers `{output, meta: {cached, cost}}`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::bot;
use crate::http::AppState;
use crate::http::errors::ApiResult;
use crate::http::extract::JsonBody;
use crate::http::request_id::RequestId;

/// Body of `callAction`.
#[derive(Debug, Deserialize)]
pub struct CallBody {
    #[serde(rename = "type")]
    action_type: String,
    input: Value,
}

pub async fn call(
    State(app): State<AppState>,
    request_id: RequestId,
    JsonBody(request): JsonBody<CallBody>,
) -> ApiResult<Json<Value>> {
    let answer = bot::call_action(&app.plugins, &request.action_type, request.input, request_id.as_str()).await?;
    Ok(Json(json!({
        "output": answer.output,
        "meta": { "cached": false, "cost": answer.cost },
    })))
}
