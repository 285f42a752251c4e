//! Users: `listUsers`, `getUser`, `getOrCreateUser`, `createUser`, `updateUser`,
//! `deleteUser`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{entity_query, integration_header, page_meta, tag_changes, unsupported_fields};
use crate::bot::conversations::{UserRequest, create_user, get_or_create_user, update_user};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::{ApiError, AppState, shapes};
use crate::store::UserChanges;

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

/// Body of `createUser`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateBody {
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    integration_name: Option<String>,
    name: Option<String>,
    picture_url: Option<String>,
    attributes: Option<Value>,
    properties: Option<Value>,
}

pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateBody>,
) -> ApiResult<Json<Value>> {
    unsupported_fields([("attributes", &request.attributes), ("properties", &request.properties)])?;
    let user = create_user(
        &app.plugins,
        UserRequest {
            tags: request.tags,
            integration: request.integration_name.or_else(|| integration_header(&headers)),
            name: request.name,
            picture_url: request.picture_url,
            discriminate_by_tags: None,
        },
    )
    .await?;
    Ok(Json(json!({ "user": shapes::user(&user) })))
}

/// Body of `updateUser`: a field left out is left as it is, `null` clears it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateBody {
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    picture_url: Option<Option<String>>,
    attributes: Option<Value>,
    properties: Option<Value>,
}

/// A field that is there, `null` or not.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

pub async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<UpdateBody>,
) -> ApiResult<Json<Value>> {
    unsupported_fields([("attributes", &request.attributes), ("properties", &request.properties)])?;
    let changes = UserChanges {
        tags: tag_changes(request.tags),
        name: request.name,
        picture_url: request.picture_url,
    };
    let user = update_user(&app.plugins, &id, changes).await?;
    Ok(Json(json!({ "user": shapes::user(&user) })))
}

pub async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    if !app.store.delete_user(&id).await? {
        return Err(ApiError::not_found(format!("user {id} does not exist")));
    }
    Ok(Json(json!({})))
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
