//! Durable timers: the due time is journaled, so a restart fires the timer once, at or after it.

use std::future::IntoFuture;
use std::time::Duration;

use super::WorkflowContext;
use crate::error::WorkflowError;
use crate::model::time::millis;
use crate::model::BoxFuture;
use crate::store::{JournalRecord, Millis, RecordStatus, StepKind, WriteOp};

pub(crate) enum Due {
    /// This long after the timer is first awaited.
    After(Duration),
    /// At this time.
    At(Millis),
}

/// A durable timer; await it.
#[must_use = "a timer does nothing until it is awaited"]
pub struct Timer {
    pub(crate) ctx: WorkflowContext,
    pub(crate) seq: u32,
    pub(crate) recorded: Option<JournalRecord>,
    pub(crate) due: Due,
}

impl IntoFuture for Timer {
    type Output = Result<(), WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, recorded, due } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let due = match recorded {
                Some(record) if record.status == RecordStatus::Completed => return Ok(()),
                Some(record) => record.due_at.unwrap_or(0),
                None => {
                    let due = match due {
                        Due::After(duration) => ctx.clock_now().saturating_add(millis(duration)),
                        Due::At(at) => at,
                    };
                    if !ctx.schedule(seq, StepKind::Timer, "sleep", Some(due), None).await {
                        return std::future::pending().await;
                    }
                    due
                }
            };
            if ctx.flush().await.is_err() {
                return std::future::pending().await;
            }
            {
                let _wait = ctx.waiting(seq, Some(due));
                ctx.engine().clock().sleep_until(due).await;
            }
            let mut record = ctx.new_record(seq, StepKind::Timer, "sleep", RecordStatus::Completed, None);
            record.due_at = Some(due);
            ctx.buffer(WriteOp::PutRecord(record));
            Ok(())
        })
    }
}
