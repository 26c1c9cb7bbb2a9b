//! The store conformance suite: every `Store` runs the same checks, so the in-memory store (the
//! reference) and the database stores cannot drift apart.
//!
//! Each `check_*` function takes a `&dyn Store` and uses its own instance ids and workflow names,
//! so all of them can run one after the other on one store. One `#[tokio::test]` per store runs
//! them all, plus whatever only that backend can check (durability across reopening, URLs, ...).

use std::collections::HashSet;
use std::sync::Arc;

use workflow::{
    InstanceRecord, JournalRecord, MemoryStore, RecordStatus, RuntimeStatus, SqliteOptions, SqliteStore, Store,
    StoreError, Synchronous, WriteOp,
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
        kind: "activity".to_owned(),
        name: format!("step_{seq}"),
        status: RecordStatus::Completed,
        input: Some(format!("[{seq}]")),
        payload: Some(format!(r#"{{"seq":{seq}}}"#)),
        attempt: 1,
        due_at: None,
        recorded_at: 1_000 + i64::from(seq),
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
    };
    let minimal = instance("create/minimal", "create_wf", 5);
    let extremes = InstanceRecord {
        generation: u32::MAX,
        created_at: i64::MIN,
        updated_at: i64::MAX,
        lease_until: Some(-1),
        ..instance("create/extremes", "create_wf", 0)
    };
    let outcome =
        store.write(&[create(full.clone()), create(minimal.clone()), create(extremes.clone())]).await.unwrap();
    assert!(outcome.existing.is_empty(), "nothing existed: {outcome:?}");
    assert_eq!(get(store, "create/full").await, full);
    assert_eq!(get(store, "create/minimal").await, minimal);
    assert_eq!(get(store, "create/extremes").await, extremes);
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
        kind: "timer".into(),
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
        .chain([3, 1].into_iter().map(|seq| put(JournalRecord { kind: "gen1".into(), ..record(id, 1, seq) })))
        .chain([put(record("order/b", 0, 0))])
        .collect();
    store.write(&ops).await.unwrap();

    let gen0 = store.journal(id, 0).await.unwrap();
    assert_eq!(gen0.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![0, 1, 2, 10, 100]);
    assert_eq!(gen0[3], record(id, 0, 10));
    let gen1 = store.journal(id, 1).await.unwrap();
    assert_eq!(gen1.iter().map(|r| (r.generation, r.seq)).collect::<Vec<_>>(), vec![(1, 1), (1, 3)]);
    assert!(gen1.iter().all(|r| r.kind == "gen1"));
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
    assert_eq!(store.stats(), after_noops, "claims, leases and reads are not counted");

    store.probe_commit().await.unwrap();
    store.probe_commit().await.unwrap();
    let after_probe = store.stats();
    assert_eq!(after_probe.commits - after_noops.commits, 2);
    assert!(after_probe.ops >= after_noops.ops);

    assert!(store.write(&[]).await.unwrap().existing.is_empty(), "an empty batch is fine");
}

/// Payloads are opaque text: stored and returned byte for byte, never parsed or normalised.
async fn check_payloads_verbatim(store: &dyn Store) {
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

/// Random batches (big ones too, with repeated ids and keys in one batch), claims and lease calls,
/// applied to the store and to a fresh in-memory store: every answer and the final state must be
/// the same. This is what holds a store that regroups a batch's ops to "same effect as one by one".
async fn check_matches_reference(store: &dyn Store) {
    let reference = MemoryStore::new();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let ids: Vec<String> = (0..60).map(|i| format!("ref/{i:02}")).collect();
    let workflows = names(&["ref_wf_a", "ref_wf_b"]);
    let workers = ["ref-w1", "ref-w2", "ref-w3"];
    let statuses = RuntimeStatus::ALL;
    let payloads = ["null", r#"{"k":"v"}"#, "\"ü🦀\"", "not json", ""];
    let mut clock = 0_i64;
    for round in 0..60 {
        clock += 10;
        let size = *rng.pick(&[1, 2, 5, 40, 255, 257, 700, 1_100]);
        let mut ops = Vec::with_capacity(size);
        for _ in 0..size {
            let id = rng.pick(&ids).clone();
            let op = match rng.below(4) {
                0 => create(InstanceRecord {
                    workflow: rng.pick(&workflows).clone(),
                    status: *rng.pick(&statuses),
                    input: rng.pick(&payloads).to_string(),
                    created_at: clock + rng.below(5) as i64,
                    generation: rng.below(3) as u32,
                    ..instance(&id, "", 0)
                }),
                1 => put(JournalRecord {
                    status: *rng.pick(&[RecordStatus::Retrying, RecordStatus::Completed, RecordStatus::Failed]),
                    payload: Some(format!("{}#{round}", rng.pick(&payloads))),
                    attempt: rng.below(4) as u32,
                    recorded_at: clock,
                    ..record(&id, rng.below(3) as u32, rng.below(20) as u32)
                }),
                2 => WriteOp::SetStatus { id, status: *rng.pick(&statuses), updated_at: clock + rng.below(5) as i64 },
                _ => WriteOp::Finish {
                    id,
                    status: *rng.pick(&statuses),
                    output: Some(rng.pick(&payloads).to_string()).filter(|_| rng.below(2) == 0),
                    error: Some(format!("e{round}")).filter(|_| rng.below(2) == 0),
                    updated_at: clock,
                },
            };
            ops.push(op);
        }
        let expected = reference.write(&ops).await.unwrap();
        assert_eq!(store.write(&ops).await.unwrap(), expected, "round {round}: the same creates are skipped");

        let worker = *rng.pick(&workers);
        match rng.below(3) {
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
            _ => {
                let expected = reference.release_leases(worker).await.unwrap();
                assert_eq!(store.release_leases(worker).await.unwrap(), expected, "round {round}");
            }
        }
    }
    for id in &ids {
        assert_eq!(store.instance(id).await.unwrap(), reference.instance(id).await.unwrap(), "instance {id}");
        for generation in 0..3 {
            assert_eq!(
                store.journal(id, generation).await.unwrap(),
                reference.journal(id, generation).await.unwrap(),
                "journal of {id} generation {generation}"
            );
        }
    }
}

/// Everything every store must pass.
async fn check_all(store: &dyn Store) {
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
    check_payloads_verbatim(store).await;
    check_matches_reference(store).await;
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
    check_sqlite_corrupt_rows(&store).await;
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
    sqlx::query("DELETE FROM instances WHERE id = ?").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM journal WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
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
        store.claim("reopen-w", &names(&["reopen_wf"]), 10, 5_000, 1).await.unwrap();
        store.probe_commit().await.unwrap();
        // Dropped without `close`, as a process that stops would.
    }
    let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let claimed = InstanceRecord { owner: Some("reopen-w".into()), lease_until: Some(5_000), ..created };
    assert_eq!(get(&store, "reopen/a").await, claimed);
    assert_eq!(store.journal("reopen/a", 2).await.unwrap(), journal);
    assert_eq!(store.stats(), Default::default(), "counters are per process");
    // Migrations already applied are not applied again, and the store still writes.
    store.write(&[put(record("reopen/a", 2, 2))]).await.unwrap();
    store.close().await;

    let again = SqliteStore::open(&url).await.unwrap();
    assert_eq!(again.journal("reopen/a", 2).await.unwrap().len(), 3);

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

// PostgreSQL goes here when its store lands: a `#[tokio::test]` that reads `DATABASE_URL` (and
// returns early when it is unset), opens the store on a fresh schema, runs `check_all`, arms a
// poison trigger like `arm_sqlite_poison` and runs `check_batch_is_atomic`, then its own checks
// (reconnecting keeps everything, several stores on one database never claim the same instance).
