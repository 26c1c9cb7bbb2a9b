//! Group commit: one task drains every waiting write request and applies them in one transaction.
//!
//! Idle, a request costs one commit's latency; under load, many instances' steps share one
//! commit (one fsync). A caller's outcome is released only after the commit that holds it.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError, WriteOp, WriteOutcome};

/// The most ops one transaction takes; the rest wait for the next.
const MAX_BATCH_OPS: usize = 4096;

struct Request {
    ops: Vec<WriteOp>,
    reply: oneshot::Sender<Result<WriteOutcome, StoreError>>,
}

impl Request {
    /// A request with a status assertion (a client's terminate, suspend, purge, ...) commits in
    /// a transaction of its own: a store checks assertions against the state before the whole
    /// batch, so a worker's change to the same instance in the same batch would slip past it.
    fn is_solo(&self) -> bool {
        self.ops.iter().any(|op| matches!(op, WriteOp::AssertStatus { .. }))
    }
}

/// A handle to the committer task.
#[derive(Clone)]
pub(crate) struct Committer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Committer {
    /// Starts the committer task on the current tokio runtime.
    pub(crate) fn start(store: Arc<dyn Store>) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(store, receiver));
        Self { requests }
    }

    /// Whether the committer task has stopped (the tokio runtime that ran it has gone).
    pub(crate) fn is_closed(&self) -> bool {
        self.requests.is_closed()
    }

    /// Writes `ops` durably (in a transaction it may share with other callers).
    pub(crate) async fn commit(&self, ops: Vec<WriteOp>) -> Result<WriteOutcome, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { ops, reply })
            .map_err(|_| StoreError::Backend("the committer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the committer has stopped".into()))?
    }
}

async fn run(store: Arc<dyn Store>, mut receiver: mpsc::UnboundedReceiver<Request>) {
    let mut waiting: Option<Request> = None;
    loop {
        let first = match waiting.take() {
            Some(request) => request,
            None => match receiver.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let solo = first.is_solo();
        let mut batch = vec![first];
        let mut op_count = batch[0].ops.len();
        while op_count < MAX_BATCH_OPS && !solo {
            match receiver.try_recv() {
                Ok(request) if request.is_solo() => {
                    waiting = Some(request);
                    break;
                }
                Ok(request) => {
                    op_count += request.ops.len();
                    batch.push(request);
                }
                Err(_) => break,
            }
        }
        if op_count > MAX_BATCH_OPS && batch.len() > 1 && waiting.is_none() {
            waiting = batch.pop();
        }
        commit_batch(store.as_ref(), batch).await;
    }
}

async fn commit_batch(store: &dyn Store, batch: Vec<Request>) {
    if batch.len() == 1 {
        for request in batch {
            let result = store.write(&request.ops).await;
            let _ = request.reply.send(result);
        }
        return;
    }
    let ops: Vec<WriteOp> = batch.iter().flat_map(|r| r.ops.iter().cloned()).collect();
    match store.write(&ops).await {
        Ok(outcome) => {
            // Skips are handed out from the last request backwards: when two callers create the
            // same id in one batch, the first one in the batch created it.
            let mut skipped: HashMap<String, usize> = HashMap::new();
            for id in outcome.existing {
                *skipped.entry(id).or_default() += 1;
            }
            let mut replies: Vec<(oneshot::Sender<_>, Vec<String>)> = Vec::with_capacity(batch.len());
            for request in batch.into_iter().rev() {
                let mut mine = Vec::new();
                for op in request.ops.iter().rev() {
                    if let WriteOp::CreateInstance(record) = op {
                        if let Some(count) = skipped.get_mut(&record.id).filter(|c| **c > 0) {
                            *count -= 1;
                            mine.push(record.id.clone());
                        }
                    }
                }
                replies.push((request.reply, mine));
            }
            for (reply, existing) in replies {
                let _ = reply.send(Ok(WriteOutcome { existing }));
            }
        }
        Err(error) => {
            // One caller's bad op must not fail the others: retry each request on its own. A raise
            // into a full inbox is an answer, not a fault: no warning for it.
            if matches!(error, StoreError::InboxFull { .. }) {
                tracing::debug!(%error, requests = batch.len(), "group commit refused; retrying requests one by one");
            } else {
                tracing::warn!(%error, requests = batch.len(), "group commit failed; retrying requests one by one");
            }
            for request in batch {
                let result = store.write(&request.ops).await;
                let _ = request.reply.send(result);
            }
        }
    }
}
