//! The management routes: create, list, fetch, update, delete, setup, invoke.

use super::*;

/// The fields create and update read (by hand, in [`trigger_fields`]); update changes only
/// those given, and null clears one.
#[derive(ToSchema)]
#[schema(rename_all = "camelCase")]
#[schema(as = TriggerBody, example = json!({"name": "Daily report", "botId": "trigger", "schedule": "0 9 * * *", "timezone": "Europe/Paris"}))]
#[allow(dead_code, reason = "describes the body read by hand, for the OpenAPI document")]
pub(super) struct TriggerBody {
    /// Up to 256 characters.
    #[schema(max_length = 256)]
    name: Option<String>,
    /// Up to 4096 characters.
    #[schema(max_length = 4096)]
    description: Option<String>,
    /// Required by create: the installation (name or id) that runs the trigger's events.
    #[schema(max_length = 256)]
    bot_id: Option<String>,
    /// Whether events must carry `Authorization: Bearer <secret>` (false by default).
    authenticate: Option<bool>,
    /// A cron expression (five fields); empty clears it.
    #[schema(max_length = 256)]
    trigger_schedule: Option<String>,
    /// The same as `triggerSchedule` (give one, or the same in both).
    #[schema(max_length = 256)]
    schedule: Option<String>,
    /// An IANA time zone for the schedule.
    #[schema(max_length = 64)]
    timezone: Option<String>,
    /// Milliseconds a session's conversation lasts (one hour by default).
    #[schema(minimum = 0, maximum = 9007199254740992u64)]
    session_duration: Option<i64>,
    #[schema(max_length = 256)]
    blueprint_id: Option<String>,
    /// Any object up to 16 KiB.
    #[schema(value_type = Option<Object>)]
    meta: Option<Value>,
}

/// A page of triggers.
#[derive(Serialize, ToSchema)]
pub(super) struct TriggerList {
    items: Vec<Trigger>,
    /// Give it as `cursor` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    cursor: Option<String>,
}

/// The trigger's id, once done.
#[derive(Serialize, ToSchema)]
pub(super) struct TriggerId {
    id: String,
}

/// An invoked trigger and the event queued.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct Invoked {
    id: String,
    /// The queued event (see the trigger's events).
    event_id: String,
}

/// The query of list.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the query read by hand, for the OpenAPI document")]
pub(super) struct ListQuery {
    /// The `cursor` of the page before.
    cursor: Option<String>,
    /// Triggers per page: 20 when left out, 1 to 100.
    #[param(minimum = 1, maximum = 100)]
    take: Option<u32>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    #[param(rename = "blueprintId")]
    blueprint_id: Option<String>,
}

/// The path of a trigger.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code, reason = "describes the path, for the OpenAPI document")]
pub(super) struct TriggerPath {
    /// The trigger's id.
    id: String,
}

/// Checks a trigger's bot and schedule; the error names what is wrong.
pub(super) fn check_trigger(app: &AppState, trigger: &TriggerRecord) -> ApiResult<()> {
    if app.plugins.registry.by_id_or_name(&trigger.bot_id).is_none() {
        return Err(ApiError::bad_request(unknown_bot(app, &trigger.bot_id)));
    }
    if let Some(expression) = &trigger.schedule {
        Schedule::parse(expression, trigger.timezone.as_deref()).map_err(ApiError::bad_request)?;
    } else if let Some(timezone) = &trigger.timezone {
        Schedule::parse("0 0 * * *", Some(timezone)).map_err(ApiError::bad_request)?;
    }
    Ok(())
}

pub(super) fn unknown_bot(app: &AppState, bot_id: &str) -> String {
    let snapshot = app.plugins.registry.snapshot();
    let installed: Vec<&str> = snapshot.installations.keys().map(String::as_str).collect();
    format!(
        "botId {bot_id:?} is not an installed plugin: give an installation's name or id (installed: {})",
        if installed.is_empty() {
            "none".to_string()
        } else {
            installed.join(", ")
        }
    )
}

/// Create a trigger.
#[utoipa::path(post, path = "/v1/integration/trigger/create", tag = TAG, operation_id = "createTrigger",
    request_body = TriggerBody,
    responses((status = 200, description = "The trigger, with its secret", body = Trigger)))]
