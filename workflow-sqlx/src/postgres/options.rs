//! Options and opening: [`PostgresOptions`], the URL and schema name checks, and connecting the
//! store's pool (creating its schema if asked, migrating it, checking `synchronous_commit`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use workflow_core::store::StoreError;

use super::retry::sql_state;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long a pooled connection may sit idle before it is pinged when next taken.
const PING_IDLE: Duration = Duration::from_secs(1);

/// PostgreSQL's longest identifier (a channel name is one), in bytes.
pub(super) const MAX_IDENTIFIER: usize = 63;

/// Options for [`PostgresStore::open_with`]; [`PostgresOptions::default`] is what
/// [`PostgresStore::open`] uses.
///
/// [`PostgresStore::open_with`]: super::PostgresStore::open_with
/// [`PostgresStore::open`]: super::PostgresStore::open
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    max_connections: u32,
    schema: Option<String>,
    analyze_as_tables_grow: bool,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self { max_connections: 10, schema: None, analyze_as_tables_grow: true }
    }
}

impl PostgresOptions {
    /// The defaults: at most 10 connections (plus the one that listens for wake signals), the
    /// tables in the first schema of the URL's or the server's `search_path` (usually `public`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how many connections the store opens at most (at least 1), besides the one that
    /// listens for wake signals.
    pub fn max_connections(mut self, connections: u32) -> Self {
        self.max_connections = connections.max(1);
        self
    }

    /// Keeps the store's tables (and sqlx's `_sqlx_migrations`) in `schema`, created if missing:
    /// every connection's `search_path` is set to it, so stores on different schemas of one
    /// database are independent (tests isolate themselves this way). The name must be a plain
    /// identifier: ASCII letters, digits and `_`, not starting with a digit or `pg_`, at most 63
    /// bytes; it is used as written, case included.
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = Some(schema.into());
        self
    }

    /// Whether the store runs `ANALYZE` on its tables as they grow (on by default): once the rows
    /// it inserted since the last one reach what the tables held then (at least 1,000), so when
    /// they have about doubled, one runs in the background. PostgreSQL plans the store's
    /// statements from those statistics; without them (autovacuum off, or a fresh database
    /// before autovacuum's first pass) it plans for the tables as small as they first were, and
    /// every commit reads whole tables as they grow. Turn it off to leave statistics to
    /// autovacuum alone; a role that may not analyze the tables turns it off by itself, with a
    /// warning.
    pub fn analyze_as_tables_grow(mut self, on: bool) -> Self {
        self.analyze_as_tables_grow = on;
        self
    }

    pub(super) fn analyzes(&self) -> bool {
        self.analyze_as_tables_grow
    }
}
/// Checks the scheme (so a SQLite URL is a configuration error, not a connection attempt) and
/// parses the rest.
fn parse_url(url: &str) -> Result<PgConnectOptions, StoreError> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Config(format!(
            "expected a PostgreSQL URL (`postgres://user@host/database`), got {:?}",
            redact(url)
        )));
    }
    PgConnectOptions::from_str(url)
        .map_err(|error| StoreError::Config(format!("invalid PostgreSQL URL {:?}: {error}", redact(url))))
}

