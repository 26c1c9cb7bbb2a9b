//! `#[workflow]` and `#[activity]`: parse the function, check its signature, expand it into a
//! module of typed helpers next to the unchanged function. No runtime logic lives here.
//!
//! Set `WORKFLOW_MACROS_DEBUG=1` while building to print every expansion.

use proc_macro::TokenStream;

mod attr;
mod errors;
mod expand;
mod signature;

/// Marks an `async fn(ctx: WorkflowContext, input: I) -> Result<O, E>` as a workflow.
///
/// Generates a module of the same name with `Workflow` (the definition to register),
/// `start(&client, input)`, `start_with_id(&client, id, input)`, `call(&ctx, input)` (as a
/// child), `fan_out(&ctx, inputs)` and `continue_as_new(&ctx, input)`.
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
/// any `E: Into<ActivityError>`.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::entry(expand::Kind::Activity, args.into(), item.into()).into()
}
