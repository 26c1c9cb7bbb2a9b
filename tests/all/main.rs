//! The one integration-test binary: every module shares one compile.

#[cfg(feature = "postgres")]
mod assigned;
mod conformance;
#[cfg(feature = "console")]
mod console;
mod corrupt;
mod crash;
#[cfg(feature = "postgres")]
mod distributed;
mod durable;
mod engine;
mod fencing;
mod flow;
#[cfg(feature = "postgres")]
mod flow_processes;
#[cfg(feature = "http")]
mod http;
mod limits;
mod manage;
mod metrics;
#[cfg(feature = "postgres")]
mod pg_restart;
mod retention;
#[cfg(feature = "postgres")]
mod schedule_processes;
mod schedules;
mod spans;
mod support;
mod takeover;
mod tasks;
mod ui;
mod waiters;
