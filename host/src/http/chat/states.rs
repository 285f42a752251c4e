//! States: `getState`, `setState`, `getOrSetState`, `patchState` and delete, at
//! `/v1/chat/states/{type}/{id}/{name}`. A state the plugin declares must match its schema.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::TAG;
use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::shapes::{self, CachedMeta, Deleted};
use crate::http::{ApiError, AppState};
use crate::store::{Patched, StateCheck, StateKey, StateRecord, StateScope};

/// Resolves the state key of `/v1/chat/states/{type}/{id}/{name}`: integration state
/// belongs to the installation `id`, conversation and user state to the installation
/// that owns the conversation or user, bot state to the bot.
pub async fn state_key(app: &AppState, scope: &str, id: &str, name: &str) -> ApiResult<StateKey> {
    let Some(scope) = StateScope::parse(scope) else {
        return Err(ApiError::bad_request(format!(
            "state type {scope:?} is not supported; use bot, integration, conversation or user"
        )));
    };
    let owner = id.to_string();
    let installation_id = match scope {
        StateScope::Bot => String::new(),
        StateScope::Integration => {
            let snapshot = app.plugins.registry.snapshot();
            let known = snapshot.by_id(id).is_some() || app.store.installations().await?.iter().any(|r| r.id == id);
            if !known {
                return Err(ApiError::not_found(format!("integration {id} is not installed")));
            }
            id.to_string()
        }
        StateScope::Conversation => app
            .store
            .conversation(&owner)
            .await?
            .map(|c| c.installation_id)
            .ok_or_else(|| ApiError::not_found(format!("conversation {id} does not exist")))?,
        StateScope::User => app
            .store
            .user(&owner)
            .await?
            .map(|u| u.installation_id.unwrap_or_default())
            .ok_or_else(|| ApiError::not_found(format!("user {id} does not exist")))?,
    };
    Ok(StateKey {
        installation_id,
        scope,
        owner_id: id.to_string(),
        name: name.to_string(),
    })
}

/// The schema the installation's plugin declares for this state, as a check a payload
/// must pass: the same check a plugin's own `set-state` gets. Bot states, and states the
/// plugin does not declare, take any object.
pub(crate) fn schema_check(app: &AppState, key: &StateKey) -> StateCheck {
    let installation = match key.scope {
        StateScope::Bot => None,
        _ => app.plugins.registry.snapshot().by_id(&key.installation_id).cloned(),
    };
    let Some(installation) = installation else {
        return Box::new(|_| Ok(()));
    };
    let (scope, name) = (key.scope, key.name.clone());
    Box::new(move |payload| {
        let definition = &installation.plugin.definition;
        definition.check_state(scope, &name, payload).map_err(|problems| {
            format!(
                "state {name} does not match its schema in integration {}: {problems}",
                definition.name
            )
        })
    })
}

/// A payload that does not match the state's schema.
pub(crate) fn invalid_state(why: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidDataFormat", why)
}

fn state_json(app: &AppState, state: &StateRecord) -> shapes::State {
    shapes::state(state, &app.plugins.identity.bot_id)
}

/// The path of a state.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path read as a tuple, for the OpenAPI document")]
pub struct StatePath {
    /// `bot`, `integration`, `conversation` or `user`.
    #[param(rename = "type")]
    scope: String,
    /// Whose state: the bot's id (any text for `bot`), an installation's id, a
    /// conversation's or a user's.
    id: String,
    /// The state's name (the integration declares its states).
    name: String,
}

/// A state, as `getState` and `getOrSetState` answer it.
#[derive(Debug, Serialize, ToSchema)]
pub struct StateAnswer {
    state: shapes::State,
    meta: CachedMeta,
}

/// A state set or patched; `setState` with a null payload deleted it (`state: null`).
#[derive(Debug, Serialize, ToSchema)]
pub struct StateSet {
    #[schema(required)]
    state: Option<shapes::State>,
}

/// Get a state (`getState`).
#[utoipa::path(get, path = "/v1/chat/states/{type}/{id}/{name}", tag = TAG, operation_id = "getState",
    params(StatePath),
    responses((status = 200, description = "The state", body = StateAnswer)))]
pub async fn get(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
) -> ApiResult<Json<StateAnswer>> {
    let key = state_key(&app, &scope, &id, &name).await?;
    let state = app
        .store
        .state(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("state {scope}/{id}/{name} does not exist")))?;
    Ok(Json(StateAnswer {
        state: state_json(&app, &state),
        meta: CachedMeta::NOT,
    }))
}

