//! Child workflows: created with the parent's step in one commit, under an id derived from the
//! parent's, and awaited until they end.

use std::future::IntoFuture;
use std::marker::PhantomData;

use super::WorkflowDef;
use super::{Fatal, WorkflowContext};
use crate::client::InstanceStatus;
use crate::error::{FailureDetails, WorkflowError};
use crate::model::BoxFuture;
use crate::store::{InstanceRecord, JournalRecord, RecordStatus, RuntimeStatus, StepKind, WriteOp};

/// A child workflow call; await it for the child's output.
#[must_use = "a child workflow call does nothing until it is awaited"]
pub struct ChildCall<W: WorkflowDef> {
    pub(crate) ctx: WorkflowContext,
    pub(crate) seq: u32,
    pub(crate) input: Result<String, WorkflowError>,
    /// The child's concurrency key (see `WorkflowDef::concurrency_key`).
    pub(crate) concurrency_key: String,
    pub(crate) recorded: Option<JournalRecord>,
    pub(crate) _workflow: PhantomData<fn() -> W>,
}

impl<W: WorkflowDef> ChildCall<W> {
    /// The child's instance id: derived from the parent's id, generation and the call's seq, so
    /// it is the same on every replay and differs across continue-as-new generations.
    pub fn instance_id(&self) -> String {
        child_instance_id(self.ctx.instance_id(), self.ctx.generation(), self.seq)
    }
}

pub(crate) fn child_instance_id(parent: &str, generation: u32, seq: u32) -> String {
    let suffix = format!("-g{generation}-c{seq}");
    if parent.len() + suffix.len() <= crate::client::MAX_INSTANCE_ID_LEN {
        return format!("{parent}{suffix}");
    }
    // Keep ids within the limit: a readable prefix and a hash of the whole parent id.
    let hash = parent.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    let mut keep = crate::client::MAX_INSTANCE_ID_LEN - suffix.len() - 17;
    // Ids a start accepts are ASCII, but a stored one need not be (an older build, a hand-edited
    // row): cut it on a character boundary.
    while !parent.is_char_boundary(keep) {
        keep -= 1;
    }
    format!("{}-{hash:016x}{suffix}", &parent[..keep])
}

