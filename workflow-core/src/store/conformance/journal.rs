//! The journal: upserts, order by seq, generations, fan-out groups.

use crate::store::{JournalRecord, RecordStatus, StepKind, Store, WriteOp};

use super::{create, instance, put, record};

/// A journal record with the same (instance, generation, seq) replaces the previous one, also
/// within one batch.
pub async fn check_journal_upsert(store: &dyn Store) {
    let id = "upsert/a";
    store.write(&[create(instance(id, "upsert_wf", 1))]).await.unwrap();
    let retrying = JournalRecord {
        status: RecordStatus::Retrying,
        payload: Some(r#"{"message":"try again"}"#.into()),
        attempt: 1,
        due_at: Some(5_000),
        ..record(id, 0, 0)
    };
    store.write(&[put(retrying.clone())]).await.unwrap();
    assert_eq!(store.journal(id, 0).await.unwrap(), vec![retrying]);

    let completed = JournalRecord {
        kind: StepKind::Timer,
        name: "renamed".into(),
        input: None,
        attempt: 2,
        recorded_at: 6_000,
        ..record(id, 0, 0)
    };
    store.write(&[put(completed.clone())]).await.unwrap();
    assert_eq!(store.journal(id, 0).await.unwrap(), vec![completed], "every column is replaced");

    let failed = JournalRecord { status: RecordStatus::Failed, payload: Some(r#""gone""#.into()), ..record(id, 0, 1) };
    let last = JournalRecord { payload: None, ..failed.clone() };
    store.write(&[put(failed), put(last.clone())]).await.unwrap();
    assert_eq!(store.journal(id, 0).await.unwrap()[1], last, "the last put in a batch wins");
}

/// A journal reads back ordered by seq (numerically), one generation at a time.
pub async fn check_journal_order_and_generations(store: &dyn Store) {
    let id = "order/a";
    store.write(&[create(instance(id, "order_wf", 1))]).await.unwrap();
    let ops: Vec<WriteOp> = [100, 2, 10, 0, 1]
        .into_iter()
        .map(|seq| put(record(id, 0, seq)))
        .chain([3, 1].into_iter().map(|seq| put(JournalRecord { kind: StepKind::Event, ..record(id, 1, seq) })))
        .chain([put(record("order/b", 0, 0))])
        .collect();
    store.write(&ops).await.unwrap();

    let gen0 = store.journal(id, 0).await.unwrap();
    assert_eq!(gen0.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 1, 2, 10, 100]);
    assert_eq!(gen0[3], record(id, 0, 10));
    let gen1 = store.journal(id, 1).await.unwrap();
    assert_eq!(gen1.iter().map(|r| (r.generation, r.seq)).collect::<Vec<_>>(), vec![(1, 1), (1, 3)]);
    assert!(gen1.iter().all(|r| r.kind == StepKind::Event));
    assert!(store.journal(id, 2).await.unwrap().is_empty());
    assert_eq!(store.journal("order/b", 0).await.unwrap(), vec![record("order/b", 0, 0)]);
    assert!(store.journal("order/nobody", 0).await.unwrap().is_empty());

    // Several journals in one read: each instance's asked generation, by instance then seq.
    let asked = [("order/b".to_owned(), 0), (id.to_owned(), 1), ("order/nobody".to_owned(), 0)];
    let both = store.journals(&asked).await.unwrap();
    let expected: Vec<JournalRecord> =
        store.journal(id, 1).await.unwrap().into_iter().chain([record("order/b", 0, 0)]).collect();
    assert_eq!(both, expected, "the asked generations only, by instance id then seq");
    assert!(store.journals(&[]).await.unwrap().is_empty());
}

/// A journal record's fan-out group round-trips (`None`, 0 and `u32::MAX` included), an upsert
/// replaces it (with `None` too), and in one batch the last write of a key wins with its group.
pub async fn check_parallel_group(store: &dyn Store) {
    let id = "pgroup/a";
    let grouped = |seq: u32, group: Option<u32>| JournalRecord { parallel_group: group, ..record(id, 0, seq) };
    let records = vec![
        grouped(0, None),
        grouped(1, Some(1)),
        grouped(2, Some(1)),
        grouped(3, Some(0)),
        grouped(4, Some(u32::MAX)),
    ];
    store.write(&records.iter().cloned().map(put).collect::<Vec<_>>()).await.unwrap();
    assert_eq!(store.journal(id, 0).await.unwrap(), records);

    store.write(&[put(grouped(1, None)), put(grouped(0, Some(7)))]).await.unwrap();
    store
        .write(&[put(grouped(5, Some(3))), put(grouped(5, None)), put(grouped(6, None)), put(grouped(6, Some(5)))])
        .await
        .unwrap();
    let groups: Vec<Option<u32>> = store.journal(id, 0).await.unwrap().iter().map(|r| r.parallel_group).collect();
    assert_eq!(groups, [Some(7), None, Some(1), Some(0), Some(u32::MAX), None, Some(5)]);
}
