//! Group commit: one task drains every waiting write request and applies them in one transaction.
//!
//! Idle, a request costs one commit's latency; under load, many instances' steps share one
//! commit (one fsync). A caller's outcome is released only after the commit that holds it.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::metrics::CommitMetrics;
use crate::store::{Lease, Store, StoreError, WriteOp, WriteOutcome};

/// The most ops one transaction takes; the rest wait for the next.
const MAX_BATCH_OPS: usize = 4096;

/// What a request gets back: the outcome of its ops, and which of its leases it took.
type Reply = Result<(WriteOutcome, Vec<bool>), StoreError>;

struct Request {
    ops: Vec<WriteOp>,
    /// Leases on tasks its ops queue and instances they create (see `Store::write_leasing`), taken
    /// after the whole batch.
    leases: Vec<Lease>,
    reply: oneshot::Sender<Reply>,
}

impl Request {
    /// The instances whose status this request asserts (a client's terminate, suspend, purge,
    /// raise, ...).
    fn asserted(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().filter_map(|op| match op {
            WriteOp::AssertStatus { id, .. } => Some(id.as_str()),
            _ => None,
        })
    }

    /// Every instance this request's ops write to or check.
    fn touched(&self) -> impl Iterator<Item = &str> {
        self.ops.iter().map(WriteOp::instance_id)
    }
}

/// The instances of the requests gathered into one batch so far. A store checks a status
/// assertion against the state before the whole batch, so a request that asserts an instance's
/// status shares a batch only with requests that leave that instance alone (a worker's finish
/// in the same batch would slip past a raise's or a terminate's check).
///
/// Kept as hashes of the ids (no copies on the hot path): two ids that share a hash only split a
/// batch that could have been one.
#[derive(Default)]
struct BatchInstances {
    asserted: HashSet<u64>,
    touched: HashSet<u64>,
}

impl BatchInstances {
    /// Adds `request`'s instances if it may join the batch; `false` (nothing added) if not.
    fn admit(&mut self, request: &Request) -> bool {
        let clash = request.touched().any(|id| self.asserted.contains(&key(id)))
            || request.asserted().any(|id| self.touched.contains(&key(id)));
        if clash {
            return false;
        }
        self.asserted.extend(request.asserted().map(key));
        self.touched.extend(request.touched().map(key));
        true
    }
}

