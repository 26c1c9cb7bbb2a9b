//! Where commands are sent: the store itself ([`database`]) or a server mounting the HTTP router
//! ([`http`]). Both answer with the rows of [`crate::model`], so every command is written once,
//! against [`Backend`].

mod database;
mod http;

use workflow::RuntimeStatus;

use crate::error::CliError;
use crate::model::{HistoryItem, Instance, Page, Queue, Schedule};

/// Which backend, and its URL, as the command line or the environment chose it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// `--database-url` / `WORKFLOW_DATABASE_URL`.
    Database(String),
    /// `--http` / `WORKFLOW_HTTP`.
    Http(String),
}

/// Which instances a list returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ListQuery {
    pub(crate) statuses: Vec<RuntimeStatus>,
    pub(crate) workflow: Option<String>,
    pub(crate) parent: Option<String>,
    pub(crate) created_after: Option<i64>,
    pub(crate) created_before: Option<i64>,
    pub(crate) page_size: usize,
    pub(crate) page_token: Option<String>,
    /// Read inputs, outputs and custom statuses too.
    pub(crate) payloads: bool,
    /// Newest first (oldest first by default).
    pub(crate) newest_first: bool,
}

/// How a diagram is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DiagramFormat {
    /// A Mermaid flowchart.
    Mermaid,
    /// Text for a terminal, one line per node.
    Text,
}

/// A fork of a finished instance ([`Backend::rerun`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rerun<'a> {
    pub(crate) source: &'a str,
    pub(crate) from_step: u32,
    /// The new input (JSON); the source's when `None`.
    pub(crate) input: Option<&'a str>,
    pub(crate) new_id: Option<&'a str>,
}

/// An opened backend.
pub(crate) enum Backend {
    Database(database::Database),
    Http(http::Http),
}

/// Calls the same method on whichever backend this is.
macro_rules! each {
    ($self:ident.$method:ident($($arg:expr),*)) => {
        match $self {
            Backend::Database(backend) => backend.$method($($arg),*).await,
            Backend::Http(backend) => backend.$method($($arg),*).await,
        }
    };
}

impl Backend {
    /// Opens the store, or checks the server's URL (a server is first reached by the command).
    pub(crate) async fn open(target: &Target) -> Result<Self, CliError> {
        match target {
            Target::Database(url) => Ok(Self::Database(database::Database::open(url).await?)),
            Target::Http(url) => Ok(Self::Http(http::Http::new(url)?)),
        }
    }

    pub(crate) async fn list(&self, query: &ListQuery) -> Result<Page, CliError> {
        each!(self.list(query))
    }

    pub(crate) async fn status(&self, id: &str) -> Result<Instance, CliError> {
        each!(self.status(id))
    }

    /// The instance's history; `None` when the backend cannot tell it (a router without the
    /// history route).
    pub(crate) async fn history(&self, id: &str) -> Result<Option<Vec<HistoryItem>>, CliError> {
        each!(self.history(id))
    }

    /// The instance's journal drawn in `format`.
    pub(crate) async fn diagram(&self, id: &str, format: DiagramFormat) -> Result<String, CliError> {
        each!(self.diagram(id, format))
    }

    pub(crate) async fn terminate(&self, id: &str, reason: Option<&str>, recursive: bool) -> Result<(), CliError> {
        each!(self.terminate(id, reason, recursive))
    }

    pub(crate) async fn suspend(&self, id: &str, reason: Option<&str>) -> Result<(), CliError> {
        each!(self.suspend(id, reason))
    }

    pub(crate) async fn resume(&self, id: &str, reason: Option<&str>) -> Result<(), CliError> {
        each!(self.resume(id, reason))
    }

    /// Raises `event` with `payload`, JSON already checked.
    pub(crate) async fn raise(&self, id: &str, event: &str, payload: &str) -> Result<(), CliError> {
        each!(self.raise(id, event, payload))
    }

    pub(crate) async fn purge(&self, id: &str, recursive: bool) -> Result<(), CliError> {
        each!(self.purge(id, recursive))
    }

    /// Forks a finished instance; the new instance's id.
    pub(crate) async fn rerun(&self, rerun: &Rerun<'_>) -> Result<String, CliError> {
        each!(self.rerun(rerun))
    }

    /// Every queue of work: activity attempts and unfinished instances, per name and key.
    pub(crate) async fn queues(&self) -> Result<Vec<Queue>, CliError> {
        each!(self.queues())
    }

    pub(crate) async fn schedules(&self) -> Result<Vec<Schedule>, CliError> {
        each!(self.schedules())
    }

    pub(crate) async fn schedule(&self, id: &str) -> Result<Schedule, CliError> {
        each!(self.schedule(id))
    }

    pub(crate) async fn pause_schedule(&self, id: &str) -> Result<(), CliError> {
        each!(self.pause_schedule(id))
    }

    pub(crate) async fn resume_schedule(&self, id: &str) -> Result<(), CliError> {
        each!(self.resume_schedule(id))
    }

    /// Starts the schedule's workflow now; the instance's id.
    pub(crate) async fn trigger_schedule(&self, id: &str) -> Result<String, CliError> {
        each!(self.trigger_schedule(id))
    }

    pub(crate) async fn delete_schedule(&self, id: &str) -> Result<(), CliError> {
        each!(self.delete_schedule(id))
    }
}