pub(super) async fn create(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Trigger>> {
    let fields = trigger_fields(&body)?;
    let Field::Set(bot_id) = fields.bot_id else {
        return Err(ApiError::bad_request(
            "botId is required: the name or id of the installed plugin that runs the trigger's events",
        ));
    };
    let now = now_ms();
    let trigger = TriggerRecord {
        id: record_id("trg"),
        name: fields.name.apply(None),
        description: fields.description.apply(None),
        bot_id,
        // 256 random bits.
        secret: secret_token(32),
        authenticate: fields.authenticate.unwrap_or(false),
        schedule: fields.schedule.apply(None),
        timezone: fields.timezone.apply(None),
        session_duration_ms: fields.session_duration_ms.unwrap_or(DEFAULT_SESSION_DURATION_MS),
        blueprint_id: fields.blueprint_id.apply(None),
        meta: fields.meta.apply(None).unwrap_or_else(|| json!({})),
        last_trigger_at: None,
        created_at: now,
        updated_at: now,
    };
    check_trigger(&app, &trigger)?;
    jobs(&app).save_trigger(trigger.clone(), true).await?;
    tracing::info!(trigger = %trigger.id, bot = %trigger.bot_id, "trigger created");
    Ok(Json(shown(&app, &trigger, true)))
}

/// Update a trigger: the fields given, null clearing one.
#[utoipa::path(post, path = "/v1/integration/trigger/{id}/update", tag = TAG, operation_id = "updateTrigger",
    params(TriggerPath), request_body = TriggerBody,
    responses((status = 200, description = "The trigger as updated", body = Trigger)))]
pub(super) async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Trigger>> {
    let fields = trigger_fields(&body)?;
    let current = stored_trigger(&app, &id).await?;
    if matches!(fields.bot_id, Field::Null) {
        return Err(ApiError::bad_request(
            "botId cannot be removed: every trigger runs a bot",
        ));
    }
    let trigger = TriggerRecord {
        name: fields.name.apply(current.name.clone()),
        description: fields.description.apply(current.description.clone()),
        bot_id: fields.bot_id.apply(Some(current.bot_id.clone())).unwrap_or_default(),
        authenticate: fields.authenticate.unwrap_or(current.authenticate),
        schedule: fields.schedule.apply(current.schedule.clone()),
        timezone: fields.timezone.apply(current.timezone.clone()),
        session_duration_ms: fields.session_duration_ms.unwrap_or(current.session_duration_ms),
        blueprint_id: fields.blueprint_id.apply(current.blueprint_id.clone()),
        meta: fields
            .meta
            .apply(Some(current.meta.clone()))
            .unwrap_or_else(|| json!({})),
        updated_at: now_ms().max(current.updated_at),
        ..current
    };
    check_trigger(&app, &trigger)?;
    if !jobs(&app).save_trigger(trigger.clone(), false).await? {
        return Err(not_found(&id));
    }
    Ok(Json(shown(&app, &trigger, true)))
}

/// Fetch a trigger, with its secret.
#[utoipa::path(get, path = "/v1/integration/trigger/{id}/fetch", tag = TAG, operation_id = "fetchTrigger",
    params(TriggerPath),
    responses((status = 200, description = "The trigger", body = Trigger)))]
pub(super) async fn fetch(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Trigger>> {
    let trigger = stored_trigger(&app, &id).await?;
    Ok(Json(shown(&app, &trigger, true)))
}

/// Any JSON object, not read.
#[derive(ToSchema)]
#[allow(dead_code, reason = "describes a body that is not read, for the OpenAPI document")]
pub struct Unread {}

/// Delete a trigger and its queued events.
#[utoipa::path(post, path = "/v1/integration/trigger/{id}/delete", tag = TAG, operation_id = "deleteTrigger",
    params(TriggerPath), request_body(content = Unread),
    responses((status = 200, description = "The trigger is deleted", body = TriggerId)))]
pub(super) async fn delete(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<Json<TriggerId>> {
    if !jobs(&app).delete_trigger(&id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(TriggerId { id }))
}

/// Check a trigger and its bot binding and (re)arm its schedule.
///
/// Changes nothing when all is well, so it is safe to repeat.
#[utoipa::path(post, path = "/v1/integration/trigger/{id}/setup", tag = TAG, operation_id = "setupTrigger",
    params(TriggerPath), request_body(content = Unread),
    responses(
        (status = 200, description = "The trigger is ready", body = TriggerId),
        (status = 409, description = "The trigger is not ready (TriggerNotReady), and why", body = TriggerErrorBody),
    ))]
