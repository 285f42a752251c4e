//! What the parts of the PostgreSQL store share: statements prepared once per
//! connection, queries built with numbered parameters, rows mapped to records,
//! newest-first paging, and tags (JSON on the row and one row per tag in `<kind>_tags`).

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::store::page_token::{self, Position};
use crate::store::{
    ConversationRecord, EventRecord, InstallationRecord, MessageRecord, Page, PageRequest, RawOutboxEntry, Sort,
    SortField, TagEdits, Tags, UserRecord,
};

/// A parameter of a statement.
pub(super) type Param = Box<dyn ToSql + Sync + Send>;

/// Borrows parameters the way the driver takes them.
pub(super) fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p.as_ref() as &(dyn ToSql + Sync)).collect()
}

/// Runs a statement (prepared once per connection) and answers how many rows it changed.
pub(super) async fn execute<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<u64> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.execute(&statement, params).await?)
}

/// Serialises whatever the caller does under `key` until its transaction ends: two replicas
/// (or two requests) finding-or-creating the same conversation or user, or recording under
/// the same dedupe key, do it once.
pub(super) async fn lock_key<C: GenericClient>(tx: &C, key: &str) -> anyhow::Result<()> {
    execute(tx, "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&key]).await?;
    Ok(())
}

/// Runs a query (prepared once per connection).
pub(super) async fn query<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<Vec<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query(&statement, params).await?)
}

/// Runs a query for at most one row (prepared once per connection).
pub(super) async fn query_opt<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> anyhow::Result<Option<Row>> {
    let statement = client.prepare_cached(sql).await?;
    Ok(client.query_opt(&statement, params).await?)
}

/// A statement put together from conditions, with its parameters numbered as they are
/// bound.
#[derive(Default)]
pub(super) struct Conditions {
    pub(super) clauses: Vec<String>,
    pub(super) params: Vec<Param>,
}

impl Conditions {
    /// Binds a value and answers its placeholder (`$n`).
    pub(super) fn bind(&mut self, value: impl ToSql + Sync + Send + 'static) -> String {
        self.params.push(Box::new(value));
        format!("${}", self.params.len())
    }

    /// Adds `column = value`.
    pub(super) fn equal(&mut self, column: &str, value: impl ToSql + Sync + Send + 'static) {
        let placeholder = self.bind(value);
        self.clauses.push(format!("{column} = {placeholder}"));
    }

    /// Requires the entity to carry all `tags` (in the `<kind>_tags` table); `id` is the
    /// entity's id column.
    pub(super) fn tags(&mut self, kind: &str, id: &str, tags: &Tags) {
        for (key, value) in tags {
            let key = self.bind(key.clone());
            let value = self.bind(value.clone());
            self.clauses.push(format!(
                "EXISTS (SELECT 1 FROM {kind}_tags t WHERE t.owner_id = {id} AND t.key = {key} AND t.value = {value})"
            ));
        }
    }

