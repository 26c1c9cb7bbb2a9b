//! Races: two durable operations, the first to finish wins and the winner is journaled.

use std::future::IntoFuture;

use super::WorkflowContext;
use crate::model::BoxFuture;
use crate::store::{JournalRecord, RecordStatus, StepKind, WriteOp};

/// The outcome of [`WorkflowContext::race`]: which operation finished first, with its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Either<A, B> {
    /// The first operation won.
    First(A),
    /// The second operation won.
    Second(B),
}

/// Two durable operations racing; await it for the winner.
#[must_use = "a race does nothing until it is awaited"]
pub struct Race<A, B> {
    pub(crate) ctx: WorkflowContext,
    pub(crate) seq: u32,
    pub(crate) recorded: Option<JournalRecord>,
    pub(crate) first: A,
    pub(crate) second: B,
}

impl<A, B> IntoFuture for Race<A, B>
where
    A: IntoFuture + Send + 'static,
    B: IntoFuture + Send + 'static,
    A::IntoFuture: Send,
    B::IntoFuture: Send,
    A::Output: Send,
    B::Output: Send,
{
    type Output = Either<A::Output, B::Output>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, recorded, first, second } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            if let Some(record) = recorded {
                return match record.payload.as_deref() {
                    Some("0") => Either::First(first.await),
                    Some("1") => Either::Second(second.await),
                    other => {
                        ctx.corrupt(seq, format!("race winner `{}` is neither 0 nor 1", other.unwrap_or("")));
                        std::future::pending().await
                    }
                };
            }
            let first = first.into_future();
            let second = second.into_future();
            let (index, outcome) = tokio::select! {
                biased;
                out = first => ("0", Either::First(out)),
                out = second => ("1", Either::Second(out)),
            };
            let record = ctx.new_record(seq, StepKind::Race, "race", RecordStatus::Completed, Some(index.to_owned()));
            ctx.buffer(WriteOp::PutRecord(record));
            outcome
        })
    }
}
