//! The command line: options, subcommands and their help (clap derive), and the parsers of the
//! values clap cannot read alone (statuses, times).

use clap::{Args, Parser, Subcommand};
use workflow::http::dapr_status_name;
use workflow::RuntimeStatus;

use crate::error::EXIT_CODES;

const ABOUT: &str = "Lists, inspects and manages durable workflow instances and schedules";

const LONG_ABOUT: &str = "\
Lists, inspects and manages durable workflow instances and schedules.

Choose one backend:
  --database-url URL  the store itself: sqlite:PATH, sqlite://PATH (the file must exist; wfctl never
                      creates one) or postgres://USER[:PASSWORD]@HOST[:PORT]/DB (a schema with
                      ?options=-c%20search_path%3DNAME). Env: WORKFLOW_DATABASE_URL
  --http URL          a server that mounts workflow::http::router, by its base URL
                      (http://127.0.0.1:8080, with or without a trailing /v1.0). Env: WORKFLOW_HTTP

Output is aligned tables for people, or JSON with --json (the HTTP routes' shapes, whichever
backend answers).";

fn after_help() -> String {
    format!(
        "Examples:
  wfctl --database-url sqlite:app.db list --status running,suspended
  wfctl --http http://127.0.0.1:8080 show order-7
  wfctl --database-url postgres://app@db/app terminate order-7 --reason 'customer cancelled'
  WORKFLOW_HTTP=http://127.0.0.1:8080 wfctl raise order-7 approve true

{EXIT_CODES}"
    )
}

/// The parsed command line.
#[derive(Debug, Parser)]
#[command(name = "wfctl", version, about = ABOUT, long_about = LONG_ABOUT, after_help = after_help())]
pub(crate) struct Cli {
    /// The store's URL: sqlite:PATH, sqlite://PATH or postgres://... [env: WORKFLOW_DATABASE_URL]
    #[arg(long, global = true, value_name = "URL", conflicts_with = "http")]
    pub(crate) database_url: Option<String>,

    /// The base URL of a server mounting the workflow HTTP router, e.g. http://127.0.0.1:8080
    /// [env: WORKFLOW_HTTP]
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) http: Option<String>,

    /// Print JSON (the HTTP routes' shapes) instead of tables
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// What to do.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// List instances, oldest first, a page at a time
    #[command(after_help = "Examples:
  wfctl list --status failed --workflow checkout
  wfctl list --status RUNNING --status Suspended --created-after 2026-01-01T00:00:00Z
  wfctl list --all --json")]
    List(ListArgs),

    /// Show an instance: its status, its history (one row per step) and its diagram
    #[command(after_help = "The diagram is drawn as text, one line per step (✓ completed, ✗ failed, \
… running or waiting, ■ stopped, ◇ a fork or join); --mermaid prints it as Mermaid instead \
(paste it into a Mermaid viewer), as --json always does.")]
    Show {
        /// The instance id
        id: String,
        /// Leave the diagram out
        #[arg(long)]
        no_diagram: bool,
        /// Print the diagram as Mermaid text
        #[arg(long, conflicts_with = "no_diagram")]
        mermaid: bool,
    },

    /// Terminate an unfinished instance (and, by default, its running descendants)
    #[command(after_help = "Exits 4 if the instance has already finished.")]
    Terminate {
        /// The instance id
        id: String,
        /// Why (stored as the instance's failure message)
        #[arg(long, value_name = "R")]
        reason: Option<String>,
        /// Leave the instance's descendants running
        #[arg(long)]
        non_recursive: bool,
    },

    /// Suspend an instance: it runs no new step and buffers the events raised meanwhile
    #[command(after_help = "Exits 4 if the instance has finished. Over --http the router logs its own reason.")]
    Suspend {
        /// The instance id
        id: String,
        /// Why (logged)
        #[arg(long, value_name = "R")]
        reason: Option<String>,
    },

    /// Resume a suspended instance
    #[command(after_help = "Exits 4 if the instance is not suspended. Over --http the router logs its own reason.")]
    Resume {
        /// The instance id
        id: String,
        /// Why (logged)
        #[arg(long, value_name = "R")]
        reason: Option<String>,
    },

    /// Raise an event on an instance (buffered until the workflow waits for it)
    #[command(after_help = "Examples:
  wfctl raise order-7 approve true
  wfctl raise order-7 address '{\"city\": \"Lyon\"}'
  echo '{\"ok\": true}' | wfctl raise order-7 review -

The payload is checked to be JSON before anything is sent (exit 2 if not).
Exits 4 if the instance has finished or its inbox is full.")]
    Raise {
        /// The instance id
        id: String,
        /// The event's name
        event: String,
        /// The payload, JSON (`-` reads it from stdin)
        #[arg(default_value = "null", value_name = "PAYLOAD_JSON")]
        payload: String,
    },

    /// Delete a finished instance and every row of it (and, by default, its descendants)
    #[command(after_help = "Exits 4 if the instance (or a descendant) has not finished.")]
    Purge {
        /// The instance id
        id: String,
        /// Leave the instance's descendants
        #[arg(long)]
        non_recursive: bool,
    },

    /// Fork a finished instance: keep its steps before --from-step, run the rest live; prints the new id
    #[command(after_help = "Examples:
  wfctl rerun order-7 --from-step 2
  wfctl rerun order-7 --from-step 0 --input '\"book\"' --new-id order-7-retry

