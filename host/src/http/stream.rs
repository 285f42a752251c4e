//! `GET /v1/stream`: every event as Server-Sent Events, live.
//!
//! Each event's SSE `id` is its outbox position; a client that reconnects with
//! `Last-Event-ID` (browsers' `EventSource` does by itself) gets everything after it,
//! without gaps. Without one the stream starts at the present. `types` filters by event
//! type, comma-separated, exact or prefixes ending in `*` (`types=chat:*,shop:newOrderCreated`).
//! A `Last-Event-ID` beyond the outbox's head (a client that outlived a wiped data folder,
//! or one that talked to another host) is answered with a `reset` event, and the stream
//! starts again from the oldest entry kept.
//!
//! The stream takes the API token, or a *stream ticket*: `EventSource` cannot set an
//! `Authorization` header, and the API token does not belong in a URL (they end up in
//! logs and browser history). `POST /v1/stream/tickets` (with the token) mints one, good
//! once, for [`TICKET_TTL`], on `GET /v1/stream?ticket=...` and nowhere else.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures::{Stream, StreamExt};
use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::Sha256;
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::errors::ApiResult;
use super::extract::{JsonBody, QueryParams};
use super::routes::{Access, Routes, get, post};
use super::{ApiError, AppState, auth};
use crate::delivery::filter::TypeFilter;
use crate::delivery::stream::follow;
use crate::time::{iso8601, now_ms};

/// How long a stream ticket can be used to open a stream (the stream it opened lasts).
pub const TICKET_TTL: Duration = Duration::from_secs(60);
/// How long a `Last-Event-ID` beyond the head may wait for the head to reach it: an id
/// the stream just sent may be a commit not announced yet.
const HEAD_GRACE: Duration = Duration::from_secs(1);
const TICKET_PREFIX: &str = "stk_";
const NONCE_BYTES: usize = 16;
const MAC_BYTES: usize = 32;

/// The stream and the minting of its tickets. Not behind the API token middleware: the
/// stream checks a ticket or the token itself ([`stream_auth`]); minting needs the token.
pub fn routes(app: &AppState) -> Routes {
    let stream = Routes::new()
        .route("/v1/stream", get(stream))
        .guarded_by(from_fn_with_state(app.clone(), stream_auth), Access::ApiTokenOrTicket);
    let tickets = Routes::new()
        .route("/v1/stream/tickets", post(mint_ticket))
        .require_api_token(app);
    stream.merge(tickets)
}

/// The OpenAPI tag of the stream.
pub const TAG: &str = "stream";

/// The stream's part of the OpenAPI document.
#[derive(OpenApi)]
#[openapi(paths(stream, mint_ticket))]
pub struct Api;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct StreamQuery {
    /// Event types, comma-separated, exact or prefixes ending in `*` (`chat:*,shop:newOrderCreated`).
    types: Option<String>,
    /// For clients that cannot set the `Last-Event-ID` header.
    #[param(pattern = "^[0-9]*$")]
    last_event_id: Option<String>,
    /// A stream ticket, instead of the API token (checked by [`stream_auth`]).
    #[allow(dead_code, reason = "read by the middleware; named here so it is a known parameter")]
    ticket: Option<String>,
}

/// The `Last-Event-ID` header.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "describes a header read by hand, for the OpenAPI document")]
struct StreamHeaders {
    /// The id of the last event received: the stream goes on after it.
    #[param(rename = "Last-Event-ID", pattern = "^[0-9]*$")]
    last_event_id: Option<String>,
}

/// Every event recorded, live, as Server-Sent Events.
///
/// Each event's `id` is its outbox position and its data the delivered envelope. Takes the
/// API token, or a stream ticket in `?ticket=` (for browsers' `EventSource`).
#[utoipa::path(get, path = "/v1/stream", tag = TAG, operation_id = "stream",
    params(StreamQuery, StreamHeaders),
    responses((status = 200, description = "The stream, until the client or the host closes it",
        content_type = "text/event-stream", body = String)),
    security(("apiToken" = []), ("streamTicket" = [])))]
