//! Statuses: of an instance ([`RuntimeStatus`], Dapr's set) and of a journal record.

use serde::{Deserialize, Serialize};

/// The runtime status of an instance (Dapr's set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuntimeStatus {
    /// Created, not yet started by a worker.
    Pending,
    /// Started; may be waiting on a step.
    Running,
    /// Suspended by a client: runs no new step.
    Suspended,
    /// Finished with an output.
    Completed,
    /// Finished with an error.
    Failed,
    /// Stopped by a client.
    Terminated,
    /// Restarted with new input (an intermediate status).
    ContinuedAsNew,
}

impl RuntimeStatus {
    /// All statuses, in declaration order.
    pub const ALL: [RuntimeStatus; 7] = [
        Self::Pending,
        Self::Running,
        Self::Suspended,
        Self::Completed,
        Self::Failed,
        Self::Terminated,
        Self::ContinuedAsNew,
    ];

    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Suspended => "Suspended",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
            Self::Terminated => "Terminated",
            Self::ContinuedAsNew => "ContinuedAsNew",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == name)
    }

    /// Whether the instance has finished for good.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Terminated)
    }
}

/// The state of one journal record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordStatus {
    /// Started and waiting for its outcome (a timer, an event wait, a child); `due_at` holds
    /// its deadline if it has one.
    Scheduled,
    /// An attempt failed and another is due at `due_at`.
    Retrying,
    /// The operation succeeded; `payload` holds its output.
    Completed,
    /// The operation failed for good; `payload` holds its error.
    Failed,
}

impl RecordStatus {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Retrying => "Retrying",
            Self::Completed => "Completed",
            Self::Failed => "Failed",
        }
    }

    /// Parses a stored name.
    pub fn parse(name: &str) -> Option<Self> {
        [Self::Scheduled, Self::Retrying, Self::Completed, Self::Failed].into_iter().find(|s| s.as_str() == name)
    }
}
