//! The management routes: create, list, fetch, update, delete, setup, invoke.

use super::*;

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

pub(super) async fn create(
    State(app): State<AppState>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
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

pub(super) async fn update(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(body): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
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

pub(super) async fn fetch(State(app): State<AppState>, PathParams(id): PathParams<String>) -> ApiResult<Json<Value>> {
    let trigger = stored_trigger(&app, &id).await?;
    Ok(Json(shown(&app, &trigger, true)))
}

pub(super) async fn delete(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<Json<Value>> {
    if !jobs(&app).delete_trigger(&id).await? {
        return Err(not_found(&id));
    }
    Ok(Json(json!({ "id": id })))
}

/// Validates the trigger and its bot binding and (re)arms its schedule. Changes nothing
/// when all is well, so it is safe to repeat.
pub(super) async fn setup(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    _: JsonBody<IgnoredAny>,
) -> ApiResult<Json<Value>> {
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
    Ok(Json(json!({ "id": id })))
}

pub(super) async fn invoke(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    JsonBody(object): JsonBody<Map<String, Value>>,
) -> ApiResult<Json<Value>> {
    let trigger = jobs(&app).find_trigger(&id).await?.ok_or_else(|| not_found(&id))?;
    let body = if object.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(Value::Object(object).to_string())
    };
    let queued = jobs(&app).invoke(&trigger, body).await?;
    Ok(Json(json!({ "id": id, "eventId": queued.id })))
}

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
    let items: Vec<Value> = page.items.iter().map(|t| shown(&app, t, t.authenticate)).collect();
    let mut answer = json!({ "items": items });
    if let Some(cursor) = page.cursor {
        answer["cursor"] = Value::String(cursor);
    }
    Ok(Json(answer).into_response())
}
