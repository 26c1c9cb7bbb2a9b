//! Workers: the [`Runtime`] and its builder, the engine state they share (private to this
//! module), the driver that runs, evicts and finishes an instance, the background loops, the
//! group committer, clocks and the registry.
//!
//! - `runtime.rs`: `Runtime`, `RuntimeBuilder`; `engine.rs`: the shared state and its rules;
//! - `driver.rs`: one instance's run; `loops.rs`: claims, renewals, retention, wake-ups;
//! - `scheduler.rs`: firing due schedules;
//! - `committer.rs`: group commit;
//! - `clock.rs`: system and virtual clocks; `registry.rs`: workflows and activities by name.

mod clock;
mod committer;
mod driver;
mod engine;
mod loops;
mod registry;
mod runtime;
mod scheduler;

pub use clock::{Clock, SystemClock, VirtualClock};
pub(crate) use committer::Committer;
pub(crate) use engine::Engine;
pub(crate) use registry::ActivityEntry;
pub use runtime::{Runtime, RuntimeBuilder};
