//! The database backend: the store opened in this process, driven through a [`Client`] without a
//! runtime. Answers are built in the HTTP routes' JSON shapes ([`workflow::http::status_json`] and
//! the same keys for history, queues and schedules), then read into rows like the HTTP backend's.

use std::path::PathBuf;
use std::sync::Arc;

use workflow::http::{history_json, listed_json, queue_json, schedule_json, status_json};
use workflow::store::Store;
use workflow::{Client, ListFilter};

use super::{DiagramFormat, ListQuery, Rerun};
use crate::error::CliError;
use crate::model::{HistoryItem, Instance, Page, Queue, Schedule};

/// A store opened from `--database-url`.
pub(crate) struct Database {
    client: Client,
}

/// What a `sqlite:` URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SqliteTarget {
    File(PathBuf),
    Memory,
}

/// The database a SQLite URL names, read as the store reads it (`sqlite://PATH` or `sqlite:PATH`,
/// percent-decoded, parameters after `?`); `None` for a URL that is not SQLite's.
fn sqlite_target(url: &str) -> Option<SqliteTarget> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (database, params) = rest.split_once('?').map_or((rest, None), |(database, params)| (database, Some(params)));
    let memory_mode = params.is_some_and(|params| params.split('&').any(|pair| pair == "mode=memory"));
    if database == ":memory:" || memory_mode {
        return Some(SqliteTarget::Memory);
    }
    Some(SqliteTarget::File(PathBuf::from(
        percent_encoding::percent_decode_str(database).decode_utf8_lossy().into_owned(),
    )))
}

/// The URL with its password (if any) hidden, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Fails at once when the PostgreSQL server's TCP port refuses connections (the store's pool
/// would retry for 30 s before giving up). A URL without a host (a Unix socket) is not checked.
async fn check_reachable(url: &str) -> Result<(), CliError> {
    let Ok(parsed) = reqwest::Url::parse(url) else { return Ok(()) };
    let host = match parsed.host_str() {
        Some(host) if !host.is_empty() && !parsed.query_pairs().any(|(key, _)| key == "host") => {
            host.trim_start_matches('[').trim_end_matches(']').to_owned()
        }
        _ => return Ok(()),
    };
    let port = parsed.port().unwrap_or(5432);
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(CliError::unreachable(format!(
            "cannot reach the PostgreSQL server of {} at {host}:{port}: {error}",
            redacted(url)
        ))),
        Err(_) => Err(CliError::unreachable(format!(
            "cannot reach the PostgreSQL server of {} at {host}:{port}: no answer in 10 s",
            redacted(url)
        ))),
    }
}