fn key(id: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
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

    /// Writes `ops` durably (in a transaction it may share with other callers), then takes
    /// what it can of `leases` in that transaction; says which it took.
    pub(crate) async fn commit(&self, ops: Vec<WriteOp>, leases: Vec<Lease>) -> Reply {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request { ops, leases, reply })
            .map_err(|_| StoreError::Backend("the committer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Backend("the committer has stopped".into()))?
    }
}

async fn run(store: Arc<dyn Store>, mut receiver: mpsc::UnboundedReceiver<Request>) {
    let sink = Sink { store, metrics: CommitMetrics::default() };
    let mut waiting: Option<Request> = None;
    loop {
        let first = match waiting.take() {
            Some(request) => request,
            None => match receiver.recv().await {
                Some(request) => request,
                None => return,
            },
        };
        let mut instances = BatchInstances::default();
        instances.admit(&first);
        let mut batch = vec![first];
        let mut op_count = batch[0].ops.len();
        while op_count < MAX_BATCH_OPS {
            match receiver.try_recv() {
                Ok(request) if !instances.admit(&request) => {
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
        commit_batch(&sink, batch).await;
    }
}

/// Where batches go: the store, and the metrics of each commit.
struct Sink {
    store: Arc<dyn Store>,
    metrics: CommitMetrics,
}

/// Writes `ops` and takes what it can of `leases` (measured: see `crate::metrics`).
async fn write(sink: &Sink, ops: &[WriteOp], leases: &[Lease]) -> Reply {
    let store = sink.store.as_ref();
    let began = std::time::Instant::now();
    let written = if leases.is_empty() {
        store.write(ops).await.map(|outcome| (outcome, Vec::new()))
    } else {
        store.write_leasing(ops, leases).await
    };
    sink.metrics.commit(ops.len(), began.elapsed());
    written
}

/// Writes one request on its own.
async fn write_one(sink: &Sink, request: Request) {
    let result = write(sink, &request.ops, &request.leases).await;
    let _ = request.reply.send(result);
}

async fn commit_batch(sink: &Sink, batch: Vec<Request>) {
    if batch.len() == 1 {
        for request in batch {
            write_one(sink, request).await;
        }
        return;
    }
    let ops: Vec<WriteOp> = batch.iter().flat_map(|r| r.ops.iter().cloned()).collect();
    let leases: Vec<Lease> = batch.iter().flat_map(|r| r.leases.iter().cloned()).collect();
    match write(sink, &ops, &leases).await {
        Ok((outcome, taken)) => {
            // Each request's leases, in batch order.
            let mut taken = taken.into_iter();
            let mut taken_by: Vec<Vec<bool>> =
                batch.iter().map(|request| taken.by_ref().take(request.leases.len()).collect()).collect();
            // Skips are handed out from the last request backwards: when two callers create the
            // same id in one batch, the first one in the batch created it.
            let mut skipped: HashMap<String, usize> = HashMap::new();
            for id in outcome.existing {
                *skipped.entry(id).or_default() += 1;
            }
            let mut replies: Vec<(oneshot::Sender<_>, Vec<String>, Vec<bool>)> = Vec::with_capacity(batch.len());
            for request in batch.into_iter().rev() {
                let leased = taken_by.pop().unwrap_or_default();
                let mut mine = Vec::new();
                for op in request.ops.iter().rev() {
                    if let WriteOp::CreateInstance(record) = op {
                        if let Some(count) = skipped.get_mut(&record.id).filter(|c| **c > 0) {
                            *count -= 1;
                            mine.push(record.id.clone());
                        }
                    }
                }
                replies.push((request.reply, mine, leased));
            }
            for (reply, existing, leased) in replies {
                let _ = reply.send(Ok((WriteOutcome { existing }, leased)));
            }
        }
        Err(error) => {
            // One caller's bad op must not fail the others: retry each request on its own. A raise
            // into a full inbox or onto a finished instance is an answer, not a fault: no warning.
            if matches!(error, StoreError::InboxFull { .. } | StoreError::Conflict { .. }) {
                tracing::debug!(%error, requests = batch.len(), "group commit refused; retrying requests one by one");
            } else {
                tracing::warn!(%error, requests = batch.len(), "group commit failed; retrying requests one by one");
            }
            for request in batch {
                write_one(sink, request).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InstanceRecord, MemoryStore, RuntimeStatus};

    fn running(id: &str) -> WriteOp {
        WriteOp::CreateInstance(InstanceRecord {
            id: id.to_owned(),
            workflow: "wf".into(),
            status: RuntimeStatus::Running,
            input: "null".into(),
            output: None,
            error: None,
            generation: 0,
            created_at: 1,
            updated_at: 1,
            owner: None,
            lease_until: None,
            parent_id: None,
            custom_status: None,
            wake_at: None,
            priority: 0,
            concurrency_key: String::new(),
            trace_context: None,
        })
    }

    /// A raise as a client writes it: the instance must still be running.
    fn raise(id: &str) -> Vec<WriteOp> {
        vec![
            WriteOp::AssertStatus { id: id.into(), allowed: vec![RuntimeStatus::Running] },
            WriteOp::AddEvent { instance_id: id.into(), name: "go".into(), payload: "1".into(), created_at: 2 },
        ]
    }

    fn custom(id: &str) -> Vec<WriteOp> {
        vec![WriteOp::SetCustomStatus { id: id.into(), custom_status: Some("1".into()), updated_at: 2 }]
    }

    /// Requests that assert statuses share a commit with requests on other instances; a request
    /// that writes to an asserted instance (or asserts one another request writes) waits for
    /// the next commit, where its check sees what the one before changed.
    #[tokio::test]
    async fn asserting_requests_share_commits_except_with_their_own_instances() {
        let store = Arc::new(MemoryStore::new());
        store.write(&[running("x"), running("y"), running("z")]).await.unwrap();
        let committer = Committer::start(store.clone());
        let before = store.stats().commits;
        // Sent before the committer task runs (one thread): it finds all three at once.
        let (a, b, c) = tokio::join!(
            committer.commit(custom("x"), vec![]),
            committer.commit(raise("y"), vec![]),
            committer.commit(custom("z"), vec![])
        );
        assert!(a.is_ok() && b.is_ok() && c.is_ok());
        assert_eq!(store.stats().commits - before, 1, "three requests on three instances share a commit");

        let finish = WriteOp::Finish {
            id: "x".into(),
            status: RuntimeStatus::Completed,
            output: Some("1".into()),
            error: None,
            updated_at: 3,
        };
        let (finished, raised) =
            tokio::join!(committer.commit(vec![finish], vec![]), committer.commit(raise("x"), vec![]));
        assert!(finished.is_ok());
        assert!(matches!(raised, Err(StoreError::Conflict { ref id, .. }) if id == "x"), "{raised:?}");
        assert!(store.events("x").await.unwrap().is_empty(), "the raise slipped past the finish");
    }
}
