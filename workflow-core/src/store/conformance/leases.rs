//! Leases: renewing, releasing, and fencing a batch by its owner (AssertOwner).

use crate::store::{RuntimeStatus, Store, StoreError, WriteOp};

use super::{create, fence, finish_of, get, ids, instance, names, put, record, set_custom};

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
