//! Claiming instances: which are claimed, in what order, by one worker only when several race, and
//! when (wake-ups, SetWake, Evict).

use std::collections::HashSet;

use crate::store::{
    Debounce, InstanceRecord, RateLimit, RuntimeStatus, StartScope, Store, WorkflowCap, WriteOp, NEVER,
};

use super::{add_event, create, event_names, evict, finish_of, get, ids, instance, names, set_wake, with_status};

/// Only Pending and Running instances of the named workflows are claimed, unowned or with a
/// lapsed lease; a live lease is never stolen.
pub async fn check_claim_filters(store: &dyn Store) {
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
    }
    // A start: returned as found (Pending), stored Running as of the claim.
    assert_eq!(claimed[0].status, RuntimeStatus::Pending, "returned with the status it had");
    let started = InstanceRecord { status: RuntimeStatus::Running, updated_at: 1_000, ..claimed[0].clone() };
    assert_eq!(get(store, "claimf/pending").await, started, "the claim started it");
    // A resumption: stored as returned, status and update time untouched.
    assert_eq!(claimed[1].status, RuntimeStatus::Running);
    assert_eq!(claimed[1].updated_at, 20);
    assert_eq!(get(store, "claimf/running").await, claimed[1], "the claim is stored as returned");

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
pub async fn check_claim_order_and_limit(store: &dyn Store) {
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
pub async fn check_concurrent_claims(store: &dyn Store) {
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

/// Claims skip an instance whose wake-up is after `now` ([`NEVER`] never comes) and take one due
/// at or before it; a claim clears the wake-up.
pub async fn check_claim_wake(store: &dyn Store) {
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

/// Of the ready instances, a higher priority is claimed first, the oldest first within one
/// priority, and the claim returns them in that order; a woken instance joins by its priority
/// too.
pub async fn check_claim_priority(store: &dyn Store) {
    let wf = "priority_wf";
    let at = |id: &str, created_at: i64, priority: i32| InstanceRecord { priority, ..instance(id, wf, created_at) };
    let woken =
        InstanceRecord { wake_at: Some(50), ..with_status(at("priority/woken-5", 0, 5), RuntimeStatus::Running) };
    store
        .write(&[
            create(at("priority/old-1", 1, 1)),
            create(at("priority/old-0", 2, 0)),
            create(at("priority/new-10", 9, 10)),
            create(at("priority/older-10", 8, 10)),
            create(at("priority/low", 0, -3)),
            create(woken),
        ])
        .await
        .unwrap();
    let first = store.claim("priority-w", &names(&[wf]), 100, 1_000, 3).await.unwrap();
    assert_eq!(ids(&first), ["priority/older-10", "priority/new-10", "priority/woken-5"]);
    let rest = store.claim("priority-w", &names(&[wf]), 100, 1_000, 10).await.unwrap();
    assert_eq!(ids(&rest), ["priority/old-1", "priority/old-0", "priority/low"]);
}

/// A capped claim takes no instance of a capped workflow past its cap less the instances of it
/// that hold a live lease (any worker's; a lapsed lease or a finished instance does not count),
/// takes uncapped workflows as a plain claim does, and claims more once a running one ends.
pub async fn check_claim_caps(store: &dyn Store) {
    let (capped, free, now) = ("cap_wf", "cap_free_wf", 1_000);
    let cap = [WorkflowCap { workflow: capped.to_owned(), concurrency: Some(2), rate: None, keyed: false }];
    let at = |id: &str, workflow: &str, created_at: i64| instance(id, workflow, created_at);
    let held = |id: &str, until: i64| InstanceRecord {
        owner: Some("cap-other".into()),
        lease_until: Some(until),
        ..with_status(at(id, capped, 0), RuntimeStatus::Running)
    };
    let mut ops = vec![
        create(held("cap/held", now)),
        create(held("cap/lapsed", now - 1)),
        create(with_status(at("cap/done", capped, 0), RuntimeStatus::Completed)),
    ];
    ops.extend((1..=4).map(|n| create(at(&format!("cap/{n}"), capped, n))));
    ops.extend((1..=3).map(|n| create(at(&format!("cap/free-{n}"), free, n))));
    store.write(&ops).await.unwrap();
    let workflows = names(&[capped, free]);

    // "held" runs (its lease lasts until `now`): room for one, the lapsed one first (oldest).
    let first = store.claim_capped("cap-w", &workflows, &cap, now, 5_000, 10).await.unwrap();
    assert_eq!(ids(&first), ["cap/lapsed", "cap/free-1", "cap/free-2", "cap/free-3"]);
    assert!(store.claim_capped("cap-w", &workflows, &cap, now, 5_000, 10).await.unwrap().is_empty(), "at its cap");
    // Its lease lapsed: no longer counted, so one more (and "held" itself is claimable again).
    let later = store.claim_capped("cap-w", &workflows, &cap, now + 1, 5_000, 10).await.unwrap();
    assert_eq!(ids(&later), ["cap/held"]);
    // One ends: room for the next, oldest first.
    store.write(&[finish_of("cap/lapsed")]).await.unwrap();
    let next = store.claim_capped("cap-w", &workflows, &cap, now + 1, 5_000, 10).await.unwrap();
    assert_eq!(ids(&next), ["cap/1"]);
    // Without caps, a plain claim; a cap of a workflow not asked for changes nothing.
    let other =
        [WorkflowCap { workflow: "cap_unrelated_wf".to_owned(), concurrency: Some(1), rate: None, keyed: false }];
    let rest = store.claim_capped("cap-w", &names(&[capped]), &other, now + 1, 5_000, 2).await.unwrap();
    assert_eq!(ids(&rest), ["cap/2", "cap/3"]);
    let last = store.claim_capped("cap-w", &names(&[capped]), &[], now + 1, 5_000, 10).await.unwrap();
    assert_eq!(ids(&last), ["cap/4"]);
}

/// A rate-limited workflow's claims start (take while Pending) at most its limit in any window of
/// its period, across claims and workers; resumptions (Running instances) are taken first and
/// never count; a start a period old no longer counts; a cap still bounds the whole claim.
pub async fn check_claim_rate(store: &dyn Store) {
    let (rated, now) = ("rate_wf", 10_000);
    let rate = Some(RateLimit { limit: 2, period_ms: 1_000 });
    let caps = [WorkflowCap { workflow: rated.to_owned(), concurrency: None, rate, keyed: false }];
    let workflows = names(&[rated]);
    let resumable = |id: &str, created_at: i64| with_status(instance(id, rated, created_at), RuntimeStatus::Running);
    let mut ops: Vec<WriteOp> = (1..=5).map(|n| create(instance(&format!("rate/{n}"), rated, n))).collect();
    ops.push(create(resumable("rate/resumed-a", 10)));
    ops.push(create(resumable("rate/resumed-b", 11)));
    store.write(&ops).await.unwrap();

    // The resumptions first, then two starts, oldest first.
    let first = store.claim_capped("rate-w", &workflows, &caps, now, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&first), ["rate/1", "rate/2", "rate/resumed-a", "rate/resumed-b"]);
    // Within the period: no start, by this worker or another.
    assert!(store.claim_capped("rate-w", &workflows, &caps, now + 999, now + 60_000, 10).await.unwrap().is_empty());
    assert!(store.claim_capped("rate-x", &workflows, &caps, now + 500, now + 60_000, 10).await.unwrap().is_empty());
    // A resumption is taken within the period all the same.
    store.write(&[create(resumable("rate/resumed-c", 12))]).await.unwrap();
    let resumed = store.claim_capped("rate-x", &workflows, &caps, now + 999, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&resumed), ["rate/resumed-c"]);
    // A period on, two more; a claim of one records one.
    let one = store.claim_capped("rate-x", &workflows, &caps, now + 1_000, now + 60_000, 1).await.unwrap();
    assert_eq!(ids(&one), ["rate/3"]);
    let two = store.claim_capped("rate-w", &workflows, &caps, now + 1_000, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&two), ["rate/4"]);
    // What a status reads to say when the next may start: the period's starts, oldest first, one
    // entry per time with how many started then (here two claims).
    let starts = store.recent_starts(StartScope::Workflow { workflow: rated, key: "" }, now).await.unwrap();
    assert_eq!(starts, [(now + 1_000, 2)]);
    assert!(store
        .recent_starts(StartScope::Workflow { workflow: "rate_other_wf", key: "" }, 0)
        .await
        .unwrap()
        .is_empty());
    // With a cap too: the cap bounds the starts (all seven instances hold leases, cap 8).
    let capped = [WorkflowCap { workflow: rated.to_owned(), concurrency: Some(8), rate, keyed: false }];
    store.write(&[create(instance("rate/6", rated, 6))]).await.unwrap();
    let last = store.claim_capped("rate-w", &workflows, &capped, now + 2_000, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&last), ["rate/5"]);
}

