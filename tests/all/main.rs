//! The one integration-test binary: every module shares one compile.

mod conformance;
mod crash;
#[cfg(feature = "postgres")]
mod distributed;
mod durable;
mod engine;
#[cfg(feature = "http")]
mod http;
mod limits;
mod manage;
#[cfg(feature = "postgres")]
mod pg_restart;
mod spans;
mod support;
mod takeover;
mod tasks;
mod ui;
mod waiters;
