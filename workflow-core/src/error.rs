//! Error types: what an activity reports, what a workflow sees, what the client and store return.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::StoreError;

/// The error an activity returns. Any `std::error::Error` converts into it with `?`.
///
/// A retryable error (the default) is retried under the activity's [`RetryPolicy`](crate::RetryPolicy);
/// a non-retryable one fails the call at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityError {
    message: String,
    #[serde(default)]
    non_retryable: bool,
}

impl ActivityError {
    /// A retryable error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), non_retryable: false }
    }

    /// An error that is not retried: the call fails at once with this message.
    pub fn non_retryable(message: impl fmt::Display) -> Self {
        Self { message: message.to_string(), non_retryable: true }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the retry policy may try the activity again after this error.
    pub fn is_retryable(&self) -> bool {
        !self.non_retryable
    }
}

impl fmt::Display for ActivityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for ActivityError {
    fn from(error: E) -> Self {
        Self::new(error)
    }
}

/// An error inside a workflow: what a durable operation returns, and what a workflow may return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WorkflowError {
    /// An activity failed after its last attempt (or with a non-retryable error).
    #[error("activity `{activity}` failed after {attempts} attempt(s): {message}")]
    Activity {
        /// The activity's name.
        activity: String,
        /// The activity's own error message.
        message: String,
        /// How many attempts ran.
        attempts: u32,
    },
    /// A child workflow ended Failed or Terminated.
    #[error("child workflow `{workflow}` (instance `{instance_id}`) failed: {message}")]
    Child {
        /// The child's workflow name.
        workflow: String,
        /// The child's instance id.
        instance_id: String,
        /// The child's failure message.
        message: String,
    },
    /// A durable wait ran out of time (an event wait with a timeout).
    #[error("timed out waiting for {operation}")]
    Timeout {
        /// What was waited for, such as "event `approval`".
        operation: String,
    },
    /// A value could not be serialized to, or deserialized from, JSON.
    #[error("serialization error: {0}")]
    Serialization(String),
    /// An error raised by the workflow's own code.
    #[error("{0}")]
    Failed(String),
    /// A payload is over the runtime's limit ([`Limits::max_payload_bytes`](crate::Limits::max_payload_bytes)):
    /// an activity's or a child's input, a continue-as-new input, or (failing the instance) its
    /// output or custom status.
    #[error("{what} is {size} bytes, over the payload limit of {limit} bytes")]
    PayloadTooLarge {
        /// Which payload, such as "the input of activity `charge`".
        what: String,
        /// Its size in bytes (JSON text).
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
}

impl WorkflowError {
    /// A workflow failure with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        Self::Failed(message.to_string())
    }

    /// The message an activity failure carries (the activity's own message), or the error's text.
    pub fn message(&self) -> String {
        match self {
            Self::Activity { message, .. } | Self::Child { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }

    /// A short name of the error's kind, stored as the instance's failure type.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Activity { .. } => "ActivityFailed",
            Self::Child { .. } => "ChildWorkflowFailed",
            Self::Timeout { .. } => "Timeout",
            Self::Serialization(_) => "SerializationError",
            Self::Failed(_) => "WorkflowFailed",
            Self::PayloadTooLarge { .. } => "PayloadTooLarge",
        }
    }
}

impl From<String> for WorkflowError {
    fn from(message: String) -> Self {
        Self::Failed(message)
    }
}

impl From<&str> for WorkflowError {
    fn from(message: &str) -> Self {
        Self::Failed(message.to_owned())
    }
}

impl From<ActivityError> for WorkflowError {
    fn from(error: ActivityError) -> Self {
        Self::Failed(error.message)
    }
}

/// How an instance failed, as stored in its record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureDetails {
    /// The kind of failure (`ActivityFailed`, `WorkflowFailed`, `NonDeterminism`, ...).
    pub error_type: String,
    /// The human-readable message.
    pub message: String,
}

impl FailureDetails {
    /// Reads stored failure details; text that is not the JSON form is kept as the message.
    pub fn parse(stored: &str) -> Self {
        crate::model::codec::StoredFailure::read(stored).into()
    }

