//! Leases: renewing, releasing, fencing a batch by its owner (AssertOwner), and liveness marks.

use crate::store::{RuntimeStatus, Store, StoreError, WriteOp};

use super::{create, enqueue, fence, finish_of, get, ids, instance, names, put, record, set_custom, task, task_keys};

/// Renewing extends only that worker's leases.
pub async fn check_renew(store: &dyn Store) {
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

    // A worker holding more instances than a store renews at once (the SQL stores renew 1,000
    // per statement) has every one renewed, and the count says so.
    let many = 1_234;
    let wf_many = "renew_wf_many";
    let creates: Vec<WriteOp> =
        (0..many).map(|n| create(instance(&format!("renew/many-{n:05}"), wf_many, 10 + n as i64))).collect();
    store.write(&creates).await.unwrap();
    assert_eq!(store.claim("renew-w4", &names(&[wf_many]), 100, 1_000, many).await.unwrap().len(), many);
    assert_eq!(store.renew_leases("renew-w4", 7_000).await.unwrap(), many as u64);
    let held = store.claim("renew-w5", &names(&[wf_many]), 2_000, 9_000, many).await.unwrap();
    assert!(held.is_empty(), "a renewed lease was taken: {:?}", ids(&held).first());
    let last = get(store, &format!("renew/many-{:05}", many - 1)).await;
    assert_eq!((last.owner.as_deref(), last.lease_until), (Some("renew-w4"), Some(7_000)));
}

/// Releasing frees a worker's leases so another worker claims them at once.
pub async fn check_release(store: &dyn Store) {
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

/// `AssertOwner` refuses the whole batch unless the instance exists and is owned by the writer
/// (as it was before the batch), and reports every fenced id.
pub async fn check_fencing(store: &dyn Store) {
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
    assert_eq!(get(store, &a.id).await.status, RuntimeStatus::Running, "as its claim left it, not finished");

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
    assert_eq!(get(store, &a.id).await.status, RuntimeStatus::Running, "as its claim left it, not finished");
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

/// Liveness marks ([`Store::register_worker`]): while a worker's mark is held, finding dead
/// workers leaves its leases alone; once the mark is dropped (as the worker's process dying
/// drops it), [`Store::release_dead_workers`] frees its instances and unfinished tasks for any
/// worker at once, long before the leases lapse, and leaves other workers' leases alone. Skipped
/// for a store that keeps no marks (`register_worker` returns `None`).
///
/// Waits (up to 30 s) for the store to see the dropped mark, which may take a moment (a
/// PostgreSQL session ending, or the server having started moments ago).
pub async fn check_liveness(store: &dyn Store) {
    let Some(mark) = store.register_worker("liveness-w1", &[]).await.unwrap() else { return };
    let other = store.register_worker("liveness-w2", &[]).await.unwrap();
    let (wf, activity, far) = ("liveness_wf", "liveness_act", i64::MAX / 2);
    store
        .write(&[
            create(instance("liveness/a", wf, 1)),
            create(instance("liveness/b", wf, 2)),
            create(instance("liveness/c", wf, 3)),
            enqueue(task("liveness/a", 0, 0, activity, 1, 1)),
            enqueue(task("liveness/c", 0, 0, activity, 1, 1)),
        ])
        .await
        .unwrap();
    assert_eq!(store.claim("liveness-w1", &names(&[wf]), 100, far, 2).await.unwrap().len(), 2);
    assert_eq!(store.claim("liveness-w2", &names(&[wf]), 100, far, 1).await.unwrap().len(), 1);
    assert_eq!(store.claim_tasks("liveness-w1", &names(&[activity]), 100, far, 1).await.unwrap().len(), 1);
    assert_eq!(store.claim_tasks("liveness-w2", &names(&[activity]), 100, far, 1).await.unwrap().len(), 1);

    store.release_dead_workers().await.unwrap();
    assert_eq!(get(store, "liveness/a").await.owner.as_deref(), Some("liveness-w1"), "a live worker keeps its leases");

    drop(mark);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut released = 0;
    while released < 3 {
        released += store.release_dead_workers().await.unwrap();
        assert!(std::time::Instant::now() < deadline, "a dropped mark's leases were not released ({released} of 3)");
        if released < 3 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    assert_eq!(released, 3, "two instances and one task");
    let taken = store.claim("liveness-w3", &names(&[wf]), 200, 300, 10).await.unwrap();
    assert_eq!(ids(&taken), vec!["liveness/a", "liveness/b"], "claimable at once, long before the leases lapse");
    let tasks = store.claim_tasks("liveness-w3", &names(&[activity]), 200, 300, 10).await.unwrap();
    assert_eq!(task_keys(&tasks), vec![("liveness/a", 0, 0)]);
    assert_eq!(get(store, "liveness/c").await.owner.as_deref(), Some("liveness-w2"), "the live worker keeps its own");
    assert_eq!(store.release_dead_workers().await.unwrap(), 0, "a dead worker is released once");
    drop(other);
}
