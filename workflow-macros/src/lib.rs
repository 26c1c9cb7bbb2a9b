//! `#[workflow]` and `#[activity]`: parse the function, check its signature, expand it into a
//! module of typed helpers next to the unchanged function. No runtime logic lives here.
//!
//! Set `WORKFLOW_MACROS_DEBUG=1` while building to print every expansion.

use proc_macro::TokenStream;

mod attr;
mod expand;
mod signature;

/// Marks an `async fn(ctx: WorkflowContext, input: I) -> Result<O, E>` as a workflow.
///
/// Generates a module of the same name with `Workflow` (the definition to register),
/// `start(&client, input)` and `start_with_id(&client, id, input)`.
/// Arguments: `name = "..."` (the registered name; the function's by default) and
/// `crate = "path"` (where the `workflow` crate is; `::workflow` by default).
#[proc_macro_attribute]
pub fn workflow(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::entry(expand::Kind::Workflow, args.into(), item.into()).into()
}

/// Marks an `async fn(ctx: ActivityContext, input: I) -> Result<O, E>` as an activity.
///
/// Generates a module of the same name with `Activity` (the definition to register),
/// `call(&ctx, input)` and `fan_out(&ctx, inputs)`. Arguments: `retry(max_attempts = 10,
/// first_interval = "1m", backoff = 2.0, max_interval = "1h", timeout = "2h")`, `name = "..."`,
/// `crate = "path"`.
#[proc_macro_attribute]
pub fn activity(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::entry(expand::Kind::Activity, args.into(), item.into()).into()
}