pub(super) async fn setup(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<Json<TriggerId>> {
    let trigger = stored_trigger(&app, &id).await?;
    let mut problems = Vec::new();
    match app.plugins.registry.by_id_or_name(&trigger.bot_id) {
        None => problems.push(unknown_bot(&app, &trigger.bot_id)),
        Some(installation) if !installation.problems.is_empty() => problems.push(format!(
            "bot {} cannot take events: {}",
            trigger.bot_id,
            installation.problems.join("; ")
        )),
        Some(installation) => {
            if !installation
                .plugin
                .definition
                .channels
                .contains_key(crate::jobs::TRIGGER_CHANNEL)
            {
                tracing::info!(trigger = %id, bot = %trigger.bot_id, "the bot declares no `trigger` channel: it can record events but not messages in trigger conversations");
            }
        }
    }
    if let Some(expression) = &trigger.schedule
        && let Err(problem) = Schedule::parse(expression, trigger.timezone.as_deref())
    {
        problems.push(problem);
    }
    if !problems.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "TriggerNotReady",
            format!("trigger {id} is not ready: {}", problems.join("; ")),
        ));
    }
    jobs(&app).timetable.set(
        &trigger.id,
        trigger.schedule.as_deref().map(|e| (e, trigger.timezone.as_deref())),
    );
    Ok(Json(TriggerId { id }))
}

/// Queue an event for a trigger now, with this object as its body (none when empty).
#[utoipa::path(post, path = "/v1/integration/trigger/{id}/invoke", tag = TAG, operation_id = "invokeTrigger",
    params(TriggerPath), request_body(content = Object),
    responses((status = 200, description = "The event is queued", body = Invoked)))]
pub(super) async fn invoke(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(object): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Invoked>> {
    let trigger = jobs(&app).find_trigger(&id).await?.ok_or_else(|| not_found(&id))?;
    let body = if object.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(Value::Object(object).to_string())
    };
    let queued = jobs(&app).invoke(&trigger, body).await?;
    Ok(Json(Invoked {
        id,
        event_id: queued.id,
    }))
}

/// List triggers (`meta.<key>=<value>` filters by meta, any number of them).
#[utoipa::path(get, path = "/v1/integration/trigger/list", tag = TAG, operation_id = "listTriggers",
    params(ListQuery),
    responses((status = 200, description = "A page of triggers; with `Accept: application/jsonl`, every trigger (page after page, whatever `take` says), one `{\"type\":\"item\",\"data\":trigger}` line each",
        content(
            (TriggerList = "application/json"),
            (String = "application/jsonl"),
        ))))]
pub(super) async fn list(
    State(app): State<AppState>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let mut query = TriggerQuery {
        take: 20,
        ..Default::default()
    };
    for (key, value) in query_pairs(raw.as_deref())? {
        match key.as_str() {
            "cursor" if !value.is_empty() => query.cursor = Some(value),
            "cursor" => {}
            "take" => {
                query.take = match value.parse::<usize>() {
                    Ok(take) if (1..=100).contains(&take) => take,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "take must be a number from 1 to 100, not {value:?}"
                        )));
                    }
                }
            }
            "order" => {
                query.ascending = match value.as_str() {
                    "asc" => true,
                    "desc" => false,
                    _ => {
                        return Err(ApiError::bad_request(format!(
                            "order must be asc or desc, not {value:?}"
                        )));
                    }
                }
            }
            "blueprintId" => query.blueprint_id = Some(value),
            other => {
                if let Some(meta_key) = other.strip_prefix("meta.") {
                    if meta_key.is_empty()
                        || !meta_key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(ApiError::bad_request(format!(
                            "meta filter {other:?}: a meta key may use letters, digits, _ and -"
                        )));
                    }
                    query.meta.push((meta_key.to_string(), value));
                }
            }
        }
    }
    let mut page = app.store.list_triggers(&query).await?;
    let wants_lines = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/jsonl"));
    if wants_lines {
        // ChatBotKit streams a list to its end, page after page, whatever `take` says.
        let mut lines = String::new();
        loop {
            for trigger in &page.items {
                let item = shown(&app, trigger, trigger.authenticate);
                lines.push_str(&json!({ "type": "item", "data": item }).to_string());
                lines.push('\n');
            }
            let Some(cursor) = page.cursor.take() else { break };
            query.cursor = Some(cursor);
            page = app.store.list_triggers(&query).await?;
        }
        return Ok(([(CONTENT_TYPE, "application/jsonl")], lines).into_response());
    }
    let items: Vec<Trigger> = page.items.iter().map(|t| shown(&app, t, t.authenticate)).collect();
    Ok(Json(TriggerList {
        items,
        cursor: page.cursor,
    })
    .into_response())
}
