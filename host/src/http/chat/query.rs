//! Query strings of the list routes. `@botpress/client` encodes objects with dots
//! (`tags.channelId=C1`); bracket keys (`tags[channelId]=C1`) are read too. Filters of
//! the Botpress API that sluice does not have are refused with a 400 naming them, never
//! ignored.

use axum::http::StatusCode;

use crate::http::ApiError;
use crate::http::errors::ApiResult;
use crate::http::extract::query_pairs;
use crate::store::{EntityQuery, SortDirection, SortField, Tags};

/// Parameters of the Botpress list routes that sluice does not serve.
const UNSUPPORTED: &[&str] = &[
    "afterDate",
    "beforeDate",
    "rangeField",
    "participantIds",
    "minMessageCount",
    "maxMessageCount",
];

fn invalid_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", message)
}

/// The tag name in a `tags.<name>` or `tags[<name>]` key.
fn tag_name(key: &str) -> Option<&str> {
    key.strip_prefix("tags.")
        .or_else(|| key.strip_prefix("tags[").and_then(|rest| rest.strip_suffix(']')))
        .filter(|name| !name.is_empty())
}

/// The query of `listConversations`, `listUsers` and `listMessages`.
pub fn entity_query(raw: Option<&str>) -> ApiResult<EntityQuery> {
    let mut query = EntityQuery::default();
    let mut tags = Tags::new();
    for (key, value) in query_pairs(raw)? {
        match key.as_str() {
            "nextToken" => query.page.token = Some(value),
            "pageSize" => {
                query.page.size = Some(
                    value
                        .parse()
                        .map_err(|_| invalid_query(format!("pageSize {value:?} is not a number")))?,
                )
            }
            "sortField" => {
                query.sort.field = match value.as_str() {
                    "createdAt" => SortField::CreatedAt,
                    "updatedAt" => SortField::UpdatedAt,
                    _ => {
                        return Err(invalid_query(format!(
                            "sortField {value:?} is not one sluice sorts by (createdAt, updatedAt)"
                        )));
                    }
                }
            }
            "sortDirection" => {
                query.sort.direction = match value.as_str() {
                    "asc" => SortDirection::Asc,
                    "desc" => SortDirection::Desc,
                    _ => {
                        return Err(invalid_query(format!(
                            "sortDirection {value:?} is neither asc nor desc"
                        )));
                    }
                }
            }
            name if UNSUPPORTED
                .iter()
                .any(|u| name == *u || name.starts_with(&format!("{u}["))) =>
            {
                return Err(invalid_query(format!(
                    "{} is not supported by sluice; leave it out",
                    name.split('[').next().unwrap_or(name)
                )));
            }
            "conversationId" => query.conversation_id = Some(value),
            "channel" => query.channel = Some(value),
            "integrationName" => query.integration = Some(value),
            other => {
                if let Some(name) = tag_name(other) {
                    tags.insert(name.to_string(), value);
                }
            }
        }
    }
    query.tags = tags;
    Ok(query)
}

#[cfg(test)]
mod tests {
    #[test]
    fn entity_queries_read_dotted_and_bracketed_tags() {
        let query = super::entity_query(Some(
            "conversationId=conv_1&tags.channelId=C1&tags%5Bkind%5D=dm&tags.a%20b=x%20y&pageSize=5",
        ))
        .unwrap();
        assert_eq!(query.conversation_id.as_deref(), Some("conv_1"));
        assert_eq!(query.tags.get("channelId").map(String::as_str), Some("C1"));
        assert_eq!(query.tags.get("kind").map(String::as_str), Some("dm"));
        assert_eq!(query.tags.get("a b").map(String::as_str), Some("x y"));
        assert_eq!(query.page.size, Some(5));
        assert!(super::entity_query(Some("pageSize=lots")).is_err());
    }
}
