//! Fan-out: many durable calls (activities or child workflows) awaited together, results in
//! input order.

use std::future::IntoFuture;

use crate::activity::{ActivityDef, RetryPolicy};
use crate::error::WorkflowError;
use crate::model::BoxFuture;

use super::ActivityCall;

/// Many durable calls (activities or child workflows) run in parallel, at most `max_parallel`
/// at once. Results come back in input order.
#[must_use = "a fan-out does nothing until it is awaited"]
pub struct FanOut<C> {
    calls: Vec<C>,
    max_parallel: usize,
}

impl<C> FanOut<C> {
    pub(crate) fn new(calls: Vec<C>) -> Self {
        Self { max_parallel: calls.len().max(1), calls }
    }

    /// Runs at most `n` calls at once (at least 1).
    pub fn max_parallel(mut self, n: usize) -> Self {
        self.max_parallel = n.max(1);
        self
    }
}

impl<A: ActivityDef> FanOut<ActivityCall<A>> {
    /// Overrides the activity's retry policy for every call.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.calls = self.calls.into_iter().map(|call| call.retry(policy.clone())).collect();
        self
    }
}

impl<C, T> FanOut<C>
where
    C: IntoFuture<Output = Result<T, WorkflowError>>,
    C::IntoFuture: Send,
{
    /// Waits for every call and returns each one's outcome, in input order.
    pub async fn settle(self) -> Vec<Result<T, WorkflowError>> {
        use futures::StreamExt;
        futures::stream::iter(self.calls.into_iter().map(IntoFuture::into_future))
            .buffered(self.max_parallel)
            .collect()
            .await
    }
}

impl<C, T> IntoFuture for FanOut<C>
where
    C: IntoFuture<Output = Result<T, WorkflowError>> + Send + 'static,
    C::IntoFuture: Send,
    T: Send + 'static,
{
    /// Every output in input order, or the first failure in input order. Every call finishes
    /// before the result is returned, so what ran is the same on every replay.
    type Output = Result<Vec<T>, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move { self.settle().await.into_iter().collect() })
    }
}
