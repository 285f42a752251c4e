//! Page tokens: the last `seq` of a page, encoded so that clients treat them as opaque.
//! Both backends hand out the same tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::StoreError;

pub(crate) fn encode(seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(seq.to_string())
}

/// The seq a token stands for; a token this store did not hand out is refused.
pub(crate) fn decode(token: &Option<String>) -> anyhow::Result<Option<i64>> {
    let Some(token) = token else { return Ok(None) };
    URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.parse::<i64>().ok())
        .map(Some)
        .ok_or_else(|| StoreError::BadPageToken(token.clone()).into())
}
