//! The event endpoint senders call: checks the request and writes the event to the queue,
//! answering `{"ok":true}` once it is on disk.

use super::*;
use crate::json_depth;

/// What the query string says about the event's session and contact.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EventParameters {
    pub session: Option<String>,
    pub contact: Option<Contact>,
}

pub(super) fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), String> {
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(format!("{name} is empty; leave it out or give a value"));
    }
    if value.chars().count() > 256 {
        return Err(format!("{name} is longer than 256 characters"));
    }
    match slot {
        Some(existing) if *existing != value => Err(format!(
            "{name} is given twice with different values ({existing:?} and {value:?})"
        )),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

/// Reads `session` and `contact.name|email|phone` (or `contact_name|email|phone`).
pub fn event_parameters(query: &str) -> Result<EventParameters, String> {
    let mut session = None;
    let mut contact = Contact::default();
    for (key, value) in query_pairs(Some(query)).map_err(|error| error.message)? {
        match key.as_str() {
            "session" => set_once(&mut session, "session", value)?,
            "contact.name" | "contact_name" => set_once(&mut contact.name, "the contact's name", value)?,
            "contact.email" | "contact_email" => set_once(&mut contact.email, "the contact's email", value)?,
            "contact.phone" | "contact_phone" => set_once(&mut contact.phone, "the contact's phone", value)?,
            _ => {}
        }
    }
    if let Some(email) = &mut contact.email {
        if !email.contains('@') || email.contains(char::is_whitespace) {
            return Err(format!("the contact's email {email:?} is not an email address"));
        }
        *email = email.to_lowercase();
    }
    Ok(EventParameters {
        session,
        contact: (!contact.is_empty()).then_some(contact),
    })
}

/// The query an event may carry.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code, reason = "describes the query read by hand, for the OpenAPI document")]
pub(super) struct EventQuery {
    /// The session: events with one session run one at a time, in one conversation.
    #[param(max_length = 256)]
    session: Option<String>,
    /// The contact's name (also `contact_name`).
    #[param(rename = "contact.name", max_length = 256)]
    contact_name: Option<String>,
    /// The contact's email (also `contact_email`).
    #[param(rename = "contact.email", max_length = 256)]
    contact_email: Option<String>,
    /// The contact's phone (also `contact_phone`).
    #[param(rename = "contact.phone", max_length = 256)]
    contact_phone: Option<String>,
}

/// The headers an event may carry.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "describes the headers read by hand, for the OpenAPI document")]
pub(super) struct EventHeaders {
    /// An event sent again with the same key is recorded once (answered with
    /// `idempotent-replayed: true`).
    #[param(rename = "Idempotency-Key", min_length = 1, max_length = 255)]
    idempotency_key: Option<String>,
}

/// The answer to an event.
#[derive(Serialize, ToSchema)]
pub(super) struct Accepted {
    /// Always true.
    ok: bool,
}

/// Send an event to a trigger: it is queued for the trigger's bot.
///
/// Any body, passed on as it came: JSON (`application/json`) must parse, text (`text/*`)
/// must be UTF-8. The answer comes once the event is on disk; a worker runs it afterwards.
#[utoipa::path(method(get, post), path = "/v1/integration/trigger/{id}/event", tag = TAG,
    operation_id = "sendTriggerEvent",
    params(manage::TriggerPath, EventQuery, EventHeaders),
    request_body(description = "Any body, passed to the bot as it came",
        content((Object = "application/json"), (String = "text/plain"), (Vec<u8> = "application/octet-stream"))),
    responses(
        (status = 200, description = "The event is queued", body = Accepted, headers(
            ("x-sluice-event-id" = String, description = "The queued event's id"),
            ("idempotent-replayed" = String, description = "`true` when the Idempotency-Key was seen before"),
        )),
        (status = 405, description = "Another method than GET or POST (MethodNotFound)", body = TriggerErrorBody),
        (status = 413, description = "The body is over `triggers.max-body-bytes` (PayloadTooLarge)", body = TriggerErrorBody),
    ),
    security((), ("triggerSecret" = [])))]
