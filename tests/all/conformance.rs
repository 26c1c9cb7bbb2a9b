//! The store conformance suite: every `Store` runs the same checks, so the in-memory store (the
//! reference) and the database stores cannot drift apart.
//!
//! Each `check_*` function takes a `&dyn Store` and uses its own instance ids and workflow names,
//! so all of them can run one after the other on one store. One `#[tokio::test]` per store runs
//! them all, plus whatever only that backend can check (durability across reopening, URLs, ...).

use std::collections::HashSet;
use std::sync::Arc;

use workflow::store::{InstanceQuery, InstanceRecord, Store, TaskOutcome, TaskRecord, WriteOp, WriteOutcome, NEVER};
use workflow::{
    EventRecord, JournalRecord, MemoryStore, RecordStatus, RuntimeStatus, SqliteOptions, SqliteStore, StepKind,
    StoreError, Synchronous,
};

// ---------------------------------------------------------------------------------------------
// Builders
// ---------------------------------------------------------------------------------------------

fn instance(id: &str, workflow: &str, created_at: i64) -> InstanceRecord {
    InstanceRecord {
        id: id.to_owned(),
        workflow: workflow.to_owned(),
        status: RuntimeStatus::Pending,
        input: format!(r#"{{"id":"{id}"}}"#),
        output: None,
        error: None,
        generation: 0,
        created_at,
        updated_at: created_at,
        owner: None,
        lease_until: None,
        parent_id: None,
        custom_status: None,
        wake_at: None,
    }
}

fn with_status(mut record: InstanceRecord, status: RuntimeStatus) -> InstanceRecord {
    record.status = status;
    record
}

fn record(id: &str, generation: u32, seq: u32) -> JournalRecord {
    JournalRecord {
        instance_id: id.to_owned(),
        generation,
        seq,
        kind: StepKind::Activity,
        name: format!("step_{seq}"),
        status: RecordStatus::Completed,
        input: Some(format!("[{seq}]")),
        payload: Some(format!(r#"{{"seq":{seq}}}"#)),
        attempt: 1,
        due_at: None,
        recorded_at: 1_000 + i64::from(seq),
        parallel_group: None,
    }
}

fn create(record: InstanceRecord) -> WriteOp {
    WriteOp::CreateInstance(record)
}

fn put(record: JournalRecord) -> WriteOp {
    WriteOp::PutRecord(record)
}

fn ids(records: &[InstanceRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

fn names(workflows: &[&str]) -> Vec<String> {
    workflows.iter().map(|w| (*w).to_owned()).collect()
}

async fn get(store: &dyn Store, id: &str) -> InstanceRecord {
    store.instance(id).await.unwrap().unwrap_or_else(|| panic!("instance {id} is missing"))
}

// ---------------------------------------------------------------------------------------------
// Checks every store passes
// ---------------------------------------------------------------------------------------------

/// Every field of an instance comes back as written; an unknown id reads as `None`.
async fn check_create_and_read(store: &dyn Store) {
    let full = InstanceRecord {
        id: "create/full".into(),
        workflow: "create_wf".into(),
        status: RuntimeStatus::Running,
        input: r#"{"order":42}"#.into(),
        output: Some(r#""done""#.into()),
        error: Some(r#"{"message":"boom"}"#.into()),
        generation: 7,
        created_at: 1_700_000_000_123,
        updated_at: 1_700_000_000_456,
        owner: Some("worker-a".into()),
        lease_until: Some(1_700_000_030_000),
        parent_id: Some("create/parent".into()),
        custom_status: Some(r#"{"stage":"shipping"}"#.into()),
        wake_at: Some(1_700_000_060_000),
    };
    let minimal = instance("create/minimal", "create_wf", 5);
    let extremes = InstanceRecord {
        generation: u32::MAX,
        created_at: i64::MIN,
        updated_at: i64::MAX,
        lease_until: Some(-1),
        custom_status: Some(String::new()),
        wake_at: Some(NEVER),
        ..instance("create/extremes", "create_wf", 0)
    };
    let early = InstanceRecord { wake_at: Some(i64::MIN), ..instance("create/early", "create_wf", 0) };
    let outcome = store
        .write(&[create(full.clone()), create(minimal.clone()), create(extremes.clone()), create(early.clone())])
        .await
        .unwrap();
    assert!(outcome.existing.is_empty(), "nothing existed: {outcome:?}");
    assert_eq!(get(store, "create/full").await, full);
    assert_eq!(get(store, "create/minimal").await, minimal);
    assert_eq!(get(store, "create/extremes").await, extremes);
    assert_eq!(get(store, "create/early").await, early);
    assert_eq!(store.instance("create/nobody").await.unwrap(), None);
    for status in RuntimeStatus::ALL {
        let id = format!("create/status/{}", status.as_str());
        let record = with_status(instance(&id, "create_status_wf", 1), status);
        store.write(&[create(record.clone())]).await.unwrap();
        assert_eq!(get(store, &id).await, record, "status {status:?} round-trips");
    }
}

/// A create of an id that exists is skipped and reported, once per skipped op, and leaves the
/// original row alone; two creates of one new id in one batch create it once and skip once.
async fn check_duplicate_create(store: &dyn Store) {
    let original = instance("dup/a", "dup_wf", 10);
    assert!(store.write(&[create(original.clone())]).await.unwrap().existing.is_empty());

    let imposter = InstanceRecord {
        workflow: "other_wf".into(),
        status: RuntimeStatus::Failed,
        input: r#""imposter""#.into(),
        created_at: 99,
        ..original.clone()
    };
    let first_b = instance("dup/b", "dup_wf", 20);
    let second_b = InstanceRecord { input: r#""second""#.into(), ..instance("dup/b", "dup_wf", 21) };
    let outcome = store
        .write(&[create(imposter.clone()), create(first_b.clone()), create(second_b), create(imposter)])
        .await
        .unwrap();
    assert_eq!(outcome.existing, vec!["dup/a", "dup/b", "dup/a"], "one entry per skipped op, in op order");
    assert_eq!(get(store, "dup/a").await, original, "the existing row is untouched");
    assert_eq!(get(store, "dup/b").await, first_b, "the first create in the batch wins");
}

/// A journal record with the same (instance, generation, seq) replaces the previous one, also
/// within one batch.
async fn check_journal_upsert(store: &dyn Store) {
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
async fn check_journal_order_and_generations(store: &dyn Store) {
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
}

/// SetStatus changes status and time only; Finish sets the outcome and drops the lease; both are
/// no-ops on an unknown id.
async fn check_set_status_and_finish(store: &dyn Store) {
    let wf = "finish_wf";
    let a = instance("finish/a", wf, 1);
    let b = instance("finish/b", wf, 2);
    store.write(&[create(a.clone()), create(b.clone())]).await.unwrap();

    store
        .write(&[WriteOp::SetStatus { id: a.id.clone(), status: RuntimeStatus::Running, updated_at: 50 }])
        .await
        .unwrap();
    let running = get(store, &a.id).await;
    assert_eq!(running, InstanceRecord { status: RuntimeStatus::Running, updated_at: 50, ..a.clone() });

    let claimed = store.claim("finisher", &names(&[wf]), 100, 10_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), vec!["finish/a", "finish/b"]);

    store
        .write(&[
            WriteOp::Finish {
                id: a.id.clone(),
                status: RuntimeStatus::Completed,
                output: Some(r#"{"total":3}"#.into()),
                error: None,
                updated_at: 200,
            },
            WriteOp::Finish {
                id: b.id.clone(),
                status: RuntimeStatus::Failed,
                output: None,
                error: Some(r#"{"message":"no"}"#.into()),
                updated_at: 201,
            },
        ])
        .await
        .unwrap();
    let done = get(store, &a.id).await;
    assert_eq!(
        done,
        InstanceRecord {
            status: RuntimeStatus::Completed,
            output: Some(r#"{"total":3}"#.into()),
            updated_at: 200,
            owner: None,
            lease_until: None,
            ..a.clone()
        },
        "finish clears the lease"
    );
    let failed = get(store, &b.id).await;
    assert_eq!(failed.status, RuntimeStatus::Failed);
    assert_eq!(failed.output, None);
    assert_eq!(failed.error.as_deref(), Some(r#"{"message":"no"}"#));
    assert_eq!((failed.owner, failed.lease_until, failed.updated_at), (None, None, 201));

    // Finished instances are not claimable, and the finisher holds nothing any more.
    assert!(store.claim("other", &names(&[wf]), 20_000, 30_000, 10).await.unwrap().is_empty());
    assert_eq!(store.renew_leases("finisher", 50_000).await.unwrap(), 0);

    // Unknown ids: nothing happens, nothing fails, nothing is created.
    store
        .write(&[
            WriteOp::SetStatus { id: "finish/nobody".into(), status: RuntimeStatus::Running, updated_at: 1 },
            WriteOp::Finish {
                id: "finish/nobody".into(),
                status: RuntimeStatus::Terminated,
                output: None,
                error: None,
                updated_at: 1,
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.instance("finish/nobody").await.unwrap(), None);
}

/// Only Pending and Running instances of the named workflows are claimed, unowned or with a
/// lapsed lease; a live lease is never stolen.
async fn check_claim_filters(store: &dyn Store) {
    let wf = "claimf_wf";
    let mut ops = vec![
        create(instance("claimf/pending", wf, 10)),
        create(with_status(instance("claimf/running", wf, 20), RuntimeStatus::Running)),
        create(instance("claimf/other-workflow", "claimf_other_wf", 1)),
    ];
    for status in [
        RuntimeStatus::Suspended,
        RuntimeStatus::Completed,
        RuntimeStatus::Failed,
        RuntimeStatus::Terminated,
        RuntimeStatus::ContinuedAsNew,
    ] {
        ops.push(create(with_status(instance(&format!("claimf/{}", status.as_str()), wf, 1), status)));
    }
    store.write(&ops).await.unwrap();

    assert!(store.claim("w1", &names(&["claimf_nobody_wf"]), 1_000, 2_000, 10).await.unwrap().is_empty());
    assert!(store.claim("w1", &[], 1_000, 2_000, 10).await.unwrap().is_empty(), "no workflows, no claims");

    let claimed = store.claim("w1", &names(&[wf]), 1_000, 2_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), vec!["claimf/pending", "claimf/running"]);
    for record in &claimed {
        assert_eq!((record.owner.as_deref(), record.lease_until), (Some("w1"), Some(2_000)));
        assert_eq!(&get(store, &record.id).await, record, "the claim is stored as returned");
    }
    assert_eq!(claimed[1].status, RuntimeStatus::Running, "claiming does not change the status");

    // The lease is live until it lapses strictly before `now`.
    assert!(store.claim("w2", &names(&[wf]), 1_500, 3_000, 10).await.unwrap().is_empty());
    assert!(store.claim("w2", &names(&[wf]), 2_000, 3_000, 10).await.unwrap().is_empty());
    assert!(
        store.claim("w1", &names(&[wf]), 1_500, 3_000, 10).await.unwrap().is_empty(),
        "not re-claimed by its owner"
    );
    let taken = store.claim("w2", &names(&[wf]), 2_001, 3_000, 10).await.unwrap();
    assert_eq!(ids(&taken), vec!["claimf/pending", "claimf/running"]);
    assert!(taken.iter().all(|r| r.owner.as_deref() == Some("w2") && r.lease_until == Some(3_000)));

    // Several workflow names at once.
    let both = store.claim("w3", &names(&["claimf_other_wf", wf]), 3_001, 4_000, 10).await.unwrap();
    assert_eq!(ids(&both), vec!["claimf/other-workflow", "claimf/pending", "claimf/running"]);

    // An owner without a lease expiry is claimable, as is a lease already lapsed at creation.
    let ghost = InstanceRecord { owner: Some("ghost".into()), ..instance("claimf/ghost", "claimf_ghost_wf", 1) };
    let lapsed = InstanceRecord {
        owner: Some("ghost".into()),
        lease_until: Some(99),
        ..instance("claimf/lapsed", "claimf_ghost_wf", 2)
    };
    let live = InstanceRecord {
        owner: Some("ghost".into()),
        lease_until: Some(10_000),
        ..instance("claimf/live", "claimf_ghost_wf", 3)
    };
    store.write(&[create(ghost), create(lapsed), create(live)]).await.unwrap();
    let claimed = store.claim("w4", &names(&["claimf_ghost_wf"]), 100, 5_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), vec!["claimf/ghost", "claimf/lapsed"]);
    assert_eq!(get(store, "claimf/live").await.owner.as_deref(), Some("ghost"));
}

/// Claims take the oldest first (ties broken by id, which is not creation order here) and at most
/// `limit`.
async fn check_claim_order_and_limit(store: &dyn Store) {
    let wf = "claimo_wf";
    let ops: Vec<WriteOp> = [("claimo/a", 30), ("claimo/e", 10), ("claimo/c", 40), ("claimo/d", 10), ("claimo/b", 20)]
        .into_iter()
        .map(|(id, created_at)| create(instance(id, wf, created_at)))
        .collect();
    store.write(&ops).await.unwrap();

    assert!(store.claim("w1", &names(&[wf]), 100, 1_000, 0).await.unwrap().is_empty(), "limit 0 claims nothing");
    assert_eq!(ids(&store.claim("w1", &names(&[wf]), 100, 1_000, 2).await.unwrap()), vec!["claimo/d", "claimo/e"]);
    assert_eq!(ids(&store.claim("w2", &names(&[wf]), 100, 1_000, 2).await.unwrap()), vec!["claimo/b", "claimo/a"]);
    assert_eq!(ids(&store.claim("w3", &names(&[wf]), 100, 1_000, 10).await.unwrap()), vec!["claimo/c"]);
    assert!(store.claim("w4", &names(&[wf]), 100, 1_000, 10).await.unwrap().is_empty());
    assert_eq!(get(store, "claimo/e").await.owner.as_deref(), Some("w1"));
    assert_eq!(get(store, "claimo/a").await.owner.as_deref(), Some("w2"));
}

/// Workers claiming at the same time never get the same instance.
async fn check_concurrent_claims(store: &dyn Store) {
    let wf = "claimc_wf";
    let ops: Vec<WriteOp> = (0..40).map(|i| create(instance(&format!("claimc/{i:02}"), wf, i))).collect();
    store.write(&ops).await.unwrap();
    let workflows = names(&[wf]);
    let workers: Vec<String> = (0..8).map(|w| format!("claimc-worker-{w}")).collect();
    let claims =
        futures::future::join_all(workers.iter().map(|worker| store.claim(worker, &workflows, 100, 1_000, 7))).await;
    let mut seen = HashSet::new();
    for (worker, claim) in workers.iter().zip(claims) {
        for record in claim.unwrap() {
            assert_eq!(record.owner.as_deref(), Some(worker.as_str()));
            assert_eq!(get(store, &record.id).await.owner.as_deref(), Some(worker.as_str()));
            assert!(seen.insert(record.id.clone()), "{} claimed twice", record.id);
        }
    }
    // Whatever a racing claim missed is still there for the next one.
    let rest = store.claim("claimc-sweeper", &workflows, 100, 1_000, 100).await.unwrap();
    for record in rest {
        assert!(seen.insert(record.id.clone()), "{} claimed twice", record.id);
    }
    assert_eq!(seen.len(), 40);
}

/// Renewing extends only that worker's leases.
async fn check_renew(store: &dyn Store) {
    let (wf_one, wf_two) = ("renew_wf1", "renew_wf2");
    store
        .write(&[
            create(instance("renew/a", wf_one, 1)),
            create(instance("renew/b", wf_one, 2)),
            create(instance("renew/c", wf_two, 3)),
        ])
        .await
        .unwrap();
    assert_eq!(store.claim("renew-w1", &names(&[wf_one]), 100, 1_000, 10).await.unwrap().len(), 2);
    assert_eq!(store.claim("renew-w2", &names(&[wf_two]), 100, 1_000, 10).await.unwrap().len(), 1);

    assert_eq!(store.renew_leases("renew-w1", 5_000).await.unwrap(), 2);
    for id in ["renew/a", "renew/b"] {
        let record = get(store, id).await;
        assert_eq!((record.owner.as_deref(), record.lease_until), (Some("renew-w1"), Some(5_000)));
    }
    let other = get(store, "renew/c").await;
    assert_eq!((other.owner.as_deref(), other.lease_until), (Some("renew-w2"), Some(1_000)));
    assert_eq!(store.renew_leases("renew-nobody", 9_000).await.unwrap(), 0);

    // Renewed leases hold past the old expiry; the unrenewed one lapses.
    let taken = store.claim("renew-w3", &names(&[wf_one, wf_two]), 2_000, 3_000, 10).await.unwrap();
    assert_eq!(ids(&taken), vec!["renew/c"]);
}

/// Releasing frees a worker's leases so another worker claims them at once.
async fn check_release(store: &dyn Store) {
    let wf = "release_wf";
    store
        .write(&[
            create(instance("release/a", wf, 1)),
            create(instance("release/b", wf, 2)),
            create(instance("release/c", "release_other_wf", 3)),
        ])
        .await
        .unwrap();
    assert_eq!(store.claim("release-w1", &names(&[wf]), 100, 100_000, 10).await.unwrap().len(), 2);
    assert_eq!(store.claim("release-w2", &names(&["release_other_wf"]), 100, 100_000, 10).await.unwrap().len(), 1);

    assert_eq!(store.release_leases("release-w1").await.unwrap(), 2);
    let freed = get(store, "release/a").await;
    assert_eq!((freed.owner, freed.lease_until), (None, None));
    assert_eq!(get(store, "release/c").await.owner.as_deref(), Some("release-w2"), "others keep theirs");
    assert_eq!(store.release_leases("release-w1").await.unwrap(), 0);

    let taken = store.claim("release-w3", &names(&[wf, "release_other_wf"]), 200, 300, 10).await.unwrap();
    assert_eq!(ids(&taken), vec!["release/a", "release/b"], "claimable at once, long before the old lease lapsed");
}

/// A batch's ops apply in order: a status set before the create is a no-op, after it sticks.
async fn check_batch_in_order(store: &dyn Store) {
    let x = instance("inorder/x", "inorder_wf", 1);
    let y = instance("inorder/y", "inorder_wf", 2);
    store
        .write(&[
            WriteOp::SetStatus { id: y.id.clone(), status: RuntimeStatus::Running, updated_at: 5 },
            create(x.clone()),
            WriteOp::SetStatus { id: x.id.clone(), status: RuntimeStatus::Running, updated_at: 5 },
            put(record(&x.id, 0, 0)),
            WriteOp::Finish {
                id: x.id.clone(),
                status: RuntimeStatus::Completed,
                output: Some("1".into()),
                error: None,
                updated_at: 6,
            },
            create(y.clone()),
            WriteOp::SetStatus { id: x.id.clone(), status: RuntimeStatus::Terminated, updated_at: 7 },
        ])
        .await
        .unwrap();
    let x_now = get(store, &x.id).await;
    assert_eq!((x_now.status, x_now.output.as_deref(), x_now.updated_at), (RuntimeStatus::Terminated, Some("1"), 7));
    assert_eq!(get(store, &y.id).await, y, "the SetStatus before its create did nothing");
    assert_eq!(store.journal(&x.id, 0).await.unwrap(), vec![record(&x.id, 0, 0)]);
}

/// A batch that fails midway leaves nothing behind and is not counted. `poisoned_name` is a
/// journal record name the caller has armed the store to reject (each backend arms it its own
/// way, e.g. with a trigger); a batch with a record of that name must fail.
async fn check_batch_is_atomic(store: &dyn Store, poisoned_name: &str) {
    let id = "atomic/a";
    let existing = instance("atomic/existing", "atomic_wf", 1);
    store.write(&[create(existing.clone())]).await.unwrap();
    let before = store.stats();
    let result = store
        .write(&[
            create(instance(id, "atomic_wf", 2)),
            put(record(id, 0, 0)),
            WriteOp::SetStatus { id: existing.id.clone(), status: RuntimeStatus::Running, updated_at: 9 },
            put(JournalRecord { name: poisoned_name.to_owned(), ..record(id, 0, 1) }),
            put(record(id, 0, 2)),
        ])
        .await;
    assert!(result.is_err(), "the poisoned batch must fail, got {result:?}");
    assert_eq!(store.instance(id).await.unwrap(), None, "the create was rolled back");
    assert!(store.journal(id, 0).await.unwrap().is_empty(), "the records were rolled back");
    assert_eq!(get(store, &existing.id).await, existing, "the status change was rolled back");
    assert_eq!(store.stats(), before, "a failed batch is not counted");

    // The store is fine afterwards.
    store.write(&[create(instance(id, "atomic_wf", 2)), put(record(id, 0, 0))]).await.unwrap();
    assert_eq!(store.journal(id, 0).await.unwrap(), vec![record(id, 0, 0)]);
}

/// Stats count write commits and their ops, and probe commits; claims and leases are not writes.
async fn check_stats(store: &dyn Store) {
    let wf = "stats_wf";
    let start = store.stats();
    store
        .write(&[create(instance("stats/a", wf, 1)), put(record("stats/a", 0, 0)), put(record("stats/a", 0, 1))])
        .await
        .unwrap();
    let after_write = store.stats();
    assert_eq!((after_write.commits - start.commits, after_write.ops - start.ops), (1, 3));

    // Skipped creates and no-op updates are still ops of a committed batch.
    store
        .write(&[
            create(instance("stats/a", wf, 1)),
            WriteOp::SetStatus { id: "stats/nobody".into(), status: RuntimeStatus::Running, updated_at: 1 },
        ])
        .await
        .unwrap();
    let after_noops = store.stats();
    assert_eq!((after_noops.commits - after_write.commits, after_noops.ops - after_write.ops), (1, 2));

    store.claim("stats-w", &names(&[wf]), 100, 1_000, 10).await.unwrap();
    store.renew_leases("stats-w", 2_000).await.unwrap();
    store.release_leases("stats-w").await.unwrap();
    store.instance("stats/a").await.unwrap();
    store.journal("stats/a", 0).await.unwrap();
    store.events("stats/a").await.unwrap();
    assert_eq!(store.stats(), after_noops, "claims, leases and reads are not counted");

    store.probe_commit().await.unwrap();
    store.probe_commit().await.unwrap();
    let after_probe = store.stats();
    assert_eq!(after_probe.commits - after_noops.commits, 2);
    assert!(after_probe.ops >= after_noops.ops);

    assert!(store.write(&[]).await.unwrap().existing.is_empty(), "an empty batch is fine");
}

/// Whether a store keeps a NUL character in text like any other character, or refuses the batch
/// that holds one. PostgreSQL's text types cannot hold a NUL, so its store refuses such a batch up
/// front, before it touches the database; payloads are JSON, and JSON text never holds a raw NUL
/// (it is written `\u0000`), so the engine never hands one over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nul {
    Kept,
    Refused,
}

/// Payloads are opaque text: stored and returned byte for byte, never parsed or normalised (a NUL
/// character is either kept or its batch refused, see [`Nul`]).
async fn check_payloads_verbatim(store: &dyn Store, nul: Nul) {
    let payloads = [
        r#"{"b":1,"a":2}"#.to_owned(),
        "  { \"spaced\" :\t[ 1 , 2 ] }\n".to_owned(),
        r#""caf\u00e9 \ud83d\ude00""#.to_owned(),
        "\"café ☕ 日本語 🦀 \u{202e}rtl\"".to_owned(),
        r#"{"unterminated": [1, 2"#.to_owned(),
        "not json at all".to_owned(),
        "12345678901234567890123456789.000000000000000000001".to_owned(),
        "with\0nul".to_owned(),
        String::new(),
        "x".repeat(1 << 20),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let id = format!("payload/{i}");
        let created = InstanceRecord {
            input: payload.clone(),
            output: Some(payload.clone()),
            error: Some(format!("{payload}!")),
            ..instance(&id, "payload_wf", 1)
        };
        let journal =
            JournalRecord { input: Some(payload.clone()), payload: Some(payload.clone()), ..record(&id, 0, 0) };
        if nul == Nul::Refused && payload.contains('\0') {
            let result = store.write(&[create(created), put(journal)]).await;
            assert!(matches!(result, Err(StoreError::Backend(ref m)) if m.contains("NUL")), "payload {i}: {result:?}");
            assert_eq!(store.instance(&id).await.unwrap(), None, "payload {i}: the refused batch wrote nothing");
            assert!(store.journal(&id, 0).await.unwrap().is_empty());
            continue;
        }
        store.write(&[create(created.clone()), put(journal.clone())]).await.unwrap();
        assert_eq!(get(store, &id).await, created, "payload {i} round-trips in instances");
        assert_eq!(store.journal(&id, 0).await.unwrap(), vec![journal], "payload {i} round-trips in the journal");

        store
            .write(&[WriteOp::Finish {
                id: id.clone(),
                status: RuntimeStatus::Completed,
                output: Some(payload.clone()),
                error: None,
                updated_at: 2,
            }])
            .await
            .unwrap();
        assert_eq!(get(store, &id).await.output.as_deref(), Some(payload.as_str()), "payload {i} via Finish");
    }
    // Ids and names are text too.
    let odd = instance("payload/ünï cødé/🦀/'; DROP TABLE instances; --", "payload ☕ wf", 1);
    store.write(&[create(odd.clone())]).await.unwrap();
    assert_eq!(get(store, &odd.id).await, odd);
    assert_eq!(ids(&store.claim("w ☕", &names(&["payload ☕ wf"]), 10, 20, 10).await.unwrap()), vec![odd.id.as_str()]);
}

fn add_event(id: &str, name: &str, payload: &str, created_at: i64) -> WriteOp {
    WriteOp::AddEvent { instance_id: id.to_owned(), name: name.to_owned(), payload: payload.to_owned(), created_at }
}

fn consume(id: &str, event_id: i64, generation: u32, seq: u32) -> WriteOp {
    WriteOp::ConsumeEvent { instance_id: id.to_owned(), event_id, generation, seq }
}

fn set_wake(id: &str, wake_at: Option<i64>) -> WriteOp {
    WriteOp::SetWake { id: id.to_owned(), wake_at }
}

fn evict(id: &str, wake_at: i64) -> WriteOp {
    WriteOp::Evict { id: id.to_owned(), wake_at }
}

fn continue_as_new(id: &str, input: &str, generation: u32, updated_at: i64) -> WriteOp {
    WriteOp::ContinueAsNew { id: id.to_owned(), input: input.to_owned(), generation, updated_at }
}

fn set_custom(id: &str, custom_status: Option<&str>, updated_at: i64) -> WriteOp {
    WriteOp::SetCustomStatus { id: id.to_owned(), custom_status: custom_status.map(str::to_owned), updated_at }
}

/// Completes the instance with output `1`.
fn finish_of(id: &str) -> WriteOp {
    WriteOp::Finish {
        id: id.into(),
        status: RuntimeStatus::Completed,
        output: Some("1".into()),
        error: None,
        updated_at: 8,
    }
}

fn event_names(events: &[EventRecord]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// Events are listed per instance, in arrival order (not `created_at` order), with ids the store
/// assigns increasing in arrival order across instances; one for an instance the store does not
/// know is kept (and creates nothing). AddEvent sets the instance's `wake_at` to the event's time
/// and nothing else. A consumed event is no longer listed; a ConsumeEvent naming another
/// instance's event, or an unknown event, does nothing.
async fn check_events(store: &dyn Store) {
    let (a, b, ghost) = ("events/a", "events/b", "events/ghost");
    let (a_record, b_record) = (instance(a, "events_wf", 1), instance(b, "events_wf", 2));
    store.write(&[create(a_record.clone()), create(b_record.clone())]).await.unwrap();
    assert!(store.events(a).await.unwrap().is_empty());
    store
        .write(&[
            add_event(a, "first", r#"{"n":1}"#, 100),
            add_event(b, "other", "null", 101),
            add_event(a, "second", "", 102),
            add_event(ghost, "early", r#""before its instance""#, 103),
        ])
        .await
        .unwrap();
    store.write(&[add_event(a, "third", "\"ü🦀\" not json", 99)]).await.unwrap();

    let listed = store.events(a).await.unwrap();
    assert_eq!(event_names(&listed), ["first", "second", "third"], "arrival order, this instance's only");
    assert_eq!(
        listed[0],
        EventRecord {
            instance_id: a.into(),
            event_id: listed[0].event_id,
            name: "first".into(),
            payload: r#"{"n":1}"#.into(),
            created_at: 100,
        }
    );
    assert_eq!((listed[1].payload.as_str(), listed[1].created_at), ("", 102));
    assert_eq!((listed[2].payload.as_str(), listed[2].created_at), ("\"ü🦀\" not json", 99));
    let others = store.events(b).await.unwrap();
    assert_eq!(event_names(&others), ["other"]);
    let early = store.events(ghost).await.unwrap();
    assert_eq!(event_names(&early), ["early"], "an event for an unknown instance is kept");
    assert_eq!(store.instance(ghost).await.unwrap(), None, "and creates no instance");
    assert!(store.events("events/nobody").await.unwrap().is_empty());
    let arrival = [listed[0].event_id, others[0].event_id, listed[1].event_id, early[0].event_id, listed[2].event_id];
    assert!(arrival.windows(2).all(|w| w[0] < w[1]), "ids increase in arrival order: {arrival:?}");

    assert_eq!(get(store, a).await, InstanceRecord { wake_at: Some(99), ..a_record.clone() }, "the last event's time");
    assert_eq!(get(store, b).await, InstanceRecord { wake_at: Some(101), ..b_record.clone() });

    let (first, second, third) = (listed[0].event_id, listed[1].event_id, listed[2].event_id);
    store
        .write(&[
            consume(b, first, 0, 0),
            consume(a, others[0].event_id, 0, 1),
            consume(a, third + 1_000_000, 0, 2),
            consume(a, -1, 0, 2),
            consume(a, second, 0, 3),
        ])
        .await
        .unwrap();
    assert_eq!(event_names(&store.events(a).await.unwrap()), ["first", "third"], "only a's own op consumes a's event");
    assert_eq!(event_names(&store.events(b).await.unwrap()), ["other"], "b's event is untouched");
    store.write(&[consume(a, second, 0, 4), consume(a, first, 0, 5), consume(a, first, 1, 0)]).await.unwrap();
    assert_eq!(event_names(&store.events(a).await.unwrap()), ["third"], "consuming again changes nothing");
    assert_eq!(get(store, a).await.wake_at, Some(99), "consuming leaves the wake-up alone");

    // In batch order: an event added after the consume of `third` is listed.
    store.write(&[consume(a, third, 0, 6), add_event(a, "fourth", "4", 200)]).await.unwrap();
    let now = store.events(a).await.unwrap();
    assert_eq!(event_names(&now), ["fourth"]);
    assert!(now[0].event_id > early[0].event_id);

    // An event is consumed whether or not its instance exists.
    store.write(&[consume(ghost, early[0].event_id, 0, 0)]).await.unwrap();
    assert!(store.events(ghost).await.unwrap().is_empty());
}

/// Claims skip an instance whose wake-up is after `now` ([`NEVER`] never comes) and take one due
/// at or before it; a claim clears the wake-up.
async fn check_claim_wake(store: &dyn Store) {
    let wf = "wake_wf";
    let waking = |id: &str, created_at: i64, wake_at: Option<i64>| InstanceRecord {
        wake_at,
        ..with_status(instance(id, wf, created_at), RuntimeStatus::Running)
    };
    store
        .write(&[
            create(waking("wake/none", 1, None)),
            create(waking("wake/past", 2, Some(500))),
            create(waking("wake/equal", 3, Some(1_000))),
            create(waking("wake/future", 4, Some(1_001))),
            create(waking("wake/never", 5, Some(NEVER))),
            create(waking("wake/min", 6, Some(i64::MIN))),
        ])
        .await
        .unwrap();
    // Oldest first across instances with and without a wake-up, `limit` of them in all.
    let first = store.claim("wake-w1", &names(&[wf]), 1_000, 2_000, 2).await.unwrap();
    assert_eq!(ids(&first), ["wake/none", "wake/past"]);
    let rest = store.claim("wake-w1", &names(&[wf]), 1_000, 2_000, 10).await.unwrap();
    assert_eq!(ids(&rest), ["wake/equal", "wake/min"]);
    for record in first.iter().chain(&rest) {
        assert_eq!(record.wake_at, None, "{}: a claim clears the wake-up", record.id);
        assert_eq!(&get(store, &record.id).await, record, "the claim is stored as returned");
    }
    assert_eq!(get(store, "wake/future").await.wake_at, Some(1_001), "not claimed, not changed");
    assert_eq!(get(store, "wake/never").await.wake_at, Some(NEVER));

    let claimed = store.claim("wake-w2", &names(&[wf]), 1_001, 2_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), ["wake/future"]);
    assert_eq!(claimed[0].wake_at, None);

    // Every lease has lapsed long ago; the NEVER one still waits.
    let claimed = store.claim("wake-w3", &names(&[wf]), NEVER - 1, NEVER - 1, 10).await.unwrap();
    assert_eq!(ids(&claimed), ["wake/none", "wake/past", "wake/equal", "wake/future", "wake/min"]);
    assert_eq!(get(store, "wake/never").await.owner, None);
}

/// SetWake sets or clears the wake-up and nothing else; a no-op on an unknown id.
async fn check_set_wake(store: &dyn Store) {
    let wf = "setwake_wf";
    let (a, b) = (instance("setwake/a", wf, 1), instance("setwake/b", wf, 2));
    store.write(&[create(a.clone()), create(b.clone())]).await.unwrap();
    store.write(&[set_wake(&a.id, Some(5_000)), set_wake(&b.id, Some(NEVER))]).await.unwrap();
    assert_eq!(get(store, &a.id).await, InstanceRecord { wake_at: Some(5_000), ..a.clone() });
    assert_eq!(get(store, &b.id).await, InstanceRecord { wake_at: Some(NEVER), ..b.clone() });
    assert!(store.claim("setwake-w", &names(&[wf]), 4_999, 10_000, 10).await.unwrap().is_empty());

    store
        .write(&[set_wake(&b.id, None), set_wake(&a.id, Some(100)), set_wake("setwake/nobody", Some(1))])
        .await
        .unwrap();
    assert_eq!(get(store, &b.id).await, b);
    assert_eq!(store.instance("setwake/nobody").await.unwrap(), None);
    let claimed = store.claim("setwake-w", &names(&[wf]), 100, 10_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), ["setwake/a", "setwake/b"]);

    // On a claimed instance it leaves the lease alone.
    store.write(&[set_wake(&a.id, Some(7))]).await.unwrap();
    let now = get(store, &a.id).await;
    assert_eq!((now.owner.as_deref(), now.lease_until, now.wake_at), (Some("setwake-w"), Some(10_000), Some(7)));
    assert!(store.claim("setwake-other", &names(&[wf]), 200, 10_000, 10).await.unwrap().is_empty());
}

/// Evict drops the owner and lease and sets the wake-up, nothing else; the instance is claimable
/// by anyone once its wake-up comes, long before the old lease would have lapsed, and one waiting
/// for [`NEVER`] is woken by an event. A no-op on an unknown id.
async fn check_evict(store: &dyn Store) {
    let wf = "evict_wf";
    let a = InstanceRecord { custom_status: Some("\"cs\"".into()), ..instance("evict/a", wf, 1) };
    let a = with_status(a, RuntimeStatus::Running);
    let b = instance("evict/b", wf, 2);
    store.write(&[create(a.clone()), create(b.clone())]).await.unwrap();
    assert_eq!(store.claim("evict-w1", &names(&[wf]), 10, 100_000, 10).await.unwrap().len(), 2);

    store.write(&[evict(&a.id, 500), evict(&b.id, NEVER), evict("evict/nobody", 1)]).await.unwrap();
    assert_eq!(get(store, &a.id).await, InstanceRecord { wake_at: Some(500), ..a.clone() });
    assert_eq!(get(store, &b.id).await, InstanceRecord { wake_at: Some(NEVER), ..b.clone() });
    assert_eq!(store.instance("evict/nobody").await.unwrap(), None);
    assert_eq!(store.renew_leases("evict-w1", 200_000).await.unwrap(), 0, "the evicting worker holds nothing");

    assert!(store.claim("evict-w2", &names(&[wf]), 499, 10_000_000, 10).await.unwrap().is_empty());
    let claimed = store.claim("evict-w2", &names(&[wf]), 500, 10_000_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), ["evict/a"]);
    assert_eq!(claimed[0].wake_at, None);

    assert!(store.claim("evict-w3", &names(&[wf]), 1_000_000, 10_000_000, 10).await.unwrap().is_empty());
    store.write(&[add_event(&b.id, "wake up", "1", 2_000)]).await.unwrap();
    assert_eq!(get(store, &b.id).await.wake_at, Some(2_000), "the event brings the wake-up forward");
    assert!(store.claim("evict-w3", &names(&[wf]), 1_999, 10_000_000, 10).await.unwrap().is_empty());
    let claimed = store.claim("evict-w3", &names(&[wf]), 2_000, 10_000_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), ["evict/b"]);
    assert_eq!(event_names(&store.events(&b.id).await.unwrap()), ["wake up"]);
}

/// ContinueAsNew restarts an instance: new input and generation, status Running, no output or
/// error, everything else kept; the journal of older generations is gone (the new one and any
/// later one stay), consumed events are gone and unconsumed ones stay; other instances are
/// untouched; a no-op on an unknown id, whose journal stays. In a batch it applies in op order.
async fn check_continue_as_new(store: &dyn Store) {
    let wf = "can_wf";
    let x = InstanceRecord {
        status: RuntimeStatus::Completed,
        output: Some("\"out\"".into()),
        error: Some(r#"{"e":1}"#.into()),
        generation: 1,
        owner: Some("can-w".into()),
        lease_until: Some(50),
        parent_id: Some("can/parent".into()),
        custom_status: Some("\"cs\"".into()),
        ..instance("can/x", wf, 1)
    };
    let (x_id, y_id) = (x.id.as_str(), "can/y");
    let mut ops = vec![create(x.clone()), create(instance(y_id, wf, 2))];
    ops.extend([(0, 0), (0, 1), (1, 0), (2, 0), (3, 5)].map(|(g, s)| put(record(x_id, g, s))));
    ops.extend([put(record(y_id, 0, 0)), put(record(y_id, 1, 0))]);
    ops.extend([
        add_event(x_id, "kept", "1", 10),
        add_event(x_id, "used", "2", 11),
        add_event(y_id, "y-used", "3", 12),
    ]);
    store.write(&ops).await.unwrap();
    let x_events = store.events(x_id).await.unwrap();
    let y_events = store.events(y_id).await.unwrap();
    store.write(&[consume(x_id, x_events[1].event_id, 1, 0), consume(y_id, y_events[0].event_id, 0, 1)]).await.unwrap();
    let before = get(store, x_id).await;

    store.write(&[continue_as_new(x_id, "\"next\"", 2, 77), continue_as_new("can/nobody", "0", 9, 1)]).await.unwrap();
    let expected = InstanceRecord {
        status: RuntimeStatus::Running,
        input: "\"next\"".into(),
        generation: 2,
        output: None,
        error: None,
        updated_at: 77,
        ..before
    };
    assert_eq!(get(store, x_id).await, expected);
    assert!(store.journal(x_id, 0).await.unwrap().is_empty());
    assert!(store.journal(x_id, 1).await.unwrap().is_empty());
    assert_eq!(store.journal(x_id, 2).await.unwrap(), vec![record(x_id, 2, 0)], "the new generation stays");
    assert_eq!(store.journal(x_id, 3).await.unwrap(), vec![record(x_id, 3, 5)], "a later one too");
    assert_eq!(store.journal(y_id, 0).await.unwrap(), vec![record(y_id, 0, 0)], "other instances keep theirs");
    assert_eq!(store.journal(y_id, 1).await.unwrap(), vec![record(y_id, 1, 0)]);
    assert_eq!(store.events(x_id).await.unwrap(), x_events[..1], "unconsumed events stay");
    assert!(store.events(y_id).await.unwrap().is_empty());
    assert_eq!(store.instance("can/nobody").await.unwrap(), None);

    store.write(&[put(record("can/nobody", 0, 0)), continue_as_new("can/nobody", "0", 5, 1)]).await.unwrap();
    assert_eq!(store.journal("can/nobody", 0).await.unwrap(), vec![record("can/nobody", 0, 0)]);

    // In op order: a restart before the create does nothing; records written before a restart go
    // with their generation, records written after it stay, even of an older generation.
    let z = instance("can/z", wf, 3);
    store
        .write(&[
            continue_as_new(&z.id, "\"too early\"", 1, 78),
            put(record(&z.id, 0, 0)),
            create(z.clone()),
            add_event(&z.id, "z1", "1", 79),
            put(record(&z.id, 0, 1)),
            continue_as_new(&z.id, "\"z again\"", 1, 80),
            put(record(&z.id, 0, 2)),
            put(record(&z.id, 1, 0)),
            add_event(&z.id, "z2", "2", 81),
        ])
        .await
        .unwrap();
    let z_now = get(store, &z.id).await;
    assert_eq!(
        z_now,
        InstanceRecord {
            status: RuntimeStatus::Running,
            input: "\"z again\"".into(),
            generation: 1,
            updated_at: 80,
            wake_at: Some(81),
            ..z.clone()
        }
    );
    assert_eq!(store.journal(&z.id, 0).await.unwrap(), vec![record(&z.id, 0, 2)]);
    assert_eq!(store.journal(&z.id, 1).await.unwrap(), vec![record(&z.id, 1, 0)]);
    let z_events = store.events(&z.id).await.unwrap();
    assert_eq!(event_names(&z_events), ["z1", "z2"]);

    // Restarting twice into one generation; consuming before and after a restart.
    store
        .write(&[
            put(record(&z.id, 1, 1)),
            consume(&z.id, z_events[0].event_id, 1, 2),
            continue_as_new(&z.id, "3", 3, 82),
            put(record(&z.id, 3, 0)),
            consume(&z.id, z_events[1].event_id, 3, 1),
            continue_as_new(&z.id, "3 again", 3, 83),
            add_event(&z.id, "z3", "3", 84),
        ])
        .await
        .unwrap();
    assert!(store.journal(&z.id, 0).await.unwrap().is_empty());
    assert!(store.journal(&z.id, 1).await.unwrap().is_empty());
    assert_eq!(store.journal(&z.id, 3).await.unwrap(), vec![record(&z.id, 3, 0)], "its own generation stays");
    let z_events = store.events(&z.id).await.unwrap();
    assert_eq!(event_names(&z_events), ["z3"]);
    assert_eq!((get(store, &z.id).await.input.as_str(), get(store, &z.id).await.updated_at), ("3 again", 83));

    // Event ids are not reused after the newest event is consumed and deleted.
    let newest = z_events[0].event_id;
    store.write(&[consume(&z.id, newest, 3, 2)]).await.unwrap();
    store.write(&[continue_as_new(&z.id, "4", 4, 85)]).await.unwrap();
    store.write(&[add_event(&z.id, "z4", "4", 86)]).await.unwrap();
    let z_events = store.events(&z.id).await.unwrap();
    assert_eq!(event_names(&z_events), ["z4"]);
    assert!(z_events[0].event_id > newest, "{} reuses {newest}", z_events[0].event_id);
}

/// SetCustomStatus sets or clears the custom status (verbatim) and the change time, nothing else;
/// a no-op on an unknown id.
async fn check_custom_status(store: &dyn Store, nul: Nul) {
    let a = instance("custom/a", "custom_wf", 1);
    store
        .write(&[
            create(a.clone()),
            set_custom(&a.id, Some(r#"{"step":1}"#), 10),
            set_custom(&a.id, Some("\"two\""), 11),
        ])
        .await
        .unwrap();
    assert_eq!(
        get(store, &a.id).await,
        InstanceRecord { custom_status: Some("\"two\"".into()), updated_at: 11, ..a.clone() }
    );
    store.write(&[set_custom(&a.id, None, 12), set_custom("custom/nobody", Some("1"), 1)]).await.unwrap();
    assert_eq!(get(store, &a.id).await, InstanceRecord { updated_at: 12, ..a.clone() });
    assert_eq!(store.instance("custom/nobody").await.unwrap(), None);

    let odd = match nul {
        Nul::Kept => "  { not json \u{0} ☕ ",
        Nul::Refused => {
            let refused = store.write(&[set_custom(&a.id, Some("\u{0}"), 13)]).await;
            assert!(matches!(refused, Err(StoreError::Backend(ref m)) if m.contains("NUL")), "{refused:?}");
            assert_eq!(get(store, &a.id).await.updated_at, 12, "the refused batch changed nothing");
            "  { not json ☕ "
        }
    };
    store.write(&[set_custom(&a.id, Some(odd), 13)]).await.unwrap();
    assert_eq!(get(store, &a.id).await.custom_status.as_deref(), Some(odd));
    store
        .write(&[WriteOp::Finish {
            id: a.id.clone(),
            status: RuntimeStatus::Completed,
            output: Some("1".into()),
            error: None,
            updated_at: 14,
        }])
        .await
        .unwrap();
    assert_eq!(get(store, &a.id).await.custom_status.as_deref(), Some(odd), "finishing keeps it");
}

/// The new ops apply in batch order too, among themselves and with the others: an op on an
/// instance before its create does nothing (an event before it is still kept).
async fn check_new_ops_in_order(store: &dyn Store) {
    let wf = "neworder_wf";
    let (x, y) = (instance("neworder/x", wf, 1), instance("neworder/y", wf, 2));
    store
        .write(&[
            set_wake(&x.id, Some(1)),
            set_custom(&y.id, Some("\"early\""), 1),
            evict(&y.id, 5),
            add_event(&y.id, "before", "0", 3),
            create(x.clone()),
            add_event(&x.id, "e1", "1", 40),
            set_wake(&x.id, None),
            create(y.clone()),
            set_custom(&x.id, Some("\"a\""), 41),
            add_event(&x.id, "e2", "2", 42),
            evict(&x.id, 60),
            WriteOp::SetStatus { id: x.id.clone(), status: RuntimeStatus::Running, updated_at: 43 },
            continue_as_new(&y.id, "\"again\"", 1, 44),
            set_custom(&y.id, Some("\"b\""), 45),
        ])
        .await
        .unwrap();
    assert_eq!(
        get(store, &x.id).await,
        InstanceRecord {
            status: RuntimeStatus::Running,
            custom_status: Some("\"a\"".into()),
            wake_at: Some(60),
            updated_at: 43,
            ..x.clone()
        }
    );
    assert_eq!(
        get(store, &y.id).await,
        InstanceRecord {
            status: RuntimeStatus::Running,
            input: "\"again\"".into(),
            generation: 1,
            custom_status: Some("\"b\"".into()),
            updated_at: 45,
            ..y.clone()
        }
    );
    assert_eq!(event_names(&store.events(&x.id).await.unwrap()), ["e1", "e2"]);
    assert_eq!(event_names(&store.events(&y.id).await.unwrap()), ["before"]);
}

/// A small deterministic generator (xorshift), so a failure replays.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Random batches (big ones too, with repeated ids and keys in one batch, every kind of op
/// interleaved), claims and lease calls, applied to the store and to a fresh in-memory store: every
/// answer and the final state must be the same. This is what holds a store that regroups a batch's
/// ops to "same effect as one by one".
///
/// Some batches carry `AssertStatus` (and `AssertOwner`) ops that may or may not hold: a refused
/// batch must be refused alike (the same `Conflict`, or the same fenced ids) and change nothing.
/// Each round also lists instances with a random query of the reference's workflows.
///
/// Event ids: the store has counted events before this check, so its ids are the reference's
/// shifted by the offset one probe event measures (both assign consecutive ids, as the memory
/// store does). ConsumeEvent ops are written with the reference's ids, shifted for the store; they
/// name events of any instance, events added earlier in the same batch or later in it, and ids
/// that are never assigned.
///
/// PostgreSQL's ids come from a sequence, which skips the ids of a rolled-back batch, so they are
/// only increasing in general; here they are consecutive all the same: the store takes a batch's
/// ids in one statement, no other writer takes any meanwhile, and no batch of this check fails.
async fn check_matches_reference(store: &dyn Store) {
    let reference = MemoryStore::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ids: Vec<String> = (0..60).map(|i| format!("ref/{i:02}")).collect();
    let workflows = names(&["ref_wf_a", "ref_wf_b"]);
    let workers = ["ref-w1", "ref-w2", "ref-w3"];
    let worker_of = |rng: &mut Rng| (*rng.pick(&workers)).to_owned();
    let activities = ["ref_act_a", "ref_act_b"];
    // Tasks the last task claims handed out, to complete (or try to).
    let mut running: Vec<TaskRecord> = Vec::new();
    let statuses = RuntimeStatus::ALL;
    let payloads = ["null", r#"{"k":"v"}"#, "\"ü🦀\"", "not json", ""];

    let probe = [add_event("ref/probe", "probe", "null", 0)];
    reference.write(&probe).await.unwrap();
    store.write(&probe).await.unwrap();
    let offset = store.events("ref/probe").await.unwrap()[0].event_id - 1;
    let shifted = |mut events: Vec<EventRecord>| {
        for event in &mut events {
            event.event_id -= offset;
        }
        events
    };
    // The instance of each reference event, by id - 1.
    let mut event_owners = vec!["ref/probe".to_owned()];

    let mut clock = 0_i64;
    for round in 0..60 {
        clock += 10;
        let size = *rng.pick(&[1, 2, 5, 40, 255, 257, 700, 1_100]);
        let mut ops = Vec::with_capacity(size);
        let mut store_ops = Vec::with_capacity(size);
        for _ in 0..size {
            let id = rng.pick(&ids).clone();
            let payload = rng.pick(&payloads).to_string();
            let wake = match rng.below(3) {
                0 => None,
                1 => Some(NEVER),
                _ => Some(clock + rng.below(40) as i64 - 10),
            };
            let op = match rng.below(21) {
                0 | 1 => create(InstanceRecord {
                    workflow: rng.pick(&workflows).clone(),
                    status: *rng.pick(&statuses),
                    input: payload,
                    created_at: clock + rng.below(5) as i64,
                    generation: rng.below(3) as u32,
                    parent_id: Some(rng.pick(&ids).clone()).filter(|_| rng.below(2) == 0),
                    custom_status: Some(format!("c{round}")).filter(|_| rng.below(2) == 0),
                    wake_at: wake,
                    ..instance(&id, "", 0)
                }),
                2..=5 => put(JournalRecord {
                    status: *rng.pick(&[RecordStatus::Retrying, RecordStatus::Completed, RecordStatus::Failed]),
                    payload: Some(format!("{payload}#{round}")),
                    attempt: rng.below(4) as u32,
                    recorded_at: clock,
                    parallel_group: Some(rng.below(20) as u32).filter(|_| rng.below(2) == 0),
                    ..record(&id, rng.below(4) as u32, rng.below(20) as u32)
                }),
                6 => WriteOp::SetStatus { id, status: *rng.pick(&statuses), updated_at: clock + rng.below(5) as i64 },
                7 => WriteOp::Finish {
                    id,
                    status: *rng.pick(&statuses),
                    output: Some(payload).filter(|_| rng.below(2) == 0),
                    error: Some(format!("e{round}")).filter(|_| rng.below(2) == 0),
                    updated_at: clock,
                },
                8 | 9 => {
                    event_owners.push(id.clone());
                    add_event(&id, &format!("n{}", rng.below(3)), &payload, clock + rng.below(5) as i64)
                }
                10 | 11 => {
                    // Mostly events that exist (or will, later in the batch), some that never will.
                    let known = event_owners.len() as u64;
                    let event_id = rng.below(known + 4) as i64 - 1;
                    let owner = usize::try_from(event_id - 1).ok().and_then(|i| event_owners.get(i));
                    let instance_id = match owner {
                        Some(owner) if rng.below(3) != 0 => owner.clone(),
                        _ => id,
                    };
                    let (generation, seq) = (rng.below(4) as u32, rng.below(20) as u32);
                    let op = consume(&instance_id, event_id, generation, seq);
                    store_ops.push(consume(&instance_id, event_id + offset, generation, seq));
                    ops.push(op);
                    continue;
                }
                12 => set_wake(&id, wake),
                13 => evict(&id, wake.unwrap_or(clock)),
                14 => continue_as_new(&id, &payload, rng.below(4) as u32, clock + rng.below(5) as i64),
                15 => set_custom(&id, Some(payload.as_str()).filter(|_| rng.below(3) != 0), clock),
                16..=18 => enqueue(TaskRecord {
                    input: payload,
                    start_to_close_ms: Some(rng.below(100) as i64).filter(|_| rng.below(2) == 0),
                    heartbeat_timeout_ms: Some(rng.below(100) as i64).filter(|_| rng.below(2) == 0),
                    // What an enqueue ignores.
                    owner: Some(worker_of(&mut rng)).filter(|_| rng.below(4) == 0),
                    lease_until: Some(clock).filter(|_| rng.below(4) == 0),
                    ..task(
                        &id,
                        rng.below(4) as u32,
                        rng.below(6) as u32,
                        rng.pick::<&str>(&activities),
                        rng.below(4) as u32,
                        clock + rng.below(30) as i64 - 10,
                    )
                }),
                19 => delete_task(&id, rng.below(4) as u32, rng.below(6) as u32),
                _ => purge(&id),
            };
            store_ops.push(op.clone());
            ops.push(op);
        }
        // Assertions that may or may not hold (mostly of instances that exist, allowing their
        // status, or fences of owned ones by their owner), anywhere in the batch.
        if rng.below(3) == 0 {
            let stored =
                reference.list(&InstanceQuery { limit: usize::MAX, ..InstanceQuery::default() }).await.unwrap();
            let owned: Vec<&InstanceRecord> = stored.iter().filter(|i| i.owner.is_some()).collect();
            for _ in 0..=rng.below(3) {
                let op = if rng.below(6) == 0 {
                    match owned.get(rng.below(owned.len() as u64 + 1) as usize) {
                        Some(held) if rng.below(4) != 0 => fence(&held.id, held.owner.as_deref().unwrap_or_default()),
                        _ => {
                            let id = rng.pick(&ids).clone();
                            fence(&id, &worker_of(&mut rng))
                        }
                    }
                } else {
                    let (id, status) = match stored.get(rng.below(stored.len() as u64 * 4 / 3 + 1) as usize) {
                        Some(instance) => (instance.id.clone(), Some(instance.status)),
                        None => (rng.pick(&ids).clone(), None),
                    };
                    let mut allowed: Vec<RuntimeStatus> = statuses.into_iter().filter(|_| rng.below(3) == 0).collect();
                    allowed.extend(status.filter(|_| rng.below(5) != 0));
                    assert_status(&id, &allowed)
                };
                let at = rng.below(ops.len() as u64 + 1) as usize;
                ops.insert(at, op.clone());
                store_ops.insert(at, op);
            }
        }
        let owners_before = event_owners.len();
        match (reference.write(&ops).await, store.write(&store_ops).await) {
            (Ok(expected), Ok(written)) => assert_eq!(written, expected, "round {round}: the same creates are skipped"),
            (Err(StoreError::Conflict { id, status }), Err(StoreError::Conflict { id: got, status: found })) => {
                assert_eq!((got, found), (id, status), "round {round}: the same conflict");
                event_owners.truncate(owners_before);
            }
            (Err(StoreError::Fenced(expected)), Err(StoreError::Fenced(fenced))) => {
                assert_eq!(fenced, expected, "round {round}: the same fenced ids");
                event_owners.truncate(owners_before);
            }
            (expected, written) => panic!("round {round}: expected {expected:?}, the store wrote {written:?}"),
        }
        // Mostly recent times: an instance is often purged and created again later.
        let time = |rng: &mut Rng| Some(clock - rng.below(clock as u64 / 2 + 1) as i64).filter(|_| rng.below(4) == 0);
        let query = InstanceQuery {
            statuses: statuses.into_iter().filter(|_| rng.below(2) == 0).filter(|_| round % 3 == 0).collect(),
            workflow: Some(rng.pick(&workflows).clone()),
            created_after: time(&mut rng),
            created_before: time(&mut rng),
            updated_before: time(&mut rng),
            parent_id: Some(rng.pick(&ids).clone()).filter(|_| rng.below(5) == 0),
            after: time(&mut rng).map(|at| (at, rng.pick(&ids).clone())),
            limit: *rng.pick(&[0, 1, 3, 10, 1_000, 1_000, 1_000]),
        };
        assert_eq!(
            store.list(&query).await.unwrap(),
            reference.list(&query).await.unwrap(),
            "round {round}: {query:?}"
        );
        for _ in 0..3 {
            let id = rng.pick(&ids);
            let expected = reference.events(id).await.unwrap();
            assert_eq!(shifted(store.events(id).await.unwrap()), expected, "round {round}: events of {id}");
        }

        let worker = *rng.pick(&workers);
        match rng.below(6) {
            0 => {
                let wanted = if rng.below(2) == 0 { workflows.clone() } else { workflows[..1].to_vec() };
                let (now, until, limit) = (clock + rng.below(30) as i64, clock + 25, rng.below(12) as usize);
                let expected = reference.claim(worker, &wanted, now, until, limit).await.unwrap();
                assert_eq!(store.claim(worker, &wanted, now, until, limit).await.unwrap(), expected, "round {round}");
            }
            1 => {
                let until = clock + 40;
                let expected = reference.renew_leases(worker, until).await.unwrap();
                assert_eq!(store.renew_leases(worker, until).await.unwrap(), expected, "round {round}");
            }
            2 => {
                let expected = reference.release_leases(worker).await.unwrap();
                assert_eq!(store.release_leases(worker).await.unwrap(), expected, "round {round}");
            }
            3 => {
                let wanted = if rng.below(2) == 0 { names(&activities) } else { names(&activities[1..]) };
                let (now, until, limit) = (clock + rng.below(30) as i64, clock + 25, rng.below(12) as usize);
                let expected = reference.claim_tasks(worker, &wanted, now, until, limit).await.unwrap();
                let claimed = store.claim_tasks(worker, &wanted, now, until, limit).await.unwrap();
                assert_eq!(claimed, expected, "round {round}: task claims");
                running.extend(claimed);
            }
            _ => {
                // Mostly the right worker and attempt, sometimes not; a task may have been replaced,
                // deleted, taken over or completed since.
                for _ in 0..rng.below(4) {
                    let Some(task) = running.pop() else { break };
                    let worker = match (task.owner.clone(), rng.below(4)) {
                        (Some(owner), 0..=2) => owner,
                        _ => worker_of(&mut rng),
                    };
                    let attempt = if rng.below(4) == 0 { rng.below(4) as u32 } else { task.attempt };
                    let done = TaskOutcome {
                        succeeded: rng.below(2) == 0,
                        payload: format!("{}#{round}", rng.pick(&payloads)),
                        finished_at: clock,
                    };
                    let (id, generation, seq) = (&task.instance_id, task.generation, task.seq);
                    let expected = reference.complete_task(&worker, id, generation, seq, attempt, &done).await.unwrap();
                    let completed = store.complete_task(&worker, id, generation, seq, attempt, &done).await.unwrap();
                    assert_eq!(completed, expected, "round {round}: completing {id} {generation} {seq}");
                }
            }
        }
        let some: Vec<String> = (0..3).map(|_| rng.pick(&ids).clone()).collect();
        let expected = reference.finished_tasks(&some).await.unwrap();
        assert_eq!(store.finished_tasks(&some).await.unwrap(), expected, "round {round}: finished tasks of {some:?}");
    }
    assert_eq!(store.finished_tasks(&ids).await.unwrap(), reference.finished_tasks(&ids).await.unwrap());
    for workflow in &workflows {
        let query = InstanceQuery { workflow: Some(workflow.clone()), limit: 7, ..InstanceQuery::default() };
        assert_eq!(list_pages(store, &query).await, list_pages(&reference, &query).await, "every page of {workflow}");
    }
    assert_eq!(
        claim_everything(store, "ref-final", &activities).await,
        claim_everything(&reference, "ref-final", &activities).await,
        "the unfinished tasks"
    );
    for id in ids.iter().chain([&"ref/probe".to_owned()]) {
        assert_eq!(store.instance(id).await.unwrap(), reference.instance(id).await.unwrap(), "instance {id}");
        for generation in 0..4 {
            assert_eq!(
                store.journal(id, generation).await.unwrap(),
                reference.journal(id, generation).await.unwrap(),
                "journal of {id} generation {generation}"
            );
        }
        assert_eq!(shifted(store.events(id).await.unwrap()), reference.events(id).await.unwrap(), "events of {id}");
    }
}

// ---------------------------------------------------------------------------------------------
// Task queue (distributed activities)
// ---------------------------------------------------------------------------------------------

fn task(id: &str, generation: u32, seq: u32, name: &str, attempt: u32, visible_at: i64) -> TaskRecord {
    TaskRecord {
        instance_id: id.to_owned(),
        generation,
        seq,
        name: name.to_owned(),
        input: format!(r#"{{"seq":{seq},"attempt":{attempt}}}"#),
        attempt,
        start_to_close_ms: None,
        heartbeat_timeout_ms: None,
        visible_at,
        owner: None,
        lease_until: None,
        outcome: None,
    }
}

fn enqueue(task: TaskRecord) -> WriteOp {
    WriteOp::EnqueueTask(task)
}

fn delete_task(id: &str, generation: u32, seq: u32) -> WriteOp {
    WriteOp::DeleteTask { instance_id: id.to_owned(), generation, seq }
}

fn outcome(succeeded: bool, payload: &str, finished_at: i64) -> TaskOutcome {
    TaskOutcome { succeeded, payload: payload.to_owned(), finished_at }
}

/// A task as a claim by `worker` until `lease_until` returns it.
fn claimed(task: &TaskRecord, worker: &str, lease_until: i64) -> TaskRecord {
    TaskRecord { owner: Some(worker.to_owned()), lease_until: Some(lease_until), ..task.clone() }
}

fn task_keys(tasks: &[TaskRecord]) -> Vec<(&str, u32, u32)> {
    tasks.iter().map(|t| (t.instance_id.as_str(), t.generation, t.seq)).collect()
}

/// Claims every unfinished task of `activities`, whatever its visibility or lease, for `worker`
/// (a name of its own), and releases them again: what a store holds unfinished, seen through the
/// trait, as claimed records.
async fn claim_everything(store: &dyn Store, worker: &str, activities: &[&str]) -> Vec<TaskRecord> {
    let claimed = store.claim_tasks(worker, &names(activities), i64::MAX, i64::MAX, 10_000).await.unwrap();
    assert_eq!(store.release_leases(worker).await.unwrap(), claimed.len() as u64);
    claimed
}

/// A queued task comes back from a claim as it was queued, owned by the claimer until the lease
/// it asked for; the owner, lease and outcome of an EnqueueTask are ignored. The lease is live
/// until it lapses strictly before `now`, then another worker takes the task over.
async fn check_tasks_enqueue_and_claim(store: &dyn Store) {
    let act = "taskq_act";
    let full = TaskRecord {
        input: r#"{"order":42,"ü":"🦀"}"#.into(),
        start_to_close_ms: Some(30_000),
        heartbeat_timeout_ms: Some(i64::MAX),
        owner: Some("taskq-ghost".into()),
        lease_until: Some(1_000_000),
        outcome: Some(outcome(true, "1", 5)),
        ..task("taskq/a", u32::MAX, u32::MAX, act, u32::MAX, 10)
    };
    let minimal = task("taskq/b", 0, 0, act, 1, 20);
    store.write(&[enqueue(full.clone()), enqueue(minimal.clone())]).await.unwrap();
    let fresh = TaskRecord { owner: None, lease_until: None, outcome: None, ..full.clone() };
    assert!(store.finished_tasks(&names(&["taskq/a", "taskq/b"])).await.unwrap().is_empty(), "no outcome yet");

    let taken = store.claim_tasks("taskq-w1", &names(&[act]), 20, 100, 10).await.unwrap();
    assert_eq!(taken, vec![claimed(&fresh, "taskq-w1", 100), claimed(&minimal, "taskq-w1", 100)]);

    for now in [50, 100] {
        assert!(store.claim_tasks("taskq-w2", &names(&[act]), now, 200, 10).await.unwrap().is_empty(), "live at {now}");
    }
    assert!(store.claim_tasks("taskq-w1", &names(&[act]), 50, 200, 10).await.unwrap().is_empty(), "not by its owner");
    let retaken = store.claim_tasks("taskq-w2", &names(&[act]), 101, 300, 1).await.unwrap();
    assert_eq!(retaken, vec![claimed(&fresh, "taskq-w2", 300)], "a lapsed lease is taken over");
    let retaken = store.claim_tasks("taskq-w3", &names(&[act]), 101, 300, 10).await.unwrap();
    assert_eq!(retaken, vec![claimed(&minimal, "taskq-w3", 300)]);

    // The old owner reports nothing any more; the new one does.
    let done = outcome(false, r#"{"message":"boom"}"#, 150);
    assert!(!store.complete_task("taskq-w1", "taskq/b", 0, 0, 1, &done).await.unwrap());
    assert!(store.complete_task("taskq-w3", "taskq/b", 0, 0, 1, &done).await.unwrap());
    let finished = store.finished_tasks(&names(&["taskq/b"])).await.unwrap();
    assert_eq!(finished, vec![TaskRecord { outcome: Some(done), ..claimed(&minimal, "taskq-w3", 300) }]);
}

/// Only unfinished tasks of the named activities, visible by `now` (visible at `now` included),
/// unowned or with a lapsed lease, are claimed; the oldest first, ties by (instance, generation,
/// seq), at most `limit`.
async fn check_tasks_claim_filters(store: &dyn Store) {
    let (act, other) = ("taskf_act", "taskf_other_act");
    let tasks = [
        task("taskf/b", 0, 2, act, 1, 10),
        task("taskf/a", 1, 0, act, 1, 10),
        task("taskf/a", 0, 7, act, 1, 10),
        task("taskf/a", 0, 10, act, 1, 10),
        task("taskf/c", 0, 0, act, 1, 5),
        task("taskf/later", 0, 0, act, 1, 101),
        task("taskf/now", 0, 0, act, 1, 100),
        task("taskf/other", 0, 0, other, 1, 1),
    ];
    store.write(&tasks.iter().cloned().map(enqueue).collect::<Vec<_>>()).await.unwrap();

    assert!(store.claim_tasks("taskf-w", &[], 100, 200, 10).await.unwrap().is_empty(), "no activities");
    assert!(store.claim_tasks("taskf-w", &names(&[act]), 100, 200, 0).await.unwrap().is_empty(), "limit 0");
    assert!(store.claim_tasks("taskf-w", &names(&["taskf_nobody"]), 100, 200, 10).await.unwrap().is_empty());
    assert!(store.claim_tasks("taskf-w", &names(&[act]), 4, 200, 10).await.unwrap().is_empty(), "none visible");

    let first = store.claim_tasks("taskf-w1", &names(&[act]), 100, 200, 3).await.unwrap();
    assert_eq!(task_keys(&first), [("taskf/c", 0, 0), ("taskf/a", 0, 7), ("taskf/a", 0, 10)]);
    let second = store.claim_tasks("taskf-w2", &names(&[act]), 100, 200, 10).await.unwrap();
    assert_eq!(task_keys(&second), [("taskf/a", 1, 0), ("taskf/b", 0, 2), ("taskf/now", 0, 0)]);
    assert!(store.claim_tasks("taskf-w3", &names(&[act]), 100, 200, 10).await.unwrap().is_empty());

    // A finished task is never claimed again, even once its lease lapsed.
    assert!(store.complete_task("taskf-w1", "taskf/c", 0, 0, 1, &outcome(true, "null", 150)).await.unwrap());
    let both = store.claim_tasks("taskf-w3", &names(&[other, act]), 201, 300, 10).await.unwrap();
    assert_eq!(
        task_keys(&both),
        [
            ("taskf/other", 0, 0),
            ("taskf/a", 0, 7),
            ("taskf/a", 0, 10),
            ("taskf/a", 1, 0),
            ("taskf/b", 0, 2),
            ("taskf/now", 0, 0),
            ("taskf/later", 0, 0),
        ]
    );
    assert!(both.iter().all(|t| t.owner.as_deref() == Some("taskf-w3") && t.lease_until == Some(300)));
}

/// `complete_task` stores the outcome only for the task's owner, at the task's attempt, once; a
/// missing task reports nothing. A stored outcome is listed by `finished_tasks` for its instance
/// only, with the task as it was. A completion is one commit; a refused one is none.
async fn check_tasks_complete(store: &dyn Store) {
    let act = "taskd_act";
    let (a, b) = (task("taskd/x", 0, 1, act, 2, 10), task("taskd/y", 3, 4, act, 1, 10));
    store.write(&[enqueue(a.clone()), enqueue(b.clone())]).await.unwrap();
    assert_eq!(store.claim_tasks("taskd-w", &names(&[act]), 10, 100, 10).await.unwrap().len(), 2);
    let done = outcome(true, r#"{"paid":true}"#, 42);

    let before = store.stats();
    assert!(!store.complete_task("taskd-other", "taskd/x", 0, 1, 2, &done).await.unwrap(), "wrong worker");
    assert!(!store.complete_task("taskd-w", "taskd/x", 0, 1, 1, &done).await.unwrap(), "wrong attempt");
    assert!(!store.complete_task("taskd-w", "taskd/x", 0, 1, 3, &done).await.unwrap(), "wrong attempt");
    assert!(!store.complete_task("taskd-w", "taskd/x", 1, 1, 2, &done).await.unwrap(), "wrong generation");
    assert!(!store.complete_task("taskd-w", "taskd/x", 0, 2, 2, &done).await.unwrap(), "wrong seq");
    assert!(!store.complete_task("taskd-w", "taskd/nobody", 0, 1, 2, &done).await.unwrap(), "no such task");
    assert_eq!(store.stats(), before, "refused completions are not commits");
    assert!(store.finished_tasks(&names(&["taskd/x", "taskd/y"])).await.unwrap().is_empty());

    // Past its lease but not taken over: still the owner's to report.
    assert!(store.complete_task("taskd-w", "taskd/x", 0, 1, 2, &done).await.unwrap());
    let after = store.stats();
    assert_eq!((after.commits - before.commits, after.ops - before.ops), (1, 1), "a completion is one commit");
    let second = outcome(false, r#"{"late":1}"#, 43);
    assert!(!store.complete_task("taskd-w", "taskd/x", 0, 1, 2, &second).await.unwrap(), "already completed");
    assert_eq!(store.stats(), after);

    let x_done = TaskRecord { outcome: Some(done.clone()), ..claimed(&a, "taskd-w", 100) };
    assert_eq!(store.finished_tasks(&names(&["taskd/x"])).await.unwrap(), vec![x_done.clone()]);
    assert!(store.finished_tasks(&names(&["taskd/y"])).await.unwrap().is_empty(), "other instances' not listed");
    assert!(store.finished_tasks(&[]).await.unwrap().is_empty());
    assert!(store.finished_tasks(&names(&["taskd/nobody"])).await.unwrap().is_empty());

    assert!(store.complete_task("taskd-w", "taskd/y", 3, 4, 1, &second).await.unwrap());
    let y_done = TaskRecord { outcome: Some(second), ..claimed(&b, "taskd-w", 100) };
    let both = store.finished_tasks(&names(&["taskd/y", "taskd/nobody", "taskd/x", "taskd/y"])).await.unwrap();
    assert_eq!(both, vec![x_done, y_done], "by key, each once");

    // Reads and claims are not commits.
    let before = store.stats();
    store.claim_tasks("taskd-w", &names(&[act]), 1_000, 2_000, 10).await.unwrap();
    store.finished_tasks(&names(&["taskd/x"])).await.unwrap();
    assert_eq!(store.stats(), before, "task claims and reads are not counted");
}

/// Queueing a task that exists with the same or a later attempt leaves it as it is (owner, lease
/// and outcome included); with an earlier attempt it is replaced by a fresh one, unowned and
/// without an outcome.
async fn check_tasks_enqueue_attempts(store: &dyn Store) {
    let act = "taska_act";
    let first = TaskRecord { start_to_close_ms: Some(5), ..task("taska/a", 0, 0, act, 1, 10) };
    store.write(&[enqueue(first.clone())]).await.unwrap();
    assert_eq!(store.claim_tasks("taska-w", &names(&[act]), 10, 100, 10).await.unwrap().len(), 1);
    // Re-queued while it runs (a replaying owner): the run goes on.
    let again = TaskRecord { input: "\"changed\"".into(), visible_at: 0, ..first.clone() };
    store.write(&[enqueue(again.clone()), enqueue(TaskRecord { attempt: 0, ..again.clone() })]).await.unwrap();
    assert!(store.claim_tasks("taska-w2", &names(&[act]), 50, 200, 10).await.unwrap().is_empty(), "still leased");
    let done = outcome(true, "7", 60);
    assert!(store.complete_task("taska-w", "taska/a", 0, 0, 1, &done).await.unwrap());

    // Re-queued once finished: the outcome is found, not erased.
    store.write(&[enqueue(again.clone())]).await.unwrap();
    let kept = TaskRecord { outcome: Some(done.clone()), ..claimed(&first, "taska-w", 100) };
    assert_eq!(store.finished_tasks(&names(&["taska/a"])).await.unwrap(), vec![kept.clone()]);
    store.write(&[enqueue(TaskRecord { attempt: 0, ..again.clone() })]).await.unwrap();
    assert_eq!(store.finished_tasks(&names(&["taska/a"])).await.unwrap(), vec![kept]);

    // The next attempt replaces it.
    let retry = TaskRecord {
        name: "taska_renamed_act".into(),
        input: "\"retry\"".into(),
        heartbeat_timeout_ms: Some(9),
        owner: Some("taska-ghost".into()),
        lease_until: Some(i64::MAX),
        outcome: Some(done),
        ..task("taska/a", 0, 0, act, 2, 70)
    };
    store.write(&[enqueue(retry.clone())]).await.unwrap();
    assert!(store.finished_tasks(&names(&["taska/a"])).await.unwrap().is_empty(), "the outcome went with it");
    assert!(!store.complete_task("taska-w", "taska/a", 0, 0, 1, &outcome(true, "1", 71)).await.unwrap());
    assert!(store.claim_tasks("taska-w2", &names(&[act]), 80, 200, 10).await.unwrap().is_empty(), "renamed");
    let taken = store.claim_tasks("taska-w2", &names(&["taska_renamed_act"]), 70, 200, 10).await.unwrap();
    let fresh = TaskRecord { owner: None, lease_until: None, outcome: None, ..retry };
    assert_eq!(taken, vec![claimed(&fresh, "taska-w2", 200)], "unowned and visible at once");
}

/// Task ops apply in batch order: queue then delete leaves nothing, delete then queue leaves a
/// fresh task; of several queues of one key the first of the latest attempt wins; a delete of a
/// missing task does nothing.
async fn check_tasks_in_batch(store: &dyn Store) {
    let act = "taskb_act";
    let done_before = task("taskb/b", 0, 0, act, 1, 10);
    store.write(&[enqueue(done_before.clone())]).await.unwrap();
    assert_eq!(store.claim_tasks("taskb-w", &names(&[act]), 10, 100, 10).await.unwrap().len(), 1);
    assert!(store.complete_task("taskb-w", "taskb/b", 0, 0, 1, &outcome(true, "1", 20)).await.unwrap());

    let input = |task: TaskRecord, input: &str| TaskRecord { input: input.to_owned(), ..task };
    store
        .write(&[
            enqueue(task("taskb/a", 0, 0, act, 1, 10)),
            delete_task("taskb/a", 0, 0),
            delete_task("taskb/b", 0, 0),
            enqueue(input(task("taskb/b", 0, 0, act, 1, 11), "\"fresh\"")),
            enqueue(task("taskb/c", 0, 0, act, 1, 12)),
            enqueue(input(task("taskb/c", 0, 0, act, 3, 12), "\"first of 3\"")),
            enqueue(input(task("taskb/c", 0, 0, act, 3, 12), "\"second of 3\"")),
            enqueue(task("taskb/c", 0, 0, act, 2, 12)),
            enqueue(task("taskb/d", 0, 0, act, 1, 13)),
            delete_task("taskb/d", 0, 0),
            enqueue(task("taskb/d", 0, 0, act, 5, 13)),
            delete_task("taskb/d", 0, 0),
            enqueue(input(task("taskb/d", 0, 0, act, 1, 13), "\"last\"")),
            delete_task("taskb/nobody", 0, 0),
            delete_task("taskb/d", 0, 1),
        ])
        .await
        .unwrap();
    assert!(store.finished_tasks(&names(&["taskb/b"])).await.unwrap().is_empty(), "deleted, then queued afresh");
    let left = claim_everything(store, "taskb-w2", &[act]).await;
    let expected = [
        input(task("taskb/b", 0, 0, act, 1, 11), "\"fresh\""),
        input(task("taskb/c", 0, 0, act, 3, 12), "\"first of 3\""),
        input(task("taskb/d", 0, 0, act, 1, 13), "\"last\""),
    ];
    let expected: Vec<TaskRecord> = expected.iter().map(|t| claimed(t, "taskb-w2", i64::MAX)).collect();
    assert_eq!(left, expected);

    // In separate batches too; and a queue after its instance's restart.
    store.write(&[delete_task("taskb/b", 0, 0)]).await.unwrap();
    assert_eq!(task_keys(&claim_everything(store, "taskb-w3", &[act]).await), [("taskb/c", 0, 0), ("taskb/d", 0, 0)]);
}

/// Finish deletes every task of its instance (finished or not, of every generation, existing
/// instance or not), none of another; in a batch, only the tasks queued before it.
async fn check_tasks_finish(store: &dyn Store) {
    let act = "taskfin_act";
    let (x, y) = ("taskfin/x", "taskfin/y");
    store
        .write(&[
            create(instance(x, "taskfin_wf", 1)),
            enqueue(task(x, 0, 0, act, 1, 5)),
            enqueue(task(x, 0, 1, act, 1, 10)),
            enqueue(task(x, 2, 0, act, 1, 10)),
            enqueue(task(y, 0, 0, act, 1, 10)),
            enqueue(task("taskfin/ghost", 0, 0, act, 1, 10)),
        ])
        .await
        .unwrap();
    assert_eq!(store.claim_tasks("taskfin-w", &names(&[act]), 10, 100, 1).await.unwrap().len(), 1);
    assert!(store.complete_task("taskfin-w", x, 0, 0, 1, &outcome(true, "1", 20)).await.unwrap());
    let finish = |id: &str, at: i64| WriteOp::Finish {
        id: id.to_owned(),
        status: RuntimeStatus::Completed,
        output: Some("1".into()),
        error: None,
        updated_at: at,
    };
    store.write(&[finish(x, 30), finish("taskfin/ghost", 30)]).await.unwrap();
    assert!(store.finished_tasks(&names(&[x])).await.unwrap().is_empty());
    assert_eq!(task_keys(&claim_everything(store, "taskfin-w2", &[act]).await), [(y, 0, 0)]);
    assert_eq!(get(store, x).await.status, RuntimeStatus::Completed);

    // In one batch: a task queued before the Finish goes, one queued after it stays.
    let z = "taskfin/z";
    store
        .write(&[
            create(instance(z, "taskfin_wf", 2)),
            enqueue(task(z, 0, 0, act, 1, 10)),
            finish(z, 40),
            enqueue(task(z, 0, 1, act, 1, 10)),
            delete_task(z, 0, 0),
        ])
        .await
        .unwrap();
    assert_eq!(task_keys(&claim_everything(store, "taskfin-w3", &[act]).await), [(y, 0, 0), (z, 0, 1)]);
}

/// ContinueAsNew deletes the tasks of the instance's older generations (finished or not), keeps
/// those of the new and later ones and of other instances; a no-op on an unknown id. In a batch,
/// only the tasks queued before it go.
async fn check_tasks_continue_as_new(store: &dyn Store) {
    let act = "taskcan_act";
    let (x, y) = ("taskcan/x", "taskcan/y");
    store
        .write(&[
            create(with_status(instance(x, "taskcan_wf", 1), RuntimeStatus::Running)),
            enqueue(task(x, 0, 0, act, 1, 10)),
            enqueue(task(x, 1, 0, act, 1, 11)),
            enqueue(task(x, 2, 0, act, 1, 12)),
            enqueue(task(x, 3, 0, act, 1, 13)),
            enqueue(task(y, 0, 0, act, 1, 14)),
            enqueue(task("taskcan/ghost", 0, 0, act, 1, 15)),
        ])
        .await
        .unwrap();
    assert_eq!(store.claim_tasks("taskcan-w", &names(&[act]), 10, 100, 1).await.unwrap().len(), 1);
    assert!(store.complete_task("taskcan-w", x, 0, 0, 1, &outcome(true, "1", 20)).await.unwrap());
    store.write(&[continue_as_new(x, "\"next\"", 2, 30), continue_as_new("taskcan/ghost", "0", 5, 30)]).await.unwrap();
    assert!(store.finished_tasks(&names(&[x])).await.unwrap().is_empty(), "the finished one of generation 0 too");
    assert_eq!(
        task_keys(&claim_everything(store, "taskcan-w2", &[act]).await),
        [(x, 2, 0), (x, 3, 0), (y, 0, 0), ("taskcan/ghost", 0, 0)]
    );

    // In one batch: a task queued before the restart goes, one queued after it stays, even of an
    // older generation.
    store
        .write(&[
            enqueue(task(x, 2, 1, act, 1, 16)),
            continue_as_new(x, "\"again\"", 4, 40),
            enqueue(task(x, 3, 1, act, 1, 17)),
        ])
        .await
        .unwrap();
    assert_eq!(
        task_keys(&claim_everything(store, "taskcan-w3", &[act]).await),
        [(y, 0, 0), ("taskcan/ghost", 0, 0), (x, 3, 1)]
    );
}

/// Renewing and releasing cover a worker's unfinished tasks besides its instances, and count
/// both; a finished task keeps its owner and lease.
async fn check_tasks_leases(store: &dyn Store) {
    let act = "taskl_act";
    store
        .write(&[
            create(instance("taskl/i", "taskl_wf", 1)),
            enqueue(task("taskl/a", 0, 0, act, 1, 1)),
            enqueue(task("taskl/b", 0, 0, act, 1, 2)),
            enqueue(task("taskl/c", 0, 0, act, 1, 3)),
            enqueue(task("taskl/d", 0, 0, act, 1, 4)),
        ])
        .await
        .unwrap();
    assert_eq!(store.claim("taskl-w1", &names(&["taskl_wf"]), 10, 100, 10).await.unwrap().len(), 1);
    assert_eq!(store.claim_tasks("taskl-w1", &names(&[act]), 10, 100, 3).await.unwrap().len(), 3);
    assert_eq!(store.claim_tasks("taskl-w2", &names(&[act]), 10, 100, 3).await.unwrap().len(), 1);
    let done = outcome(true, "1", 20);
    assert!(store.complete_task("taskl-w1", "taskl/a", 0, 0, 1, &done).await.unwrap());

    assert_eq!(store.renew_leases("taskl-w1", 500).await.unwrap(), 3, "its instance and its two unfinished tasks");
    assert_eq!(store.renew_leases("taskl-nobody", 900).await.unwrap(), 0);
    let finished = store.finished_tasks(&names(&["taskl/a"])).await.unwrap();
    assert_eq!(finished[0].lease_until, Some(100), "a finished task's lease is not renewed");
    let taken = store.claim_tasks("taskl-w3", &names(&[act]), 200, 1_000, 10).await.unwrap();
    assert_eq!(task_keys(&taken), [("taskl/d", 0, 0)], "renewed leases hold; the unrenewed one lapsed");

    assert_eq!(store.release_leases("taskl-w1").await.unwrap(), 3);
    assert_eq!(store.release_leases("taskl-w1").await.unwrap(), 0);
    let finished = store.finished_tasks(&names(&["taskl/a"])).await.unwrap();
    assert_eq!((finished[0].owner.as_deref(), finished[0].lease_until), (Some("taskl-w1"), Some(100)), "untouched");
    let freed = store.claim_tasks("taskl-w4", &names(&[act]), 200, 1_000, 10).await.unwrap();
    assert_eq!(task_keys(&freed), [("taskl/b", 0, 0), ("taskl/c", 0, 0)], "claimable at once");
    assert!(!store.complete_task("taskl-w1", "taskl/b", 0, 0, 1, &done).await.unwrap(), "released for good");
    assert!(store.instance("taskl/i").await.unwrap().unwrap().owner.is_none());
}

/// Workers claiming tasks at the same time never get the same task.
async fn check_tasks_concurrent_claims(store: &dyn Store) {
    let act = "taskc_act";
    let ops: Vec<WriteOp> =
        (0..40).map(|i| enqueue(task(&format!("taskc/{i:02}"), 0, i, act, 1, i64::from(i)))).collect();
    store.write(&ops).await.unwrap();
    let activities = names(&[act]);
    let workers: Vec<String> = (0..8).map(|w| format!("taskc-worker-{w}")).collect();
    let claims =
        futures::future::join_all(workers.iter().map(|worker| store.claim_tasks(worker, &activities, 100, 1_000, 7)))
            .await;
    let mut seen = HashSet::new();
    for (worker, claim) in workers.iter().zip(claims) {
        for task in claim.unwrap() {
            assert_eq!(task.owner.as_deref(), Some(worker.as_str()));
            let done = outcome(true, "null", 1);
            assert!(store.complete_task(worker, &task.instance_id, 0, task.seq, 1, &done).await.unwrap());
            assert!(seen.insert(task.instance_id.clone()), "{} claimed twice", task.instance_id);
        }
    }
    let rest = store.claim_tasks("taskc-sweeper", &activities, 100, 1_000, 100).await.unwrap();
    for task in rest {
        assert!(seen.insert(task.instance_id.clone()), "{} claimed twice", task.instance_id);
    }
    assert_eq!(seen.len(), 40);
}

/// Task inputs and outcomes are opaque text, like every payload; a NUL character in one is kept,
/// or its batch (or completion) refused, as the store does elsewhere (see [`Nul`]).
async fn check_tasks_payloads(store: &dyn Store, nul: Nul) {
    let act = "taskp_act";
    let odd = "  { \"spaced\" :\t[ 1 ] } café ☕ \u{202e}";
    let with_nul = "with\0nul";
    let plain = TaskRecord { input: odd.into(), ..task("taskp/a", 0, 0, act, 1, 1) };
    let nul_input = TaskRecord { input: with_nul.into(), ..task("taskp/b", 0, 0, act, 1, 2) };
    store.write(&[enqueue(plain.clone())]).await.unwrap();
    match nul {
        Nul::Kept => store.write(&[enqueue(nul_input.clone())]).await.unwrap(),
        Nul::Refused => {
            let refused = store.write(&[enqueue(nul_input.clone())]).await;
            assert!(matches!(refused, Err(StoreError::Backend(ref m)) if m.contains("NUL")), "{refused:?}");
            Default::default()
        }
    };
    let taken = store.claim_tasks("taskp-w", &names(&[act]), 10, i64::MAX, 10).await.unwrap();
    let mut expected = vec![claimed(&plain, "taskp-w", i64::MAX)];
    if nul == Nul::Kept {
        expected.push(claimed(&nul_input, "taskp-w", i64::MAX));
    }
    assert_eq!(taken, expected);

    let done = outcome(false, with_nul, 3);
    match nul {
        Nul::Kept => assert!(store.complete_task("taskp-w", "taskp/a", 0, 0, 1, &done).await.unwrap()),
        Nul::Refused => {
            let refused = store.complete_task("taskp-w", "taskp/a", 0, 0, 1, &done).await;
            assert!(matches!(refused, Err(StoreError::Backend(ref m)) if m.contains("NUL")), "{refused:?}");
            assert!(store.finished_tasks(&names(&["taskp/a"])).await.unwrap().is_empty());
            let done = outcome(false, odd, 3);
            assert!(store.complete_task("taskp-w", "taskp/a", 0, 0, 1, &done).await.unwrap());
        }
    }
    let finished = store.finished_tasks(&names(&["taskp/a"])).await.unwrap();
    let payload = if nul == Nul::Kept { with_nul } else { odd };
    assert_eq!(finished[0].outcome, Some(outcome(false, payload, 3)));
}

/// Every task check, for a store that treats NUL characters as `nul` says.
async fn check_tasks(store: &dyn Store, nul: Nul) {
    check_tasks_enqueue_and_claim(store).await;
    check_tasks_claim_filters(store).await;
    check_tasks_complete(store).await;
    check_tasks_enqueue_attempts(store).await;
    check_tasks_in_batch(store).await;
    check_tasks_finish(store).await;
    check_tasks_continue_as_new(store).await;
    check_tasks_leases(store).await;
    check_tasks_concurrent_claims(store).await;
    check_tasks_payloads(store, nul).await;
}

/// Everything every store must pass.
async fn check_all(store: &dyn Store) {
    check_all_with(store, Nul::Kept).await;
}

/// Everything every store must pass, for a store that treats NUL characters as `nul` says.
async fn check_all_with(store: &dyn Store, nul: Nul) {
    check_create_and_read(store).await;
    check_duplicate_create(store).await;
    check_journal_upsert(store).await;
    check_journal_order_and_generations(store).await;
    check_set_status_and_finish(store).await;
    check_claim_filters(store).await;
    check_claim_order_and_limit(store).await;
    check_concurrent_claims(store).await;
    check_renew(store).await;
    check_release(store).await;
    check_batch_in_order(store).await;
    check_stats(store).await;
    check_payloads_verbatim(store, nul).await;
    check_events(store).await;
    check_claim_wake(store).await;
    check_set_wake(store).await;
    check_evict(store).await;
    check_continue_as_new(store).await;
    check_custom_status(store, nul).await;
    check_new_ops_in_order(store).await;
    check_matches_reference(store).await;
    check_fencing(store).await;
    check_tasks(store, nul).await;
    check_parallel_group(store).await;
    check_assert_status(store).await;
    check_purge(store).await;
    check_purge_in_batch(store).await;
    check_list(store).await;
}

/// `AssertOwner` refuses the whole batch unless the instance exists and is owned by the writer
/// (as it was before the batch), and reports every fenced id.
async fn check_fencing(store: &dyn Store) {
    let wf = "fence_wf";
    let a = instance("fence/a", wf, 1);
    let b = instance("fence/b", wf, 2);
    store.write(&[create(a.clone()), create(b.clone())]).await.unwrap();
    assert_eq!(store.claim("fence-w1", &names(&[wf]), 10, 100_000, 10).await.unwrap().len(), 2);

    store.write(&[fence(&a.id, "fence-w1"), put(record(&a.id, 0, 0))]).await.unwrap();
    assert_eq!(store.journal(&a.id, 0).await.unwrap().len(), 1, "the owner writes");
    let custom = set_custom(&b.id, Some("1"), 3);
    store.write(&[fence(&b.id, "fence-w1"), custom, fence(&b.id, "fence-w1")]).await.unwrap();
    assert_eq!(get(store, &b.id).await.custom_status.as_deref(), Some("1"), "the asserted instance itself too");

    // One fence alone, the shape of most batches at low load: another owner's instance and a
    // missing one are refused with their id, and nothing of the batch is applied.
    for (id, owner) in [(a.id.as_str(), "fence-w2"), ("fence/nobody", "fence-w1")] {
        match store.write(&[fence(id, owner), put(record(id, 0, 7)), finish_of(id)]).await {
            Err(StoreError::Fenced(ids)) => assert_eq!(ids, [id]),
            other => panic!("expected {id} to be fenced for {owner}, got {other:?}"),
        }
    }
    assert_eq!(store.journal(&a.id, 0).await.unwrap().len(), 1, "nothing of a fenced one-fence batch is applied");
    assert_eq!(get(store, &a.id).await.status, RuntimeStatus::Pending);

    let refused = store
        .write(&[
            fence(&a.id, "fence-w1"),
            put(record(&a.id, 0, 1)),
            fence(&b.id, "fence-w2"),
            put(record(&b.id, 0, 0)),
            fence("fence/nobody", "fence-w1"),
        ])
        .await;
    match refused {
        Err(StoreError::Fenced(ids)) => assert_eq!(ids, ["fence/b", "fence/nobody"]),
        other => panic!("expected the batch to be fenced, got {other:?}"),
    }
    assert_eq!(store.journal(&a.id, 0).await.unwrap().len(), 1, "nothing of a fenced batch is applied");
    assert!(store.journal(&b.id, 0).await.unwrap().is_empty());

    // In a big batch too, wherever the assertions are.
    let mut big: Vec<WriteOp> = (1..300).map(|seq| put(record(&a.id, 0, seq))).collect();
    big.insert(150, fence(&b.id, "fence-w1"));
    big.push(fence("fence/nobody", "fence-w1"));
    big.push(WriteOp::SetStatus { id: a.id.clone(), status: RuntimeStatus::Running, updated_at: 5 });
    match store.write(&big).await {
        Err(StoreError::Fenced(ids)) => assert_eq!(ids, ["fence/nobody"]),
        other => panic!("expected the batch to be fenced, got {other:?}"),
    }
    assert_eq!(store.journal(&a.id, 0).await.unwrap().len(), 1, "nothing of a fenced batch is applied");
    assert_eq!(get(store, &a.id).await.status, RuntimeStatus::Pending);
    big.pop();
    big.pop();
    store.write(&big).await.unwrap();
    assert_eq!(store.journal(&a.id, 0).await.unwrap().len(), 300, "and all of it once the assertions hold");

    store.release_leases("fence-w1").await.unwrap();
    assert!(
        matches!(store.write(&[fence(&a.id, "fence-w1"), put(record(&a.id, 0, 1))]).await, Err(StoreError::Fenced(_))),
        "a released lease fences its old owner"
    );
    assert_eq!(store.journal(&a.id, 0).await.unwrap().len(), 300);
}

// ---------------------------------------------------------------------------------------------
// Fan-out groups, conditional writes, purges and listing (the management API's ops)
// ---------------------------------------------------------------------------------------------

fn assert_status(id: &str, allowed: &[RuntimeStatus]) -> WriteOp {
    WriteOp::AssertStatus { id: id.to_owned(), allowed: allowed.to_vec() }
}

fn purge(id: &str) -> WriteOp {
    WriteOp::Purge { id: id.to_owned() }
}

fn fence(id: &str, owner: &str) -> WriteOp {
    WriteOp::AssertOwner { id: id.to_owned(), owner: owner.to_owned() }
}

/// The (id, status) of the `Conflict` a batch was refused with; panics on anything else.
fn conflict(result: Result<WriteOutcome, StoreError>) -> (String, Option<RuntimeStatus>) {
    match result {
        Err(StoreError::Conflict { id, status }) => (id, status),
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A journal record's fan-out group round-trips (`None`, 0 and `u32::MAX` included), an upsert
/// replaces it (with `None` too), and in one batch the last write of a key wins with its group.
async fn check_parallel_group(store: &dyn Store) {
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

/// AssertStatus lets a batch through when the instance has one of the allowed statuses as it was
/// before the batch (ops of the batch, before or after the assertion, do not count). Otherwise the
/// whole batch is refused with `Conflict` for the first failing assertion in op order (not id
/// order), with the status found (`None` for a missing instance, one the batch creates included),
/// nothing of it applied and nothing counted. An empty allowed list never holds. A failing fence
/// wins over a failing assertion.
async fn check_assert_status(store: &dyn Store) {
    use RuntimeStatus::{Completed, Failed, Pending, Running, Suspended, Terminated};
    let (wf, act) = ("assert_wf", "assert_act");
    let (a, b, c) = ("assert/a", "assert/b", "assert/c");
    store
        .write(&[
            create(instance(a, wf, 1)),
            create(with_status(instance(b, wf, 2), Running)),
            create(with_status(instance(c, wf, 3), Completed)),
        ])
        .await
        .unwrap();

    store
        .write(&[
            assert_status(a, &[Pending, Running]),
            assert_status(b, &[Running]),
            put(record(a, 0, 0)),
            set_custom(b, Some("1"), 5),
        ])
        .await
        .unwrap();
    assert_eq!(store.journal(a, 0).await.unwrap().len(), 1, "the assertions held");
    assert_eq!(get(store, b).await.custom_status.as_deref(), Some("1"));
    store
        .write(&[
            WriteOp::SetStatus { id: a.into(), status: Suspended, updated_at: 6 },
            assert_status(a, &[Pending]),
            assert_status(a, &[Completed, Pending]),
        ])
        .await
        .unwrap();
    assert_eq!(get(store, a).await.status, Suspended, "checked against the status before the batch");

    assert_eq!(
        conflict(store.write(&[assert_status("assert/nobody", &RuntimeStatus::ALL)]).await),
        ("assert/nobody".into(), None)
    );
    let created_too = [create(instance("assert/new", wf, 4)), assert_status("assert/new", &RuntimeStatus::ALL)];
    assert_eq!(conflict(store.write(&created_too).await), ("assert/new".into(), None), "missing before the batch");
    assert_eq!(store.instance("assert/new").await.unwrap(), None);
    assert_eq!(
        conflict(store.write(&[assert_status(c, &[Pending, Running, Suspended])]).await),
        (c.into(), Some(Completed))
    );
    assert_eq!(conflict(store.write(&[assert_status(b, &[])]).await), (b.into(), Some(Running)), "nothing allowed");

    // The first failing one in op order, whatever the ids' order; passing ones before it do not
    // matter.
    let both = [assert_status(a, &[Suspended]), assert_status(c, &[Running]), assert_status(b, &[Pending])];
    assert_eq!(conflict(store.write(&both).await), (c.into(), Some(Completed)));
    let reversed = [assert_status(b, &[Pending]), assert_status(c, &[Running])];
    assert_eq!(conflict(store.write(&reversed).await), (b.into(), Some(Running)));

    // Nothing of a refused batch is applied, before or after the assertion, nor counted.
    let before = (get(store, a).await, get(store, b).await, get(store, c).await, store.stats());
    let refused = store
        .write(&[
            create(instance("assert/other", wf, 7)),
            put(record(a, 0, 1)),
            add_event(a, "lost", "1", 8),
            enqueue(task(a, 0, 1, act, 1, 8)),
            WriteOp::SetStatus { id: b.into(), status: Failed, updated_at: 8 },
            purge(c),
            assert_status(b, &[Terminated]),
            put(record(b, 0, 0)),
            continue_as_new(a, "\"next\"", 1, 9),
            purge(a),
        ])
        .await;
    assert_eq!(conflict(refused), (b.into(), Some(Running)));
    assert_eq!((get(store, a).await, get(store, b).await, get(store, c).await, store.stats()), before);
    assert_eq!(store.instance("assert/other").await.unwrap(), None);
    assert_eq!(store.journal(a, 0).await.unwrap().len(), 1);
    assert!(store.journal(b, 0).await.unwrap().is_empty());
    assert!(store.events(a).await.unwrap().is_empty());
    assert!(claim_everything(store, "assert-sweeper", &[act]).await.is_empty());

    // A failing fence wins over a failing assertion, whichever comes first.
    assert_eq!(ids(&store.claim("assert-w", &names(&[wf]), 10, 100_000, 10).await.unwrap()), [b]);
    for ops in [
        [assert_status(c, &[Running]), fence(b, "assert-other")],
        [fence(b, "assert-other"), assert_status(c, &[Running])],
    ] {
        match store.write(&ops).await {
            Err(StoreError::Fenced(fenced)) => assert_eq!(fenced, [b]),
            other => panic!("expected the batch to be fenced, got {other:?}"),
        }
    }
    let fenced_ok = [fence(b, "assert-w"), assert_status(c, &[Running])];
    assert_eq!(conflict(store.write(&fenced_ok).await), (c.into(), Some(Completed)), "the fence held");
    store.write(&[fence(b, "assert-w"), assert_status(b, &[Running]), put(record(b, 0, 0))]).await.unwrap();
    assert_eq!(store.journal(b, 0).await.unwrap().len(), 1, "both held");
}

/// Purge deletes the instance and every row of it: its journal of every generation, its events
/// (consumed or not) and its tasks (finished or not, of every generation). Another instance's rows
/// stay, one whose id it is a prefix of included. A no-op on an unknown id. Event ids are never
/// handed out again, even those of the purged events.
async fn check_purge(store: &dyn Store) {
    let (wf, act) = ("purge_wf", "purge_act");
    // `y` first, so `x` holds the latest event ids when it is purged.
    let (x, y) = ("purge/x", "purge/x2");
    for id in [y, x] {
        store
            .write(&[
                create(with_status(instance(id, wf, 1), RuntimeStatus::Running)),
                put(record(id, 0, 0)),
                put(record(id, 1, 0)),
                put(record(id, 2, 3)),
                add_event(id, "used", "1", 2),
                add_event(id, "kept", "2", 3),
                enqueue(task(id, 0, 0, act, 1, 1)),
                enqueue(task(id, 2, 1, act, 1, 2)),
            ])
            .await
            .unwrap();
        let used = store.events(id).await.unwrap()[0].event_id;
        store.write(&[consume(id, used, 2, 3)]).await.unwrap();
    }
    assert_eq!(store.claim_tasks("purge-w", &names(&[act]), 10, 100, 10).await.unwrap().len(), 4);
    for id in [x, y] {
        assert!(store.complete_task("purge-w", id, 0, 0, 1, &outcome(true, "1", 5)).await.unwrap());
    }
    store.release_leases("purge-w").await.unwrap();
    let last_event = store.events(x).await.unwrap()[0].event_id;
    let journal_of = |id: &'static str| async move {
        let mut journal = Vec::new();
        for generation in 0..3 {
            journal.extend(store.journal(id, generation).await.unwrap());
        }
        journal
    };
    let y_before = (
        get(store, y).await,
        journal_of(y).await,
        store.events(y).await.unwrap(),
        store.finished_tasks(&names(&[y])).await.unwrap(),
    );
    assert_eq!(y_before.1.len(), 3);

    store.write(&[purge(x), purge("purge/nobody")]).await.unwrap();
    assert_eq!(store.instance(x).await.unwrap(), None);
    assert!(journal_of(x).await.is_empty(), "the journal of every generation");
    assert!(store.events(x).await.unwrap().is_empty());
    assert!(store.finished_tasks(&names(&[x])).await.unwrap().is_empty());
    assert_eq!(
        task_keys(&claim_everything(store, "purge-w2", &[act]).await),
        [(y, 2, 1)],
        "only the other's unfinished task"
    );
    let y_after = (
        get(store, y).await,
        journal_of(y).await,
        store.events(y).await.unwrap(),
        store.finished_tasks(&names(&[y])).await.unwrap(),
    );
    assert_eq!(y_after, y_before, "the other instance is untouched");

    // The id starts afresh, with none of the old rows; its events get new ids.
    store.write(&[create(instance(x, wf, 9)), add_event(x, "new", "3", 10)]).await.unwrap();
    assert_eq!(get(store, x).await, InstanceRecord { wake_at: Some(10), ..instance(x, wf, 9) });
    let events = store.events(x).await.unwrap();
    assert_eq!(event_names(&events), ["new"]);
    assert!(events[0].event_id > last_event, "ids are not reused: {} after {last_event}", events[0].event_id);
}

/// Purge keeps op order with the other ops of its id: what a batch wrote of the instance before
/// the purge goes with it, what it writes after stays (so a purge then a create leaves a fresh
/// instance, not a skipped create); a create of an existing id then a purge is skipped and the
/// instance gone. Assertions then purges of several ids, as a client purges an instance with its
/// children, purge all of them or none.
async fn check_purge_in_batch(store: &dyn Store) {
    use RuntimeStatus::{Completed, Failed, Running, Terminated};
    let (wf, act) = ("purgeb_wf", "purgeb_act");
    let x = "purgeb/x";
    store
        .write(&[
            create(with_status(instance(x, wf, 1), Completed)),
            put(record(x, 0, 0)),
            add_event(x, "old", "1", 2),
            enqueue(task(x, 0, 0, act, 1, 1)),
        ])
        .await
        .unwrap();
    let fresh = instance(x, "purgeb_other_wf", 5);
    let written = store
        .write(&[
            put(record(x, 0, 1)),
            add_event(x, "doomed", "1", 3),
            enqueue(task(x, 0, 1, act, 1, 2)),
            continue_as_new(x, "\"next\"", 1, 4),
            put(record(x, 1, 0)),
            enqueue(task(x, 1, 0, act, 1, 2)),
            purge(x),
            create(fresh.clone()),
            put(record(x, 0, 2)),
            enqueue(task(x, 0, 2, act, 1, 3)),
        ])
        .await
        .unwrap();
    assert!(written.existing.is_empty(), "the create after the purge is not skipped");
    assert_eq!(get(store, x).await, fresh);
    assert_eq!(store.journal(x, 0).await.unwrap(), [record(x, 0, 2)]);
    assert!(store.journal(x, 1).await.unwrap().is_empty());
    assert!(store.events(x).await.unwrap().is_empty());
    assert_eq!(task_keys(&claim_everything(store, "purgeb-w", &[act]).await), [(x, 0, 2)]);

    // An event added after the purge stays, consumed or not.
    store
        .write(&[add_event(x, "gone", "1", 6), purge(x), add_event(x, "after", "2", 7), create(fresh.clone())])
        .await
        .unwrap();
    assert_eq!(event_names(&store.events(x).await.unwrap()), ["after"]);
    assert!(store.journal(x, 0).await.unwrap().is_empty());

    // Purged, created, written and purged again, in one batch.
    store
        .write(&[purge(x), create(instance(x, wf, 7)), put(record(x, 0, 3)), add_event(x, "e", "1", 8), purge(x)])
        .await
        .unwrap();
    assert_eq!(store.instance(x).await.unwrap(), None);
    assert!(store.journal(x, 0).await.unwrap().is_empty());
    assert!(store.events(x).await.unwrap().is_empty());
    assert!(claim_everything(store, "purgeb-w", &[act]).await.is_empty());

    // A create of an existing id is skipped and reported; the purge after it deletes the instance.
    store.write(&[create(instance(x, wf, 8))]).await.unwrap();
    assert_eq!(store.write(&[create(instance(x, wf, 9)), purge(x)]).await.unwrap().existing, [x]);
    assert_eq!(store.instance(x).await.unwrap(), None);
    // Created, purged and created again: neither create is skipped. Then (it exists) the first of
    // three is, and the last, after the one right after the purge.
    let (first, second) = (instance(x, wf, 10), instance(x, "purgeb_other_wf", 11));
    let twice = [create(first.clone()), put(record(x, 0, 4)), purge(x), create(second.clone())];
    assert!(store.write(&twice).await.unwrap().existing.is_empty());
    assert_eq!(get(store, x).await, second);
    let thrice = [create(first.clone()), purge(x), create(first.clone()), create(second.clone())];
    assert_eq!(store.write(&thrice).await.unwrap().existing, [x, x]);
    assert_eq!(get(store, x).await, first, "the create right after the purge");
    store.write(&[purge(x)]).await.unwrap();

    // A parent and its children, all finished: asserted, then purged, in one batch.
    let finished = [Completed, Failed, Terminated];
    let family: Vec<String> = std::iter::once(x.to_owned()).chain((0..4).map(|i| format!("purgeb/kid{i}"))).collect();
    let create_family = |running: Option<usize>| {
        let mut ops = Vec::new();
        for (i, id) in family.iter().enumerate() {
            let status = if Some(i) == running { Running } else { finished[i % 3] };
            let parent = (i > 0).then(|| x.to_owned());
            ops.push(create(InstanceRecord {
                parent_id: parent,
                ..with_status(instance(id, wf, 10 + i as i64), status)
            }));
            ops.push(put(record(id, 0, 0)));
            ops.push(add_event(id, "e", "1", 20));
        }
        ops
    };
    let purge_family: Vec<WriteOp> =
        family.iter().map(|id| assert_status(id, &finished)).chain(family.iter().map(|id| purge(id))).collect();
    store.write(&create_family(None)).await.unwrap();
    store.write(&purge_family).await.unwrap();
    for id in &family {
        assert_eq!(store.instance(id).await.unwrap(), None, "{id}");
        assert!(store.journal(id, 0).await.unwrap().is_empty(), "{id}");
        assert!(store.events(id).await.unwrap().is_empty(), "{id}");
    }
    // One still runs: none is purged.
    store.write(&create_family(Some(2))).await.unwrap();
    assert_eq!(conflict(store.write(&purge_family).await), (family[2].clone(), Some(Running)));
    for id in &family {
        assert!(store.instance(id).await.unwrap().is_some(), "{id}");
        assert_eq!(store.journal(id, 0).await.unwrap().len(), 1, "{id}");
        assert_eq!(store.events(id).await.unwrap().len(), 1, "{id}");
    }
}

/// Whether `record` passes `query`'s filters (not its paging): what a store may return.
fn passes(query: &InstanceQuery, record: &InstanceRecord) -> bool {
    (query.statuses.is_empty() || query.statuses.contains(&record.status))
        && query.workflow.as_ref().is_none_or(|workflow| *workflow == record.workflow)
        && query.created_after.is_none_or(|after| record.created_at >= after)
        && query.created_before.is_none_or(|before| record.created_at < before)
        && query.updated_before.is_none_or(|before| record.updated_at < before)
        && query.parent_id.as_ref().is_none_or(|parent| record.parent_id.as_ref() == Some(parent))
        && query.after.as_ref().is_none_or(|(created_at, id)| (record.created_at, &record.id) > (*created_at, id))
}

/// Lists every page of `query` (its limit is the page size), each page after the last one's
/// (created_at, id).
async fn list_pages(store: &dyn Store, query: &InstanceQuery) -> Vec<Vec<InstanceRecord>> {
    let mut pages = Vec::new();
    let mut after = query.after.clone();
    loop {
        let page = store.list(&InstanceQuery { after: after.clone(), ..query.clone() }).await.unwrap();
        assert!(page.len() <= query.limit, "a page holds at most the limit");
        let Some(last) = page.last() else { return pages };
        after = Some((last.created_at, last.id.clone()));
        let full = page.len() == query.limit;
        pages.push(page);
        if !full {
            return pages;
        }
    }
}

/// `list` returns the instances every given filter passes (statuses: any of them; created_after
/// inclusive; created_before and updated_before exclusive; workflow and parent exact), whole, in
/// (created_at, id) order with ids compared byte for byte (ties on created_at broken by id),
/// strictly after the keyset `after`, at most `limit` (0: none). Paging by the last row's
/// (created_at, id) returns every match exactly once.
///
/// The store holds other checks' instances too: a query that does not name this check's workflow
/// or parent is checked for returning only what passes, and this check's instances among them
/// exactly.
async fn check_list(store: &dyn Store) {
    use RuntimeStatus::{Completed, Failed, Pending, Running, Suspended, Terminated};
    let (wa, wb) = ("list_wf_a", "list_wf_b");
    let p = "list/p";
    // (id, workflow, status, created_at, updated_at, parent)
    let rows = [
        ("list/e", wa, Running, 500, 600, None),
        ("list/c3", wa, Completed, 200, 210, Some(p)),
        ("list/é", wb, Pending, 200, 200, None),
        ("list/p", wa, Running, 100, 150, None),
        ("list/c1", wb, Failed, 200, 205, Some(p)),
        ("list/d", wb, Suspended, 400, 400, Some(p)),
        ("list/C2", wa, Completed, 200, 300, Some(p)),
        ("list/c0", wa, Terminated, 300, 400, Some("list/c1")),
    ];
    let records: Vec<InstanceRecord> = rows
        .iter()
        .map(|(id, workflow, status, created_at, updated_at, parent)| InstanceRecord {
            updated_at: *updated_at,
            parent_id: parent.map(str::to_owned),
            custom_status: Some(format!("\"{id}\"")),
            ..with_status(instance(id, workflow, *created_at), *status)
        })
        .collect();
    store.write(&records.iter().cloned().map(create).collect::<Vec<_>>()).await.unwrap();
    let mine = |found: &[InstanceRecord]| -> Vec<String> {
        found.iter().filter(|r| r.id.starts_with("list/")).map(|r| r.id.clone()).collect()
    };
    let all = |query: InstanceQuery| InstanceQuery { limit: 100_000, ..query };
    let q = InstanceQuery::default;

    // What the store returns passes the filters, in strict (created_at, id) order.
    let listed = |query: InstanceQuery| async move {
        let found = store.list(&query).await.unwrap();
        for record in &found {
            assert!(passes(&query, record), "{query:?} returned {record:?}");
        }
        for pair in found.windows(2) {
            assert!((pair[0].created_at, &pair[0].id) < (pair[1].created_at, &pair[1].id), "out of order: {pair:?}");
        }
        found
    };

    // Ties at 200 by id, byte for byte: upper case before lower case, `é` after ASCII.
    let in_order = ["list/p", "list/C2", "list/c1", "list/c3", "list/é", "list/c0", "list/d", "list/e"];
    assert_eq!(mine(&listed(all(q())).await), in_order);
    let a_only = listed(all(InstanceQuery { workflow: Some(wa.into()), ..q() })).await;
    assert_eq!(ids(&a_only), ["list/p", "list/C2", "list/c3", "list/c0", "list/e"]);
    for record in &a_only {
        assert_eq!(*record, get(store, &record.id).await, "listed whole");
    }
    assert_eq!(
        ids(&listed(all(InstanceQuery { workflow: Some(wb.into()), ..q() })).await),
        ["list/c1", "list/é", "list/d"]
    );
    assert!(listed(all(InstanceQuery { workflow: Some("list_wf_none".into()), ..q() })).await.is_empty());

    // Each filter alone.
    let statuses = |statuses: &[RuntimeStatus]| all(InstanceQuery { statuses: statuses.to_vec(), ..q() });
    assert_eq!(mine(&listed(statuses(&[Completed])).await), ["list/C2", "list/c3"]);
    assert_eq!(mine(&listed(statuses(&[Failed, Completed, Failed])).await), ["list/C2", "list/c1", "list/c3"]);
    assert_eq!(mine(&listed(statuses(&RuntimeStatus::ALL)).await), in_order);
    assert_eq!(mine(&listed(all(InstanceQuery { created_after: Some(200), ..q() })).await), in_order[1..]);
    assert_eq!(mine(&listed(all(InstanceQuery { created_after: Some(201), ..q() })).await), in_order[5..]);
    assert_eq!(mine(&listed(all(InstanceQuery { created_before: Some(200), ..q() })).await), ["list/p"]);
    assert_eq!(mine(&listed(all(InstanceQuery { created_before: Some(201), ..q() })).await), in_order[..5]);
    assert_eq!(
        mine(&listed(all(InstanceQuery { updated_before: Some(210), ..q() })).await),
        ["list/p", "list/c1", "list/é"]
    );
    let children = |parent: &str| all(InstanceQuery { parent_id: Some(parent.into()), ..q() });
    assert_eq!(ids(&listed(children(p)).await), ["list/C2", "list/c1", "list/c3", "list/d"]);
    assert_eq!(ids(&listed(children("list/c1")).await), ["list/c0"]);
    assert!(listed(children("list/nobody")).await.is_empty());
    let after = |created_at: i64, id: &str| all(InstanceQuery { after: Some((created_at, id.into())), ..q() });
    assert_eq!(mine(&listed(after(200, "list/c1")).await), in_order[3..]);
    assert_eq!(mine(&listed(after(200, "list/")).await), in_order[1..], "strictly after, by id within a time");
    assert_eq!(mine(&listed(after(199, "list/zzz")).await), in_order[1..], "by time first");
    assert_eq!(mine(&listed(after(500, "list/e")).await), Vec::<String>::new());
    let limited = |limit: usize| InstanceQuery { workflow: Some(wa.into()), limit, ..q() };
    assert_eq!(ids(&listed(limited(2)).await), ["list/p", "list/C2"]);
    assert!(store.list(&limited(0)).await.unwrap().is_empty());
    assert!(store.list(&q()).await.unwrap().is_empty(), "the default limit is 0");

    // Combined.
    let combined = InstanceQuery {
        workflow: Some(wa.into()),
        statuses: vec![Completed, Running, Terminated],
        created_after: Some(150),
        created_before: Some(500),
        ..all(q())
    };
    assert_eq!(ids(&listed(combined.clone()).await), ["list/C2", "list/c3", "list/c0"]);
    let narrower = InstanceQuery { updated_before: Some(300), ..combined.clone() };
    assert_eq!(ids(&listed(narrower.clone()).await), ["list/c3"]);
    let children_only = InstanceQuery { parent_id: Some(p.into()), updated_before: None, ..combined.clone() };
    assert_eq!(ids(&listed(children_only.clone()).await), ["list/C2", "list/c3"]);
    let paged = InstanceQuery { after: Some((200, "list/C2".into())), ..children_only.clone() };
    assert_eq!(ids(&listed(paged).await), ["list/c3"]);
    let past = InstanceQuery { after: Some((200, "list/c3".into())), ..children_only };
    assert!(listed(past).await.is_empty());
    let statuses_of_b = InstanceQuery { workflow: Some(wb.into()), statuses: vec![Pending, Suspended], ..all(q()) };
    assert_eq!(ids(&listed(statuses_of_b).await), ["list/é", "list/d"]);

    // Paging: exact pages, a boundary inside the tie at 200.
    let pages = list_pages(store, &limited(2)).await;
    let page_ids: Vec<Vec<&str>> = pages.iter().map(|page| ids(page)).collect();
    assert_eq!(page_ids, [vec!["list/p", "list/C2"], vec!["list/c3", "list/c0"], vec!["list/e"]]);
    let pages = list_pages(store, &InstanceQuery { workflow: Some(wb.into()), limit: 1, ..q() }).await;
    assert_eq!(pages.iter().map(|page| ids(page)).collect::<Vec<_>>(), [["list/c1"], ["list/é"], ["list/d"]]);
    // Every instance of the store, whatever its ties (other checks created many at the same
    // times), exactly once, in the order of one unpaged list.
    let everything = listed(all(q())).await;
    for page_size in [1, 3, 7, 64] {
        let paged: Vec<InstanceRecord> =
            list_pages(store, &InstanceQuery { limit: page_size, ..q() }).await.into_iter().flatten().collect();
        assert_eq!(ids(&paged), ids(&everything), "pages of {page_size}");
    }
    let unique: HashSet<&str> = ids(&everything).into_iter().collect();
    assert_eq!(unique.len(), everything.len());
}

// ---------------------------------------------------------------------------------------------
// The in-memory store
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    check_all(&store).await;
    // No atomicity check: the memory store applies a batch under one lock and has no op that can
    // fail midway, so there is no way to make a batch fail after its first op.
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

const POISON: &str = "conformance-poison";

/// Makes the SQLite store reject any journal record named [`POISON`], through a trigger added
/// behind its back, so a batch can be made to fail midway.
async fn arm_sqlite_poison(store: &SqliteStore) {
    sqlx::query(&format!(
        "CREATE TRIGGER conformance_poison BEFORE INSERT ON journal WHEN NEW.name = '{POISON}' \
         BEGIN SELECT RAISE(ABORT, 'poisoned by the conformance suite'); END"
    ))
    .execute(store.pool())
    .await
    .unwrap();
}

async fn disarm_sqlite_poison(store: &SqliteStore) {
    sqlx::query("DROP TRIGGER conformance_poison").execute(store.pool()).await.unwrap();
}

fn temp_url(dir: &tempfile::TempDir, file: &str) -> String {
    format!("sqlite://{}", dir.path().join(file).display())
}

#[tokio::test]
async fn sqlite_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp_url(&dir, "conformance.db")).await.unwrap();
    check_all(&store).await;
    arm_sqlite_poison(&store).await;
    check_batch_is_atomic(&store, POISON).await;
    disarm_sqlite_poison(&store).await;
    check_sqlite_pragmas(&store, 2).await;
    check_sqlite_list_plan(&store).await;
    check_sqlite_corrupt_rows(&store).await;
    check_sqlite_corrupt_task_rows(&store).await;
    check_sqlite_event_rows(&store).await;
    check_sqlite_purge_rows(&store).await;
    check_sqlite_dropped_writes(&store).await;
    check_sqlite_dropped_claims(&store).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_memory_store_conforms() {
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    check_all(&store).await;
    arm_sqlite_poison(&store).await;
    check_batch_is_atomic(&store, POISON).await;
    disarm_sqlite_poison(&store).await;
    check_sqlite_corrupt_rows(&store).await;
    check_sqlite_corrupt_task_rows(&store).await;
    check_sqlite_event_rows(&store).await;
    check_sqlite_purge_rows(&store).await;
    check_sqlite_dropped_writes(&store).await;

    // Each `sqlite::memory:` store is its own database.
    let other = SqliteStore::open("sqlite::memory:").await.unwrap();
    assert_eq!(other.instance("create/full").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_normal_synchronous_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new().synchronous(Synchronous::Normal).read_connections(2);
    let store = SqliteStore::open_with(&temp_url(&dir, "normal.db"), options).await.unwrap();
    check_all(&store).await;
    check_sqlite_pragmas(&store, 1).await;
}

/// A list page (the statement `list` sends: list order, after a keyset) reads the
/// (created_at, id) index as a range; it neither scans the table nor sorts it.
async fn check_sqlite_list_plan(store: &SqliteStore) {
    for page in [
        "SELECT id FROM instances ORDER BY created_at, id LIMIT 10",
        "SELECT id FROM instances WHERE (created_at, id) > (?1, ?2) ORDER BY created_at, id LIMIT 10",
    ] {
        let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {page}"))
            .bind(1_i64)
            .bind("a")
            .fetch_all(store.pool())
            .await
            .unwrap()
            .iter()
            .map(|row| sqlx::Row::get::<String, _>(row, "detail"))
            .collect();
        let plan = plan.join("; ");
        assert!(plan.contains("instances_created"), "{page}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{page} sorts: {plan}");
    }
}

/// WAL, the chosen `synchronous` level (2 = FULL, 1 = NORMAL), foreign keys and the busy timeout.
async fn check_sqlite_pragmas(store: &SqliteStore, synchronous: i64) {
    let pool = store.pool();
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
    assert_eq!(journal_mode.to_lowercase(), "wal");
    let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
    assert_eq!(level, synchronous);
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await.unwrap();
    assert_eq!(foreign_keys, 1);
    let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(pool).await.unwrap();
    assert_eq!(busy_timeout, 5_000);
}

/// Rows damaged behind the store's back read as `Corrupt` errors naming the row.
async fn check_sqlite_corrupt_rows(store: &SqliteStore) {
    let id = "corrupt/a";
    store.write(&[create(instance(id, "corrupt_wf", 1)), put(record(id, 0, 3))]).await.unwrap();

    sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = ?").bind(id).execute(store.pool()).await.unwrap();
    match store.instance(id).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(id) && message.contains("Exploded"), "message names the row: {message}")
        }
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    sqlx::query("UPDATE instances SET status = 'Pending', generation = -1 WHERE id = ?")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    assert!(
        matches!(store.instance(id).await, Err(StoreError::Corrupt(m)) if m.contains(id) && m.contains("generation"))
    );

    sqlx::query("UPDATE journal SET status = 'Sideways' WHERE instance_id = ?")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    match store.journal(id, 0).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(id) && message.contains("seq 3"), "message names the record: {message}")
        }
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    for group in [-1, 1_i64 << 32] {
        sqlx::query("UPDATE journal SET status = 'Completed', parallel_group = ? WHERE instance_id = ?")
            .bind(group)
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        match store.journal(id, 0).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("seq 3") && message.contains("parallel_group"), "{message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
    }
    store.write(&[add_event(id, "late", "1", 5)]).await.unwrap();
    sqlx::query("UPDATE events SET created_at = 'soon' WHERE instance_id = ?")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    match store.events(id).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(id) && message.contains("created_at"), "message names the event: {message}")
        }
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    sqlx::query("DELETE FROM instances WHERE id = ?").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM journal WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM events WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
}

/// Task rows damaged behind the store's back read as `Corrupt` errors naming the task and column:
/// out-of-range numbers, a boolean that is not 0 or 1, outcome columns set only in part.
async fn check_sqlite_corrupt_task_rows(store: &SqliteStore) {
    let id = "corrupt/task";
    store.write(&[enqueue(task(id, 0, 3, "corrupt_act", 1, 1))]).await.unwrap();
    store.claim_tasks("corrupt-w", &names(&["corrupt_act"]), 1, 100, 1).await.unwrap();
    assert!(store.complete_task("corrupt-w", id, 0, 3, 1, &outcome(true, "1", 2)).await.unwrap());
    let damage = |sql: &'static str| sqlx::query(sql).bind(id).execute(store.pool());
    for (sql, column) in [
        ("UPDATE activity_tasks SET attempt = -1 WHERE instance_id = ?", "attempt"),
        ("UPDATE activity_tasks SET attempt = 1, outcome_succeeded = 2 WHERE instance_id = ?", "outcome_succeeded"),
        ("UPDATE activity_tasks SET outcome_succeeded = 1, finished_at = NULL WHERE instance_id = ?", "finished_at"),
        (
            "UPDATE activity_tasks SET finished_at = 2, outcome_succeeded = NULL WHERE instance_id = ?",
            "outcome_succeeded",
        ),
        ("UPDATE activity_tasks SET outcome_succeeded = 0, visible_at = 'soon' WHERE instance_id = ?", "visible_at"),
    ] {
        damage(sql).await.unwrap();
        match store.finished_tasks(&names(&[id])).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("seq 3") && message.contains(column), "{message}")
            }
            other => panic!("{sql}: expected a corrupt-row error, got {other:?}"),
        }
    }
    damage("UPDATE activity_tasks SET visible_at = 1, generation = 4294967296 WHERE instance_id = ?").await.unwrap();
    assert!(
        matches!(store.finished_tasks(&names(&[id])).await, Err(StoreError::Corrupt(m)) if m.contains("generation"))
    );
    damage("DELETE FROM activity_tasks WHERE instance_id = ?").await.unwrap();
}

/// A write dropped before it is through (its future cancelled, as a timeout does) is applied
/// entirely or not at all, and the store goes on writing and reading: whatever transaction it left
/// open on the writer is rolled back by the writer's next user.
async fn check_sqlite_dropped_writes(store: &SqliteStore) {
    let id = "dropped/a";
    store.write(&[create(instance(id, "dropped_wf", 1))]).await.unwrap();
    for round in 0..40 {
        let ops = [put(record(id, 0, round)), put(record(id, 1, round)), add_event(id, "e", "1", 5)];
        let small = [put(record(id, 0, round)), put(record(id, 1, round))];
        {
            let mut write = if round % 2 == 0 { store.write(&ops) } else { store.write(&small) };
            let _ = futures::poll!(write.as_mut());
            for _ in 0..round % 4 {
                tokio::task::yield_now().await;
            }
        }
        // Whatever the writer's next user is. (The dropped write may still be running on the
        // writer's thread, and commit; the writer's next command runs after it.)
        match round % 3 {
            0 => store.write(&[put(record(id, 2, round))]).await.map(drop).unwrap(),
            1 => assert_eq!(store.renew_leases("dropped-nobody", 10).await.unwrap(), 0),
            _ => assert!(!store.complete_task("dropped-nobody", id, 0, 0, 1, &outcome(true, "1", 1)).await.unwrap()),
        }
        let gen0 = store.journal(id, 0).await.unwrap().iter().any(|r| r.seq == round);
        let gen1 = store.journal(id, 1).await.unwrap().iter().any(|r| r.seq == round);
        assert_eq!(gen0, gen1, "round {round}: a batch is all or nothing");
    }
    store.write(&[put(record(id, 3, 0))]).await.unwrap();
    assert_eq!(store.journal(id, 3).await.unwrap().len(), 1);
    sqlx::query("DELETE FROM journal WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM events WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
}

/// Claims, renewals and releases dropped midway (as a stopping runtime drops its loops) leave the
/// writer usable: whatever transaction they began is rolled back by the writer's next user.
async fn check_sqlite_dropped_claims(store: &SqliteStore) {
    let wf = "dropped_claim_wf";
    store.write(&[create(instance("dropped/c", wf, 1))]).await.unwrap();
    let workflows = names(&[wf]);
    let activities = names(&["dropped_activity"]);
    for round in 0..80_u32 {
        {
            let mut dropped = match round % 4 {
                0 => Box::pin(async { store.claim("dropped-w", &workflows, 10, 20, 5).await.map(drop) })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + '_>>,
                1 => Box::pin(async { store.renew_leases("dropped-w", 30).await.map(drop) }),
                2 => Box::pin(async { store.release_leases("dropped-w").await.map(drop) }),
                _ => Box::pin(async { store.claim_tasks("dropped-w", &activities, 10, 20, 5).await.map(drop) }),
            };
            // Polled a few times (the writer's thread runs meanwhile), then dropped midway.
            for _ in 0..round % 8 {
                if futures::poll!(dropped.as_mut()).is_ready() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_micros(50)).await;
            }
        }
        store.release_leases("dropped-w").await.unwrap();
        assert_eq!(store.renew_leases("dropped-nobody", 10).await.unwrap(), 0, "round {round}");
    }
    let claimed = store.claim("dropped-w", &workflows, 10, 20, 5).await.unwrap();
    assert_eq!(ids(&claimed), ["dropped/c"], "the writer still claims");
    store.release_leases("dropped-w").await.unwrap();
}

/// What the trait cannot show: a restart deletes the consumed event rows (those consumed after it
/// stay, consumed), an event keeps its first consumer, and an event added earlier in a batch can
/// be consumed later in it (this store assigns consecutive ids, so the test knows the id).
async fn check_sqlite_event_rows(store: &SqliteStore) {
    let id = "sqlev/a";
    store.write(&[create(instance(id, "sqlev_wf", 1)), add_event(id, "e1", "1", 10)]).await.unwrap();
    let e1 = store.events(id).await.unwrap()[0].event_id;
    let e2 = e1 + 1;
    store
        .write(&[
            consume(id, e1, 0, 3),
            add_event(id, "e2", "2", 11),
            continue_as_new(id, "\"next\"", 1, 12),
            consume(id, e2, 1, 0),
            consume(id, e2, 1, 9),
            add_event(id, "e3", "3", 13),
        ])
        .await
        .unwrap();
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT seq, consumed_generation, consumed_by_seq FROM events WHERE instance_id = ? ORDER BY seq",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![(e2, Some(1), Some(0)), (e2 + 1, None, None)],
        "e1 went with the restart; e2's first consumer"
    );
    assert_eq!(event_names(&store.events(id).await.unwrap()), ["e3"]);
    sqlx::query("DELETE FROM events WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
}

/// What the trait cannot show: a purge leaves no row of the instance in any table (consumed
/// events included), and an assertion on a status the engine cannot have written is a corrupt row.
async fn check_sqlite_purge_rows(store: &SqliteStore) {
    let id = "sqlpurge/a";
    store
        .write(&[
            create(instance(id, "sqlpurge_wf", 1)),
            put(record(id, 0, 0)),
            put(record(id, 3, 0)),
            add_event(id, "used", "1", 2),
            add_event(id, "kept", "2", 3),
            enqueue(task(id, 0, 0, "sqlpurge_act", 1, 1)),
            enqueue(task(id, 1, 0, "sqlpurge_act", 1, 1)),
        ])
        .await
        .unwrap();
    let used = store.events(id).await.unwrap()[0].event_id;
    store.write(&[consume(id, used, 0, 1)]).await.unwrap();
    let count = || async {
        let mut counts = Vec::new();
        for sql in [
            "SELECT count(*) FROM instances WHERE id = ?",
            "SELECT count(*) FROM journal WHERE instance_id = ?",
            "SELECT count(*) FROM events WHERE instance_id = ?",
            "SELECT count(*) FROM activity_tasks WHERE instance_id = ?",
        ] {
            counts.push(sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(store.pool()).await.unwrap());
        }
        counts
    };
    assert_eq!(count().await, [1, 2, 2, 2]);
    store.write(&[purge(id)]).await.unwrap();
    assert_eq!(count().await, [0, 0, 0, 0]);

    store.write(&[create(instance(id, "sqlpurge_wf", 1))]).await.unwrap();
    sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = ?").bind(id).execute(store.pool()).await.unwrap();
    match store.write(&[assert_status(id, &RuntimeStatus::ALL)]).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains(id) && message.contains("Exploded"), "{message}"),
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    store.write(&[purge(id)]).await.unwrap();
}

/// Opening creates the file; everything committed is there after reopening it.
#[tokio::test]
async fn sqlite_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.db");
    assert!(!path.exists());
    let url = format!("sqlite:{}", path.display());

    let created = InstanceRecord {
        status: RuntimeStatus::Running,
        output: Some(r#""ok""#.into()),
        generation: 2,
        parent_id: Some("reopen/parent".into()),
        custom_status: Some("\"cs\"".into()),
        ..instance("reopen/a", "reopen_wf", 7)
    };
    let journal = vec![
        record("reopen/a", 2, 0),
        JournalRecord { status: RecordStatus::Retrying, due_at: Some(9), ..record("reopen/a", 2, 1) },
    ];
    {
        let store = SqliteStore::open(&url).await.unwrap();
        assert!(path.exists(), "opening creates the file");
        let ops: Vec<WriteOp> =
            std::iter::once(create(created.clone())).chain(journal.iter().cloned().map(put)).collect();
        store.write(&ops).await.unwrap();
        store.write(&[add_event("reopen/a", "used", "1", 8), add_event("reopen/a", "kept", "2", 9)]).await.unwrap();
        let used = store.events("reopen/a").await.unwrap()[0].event_id;
        store.write(&[consume("reopen/a", used, 2, 5)]).await.unwrap();
        store.claim("reopen-w", &names(&["reopen_wf"]), 10, 5_000, 1).await.unwrap();
        store.probe_commit().await.unwrap();
        // Dropped without `close`, as a process that stops would.
    }
    let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let claimed = InstanceRecord { owner: Some("reopen-w".into()), lease_until: Some(5_000), ..created };
    assert_eq!(get(&store, "reopen/a").await, claimed);
    assert_eq!(store.journal("reopen/a", 2).await.unwrap(), journal);
    let events = store.events("reopen/a").await.unwrap();
    assert_eq!(event_names(&events), ["kept"], "events and their consumption are kept");
    assert_eq!(store.stats(), Default::default(), "counters are per process");
    // Migrations already applied are not applied again, and the store still writes.
    store.write(&[put(record("reopen/a", 2, 2))]).await.unwrap();
    store.close().await;

    let again = SqliteStore::open(&url).await.unwrap();
    assert_eq!(again.journal("reopen/a", 2).await.unwrap().len(), 3);
    again.write(&[add_event("reopen/a", "after", "3", 10)]).await.unwrap();
    let after = again.events("reopen/a").await.unwrap();
    assert_eq!(event_names(&after), ["kept", "after"]);
    assert!(after[1].event_id > events[0].event_id, "ids keep counting up across reopening");

    // The store converts into what `Runtime::builder().store(..)` takes.
    let _shared: Arc<dyn Store> = again.into();
}

/// URLs that are not SQLite URLs, or name no file, are configuration errors.
#[tokio::test]
async fn sqlite_bad_urls_are_config_errors() {
    for url in [
        "",
        "postgres://localhost/db",
        "sqlite",
        "sqlite://",
        "sqlite:",
        "sqlite://x.db?bogus=1",
        "sqlite://x.db?mode=sideways",
    ] {
        match SqliteStore::open(url).await {
            Err(StoreError::Config(message)) => assert!(!message.is_empty()),
            Err(other) => panic!("{url:?}: expected a configuration error, got {other:?}"),
            Ok(_) => panic!("{url:?}: expected a configuration error, got a store"),
        }
    }
    // A well-formed URL whose directory does not exist is a backend error, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("no/such/dir/x.db").display());
    assert!(matches!(SqliteStore::open(&missing).await, Err(StoreError::Backend(_))));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

// Each test reads `DATABASE_URL` (and says SKIPPED and passes when it is unset), works in a fresh
// schema of its own and drops it at the end (best effort: a failed test leaves its schema behind,
// named `wf_test_...`, for a look).

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::Duration;

    use tokio::sync::broadcast;
    use workflow::store::WakeSignal;
    use workflow::{PostgresOptions, PostgresStore};

    use super::*;

    fn database_url() -> Option<String> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ => {
                eprintln!("SKIPPED: postgres conformance: DATABASE_URL is not set");
                None
            }
        }
    }

    /// A schema name no other test (in this process or another) uses.
    fn fresh_schema() -> String {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("wf_test_{}_{nanos}_{count}", std::process::id())
    }

    async fn open(url: &str, schema: &str) -> PostgresStore {
        PostgresStore::open_with(url, PostgresOptions::new().schema(schema).max_connections(4)).await.unwrap()
    }

    async fn drop_schema(store: &PostgresStore) {
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", store.schema());
        if let Err(error) = sqlx::query(&drop).execute(store.pool()).await {
            eprintln!("could not drop schema {}: {error}", store.schema());
        }
        store.close().await;
    }

    /// Makes the store reject any journal record named [`POISON`], through a trigger added behind
    /// its back, so a batch can be made to fail midway.
    async fn arm_poison(store: &PostgresStore) {
        sqlx::query(&format!(
            "CREATE FUNCTION conformance_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.name = '{POISON}' THEN RAISE EXCEPTION 'poisoned by the conformance suite'; END IF; \
             RETURN NEW; END $$"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER conformance_poison BEFORE INSERT OR UPDATE ON journal \
             FOR EACH ROW EXECUTE FUNCTION conformance_poison()",
        )
        .execute(store.pool())
        .await
        .unwrap();
    }

    async fn disarm_poison(store: &PostgresStore) {
        sqlx::query("DROP TRIGGER conformance_poison ON journal").execute(store.pool()).await.unwrap();
        sqlx::query("DROP FUNCTION conformance_poison()").execute(store.pool()).await.unwrap();
    }

    #[tokio::test]
    async fn postgres_store_conforms() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let store = open(&url, &schema).await;
        check_all_with(&store, Nul::Refused).await;
        arm_poison(&store).await;
        check_batch_is_atomic(&store, POISON).await;
        check_rolled_back_event_ids(&store).await;
        disarm_poison(&store).await;
        check_schema_and_settings(&store, &schema).await;
        check_list_plan(&store).await;
        check_corrupt_rows(&store).await;
        check_corrupt_task_rows(&store).await;
        check_event_rows(&store).await;
        check_purge_rows(&store).await;
        drop_schema(&store).await;
    }

    /// What the trait cannot show: a purge leaves no row of the instance in any table (consumed
    /// events included), and an assertion on a status the engine cannot have written is a corrupt
    /// row.
    async fn check_purge_rows(store: &PostgresStore) {
        let id = "pgpurge/a";
        store
            .write(&[
                create(instance(id, "pgpurge_wf", 1)),
                put(record(id, 0, 0)),
                put(record(id, 3, 0)),
                add_event(id, "used", "1", 2),
                add_event(id, "kept", "2", 3),
                enqueue(task(id, 0, 0, "pgpurge_act", 1, 1)),
                enqueue(task(id, 1, 0, "pgpurge_act", 1, 1)),
            ])
            .await
            .unwrap();
        let used = store.events(id).await.unwrap()[0].event_id;
        store.write(&[consume(id, used, 0, 1)]).await.unwrap();
        let count = || async {
            let mut counts = Vec::new();
            for sql in [
                "SELECT count(*) FROM instances WHERE id = $1",
                "SELECT count(*) FROM journal WHERE instance_id = $1",
                "SELECT count(*) FROM events WHERE instance_id = $1",
                "SELECT count(*) FROM activity_tasks WHERE instance_id = $1",
            ] {
                counts.push(sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(store.pool()).await.unwrap());
            }
            counts
        };
        assert_eq!(count().await, [1, 2, 2, 2]);
        store.write(&[purge(id)]).await.unwrap();
        assert_eq!(count().await, [0, 0, 0, 0]);

        store.write(&[create(instance(id, "pgpurge_wf", 1))]).await.unwrap();
        sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = $1")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        match store.write(&[assert_status(id, &RuntimeStatus::ALL)]).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("Exploded"), "{message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        store.write(&[purge(id)]).await.unwrap();
    }

    /// A rolled-back batch leaves no event behind and no wake-up; its ids are skipped, not reused,
    /// and later ids still increase. (The poison must be armed.)
    async fn check_rolled_back_event_ids(store: &PostgresStore) {
        let id = "pgroll/a";
        store.write(&[create(instance(id, "pgroll_wf", 1)), add_event(id, "before", "1", 5)]).await.unwrap();
        let before = store.events(id).await.unwrap()[0].event_id;
        let poisoned = JournalRecord { name: POISON.into(), ..record(id, 0, 0) };
        let result =
            store.write(&[add_event(id, "lost", "2", 6), add_event(id, "lost too", "3", 7), put(poisoned)]).await;
        assert!(result.is_err(), "{result:?}");
        assert_eq!(get(store, id).await.wake_at, Some(5), "the wake-up was rolled back");
        store.write(&[add_event(id, "after", "4", 8)]).await.unwrap();
        let events = store.events(id).await.unwrap();
        assert_eq!(event_names(&events), ["before", "after"]);
        assert!(events[1].event_id > before + 1, "the rolled-back ids are skipped: {events:?}");
    }

    /// A list page (list order, after a keyset) can be read from the (created_at, id) index as a
    /// range, without a sort. (Asked with sequential scans priced out: on a table this small the
    /// planner would rightly read it all.)
    async fn check_list_plan(store: &PostgresStore) {
        let mut tx = store.pool().begin().await.unwrap();
        sqlx::query("SET LOCAL enable_seqscan = off").execute(&mut *tx).await.unwrap();
        for page in [
            "SELECT id FROM instances ORDER BY created_at, id LIMIT 10",
            "SELECT id FROM instances WHERE (created_at, id) > (1, 'a') ORDER BY created_at, id LIMIT 10",
        ] {
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {page}")).fetch_all(&mut *tx).await.unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains("instances_created"), "{page}: {plan}");
            assert!(!plan.contains("Sort"), "{page} sorts: {plan}");
        }
        tx.rollback().await.unwrap();
    }

    /// The tables and sqlx's bookkeeping are in the store's schema, every connection searches only
    /// it, and commits stay synchronous.
    async fn check_schema_and_settings(store: &PostgresStore, schema: &str) {
        assert_eq!(store.schema(), schema);
        let pool = store.pool();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        )
        .bind(schema)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(tables, ["_sqlx_migrations", "activity_tasks", "events", "instances", "journal", "probe"]);
        let (current, search_path, synchronous_commit): (String, String, String) = sqlx::query_as(
            "SELECT current_schema(), current_setting('search_path'), current_setting('synchronous_commit')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!((current.as_str(), search_path.trim_matches('"')), (schema, schema));
        assert_eq!(synchronous_commit, "on");
    }

    /// Rows damaged behind the store's back read as `Corrupt` errors naming the row.
    async fn check_corrupt_rows(store: &PostgresStore) {
        let id = "corrupt/a";
        let pool = store.pool();
        store.write(&[create(instance(id, "corrupt_wf", 1)), put(record(id, 0, 3))]).await.unwrap();
        sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = $1").bind(id).execute(pool).await.unwrap();
        match store.instance(id).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("Exploded"), "message names the row: {message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        for generation in [-1, 1_i64 << 32] {
            sqlx::query("UPDATE instances SET status = 'Pending', generation = $2 WHERE id = $1")
                .bind(id)
                .bind(generation)
                .execute(pool)
                .await
                .unwrap();
            assert!(
                matches!(store.instance(id).await, Err(StoreError::Corrupt(m)) if m.contains(id) && m.contains("generation"))
            );
        }
        sqlx::query("UPDATE journal SET status = 'Sideways' WHERE instance_id = $1")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        match store.journal(id, 0).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("seq 3"), "message names the record: {message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        sqlx::query("UPDATE journal SET status = 'Completed', attempt = -1 WHERE instance_id = $1")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        assert!(matches!(store.journal(id, 0).await, Err(StoreError::Corrupt(m)) if m.contains("attempt")));
        for group in [-1, 1_i64 << 32] {
            sqlx::query("UPDATE journal SET attempt = 1, parallel_group = $2 WHERE instance_id = $1")
                .bind(id)
                .bind(group)
                .execute(pool)
                .await
                .unwrap();
            assert!(matches!(store.journal(id, 0).await, Err(StoreError::Corrupt(m)) if m.contains("parallel_group")));
        }
        sqlx::query("DELETE FROM instances WHERE id = $1").bind(id).execute(pool).await.unwrap();
        sqlx::query("DELETE FROM journal WHERE instance_id = $1").bind(id).execute(pool).await.unwrap();
    }

    /// Task rows damaged behind the store's back read as `Corrupt` errors naming the task and
    /// column: out-of-range numbers, outcome columns set only in part.
    async fn check_corrupt_task_rows(store: &PostgresStore) {
        let id = "corrupt/task";
        store.write(&[enqueue(task(id, 0, 3, "corrupt_act", 1, 1))]).await.unwrap();
        store.claim_tasks("corrupt-w", &names(&["corrupt_act"]), 1, 100, 1).await.unwrap();
        assert!(store.complete_task("corrupt-w", id, 0, 3, 1, &outcome(true, "1", 2)).await.unwrap());
        for (sql, column) in [
            ("UPDATE activity_tasks SET attempt = -1 WHERE instance_id = $1", "attempt"),
            ("UPDATE activity_tasks SET attempt = 4294967296 WHERE instance_id = $1", "attempt"),
            ("UPDATE activity_tasks SET attempt = 1, seq = -3 WHERE instance_id = $1", "seq"),
            ("UPDATE activity_tasks SET seq = 3, finished_at = NULL WHERE instance_id = $1", "finished_at"),
        ] {
            sqlx::query(sql).bind(id).execute(store.pool()).await.unwrap();
            match store.finished_tasks(&names(&[id])).await {
                Err(StoreError::Corrupt(message)) => {
                    assert!(message.contains(id) && message.contains(column), "{message}")
                }
                other => panic!("{sql}: expected a corrupt-row error, got {other:?}"),
            }
        }
        // Without its outcome text the task counts as unfinished, and a claim reads the damaged row.
        sqlx::query("UPDATE activity_tasks SET finished_at = 2, outcome = NULL WHERE instance_id = $1")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        assert!(store.finished_tasks(&names(&[id])).await.unwrap().is_empty());
        match store.claim_tasks("corrupt-w2", &names(&["corrupt_act"]), 200, 300, 1).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("outcome"), "{message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        sqlx::query("DELETE FROM activity_tasks WHERE instance_id = $1").bind(id).execute(store.pool()).await.unwrap();
    }

    /// What the trait cannot show: a restart deletes the consumed event rows (those consumed after
    /// it stay, consumed), and an event keeps its first consumer.
    async fn check_event_rows(store: &PostgresStore) {
        let id = "pgev/a";
        store.write(&[create(instance(id, "pgev_wf", 1)), add_event(id, "e1", "1", 10)]).await.unwrap();
        let e1 = store.events(id).await.unwrap()[0].event_id;
        store.write(&[consume(id, e1, 0, 3), add_event(id, "e2", "2", 11)]).await.unwrap();
        let e2 = store.events(id).await.unwrap()[0].event_id;
        store
            .write(&[
                continue_as_new(id, "\"next\"", 1, 12),
                consume(id, e2, 1, 0),
                consume(id, e2, 1, 9),
                add_event(id, "e3", "3", 13),
            ])
            .await
            .unwrap();
        let e3 = store.events(id).await.unwrap()[0].event_id;
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT seq, consumed_generation, consumed_by_seq FROM events WHERE instance_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            rows,
            vec![(e2, Some(1), Some(0)), (e3, None, None)],
            "e1 went with the restart; e2's first consumer"
        );
        assert!(e1 < e2 && e2 < e3);
    }

    /// Claimers on separate stores (separate pools, as separate processes would have) never take
    /// the same instance, and together take every one.
    #[tokio::test]
    async fn postgres_concurrent_stores_never_claim_the_same_instance() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let mut stores = Vec::new();
        for _ in 0..8 {
            stores.push(open(&url, &schema).await);
        }
        let wf = "pgclaim_wf";
        let ops: Vec<WriteOp> = (0..300).map(|i| create(instance(&format!("pgclaim/{i:03}"), wf, i % 17))).collect();
        stores[0].write(&ops).await.unwrap();
        let workflows = names(&[wf]);
        let claims = futures::future::join_all(stores.iter().enumerate().map(|(n, store)| {
            let workflows = &workflows;
            async move {
                let worker = format!("pgclaim-worker-{n}");
                let mut taken = Vec::new();
                loop {
                    let claimed = store.claim(&worker, workflows, 100, 1_000, 7).await.unwrap();
                    if claimed.is_empty() {
                        return (worker, taken);
                    }
                    assert!(claimed.iter().all(|r| r.owner.as_deref() == Some(worker.as_str())));
                    taken.extend(claimed.into_iter().map(|r| r.id));
                }
            }
        }))
        .await;
        let mut seen = HashSet::new();
        for (worker, taken) in &claims {
            for id in taken {
                assert!(seen.insert(id.clone()), "{id} claimed twice");
                assert_eq!(get(&stores[0], id).await.owner.as_deref(), Some(worker.as_str()));
            }
        }
        assert_eq!(seen.len(), 300);
        assert!(claims.iter().filter(|(_, taken)| !taken.is_empty()).count() > 1, "the claimers did race");

        // Leases lapse for every store alike: a second round takes them all again, once each.
        let again = futures::future::join_all(
            stores.iter().map(|store| store.claim("pgclaim-late", &workflows, 1_001, 2_000, 1_000)),
        )
        .await;
        let mut retaken = HashSet::new();
        for claim in again {
            for record in claim.unwrap() {
                assert!(retaken.insert(record.id), "claimed twice after the leases lapsed");
            }
        }
        assert_eq!(retaken, seen);
        for store in &stores[1..] {
            store.close().await;
        }
        drop_schema(&stores[0]).await;
    }

    /// Batches asserting a status, on separate stores (as separate processes would be), racing to
    /// change it: the assertion holds until the commit, so exactly one goes through and every
    /// other one is refused with the status the winner left (or `None` once it purged), with no
    /// deadlock between them.
    #[tokio::test]
    async fn postgres_racing_assertions_let_one_through() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let mut stores = Vec::new();
        for _ in 0..6 {
            stores.push(open(&url, &schema).await);
        }
        let (wf, x) = ("pgrace_wf", "pgrace/x");
        stores[0].write(&[create(with_status(instance(x, wf, 1), RuntimeStatus::Running))]).await.unwrap();

        let finish = |n: usize| {
            vec![
                assert_status(x, &[RuntimeStatus::Running]),
                WriteOp::Finish {
                    id: x.into(),
                    status: RuntimeStatus::Terminated,
                    output: None,
                    error: Some(format!("\"by {n}\"")),
                    updated_at: 10,
                },
            ]
        };
        let results = futures::future::join_all(
            stores.iter().enumerate().map(|(n, store)| async move { store.write(&finish(n)).await }),
        )
        .await;
        let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(n, _)| n).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for result in results.into_iter().filter(|r| r.is_err()) {
            assert_eq!(conflict(result), (x.into(), Some(RuntimeStatus::Terminated)));
        }
        assert_eq!(get(&stores[0], x).await.error, Some(format!("\"by {}\"", winners[0])));

        let purge_x = [assert_status(x, &[RuntimeStatus::Terminated]), purge(x), put(record(x, 0, 0))];
        let results = futures::future::join_all(stores.iter().map(|store| store.write(&purge_x))).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        for result in results.into_iter().filter(|r| r.is_err()) {
            assert_eq!(conflict(result), (x.into(), None));
        }
        assert_eq!(stores[0].instance(x).await.unwrap(), None);
        assert_eq!(stores[0].journal(x, 0).await.unwrap().len(), 1, "written once, after the purge");
        for store in &stores[1..] {
            store.close().await;
        }
        drop_schema(&stores[0]).await;
    }

    async fn next_signal(signals: &mut broadcast::Receiver<WakeSignal>) -> WakeSignal {
        tokio::time::timeout(Duration::from_secs(10), signals.recv())
            .await
            .expect("no wake signal within 10 s")
            .expect("the wake-signal channel failed")
    }

    /// Commits on one store wake another store on the same schema (another process, in effect),
    /// once per signal per batch, in commit order; a rolled-back batch sends nothing, nor do
    /// batches that make nothing runnable, nor the finish of an instance nobody watches; a store
    /// on another schema hears none of it.
    #[tokio::test]
    async fn postgres_wake_signals_reach_other_stores() {
        let Some(url) = database_url() else { return };
        let (schema, other_schema) = (fresh_schema(), fresh_schema());
        let writer = open(&url, &schema).await;
        let listener = open(&url, &schema).await;
        let other = open(&url, &other_schema).await;
        let mut signals = listener.wake_signals().expect("PostgreSQL sends wake signals");
        let mut own = writer.wake_signals().unwrap();
        let mut elsewhere = other.wake_signals().unwrap();
        let (wf, x, y, q) = ("pgwake_wf", "pgwake/x", "pgwake/y", "pgwake/q");

        writer
            .write(&[create(instance(x, wf, 1)), create(instance(y, wf, 2)), create(instance(q, wf, 3))])
            .await
            .unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable);
        assert_eq!(next_signal(&mut own).await, WakeSignal::Runnable, "the writing store hears itself too");

        writer
            .write(&[
                add_event(x, "a", "1", 3),
                put(record(x, 0, 0)),
                add_event(y, "b", "2", 4),
                add_event(x, "c", "3", 5),
            ])
            .await
            .unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(x.into()));
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(y.into()));

        // Nothing runnable: no signal. (The next signal is the next batch's.)
        writer.write(&[put(record(x, 0, 1)), set_custom(x, Some("1"), 6)]).await.unwrap();
        assert_eq!(writer.release_leases("pgwake-nobody").await.unwrap(), 0);
        // Rolled back: no signal.
        arm_poison(&writer).await;
        let poisoned = JournalRecord { name: POISON.into(), ..record(y, 0, 0) };
        assert!(writer.write(&[add_event(y, "lost", "0", 7), put(poisoned)]).await.is_err());
        disarm_poison(&writer).await;

        let finish = finish_of(y);
        // Watched (by a waiter on the listening store), its finish is signalled.
        let watched = listener.watch(y).await.unwrap().expect("y exists");
        assert_eq!(watched.status, RuntimeStatus::Pending);
        assert_eq!(listener.watch("pgwake/missing").await.unwrap(), None);
        writer.write(&[finish.clone(), evict(x, 50), finish]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable);
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Finished(y.into()));
        let done = listener.watch(y).await.unwrap().expect("y exists");
        assert_eq!(
            (done.status, done.output.as_deref()),
            (RuntimeStatus::Completed, Some("1")),
            "a watch reads the end"
        );
        // A batch that takes the transaction path (it adds an event) signals a watched finish too.
        listener.watch(q).await.unwrap();
        let finish_q = finish_of(q);
        writer.write(&[add_event(q, "late", "1", 9), finish_q]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(q.into()));
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Finished(q.into()));

        assert_eq!(ids(&writer.claim("pgwake-w", &names(&[wf]), 50, 1_000, 10).await.unwrap()), [x]);
        assert_eq!(writer.release_leases("pgwake-w").await.unwrap(), 1);
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable, "releasing a lease wakes claimers");

        other.write(&[add_event("pgwake/z", "z", "1", 1)]).await.unwrap();
        assert_eq!(next_signal(&mut elsewhere).await, WakeSignal::Event("pgwake/z".into()));
        // Nobody watches x: its finish sends nothing (the next signal is the next batch's).
        writer.write(&[finish_of(x)]).await.unwrap();
        writer.write(&[add_event(x, "last", "1", 9)]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(x.into()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(signals.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "nothing else came");
        assert!(matches!(elsewhere.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "no cross-talk");

        drop_schema(&other).await;
        listener.close().await;
        drop_schema(&writer).await;
    }

    /// Queueing a task (and releasing a task's lease) signals `TaskQueued`, a stored outcome
    /// `TaskDone` of its instance, to every store on the schema; a queue rolled back or a
    /// completion refused sends nothing.
    #[tokio::test]
    async fn postgres_task_signals_reach_other_stores() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let writer = open(&url, &schema).await;
        let listener = open(&url, &schema).await;
        let mut signals = listener.wake_signals().unwrap();
        let (act, x) = ("pgtask_act", "pgtask/x");

        writer.write(&[enqueue(task(x, 0, 0, act, 1, 1)), enqueue(task(x, 0, 1, act, 1, 1))]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::TaskQueued, "once per batch");
        assert_eq!(writer.claim_tasks("pgtask-w", &names(&[act]), 1, 100, 10).await.unwrap().len(), 2);

        arm_poison(&writer).await;
        let poisoned = JournalRecord { name: POISON.into(), ..record(x, 0, 0) };
        assert!(writer.write(&[enqueue(task(x, 0, 2, act, 1, 1)), put(poisoned)]).await.is_err());
        disarm_poison(&writer).await;
        let done = outcome(true, "1", 2);
        assert!(!writer.complete_task("pgtask-other", x, 0, 0, 1, &done).await.unwrap());
        assert!(writer.complete_task("pgtask-w", x, 0, 0, 1, &done).await.unwrap());
        assert_eq!(next_signal(&mut signals).await, WakeSignal::TaskDone(x.into()), "nothing before it");

        assert_eq!(writer.release_leases("pgtask-w").await.unwrap(), 1);
        assert_eq!(next_signal(&mut signals).await, WakeSignal::TaskQueued, "a released task is claimable");
        assert_eq!(writer.release_leases("pgtask-w").await.unwrap(), 0);
        writer.write(&[delete_task(x, 0, 1)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(signals.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "nothing else came");
        listener.close().await;
        drop_schema(&writer).await;
    }

    /// Everything committed is there after reconnecting; migrations already applied are not
    /// applied again; event ids keep increasing.
    #[tokio::test]
    async fn postgres_reopen_keeps_everything() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let created = InstanceRecord {
            status: RuntimeStatus::Running,
            output: Some(r#""ok""#.into()),
            generation: 2,
            parent_id: Some("reopen/parent".into()),
            custom_status: Some("\"cs\"".into()),
            ..instance("reopen/a", "reopen_wf", 7)
        };
        let journal = vec![
            record("reopen/a", 2, 0),
            JournalRecord { status: RecordStatus::Retrying, due_at: Some(9), ..record("reopen/a", 2, 1) },
        ];
        let kept = {
            let store = open(&url, &schema).await;
            let ops: Vec<WriteOp> =
                std::iter::once(create(created.clone())).chain(journal.iter().cloned().map(put)).collect();
            store.write(&ops).await.unwrap();
            store.write(&[add_event("reopen/a", "used", "1", 8), add_event("reopen/a", "kept", "2", 9)]).await.unwrap();
            let events = store.events("reopen/a").await.unwrap();
            store.write(&[consume("reopen/a", events[0].event_id, 2, 5)]).await.unwrap();
            store.claim("reopen-w", &names(&["reopen_wf"]), 10, 5_000, 1).await.unwrap();
            store.probe_commit().await.unwrap();
            events[1].event_id
            // Dropped without `close`, as a process that stops would.
        };
        let store = open(&url, &schema).await;
        let claimed = InstanceRecord { owner: Some("reopen-w".into()), lease_until: Some(5_000), ..created };
        assert_eq!(get(&store, "reopen/a").await, claimed);
        assert_eq!(store.journal("reopen/a", 2).await.unwrap(), journal);
        assert_eq!(event_names(&store.events("reopen/a").await.unwrap()), ["kept"]);
        assert_eq!(store.stats(), Default::default(), "counters are per process");
        let migrations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(store.pool()).await.unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/workflow-sqlx/migrations/postgres"))
            .unwrap()
            .count();
        assert_eq!(migrations, files as i64, "each migration applied once");
        store.write(&[add_event("reopen/a", "after", "3", 10)]).await.unwrap();
        let after = store.events("reopen/a").await.unwrap();
        assert_eq!(event_names(&after), ["kept", "after"]);
        assert!(after[1].event_id > kept, "ids keep counting up across reconnecting");
        let _shared: Arc<dyn Store> = open(&url, &schema).await.into();
        drop_schema(&store).await;
    }

    /// URLs that are not PostgreSQL URLs and schema names that are not plain identifiers are
    /// configuration errors, found before connecting.
    #[tokio::test]
    async fn postgres_bad_configuration_is_a_config_error() {
        for url in ["", "sqlite://x.db", "postgres", "mysql://localhost/db", "postgres://h:notaport/db"] {
            match PostgresStore::open(url).await {
                Err(StoreError::Config(message)) => assert!(!message.is_empty()),
                Err(other) => panic!("{url:?}: expected a configuration error, got {other:?}"),
                Ok(_) => panic!("{url:?}: expected a configuration error, got a store"),
            }
        }
        let url = "postgres://nobody@127.0.0.1:1/none";
        for schema in ["", "1abc", "a-b", "x\"; DROP SCHEMA public; --", "pg_catalog", &"s".repeat(64)] {
            match PostgresStore::open_with(url, PostgresOptions::new().schema(schema)).await {
                Err(StoreError::Config(message)) => assert!(message.contains("schema"), "{message}"),
                Err(other) => panic!("{schema:?}: expected a configuration error, got {other:?}"),
                Ok(_) => panic!("{schema:?}: expected a configuration error, got a store"),
            }
        }
        match PostgresStore::open("postgres://u:hunter2@h:notaport/db").await {
            Err(StoreError::Config(message)) => assert!(!message.contains("hunter2"), "the password shows: {message}"),
            other => panic!("expected a configuration error, got {:?}", other.map(|_| ())),
        }
    }
}
