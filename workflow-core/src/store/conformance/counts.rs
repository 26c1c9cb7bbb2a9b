//! Counting what the store holds: each queue's depth, the instances per status.

use crate::store::{QueueDepth, QueueKind, RuntimeStatus, Store, TaskRecord};

use super::{create, enqueue, instance, names, outcome, task, with_status};

/// `queue_depths` counts the unfinished tasks per (activity, key): waiting (no live lease at
/// `now`, visible yet or not, or a lapsed lease) and running (a live lease), with the oldest
/// waiting task's `visible_at`; a task with an outcome is not counted. And the Pending (waiting)
/// and Running instances per (workflow, key), the oldest Pending one's `created_at`; other
/// statuses are not counted. Activities come first, then workflows, each in (name, key) order.
pub async fn check_queue_depths(store: &dyn Store) {
    let (act, other, wf, now) = ("qd_act", "qd_other_act", "qd_wf", 10_000);
    let keyed = |id: &str, name: &str, key: &str, visible_at: i64| TaskRecord {
        concurrency_key: key.to_owned(),
        ..task(id, 0, 0, name, 1, visible_at)
    };
    let queued = [
        keyed("qd/a1", act, "a", 100),
        keyed("qd/a2", act, "a", 50),
        keyed("qd/a3", act, "a", 300),
        keyed("qd/b1", act, "b", now + 5_000),
        keyed("qd/c1", act, "c", 10),
        keyed("qd/o1", other, "", 70),
    ];
    store.write(&queued.into_iter().map(enqueue).collect::<Vec<_>>()).await.unwrap();
    // c1 claimed with a lease that lapses before `now`; a2 with one that holds; o1 finished.
    let claimed = store.claim_tasks("qd-w1", &names(&[act]), 20, 5_000, 1).await.unwrap();
    assert_eq!(claimed.iter().map(|t| t.instance_id.as_str()).collect::<Vec<_>>(), ["qd/c1"]);
    let claimed = store.claim_tasks("qd-w2", &names(&[act]), 60, now + 20_000, 1).await.unwrap();
    assert_eq!(claimed.iter().map(|t| t.instance_id.as_str()).collect::<Vec<_>>(), ["qd/a2"]);
    let claimed = store.claim_tasks("qd-w2", &names(&[other]), 80, now + 20_000, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store.complete_task("qd-w2", "qd/o1", 0, 0, 1, &outcome(true, "1", 90)).await.unwrap());

    let instances = [
        ("qd/p1", "k", RuntimeStatus::Pending, 5),
        ("qd/p2", "k", RuntimeStatus::Pending, 3),
        ("qd/r1", "k", RuntimeStatus::Running, 1),
        ("qd/r2", "", RuntimeStatus::Running, 2),
        ("qd/done", "", RuntimeStatus::Completed, 1),
        ("qd/held", "k", RuntimeStatus::Suspended, 1),
    ];
    let records = instances.iter().map(|(id, key, status, created_at)| {
        let record = with_status(instance(id, wf, *created_at), *status);
        create(crate::store::InstanceRecord { concurrency_key: (*key).to_owned(), ..record })
    });
    store.write(&records.collect::<Vec<_>>()).await.unwrap();

    let mine = |depths: Vec<QueueDepth>| -> Vec<QueueDepth> {
        depths.into_iter().filter(|depth| [act, other, wf].contains(&depth.name.as_str())).collect()
    };
    let depth = |kind, name: &str, key: &str, waiting, running, oldest_waiting| QueueDepth {
        kind,
        name: name.to_owned(),
        concurrency_key: key.to_owned(),
        waiting,
        running,
        oldest_waiting,
    };
    let found = mine(store.queue_depths(now).await.unwrap());
    let lapsed = found.iter().find(|d| d.concurrency_key == "c").expect("the lapsed lease's queue");
    assert_eq!((lapsed.waiting, lapsed.running), (1, 0), "a lapsed lease waits: {lapsed:?}");
    assert!(lapsed.oldest_waiting.is_some());
    let expected = [
        depth(QueueKind::Activity, act, "a", 2, 1, Some(100)),
        depth(QueueKind::Activity, act, "b", 1, 0, Some(now + 5_000)),
        lapsed.clone(),
        depth(QueueKind::Workflow, wf, "", 0, 1, None),
        depth(QueueKind::Workflow, wf, "k", 2, 1, Some(3)),
    ];
    assert_eq!(found, expected);
    // Once a2's lease has lapsed too, all of "a" waits.
    let later = mine(store.queue_depths(now + 20_001).await.unwrap());
    assert_eq!(later[0], depth(QueueKind::Activity, act, "a", 3, 0, later[0].oldest_waiting));
}

/// `status_counts` counts every status in [`RuntimeStatus::ALL`] order, each up to its bound.
pub async fn check_status_counts(store: &dyn Store) {
    let before = store.status_counts(u64::MAX).await.unwrap();
    assert_eq!(before.iter().map(|(status, _)| *status).collect::<Vec<_>>(), RuntimeStatus::ALL);
    let added = [
        (RuntimeStatus::Pending, 3),
        (RuntimeStatus::Running, 1),
        (RuntimeStatus::Failed, 2),
        (RuntimeStatus::ContinuedAsNew, 1),
    ];
    let mut ops = Vec::new();
    for (status, n) in added {
        for i in 0..n {
            ops.push(create(with_status(instance(&format!("sc/{}-{i}", status.as_str()), "sc_wf", 1), status)));
        }
    }
    store.write(&ops).await.unwrap();
    let after = store.status_counts(u64::MAX).await.unwrap();
    for ((status, was), (_, is)) in before.iter().zip(&after) {
        let more = added.iter().find(|(s, _)| s == status).map_or(0, |(_, n)| *n);
        assert_eq!(*is, was + more, "{status:?}");
    }
    let capped = store.status_counts(2).await.unwrap();
    for ((status, is), (_, count)) in after.iter().zip(&capped) {
        assert_eq!(*count, (*is).min(2), "{status:?} up to 2");
    }
}
