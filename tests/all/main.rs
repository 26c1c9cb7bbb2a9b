//! The one integration-test binary: every module shares one compile.

mod conformance;
mod crash;
mod durable;
mod engine;
mod support;
mod ui;
