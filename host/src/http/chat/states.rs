//! States: `getState`, `setState`, `getOrSetState`, `patchState` and delete, at
//! `/v1/chat/states/{type}/{id}/{name}`. A state the plugin declares must match its schema.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::errors::ApiResult;
use crate::http::extract::{JsonBody, PathParams};
use crate::http::{ApiError, AppState, shapes};
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

fn state_json(app: &AppState, state: &StateRecord) -> Value {
    shapes::state(state, &app.plugins.identity.bot_id)
}

pub async fn get(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let key = state_key(&app, &scope, &id, &name).await?;
    let state = app
        .store
        .state(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("state {scope}/{id}/{name} does not exist")))?;
    Ok(Json(
        json!({ "state": state_json(&app, &state), "meta": { "cached": false } }),
    ))
}

/// Body of `setState`, `getOrSetState` and `patchState`.
#[derive(Debug, Deserialize)]
pub struct StateBody {
    payload: Value,
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

pub async fn set(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<StateBody>,
) -> ApiResult<Json<Value>> {
    request.check_expiry()?;
    let key = state_key(&app, &scope, &id, &name).await?;
    if request.payload.is_null() {
        app.store.delete_state(&key).await?;
        return Ok(Json(json!({ "state": null })));
    }
    let payload = Value::Object(
        request
            .object()
            .map_err(|_| ApiError::bad_request("payload must be a JSON object (or null to delete the state)"))?,
    );
    schema_check(&app, &key)(&payload).map_err(invalid_state)?;
    let state = app.store.put_state(&key, &payload).await?;
    Ok(Json(json!({ "state": state_json(&app, &state) })))
}

pub async fn get_or_set(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<StateBody>,
) -> ApiResult<Json<Value>> {
    request.check_expiry()?;
    let payload = Value::Object(request.object()?);
    let key = state_key(&app, &scope, &id, &name).await?;
    schema_check(&app, &key)(&payload).map_err(invalid_state)?;
    let (state, _created) = app.store.get_or_put_state(&key, &payload).await?;
    Ok(Json(
        json!({ "state": state_json(&app, &state), "meta": { "cached": false } }),
    ))
}

pub async fn patch(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
    JsonBody(request): JsonBody<StateBody>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({ "state": state_json(&app, &state) })))
}

pub async fn delete(
    State(app): State<AppState>,
    PathParams((scope, id, name)): PathParams<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let key = state_key(&app, &scope, &id, &name).await?;
    let existed = app.store.delete_state(&key).await?;
    if !existed {
        return Err(ApiError::not_found(format!("state {scope}/{id}/{name} does not exist")));
    }
    Ok(Json(json!({})))
}
