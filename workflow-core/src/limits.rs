//! What the engine bounds, and by how much: the size of one payload and the inbox of one
//! instance. One [`Limits`] per runtime (or per client without a runtime); each check is made
//! where the payload enters, so nothing over a limit is ever stored.

/// Bounds on what one instance may hold: set them with
/// [`RuntimeBuilder::limits`](crate::RuntimeBuilder::limits) or [`Client::with_limits`](crate::Client::with_limits).
///
/// ```
/// use workflow_core::Limits;
///
/// let limits = Limits::default().max_payload_bytes(4 << 20).max_inbox_events(1_000);
/// assert_eq!(limits.payload_bytes(), 4 << 20);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    payload_bytes: usize,
    inbox_events: u64,
    inbox_bytes: u64,
}

/// The default largest payload: 2 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 2 << 20;
/// The default most events buffered for one instance: 10,000.
pub const DEFAULT_MAX_INBOX_EVENTS: u64 = 10_000;
/// The default most payload bytes buffered for one instance: 64 MiB.
pub const DEFAULT_MAX_INBOX_BYTES: u64 = 64 << 20;

impl Default for Limits {
    fn default() -> Self {
        Self {
            payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            inbox_events: DEFAULT_MAX_INBOX_EVENTS,
            inbox_bytes: DEFAULT_MAX_INBOX_BYTES,
        }
    }
}

impl Limits {
    /// The largest payload (JSON text, in bytes) of a workflow input or output, an activity input
    /// or result, an event or a custom status ([`DEFAULT_MAX_PAYLOAD_BYTES`] by default).
    ///
    /// A start or a raise over it fails with [`Error::PayloadTooLarge`](crate::Error::PayloadTooLarge);
    /// inside a workflow, an activity or child call whose input is over it returns
    /// [`WorkflowError::PayloadTooLarge`](crate::WorkflowError::PayloadTooLarge); an activity
    /// result over it fails the call at once (not retried: a rerun would most likely return as
    /// much); a workflow output or a custom status over it fails the instance, with error type
    /// `PayloadTooLarge`.
    pub fn max_payload_bytes(mut self, bytes: usize) -> Self {
        self.payload_bytes = bytes;
        self
    }

    /// The most events buffered (raised and not yet taken by a wait) for one instance
    /// ([`DEFAULT_MAX_INBOX_EVENTS`] by default). A raise that would pass it fails with
    /// [`Error::InboxFull`](crate::Error::InboxFull) and stores nothing. Events of every name
    /// count, including those no wait ever takes (they also stay across continue-as-new).
    pub fn max_inbox_events(mut self, events: u64) -> Self {
        self.inbox_events = events;
        self
    }

    /// The most payload bytes buffered for one instance ([`DEFAULT_MAX_INBOX_BYTES`] by
    /// default), checked as [`Self::max_inbox_events`] is.
    pub fn max_inbox_bytes(mut self, bytes: u64) -> Self {
        self.inbox_bytes = bytes;
        self
    }

    /// The largest payload, in bytes.
    pub fn payload_bytes(&self) -> usize {
        self.payload_bytes
    }

    /// The most events buffered for one instance.
    pub fn inbox_events(&self) -> u64 {
        self.inbox_events
    }

    /// The most payload bytes buffered for one instance.
    pub fn inbox_bytes(&self) -> u64 {
        self.inbox_bytes
    }

    /// `Err` with the payload's size if `payload` is over the payload limit.
    pub(crate) fn check_payload(&self, payload: &str) -> Result<(), PayloadSize> {
        if payload.len() > self.payload_bytes {
            return Err(PayloadSize { size: payload.len(), limit: self.payload_bytes });
        }
        Ok(())
    }
}

/// A payload over the limit: its size and the limit, for the error each caller makes of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PayloadSize {
    pub(crate) size: usize,
    pub(crate) limit: usize,
}

impl PayloadSize {
    /// The client's error for this payload (`what`: "the input of workflow `x`", ...).
    pub(crate) fn error(self, what: impl Into<String>) -> crate::Error {
        crate::Error::PayloadTooLarge { what: what.into(), size: self.size, limit: self.limit }
    }

    /// The workflow's error for this payload.
    pub(crate) fn workflow_error(self, what: impl Into<String>) -> crate::WorkflowError {
        crate::WorkflowError::PayloadTooLarge { what: what.into(), size: self.size, limit: self.limit }
    }
}