impl<W: WorkflowDef> IntoFuture for ChildCall<W> {
    type Output = Result<W::Output, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let child_id = self.instance_id();
        let Self { ctx, seq, input, concurrency_key, recorded, .. } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let child_failed = |message: String| WorkflowError::Child {
                workflow: W::NAME.to_owned(),
                instance_id: child_id.clone(),
                message,
            };
            match recorded.as_ref().map(|r| r.status) {
                Some(RecordStatus::Completed) => {
                    let payload = recorded.and_then(|r| r.payload).unwrap_or_else(|| "null".into());
                    return decode_child::<W>(&ctx, seq, &payload);
                }
                Some(RecordStatus::Failed) => {
                    let payload = recorded.and_then(|r| r.payload).unwrap_or_default();
                    return Err(child_failed(FailureDetails::parse(&payload).message));
                }
                Some(_) => {}
                None => {
                    let input = input?;
                    let engine = ctx.engine().clone();
                    let child = InstanceRecord {
                        parent_id: Some(ctx.instance_id().to_owned()),
                        priority: W::PRIORITY,
                        concurrency_key,
                        trace_context: Some(ctx.trace().child(&child_id).traceparent()),
                        ..InstanceRecord::pending(child_id.clone(), W::NAME, input, ctx.clock_now())
                    };
                    let link = ctx.new_record(
                        seq,
                        StepKind::Child,
                        W::NAME,
                        RecordStatus::Scheduled,
                        serde_json::to_string(&child_id).ok(),
                    );
                    let mut ops = ctx.take_fenced_batch();
                    ops.push(WriteOp::PutRecord(link));
                    if let Err(error) = engine.start_instance(child, ops).await {
                        if !matches!(error, crate::error::Error::InstanceExists(_)) {
                            ctx.fail(Fatal::Abandon(format!("could not start child `{child_id}`: {error}")));
                            return std::future::pending().await;
                        }
                        // Created before (a replay after a crash): adopted only if it is this
                        // call's own child, never a row someone else made under its id.
                        match engine.store().instance(&child_id).await {
                            Ok(Some(existing))
                                if existing.parent_id.as_deref() == Some(ctx.instance_id())
                                    && existing.workflow == W::NAME => {}
                            Ok(existing) => {
                                let owner = existing.map_or_else(
                                    || "nothing".to_owned(),
                                    |e| format!("`{}` with parent {:?}", e.workflow, e.parent_id),
                                );
                                ctx.fail(Fatal::Fail(FailureDetails {
                                    error_type: "ChildIdTaken".into(),
                                    message: format!(
                                        "the id `{child_id}` of the child `{}` at seq {seq} holds {owner}, not this \
                                         instance's child",
                                        W::NAME
                                    ),
                                }));
                                return std::future::pending().await;
                            }
                            Err(error) => {
                                ctx.fail(Fatal::Abandon(format!("could not read child `{child_id}`: {error}")));
                                return std::future::pending().await;
                            }
                        }
                    }
                }
            }
            if ctx.flush().await.is_err() {
                return std::future::pending().await;
            }
            let _wait = ctx.waiting(seq, None);
            ctx.state().children.insert(seq, child_id.clone());
            let engine = ctx.engine().clone();
            // One read now (it may have ended already, or never existed); after that its end
            // comes from this process's result waiters: the local run, a store signal, or their
            // shared poll, never a poll of this wait's own.
            let finished = loop {
                let ended = engine.subscribe_completion(&child_id);
                let reading = ctx.reading();
                let child = engine.store().instance(&child_id).await;
                drop(reading);
                let child = match child {
                    Ok(Some(child)) if child.status.is_terminal() => Some(InstanceStatus::from(child)),
                    Ok(Some(_)) => match ended.await {
                        Ok(ended) => ended,
                        // The waiters let go of it (their tokio runtime ended): read again.
                        Err(_) => continue,
                    },
                    Ok(None) => None,
                    Err(error) => {
                        ctx.fail(Fatal::Abandon(format!("could not read child `{child_id}`: {error}")));
                        return std::future::pending().await;
                    }
                };
                let Some(child) = child else {
                    ctx.fail(Fatal::Fail(FailureDetails {
                        error_type: "ChildMissing".into(),
                        message: format!("child instance `{child_id}` at seq {seq} does not exist"),
                    }));
                    return std::future::pending().await;
                };
                break child;
            };
            let (status, payload, result) = match finished.status {
                RuntimeStatus::Completed => {
                    let output = finished.output.unwrap_or_else(|| "null".into());
                    (RecordStatus::Completed, output.clone(), Ok(output))
                }
                other => {
                    let details = finished.failure.unwrap_or_else(|| FailureDetails {
                        error_type: other.as_str().to_owned(),
                        message: format!("the child ended {}", other.as_str()),
                    });
                    (RecordStatus::Failed, details.to_stored(), Err(details.message))
                }
            };
            let record = ctx.new_record(seq, StepKind::Child, W::NAME, status, Some(payload));
            ctx.buffer(WriteOp::PutRecord(record));
            match result {
                Ok(output) => decode_child::<W>(&ctx, seq, &output),
                Err(message) => Err(child_failed(message)),
            }
        })
    }
}

fn decode_child<W: WorkflowDef>(ctx: &WorkflowContext, seq: u32, payload: &str) -> Result<W::Output, WorkflowError> {
    serde_json::from_str(payload).map_err(|error| {
        ctx.corrupt(seq, format!("output of child workflow `{}` does not deserialize: {error}", W::NAME));
        WorkflowError::Serialization(error.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::child_instance_id;

    #[test]
    fn child_ids_are_stable_valid_and_bounded() {
        assert_eq!(child_instance_id("order-1", 0, 3), "order-1-g0-c3");
        let long = "x".repeat(64);
        let id = child_instance_id(&long, 12, 4000);
        assert!(id.len() <= 64, "{id}");
        assert!(crate::client::validate_instance_id(&id).is_ok());
        assert_eq!(id, child_instance_id(&long, 12, 4000));
        assert_ne!(id, child_instance_id(&long, 13, 4000));
    }

    #[test]
    fn a_non_ascii_stored_parent_id_is_cut_on_a_character_boundary() {
        for pad in 0..4 {
            let parent = format!("{}{}", "x".repeat(pad), "é".repeat(40));
            let id = child_instance_id(&parent, 0, 1);
            assert!(id.len() <= crate::client::MAX_INSTANCE_ID_LEN, "{id}");
            assert!(id.ends_with("-g0-c1"), "{id}");
        }
    }
}