/// A keyed cap and rate bound each concurrency key apart: a key at its cap (live leases of any
/// worker count) or out of starts gets nothing while other keys are claimed, a backlog of one key
/// does not hold back another, the empty key is a key like any other, and a key's room returns as
/// its instances end or its starts age out of the period.
pub async fn check_claim_keyed(store: &dyn Store) {
    let (wf, now) = ("keyed_wf", 50_000);
    let keyed = |concurrency: Option<u32>, rate: Option<RateLimit>| {
        [WorkflowCap { workflow: wf.to_owned(), concurrency, rate, keyed: true }]
    };
    let at = |id: &str, key: &str, created_at: i64| InstanceRecord {
        concurrency_key: key.to_owned(),
        ..instance(id, wf, created_at)
    };
    let mut ops: Vec<WriteOp> = (1..=5).map(|n| create(at(&format!("keyed/a{n}"), "a", n))).collect();
    ops.push(create(at("keyed/b1", "b", 10)));
    ops.push(create(at("keyed/none", "", 11)));
    // Another worker runs one of "c": c's room is 1.
    ops.push(create(InstanceRecord {
        owner: Some("keyed-other".into()),
        lease_until: Some(now + 60_000),
        ..with_status(at("keyed/c-held", "c", 12), RuntimeStatus::Running)
    }));
    ops.extend((1..=2).map(|n| create(at(&format!("keyed/c{n}"), "c", 12 + n))));
    store.write(&ops).await.unwrap();
    let workflows = names(&[wf]);
    let cap = keyed(Some(2), None);

    let first = store.claim_capped("keyed-w", &workflows, &cap, now, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&first), ["keyed/a1", "keyed/a2", "keyed/b1", "keyed/none", "keyed/c1"]);
    assert!(store.claim_capped("keyed-w", &workflows, &cap, now, now + 60_000, 10).await.unwrap().is_empty());
    // One of "a" ends: the next of "a", and only that.
    store.write(&[finish_of("keyed/a1")]).await.unwrap();
    let next = store.claim_capped("keyed-x", &workflows, &cap, now, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&next), ["keyed/a3"]);

    // A keyed rate: two starts per key per second.
    let (rated, now) = ("keyed_rate_wf", 90_000);
    let rate = [WorkflowCap {
        workflow: rated.to_owned(),
        concurrency: None,
        rate: Some(RateLimit { limit: 2, period_ms: 1_000 }),
        keyed: true,
    }];
    let rated_at = |id: &str, key: &str, created_at: i64| InstanceRecord {
        concurrency_key: key.to_owned(),
        ..instance(id, rated, created_at)
    };
    let mut ops: Vec<WriteOp> = (1..=3).map(|n| create(rated_at(&format!("krate/x{n}"), "x", n))).collect();
    ops.extend((1..=3).map(|n| create(rated_at(&format!("krate/y{n}"), "y", 10 + n))));
    store.write(&ops).await.unwrap();
    let workflows = names(&[rated]);
    let first = store.claim_capped("krate-w", &workflows, &rate, now, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&first), ["krate/x1", "krate/x2", "krate/y1", "krate/y2"]);
    assert!(store.claim_capped("krate-x", &workflows, &rate, now + 999, now + 60_000, 10).await.unwrap().is_empty());
    let starts = store.recent_starts(StartScope::Workflow { workflow: rated, key: "x" }, now - 1).await.unwrap();
    assert_eq!(starts, [(now, 2)]);
    assert!(store.recent_starts(StartScope::Workflow { workflow: rated, key: "" }, 0).await.unwrap().is_empty());
    let later = store.claim_capped("krate-x", &workflows, &rate, now + 1_000, now + 60_000, 10).await.unwrap();
    assert_eq!(ids(&later), ["krate/x3", "krate/y3"]);
}

