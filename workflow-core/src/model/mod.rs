//! The data the engine, the client and the stores share: records, statuses, step kinds, the one
//! payload codec, and time.

pub(crate) mod codec;
mod records;
mod status;
mod step;
pub(crate) mod time;
pub(crate) mod trace;

use std::future::Future;
use std::pin::Pin;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use records::{
    EventRecord, InstanceRecord, JournalRecord, ScheduleChange, ScheduleFire, ScheduleRecord, TaskOutcome, TaskRecord,
};
pub use status::{RecordStatus, RuntimeStatus};
pub use step::StepKind;

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// A wake-up time that never comes by itself (an evicted instance waiting for an event).
pub const NEVER: Millis = Millis::MAX;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A value that can cross a durable boundary: an input or output of a workflow or activity.
///
/// Implemented for every `Serialize + DeserializeOwned + Send + 'static` type. The hidden
/// `PayloadCheck` supertrait (implemented for every `Payload`) only shapes the compile error for a
/// type that is not one.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a workflow or activity input or output",
    label = "this type must be `Serialize + DeserializeOwned + Send + 'static`",
    note = "derive `serde::Serialize` and `serde::Deserialize` for it, and use owned fields (no borrowed references)"
)]
pub trait Payload:
    Serialize + DeserializeOwned + Send + 'static + crate::__private::PayloadCheck<Checked: Send>
{
}

// Not recommended: an unmet `Payload` is reported as itself (the message above), not as the
// unmet `Serialize` or `Deserialize` bound of this impl, which rustc follows with a list of the
// types that implement it (a list that changes with the dependencies' enabled features).
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned + Send + 'static> Payload for T {}
