//! The statement of [`Store::list`](workflow_core::store::Store::list), for every backend: each filter
//! the query sets is one condition on a bound value (no value of the query is ever written into
//! the SQL), rows come in (created_at, id) order, and the keyset (`after`) is a row-value
//! comparison in that order, which an index on (created_at, id) or (parent_id, created_at, id)
//! answers as a range.

use workflow_core::store::{InstanceQuery, RuntimeStatus};

/// A value bound to a placeholder of a list statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    Int(i64),
}

/// A list statement: its SQL and the values of its placeholders, in placeholder order.
pub(crate) struct ListStatement<'a> {
    pub(crate) sql: String,
    pub(crate) values: Vec<Value<'a>>,
}

impl ListStatement<'_> {
    /// The statement with its values bound, for either backend.
    pub(crate) fn query<'q, DB>(&'q self) -> sqlx::query::Query<'q, DB, <DB as sqlx::Database>::Arguments<'q>>
    where
        DB: sqlx::Database,
        &'q str: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        self.values.iter().fold(sqlx::query(&self.sql), |bound, value| match *value {
            Value::Text(text) => bound.bind(text),
            Value::Int(int) => bound.bind(int),
        })
    }
}

/// The statement selecting `columns` of the instances `query` matches, at most `query.limit` (the
/// caller answers a limit of 0 without asking the database). `placeholder(n)` spells the `n`-th
/// placeholder, from 1 (`?n` for SQLite, `$n` for PostgreSQL).
pub(crate) fn list_statement<'a>(
    query: &'a InstanceQuery,
    columns: &str,
    placeholder: fn(usize) -> String,
) -> ListStatement<'a> {
    let mut values = Vec::new();
    let mut next = |value: Value<'a>| {
        values.push(value);
        placeholder(values.len())
    };
    let mut conditions = Vec::new();
    // Each status once, so a query's statement is one of few shapes however its caller repeats them.
    let mut statuses: Vec<RuntimeStatus> = Vec::new();
    for status in &query.statuses {
        if !statuses.contains(status) {
            statuses.push(*status);
        }
    }
    if !statuses.is_empty() {
        let marks: Vec<String> = statuses.iter().map(|status| next(Value::Text(status.as_str()))).collect();
        conditions.push(format!("status IN ({})", marks.join(", ")));
    }
    if let Some(workflow) = &query.workflow {
        conditions.push(format!("workflow = {}", next(Value::Text(workflow))));
    }
    if let Some(after) = query.created_after {
        conditions.push(format!("created_at >= {}", next(Value::Int(after))));
    }
    if let Some(before) = query.created_before {
        conditions.push(format!("created_at < {}", next(Value::Int(before))));
    }
    if let Some(before) = query.updated_before {
        conditions.push(format!("updated_at < {}", next(Value::Int(before))));
    }
    if let Some(parent) = &query.parent_id {
        conditions.push(format!("parent_id = {}", next(Value::Text(parent))));
    }
    if let Some((created_at, id)) = &query.after {
        let created_at = next(Value::Int(*created_at));
        conditions.push(format!("(created_at, id) > ({created_at}, {})", next(Value::Text(id))));
    }
    let filter = if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
    let limit = next(Value::Int(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    let sql = format!("SELECT {columns} FROM instances{filter} ORDER BY created_at, id LIMIT {limit}");
    ListStatement { sql, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn question(n: usize) -> String {
        format!("?{n}")
    }

    #[test]
    fn every_filter_is_a_bound_value() {
        let query = InstanceQuery {
            statuses: vec![RuntimeStatus::Failed, RuntimeStatus::Completed, RuntimeStatus::Failed],
            workflow: Some("w'; DROP TABLE instances; --".into()),
            created_after: Some(1),
            created_before: Some(2),
            updated_before: Some(3),
            parent_id: Some("p".into()),
            after: Some((4, "x".into())),
            limit: 5,
        };
        let statement = list_statement(&query, "id", question);
        assert_eq!(
            statement.sql,
            "SELECT id FROM instances WHERE status IN (?1, ?2) AND workflow = ?3 AND created_at >= ?4 \
             AND created_at < ?5 AND updated_at < ?6 AND parent_id = ?7 AND (created_at, id) > (?8, ?9) \
             ORDER BY created_at, id LIMIT ?10"
        );
        assert_eq!(
            statement.values,
            [
                Value::Text("Failed"),
                Value::Text("Completed"),
                Value::Text("w'; DROP TABLE instances; --"),
                Value::Int(1),
                Value::Int(2),
                Value::Int(3),
                Value::Text("p"),
                Value::Int(4),
                Value::Text("x"),
                Value::Int(5),
            ]
        );
    }

    #[test]
    fn no_filter_lists_everything_in_order() {
        let query = InstanceQuery { limit: usize::MAX, ..InstanceQuery::default() };
        let statement = list_statement(&query, "id", |n| format!("${n}"));
        assert_eq!(statement.sql, "SELECT id FROM instances ORDER BY created_at, id LIMIT $1");
        assert_eq!(statement.values, [Value::Int(i64::MAX)]);
    }
}