impl Database {
    /// Opens the store at `url`. A SQLite file must exist: the store would create an empty one,
    /// which no command wants.
    pub(crate) async fn open(url: &str) -> Result<Self, CliError> {
        let store: Arc<dyn Store> = if let Some(target) = sqlite_target(url) {
            let path = match target {
                SqliteTarget::Memory => {
                    return Err(CliError::unreachable(format!(
                        "{url} is an in-memory SQLite database, empty in every new process: give a file \
                         (sqlite:PATH)"
                    )));
                }
                SqliteTarget::File(path) => path,
            };
            if path.as_os_str().is_empty() {
                return Err(CliError::unreachable(format!("the SQLite URL {url:?} names no database file")));
            }
            if !path.is_file() {
                let what = if path.exists() { "is not a file" } else { "does not exist" };
                return Err(CliError::unreachable(format!("no database at {}: the path {what}", path.display())));
            }
            Arc::new(workflow::SqliteStore::open(url).await.map_err(|error| {
                CliError::unreachable(format!("cannot open the SQLite database {}: {error}", path.display()))
            })?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            check_reachable(url).await?;
            Arc::new(workflow::PostgresStore::open(url).await.map_err(|error| {
                CliError::unreachable(format!("cannot open the PostgreSQL database {}: {error}", redacted(url)))
            })?)
        } else {
            return Err(CliError::unreachable(format!(
                "unsupported database URL {:?}: expected sqlite:PATH, sqlite://PATH or postgres://...",
                redacted(url)
            )));
        };
        Ok(Self { client: Client::new(store) })
    }

    pub(crate) async fn list(&self, query: &ListQuery) -> Result<Page, CliError> {
        let filter = ListFilter {
            statuses: query.statuses.clone(),
            workflow: query.workflow.clone(),
            created_after: query.created_after,
            created_before: query.created_before,
            parent_id: query.parent.clone(),
            without_payloads: !query.payloads,
            newest_first: query.newest_first,
        };
        let page = self.client.list(&filter, query.page_size, query.page_token.as_deref()).await?;
        let instances = page
            .instances
            .iter()
            .map(|status| Instance::from_json(listed_json(status, &filter)))
            .collect::<Result<_, _>>()?;
        Ok(Page { instances, continuation: page.continuation })
    }

    pub(crate) async fn status(&self, id: &str) -> Result<Instance, CliError> {
        Instance::from_json(status_json(&self.client.status(id).await?))
    }

    pub(crate) async fn history(&self, id: &str) -> Result<Option<Vec<HistoryItem>>, CliError> {
        let history = self.client.history(id).await?;
        history.iter().map(|event| HistoryItem::from_json(history_json(event))).collect::<Result<_, _>>().map(Some)
    }

    pub(crate) async fn diagram(&self, id: &str, format: DiagramFormat) -> Result<String, CliError> {
        Ok(match format {
            DiagramFormat::Mermaid => self.client.diagram(id).await?,
            DiagramFormat::Text => self.client.diagram_text(id).await?,
        })
    }

    pub(crate) async fn terminate(&self, id: &str, reason: Option<&str>, recursive: bool) -> Result<(), CliError> {
        Ok(self.client.terminate(id, reason).recursive(recursive).await?)
    }

    pub(crate) async fn suspend(&self, id: &str, reason: Option<&str>) -> Result<(), CliError> {
        Ok(self.client.suspend(id, reason).await?)
    }

    pub(crate) async fn resume(&self, id: &str, reason: Option<&str>) -> Result<(), CliError> {
        Ok(self.client.resume(id, reason).await?)
    }

    pub(crate) async fn raise(&self, id: &str, event: &str, payload: &str) -> Result<(), CliError> {
        Ok(self.client.raise_event_untyped(id, event, payload).await?)
    }

    pub(crate) async fn purge(&self, id: &str, recursive: bool) -> Result<(), CliError> {
        self.client.purge(id).recursive(recursive).await?;
        Ok(())
    }

    pub(crate) async fn rerun(&self, rerun: &Rerun<'_>) -> Result<String, CliError> {
        Ok(self.client.rerun(rerun.source, rerun.from_step, rerun.new_id, rerun.input).await?)
    }

    pub(crate) async fn queues(&self) -> Result<Vec<Queue>, CliError> {
        self.client.queues().await?.iter().map(|queue| Queue::from_json(queue_json(queue))).collect()
    }

    pub(crate) async fn schedules(&self) -> Result<Vec<Schedule>, CliError> {
        self.client.schedules().await?.iter().map(|status| Schedule::from_json(schedule_json(status))).collect()
    }

    pub(crate) async fn schedule(&self, id: &str) -> Result<Schedule, CliError> {
        Schedule::from_json(schedule_json(&self.client.schedule(id).await?))
    }

    pub(crate) async fn pause_schedule(&self, id: &str) -> Result<(), CliError> {
        Ok(self.client.pause_schedule(id).await?)
    }

    pub(crate) async fn resume_schedule(&self, id: &str) -> Result<(), CliError> {
        Ok(self.client.resume_schedule(id).await?)
    }

    pub(crate) async fn trigger_schedule(&self, id: &str) -> Result<String, CliError> {
        Ok(self.client.trigger_schedule(id).await?)
    }

    pub(crate) async fn delete_schedule(&self, id: &str) -> Result<(), CliError> {
        Ok(self.client.delete_schedule(id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_name_the_file_the_store_opens() {
        let file = |path: &str| Some(SqliteTarget::File(PathBuf::from(path)));
        assert_eq!(sqlite_target("sqlite:app.db"), file("app.db"));
        assert_eq!(sqlite_target("sqlite://app.db"), file("app.db"));
        assert_eq!(sqlite_target("sqlite:///tmp/a%20b.db?mode=rw"), file("/tmp/a b.db"));
        assert_eq!(sqlite_target("sqlite::memory:"), Some(SqliteTarget::Memory));
        assert_eq!(sqlite_target("sqlite://x.db?mode=memory"), Some(SqliteTarget::Memory));
        assert_eq!(sqlite_target("postgres://localhost/db"), None);
        assert_eq!(sqlite_target("sqlite:100%.db"), file("100%.db"), "a malformed escape is kept");
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redacted("postgres://app:secret@db/app"), "postgres://app:***@db/app");
        assert_eq!(redacted("postgres://app@db/app"), "postgres://app@db/app");
    }
}