/// `url` without its passwords, for error messages: the one in the user info, and the value of
/// every `password` parameter of the query string (which the driver reads as the password too).
/// Text that is no URL (a `key=value` connection string, say) has its `password=` values starred.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return redact_parameters(url, ' ') };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((credentials, host)) if credentials.contains(':') => {
            let user = credentials.split(':').next().unwrap_or_default();
            format!("{user}:***@{host}")
        }
        _ => authority.to_owned(),
    };
    let path = match path.split_once('?') {
        Some((path, query)) => format!("{path}?{}", redact_parameters(query, '&')),
        None => path.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

/// `parameters` (`key=value` pairs joined by `separator`) with the value of each password starred.
fn redact_parameters(parameters: &str, separator: char) -> String {
    let pairs: Vec<String> = parameters
        .split(separator)
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_password_key(key) => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    pairs.join(&separator.to_string())
}

/// Whether a query-string key names the password, as the driver reads it: ignoring ASCII case
/// and surrounding spaces, percent-encoding decoded.
fn is_password_key(key: &str) -> bool {
    let bytes = key.trim().as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 3).and_then(|hex| std::str::from_utf8(hex).ok());
        match (bytes[i], escaped.and_then(|hex| u8::from_str_radix(hex, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    decoded.eq_ignore_ascii_case(b"password")
}

fn check_schema(schema: &str) -> Result<(), StoreError> {
    let mut chars = schema.chars();
    let plain = chars.next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !plain || schema.len() > MAX_IDENTIFIER || schema.to_ascii_lowercase().starts_with("pg_") {
        return Err(StoreError::Config(format!(
            "invalid PostgreSQL schema name {schema:?}: expected ASCII letters, digits and `_`, not starting with a \
             digit or `pg_`, at most {MAX_IDENTIFIER} bytes"
        )));
    }
    Ok(())
}

/// Creates `schema` unless it exists. Two processes creating it at once may race
/// (`IF NOT EXISTS` checks before it takes a lock); the loser finds it made.
async fn create_schema(pool: &PgPool, schema: &str) -> Result<(), StoreError> {
    let create = format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"");
    let mut last_error = None;
    for _ in 0..3 {
        match sqlx::query(&create).execute(pool).await {
            Ok(_) => return Ok(()),
            Err(error) if matches!(sql_state(&error).as_deref(), Some("23505" | "42P06")) => last_error = Some(error),
            Err(error) => return Err(StoreError::Backend(format!("cannot create schema {schema:?}: {error}"))),
        }
    }
    Err(StoreError::Backend(format!(
        "cannot create schema {schema:?}: {}",
        last_error.map_or_else(String::new, |error| error.to_string())
    )))
}

/// Connects the store's pool to the database at `url` with `options`, creating the schema they
/// name if missing, and brings it up to date; returns the pool, the connect options (for the
/// listener's connection) and the schema the tables are in.
pub(super) async fn connect(
    url: &str,
    options: &PostgresOptions,
) -> Result<(PgPool, PgConnectOptions, String), StoreError> {
    let mut connect = parse_url(url)?;
    if let Some(schema) = &options.schema {
        check_schema(schema)?;
        connect = connect.options([("search_path", format!("\"{schema}\""))]);
    }
    // A connection back from use moments ago is alive all but always: pinging it before each
    // statement would add a round trip to every store call (a fifth of a step's latency).
    // One idle for a while may have been closed by the server or a proxy, so it is pinged.
    let pool = PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_IDLE {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        })
        .max_connections(options.max_connections)
        .connect_with(connect.clone())
        .await
        .map_err(opening)?;
    if let Some(schema) = &options.schema {
        create_schema(&pool, schema).await?;
    }
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|error| StoreError::Backend(format!("cannot migrate PostgreSQL database: {error}")))?;

    let (schema, synchronous_commit): (Option<String>, String) =
        sqlx::query_as("SELECT current_schema(), current_setting('synchronous_commit')")
            .fetch_one(&pool)
            .await
            .map_err(opening)?;
    let schema = schema
        .ok_or_else(|| StoreError::Config("the connection's search_path names no schema that exists".to_owned()))?;
    if synchronous_commit == "off" {
        tracing::warn!(
            "postgres: synchronous_commit is off for this connection: a commit can be lost if the server \
             crashes after acknowledging it"
        );
    }
    Ok((pool, connect, schema))
}

/// A failure to open the database.
pub(super) fn opening(error: sqlx::Error) -> StoreError {
    StoreError::Backend(format!("cannot open PostgreSQL database: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names() {
        for good in ["wf", "_x", "Wf_Test_09", &"a".repeat(63)] {
            assert!(check_schema(good).is_ok(), "{good}");
        }
        for bad in ["", "9x", "a-b", "a b", "\"x\"", "pg_temp", "PG_x", "ü", &"a".repeat(64)] {
            assert!(matches!(check_schema(bad), Err(StoreError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h:5432/db?x=1"), "postgres://u:***@h:5432/db?x=1");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
        // A password in the query string is the password all the same.
        assert_eq!(redact("postgres://u@h/db?password=secret"), "postgres://u@h/db?password=***");
        assert_eq!(
            redact("postgres://u@h/db?sslmode=disable&password=secret&application_name=a"),
            "postgres://u@h/db?sslmode=disable&password=***&application_name=a"
        );
        assert_eq!(redact("postgres://u:one@h?PassWord=two"), "postgres://u:***@h?PassWord=***");
        assert_eq!(redact("postgres://h/db?pass%77ord=secret"), "postgres://h/db?pass%77ord=***");
        assert_eq!(
            redact("postgres://h/db?password_file=x&passwords=y"),
            "postgres://h/db?password_file=x&passwords=y"
        );
        // Not a URL: a connection string's password is starred too.
        assert_eq!(redact("host=h user=u password=secret"), "host=h user=u password=***");
    }

    #[test]
    fn a_query_string_password_is_not_in_the_error() {
        let bad_port = "postgres://u@h:notaport/db?sslmode=disable&password=hunter2";
        let Err(StoreError::Config(message)) = parse_url(bad_port) else { panic!("a bad port is a config error") };
        assert!(!message.contains("hunter2"), "{message}");
        let Err(StoreError::Config(message)) = parse_url("host=h password=hunter2") else {
            panic!("a connection string is not a URL")
        };
        assert!(!message.contains("hunter2"), "{message}");
    }
}
