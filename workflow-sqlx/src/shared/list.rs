//! The statement of [`Store::list`](workflow_core::store::Store::list), for every backend: each filter
//! the query sets is one condition on a bound value (no value of the query is ever written into
//! the SQL), rows come in (created_at, id) order (or its reverse), and the keyset (`after`) is a
//! row-value comparison in that order, which an index on (created_at, id), (status, created_at, id) or
//! (parent_id, created_at, id) answers as a range. A status filter is an equality per status, so
//! the status index answers it as a range read; several statuses are a page per status, merged.

use workflow_core::store::{InstanceQuery, RuntimeStatus};

/// A value bound to a placeholder of a list statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Text(&'a str),
    Int(i64),
}

/// Which backend a statement is spelled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    #[cfg_attr(not(feature = "sqlite"), allow(dead_code))]
    Sqlite,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Postgres,
}

impl Dialect {
    /// The `n`-th placeholder, from 1.
    pub(crate) fn placeholder(self, n: usize) -> String {
        match self {
            Self::Sqlite => format!("?{n}"),
            Self::Postgres => format!("${n}"),
        }
    }
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

/// The statement selecting `columns` (which name `created_at` and `id`, the list order) of the
/// instances `query` matches, at most `query.limit` (the caller answers a limit of 0 without asking
/// the database), spelled for `dialect`.
pub(crate) fn list_statement<'a>(query: &'a InstanceQuery, columns: &str, dialect: Dialect) -> ListStatement<'a> {
    let mut values = Vec::new();
    let mut next = |value: Value<'a>| {
        values.push(value);
        dialect.placeholder(values.len())
    };
    // Each status once, so a query's statement is one of few shapes however its caller repeats them.
    let mut statuses: Vec<RuntimeStatus> = Vec::new();
    for status in &query.statuses {
        if !statuses.contains(status) {
            statuses.push(*status);
        }
    }
    let status_marks: Vec<String> = statuses.iter().map(|status| next(Value::Text(status.as_str()))).collect();
    let mut conditions = Vec::new();
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
    // Newest first reads the same indexes backwards.
    let (beyond, order) = if query.newest_first { ("<", "created_at DESC, id DESC") } else { (">", "created_at, id") };
    if let Some((created_at, id)) = &query.after {
        let created_at = next(Value::Int(*created_at));
        conditions.push(format!("(created_at, id) {beyond} ({created_at}, {})", next(Value::Text(id))));
    }
    let limit = next(Value::Int(i64::try_from(query.limit).unwrap_or(i64::MAX)));
    // One page of the instances that meet `status` (a condition, or none) and every other filter.
    let page = |status: Option<&str>| {
        let filter: Vec<String> = status.map(str::to_owned).into_iter().chain(conditions.iter().cloned()).collect();
        let filter = if filter.is_empty() { String::new() } else { format!(" WHERE {}", filter.join(" AND ")) };
        format!("SELECT {columns} FROM instances{filter} ORDER BY {order} LIMIT {limit}")
    };
    let sql = match status_marks.as_slice() {
        [] => page(None),
        // A parent's children are few and read from the (parent_id, created_at, id) index in list
        // order; the status only filters them. SQLite's planner, without statistics, would rather
        // read the status index (as far as the keyset makes it look as narrow), which for a
        // common status is most of the table: its `+` keeps the status test off every index.
        marks if query.parent_id.is_some() => {
            let unindexed = if dialect == Dialect::Sqlite { "+" } else { "" };
            page(Some(&format!("{unindexed}status IN ({})", marks.join(", "))))
        }
        [mark] => page(Some(&format!("status = {mark}"))),
        // Several statuses: a page of each, merged. Each is a range read of the (status,
        // created_at, id) index, already in list order, so the merge takes at most `limit` rows
        // of each and the whole index is never read; `status IN (...)` would read every row of
        // those statuses and sort them.
        marks => {
            let arms: Vec<String> = marks
                .iter()
                .enumerate()
                .map(|(arm, mark)| {
                    format!("SELECT {columns} FROM ({}) AS s{arm}", page(Some(&format!("status = {mark}"))))
                })
                .collect();
            format!("{} ORDER BY {order} LIMIT {limit}", arms.join(" UNION ALL "))
        }
    };
    ListStatement { sql, values }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_filter_is_a_bound_value() {
        let query = InstanceQuery {
            statuses: vec![RuntimeStatus::Failed, RuntimeStatus::Completed, RuntimeStatus::Failed],
            workflow: Some("w'; DROP TABLE instances; --".into()),
            created_after: Some(1),
            created_before: Some(2),
            updated_before: Some(3),
            parent_id: Some("p".into()),
            without_payloads: false,
            after: Some((4, "x".into())),
            limit: 5,
            newest_first: false,
        };
        let statement = list_statement(&query, "id, created_at", Dialect::Sqlite);
        assert_eq!(
            statement.sql,
            "SELECT id, created_at FROM instances WHERE +status IN (?1, ?2) AND workflow = ?3 AND created_at >= ?4 \
             AND created_at < ?5 AND updated_at < ?6 AND parent_id = ?7 AND (created_at, id) > (?8, ?9) \
             ORDER BY created_at, id LIMIT ?10"
        );
        let postgres = list_statement(&query, "id, created_at", Dialect::Postgres);
        assert!(postgres.sql.contains("WHERE status IN ($1, $2) AND workflow = $3"), "{}", postgres.sql);
        assert_eq!(postgres.values, statement.values);
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
    fn several_statuses_are_a_page_of_each_merged() {
        let query = InstanceQuery {
            statuses: vec![RuntimeStatus::Pending, RuntimeStatus::Running],
            workflow: Some("w".into()),
            after: Some((4, "x".into())),
            limit: 5,
            ..InstanceQuery::default()
        };
        let statement = list_statement(&query, "id, created_at", Dialect::Postgres);
        let page = |status: &str| {
            format!(
                "SELECT id, created_at FROM instances WHERE status = {status} AND workflow = $3 \
                 AND (created_at, id) > ($4, $5) ORDER BY created_at, id LIMIT $6"
            )
        };
        assert_eq!(
            statement.sql,
            format!(
                "SELECT id, created_at FROM ({}) AS s0 UNION ALL SELECT id, created_at FROM ({}) AS s1 \
                 ORDER BY created_at, id LIMIT $6",
                page("$1"),
                page("$2")
            )
        );
        assert_eq!(
            statement.values,
            [
                Value::Text("Pending"),
                Value::Text("Running"),
                Value::Text("w"),
                Value::Int(4),
                Value::Text("x"),
                Value::Int(5)
            ]
        );
    }

    #[test]
    fn one_status_is_one_equality() {
        let query = InstanceQuery {
            statuses: vec![RuntimeStatus::Running, RuntimeStatus::Running],
            after: Some((4, "x".into())),
            limit: 5,
            ..InstanceQuery::default()
        };
        let statement = list_statement(&query, "id, created_at", Dialect::Sqlite);
        assert_eq!(
            statement.sql,
            "SELECT id, created_at FROM instances WHERE status = ?1 AND (created_at, id) > (?2, ?3) \
             ORDER BY created_at, id LIMIT ?4"
        );
        assert_eq!(statement.values, [Value::Text("Running"), Value::Int(4), Value::Text("x"), Value::Int(5)]);
    }

    #[test]
    fn newest_first_reads_backwards_before_the_keyset() {
        let query = InstanceQuery {
            statuses: vec![RuntimeStatus::Pending, RuntimeStatus::Running],
            after: Some((4, "x".into())),
            limit: 5,
            newest_first: true,
            ..InstanceQuery::default()
        };
        let statement = list_statement(&query, "id", Dialect::Sqlite);
        let page = |status: &str| {
            format!(
                "SELECT id FROM instances WHERE status = {status} AND (created_at, id) < (?3, ?4) \
                 ORDER BY created_at DESC, id DESC LIMIT ?5"
            )
        };
        assert_eq!(
            statement.sql,
            format!(
                "SELECT id FROM ({}) AS s0 UNION ALL SELECT id FROM ({}) AS s1 ORDER BY created_at DESC, id DESC LIMIT ?5",
                page("?1"),
                page("?2")
            )
        );
    }

    #[test]
    fn no_filter_lists_everything_in_order() {
        let query = InstanceQuery { limit: usize::MAX, ..InstanceQuery::default() };
        let statement = list_statement(&query, "id", Dialect::Postgres);
        assert_eq!(statement.sql, "SELECT id FROM instances ORDER BY created_at, id LIMIT $1");
        assert_eq!(statement.values, [Value::Int(i64::MAX)]);
    }
}
