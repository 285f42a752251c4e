//! The extractors of the APIs: what a handler reads from a request (its JSON body, path
//! parameters, query), each refusing in the API's error shape ([`ApiError`]) with one rule
//! for every route:
//!
//! - [`JsonBody`]: a body is JSON sent as such (`Content-Type: application/json` or
//!   `+json`; anything else is a 415 `UnsupportedMediaType`), within [`API_BODY_LIMIT`]
//!   (413), and a JSON object (400 `InvalidPayload` naming what came instead) before its
//!   fields are read. An empty body reads as `{}`; one of whitespace only is not JSON
//!   (400).
//! - [`PathParams`]: path parameters, whose percent-decoding must be UTF-8 (400
//!   `InvalidIdentifier`).
//! - [`QueryParams`] and [`query_pairs`]: the query, whose percent-decoded names and values
//!   must be UTF-8 (400 `InvalidQuery`): decoding them with replacement characters would
//!   make two different values one.
//!
//! None of them takes U+0000 (NUL) in text (400): PostgreSQL can store it neither in text
//! nor in JSON, so the APIs refuse it on both stores alike.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;
use super::bodies::read_limited;
use super::errors::{API_BODY_LIMIT, ApiResult};
use crate::json_depth;

/// A JSON object body, read into `T` (see the module's rules).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<JsonBody<T>, ApiError> {
        let (parts, body) = request.into_parts();
        let declared = declared_json(&parts.headers)?;
        let bytes = read_limited(&parts.headers, body, API_BODY_LIMIT as u64)
            .await
            .map_err(|unread| unread.answer(ApiError::api_body_too_large))?;
        if bytes.is_empty() {
            return from_json(b"{}").map(JsonBody);
        }
        let text = bytes.trim_ascii_start();
        if !declared {
            return Err(unsupported_media_type("no Content-Type"));
        }
        json_depth::check(text, json_depth::MAX_DEPTH, "the body").map_err(ApiError::bad_request)?;
        if text.first() != Some(&b'{') {
            return Err(match serde_json::from_slice::<Value>(text) {
                Ok(other) => {
                    ApiError::bad_request(format!("the body must be a JSON object, not {}", json_type(&other)))
                }
                Err(error) => not_json(error),
            });
        }
        if has_escaped_nul(text) {
            return Err(ApiError::bad_request(
                "the body has U+0000 (NUL) in a string; sluice does not take NUL in text",
            ));
        }
        from_json(&bytes).map(JsonBody)
    }
}

/// Whether JSON text has the escape `\u0000` in a string (NUL itself cannot appear raw).
fn has_escaped_nul(text: &[u8]) -> bool {
    text.windows(5)
        .enumerate()
        .any(|(at, window)| window == b"u0000" && text[..at].iter().rev().take_while(|&&b| b == b'\\').count() % 2 == 1)
}

fn from_json<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            not_json(error)
        } else {
            ApiError::bad_request(format!("the body is not valid for this route: {error}"))
        }
    })
}

fn not_json(error: serde_json::Error) -> ApiError {
    ApiError::bad_request(format!("the body is not valid JSON: {error}"))
}

/// Whether the request says its body is JSON: `Ok(false)` when it says nothing, a 415
/// when it says something else.
fn declared_json(headers: &HeaderMap) -> ApiResult<bool> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(false);
    };
    let text = value.to_str().unwrap_or_default();
    let media = text.split(';').next().unwrap_or_default().trim();
    let json = media.eq_ignore_ascii_case("application/json")
        || media.len() > 5 && media[media.len() - 5..].eq_ignore_ascii_case("+json");
    if json {
        Ok(true)
    } else {
        Err(unsupported_media_type(&format!("Content-Type {text:?}")))
    }
}

fn unsupported_media_type(sent: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UnsupportedMediaType",
        format!("the body must be JSON, sent with Content-Type: application/json; this request has {sent}"),
    )
}

/// The JSON type of a value, as a message names it.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Path parameters, read into `T` as axum's `Path` reads them.
#[derive(Debug)]
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathParams<T>, ApiError> {
        if parts.uri.path().contains("%00") {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidIdentifier",
                "the path has U+0000 (NUL) in it; sluice does not take NUL in text",
            ));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(params)) => Ok(PathParams(params)),
            Err(rejection) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "InvalidIdentifier",
                format!("the path is not one this route takes: {}", rejection.body_text()),
            )),
        }
    }
}

/// The query, read into `T` as axum's `Query` reads it, once every name and value is
/// known to be UTF-8.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<QueryParams<T>, ApiError> {
        query_pairs(parts.uri.query())?;
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|axum::extract::Query(query)| QueryParams(query))
            .map_err(|rejection| invalid_query(rejection.body_text()))
    }
}