/// SetWake sets or clears the wake-up and nothing else; a no-op on an unknown id.
pub async fn check_set_wake(store: &dyn Store) {
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
pub async fn check_evict(store: &dyn Store) {
    let wf = "evict_wf";
    let a = InstanceRecord { custom_status: Some("\"cs\"".into()), ..instance("evict/a", wf, 1) };
    let a = with_status(a, RuntimeStatus::Running);
    let b = instance("evict/b", wf, 2);
    store.write(&[create(a.clone()), create(b.clone())]).await.unwrap();
    assert_eq!(store.claim("evict-w1", &names(&[wf]), 10, 100_000, 10).await.unwrap().len(), 2);

    store.write(&[evict(&a.id, 500), evict(&b.id, NEVER), evict("evict/nobody", 1)]).await.unwrap();
    assert_eq!(get(store, &a.id).await, InstanceRecord { wake_at: Some(500), ..a.clone() });
    // b's claim started it (Running as of the claim); the evict leaves that alone.
    let b_started =
        InstanceRecord { status: RuntimeStatus::Running, updated_at: 10, wake_at: Some(NEVER), ..b.clone() };
    assert_eq!(get(store, &b.id).await, b_started);
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

/// A debounced start creates its key's waiting instance (Pending, due at `due`, not claimable
/// before), later starts of that workflow and key give it their input and put it off (never past
/// its creation plus the maximum wait), other keys and workflows have their own, and once it is
/// claimed the next start creates a new one.
pub async fn check_debounce(store: &dyn Store) {
    let (wf, other_wf) = ("deb_wf", "deb_other_wf");
    let start = |id: &str, workflow: &str, key: &str, input: &str, due: i64, max_wait_ms: Option<i64>| Debounce {
        record: InstanceRecord { input: input.to_owned(), ..instance(id, workflow, 100) },
        key: key.to_owned(),
        due,
        max_wait_ms,
    };
    assert_eq!(store.debounce(&start("deb/a", wf, "k", "1", 1_000, None)).await.unwrap(), "deb/a");
    let a = get(store, "deb/a").await;
    assert_eq!((a.status, a.input.as_str(), a.wake_at, a.owner), (RuntimeStatus::Pending, "1", Some(1_000), None));
    assert_eq!(store.debounce(&start("deb/b", wf, "k", "2", 1_500, None)).await.unwrap(), "deb/a", "collapsed");
    assert!(store.instance("deb/b").await.unwrap().is_none(), "no second instance");
    let a = get(store, "deb/a").await;
    assert_eq!((a.input.as_str(), a.wake_at, a.created_at), ("2", Some(1_500), 100), "the latest input, put off");
    assert_eq!(store.debounce(&start("deb/c", wf, "k2", "3", 1_000, None)).await.unwrap(), "deb/c", "another key");
    assert_eq!(store.debounce(&start("deb/d", other_wf, "k", "4", 1_000, None)).await.unwrap(), "deb/d");
    // The maximum wait counts from the waiting instance's creation (100).
    assert_eq!(store.debounce(&start("deb/e", wf, "k", "5", 9_000, Some(2_000))).await.unwrap(), "deb/a");
    assert_eq!(get(store, "deb/a").await.wake_at, Some(2_100));

    let workflows = names(&[wf]);
    let early = store.claim("deb-w", &workflows, 2_099, 10_000, 10).await.unwrap();
    assert_eq!(ids(&early), ["deb/c"], "not before it is due");
    let due = store.claim("deb-w", &workflows, 2_100, 10_000, 10).await.unwrap();
    assert_eq!(ids(&due), ["deb/a"]);
    assert_eq!(due[0].input, "5");
    // Claimed: it runs with what it has; the next start waits in a new instance.
    assert_eq!(store.debounce(&start("deb/f", wf, "k", "6", 3_000, None)).await.unwrap(), "deb/f");
    assert_eq!(get(store, "deb/a").await.input, "5");
    assert_eq!(store.debounce(&start("deb/g", wf, "k", "7", 3_500, None)).await.unwrap(), "deb/f");
    assert_eq!(get(store, "deb/f").await.input, "7");
}
