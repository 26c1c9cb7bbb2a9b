//! Write batches: ops apply in order, all or nothing, refused whole by a failing assertion, and
//! counted in the stats.

use crate::store::{InstanceRecord, JournalRecord, RuntimeStatus, Store, StoreError, WriteOp};

use super::{
    add_event, assert_status, claim_everything, conflict, continue_as_new, create, enqueue, event_names, evict, fence,
    get, ids, instance, names, purge, put, record, set_custom, set_wake, task, with_status,
};

/// A batch's ops apply in order: a status set before the create is a no-op, after it sticks.
pub async fn check_batch_in_order(store: &dyn Store) {
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
pub async fn check_batch_is_atomic(store: &dyn Store, poisoned_name: &str) {
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
pub async fn check_stats(store: &dyn Store) {
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

/// The new ops apply in batch order too, among themselves and with the others: an op on an
/// instance before its create does nothing (an event before it is still kept).
pub async fn check_new_ops_in_order(store: &dyn Store) {
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

/// AssertStatus lets a batch through when the instance has one of the allowed statuses as it was
/// before the batch (ops of the batch, before or after the assertion, do not count). Otherwise the
/// whole batch is refused with `Conflict` for the first failing assertion in op order (not id
/// order), with the status found (`None` for a missing instance, one the batch creates included),
/// nothing of it applied and nothing counted. An empty allowed list never holds. A failing fence
/// wins over a failing assertion.
pub async fn check_assert_status(store: &dyn Store) {
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
