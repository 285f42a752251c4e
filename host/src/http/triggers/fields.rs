//! The fields of a trigger as the API reads them from a create or update body.

use super::*;

/// A field that may be absent (leave unchanged), null (clear) or set.
pub(super) enum Field<T> {
    Absent,
    Null,
    Set(T),
}

impl<T> Field<T> {
    pub(super) fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Field::Absent => current,
            Field::Null => None,
            Field::Set(value) => Some(value),
        }
    }
}

pub(super) fn text_field(body: &Map<String, Value>, key: &str, max_len: usize) -> ApiResult<Field<String>> {
    match body.get(key) {
        None => Ok(Field::Absent),
        Some(Value::Null) => Ok(Field::Null),
        Some(Value::String(text)) if text.chars().count() <= max_len => Ok(Field::Set(text.clone())),
        Some(Value::String(_)) => Err(ApiError::bad_request(format!(
            "{key} is longer than {max_len} characters"
        ))),
        Some(other) => Err(ApiError::bad_request(format!(
            "{key} must be a string (or null), not {}",
            json_type(other)
        ))),
    }
}

/// The fields of a create or update body, checked.
pub(super) struct TriggerFields {
    pub(super) name: Field<String>,
    pub(super) description: Field<String>,
    pub(super) bot_id: Field<String>,
    pub(super) authenticate: Option<bool>,
    pub(super) schedule: Field<String>,
    pub(super) timezone: Field<String>,
    pub(super) session_duration_ms: Option<i64>,
    pub(super) blueprint_id: Field<String>,
    pub(super) meta: Field<Value>,
}

pub(super) fn trigger_fields(body: &Map<String, Value>) -> ApiResult<TriggerFields> {
    let authenticate = match body.get("authenticate") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(flag)) => Some(*flag),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "authenticate must be true or false, not {}",
                json_type(other)
            )));
        }
    };
    let session_duration_ms = match body.get("sessionDuration") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(ms) if (0..=(1i64 << 53)).contains(&ms) => Some(ms),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "sessionDuration must be a whole number of milliseconds, 0 or more, not {n}"
                )));
            }
        },
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sessionDuration must be a number of milliseconds, not {}",
                json_type(other)
            )));
        }
    };
    let meta = match body.get("meta") {
        None => Field::Absent,
        Some(Value::Null) => Field::Null,
        Some(Value::Object(meta)) if Value::Object(meta.clone()).to_string().len() <= 16 * 1024 => {
            Field::Set(Value::Object(meta.clone()))
        }
        Some(Value::Object(_)) => return Err(ApiError::bad_request("meta is larger than 16 KiB")),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "meta must be an object, not {}",
                json_type(other)
            )));
        }
    };
    // `schedule` is the SDK's name for the seed's `triggerSchedule`.
    let schedule = match (
        text_field(body, "triggerSchedule", 256)?,
        text_field(body, "schedule", 256)?,
    ) {
        (Field::Set(a), Field::Set(b)) if a != b => {
            return Err(ApiError::bad_request(
                "triggerSchedule and schedule name the same setting; give one, or the same value in both",
            ));
        }
        (Field::Absent, other) | (other, _) => other,
    };
    let schedule = match schedule {
        Field::Set(expression) if expression.trim().is_empty() => Field::Null,
        other => other,
    };
    Ok(TriggerFields {
        name: text_field(body, "name", 256)?,
        description: text_field(body, "description", 4096)?,
        bot_id: text_field(body, "botId", 256)?,
        authenticate,
        schedule,
        timezone: text_field(body, "timezone", 64)?,
        session_duration_ms,
        blueprint_id: text_field(body, "blueprintId", 256)?,
        meta,
    })
}
