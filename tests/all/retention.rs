//! Retention and attempt counters (issue 13): retention purges finished roots a bounded page at a
//! time, never a child on its own while its parent runs, and goes past a damaged row; an
//! activity's stored attempt count at `u32::MAX` saturates instead of overflowing.

use std::sync::Arc;
use std::time::Duration;

use workflow::prelude::*;
use workflow::store::{JournalRecord, RecordStatus, StepKind, Store, WriteOp};

#[activity]
async fn r_step(_ctx: ActivityContext) -> Result<u32, ActivityError> {
    Ok(7)
}

#[workflow]
async fn r_one_step(ctx: WorkflowContext) -> Result<u32, WorkflowError> {
    r_step::call(&ctx).await
}

/// An activity whose journal says it is retrying after attempt `u32::MAX` (a damaged count, or a
/// policy that allows that many) runs once more and its outcome is recorded at `u32::MAX`: the
/// counter saturates where `attempt += 1` overflowed (a panic in a debug build, 0 in release).
#[tokio::test]
async fn a_stored_attempt_count_at_u32_max_saturates() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let client = Client::new(store.clone());
    let id = "attempts-max";
    client.start_untyped("r_one_step", "null").id(id).await.unwrap();
    let retrying = JournalRecord {
        instance_id: id.into(),
        generation: 0,
        seq: 0,
        kind: StepKind::Activity,
        name: "r_step".into(),
        status: RecordStatus::Retrying,
        input: Some("null".into()),
        payload: Some(r#"{"message":"earlier failure","attempts":4294967295}"#.into()),
        attempt: u32::MAX,
        due_at: Some(0),
        recorded_at: 0,
        parallel_group: None,
    };
    store.write(&[WriteOp::PutRecord(retrying)]).await.unwrap();
    let rt = Runtime::builder()
        .store(store.clone())
        .workflow(r_one_step::Workflow)
        .activity(r_step::Activity)
        .poll_interval(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let output = rt.client().result::<u32>(id, Some(Duration::from_secs(20))).await.unwrap();
    assert_eq!(output, 7);
    let journal = client.journal(id).await.unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    assert_eq!((journal[0].status, journal[0].attempt), (RecordStatus::Completed, u32::MAX));
    rt.shutdown(Duration::from_secs(5)).await.unwrap();
}