fn invalid_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", message)
}

/// The names and values of a query (`application/x-www-form-urlencoded`), in order; a 400
/// when one does not decode to UTF-8.
pub fn query_pairs(raw: Option<&str>) -> ApiResult<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for pair in raw.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let name = decode(name).map_err(|name| {
            invalid_query(format!(
                "the query parameter name {name:?} is not UTF-8 once percent-decoded; send text as UTF-8"
            ))
        })?;
        let value = decode(value).map_err(|_| {
            invalid_query(format!(
                "the query parameter {name:?} is not UTF-8 once percent-decoded; send text as UTF-8"
            ))
        })?;
        if name.contains('\0') || value.contains('\0') {
            return Err(invalid_query(format!(
                "the query parameter {name:?} has U+0000 (NUL) in it; sluice does not take NUL in text"
            )));
        }
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// One percent-encoded name or value (`+` is a space); `Err` with a lossy reading of it
/// when it is not UTF-8.
fn decode(encoded: &str) -> Result<String, String> {
    let spaced = encoded.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&spaced).collect();
    String::from_utf8(bytes).map_err(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Fields {
        a: i64,
    }

    async fn read(content_type: Option<&str>, body: &'static str) -> ApiResult<Fields> {
        let mut request = axum::http::Request::builder().method("POST").uri("/");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Body::from(body)).unwrap();
        JsonBody::<Fields>::from_request(request, &())
            .await
            .map(|JsonBody(fields)| fields)
    }

    #[tokio::test]
    async fn an_object_sent_as_json_is_read() {
        assert_eq!(read(Some("application/json"), r#"{"a":1}"#).await.unwrap().a, 1);
        assert_eq!(
            read(Some("application/vnd.x+json; charset=utf-8"), r#" {"a":2}"#)
                .await
                .unwrap()
                .a,
            2
        );
    }

    #[tokio::test]
    async fn anything_but_an_object_is_refused_naming_what_came() {
        for (body, named) in [
            ("[1]", "an array"),
            ("null", "null"),
            ("\"x\"", "a string"),
            ("7", "a number"),
        ] {
            let error = read(Some("application/json"), body).await.unwrap_err();
            assert_eq!(error.status, StatusCode::BAD_REQUEST, "{body}");
            assert_eq!(error.kind, "InvalidPayload");
            assert!(error.message.contains("must be a JSON object"), "{}", error.message);
            assert!(error.message.contains(named), "{}", error.message);
        }
        let broken = read(Some("application/json"), "{oops").await.unwrap_err();
        assert!(broken.message.contains("not valid JSON"), "{}", broken.message);
        let mistyped = read(Some("application/json"), r#"{"a":"one"}"#).await.unwrap_err();
        assert!(mistyped.message.contains("invalid type"), "{}", mistyped.message);
    }

    #[tokio::test]
    async fn a_body_not_sent_as_json_is_a_415_and_no_body_reads_as_an_empty_object() {
        for content_type in [Some("text/plain"), None] {
            let error = read(content_type, r#"{"a":1}"#).await.unwrap_err();
            assert_eq!(error.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{content_type:?}");
        }
        let empty = read(None, "").await.unwrap_err();
        assert!(empty.message.contains("missing field `a`"), "{}", empty.message);
    }

    #[tokio::test]
    async fn nul_in_text_is_refused_and_an_escaped_backslash_is_not_nul() {
        let error = read(Some("application/json"), r#"{"a":1,"b":"x\u0000"}"#)
            .await
            .unwrap_err();
        assert!(error.message.contains("NUL"), "{}", error.message);
        assert_eq!(
            read(Some("application/json"), r#"{"a":1,"b":"\\u0000"}"#)
                .await
                .unwrap()
                .a,
            1
        );
        assert!(query_pairs(Some("type=a%00b")).unwrap_err().message.contains("NUL"));
    }

    #[test]
    fn queries_decode_strictly() {
        let pairs = query_pairs(Some("a=1&b=x+y%2By&&c&d%C3%A9=%C3%A9")).unwrap();
        let expected = [("a", "1"), ("b", "x y+y"), ("c", ""), ("dé", "é")];
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(pairs, expected);
        let error = query_pairs(Some("session=%FF")).unwrap_err();
        assert_eq!(error.kind, "InvalidQuery");
        assert!(error.message.contains("\"session\""), "{}", error.message);
        assert!(query_pairs(Some("%FF=1")).is_err());
    }
}
