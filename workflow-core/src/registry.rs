//! Workflow and activity definitions (implemented by the macros) and their type-erased registry.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::context::{ActivityContext, WorkflowContext};
use crate::error::{ActivityError, WorkflowError};
use crate::retry::RetryPolicy;

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

/// Per-attempt limits of an activity. A timed-out attempt counts as a failed attempt under the
/// retry policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActivityOptions {
    /// The longest one attempt may run.
    pub start_to_close: Option<std::time::Duration>,
    /// The longest an attempt may go without calling [`ActivityContext::heartbeat`].
    pub heartbeat_timeout: Option<std::time::Duration>,
}

/// An activity: a step of a workflow, run at least once, its outcome journaled.
///
/// `#[activity]` implements this for a generated unit struct `<fn name>::Activity`.
pub trait ActivityDef: Send + Sync + 'static {
    /// The input type.
    type Input: Payload;
    /// The output type.
    type Output: Payload;
    /// The registered name (the function's name).
    const NAME: &'static str;
    /// The retry policy used when a call does not override it.
    fn retry_policy() -> RetryPolicy {
        RetryPolicy::default()
    }
    /// Timeouts used when a call does not override them.
    fn options() -> ActivityOptions {
        ActivityOptions::default()
    }
    /// Runs one attempt.
    fn run(ctx: ActivityContext, input: Self::Input) -> BoxFuture<'static, Result<Self::Output, ActivityError>>;
}

/// A workflow: a deterministic async function whose durable operations are journaled.
///
/// `#[workflow]` implements this for a generated unit struct `<fn name>::Workflow`.
pub trait WorkflowDef: Send + Sync + 'static {
    /// The input type.
    type Input: Payload;
    /// The output type.
    type Output: Payload;
    /// The registered name (the function's name).
    const NAME: &'static str;
    /// Runs (or replays) the workflow body.
    fn run(ctx: WorkflowContext, input: Self::Input) -> BoxFuture<'static, Result<Self::Output, WorkflowError>>;
}

type ErasedActivity =
    Arc<dyn Fn(ActivityContext, String) -> BoxFuture<'static, Result<String, ActivityError>> + Send + Sync>;
type ErasedWorkflow =
    Arc<dyn Fn(WorkflowContext, String) -> BoxFuture<'static, Result<String, WorkflowError>> + Send + Sync>;

/// A registered activity, called by name with JSON.
#[derive(Clone)]
pub(crate) struct ActivityEntry {
    pub(crate) run: ErasedActivity,
}

/// A registered workflow, started by name with JSON.
#[derive(Clone)]
pub(crate) struct WorkflowEntry {
    pub(crate) run: ErasedWorkflow,
    pub(crate) check_input: fn(&str) -> Result<(), String>,
}

/// Everything a runtime can run, by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    pub(crate) workflows: HashMap<String, WorkflowEntry>,
    pub(crate) activities: HashMap<String, ActivityEntry>,
}

fn check_input<T: DeserializeOwned>(json: &str) -> Result<(), String> {
    serde_json::from_str::<T>(json).map(drop).map_err(|e| e.to_string())
}

impl Registry {
    pub(crate) fn add_activity<A: ActivityDef>(&mut self) -> Result<(), String> {
        let run: ErasedActivity = Arc::new(|ctx, input: String| {
            Box::pin(async move {
                let input: A::Input = serde_json::from_str(&input).map_err(|e| {
                    ActivityError::non_retryable(format!(
                        "input does not deserialize into the activity's input type: {e}"
                    ))
                })?;
                let output = A::run(ctx, input).await?;
                serde_json::to_string(&output)
                    .map_err(|e| ActivityError::non_retryable(format!("output does not serialize: {e}")))
            })
        });
        if self.activities.insert(A::NAME.to_owned(), ActivityEntry { run }).is_some() {
            return Err(format!("activity `{}` is registered twice", A::NAME));
        }
        Ok(())
    }

    pub(crate) fn add_workflow<W: WorkflowDef>(&mut self) -> Result<(), String> {
        let run: ErasedWorkflow = Arc::new(|ctx, input: String| {
            Box::pin(async move {
                let input: W::Input = serde_json::from_str(&input).map_err(|e| {
                    WorkflowError::Serialization(format!(
                        "input does not deserialize into the workflow's input type: {e}"
                    ))
                })?;
                let output = W::run(ctx, input).await?;
                serde_json::to_string(&output)
                    .map_err(|e| WorkflowError::Serialization(format!("output does not serialize: {e}")))
            })
        });
        let entry = WorkflowEntry { run, check_input: check_input::<W::Input> };
        if self.workflows.insert(W::NAME.to_owned(), entry).is_some() {
            return Err(format!("workflow `{}` is registered twice", W::NAME));
        }
        Ok(())
    }
}
