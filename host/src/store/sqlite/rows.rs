//! What the parts of the embedded store share: rows mapped to records, newest-first
//! paging with opaque tokens, and tags (kept as JSON on the row and, for lookups, one
//! row per tag in `<kind>_tags`).

use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use serde_json::Value;

use crate::store::page_token::{self, Position};
use crate::store::{
    ConversationRecord, EventRecord, InstallationRecord, MessageRecord, Page, PageRequest, RawOutboxEntry, Sort,
    SortField, Tags, UserRecord,
};

/// A JSON column. Text that does not parse (written by hand, say) is an error, logged
/// and answered, never a value of another shape than the one stored.
pub(super) fn parse_json(text: String) -> rusqlite::Result<Value> {
    // `Value`'s own parser, compiled in serde_json (see `store::outbox::printed`).
    text.parse::<Value>().map_err(|error| {
        tracing::error!(%error, "a stored JSON value does not parse; it is not read back as anything else");
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error))
    })
}

fn parse_tags(text: String) -> Tags {
    serde_json::from_str(&text).unwrap_or_default()
}

/// Builds a newest-first page query: `base` must select `seq` first and end in a WHERE
/// clause (`WHERE 1` at least) that `conditions` extend.
pub(super) fn page<T>(
    connection: &Connection,
    base: &str,
    conditions: Vec<String>,
    values: Vec<rusqlite::types::Value>,
    page: &PageRequest,
    map: impl Fn(&Row) -> rusqlite::Result<T>,
) -> anyhow::Result<Page<T>> {
    sorted_page(connection, base, conditions, values, page, Sort::default(), map)
}

/// [`page`] in the order `sort` asks for; ordering by update needs an `updated_at`
/// column.
pub(super) fn sorted_page<T>(
    connection: &Connection,
    base: &str,
    mut conditions: Vec<String>,
    mut values: Vec<rusqlite::types::Value>,
    page: &PageRequest,
    sort: Sort,
    map: impl Fn(&Row) -> rusqlite::Result<T>,
) -> anyhow::Result<Page<T>> {
    let (compare, order) = page_token::order(sort);
    if let Some(after) = page_token::decode_sorted(sort, &page.token)? {
        match after.updated_at {
            Some(updated_at) => {
                conditions.push(format!("(updated_at, seq) {compare} (?, ?)"));
                values.push(updated_at.into());
            }
            None => conditions.push(format!("seq {compare} ?")),
        }
        values.push(after.seq.into());
    }
    let limit = page.limit();
    let mut sql = base.to_string();
    for condition in &conditions {
        sql.push_str(" AND ");
        sql.push_str(condition);
    }
    sql.push_str(&format!(" ORDER BY {order} LIMIT {}", limit + 1));
    let by_update = sort.field == SortField::UpdatedAt;
    let mut statement = connection.prepare_cached(&sql)?;
    let mut rows = statement
        .query_map(params_from_iter(values), |row| {
            let position = Position {
                seq: row.get(0)?,
                updated_at: if by_update { Some(row.get("updated_at")?) } else { None },
            };
            Ok((position, map(row)?))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let next_token = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|(at, _)| page_token::encode_sorted(sort, *at))
    } else {
        None
    };
    Ok(Page {
        items: rows.into_iter().map(|(_, item)| item).collect(),
        next_token,
    })
}

/// Conditions requiring an entity to carry all `tags` (in the `<kind>_tags` table).
pub(super) fn tag_conditions(
    kind: &str,
    tags: &Tags,
    conditions: &mut Vec<String>,
    values: &mut Vec<rusqlite::types::Value>,
) {
    for (key, value) in tags {
        conditions.push(format!(
            "EXISTS (SELECT 1 FROM {kind}_tags t WHERE t.owner_id = id AND t.key = ? AND t.value = ?)"
        ));
        values.push(key.clone().into());
        values.push(value.clone().into());
    }
}

pub(super) fn insert_tags(tx: &Connection, kind: &str, owner_id: &str, tags: &Tags) -> anyhow::Result<()> {
    let mut statement = tx.prepare_cached(&format!(
        "INSERT OR REPLACE INTO {kind}_tags (owner_id, key, value) VALUES (?1, ?2, ?3)"
    ))?;
    for (key, value) in tags {
        statement.execute(params![owner_id, key, value])?;
    }
    Ok(())
}

pub(super) const EVENT_COLUMNS: &str =
    "seq, id, installation_id, type, payload, conversation_id, user_id, message_id, status, failure_reason, created_at";

pub(super) fn event_row(row: &Row) -> rusqlite::Result<EventRecord> {
    Ok(EventRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        event_type: row.get(3)?,
        payload: parse_json(row.get(4)?)?,
        conversation_id: row.get(5)?,
        user_id: row.get(6)?,
        message_id: row.get(7)?,
        status: row.get(8)?,
        failure_reason: row.get(9)?,
        created_at: row.get(10)?,
    })
}

pub(super) const CONVERSATION_COLUMNS: &str =
    "seq, id, installation_id, integration, channel, tags, message_count, created_at, updated_at";

pub(super) fn conversation_row(row: &Row) -> rusqlite::Result<ConversationRecord> {
    Ok(ConversationRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        integration: row.get(3)?,
        channel: row.get(4)?,
        tags: parse_tags(row.get(5)?),
        message_count: row.get(6)?,
        created_at: row.get(7)?,
        updated_at: row.get(8)?,
    })
}

pub(super) const USER_COLUMNS: &str = "seq, id, installation_id, tags, name, picture_url, created_at, updated_at";

pub(super) fn user_row(row: &Row) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        tags: parse_tags(row.get(3)?),
        name: row.get(4)?,
        picture_url: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

pub(super) const MESSAGE_COLUMNS: &str =
    "seq, id, installation_id, conversation_id, user_id, type, payload, direction, tags, created_at, updated_at";

pub(super) fn message_row(row: &Row) -> rusqlite::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get(1)?,
        installation_id: row.get(2)?,
        conversation_id: row.get(3)?,
        user_id: row.get(4)?,
        message_type: row.get(5)?,
        payload: parse_json(row.get(6)?)?,
        direction: row.get(7)?,
        tags: parse_tags(row.get(8)?),
        created_at: row.get(9)?,
        updated_at: row.get(10)?,
    })
}

pub(super) fn installation_row(row: &Row) -> rusqlite::Result<InstallationRecord> {
    Ok(InstallationRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        webhook_id: row.get(2)?,
        plugin_hash: row.get(3)?,
        sidecar: row.get(4)?,
        registered_at: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
    })
}

pub(super) fn one<T>(
    connection: &Connection,
    sql: &str,
    id: &str,
    map: impl FnOnce(&Row) -> rusqlite::Result<T>,
) -> anyhow::Result<Option<T>> {
    Ok(connection.prepare_cached(sql)?.query_row([id], map).optional()?)
}

/// An outbox entry read from `offset` on (the outbox alone, or joined to a delivery).
pub(super) fn raw_entry(row: &Row, offset: usize) -> rusqlite::Result<RawOutboxEntry> {
    Ok(RawOutboxEntry {
        seq: row.get(offset)?,
        id: row.get(offset + 1)?,
        entry_type: row.get(offset + 2)?,
        time: row.get(offset + 3)?,
        integration_id: row.get(offset + 4)?,
        data: row.get(offset + 5)?,
        traceparent: row.get(offset + 6)?,
    })
}