    /// ` WHERE a AND b`, or nothing.
    pub(super) fn where_clause(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

/// A newest-first page of `SELECT <columns> FROM <from>` (the columns starting with
/// `seq`) under `conditions`.
pub(super) async fn page<C: GenericClient, T>(
    client: &C,
    select: &str,
    conditions: Conditions,
    request: &PageRequest,
    map: impl Fn(&Row) -> anyhow::Result<T>,
) -> anyhow::Result<Page<T>> {
    sorted_page(client, select, conditions, request, Sort::default(), map).await
}

/// [`page`] in the order `sort` asks for; ordering by update needs an `updated_at`
/// column.
pub(super) async fn sorted_page<C: GenericClient, T>(
    client: &C,
    select: &str,
    mut conditions: Conditions,
    request: &PageRequest,
    sort: Sort,
    map: impl Fn(&Row) -> anyhow::Result<T>,
) -> anyhow::Result<Page<T>> {
    let (compare, order) = page_token::order(sort);
    if let Some(after) = page_token::decode_sorted(sort, &request.token)? {
        let clause = match after.updated_at {
            Some(updated_at) => {
                let updated_at = conditions.bind(updated_at);
                let seq = conditions.bind(after.seq);
                format!("(updated_at, seq) {compare} ({updated_at}, {seq})")
            }
            None => format!("seq {compare} {}", conditions.bind(after.seq)),
        };
        conditions.clauses.push(clause);
    }
    let limit = request.limit();
    let sql = format!(
        "{select}{} ORDER BY {order} LIMIT {}",
        conditions.where_clause(),
        limit + 1
    );
    let by_update = sort.field == SortField::UpdatedAt;
    let rows = query(client, &sql, &refs(&conditions.params)).await?;
    let mut items: Vec<(Position, T)> = rows
        .iter()
        .map(|row| {
            let position = Position {
                seq: row.get(0),
                updated_at: by_update.then(|| row.get("updated_at")),
            };
            Ok((position, map(row)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let next_token = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|(at, _)| page_token::encode_sorted(sort, *at))
    } else {
        None
    };
    Ok(Page {
        items: items.into_iter().map(|(_, item)| item).collect(),
        next_token,
    })
}

/// Brings the `<kind>_tags` rows of `owner_id` in line with `edits`.
pub(super) async fn edit_tags<C: GenericClient>(
    client: &C,
    kind: &str,
    owner_id: &str,
    edits: &TagEdits,
) -> anyhow::Result<()> {
    let sql = format!("DELETE FROM {kind}_tags WHERE owner_id = $1 AND key = $2");
    for key in &edits.removed {
        execute(client, &sql, &[&owner_id, key]).await?;
    }
    insert_tags(client, kind, owner_id, &edits.set).await
}

pub(super) async fn insert_tags<C: GenericClient>(
    client: &C,
    kind: &str,
    owner_id: &str,
    tags: &Tags,
) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO {kind}_tags (owner_id, key, value) VALUES ($1, $2, $3)
         ON CONFLICT (owner_id, key) DO UPDATE SET value = excluded.value"
    );
    for (key, value) in tags {
        execute(client, &sql, &[&owner_id, key, value]).await?;
    }
    Ok(())
}

/// A JSON column. Text that does not parse (written by hand, say) is an error, logged
/// and answered, never a value of another shape than the one stored.
pub(super) fn parse_json(text: String) -> anyhow::Result<serde_json::Value> {
    // `Value`'s own parser, compiled in serde_json (see `store::outbox::printed`).
    text.parse::<serde_json::Value>().map_err(|error| {
        tracing::error!(%error, "a stored JSON value does not parse; it is not read back as anything else");
        anyhow::Error::new(error).context("a stored JSON value does not parse")
    })
}

pub(super) fn parse_tags(text: String) -> Tags {
    serde_json::from_str(&text).unwrap_or_default()
}

pub(super) const EVENT_COLUMNS: &str =
    "seq, id, installation_id, type, payload, conversation_id, user_id, message_id, status, failure_reason, created_at";

pub(super) fn event_row(row: &Row) -> anyhow::Result<EventRecord> {
    Ok(EventRecord {
        id: row.get(1),
        installation_id: row.get(2),
        event_type: row.get(3),
        payload: parse_json(row.get(4))?,
        conversation_id: row.get(5),
        user_id: row.get(6),
        message_id: row.get(7),
        status: row.get(8),
        failure_reason: row.get(9),
        created_at: row.get(10),
    })
}

pub(super) const CONVERSATION_COLUMNS: &str =
    "seq, id, installation_id, integration, channel, tags, message_count, created_at, updated_at";

pub(super) fn conversation_row(row: &Row) -> ConversationRecord {
    ConversationRecord {
        id: row.get(1),
        installation_id: row.get(2),
        integration: row.get(3),
        channel: row.get(4),
        tags: parse_tags(row.get(5)),
        message_count: row.get(6),
        created_at: row.get(7),
        updated_at: row.get(8),
    }
}

pub(super) const USER_COLUMNS: &str = "seq, id, installation_id, tags, name, picture_url, created_at, updated_at";

pub(super) fn user_row(row: &Row) -> UserRecord {
    UserRecord {
        id: row.get(1),
        installation_id: row.get(2),
        tags: parse_tags(row.get(3)),
        name: row.get(4),
        picture_url: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
    }
}

pub(super) const MESSAGE_COLUMNS: &str =
    "seq, id, installation_id, conversation_id, user_id, type, payload, direction, tags, created_at, updated_at";

pub(super) fn message_row(row: &Row) -> anyhow::Result<MessageRecord> {
    Ok(MessageRecord {
        id: row.get(1),
        installation_id: row.get(2),
        conversation_id: row.get(3),
        user_id: row.get(4),
        message_type: row.get(5),
        payload: parse_json(row.get(6))?,
        direction: row.get(7),
        tags: parse_tags(row.get(8)),
        created_at: row.get(9),
        updated_at: row.get(10),
    })
}

pub(super) const INSTALLATION_COLUMNS: &str =
    "id, name, webhook_id, plugin_hash, sidecar, registered_at, created_at, updated_at";

pub(super) fn installation_row(row: &Row) -> InstallationRecord {
    InstallationRecord {
        id: row.get(0),
        name: row.get(1),
        webhook_id: row.get(2),
        plugin_hash: row.get(3),
        sidecar: row.get(4),
        registered_at: row.get(5),
        created_at: row.get(6),
        updated_at: row.get(7),
    }
}

/// An outbox entry read from column `offset` on (the outbox alone, or joined to a
/// delivery).
pub(super) fn raw_entry(row: &Row, offset: usize) -> RawOutboxEntry {
    RawOutboxEntry {
        seq: row.get(offset),
        id: row.get(offset + 1),
        entry_type: row.get(offset + 2),
        time: row.get(offset + 3),
        integration_id: row.get(offset + 4),
        data: row.get(offset + 5),
        traceparent: row.get(offset + 6),
    }
}