async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    QueryParams(query): QueryParams<StreamQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let filters: Vec<&str> = query
        .types
        .as_deref()
        .map(|t| t.split(',').map(str::trim).filter(|t| !t.is_empty()).collect())
        .unwrap_or_default();
    let filter = TypeFilter::parse(&filters).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", e))?;
    let resume = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("?").to_string())
        .or(query.last_event_id);
    let mut published = app.store.outbox_published();
    let mut reset = None;
    let after = match resume.as_deref().map(str::trim) {
        None | Some("") => *published.borrow(),
        Some(text) => {
            let asked = text.parse::<i64>().ok().filter(|seq| *seq >= 0).ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "InvalidQuery",
                    format!("Last-Event-ID {text:?} is not an id this stream sent (they are whole numbers)"),
                )
            })?;
            let reached = tokio::time::timeout(HEAD_GRACE, published.wait_for(|head| *head >= asked))
                .await
                .is_ok_and(|reached| reached.is_ok());
            if reached {
                asked
            } else {
                let head = *published.borrow();
                tracing::info!(
                    last_event_id = asked,
                    head,
                    "a stream resumed beyond the outbox head; sending a reset and starting from the oldest entry kept"
                );
                reset = Some(
                    Event::default().event("reset").id("0").data(
                        json!({
                            "reason": "lastEventIdBeyondHead",
                            "lastEventId": asked,
                            "head": head,
                            "message": format!(
                                "Last-Event-ID {asked} is beyond the newest event this host has ({head}): it was not sent by this host's outbox (was the data folder replaced?). The stream starts again from the oldest event kept; drop what you kept from before"
                            ),
                        })
                        .to_string(),
                    ),
                );
                0
            }
        }
    };
    let events = follow(
        app.store.clone(),
        filter,
        after,
        app.delivery.bot_id.clone(),
        app.delivery.stopping(),
    )
    .map(|(seq, envelope)| Ok(Event::default().id(seq.to_string()).data(envelope)));
    let events = futures::stream::iter(reset.map(Ok)).chain(events);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// A stream ticket.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct Ticket {
    /// For `GET /v1/stream?ticket=...`, once.
    ticket: String,
    /// When it can no longer open a stream (a minute from now).
    expires_at: String,
}

/// Any JSON object, not read.
#[derive(ToSchema)]
#[schema(as = Unread)]
#[allow(dead_code, reason = "describes a body that is not read, for the OpenAPI document")]
struct Unread {}

/// Mint a ticket for one `GET /v1/stream?ticket=...`, good for a minute.
#[utoipa::path(post, path = "/v1/stream/tickets", tag = TAG, operation_id = "mintStreamTicket",
    request_body(content = Unread),
    responses((status = 201, description = "The ticket", body = Ticket)),
    security(("apiToken" = [])))]
async fn mint_ticket(State(app): State<AppState>, _: JsonBody<IgnoredAny>) -> impl IntoResponse {
    let expires_at = now_ms() + TICKET_TTL.as_millis() as i64;
    let ticket = Tickets::mint(&app.api_token, expires_at);
    (
        StatusCode::CREATED,
        Json(Ticket {
            ticket,
            expires_at: iso8601(expires_at),
        }),
    )
}

/// Lets a stream request through with a valid ticket in `?ticket=`, or else with the API
/// token, as every `/v1` route.
async fn stream_auth(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let ticket = request.uri().query().and_then(|query| {
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "ticket")
            .map(|(_, value)| value.into_owned())
    });
    let Some(ticket) = ticket else {
        return auth::require_api_token(State(app), request, next).await;
    };
    match TICKETS.redeem(&app.api_token, &ticket, now_ms()) {
        Ok(()) => next.run(request).await,
        Err(why) => ApiError::unauthorized(format!(
            "the stream ticket {why}; mint a new one with POST /v1/stream/tickets (with the API token) just before opening the stream"
        ))
        .into_response(),
    }
}

/// Stream tickets: `stk_` and, in URL-safe base64, the expiry (ms, 8 bytes), a random
/// nonce and an HMAC-SHA256 of both keyed by a key derived from the API token. Any host
/// with the same token accepts them, and changing the token voids them; the nonces spent
/// are remembered here until their tickets expire, so each is good once per host.
struct Tickets {
    spent: Mutex<HashMap<[u8; NONCE_BYTES], i64>>,
}

