//! Start leases: a write that creates a flow-controlled workflow's instance takes it for its
//! worker at once when the workflow's limits have room and nothing of it waits for a claim.

use crate::store::{InstanceRecord, Lease, RateLimit, RuntimeStatus, StartLease, StartScope, Store, WorkflowCap};

use super::{create, finish_of, get, ids, instance, names, with_status};

/// `write_leasing` takes a start lease only on an instance the write created (not one it found
/// existing), unowned, Pending and due; only while the workflow (or its key, when keyed) has room
/// under the cap (live leases of other workers and earlier leases of the batch counted) and the
/// rate (a taken lease is a start that claims then see); and never while another instance of it
/// waits for a claim: a backlog is claimed in order, not overtaken. Of a batch's leases on one
/// workflow, higher priority first. A start taken is owned, Running and updated at the lease's
/// clock; one refused is left Pending and unowned for a claim. A store may take none (the trait's
/// default): then every answer is `false`. With `must_take`, the store must take them.
pub async fn check_start_leasing(store: &dyn Store, must_take: bool) {
    let (wf, now) = ("slease_wf", 1_000);
    let cap = WorkflowCap { workflow: wf.to_owned(), concurrency: Some(2), rate: None, keyed: false };
    let lease = |id: &str, priority: i32, cap: &WorkflowCap| {
        Lease::Start(StartLease {
            instance_id: id.to_owned(),
            concurrency_key: String::new(),
            priority,
            owner: "slease-w".to_owned(),
            lease_until: now + 5_000,
            now,
            cap: cap.clone(),
        })
    };
    let prioritized = |id: &str, priority: i32| InstanceRecord { priority, ..instance(id, wf, now) };
    // One instance runs under another worker's live lease: room for one more.
    let held = InstanceRecord {
        owner: Some("slease-other".into()),
        lease_until: Some(now),
        ..with_status(instance("slease/held", wf, 0), RuntimeStatus::Running)
    };
    store.write(&[create(held)]).await.unwrap();
    let ops = vec![
        create(prioritized("slease/a", 0)),
        create(prioritized("slease/b", 0)),
        create(prioritized("slease/high", 5)),
    ];
    let leases = [lease("slease/a", 0, &cap), lease("slease/b", 0, &cap), lease("slease/high", 5, &cap)];
    let (outcome, taken) = store.write_leasing(&ops, &leases).await.unwrap();
    assert!(outcome.existing.is_empty());
    if !must_take && taken.iter().all(|t| !t) {
        // A store that takes no lease: the instances are created as a plain write creates them.
        let a = get(store, "slease/a").await;
        assert!(a.owner.is_none() && a.status == RuntimeStatus::Pending, "{a:?}");
        return;
    }
    assert_eq!(taken, [false, false, true], "room for one (held counts), the highest priority first");
    let high = get(store, "slease/high").await;
    assert_eq!(
        (high.owner.as_deref(), high.lease_until, high.status, high.updated_at),
        (Some("slease-w"), Some(now + 5_000), RuntimeStatus::Running, now)
    );
    let a = get(store, "slease/a").await;
    assert_eq!((a.owner, a.status), (None, RuntimeStatus::Pending), "a refused lease leaves it for a claim");

    // Room again (held ends), but a and b wait for a claim: a new start does not overtake them.
    store.write(&[finish_of("slease/held")]).await.unwrap();
    let (_, taken) =
        store.write_leasing(&[create(prioritized("slease/c", 0))], &[lease("slease/c", 0, &cap)]).await.unwrap();
    assert_eq!(taken, [false], "a and b wait ahead");
    let workflows = names(&[wf]);
    let claimed = store.claim_capped("slease-x", &workflows, std::slice::from_ref(&cap), now, now + 100, 10).await;
    assert_eq!(ids(&claimed.unwrap()), ["slease/a"], "the claim takes the oldest into the room");
    // An existing id is not leased, whatever it is.
    let (outcome, taken) =
        store.write_leasing(&[create(prioritized("slease/b", 0))], &[lease("slease/b", 0, &cap)]).await.unwrap();
    assert_eq!((outcome.existing, taken), (vec!["slease/b".to_owned()], vec![false]));
    assert_eq!(get(store, "slease/b").await.owner, None);
    // A lease of an instance the write did not create at all takes nothing.
    let (_, taken) = store.write_leasing(&[], &[lease("slease/missing", 0, &cap)]).await.unwrap();
    assert_eq!(taken, [false]);

    // A delayed start is not due: not leased, and not waiting ahead of a start that is due.
    let free = WorkflowCap { workflow: "slease_free_wf".to_owned(), concurrency: Some(10), rate: None, keyed: false };
    let at = |id: &str, wake_at: i64| InstanceRecord { wake_at: Some(wake_at), ..instance(id, &free.workflow, now) };
    let ops = vec![create(at("slease/later", now + 500)), create(at("slease/due", now))];
    let (_, taken) =
        store.write_leasing(&ops, &[lease("slease/later", 0, &free), lease("slease/due", 0, &free)]).await.unwrap();
    assert_eq!(taken, [false, true]);
    assert_eq!(get(store, "slease/due").await.wake_at, None, "a start taken has no wake-up left");
    assert_eq!(get(store, "slease/later").await.wake_at, Some(now + 500));

    // In one batch: a start created with no lease asked for waits ahead of a leased one, which
    // does not overtake it; and a start the batch also finishes is not taken.
    let batched =
        WorkflowCap { workflow: "slease_batch_wf".to_owned(), concurrency: Some(10), rate: None, keyed: false };
    let ops = vec![
        create(instance("slease/unleased", &batched.workflow, now)),
        create(instance("slease/leased", &batched.workflow, now)),
    ];
    let (_, taken) = store.write_leasing(&ops, &[lease("slease/leased", 0, &batched)]).await.unwrap();
    assert_eq!(taken, [false], "the batch's start without a lease waits ahead");
    assert_eq!(get(store, "slease/leased").await.owner, None);
    let ended = WorkflowCap { workflow: "slease_ended_wf".to_owned(), ..batched.clone() };
    let ops = vec![create(instance("slease/ended", &ended.workflow, now)), finish_of("slease/ended")];
    let (_, taken) = store.write_leasing(&ops, &[lease("slease/ended", 0, &ended)]).await.unwrap();
    assert_eq!(taken, [false], "a start the batch finishes is not taken");
    let finished = get(store, "slease/ended").await;
    assert_eq!((finished.owner, finished.status), (None, RuntimeStatus::Completed));

    // A keyed rate of one start per 1,000 ms: one lease per key, and the claims see the starts.
    let rated = WorkflowCap {
        workflow: "slease_rated_wf".to_owned(),
        concurrency: None,
        rate: Some(RateLimit { limit: 1, period_ms: 1_000 }),
        keyed: true,
    };
    let keyed =
        |id: &str, key: &str| InstanceRecord { concurrency_key: key.to_owned(), ..instance(id, &rated.workflow, now) };
    let keyed_lease = |id: &str, key: &str| match lease(id, 0, &rated) {
        Lease::Start(start) => Lease::Start(StartLease { concurrency_key: key.to_owned(), ..start }),
        task => task,
    };
    let ops = vec![create(keyed("slease/k1", "k")), create(keyed("slease/k2", "k")), create(keyed("slease/j1", "j"))];
    let leases = [keyed_lease("slease/k1", "k"), keyed_lease("slease/k2", "k"), keyed_lease("slease/j1", "j")];
    let (_, taken) = store.write_leasing(&ops, &leases).await.unwrap();
    assert_eq!(taken, [true, false, true], "one start per key in the period");
    let starts = store.recent_starts(StartScope::Workflow { workflow: &rated.workflow, key: "k" }, now - 1_000).await;
    assert_eq!(starts.unwrap().iter().map(|(_, n)| n).sum::<u64>(), 1);
    let workflows = names(&[rated.workflow.as_str()]);
    let caps = std::slice::from_ref(&rated);
    assert!(store.claim_capped("slease-x", &workflows, caps, now, now + 100, 10).await.unwrap().is_empty());
    let later = store.claim_capped("slease-x", &workflows, caps, now + 1_000, now + 2_000, 10).await.unwrap();
    assert_eq!(ids(&later), ["slease/k2"], "once the window passed");
}
