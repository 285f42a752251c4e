//! Query strings of the list routes that share one reader: `listConversations`,
//! `listUsers`, `listMessages` and `listParticipants`. `@botpress/client` encodes objects
//! with dots (`tags.channelId=C1`); bracket keys (`tags[channelId]=C1`) are read too. A
//! parameter a route does not honour, whether a filter of the Botpress API that sluice does
//! not have or one of another route, is refused with a 400 naming it, never ignored.

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

/// A list route read by [`entity_query`]. What each takes beside `nextToken` and
/// `pageSize` is what the Botpress API takes there and sluice honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityList {
    Conversations,
    Users,
    Messages,
    Participants,
}

impl EntityList {
    fn operation(self) -> &'static str {
        match self {
            EntityList::Conversations => "listConversations",
            EntityList::Users => "listUsers",
            EntityList::Messages => "listMessages",
            EntityList::Participants => "listParticipants",
        }
    }

    /// The parameters it takes beside the page's (`tags` stands for every `tags.<name>`).
    fn filters(self) -> &'static [&'static str] {
        match self {
            EntityList::Conversations => &["channel", "integrationName", "tags", "sortField", "sortDirection"],
            EntityList::Users => &["conversationId", "tags", "sortField", "sortDirection"],
            EntityList::Messages => &["conversationId", "tags"],
            EntityList::Participants => &[],
        }
    }

    /// Why parameter `name` (as its key is spelled, `key`) is refused here.
    fn refusal(self, name: &str, key: &str) -> ApiError {
        if UNSUPPORTED.contains(&name) {
            return invalid_query(format!("{name} is not supported by sluice; leave it out"));
        }
        if self == EntityList::Messages && ["sortField", "sortDirection"].contains(&name) {
            return invalid_query(
                "messages are listed newest first; sortField and sortDirection are for conversations and users".into(),
            );
        }
        let taken: Vec<&str> = ["nextToken", "pageSize"]
            .into_iter()
            .chain(self.filters().iter().map(|filter| match *filter {
                "tags" => "tags.<name>",
                other => other,
            }))
            .collect();
        invalid_query(format!(
            "{} takes no query parameter {key:?}; it takes {}",
            self.operation(),
            taken.join(", ")
        ))
    }
}

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

/// The filters of `listConversations`, as the OpenAPI document lists them. Tags filter as
/// `tags.<name>=<value>` (or `tags[<name>]=<value>`), any number of them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query entity_query reads by hand, for the OpenAPI document"
)]
pub struct ConversationFilters {
    /// Only conversations of this channel.
    channel: Option<String>,
    /// Only conversations of this integration (its name).
    #[param(rename = "integrationName")]
    integration_name: Option<String>,
}

/// The filter of `listUsers`, as the OpenAPI document lists it. Tags filter as
/// `tags.<name>=<value>` (or `tags[<name>]=<value>`), any number of them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query entity_query reads by hand, for the OpenAPI document"
)]
pub struct UserFilters {
    /// Only the participants of this conversation.
    #[param(rename = "conversationId")]
    conversation_id: Option<String>,
}

/// The filter of `listMessages`, as the OpenAPI document lists it. Tags filter as
/// `tags.<name>=<value>` (or `tags[<name>]=<value>`), any number of them.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(
    dead_code,
    reason = "describes the query entity_query reads by hand, for the OpenAPI document"
)]
pub struct MessageFilters {
    /// Only the messages of this conversation.
    #[param(rename = "conversationId")]
    conversation_id: Option<String>,
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

/// The parameter a query key gives: `tags` for a tag filter, else the key up to any `[`
/// (`participantIds[0]` is `participantIds`).
fn parameter(key: &str) -> &str {
    if tag_name(key).is_some() {
        return "tags";
    }
    key.split('[').next().unwrap_or(key)
}

/// The query of list route `list`; a 400 naming any parameter it does not take.
pub fn entity_query(list: EntityList, raw: Option<&str>) -> ApiResult<EntityQuery> {
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
            _ if !list.filters().contains(&parameter(&key)) => return Err(list.refusal(parameter(&key), &key)),
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
            "conversationId" => query.conversation_id = Some(value),
            "channel" => query.channel = Some(value),
            "integrationName" => query.integration = Some(value),
            other => match tag_name(other) {
                Some(name) => {
                    tags.insert(name.to_string(), value);
                }
                None => return Err(list.refusal(parameter(other), other)),
            },
        }
    }
    query.tags = tags;
    Ok(query)
}

#[cfg(test)]
mod tests {
    use super::{EntityList, entity_query};

    fn refusal(list: EntityList, raw: &str) -> String {
        entity_query(list, Some(raw)).expect_err(raw).message
    }

    #[test]
    fn entity_queries_read_dotted_and_bracketed_tags() {
        let query = entity_query(
            EntityList::Messages,
            Some("conversationId=conv_1&tags.channelId=C1&tags%5Bkind%5D=dm&tags.a%20b=x%20y&pageSize=5"),
        )
        .unwrap();
        assert_eq!(query.conversation_id.as_deref(), Some("conv_1"));
        assert_eq!(query.tags.get("channelId").map(String::as_str), Some("C1"));
        assert_eq!(query.tags.get("kind").map(String::as_str), Some("dm"));
        assert_eq!(query.tags.get("a b").map(String::as_str), Some("x y"));
        assert_eq!(query.page.size, Some(5));
        assert!(entity_query(EntityList::Messages, Some("pageSize=lots")).is_err());
    }

    #[test]
    fn a_parameter_the_route_does_not_take_is_refused_by_name() {
        let participants = refusal(EntityList::Participants, "pageSize=2&sortField=createdAt");
        assert!(
            participants.contains("listParticipants takes no query parameter \"sortField\""),
            "{participants}"
        );
        assert!(participants.ends_with("it takes nextToken, pageSize"), "{participants}");
        assert!(refusal(EntityList::Participants, "tags.userId=U1").contains("\"tags.userId\""));
        assert!(refusal(EntityList::Conversations, "conversationId=conv_1").contains("listConversations"));
        assert!(refusal(EntityList::Users, "channel=channel").contains("listUsers"));
        assert!(refusal(EntityList::Messages, "integrationName=chat").contains("listMessages"));
        assert!(refusal(EntityList::Messages, "sortField=createdAt").contains("newest first"));
        assert!(refusal(EntityList::Users, "participantIds%5B0%5D=user_1").contains("participantIds is not supported"));
        assert!(refusal(EntityList::Conversations, "tags=x").contains("tags.<name>"));
        assert!(refusal(EntityList::Conversations, "colour=blue").contains("\"colour\""));
        assert!(entity_query(EntityList::Participants, Some("pageSize=2&nextToken=abc")).is_ok());
        assert!(
            entity_query(
                EntityList::Users,
                Some("sortField=updatedAt&sortDirection=asc&conversationId=c")
            )
            .is_ok()
        );
    }
}
