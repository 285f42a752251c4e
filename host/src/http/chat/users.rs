//! Users: `listUsers`, `getUser`, `getOrCreateUser`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{entity_query, integration_header, page_meta};
use crate::bot::conversations::{UserRequest, get_or_create_user};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::{ApiError, AppState, shapes};

pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<Value>> {
    let query = entity_query(raw.as_deref())?;
    let page = app.store.users(&query).await?;
    Ok(Json(json!({
        "users": page.items.iter().map(shapes::user).collect::<Vec<_>>(),
        "meta": page_meta(page.next_token),
    })))
}

pub async fn get(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let lookup = id.clone();
    let user = app
        .store
        .user(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))?;
    Ok(Json(json!({ "user": shapes::user(&user) })))
}

/// Body of `getOrCreateUser`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetOrCreateBody {
    tags: BTreeMap<String, Option<String>>,
    integration_name: Option<String>,
    name: Option<String>,
    picture_url: Option<String>,
    discriminate_by_tags: Option<Vec<String>>,
}

pub async fn get_or_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<GetOrCreateBody>,
) -> ApiResult<Json<Value>> {
    let (user, created) = get_or_create_user(
        &app.plugins,
        UserRequest {
            tags: request.tags,
            integration: request.integration_name.or_else(|| integration_header(&headers)),
            name: request.name,
            picture_url: request.picture_url,
            discriminate_by_tags: request.discriminate_by_tags,
        },
    )
    .await?;
    Ok(Json(
        json!({ "user": shapes::user(&user), "meta": { "created": created } }),
    ))
}
