//! The one integration-test binary: every module shares one compile.

mod conformance;
mod crash;
mod durable;
#[cfg(feature = "postgres")]
mod distributed;
mod engine;
mod support;
mod ui;
