//! The randomized differential check against the in-memory store.

use crate::store::{
    EventRecord, InstanceQuery, InstanceRecord, JournalRecord, MemoryStore, RecordStatus, RuntimeStatus, Store,
    StoreError, TaskOutcome, TaskRecord, WriteOp, NEVER,
};

use super::list::list_pages;
use super::{
    add_event, assert_status, claim_everything, consume, continue_as_new, create, delete_task, enqueue, evict, fence,
    instance, names, purge, put, record, set_custom, set_wake, task,
};

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
pub async fn check_matches_reference(store: &dyn Store) {
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
                    priority: *rng.pick(&[0, 0, 1, -1, 7]),
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
                    concurrency_key: ["", "k1", "k2"][rng.below(3) as usize].to_owned(),
                    priority: rng.below(3) as i32 - 1,
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
            newest_first: rng.below(3) == 0,
            without_payloads: false,
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
        for newest_first in [false, true] {
            let query =
                InstanceQuery { workflow: Some(workflow.clone()), limit: 7, newest_first, ..Default::default() };
            let pages = list_pages(store, &query).await;
            assert_eq!(pages, list_pages(&reference, &query).await, "every page of {workflow}, {query:?}");
        }
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
