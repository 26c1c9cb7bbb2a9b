//! The data the engine, the client and the stores share: records, statuses, step kinds, the one
//! payload codec, and time.

mod records;
mod status;
mod step;
pub(crate) mod time;

pub use records::{EventRecord, InstanceRecord, JournalRecord, TaskOutcome, TaskRecord};
pub use status::{RecordStatus, RuntimeStatus};
pub use step::StepKind;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A wake-up time that never comes by itself (an evicted instance waiting for an event).
pub const NEVER: Millis = Millis::MAX;
