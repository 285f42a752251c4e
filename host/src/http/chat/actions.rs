//! `callAction`: `POST /v1/chat/actions` with `{type: "<integration>:<action>", input}`
//! answers `{output, meta: {cached, cost}}`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::TAG;
use crate::bot;
use crate::http::AppState;
use crate::http::errors::ApiResult;
use crate::http::extract::JsonBody;
use crate::http::request_id::RequestId;

/// Body of `callAction`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = CallActionBody, example = json!({"type": "shop:getOrder", "input": {"orderId": "1001"}}))]
pub struct CallBody {
    /// `<integration>:<action>`, an action an installed integration declares.
    #[serde(rename = "type")]
    action_type: String,
    /// Checked against the action's input schema.
    input: Value,
}

/// What an action answered.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionAnswer {
    /// The action's output, checked against its output schema.
    output: Value,
    meta: ActionMeta,
}

/// The `meta` of an action's answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ActionMeta {
    /// Always false.
    cached: bool,
    /// What the integration said the call cost.
    cost: f64,
}

/// Run an integration's action (`callAction`).
#[utoipa::path(post, path = "/v1/chat/actions", tag = TAG, operation_id = "callAction",
    request_body = CallBody,
    responses((status = 200, description = "The action's output", body = ActionAnswer)))]
pub async fn call(
    State(app): State<AppState>,
    request_id: RequestId,
    JsonBody(request): JsonBody<CallBody>,
) -> ApiResult<Json<ActionAnswer>> {
    let answer = bot::call_action(&app.plugins, &request.action_type, request.input, request_id.as_str()).await?;
    Ok(Json(ActionAnswer {
        output: answer.output,
        meta: ActionMeta {
            cached: false,
            cost: answer.cost,
        },
    }))
}
