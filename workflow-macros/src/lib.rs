//! `#[workflow]` and `#[activity]`: parse the function, check its signature, expand it into a
//! module of typed helpers next to the unchanged function. No runtime logic lives here.
//!
//! Set `WORKFLOW_MACROS_DEBUG=1` while building to print every expansion.

use proc_macro::TokenStream;

mod attr;
mod determinism;
mod errors;
mod expand;
mod signature;

/// Marks an `async fn(ctx: WorkflowContext, input: I) -> Result<O, E>` as a workflow.
///
/// Generates a module of the same name with `Workflow` (the definition to register),
/// `start(&client, input)` (a builder: `.id(..)`, `.reuse(..)`, then `.await` for a typed
/// handle), `call(&ctx, input)` (as a child), `fan_out(&ctx, inputs)` and
/// `continue_as_new(&ctx, input)`.
/// Arguments: `name = "..."` (the registered name; the function's by default) and
/// `crate = "path"` (where the `workflow` crate is; `::workflow` by default).
///
/// # Signature
///
/// The function is `async`, takes `ctx: WorkflowContext` first and at most one input after it
/// (several values go in a struct or a tuple), and returns `Result<O, E>` written out (not an
/// alias such as `io::Result<O>`) with `E: Into<WorkflowError>`. No `self`, generics, lifetimes
/// or borrowed types: the input and `O` are stored as JSON, so they must be
/// `Serialize + DeserializeOwned + Send + 'static`, and rustc says so at the type.
///
/// # Determinism
///
/// A workflow is replayed from its journal, so its body must take the same decisions every time.
/// Calls that a replay cannot reproduce are compile errors that name what to write instead:
///
/// | In the body | Write instead |
/// |---|---|
/// | `SystemTime::now`, `Instant::now`, `.elapsed()`, `chrono::Utc::now`, `Local::now`, `OffsetDateTime::now_utc` | `ctx.now()` |
/// | `tokio::time::sleep`, `std::thread::sleep` | `ctx.sleep(duration)` |
/// | `tokio::time::sleep_until` | `ctx.sleep_until(time)` |
/// | `tokio::time::interval` | a loop over `ctx.sleep(period)` |
/// | `tokio::time::timeout` | `ctx.race(operation, ctx.sleep(duration))` |
/// | `tokio::select!`, `futures::select!` | `ctx.race(a, b)` |
/// | `tokio::spawn`, `tokio::task::spawn*`, `std::thread::spawn` | `my_activity::fan_out(&ctx, inputs)`, `ctx.race(a, b)`, `futures::join!(a.into_future(), b.into_future())` |
/// | `rand::random`, `rand::thread_rng`, `rand::rng`, `OsRng`, `from_entropy` | `ctx.random()` |
/// | `Uuid::new_v4`, `Uuid::now_v7` | `ctx.uuid()` |
/// | `std::env::var`, `env::var_os`, `env::args` | read it in an activity, or pass it as input |
/// | `std::fs::*`, `tokio::fs::*`, `File::open`, `reqwest::*`, `sqlx::*`, sockets | an `#[activity]` |
///
/// What the check can see, and what it cannot:
///
/// - Paths are matched by their segments as written, so `std::time::SystemTime::now`,
///   `time::SystemTime::now` and `SystemTime::now` are all caught, inside closures and `async`
///   blocks too, and so is a path used as a value (`let read = SystemTime::now;`).
/// - `use` items written inside the body are followed, renames and globs included:
///   `use std::time::SystemTime as Clock;` makes `Clock::now()` an error, and
///   `use tokio::time::*;` makes a bare `sleep(d)` one.
/// - `use` items outside the function are invisible to an attribute macro. A bare `sleep(d)`,
///   `spawn(f)`, `random()` or `interval(p)` imported at the top of the module is therefore not
///   caught (it could as well be your own function); neither is `Clock::now()` after a
///   module-level `use std::time::SystemTime as Clock;`. Write such calls with their module
///   (`tokio::time::sleep`) or import them inside the body to have them checked.
/// - Arguments of function-like macros are checked when they parse as a comma-separated list of
///   expressions (`println!`, `format!`, `assert!`, `vec![a, b]`, `futures::join!`, ...). Other
///   macro bodies (`tracing::info!(field = %x)`, your own macros) are not looked into.
/// - Matching is by name, not by type: your own `fs::read` or `Clock::now` after
///   `use my_clock as Clock;` in the body is reported too. Rename it, or opt out as below.
/// - Only the body is checked, with the functions and closures written inside it; functions it
///   calls elsewhere are not. Method calls other than `.elapsed()` are not judged, since their
///   receiver's type is unknown to the macro.
///
/// # Opting out
///
/// For a justified exception, such as timing a step for a log line that never feeds a decision,
/// put `#[nondeterministic(reason = "...")]` on the statement (a `let`, an expression statement,
/// a block) or match arm. The check skips it, and the attribute is removed from the emitted
/// function. The reason is required and is there for the reader. (This example is compiled by
/// `tests/ui/pass/opt_out.rs`; a doc test here could not reach the `workflow` crate.)
///
/// ```ignore
/// use workflow::prelude::*;
///
/// #[activity]
/// async fn charge(_ctx: ActivityContext, cents: u64) -> Result<u64, ActivityError> {
///     Ok(cents)
/// }
///
/// #[workflow]
/// async fn checkout(ctx: WorkflowContext, cents: u64) -> Result<u64, WorkflowError> {
///     #[nondeterministic(reason = "only logged, never decides anything")]
///     let started = std::time::Instant::now();
///     let charged = charge::call(&ctx, cents).await?;
///     #[nondeterministic(reason = "only logged, never decides anything")]
///     println!("charged in {:?}", started.elapsed());
///     Ok(charged)
/// }
/// ```
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::entry(expand::Kind::Workflow, args.into(), item.into()).into()
}

/// Marks an `async fn(ctx: ActivityContext, input: I) -> Result<O, E>` as an activity.
///
/// Generates a module of the same name with `Activity` (the definition to register),
/// `call(&ctx, input)` and `fan_out(&ctx, inputs)`. Arguments: `retry(max_attempts = 10,
/// first_interval = "1m", backoff = 2.0, max_interval = "1h", timeout = "2h")`,
/// `start_to_close = "30s"`, `heartbeat_timeout = "10s"`, `name = "..."`, `crate = "path"`.
/// Durations are written like `"500ms"`, `"30s"`, `"1m"`, `"2h"`, `"1d"` or `"1h30m"`.
///
/// The signature rules are those of [`macro@workflow`], with `ctx: ActivityContext` first and
/// any `E: Into<ActivityError>`. The body is not checked for determinism: an activity runs once
/// per attempt and its result is recorded, so it is where the clock, randomness and I/O belong.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::entry(expand::Kind::Activity, args.into(), item.into()).into()
}
