//! What can go wrong, as one line for stderr and an exit code (the table in `EXIT_CODES`).

use std::fmt;

use workflow::{Error, StoreError};

/// The exit codes `wfctl` documents (`--help` and the README).
pub(crate) const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  any other failure (an invalid id, a server error, a route the router does not have, ...)
  2  usage error (bad arguments or options, a payload that is not JSON, no backend chosen)
  3  not found: no instance or schedule with that id
  4  wrong state or conflict: the instance has finished, is not suspended, has not finished,
     the id is taken, the inbox is full
  5  cannot reach or open the store or the server: a bad URL, a refused connection, a missing
     SQLite file (never created by wfctl)

Errors are one line on stderr, starting with `wfctl:`.";

/// How `wfctl` exits when a command fails (success is 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Anything not listed below.
    Failure = 1,
    /// Bad arguments (clap's own usage errors exit 2 as well).
    Usage = 2,
    /// No instance or schedule with that id.
    NotFound = 3,
    /// The instance or schedule is in the wrong state, or an id is taken.
    Conflict = 4,
    /// The store or the server cannot be opened or reached.
    Unreachable = 5,
}

/// A failed command: the exit code and the one-line message printed after `wfctl: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CliError {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl CliError {
    pub(crate) fn new(exit: Exit, message: impl fmt::Display) -> Self {
        Self { exit, message: message.to_string() }
    }

    pub(crate) fn usage(message: impl fmt::Display) -> Self {
        Self::new(Exit::Usage, message)
    }

    pub(crate) fn failure(message: impl fmt::Display) -> Self {
        Self::new(Exit::Failure, message)
    }

    pub(crate) fn unreachable(message: impl fmt::Display) -> Self {
        Self::new(Exit::Unreachable, message)
    }

    /// The process exit code.
    pub(crate) fn code(&self) -> u8 {
        self.exit as u8
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // One line, whatever the message holds.
        let line: String = self.message.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        f.write_str(line.trim())
    }
}

/// The exit code of a library error: the same as the HTTP router's status for it (404 is 3, 409
/// and 429 are 4), and 5 for a store that failed.
pub(crate) fn exit_of(error: &Error) -> Exit {
    match error {
        Error::InstanceNotFound(_) | Error::ScheduleNotFound(_) => Exit::NotFound,
        Error::InstanceExists(_)
        | Error::ScheduleExists(_)
        | Error::InstanceFinished(_)
        | Error::NotSuspended { .. }
        | Error::NotFinished { .. }
        | Error::InboxFull { .. } => Exit::Conflict,
        Error::Store(StoreError::Conflict { status: None, .. }) => Exit::NotFound,
        Error::Store(StoreError::Conflict { status: Some(_), .. }) => Exit::Conflict,
        Error::Store(StoreError::Backend(_) | StoreError::Config(_)) => Exit::Unreachable,
        _ => Exit::Failure,
    }
}

impl From<Error> for CliError {
    fn from(error: Error) -> Self {
        Self::new(exit_of(&error), error)
    }
}