pub(super) async fn receive_event(
    State(app): State<AppState>,
    PathParams(id): PathParams<String>,
    request: Request,
) -> Response {
    match accept_event(&app, &id, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

pub(super) async fn accept_event(app: &AppState, id: &str, request: Request) -> ApiResult<Response> {
    let method = request.method().clone();
    if method != Method::GET && method != Method::POST {
        let mut response = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotFound",
            format!("send events with GET or POST, not {method}"),
        )
        .into_response();
        response
            .headers_mut()
            .insert("allow", HeaderValue::from_static("GET, POST"));
        return Ok(response);
    }
    let jobs = jobs(app);
    let trigger = jobs.find_trigger(id).await?.ok_or_else(|| not_found(id))?;
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if trigger.authenticate {
        match bearer_token(headers) {
            Some(given) if secrets_match(given.as_bytes(), trigger.secret.as_bytes()) => {}
            Some(_) => return Err(ApiError::unauthorized("the trigger secret is wrong")),
            None => {
                return Err(ApiError::unauthorized(
                    "this trigger authenticates its events: send Authorization: Bearer <trigger secret>",
                ));
            }
        }
    }
    let query = parts.uri.query().unwrap_or_default().to_string();
    let parameters = event_parameters(&query).map_err(ApiError::bad_request)?;
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key) if !key.trim().is_empty() && key.len() <= 255 => Some(key.trim().to_string()),
            _ => {
                return Err(ApiError::bad_request(
                    "Idempotency-Key must be 1 to 255 visible ASCII characters",
                ));
            }
        },
    };
    let content_type = headers
        .get(CONTENT_TYPE)
        .map(|v| {
            v.to_str()
                .map(str::to_string)
                .map_err(|_| ApiError::bad_request("the Content-Type header is not readable text"))
        })
        .transpose()?;
    let limit = jobs.settings.max_body_bytes;
    let too_large = || {
        ApiError::payload_too_large(format!(
            "the event body is over the limit of {limit} bytes (triggers.max-body-bytes in the host configuration)"
        ))
    };
    let mut kept_headers: Vec<(String, String)> = headers
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "authorization" | "cookie" | "proxy-authorization"))
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    kept_headers.push((SOURCE_HEADER.into(), JobSource::Event.as_str().into()));
    let body = read_limited(headers, body, limit)
        .await
        .map_err(|unread| unread.answer(too_large))?;
    check_body(content_type.as_deref(), &body)?;

    let job = NewJob {
        trigger_id: trigger.id.clone(),
        source: JobSource::Event,
        idempotency_key,
        method: method.as_str().to_string(),
        content_type,
        query,
        headers: kept_headers,
        body,
        session: parameters.session,
        contact: parameters.contact,
        received_at: now_ms(),
        budget: jobs.settings.max_attempts,
    };
    let queued = jobs.enqueue(job).await?;
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        Body::from(r#"{"ok":true}"#),
    )
        .into_response();
    if let Ok(value) = HeaderValue::from_str(&queued.id) {
        response.headers_mut().insert(EVENT_ID_HEADER, value);
    }
    if queued.replayed {
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// JSON bodies must parse (within the JSON depth rule) and text bodies must be UTF-8; anything else is passed on as
/// bytes.
pub(super) fn check_body(content_type: Option<&str>, body: &[u8]) -> ApiResult<()> {
    if body.is_empty() {
        return Ok(());
    }
    let media = content_type
        .and_then(|t| t.split(';').next())
        .map(|t| t.trim().to_ascii_lowercase())
        .unwrap_or_default();
    if media == "application/json" || media.ends_with("+json") {
        json_depth::check(body, json_depth::MAX_DEPTH, "the body").map_err(ApiError::bad_request)?;
        serde_json::from_slice::<serde::de::IgnoredAny>(body).map_err(|error| {
            ApiError::bad_request(format!(
                "the body is not valid JSON ({error}); send JSON with Content-Type: application/json, or text with text/plain"
            ))
        })?;
    } else if media.starts_with("text/") && std::str::from_utf8(body).is_err() {
        return Err(ApiError::bad_request(
            "the body is not valid UTF-8 text; fix the body or its Content-Type",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_contact_spellings_are_read() {
        let dotted = event_parameters(
            "session=s1&contact.name=John+Smith&contact.email=John@Example.com&contact.phone=555-0123",
        )
        .unwrap();
        let underscored = event_parameters(
            "session=s1&contact_name=John%20Smith&contact_email=john@example.com&contact_phone=555-0123",
        )
        .unwrap();
        assert_eq!(dotted, underscored);
        assert_eq!(dotted.session.as_deref(), Some("s1"));
        let contact = dotted.contact.unwrap();
        assert_eq!(contact.name.as_deref(), Some("John Smith"));
        assert_eq!(contact.email.as_deref(), Some("john@example.com"));
        assert_eq!(event_parameters("other=1").unwrap(), EventParameters::default());
    }

    #[test]
    fn conflicting_or_empty_parameters_are_refused() {
        assert!(
            event_parameters("contact.name=A&contact_name=B")
                .unwrap_err()
                .contains("twice")
        );
        assert!(event_parameters("contact.name=A&contact_name=A").is_ok());
        assert!(event_parameters("session=").unwrap_err().contains("session is empty"));
        assert!(
            event_parameters("contact.email=nope")
                .unwrap_err()
                .contains("not an email")
        );
    }

    #[test]
    fn bodies_are_checked_by_their_content_type() {
        assert!(check_body(Some("application/json"), b"{\"a\":1}").is_ok());
        assert!(check_body(Some("application/json; charset=utf-8"), b"{oops").is_err());
        assert!(check_body(Some("text/plain"), b"Generate daily sales report").is_ok());
        assert!(check_body(Some("text/plain"), &[0xff, 0xfe]).is_err());
        assert!(check_body(Some("application/octet-stream"), &[0xff, 0xfe]).is_ok());
        assert!(check_body(Some("application/json"), b"").is_ok());
    }
}
