//! Page tokens: where the last page ended, encoded so that clients treat them as opaque.
//! Both backends hand out the same tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{Sort, SortDirection, SortField, StoreError};

/// Where a page ended: its last row's `seq`, and its `updated_at` when the list is
/// ordered by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) seq: i64,
    pub(crate) updated_at: Option<i64>,
}

/// The tag of a sort in its page tokens; the default order (newest first) has none, so
/// its tokens are the bare seq: a token from one order is refused by another.
fn sort_tag(sort: Sort) -> &'static str {
    match (sort.field, sort.direction) {
        (SortField::CreatedAt, SortDirection::Desc) => "",
        (SortField::CreatedAt, SortDirection::Asc) => "ca:",
        (SortField::UpdatedAt, SortDirection::Desc) => "ud:",
        (SortField::UpdatedAt, SortDirection::Asc) => "ua:",
    }
}

/// The token of a page in the order `sort` that ended at `at`.
pub(crate) fn encode_sorted(sort: Sort, at: Position) -> String {
    let text = match at.updated_at {
        Some(updated_at) => format!("{}{updated_at}.{}", sort_tag(sort), at.seq),
        None => format!("{}{}", sort_tag(sort), at.seq),
    };
    URL_SAFE_NO_PAD.encode(text)
}

/// Where a page in the order `sort` ended; a token of another order, or one this store
/// did not hand out, is refused.
pub(crate) fn decode_sorted(sort: Sort, token: &Option<String>) -> anyhow::Result<Option<Position>> {
    let Some(token) = token else { return Ok(None) };
    let text = URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok());
    let position = text.as_deref().and_then(|text| {
        let rest = text.strip_prefix(sort_tag(sort))?;
        if sort.field == SortField::UpdatedAt {
            let (updated_at, seq) = rest.split_once('.')?;
            Some(Position {
                seq: seq.parse().ok()?,
                updated_at: Some(updated_at.parse().ok()?),
            })
        } else {
            Some(Position {
                seq: rest.parse().ok()?,
                updated_at: None,
            })
        }
    });
    position
        .map(Some)
        .ok_or_else(|| StoreError::BadPageToken(token.clone()).into())
}

/// The SQL of ordering by `sort`: the comparison that keeps rows after a position, and
/// the `ORDER BY` list (ties, records made or updated in the same millisecond, go by
/// `seq`).
pub(crate) fn order(sort: Sort) -> (&'static str, &'static str) {
    match (sort.field, sort.direction) {
        (SortField::CreatedAt, SortDirection::Desc) => ("<", "seq DESC"),
        (SortField::CreatedAt, SortDirection::Asc) => (">", "seq ASC"),
        (SortField::UpdatedAt, SortDirection::Desc) => ("<", "updated_at DESC, seq DESC"),
        (SortField::UpdatedAt, SortDirection::Asc) => (">", "updated_at ASC, seq ASC"),
    }
}
