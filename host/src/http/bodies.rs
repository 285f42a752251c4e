//! Request bodies: read under a size limit, and, when a handler answers without reading
//! one to its end, read to the end anyway so that the client reads the answer.
//!
//! Most HTTP clients (Python's `requests` and `urllib`, Node's `fetch`, reqwest) write the
//! whole body before they read the answer. Closing a connection with the rest of a body
//! still arriving makes the kernel reset it, and such a client then sees a broken pipe or
//! a reset instead of the 413, 401 or 404 that says what was wrong. So every request's
//! body is wrapped in a [`LingeringBody`]: dropped unfinished, it reads and throws away
//! the rest in the background, within bounds, the way web servers linger on close. The
//! answer goes out at once, and the connection stays usable afterwards.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::http::header::{CONTENT_LENGTH, EXPECT};
use axum::http::{HeaderMap, StatusCode};
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;

use super::ApiError;

/// How long the rest of an unread body is read before the connection is closed anyway.
const LINGER_TIME: Duration = Duration::from_secs(10);

/// How much of an unread body is read before the connection is closed anyway.
const LINGER_BYTES: u64 = 1 << 30;

/// Wraps the request's body in a [`LingeringBody`]; the router maps every request with it.
pub fn linger_on_drop(request: Request) -> Request {
    let (parts, body) = request.into_parts();
    let body = LingeringBody {
        // A client waiting for `100 Continue` has not sent its body, and will not unless
        // the body is read: reading it then would ask for it.
        waits_for_continue: expects_continue(&parts.headers),
        inner: Some(body),
    };
    Request::from_parts(parts, Body::new(body))
}

fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// A request body that, dropped before its end, reads the rest and throws it away.
pub struct LingeringBody {
    inner: Option<Body>,
    /// The client waits for `100 Continue`, and nothing has read the body yet.
    waits_for_continue: bool,
}

impl HttpBody for LingeringBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.waits_for_continue = false;
        match self.inner.as_mut() {
            Some(inner) => Pin::new(inner).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.as_ref().map(HttpBody::size_hint).unwrap_or_default()
    }
}

impl Drop for LingeringBody {
    fn drop(&mut self) {
        let Some(mut rest) = self.inner.take() else { return };
        if rest.is_end_stream() || self.waits_for_continue {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut read: u64 = 0;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while let Some(Ok(frame)) = rest.frame().await {
                    if let Some(chunk) = frame.data_ref() {
                        read += chunk.len() as u64;
                        if read > LINGER_BYTES {
                            break;
                        }
                    }
                }
            })
            .await;
        });
    }
}

/// Why a body was not read.
#[derive(Debug, PartialEq, Eq)]
pub enum Unread {
    /// Over the limit, declared or as sent: 413, in the caller's words.
    TooLarge,
    /// Not all there within [`BODY_READ_TIMEOUT`]: 408.
    TooSlow,
    /// The client broke it off.
    Broken,
}

impl Unread {
    /// The answer; `too_large` words the 413, which names the limit that applies.
    pub fn answer(self, too_large: impl FnOnce() -> ApiError) -> ApiError {
        match self {
            Unread::TooLarge => too_large(),
            Unread::TooSlow => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeout",
                format!(
                    "the body did not arrive within {} s; send it whole, without pauses",
                    BODY_READ_TIMEOUT.as_secs()
                ),
            ),
            Unread::Broken => ApiError::bad_request("the body was broken off before its end"),
        }
    }
}

/// How long a client has to send a whole body that [`read_limited`] reads: a public URL
/// must not let a client hold a connection by sending a body a byte at a time.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Reads the whole body, refusing one over `limit` bytes, before reading it when its
/// declared length is already over, and one that takes longer than [`BODY_READ_TIMEOUT`].
pub async fn read_limited(headers: &HeaderMap, body: Body, limit: u64) -> Result<Bytes, Unread> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(Unread::TooLarge);
    }
    tokio::time::timeout(BODY_READ_TIMEOUT, read_whole(body, limit))
        .await
        .unwrap_or(Err(Unread::TooSlow))
}