    /// The stored (JSON) form.
    pub fn to_stored(&self) -> String {
        crate::model::codec::StoredFailure::from(self).encode()
    }
}

impl fmt::Display for FailureDetails {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

/// The errors the client and runtime return.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No workflow of this name is registered.
    #[error("no workflow named `{0}` is registered with this runtime")]
    UnknownWorkflow(String),
    /// The input does not deserialize into the workflow's input type.
    #[error("invalid input for workflow `{workflow}`: {message}")]
    InvalidInput {
        /// The workflow's name.
        workflow: String,
        /// What the deserializer said.
        message: String,
    },
    /// The instance id is not valid.
    #[error("invalid instance id `{id}`: {reason}")]
    InvalidInstanceId {
        /// The id given.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An instance with this id already exists.
    #[error("an instance with id `{0}` already exists")]
    InstanceExists(String),
    /// The instance has finished; it takes no more events.
    #[error("instance `{0}` has already finished")]
    InstanceFinished(String),
    /// No instance with this id exists.
    #[error("no instance with id `{0}` exists")]
    InstanceNotFound(String),
    /// A schedule with this id already exists.
    #[error("a schedule with id `{0}` already exists")]
    ScheduleExists(String),
    /// No schedule with this id exists.
    #[error("no schedule with id `{0}` exists")]
    ScheduleNotFound(String),
    /// Resume was asked of an instance that is not suspended.
    #[error("instance `{id}` is not suspended (it is {status:?})")]
    NotSuspended {
        /// The instance id.
        id: String,
        /// Its status.
        status: crate::RuntimeStatus,
    },
    /// The operation needs a finished instance (purge, rerun), and this one has not finished.
    #[error("instance `{id}` has not finished (it is {status:?})")]
    NotFinished {
        /// The instance id.
        id: String,
        /// Its status.
        status: crate::RuntimeStatus,
    },
    /// An argument is not valid (a page size, a continuation token, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The instance ended Failed.
    #[error("instance `{instance_id}` failed: {details}")]
    Failed {
        /// The instance id.
        instance_id: String,
        /// The stored failure.
        details: FailureDetails,
    },
    /// The instance ended in a terminal status other than Completed or Failed.
    #[error("instance `{instance_id}` ended {status:?} without a result")]
    NoResult {
        /// The instance id.
        instance_id: String,
        /// Its status.
        status: crate::RuntimeStatus,
    },
    /// Waiting for the result took longer than the timeout given.
    #[error("timed out waiting for instance `{0}`")]
    Timeout(String),
    /// A value did not serialize or deserialize.
    #[error("serialization error: {0}")]
    Serialization(#[from] serde_json::Error),
    /// The runtime has been shut down.
    #[error("the runtime has shut down")]
    ShutDown,
    /// The runtime's configuration is not valid.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    /// A payload is over the limit ([`Limits::max_payload_bytes`](crate::Limits::max_payload_bytes)):
    /// nothing was stored.
    #[error("{what} is {size} bytes, over the payload limit of {limit} bytes")]
    PayloadTooLarge {
        /// Which payload, such as "the input of workflow `place_order`".
        what: String,
        /// Its size in bytes (JSON text).
        size: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The instance's inbox is full ([`Limits::max_inbox_events`](crate::Limits::max_inbox_events),
    /// [`Limits::max_inbox_bytes`](crate::Limits::max_inbox_bytes)): the event was not stored. It
    /// takes more once its workflow has taken some of the events it holds.
    #[error(
        "the inbox of instance `{instance_id}` is full: it holds {events} event(s) of {bytes} bytes, \
         the limit is {max_events} event(s) and {max_bytes} bytes"
    )]
    InboxFull {
        /// The instance id.
        instance_id: String,
        /// The events it holds.
        events: u64,
        /// Their payloads' bytes.
        bytes: u64,
        /// The most events it may hold.
        max_events: u64,
        /// The most payload bytes it may hold.
        max_bytes: u64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The text a panic carries (`panic!("...")` gives a `&str` or a `String`).
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
