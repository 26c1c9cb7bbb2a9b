//! The type-erased registry: every workflow and activity a runtime can run, by name, with JSON in
//! and out.

use std::collections::HashMap;
use std::sync::Arc;

use crate::activity::{ActivityContext, ActivityDef};
use crate::error::{ActivityError, WorkflowError};
use crate::model::BoxFuture;
use crate::workflow::{WorkflowContext, WorkflowDef};

type ErasedActivity =
    Arc<dyn Fn(ActivityContext, String) -> BoxFuture<'static, Result<String, ActivityError>> + Send + Sync>;
type ErasedWorkflow =
    Arc<dyn Fn(WorkflowContext, String) -> BoxFuture<'static, Result<String, WorkflowError>> + Send + Sync>;

/// A registered activity, called by name with JSON.
#[derive(Clone)]
pub(crate) struct ActivityEntry {
    pub(crate) run: ErasedActivity,
    /// The most of its attempts that run at once per concurrency key, across workers.
    pub(crate) concurrency: Option<u32>,
    /// The most of its attempts that start per period per concurrency key, across workers.
    pub(crate) rate: Option<crate::RateLimit>,
    /// Its metrics' handles (shared by the entry's clones).
    pub(crate) metrics: std::sync::Arc<crate::metrics::ActivityMetrics>,
}

/// A registered workflow, started by name with JSON.
#[derive(Clone)]
pub(crate) struct WorkflowEntry {
    pub(crate) run: ErasedWorkflow,
    /// Decodes an input (JSON) into the workflow's input type and returns its concurrency key.
    pub(crate) input_key: fn(&str) -> Result<String, String>,
    /// The priority its instances start with unless a start sets one.
    pub(crate) priority: i32,
    /// The most of its instances that run at once, across workers.
    pub(crate) concurrency: Option<u32>,
    /// The most of its instances that start per period, across workers.
    pub(crate) rate: Option<crate::RateLimit>,
    /// Whether the cap and the rate count per concurrency key.
    pub(crate) keyed: bool,
    /// Its metrics' handles (shared by the entry's clones).
    pub(crate) metrics: std::sync::Arc<crate::metrics::WorkflowMetrics>,
}

/// Everything a runtime can run, by name.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    workflows: HashMap<String, WorkflowEntry>,
    activities: HashMap<String, ActivityEntry>,
}

fn input_key<W: WorkflowDef>(json: &str) -> Result<String, String> {
    let input: W::Input = serde_json::from_str(json).map_err(|e| e.to_string())?;
    Ok(W::concurrency_key(&input))
}

impl Registry {
    /// The workflow registered under `name`.
    pub(crate) fn workflow(&self, name: &str) -> Option<WorkflowEntry> {
        self.workflows.get(name).cloned()
    }

    /// The activity registered under `name`.
    pub(crate) fn activity(&self, name: &str) -> Option<ActivityEntry> {
        self.activities.get(name).cloned()
    }

    pub(crate) fn has_activity(&self, name: &str) -> bool {
        self.activities.contains_key(name)
    }

    pub(crate) fn workflow_names(&self) -> impl Iterator<Item = &str> {
        self.workflows.keys().map(String::as_str)
    }

    pub(crate) fn activity_names(&self) -> impl Iterator<Item = &str> {
        self.activities.keys().map(String::as_str)
    }

    /// Checks `input` (JSON) against workflow `name`'s input type; returns the concurrency key
    /// an instance started with it has.
    pub(crate) fn input_key(&self, name: &str, input: &str) -> Result<String, crate::error::Error> {
        let entry = self.workflows.get(name).ok_or_else(|| crate::error::Error::UnknownWorkflow(name.to_owned()))?;
        (entry.input_key)(input)
            .map_err(|message| crate::error::Error::InvalidInput { workflow: name.to_owned(), message })
    }

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
        if self
            .activities
            .insert(
                A::NAME.to_owned(),
                ActivityEntry { run, concurrency: A::CONCURRENCY, rate: A::RATE, metrics: Default::default() },
            )
            .is_some()
        {
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
                let limits = *ctx.engine().limits();
                let output = W::run(ctx.clone(), input).await;
                if ctx.is_fatal() {
                    // The run was stopped as it ended (an oversized custom status, say): the
                    // driver acts on that, not on this result.
                    return std::future::pending().await;
                }
                let output = output?;
                let output = serde_json::to_string(&output)
                    .map_err(|e| WorkflowError::Serialization(format!("output does not serialize: {e}")))?;
                // Never written: the instance fails with error type PayloadTooLarge instead.
                limits.check_payload(&output).map_err(|size| size.workflow_error("the output"))?;
                Ok(output)
            })
        });
        let entry = WorkflowEntry {
            run,
            input_key: input_key::<W>,
            priority: W::PRIORITY,
            concurrency: W::CONCURRENCY.filter(|limit| *limit > 0),
            rate: W::RATE.filter(|rate| rate.limit > 0 && rate.period_ms > 0),
            keyed: W::KEYED,
            metrics: Default::default(),
        };
        if self.workflows.insert(W::NAME.to_owned(), entry).is_some() {
            return Err(format!("workflow `{}` is registered twice", W::NAME));
        }
        Ok(())
    }
}
