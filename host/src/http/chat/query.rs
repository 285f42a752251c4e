//! Query strings of the list routes. `@botpress/client` encodes objects with dots
//! (`tags.channelId=C1`); bracket keys (`tags[channelId]=C1`) are read too.

use axum::http::StatusCode;
use utoipa::IntoParams;

use crate::http::ApiError;
use crate::http::errors::ApiResult;
use crate::http::extract::query_pairs;
use crate::store::{EntityQuery, Tags};

fn invalid_query(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "InvalidQuery", message)
}

/// The query [`entity_query`] reads, as the OpenAPI document lists it. Tags filter as
/// `tags.<name>=<value>` (or `tags[<name>]=<value>`), any number of them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query entity_query reads by hand, for the OpenAPI document"
)]
pub struct EntityListQuery {
    /// The `meta.nextToken` of the page before.
    #[param(rename = "nextToken")]
    next_token: Option<String>,
    /// Items per page: 20 when left out; 1 to 100 (more is served as 100, 0 as 1).
    #[param(rename = "pageSize", minimum = 0, maximum = 4294967295u64, format = Int64)]
    page_size: Option<u32>,
    /// Only those of this conversation (messages), or with it (users).
    #[param(rename = "conversationId")]
    conversation_id: Option<String>,
    /// Only conversations of this channel.
    channel: Option<String>,
    /// Only those of this integration (its name).
    #[param(rename = "integrationName")]
    integration_name: Option<String>,
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
                query.page.size = Some(value.parse::<u32>().map_err(|_| {
                    invalid_query(format!("pageSize {value:?} is not a whole number from 0 to 4294967295"))
                })? as usize)
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
