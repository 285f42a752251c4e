//! The platform's Web API, called through `wasi:http/outgoing-handler` (with `wstd`).
//! Like Slack's, every method is `POST <apiUrl>/<method>` with a JSON body and a bearer
//! token, and answers `{"ok": true, ...}` or `{"ok": false, "error": "..."}`.

use serde_json::Value;
use wstd::http::{Body, Client, ErrorCode, Request};

use crate::Error;
use crate::sluice::integration::client;
use crate::sluice::integration::types::ErrorKind;

/// The wait passed on when the platform answers 429 without saying how long.
const DEFAULT_RETRY_AFTER_SECONDS: u32 = 30;

/// Where the platform is and how to authenticate to it.
pub struct Platform {
    pub api_url: String,
    pub bot_token: String,
}

fn error(kind: ErrorKind, message: String) -> Error {
    Error { kind, message }
}

/// A transport failure in words.
fn describe(code: &ErrorCode) -> String {
    match code {
        ErrorCode::ConnectionRefused => "connection refused".into(),
        ErrorCode::ConnectionTimeout => "the connection timed out".into(),
        ErrorCode::ConnectionTerminated | ErrorCode::ConnectionReadTimeout => "the connection broke off".into(),
        ErrorCode::DnsError(_) | ErrorCode::DnsTimeout => "the host name does not resolve".into(),
        ErrorCode::TlsCertificateError | ErrorCode::TlsAlertReceived(_) | ErrorCode::TlsProtocolError => {
            "the TLS handshake failed".into()
        }
        other => format!("{other:?}"),
    }
}

impl Platform {
    /// Calls `method` with `body`; answers the platform's JSON when it says `ok`.
    pub fn call(&self, method: &str, body: &Value) -> Result<Value, Error> {
        let url = format!("{}/{method}", self.api_url.trim_end_matches('/'));
        let sent = wstd::runtime::block_on(async {
            let request = Request::post(&url)
                .header("authorization", format!("Bearer {}", self.bot_token))
                .header("content-type", "application/json; charset=utf-8")
                .body(Body::from(body.to_string()))?;
            let mut response = Client::new().send(request).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u32>().ok());
            let bytes = response.body_mut().contents().await?.to_vec();
            wstd::http::Result::Ok((status, retry_after, bytes))
        });
        let (status, retry_after, bytes) = sent.map_err(|failure| match failure.downcast_ref::<ErrorCode>() {
            Some(ErrorCode::HttpRequestDenied) => error(
                ErrorKind::Forbidden,
                format!(
                    "HttpRequestDenied: sluice did not let the request to {url} out; add its origin to allowed-hosts in this installation's sidecar"
                ),
            ),
            Some(code) => error(
                ErrorKind::Upstream,
                format!(
                    "cannot reach the platform at {url}: {}; check apiUrl in the configuration and that the platform is up",
                    describe(code)
                ),
            ),
            // Not a request error: the connection broke while the exchange was under way.
            None => error(
                ErrorKind::Upstream,
                format!(
                    "cannot reach the platform at {url}: {failure:#}; check apiUrl in the configuration and that the platform is up"
                ),
            ),
        })?;
        if status == 429 {
            // The platform asks to wait: the host passes the wait on to the bot.
            let seconds = retry_after.unwrap_or(DEFAULT_RETRY_AFTER_SECONDS);
            client::retry_after(seconds);
            return Err(error(
                ErrorKind::Upstream,
                format!("the platform is rate limiting {method}; try again in {seconds} s"),
            ));
        }
        if !(200..300).contains(&status) {
            return Err(error(
                ErrorKind::Upstream,
                format!("the platform answered {method} with HTTP {status}"),
            ));
        }
        let answer: Value = serde_json::from_slice(&bytes).map_err(|e| {
            error(
                ErrorKind::Upstream,
                format!("the platform answered {method} with something that is not JSON: {e}"),
            )
        })?;
        if answer["ok"] != Value::Bool(true) {
            let reason = answer["error"].as_str().unwrap_or("no reason given");
            return Err(error(
                ErrorKind::Upstream,
                format!("the platform refused {method}: {reason}"),
            ));
        }
        Ok(answer)
    }
}
