//! The request id: one per request, given where the server hands the request to the
//! router ([`RequestIds`]), answered on every response as `x-sluice-request-id`, used as
//! the `id` of error answers and carried by the log lines of the request (the plugin's
//! own included).
//!
//! It lives in a task-local while the router handles the request, so that anything on the
//! way (an extractor's rejection, a handler's error, the routing fallbacks) finds it
//! without carrying it, and it is a fixed-size value: giving it allocates nothing.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;
use axum::response::Response;
use tokio::task::futures::TaskLocalFuture;

/// Header carrying the request id on every answer.
pub const REQUEST_ID_HEADER: &str = "x-sluice-request-id";

const PREFIX: &[u8; 4] = b"req_";
const LENGTH: usize = PREFIX.len() + ulid::ULID_LEN;

tokio::task_local! {
    static CURRENT: RequestId;
}

/// A request id: `req_` and a ULID (time-ordered, 80 random bits), like the store's ids.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RequestId([u8; LENGTH]);

impl RequestId {
    /// A new id.
    pub fn new() -> RequestId {
        let mut text = [0u8; LENGTH];
        text[..PREFIX.len()].copy_from_slice(PREFIX);
        let ulid: &mut [u8; ulid::ULID_LEN] = (&mut text[PREFIX.len()..]).try_into().expect("the ULID's length");
        ulid::Ulid::new().array_to_str(ulid);
        RequestId(text)
    }

    /// The id of the request being handled, if this runs inside [`RequestIds`].
    pub fn current() -> Option<RequestId> {
        CURRENT.try_with(|id| *id).ok()
    }

    /// The id of the request being handled, or a new one outside a request.
    pub fn current_or_new() -> RequestId {
        RequestId::current().unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("a request id is ASCII")
    }

    fn header_value(&self) -> HeaderValue {
        HeaderValue::from_bytes(&self.0).expect("a request id is a valid header value")
    }
}

impl Default for RequestId {
    fn default() -> RequestId {
        RequestId::new()
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A handler's way to the id of its request (`request_id: RequestId` among its arguments).
impl<S: Send + Sync> FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_parts: &mut Parts, _state: &S) -> Result<RequestId, Self::Rejection> {
        Ok(RequestId::current_or_new())
    }
}

/// A service (the router) behind which every request gets its [`RequestId`]: known to
/// everything the request runs through, and put on its answer. Inside another (the
/// server's around an embedding's router), a request keeps the id it has.
#[derive(Clone)]
pub struct RequestIds<S> {
    inner: S,
}

impl<S> RequestIds<S> {
    pub fn new(inner: S) -> RequestIds<S> {
        RequestIds { inner }
    }
}

impl<S, R, B> tower::Service<R> for RequestIds<S>
where
    S: tower::Service<R, Response = Response<B>>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = Identified<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let id = RequestId::current_or_new();
        Identified {
            inner: CURRENT.scope(id, self.inner.call(request)),
            id,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of a request handled with its id known; the id goes on the answer.
    pub struct Identified<F> {
        #[pin]
        inner: TaskLocalFuture<RequestId, F>,
        id: RequestId,
    }
}

impl<F, B, E> Future for Identified<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        response.headers_mut().insert(REQUEST_ID_HEADER, this.id.header_value());
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    use super::*;

    #[test]
    fn ids_look_like_record_ids_and_differ() {
        let id = RequestId::new();
        assert!(id.as_str().starts_with("req_"), "{id}");
        assert_eq!(id.as_str().len(), 30);
        assert_ne!(id, RequestId::new());
    }

    #[tokio::test]
    async fn the_handler_sees_the_id_its_answer_carries() {
        let router = Router::new().route("/", get(|id: RequestId| async move { id.to_string() }));
        let response = RequestIds::new(router)
            .oneshot(axum::http::Request::new(Body::empty()))
            .await
            .unwrap();
        let header = response.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(body, header.as_bytes());
        assert_eq!(RequestId::current(), None, "known only while the request is handled");
    }
    #[tokio::test]
    async fn a_router_inside_another_keeps_the_outer_id() {
        let inner = Router::new().route("/", get(|id: RequestId| async move { id.to_string() }));
        let outer = Router::new().nest_service("/in", RequestIds::new(inner));
        let response = RequestIds::new(outer)
            .oneshot(axum::http::Request::get("/in/").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let header = response.headers()[REQUEST_ID_HEADER].to_str().unwrap().to_string();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        assert_eq!(body, header.as_bytes());
    }
}
