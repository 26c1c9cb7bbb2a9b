//! Activity slots (`Store::reserve_slots`): taken only while the cap has room under the key and
//! nothing of that key waits in the queue, counted by claims and leasing writes as running
//! tasks are, renewed, given back and dropped with their owner's leases.

use super::{enqueue, names, task};
use crate::store::{ActivityCap, Lease, SlotRequest, Store, TaskLease, TaskRecord};

/// Slots of an activity capped at 3: two workers take what is left, never more; a claim and a
/// leasing write under the full key take nothing, another key is free; a queued task of a key
/// holds slots back until it is claimed; given-back, lapsed and released slots stop counting, and
/// a renewal keeps them; one call asks under several caps. A store that takes no slots (the
/// trait's default) answers 0 to all. With `must_take`, the store must take them.
pub async fn check_slots(store: &dyn Store, must_take: bool) {
    let (act, now) = ("slot_act", 1_000);
    let cap = ActivityCap { activity: act.to_owned(), concurrency: Some(3), rate: None };
    let request = |owner: &str, key: &str, want: u32, now: i64| SlotRequest {
        cap: cap.clone(),
        concurrency_key: key.to_owned(),
        owner: owner.to_owned(),
        want,
        lease_until: now + 5_000,
        now,
    };
    let reserve = |requests: Vec<SlotRequest>| async move { store.reserve_slots(&requests).await.unwrap() };
    let first = reserve(vec![request("slot-w1", "k", 2, now)]).await;
    if !must_take && first == [0] {
        return;
    }
    assert_eq!(first, [2]);
    assert_eq!(
        reserve(vec![request("slot-w2", "k", 5, now), request("slot-w1", "k", 1, now)]).await,
        [1, 0],
        "3 in all"
    );
    assert_eq!(reserve(vec![request("slot-w2", "j", 4, now)]).await, [3], "a key of its own");

    // A capped claim and a leasing write find k full.
    let keyed = |id: &str, key: &str| TaskRecord { concurrency_key: key.to_owned(), ..task(id, 0, 0, act, 1, now) };
    store.write(&[enqueue(keyed("slot/queued-k", "k"))]).await.unwrap();
    let activities = names(&[act]);
    let caps = std::slice::from_ref(&cap);
    let claim = |at: i64| store.claim_tasks_capped("slot-w3", &activities, caps, at, at + 100, 10);
    assert!(claim(now).await.unwrap().is_empty(), "k is full of slots, j too");
    let lease = TaskLease {
        instance_id: "slot/leased-k".into(),
        generation: 0,
        seq: 0,
        attempt: 1,
        concurrency_key: "k".into(),
        owner: "slot-w3".into(),
        lease_until: now + 100,
        now,
        cap: cap.clone(),
    };
    let (_, taken) = store.write_leasing(&[enqueue(keyed("slot/leased-k", "k"))], &[Lease::Task(lease)]).await.unwrap();
    assert_eq!(taken, [false], "no lease under a full key");

    // One given back: the queued tasks of k go first, and slots wait for them.
    store.release_slots("slot-w1", &[(act.into(), "k".into(), 1)]).await.unwrap();
    assert_eq!(reserve(vec![request("slot-w2", "k", 1, now)]).await, [0], "tasks of k wait in the queue");
    assert_eq!(claim(now).await.unwrap().len(), 1, "the room given back");

    // Later: w1's slot and the claim's lease have lapsed, w2's slots were renewed. A claim takes
    // the two tasks of k (3 less w2's one), leaving no room for slots.
    let later = now + 6_000;
    assert!(store.renew_leases("slot-w2", later + 5_000).await.unwrap() >= 2, "w2's slots of k and j");
    assert_eq!(claim(later).await.unwrap().len(), 2, "lapsed slots and leases do not count");
    assert_eq!(reserve(vec![request("slot-w4", "k", 5, later), request("slot-w4", "j", 5, later)]).await, [0, 0]);
    // Released with its owner's leases: w2's slots go.
    store.release_leases("slot-w2").await.unwrap();
    assert_eq!(reserve(vec![request("slot-w4", "k", 5, later), request("slot-w4", "j", 5, later)]).await, [1, 3]);
    // One call for two activities (as a worker asks for all its waiting attempts): each counts
    // under its own cap, and the answers come in the order asked.
    let other = ActivityCap { activity: "slot_act2".to_owned(), concurrency: Some(2), rate: None };
    let second = SlotRequest { cap: other, ..request("slot-w5", "k", 5, later) };
    assert_eq!(reserve(vec![second, request("slot-w5", "j", 1, later)]).await, [2, 0], "j is w4's");
}
