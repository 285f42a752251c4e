//! Query strings of the list routes. `@botpress/client` encodes objects with dots
//! (`tags.channelId=C1`); bracket keys (`tags[channelId]=C1`) are read too. Filters of
//! the Botpress API that sluice does not have are refused with a 400 naming them, never
//! ignored.

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::{IntoParams, ToSchema};

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

/// The page a list route answers, as the OpenAPI document lists it ([`entity_query`]
/// reads it).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query entity_query reads by hand, for the OpenAPI document"
)]
pub struct PageQuery {
    /// The `meta.nextToken` of the page before.
    #[param(rename = "nextToken")]
    next_token: Option<String>,
    /// Items per page: 20 when left out; 1 to 100 (more is served as 100, 0 as 1).
    #[param(rename = "pageSize", minimum = 0, maximum = 4294967295u64, format = Int64)]
    page_size: Option<u32>,
}

/// The filters of `listConversations`, `listUsers` and `listMessages`, as the OpenAPI
/// document lists them. Tags filter as `tags.<name>=<value>` (or `tags[<name>]=<value>`),
/// any number of them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query entity_query reads by hand, for the OpenAPI document"
)]
pub struct EntityFilters {
    /// Only those of this conversation (messages), or with it (users).
    #[param(rename = "conversationId")]
    conversation_id: Option<String>,
    /// Only conversations of this channel.
    channel: Option<String>,
    /// Only those of this integration (its name).
    #[param(rename = "integrationName")]
    integration_name: Option<String>,
}

/// What a list of conversations or users is sorted by.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SortField)]
#[allow(dead_code, reason = "describes sortField for the OpenAPI document")]
pub enum SortFieldParam {
    CreatedAt,
    UpdatedAt,
}

/// Which way a list of conversations or users is sorted.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SortDirection)]
#[allow(dead_code, reason = "describes sortDirection for the OpenAPI document")]
pub enum SortDirectionParam {
    Asc,
    Desc,
}

/// The order of `listConversations` and `listUsers` (messages are listed newest first,
/// and refuse these), as the OpenAPI document lists it.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query entity_query reads by hand, for the OpenAPI document"
)]
pub struct SortQuery {
    /// What to sort by: `createdAt` when left out.
    #[param(rename = "sortField", inline)]
    sort_field: Option<SortFieldParam>,
    /// `desc` (newest first) when left out.
    #[param(rename = "sortDirection", inline)]
    sort_direction: Option<SortDirectionParam>,
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
