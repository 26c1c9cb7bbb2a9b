//! The task queue (distributed activities): queueing, claiming, completing, leases, and how
//! batches, finishes and restarts treat tasks.

use std::collections::HashSet;

use crate::store::{
    ActivityCap, Lease, RateLimit, RuntimeStatus, StartScope, Store, StoreError, TaskCompletion, TaskLease, TaskRecord,
    WriteOp,
};

use super::{
    claim_everything, claimed, continue_as_new, create, delete_task, enqueue, get, instance, names, outcome, task,
    task_keys, with_status, Nul,
};

/// A queued task comes back from a claim as it was queued, owned by the claimer until the lease
/// it asked for; the owner, lease and outcome of an EnqueueTask are ignored. The lease is live
/// until it lapses strictly before `now`, then another worker takes the task over.
pub async fn check_tasks_enqueue_and_claim(store: &dyn Store) {
    let act = "taskq_act";
    let full = TaskRecord {
        input: r#"{"order":42,"ü":"🦀"}"#.into(),
        start_to_close_ms: Some(30_000),
        heartbeat_timeout_ms: Some(i64::MAX),
        priority: i32::MAX,
        owner: Some("taskq-ghost".into()),
        lease_until: Some(1_000_000),
        outcome: Some(outcome(true, "1", 5)),
        trace_context: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
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
pub async fn check_tasks_claim_filters(store: &dyn Store) {
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
pub async fn check_tasks_complete(store: &dyn Store) {
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
pub async fn check_tasks_enqueue_attempts(store: &dyn Store) {
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
        priority: 7,
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
pub async fn check_tasks_in_batch(store: &dyn Store) {
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
pub async fn check_tasks_finish(store: &dyn Store) {
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
pub async fn check_tasks_continue_as_new(store: &dyn Store) {
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
pub async fn check_tasks_leases(store: &dyn Store) {
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
pub async fn check_tasks_concurrent_claims(store: &dyn Store) {
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
pub async fn check_tasks_payloads(store: &dyn Store, nul: Nul) {
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
pub async fn check_tasks(store: &dyn Store, nul: Nul) {
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
    check_tasks_caps(store).await;
    check_tasks_complete_many(store).await;
    check_tasks_rate(store).await;
    check_tasks_priority(store).await;
    check_write_leasing(store, false).await;
}

/// `write_leasing` takes a lease on a task its ops queue only while the task's key has room
/// under the lease's cap (the live leases of other workers and of earlier leases in the batch
/// counted, a lapsed one not), only for a task queued unowned at the lease's attempt under the
/// lease's key, and counts a rate-limited lease as a start that claims then see; a lease refused
/// leaves the task queued for a claim, and the ops apply either way. A store may take no lease
/// at all (the trait's default): then every answer is `false` and the tasks stay queued. With
/// `must_take`, the store must take them.
pub async fn check_write_leasing(store: &dyn Store, must_take: bool) {
    let (act, rated, now) = ("tlease_act", "tlease_rated_act", 1_000);
    let cap = ActivityCap { activity: act.to_owned(), concurrency: Some(2), rate: None };
    let lease = |id: &str, attempt: u32, key: &str, cap: &ActivityCap| {
        Lease::Task(TaskLease {
            instance_id: id.to_owned(),
            generation: 0,
            seq: 0,
            attempt,
            concurrency_key: key.to_owned(),
            owner: "tlease-w".to_owned(),
            lease_until: now + 5_000,
            now,
            cap: cap.clone(),
        })
    };
    let keyed = |id: &str, name: &str, key: &str| TaskRecord {
        concurrency_key: key.to_owned(),
        ..task(id, 0, 0, name, 1, now)
    };

    // Key "k" holds one live lease of another worker's claim (and one lapsed, which is free).
    store.write(&[enqueue(keyed("tlease/held", act, "k")), enqueue(keyed("tlease/lapsed", act, "k"))]).await.unwrap();
    assert_eq!(store.claim_tasks("tlease-other", &names(&[act]), now, now + 100, 1).await.unwrap().len(), 1);
    assert_eq!(store.claim_tasks("tlease-other", &names(&[act]), now, now - 1, 1).await.unwrap().len(), 1);
    let ops: Vec<WriteOp> =
        ["tlease/a", "tlease/b", "tlease/c"].iter().map(|id| enqueue(keyed(id, act, "k"))).collect();
    let mut ops = ops;
    ops.push(enqueue(keyed("tlease/other-key", act, "j")));
    let leases = [
        lease("tlease/a", 1, "k", &cap),
        lease("tlease/b", 1, "k", &cap),
        lease("tlease/c", 1, "k", &cap),
        lease("tlease/other-key", 1, "j", &cap),
        lease("tlease/missing", 1, "k", &cap),
        lease("tlease/other-key", 2, "j", &cap),
    ];
    let (_, taken) = store.write_leasing(&ops, &leases).await.unwrap();
    if !must_take && taken.iter().all(|t| !t) {
        // A store that takes no lease: the tasks are queued as a plain write queues them.
        let queued = store.tasks_of("tlease/a").await.unwrap_or_default();
        assert!(queued.iter().all(|t| t.owner.is_none()), "{queued:?}");
        return;
    }
    assert_eq!(taken, [true, false, false, true, false, false], "room for one more under k (held counts, lapsed not)");
    let owned = |id: &'static str| async move {
        store.tasks_of(id).await.unwrap().first().and_then(|t| t.owner.clone().zip(t.lease_until))
    };
    assert_eq!(owned("tlease/a").await, Some(("tlease-w".to_owned(), now + 5_000)));
    assert_eq!(owned("tlease/b").await, None, "a refused lease leaves the task queued");
    // A capped claim now finds k full (a, held) and takes nothing of it.
    let claimed = store
        .claim_tasks_capped("tlease-other", &names(&[act]), std::slice::from_ref(&cap), now, now + 100, 10)
        .await
        .unwrap();
    assert!(claimed.iter().all(|t| t.concurrency_key != "k"), "{claimed:?}");
    // A task already leased is not leased again.
    let (_, again) = store.write_leasing(&[], &[lease("tlease/a", 1, "k", &cap)]).await.unwrap();
    assert_eq!(again, [false]);

    // A rate of one start per 1,000 ms: the first lease takes it, the second does not, and a claim
    // sees the start.
    let rate = ActivityCap {
        activity: rated.to_owned(),
        concurrency: None,
        rate: Some(RateLimit { limit: 1, period_ms: 1_000 }),
    };
    let ops = vec![enqueue(keyed("tlease/r1", rated, "")), enqueue(keyed("tlease/r2", rated, ""))];
    let (_, taken) =
        store.write_leasing(&ops, &[lease("tlease/r1", 1, "", &rate), lease("tlease/r2", 1, "", &rate)]).await.unwrap();
    assert_eq!(taken, [true, false]);
    let starts = store.recent_starts(StartScope::Activity { activity: rated, key: "" }, now - 1_000).await.unwrap();
    assert_eq!(starts.iter().map(|(_, n)| n).sum::<u64>(), 1, "{starts:?}");
    assert!(store
        .claim_tasks_capped("tlease-other", &names(&[rated]), std::slice::from_ref(&rate), now, now + 100, 10)
        .await
        .unwrap()
        .is_empty());
    let later = store
        .claim_tasks_capped("tlease-other", &names(&[rated]), &[rate], now + 1_000, now + 2_000, 10)
        .await
        .unwrap();
    assert_eq!(
        later.iter().map(|t| t.instance_id.as_str()).collect::<Vec<_>>(),
        ["tlease/r2"],
        "once the window passed"
    );
}

/// Of the tasks claimable at once, a higher priority is claimed first, the oldest first within
/// one priority, by a plain claim and by a capped one (across its concurrency keys); a task not
/// yet visible waits whatever its priority, and a retry carries its new attempt's priority.
pub async fn check_tasks_priority(store: &dyn Store) {
    let (act, capped, now) = ("taskp_act", "taskp_capped_act", 1_000);
    let with = |id: &str, name: &str, key: &str, priority: i32, visible_at: i64| TaskRecord {
        concurrency_key: key.to_owned(),
        priority,
        ..task(id, 0, 0, name, 1, visible_at)
    };
    let ids = |tasks: &[TaskRecord]| tasks.iter().map(|t| t.instance_id.clone()).collect::<Vec<_>>();
    let plain = [
        with("taskp/old-low", act, "", -1, 1),
        with("taskp/old", act, "", 0, 2),
        with("taskp/new-high", act, "", 5, 30),
        with("taskp/newer-high", act, "", 5, 40),
        with("taskp/top-unseen", act, "", 9, now + 1),
        with("taskp/new", act, "", 0, 50),
    ];
    store.write(&plain.iter().cloned().map(enqueue).collect::<Vec<_>>()).await.unwrap();
    let first = store.claim_tasks("taskp-w", &names(&[act]), now, 5_000, 3).await.unwrap();
    assert_eq!(ids(&first), ["taskp/new-high", "taskp/newer-high", "taskp/old"], "priority, then age");
    assert_eq!(first.iter().map(|t| t.priority).collect::<Vec<_>>(), [5, 5, 0], "as queued");
    let rest = store.claim_tasks("taskp-w", &names(&[act]), now, 5_000, 10).await.unwrap();
    assert_eq!(ids(&rest), ["taskp/new", "taskp/old-low"], "the invisible one waits");

    // Capped at one per key: each key's front is its highest priority, and the worker's limit
    // goes to the highest priorities across the keys.
    let cap = [ActivityCap { activity: capped.to_owned(), concurrency: Some(1), rate: None }];
    let queued = [
        with("taskp/a-old", capped, "a", 0, 1),
        with("taskp/a-high", capped, "a", 3, 20),
        with("taskp/b-old", capped, "b", 0, 2),
        with("taskp/c-high", capped, "c", 7, 30),
    ];
    store.write(&queued.iter().cloned().map(enqueue).collect::<Vec<_>>()).await.unwrap();
    let both = names(&[capped]);
    let picked = store.claim_tasks_capped("taskp-w", &both, &cap, now, 5_000, 2).await.unwrap();
    assert_eq!(ids(&picked), ["taskp/c-high", "taskp/a-high"]);
    let next = store.claim_tasks_capped("taskp-w", &both, &cap, now, 5_000, 10).await.unwrap();
    assert_eq!(ids(&next), ["taskp/b-old"], "a and c are at their caps");

    // A retry (the next attempt) takes the priority it is queued with.
    let retry = TaskRecord { attempt: 2, ..with("taskp/b-old", capped, "b", 4, now) };
    assert!(store.complete_task("taskp-w", "taskp/b-old", 0, 0, 1, &outcome(false, "\"no\"", now)).await.unwrap());
    store.write(&[enqueue(retry)]).await.unwrap();
    let retried = store.claim_tasks_capped("taskp-w", &both, &cap, now, 5_000, 10).await.unwrap();
    assert_eq!(retried.iter().map(|t| (t.instance_id.as_str(), t.priority)).collect::<Vec<_>>(), [("taskp/b-old", 4)]);
}

/// A capped activity's claim takes, of each concurrency key, at most the cap less the tasks of
/// that key holding a live lease (a lapsed lease does not count; the empty key is a key like any
/// other); a long backlog of one key does not hold back another; uncapped activities are claimed
/// as usual; the worker's `limit` goes to the oldest picks. Without caps it is a plain claim.
pub async fn check_tasks_caps(store: &dyn Store) {
    let (act, free, now) = ("taskcap_act", "taskcap_free_act", 1_000);
    let cap = [ActivityCap { activity: act.to_owned(), concurrency: Some(2), rate: None }];
    let keyed = |id: &str, key: &str, visible_at: i64| TaskRecord {
        concurrency_key: key.to_owned(),
        ..task(id, 0, 0, act, 1, visible_at)
    };
    // Key "a": one task holding a live lease, one whose lease lapsed, and a backlog of four.
    store.write(&[enqueue(keyed("taskcap/held", "a", 0))]).await.unwrap();
    assert_eq!(task_keys(&store.claim_tasks("taskcap-other", &names(&[act]), 0, now, 1).await.unwrap()).len(), 1);
    store.write(&[enqueue(keyed("taskcap/lapsed", "a", 0))]).await.unwrap();
    let lapsed = store.claim_tasks("taskcap-other", &names(&[act]), 0, now - 1, 1).await.unwrap();
    assert_eq!(lapsed.len(), 1);
    let mut ops: Vec<WriteOp> = (1..=4).map(|n| enqueue(keyed(&format!("taskcap/a{n}"), "a", n))).collect();
    ops.extend((1..=3).map(|n| enqueue(keyed(&format!("taskcap/b{n}"), "b", 9 + n))));
    ops.extend((1..=3).map(|n| enqueue(keyed(&format!("taskcap/g{n}"), "", 19 + n))));
    ops.push(enqueue(task("taskcap/f1", 0, 0, free, 1, 30)));
    store.write(&ops).await.unwrap();
    let both = names(&[act, free]);
    let ids = |tasks: &[TaskRecord]| tasks.iter().map(|t| t.instance_id.clone()).collect::<Vec<_>>();

    let first = store.claim_tasks_capped("taskcap-w", &both, &cap, now, 5_000, 10).await.unwrap();
    assert_eq!(
        ids(&first),
        ["taskcap/lapsed", "taskcap/b1", "taskcap/b2", "taskcap/g1", "taskcap/g2", "taskcap/f1"],
        "a has room for one (held runs), b and the empty key for two each"
    );
    assert!(first.iter().all(|t| t.owner.as_deref() == Some("taskcap-w") && t.lease_until == Some(5_000)));
    assert!(store.claim_tasks_capped("taskcap-w", &both, &cap, now, 5_000, 10).await.unwrap().is_empty(), "at caps");

    // One of b ends: room for b3 (the worker's limit of one goes to it, the only pick).
    let done = outcome(true, "1", now);
    assert!(store.complete_task("taskcap-w", "taskcap/b1", 0, 0, 1, &done).await.unwrap());
    let next = store.claim_tasks_capped("taskcap-w", &both, &cap, now, 5_000, 1).await.unwrap();
    assert_eq!(ids(&next), ["taskcap/b3"]);
    // The held lease lapses: it no longer counts, and it is the oldest of a to take again.
    let later = store.claim_tasks_capped("taskcap-w", &both, &cap, now + 1, 5_000, 10).await.unwrap();
    assert_eq!(ids(&later), ["taskcap/held"]);
    // A cap of an activity not asked for changes nothing; without caps, a plain claim.
    let unrelated = [ActivityCap { activity: "taskcap_unrelated_act".to_owned(), concurrency: Some(1), rate: None }];
    let some = store.claim_tasks_capped("taskcap-w", &names(&[act]), &unrelated, now + 1, 5_000, 2).await.unwrap();
    assert_eq!(ids(&some), ["taskcap/a1", "taskcap/a2"]);
    let rest = store.claim_tasks_capped("taskcap-w", &names(&[act]), &[], now + 1, 5_000, 10).await.unwrap();
    assert_eq!(ids(&rest), ["taskcap/a3", "taskcap/a4", "taskcap/g3"]);
}

/// `complete_tasks` stores each outcome as `complete_task` would (the worker's, for the attempt
/// it holds, once), says which it stored in order, and counts one commit for the stored ones.
pub async fn check_tasks_complete_many(store: &dyn Store) {
    let act = "taskm_act";
    let (a, b, c) =
        (task("taskm/a", 0, 1, act, 2, 10), task("taskm/b", 0, 1, act, 1, 10), task("taskm/c", 1, 0, act, 1, 10));
    store.write(&[enqueue(a.clone()), enqueue(b.clone()), enqueue(c.clone())]).await.unwrap();
    assert_eq!(store.claim_tasks("taskm-w", &names(&[act]), 10, 100, 10).await.unwrap().len(), 3);
    let early = outcome(true, "0", 40);
    assert!(store.complete_task("taskm-w", "taskm/c", 1, 0, 1, &early).await.unwrap());
    let done = |id: &str, generation: u32, seq: u32, attempt: u32, payload: &str| TaskCompletion {
        instance_id: id.to_owned(),
        generation,
        seq,
        attempt,
        outcome: outcome(true, payload, 42),
    };
    let batch = [
        done("taskm/a", 0, 1, 1, "1"),
        done("taskm/a", 0, 1, 2, "2"),
        done("taskm/b", 0, 1, 1, "3"),
        done("taskm/c", 1, 0, 1, "4"),
        done("taskm/nobody", 0, 1, 1, "5"),
    ];
    let before = store.stats();
    assert!(!store.complete_tasks("taskm-other", &batch).await.unwrap().contains(&true), "another worker's");
    assert_eq!(store.stats(), before, "nothing stored, nothing counted");
    let stored = store.complete_tasks("taskm-w", &batch).await.unwrap();
    assert_eq!(stored, [false, true, true, false, false], "the wrong attempt, one already reported, no such task");
    let after = store.stats();
    assert_eq!((after.commits - before.commits, after.ops - before.ops), (1, 2), "one commit");
    assert!(store.complete_tasks("taskm-w", &[]).await.unwrap().is_empty());
    let finished = store.finished_tasks(&names(&["taskm/a", "taskm/b", "taskm/c"])).await.unwrap();
    let payloads: Vec<&str> = finished.iter().filter_map(|t| t.outcome.as_ref()).map(|o| o.payload.as_str()).collect();
    assert_eq!(payloads, ["2", "3", "0"]);
    // An instance's tasks, finished or not, as status lists them.
    store.write(&[enqueue(task("taskm/a", 0, 5, act, 1, 50))]).await.unwrap();
    let of_a = store.tasks_of("taskm/a").await.unwrap();
    let keys: Vec<(u32, bool)> = of_a.iter().map(|t| (t.seq, t.outcome.is_some())).collect();
    assert_eq!(keys, [(1, true), (5, false)]);
    assert!(store.tasks_of("taskm/nobody").await.unwrap().is_empty());
}

/// A rate-limited activity's claim takes, of each key, at most the rate less the claims of that
/// key in the period ending at `now` (a claim exactly one period ago no longer counts), whether
/// or not those tasks still run; with a concurrency cap as well, the lesser room applies.
pub async fn check_tasks_rate(store: &dyn Store) {
    let (act, both_act) = ("taskrate_act", "taskrate_both_act");
    let rate = Some(RateLimit { limit: 3, period_ms: 1_000 });
    let caps = [
        ActivityCap { activity: act.to_owned(), concurrency: None, rate },
        ActivityCap { activity: both_act.to_owned(), concurrency: Some(1), rate },
    ];
    let keyed = |id: &str, name: &str, key: &str, visible_at: i64| TaskRecord {
        concurrency_key: key.to_owned(),
        ..task(id, 0, 0, name, 1, visible_at)
    };
    let mut ops: Vec<WriteOp> = (0..5).map(|n| enqueue(keyed(&format!("taskrate/a{n}"), act, "a", n))).collect();
    ops.extend((0..2).map(|n| enqueue(keyed(&format!("taskrate/b{n}"), act, "b", 5 + n))));
    ops.extend((0..4).map(|n| enqueue(keyed(&format!("taskrate/c{n}"), both_act, "", n))));
    store.write(&ops).await.unwrap();
    let ids = |tasks: &[TaskRecord]| tasks.iter().map(|t| t.instance_id.clone()).collect::<Vec<_>>();
    let acts = names(&[act, both_act]);
    let claim = |now: i64| store.claim_tasks_capped("taskrate-w", &acts, &caps, now, now + 60_000, 10);

    let first = claim(10_000).await.unwrap();
    assert_eq!(ids(&first), ["taskrate/a0", "taskrate/c0", "taskrate/a1", "taskrate/a2", "taskrate/b0", "taskrate/b1"]);
    let done = outcome(true, "1", 10_000);
    for task in &first {
        assert!(store.complete_task("taskrate-w", &task.instance_id, 0, 0, 1, &done).await.unwrap());
    }
    // Nothing runs now, but three of "a" and the empty key's one of three started this period.
    let next = claim(10_500).await.unwrap();
    assert_eq!(ids(&next), ["taskrate/c1"], "the empty key: its cap of one is free, its rate has room");
    assert!(store.complete_task("taskrate-w", "taskrate/c1", 0, 0, 1, &done).await.unwrap());
    let next = claim(10_999).await.unwrap();
    assert_eq!(ids(&next), ["taskrate/c2"]);
    assert!(store.complete_task("taskrate-w", "taskrate/c2", 0, 0, 1, &done).await.unwrap());
    assert!(claim(10_999).await.unwrap().is_empty(), "three of each key started within the period");
    // What a status reads to say when the next may start: the starts of one key, oldest first.
    let starts = |activity, key, since| store.recent_starts(StartScope::Activity { activity, key }, since);
    assert_eq!(starts(act, "a", 9_999).await.unwrap(), [(10_000, 3)]);
    assert_eq!(starts(both_act, "", 9_999).await.unwrap(), [(10_000, 1), (10_500, 1), (10_999, 1)]);
    assert_eq!(starts(both_act, "", 10_500).await.unwrap(), [(10_999, 1)], "only those after `since`");
    assert!(starts(act, "none", 0).await.unwrap().is_empty());
    // The claims at 10,000 are a period old at 11,000: they no longer count.
    let later = claim(11_000).await.unwrap();
    assert_eq!(ids(&later), ["taskrate/a3", "taskrate/c3", "taskrate/a4"]);
}