Exits 4 if the instance has not finished or the new id is taken. The new instance runs on
whichever runtime serves the store.")]
    Rerun {
        /// The finished instance to fork
        id: String,
        /// The first step (seq, as `show` lists them) to run again; earlier steps are copied
        #[arg(long, value_name = "N")]
        from_step: u32,
        /// The new instance's input, JSON (`-` reads it from stdin); the source's by default
        #[arg(long, value_name = "JSON")]
        input: Option<String>,
        /// The new instance's id (generated by default)
        #[arg(long, value_name = "ID")]
        new_id: Option<String>,
    },

    /// Show every queue of work: per activity and key its queued attempts, per workflow and key its
    /// Pending and Running instances
    #[command(after_help = "WAITING: activity attempts no worker holds, Pending instances; RUNNING: attempts a worker
holds, Running instances. LIMITS and NEXT START (when a full rate next admits a start) come from
the runtime behind an --http router; the database backend has no runtime and leaves them empty.")]
    Queues,

    /// List schedules, or show, pause, resume, trigger or delete one
    #[command(after_help = "Examples:
  wfctl schedules
  wfctl schedules show nightly-report
  wfctl schedules trigger nightly-report")]
    Schedules {
        #[command(subcommand)]
        action: Option<ScheduleCommand>,
    },
}

/// The filters and paging of `list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Only these statuses: repeat it or give a comma list; Dapr's names (RUNNING, CONTINUED_AS_NEW)
    /// or ours (Running), any case
    #[arg(long, value_name = "STATUS", value_delimiter = ',', value_parser = parse_status)]
    pub(crate) status: Vec<RuntimeStatus>,

    /// Only instances of this workflow
    #[arg(long, value_name = "NAME")]
    pub(crate) workflow: Option<String>,

    /// Only children of this instance
    #[arg(long, value_name = "ID")]
    pub(crate) parent: Option<String>,

    /// Created at or after this time: RFC 3339 (2026-01-31T12:00:00Z) or ms since the epoch
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) created_after: Option<i64>,

    /// Created before this time: RFC 3339 or ms since the epoch
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub(crate) created_before: Option<i64>,

    /// Instances per page (1 to 1000)
    #[arg(long, value_name = "N", default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub(crate) limit: u64,

    /// Read every page (following continuation tokens), not just the first
    #[arg(long, conflicts_with = "page_token")]
    pub(crate) all: bool,

    /// Start at this continuation token (printed after a page that has more)
    #[arg(long, value_name = "TOKEN")]
    pub(crate) page_token: Option<String>,

    /// Include inputs, outputs and custom statuses in --json (left out, and not read, by default)
    #[arg(long)]
    pub(crate) payloads: bool,

    /// Newest first (oldest first by default)
    #[arg(long)]
    pub(crate) newest: bool,
}

/// What `schedules` does; listing when none is given.
#[derive(Debug, Subcommand)]
pub(crate) enum ScheduleCommand {
    /// List every schedule (the default)
    List,
    /// Describe a schedule: its spec, its next runs and its recent runs
    Show {
        /// The schedule id
        id: String,
    },
    /// Pause a schedule: it fires nothing until resumed
    Pause {
        /// The schedule id
        id: String,
    },
    /// Resume a paused schedule (ticks missed while paused are not caught up)
    Resume {
        /// The schedule id
        id: String,
    },
    /// Start the schedule's workflow now, outside its ticks; prints the instance id
    Trigger {
        /// The schedule id
        id: String,
    },
    /// Delete a schedule (the instances it started stay)
    Delete {
        /// The schedule id
        id: String,
    },
}

/// A status by Dapr's name (`CONTINUED_AS_NEW`) or ours (`ContinuedAsNew`), any case.
pub(crate) fn parse_status(text: &str) -> Result<RuntimeStatus, String> {
    let plain: String = text.trim().chars().filter(|c| *c != '_' && *c != '-').collect();
    RuntimeStatus::ALL.into_iter().find(|status| status.as_str().eq_ignore_ascii_case(&plain)).ok_or_else(|| {
        let names: Vec<&str> = RuntimeStatus::ALL.into_iter().map(dapr_status_name).collect();
        format!("unknown status {text:?}; expected one of {}", names.join(", "))
    })
}

/// A time as RFC 3339 or ms since the Unix epoch, as ms since the epoch.
pub(crate) fn parse_time(text: &str) -> Result<i64, String> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|time| time.timestamp_millis())
        .map_err(|error| format!("{error}: expected RFC 3339 (2026-01-31T12:00:00Z) or ms since the epoch"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn statuses_by_either_name_in_any_case() {
        assert_eq!(parse_status("RUNNING"), Ok(RuntimeStatus::Running));
        assert_eq!(parse_status("running"), Ok(RuntimeStatus::Running));
        assert_eq!(parse_status("Suspended"), Ok(RuntimeStatus::Suspended));
        assert_eq!(parse_status("CONTINUED_AS_NEW"), Ok(RuntimeStatus::ContinuedAsNew));
        assert_eq!(parse_status("continuedasnew"), Ok(RuntimeStatus::ContinuedAsNew));
        assert!(parse_status("done").unwrap_err().contains("RUNNING"));
    }

    #[test]
    fn times_as_rfc3339_or_millis() {
        assert_eq!(parse_time("1700000000000"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z"), Ok(1500));
        assert_eq!(parse_time("1970-01-01T01:00:00+01:00"), Ok(0));
        assert!(parse_time("yesterday").is_err());
    }
}