static TICKETS: LazyLock<Tickets> = LazyLock::new(|| Tickets {
    spent: Mutex::new(HashMap::new()),
});

impl Tickets {
    /// The key tickets are signed with: the API token is never used as a key directly,
    /// so a ticket says nothing about it.
    fn key(api_token: &str) -> Hmac<Sha256> {
        let mut derive = Hmac::<Sha256>::new_from_slice(api_token.as_bytes()).expect("HMAC takes any key length");
        derive.update(b"sluice stream ticket v1");
        let key = derive.finalize().into_bytes();
        Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes any key length")
    }

    fn mint(api_token: &str, expires_at: i64) -> String {
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).expect("the operating system's random source failed");
        let mut bytes = Vec::with_capacity(8 + NONCE_BYTES + MAC_BYTES);
        bytes.extend_from_slice(&expires_at.to_be_bytes());
        bytes.extend_from_slice(&nonce);
        let mut mac = Self::key(api_token);
        mac.update(&bytes);
        bytes.extend_from_slice(&mac.finalize().into_bytes());
        format!("{TICKET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Checks a ticket at `now` and spends it; what is wrong with it otherwise.
    fn redeem(&self, api_token: &str, ticket: &str, now: i64) -> Result<(), &'static str> {
        let bytes = ticket
            .strip_prefix(TICKET_PREFIX)
            .and_then(|encoded| URL_SAFE_NO_PAD.decode(encoded).ok())
            .filter(|bytes| bytes.len() == 8 + NONCE_BYTES + MAC_BYTES)
            .ok_or("is not one this host mints")?;
        let (signed, signature) = bytes.split_at(8 + NONCE_BYTES);
        let mut mac = Self::key(api_token);
        mac.update(signed);
        mac.verify_slice(signature).map_err(|_| "is not one this host mints")?;
        let expires_at = i64::from_be_bytes(signed[..8].try_into().expect("8 bytes"));
        if expires_at < now {
            return Err("has expired (tickets last a minute)");
        }
        let nonce: [u8; NONCE_BYTES] = signed[8..].try_into().expect("the nonce's length");
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        spent.retain(|_, expires| *expires >= now);
        if spent.insert(nonce, expires_at).is_some() {
            return Err("was used already (each is good for one stream)");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tickets() -> Tickets {
        Tickets {
            spent: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn a_ticket_is_good_once_before_it_expires_and_with_its_token_only() {
        let book = tickets();
        let ticket = Tickets::mint("token", 1_000);
        assert!(ticket.starts_with("stk_"), "{ticket}");
        assert_eq!(
            book.redeem("other-token", &ticket, 500),
            Err("is not one this host mints")
        );
        assert_eq!(
            book.redeem("token", &ticket, 1_001),
            Err("has expired (tickets last a minute)")
        );
        assert_eq!(book.redeem("token", &ticket, 500), Ok(()));
        assert_eq!(
            book.redeem("token", &ticket, 600),
            Err("was used already (each is good for one stream)")
        );
        let other = Tickets::mint("token", 1_000);
        assert_ne!(other, ticket);
        assert_eq!(book.redeem("token", &other, 600), Ok(()));
    }

    #[test]
    fn a_changed_or_foreign_ticket_is_refused() {
        let book = tickets();
        let ticket = Tickets::mint("token", i64::MAX);
        let mut bytes = URL_SAFE_NO_PAD.decode(&ticket[4..]).unwrap();
        // A later expiry, with the signature of the earlier one.
        bytes[7] ^= 1;
        let changed = format!("stk_{}", URL_SAFE_NO_PAD.encode(&bytes));
        assert_eq!(book.redeem("token", &changed, 0), Err("is not one this host mints"));
        for foreign in ["token", "stk_", "stk_!!!", "Bearer token"] {
            assert_eq!(book.redeem("token", foreign, 0), Err("is not one this host mints"));
        }
    }

    #[test]
    fn spent_tickets_are_forgotten_once_expired() {
        let book = tickets();
        for expires in [10, 20, 1_000] {
            book.redeem("token", &Tickets::mint("token", expires), 0).unwrap();
        }
        book.redeem("token", &Tickets::mint("token", 2_000), 500).unwrap();
        assert_eq!(book.spent.lock().unwrap().len(), 2);
    }
}