/// Body of `setState`, `getOrSetState` and `patchState`.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"payload": {"greeting": "hello"}}))]
pub struct StateBody {
    /// A JSON object (checked against the state's schema when the integration declares
    /// it); `setState` also takes null, which deletes the state.
    #[schema(value_type = Option<Object>)]
    payload: Value,
    /// Not supported: anything but null is a 400.
    #[serde(default)]
    expiry: Option<Value>,
}

impl StateBody {
    /// Refuses what sluice does not do (expiring states) rather than ignoring it.
    fn check_expiry(&self) -> ApiResult<()> {
        if self.expiry.as_ref().is_some_and(|e| !e.is_null()) {
            return Err(ApiError::bad_request(
                "expiry is not supported by sluice: states are kept until deleted",
            ));
        }
        Ok(())
    }

    /// The payload as a JSON object.
    fn object(self) -> ApiResult<Map<String, Value>> {
        match self.payload {
            Value::Object(fields) => Ok(fields),
            _ => Err(ApiError::bad_request("payload must be a JSON object")),
        }
    }
}

/// Set a state, or delete it with a null payload (`setState`).
#[utoipa::path(post, path = "/v1/chat/states/{type}/{id}/{name}", tag = TAG, operation_id = "setState",
    params(StatePath),
    request_body = StateBody,
    responses((status = 200, description = "The state as set (null once deleted)", body = StateSet)))]
pub async fn set(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<StateBody>,
) -> ApiResult<Json<StateSet>> {
    request.check_expiry()?;
    let key = state_key(&app, &scope, &id, &name).await?;
    if request.payload.is_null() {
        app.store.delete_state(&key).await?;
        return Ok(Json(StateSet { state: None }));
    }
    let payload = Value::Object(
        request
            .object()
            .map_err(|_| ApiError::bad_request("payload must be a JSON object (or null to delete the state)"))?,
    );
    schema_check(&app, &key)(&payload).map_err(invalid_state)?;
    let state = app.store.put_state(&key, &payload).await?;
    Ok(Json(StateSet {
        state: Some(state_json(&app, &state)),
    }))
}

/// Get a state, or set it when there is none (`getOrSetState`).
#[utoipa::path(post, path = "/v1/chat/states/{type}/{id}/{name}/get-or-set", tag = TAG,
    operation_id = "getOrSetState",
    params(StatePath),
    request_body = StateBody,
    responses((status = 200, description = "The state, found or set", body = StateAnswer)))]
pub async fn get_or_set(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<StateBody>,
) -> ApiResult<Json<StateAnswer>> {
    request.check_expiry()?;
    let payload = Value::Object(request.object()?);
    let key = state_key(&app, &scope, &id, &name).await?;
    schema_check(&app, &key)(&payload).map_err(invalid_state)?;
    let (state, _created) = app.store.get_or_put_state(&key, &payload).await?;
    Ok(Json(StateAnswer {
        state: state_json(&app, &state),
        meta: CachedMeta::NOT,
    }))
}

/// Merge fields into a state (`patchState`).
#[utoipa::path(patch, path = "/v1/chat/states/{type}/{id}/{name}", tag = TAG, operation_id = "patchState",
    params(StatePath),
    request_body = StateBody,
    responses((status = 200, description = "The state as patched", body = StateSet)))]
pub async fn patch(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<StateBody>,
) -> ApiResult<Json<StateSet>> {
    request.check_expiry()?;
    let patch = request.object()?;
    let key = state_key(&app, &scope, &id, &name).await?;
    let check = schema_check(&app, &key);
    let state = match app.store.patch_state(&key, &patch, check).await? {
        Patched::Done(state) => state,
        Patched::Missing => {
            return Err(ApiError::not_found(format!(
                "state {scope}/{id}/{name} does not exist; create it with setState first"
            )));
        }
        Patched::Refused(why) => return Err(invalid_state(why)),
    };
    Ok(Json(StateSet {
        state: Some(state_json(&app, &state)),
    }))
}

/// Delete a state.
#[utoipa::path(delete, path = "/v1/chat/states/{type}/{id}/{name}", tag = TAG, operation_id = "deleteState",
    params(StatePath),
    responses((status = 200, description = "The state is deleted", body = Deleted)))]
pub async fn delete(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
) -> ApiResult<Json<Deleted>> {
    let key = state_key(&app, &scope, &id, &name).await?;
    let existed = app.store.delete_state(&key).await?;
    if !existed {
        return Err(ApiError::not_found(format!("state {scope}/{id}/{name} does not exist")));
    }
    Ok(Json(Deleted {}))
}
