//! Request signatures: `x-slack-signature` is `v0=` + hex(HMAC-SHA256(signing secret,
//! `v0:{timestamp}:{body}`)), with the timestamp in `x-slack-request-timestamp`.
//! The comparison is constant time, and a timestamp more than five minutes away from
//! now is refused, so a captured request cannot be replayed later.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a request's timestamp may be from now.
pub const MAX_AGE_SECONDS: i64 = 5 * 60;

/// Why a request's signature was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Stale,
    Wrong,
}

impl Refusal {
    pub fn message(&self) -> &'static str {
        match self {
            Refusal::Missing => "missing x-slack-signature or x-slack-request-timestamp",
            Refusal::Stale => "x-slack-request-timestamp is more than 5 minutes away from now",
            Refusal::Wrong => "x-slack-signature does not match the body",
        }
    }
}

/// Checks a request's signature against `secret`, at time `now` (Unix seconds).
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), Refusal> {
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return Err(Refusal::Missing);
    };
    let sent_at: i64 = timestamp.trim().parse().map_err(|_| Refusal::Wrong)?;
    if (now - sent_at).abs() > MAX_AGE_SECONDS {
        return Err(Refusal::Stale);
    }
    let given = signature
        .trim()
        .strip_prefix("v0=")
        .and_then(|hex_digest| hex::decode(hex_digest).ok())
        .ok_or(Refusal::Wrong)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|_| Refusal::Wrong)?;
    mac.update(format!("v0:{}:", timestamp.trim()).as_bytes());
    mac.update(body);
    mac.verify_slice(&given).map_err(|_| Refusal::Wrong)
}
