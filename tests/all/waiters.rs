//! Result waiters: however many handles wait, the store is read once per waiter and then by one
//! shared, bounded poll (or its signals), never by each waiter on its own.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use workflow::prelude::*;
use workflow::store::{
    EventRecord, InstanceQuery, InstanceRecord, JournalRecord, Millis, Store, StoreError, StoreStats, TaskOutcome,
    TaskRecord, WakeSignal, WriteOp, WriteOutcome,
};

use crate::support::wait_until;

/// A memory store that counts the reads of single instances and records each batch read's size.
#[derive(Default)]
struct CountingStore {
    inner: MemoryStore,
    single_reads: AtomicUsize,
    batch_reads: Mutex<Vec<usize>>,
}

#[async_trait]
impl Store for CountingStore {
    async fn write(&self, ops: &[WriteOp]) -> Result<WriteOutcome, StoreError> {
        self.inner.write(ops).await
    }
    async fn instance(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.single_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.instance(id).await
    }
    async fn instances(&self, ids: &[String]) -> Result<Vec<InstanceRecord>, StoreError> {
        self.batch_reads.lock().unwrap().push(ids.len());
        let mut records = Vec::new();
        for id in ids {
            records.extend(self.inner.instance(id).await?);
        }
        Ok(records)
    }
    async fn watch(&self, id: &str) -> Result<Option<InstanceRecord>, StoreError> {
        self.single_reads.fetch_add(1, Ordering::SeqCst);
        self.inner.watch(id).await
    }
    async fn journal(&self, id: &str, generation: u32) -> Result<Vec<JournalRecord>, StoreError> {
        self.inner.journal(id, generation).await
    }
    async fn claim(
        &self,
        worker: &str,
        workflows: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.claim(worker, workflows, now, lease_until, limit).await
    }
    async fn list(&self, query: &InstanceQuery) -> Result<Vec<InstanceRecord>, StoreError> {
        self.inner.list(query).await
    }
    async fn events(&self, id: &str) -> Result<Vec<EventRecord>, StoreError> {
        self.inner.events(id).await
    }
    async fn renew_leases(&self, worker: &str, lease_until: Millis) -> Result<u64, StoreError> {
        self.inner.renew_leases(worker, lease_until).await
    }
    async fn release_leases(&self, worker: &str) -> Result<u64, StoreError> {
        self.inner.release_leases(worker).await
    }
    async fn claim_tasks(
        &self,
        worker: &str,
        activities: &[String],
        now: Millis,
        lease_until: Millis,
        limit: usize,
    ) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.claim_tasks(worker, activities, now, lease_until, limit).await
    }
    async fn complete_task(
        &self,
        worker: &str,
        instance_id: &str,
        generation: u32,
        seq: u32,
        attempt: u32,
        outcome: &TaskOutcome,
    ) -> Result<bool, StoreError> {
        self.inner.complete_task(worker, instance_id, generation, seq, attempt, outcome).await
    }
    async fn finished_tasks(&self, instance_ids: &[String]) -> Result<Vec<TaskRecord>, StoreError> {
        self.inner.finished_tasks(instance_ids).await
    }
    fn wake_signals(&self) -> Option<tokio::sync::broadcast::Receiver<WakeSignal>> {
        self.inner.wake_signals()
    }
    async fn probe_commit(&self) -> Result<(), StoreError> {
        self.inner.probe_commit().await
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

#[workflow]
async fn doubled(_ctx: WorkflowContext, n: u64) -> Result<u64, WorkflowError> {
    Ok(n * 2)
}

/// 600 handles wait on a client without a runtime, on a store without signals (so only the shared
/// poll can tell them): each waiter reads its instance once, then only batch reads of at most a
/// few hundred ids happen, however long they wait; when a runtime elsewhere runs the instances,
/// every waiter gets its own result.
#[tokio::test]
async fn many_waiters_share_one_bounded_poll() {
    const WAITERS: u64 = 600;
    let store = Arc::new(CountingStore::default());
    let client = Client::new(store.clone() as Arc<dyn Store>);
    let handles = futures::future::try_join_all((0..WAITERS).map(|n| doubled::start(&client, n))).await.unwrap();
    let results = tokio::spawn(async move {
        futures::future::join_all(handles.iter().map(|handle| handle.result_timeout(Duration::from_secs(60)))).await
    });
    // Three polls cover every waiter (at most 256 ids each), and a few more wait on.
    wait_until("the shared poll to read the waited instances 6 times", || async {
        store.batch_reads.lock().unwrap().len() >= 6
    })
    .await;
    assert_eq!(store.single_reads.load(Ordering::SeqCst), WAITERS as usize, "one read per waiter, once");
    let batches = store.batch_reads.lock().unwrap().clone();
    assert!(batches.iter().all(|&ids| ids > 0 && ids <= 256), "bounded batches: {batches:?}");
    assert!(
        batches.iter().take(3).sum::<usize>() >= WAITERS as usize,
        "the first polls cover every waiter: {batches:?}"
    );

    // The worker runs in what stands for another process: its own runtime and client.
    let runtime =
        Runtime::builder().store(store.clone() as Arc<dyn Store>).workflow(doubled::Workflow).build().await.unwrap();
    let outputs = results.await.unwrap();
    for (n, output) in outputs.into_iter().enumerate() {
        assert_eq!(output.unwrap(), n as u64 * 2);
    }
    assert_eq!(store.single_reads.load(Ordering::SeqCst), WAITERS as usize, "no waiter read on its own");
    runtime.shutdown(Duration::from_secs(5)).await.unwrap();
}