async fn read_whole(mut body: Body, limit: u64) -> Result<Bytes, Unread> {
    let mut first: Option<Bytes> = None;
    let mut joined: Option<BytesMut> = None;
    let mut read: u64 = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return Err(Unread::Broken) };
        let Ok(chunk) = frame.into_data() else { continue };
        read += chunk.len() as u64;
        if read > limit {
            return Err(Unread::TooLarge);
        }
        match (&mut first, &mut joined) {
            (None, None) => first = Some(chunk),
            (Some(earlier), None) => {
                let mut buffer = BytesMut::with_capacity(earlier.len() + chunk.len());
                buffer.extend_from_slice(earlier);
                buffer.extend_from_slice(&chunk);
                first = None;
                joined = Some(buffer);
            }
            (_, Some(buffer)) => buffer.extend_from_slice(&chunk),
        }
    }
    // One piece (the usual case) comes back without a copy.
    Ok(match (first, joined) {
        (_, Some(buffer)) => buffer.freeze(),
        (Some(only), None) => only,
        (None, None) => Bytes::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use futures::StreamExt;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap());
        }
        map
    }

    fn in_pieces(pieces: &[&'static str]) -> Body {
        let chunks = pieces
            .iter()
            .map(|piece| Ok::<_, std::io::Error>(Bytes::from_static(piece.as_bytes())));
        Body::from_stream(futures::stream::iter(chunks.collect::<Vec<_>>()))
    }

    #[tokio::test]
    async fn a_body_within_the_limit_is_read_whole_in_one_piece_or_many() {
        let one = read_limited(&HeaderMap::new(), Body::from("hello"), 5).await;
        assert_eq!(one, Ok(Bytes::from_static(b"hello")));
        let many = read_limited(&HeaderMap::new(), in_pieces(&["he", "ll", "o"]), 5).await;
        assert_eq!(many, Ok(Bytes::from_static(b"hello")));
        let empty = read_limited(&HeaderMap::new(), Body::empty(), 0).await;
        assert_eq!(empty, Ok(Bytes::new()));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_whether_declared_or_sent() {
        let declared = headers(&[("content-length", "6")]);
        assert_eq!(
            read_limited(&declared, Body::from("hello!"), 5).await,
            Err(Unread::TooLarge)
        );
        let sent = read_limited(&HeaderMap::new(), in_pieces(&["hel", "lo!"]), 5).await;
        assert_eq!(sent, Err(Unread::TooLarge));
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_does_not_arrive_in_time_is_refused_and_one_broken_off_is_named() {
        let stalled = Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>());
        let answer = read_limited(&HeaderMap::new(), stalled, 5).await;
        assert_eq!(answer, Err(Unread::TooSlow));
        assert_eq!(
            Unread::TooSlow.answer(|| unreachable!()).status,
            StatusCode::REQUEST_TIMEOUT
        );

        let broken = futures::stream::iter([Err::<Bytes, _>(std::io::Error::other("reset"))]);
        let answer = read_limited(&HeaderMap::new(), Body::from_stream(broken), 5).await;
        assert_eq!(answer, Err(Unread::Broken));
    }

    /// A request whose body yields `pieces`, counting how many were read.
    fn counted_request(pieces: usize, headers: &[(&'static str, &'static str)]) -> (Request, Arc<AtomicUsize>) {
        let read = Arc::new(AtomicUsize::new(0));
        let counter = read.clone();
        let chunks = futures::stream::iter(0..pieces).map(move |_| {
            counter.fetch_add(1, Ordering::SeqCst);
            Ok::<_, std::io::Error>(Bytes::from_static(b"chunk"))
        });
        let mut request = Request::new(Body::from_stream(chunks));
        *request.headers_mut() = self::headers(headers);
        (linger_on_drop(request), read)
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn a_body_dropped_unread_is_read_to_its_end_unless_the_client_waits_to_send_it() {
        let (request, read) = counted_request(100, &[]);
        drop(request);
        settle().await;
        assert_eq!(read.load(Ordering::SeqCst), 100, "the rest is read and thrown away");

        let (request, read) = counted_request(100, &[("expect", "100-continue")]);
        drop(request);
        settle().await;
        assert_eq!(
            read.load(Ordering::SeqCst),
            0,
            "asking for the body would make the client send it"
        );

        let (request, read) = counted_request(100, &[("expect", "100-continue")]);
        let mut body = request.into_body();
        body.frame().await.unwrap().unwrap();
        drop(body);
        settle().await;
        assert_eq!(
            read.load(Ordering::SeqCst),
            100,
            "once asked for, it is read to its end"
        );
    }
}
