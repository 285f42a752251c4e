//! Users: `listUsers`, `getUser`, `getOrCreateUser`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::conversations::IntegrationHeader;
use super::query::EntityListQuery;
use super::{TAG, entity_query, integration_header};
use crate::bot::conversations::{UserRequest, get_or_create_user};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::shapes::{self, CreatedMeta, PageMeta};
use crate::http::{ApiError, AppState};

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    users: Vec<shapes::User>,
    meta: PageMeta,
}

/// One user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserAnswer {
    user: shapes::User,
}

/// A user found or made.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserGotOrCreated {
    user: shapes::User,
    meta: CreatedMeta,
}

/// List users (`listUsers`).
#[utoipa::path(get, path = "/v1/chat/users", tag = TAG, operation_id = "listUsers",
    params(EntityListQuery),
    responses((status = 200, description = "A page of users", body = UserList)))]
pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<UserList>> {
    let query = entity_query(raw.as_deref())?;
    let page = app.store.users(&query).await?;
    Ok(Json(UserList {
        users: page.items.iter().map(shapes::user).collect(),
        meta: PageMeta::new(page.next_token),
    }))
}

/// Get a user (`getUser`).
#[utoipa::path(get, path = "/v1/chat/users/{id}", tag = TAG, operation_id = "getUser",
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = UserAnswer)))]
pub async fn get(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<UserAnswer>> {
    let lookup = id.clone();
    let user = app
        .store
        .user(&lookup)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))?;
    Ok(Json(UserAnswer {
        user: shapes::user(&user),
    }))
}

/// Body of `getOrCreateUser`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = GetOrCreateUserBody, example = json!({"tags": {"id": "U1"}, "integrationName": "chat", "name": "Ada"}))]
pub struct GetOrCreateBody {
    /// The user's tags, which the integration declares; they find it.
    tags: BTreeMap<String, Option<String>>,
    /// The integration (installation name); or the `x-integration-id` header.
    integration_name: Option<String>,
    name: Option<String>,
    picture_url: Option<String>,
    /// The tags that tell users apart (all given tags when left out).
    discriminate_by_tags: Option<Vec<String>>,
}

/// Find the user with these tags, or make it (`getOrCreateUser`).
#[utoipa::path(post, path = "/v1/chat/users/get-or-create", tag = TAG, operation_id = "getOrCreateUser",
    params(IntegrationHeader),
    request_body = GetOrCreateBody,
    responses((status = 200, description = "The user, found or made", body = UserGotOrCreated)))]
pub async fn get_or_create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<GetOrCreateBody>,
) -> ApiResult<Json<UserGotOrCreated>> {
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
    Ok(Json(UserGotOrCreated {
        user: shapes::user(&user),
        meta: CreatedMeta { created },
    }))
}
