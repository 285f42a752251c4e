//! Users: `listUsers`, `getUser`, `getOrCreateUser`, `createUser`, `updateUser`,
//! `deleteUser`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::conversations::IntegrationHeader;
use super::query::{EntityList, PageQuery, SortQuery, UserFilters};
use super::{TAG, entity_query, integration_header, tag_changes, unsupported_fields};
use crate::bot::conversations::{UserRequest, create_user, get_or_create_user, update_user};
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::shapes::{self, CreatedMeta, Deleted, PageMeta};
use crate::http::{ApiError, AppState};
use crate::store::UserChanges;

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
    params(PageQuery, SortQuery, UserFilters),
    responses((status = 200, description = "A page of users", body = UserList)))]
pub async fn list(State(app): State<AppState>, RawQuery(raw): RawQuery) -> ApiResult<Json<UserList>> {
    let query = entity_query(EntityList::Users, raw.as_deref())?;
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

/// Body of `createUser`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = CreateUserBody, example = json!({"tags": {"id": "U1"}, "integrationName": "chat", "name": "Ada"}))]
pub struct CreateBody {
    /// The user's tags: ones the integration declares, or any for a user of the bot.
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    /// The integration (installation name); or the `x-integration-id` header; neither
    /// makes a user of the bot.
    integration_name: Option<String>,
    name: Option<String>,
    picture_url: Option<String>,
    /// Not supported: anything but null is a 400.
    attributes: Option<Value>,
    /// Not supported: anything but null is a 400.
    properties: Option<Value>,
}

/// Make a user, whatever users carry the same tags (`createUser`).
#[utoipa::path(post, path = "/v1/chat/users", tag = TAG, operation_id = "createUser",
    params(IntegrationHeader),
    request_body = CreateBody,
    responses((status = 200, description = "The user made", body = UserAnswer)))]
pub async fn create(
    State(app): State<AppState>,
    headers: HeaderMap,
    JsonBody(request): JsonBody<CreateBody>,
) -> ApiResult<Json<UserAnswer>> {
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
    Ok(Json(UserAnswer {
        user: shapes::user(&user),
    }))
}

/// Body of `updateUser`: a field left out is left as it is, `null` clears it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = UpdateUserBody, example = json!({"name": "Ada Lovelace"}))]
pub struct UpdateBody {
    /// Tags to set; null or an empty value removes one.
    #[serde(default)]
    tags: BTreeMap<String, Option<String>>,
    /// A new name; null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    name: Option<Option<String>>,
    /// A new picture; null clears it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    picture_url: Option<Option<String>>,
    /// Not supported: anything but null is a 400.
    attributes: Option<Value>,
    /// Not supported: anything but null is a 400.
    properties: Option<Value>,
}

/// A field that is there, `null` or not.
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(deserializer).map(Some)
}

/// Change a user's tags, name or picture (`updateUser`).
#[utoipa::path(put, path = "/v1/chat/users/{id}", tag = TAG, operation_id = "updateUser",
    params(("id" = String, Path, description = "The user's id")),
    request_body = UpdateBody,
    responses((status = 200, description = "The user as updated", body = UserAnswer)))]
pub async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(request): JsonBody<UpdateBody>,
) -> ApiResult<Json<UserAnswer>> {
    unsupported_fields([("attributes", &request.attributes), ("properties", &request.properties)])?;
    let changes = UserChanges {
        tags: tag_changes(request.tags),
        name: request.name,
        picture_url: request.picture_url,
    };
    let user = update_user(&app.plugins, &id, changes).await?;
    Ok(Json(UserAnswer {
        user: shapes::user(&user),
    }))
}

/// Forget a user (`deleteUser`).
#[utoipa::path(delete, path = "/v1/chat/users/{id}", tag = TAG, operation_id = "deleteUser",
    params(("id" = String, Path, description = "The user's id")),
    responses((status = 200, description = "The user is deleted", body = Deleted)))]
pub async fn delete(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Deleted>> {
    if !app.store.delete_user(&id).await? {
        return Err(ApiError::not_found(format!("user {id} does not exist")));
    }
    Ok(Json(Deleted {}))
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
