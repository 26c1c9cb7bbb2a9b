//! Purges: an instance and every row of it deleted, in op order within a batch.

use crate::store::{InstanceRecord, RuntimeStatus, Store, WriteOp};

use super::{
    add_event, assert_status, claim_everything, conflict, consume, continue_as_new, create, enqueue, event_names, get,
    instance, names, outcome, purge, put, record, task, task_keys, with_status,
};

/// Purge deletes the instance and every row of it: its journal of every generation, its events
/// (consumed or not) and its tasks (finished or not, of every generation). Another instance's rows
/// stay, one whose id it is a prefix of included. A no-op on an unknown id. Event ids are never
/// handed out again, even those of the purged events.
pub async fn check_purge(store: &dyn Store) {
    let (wf, act) = ("purge_wf", "purge_act");
    // `y` first, so `x` holds the latest event ids when it is purged.
    let (x, y) = ("purge/x", "purge/x2");
    for id in [y, x] {
        store
            .write(&[
                create(with_status(instance(id, wf, 1), RuntimeStatus::Running)),
                put(record(id, 0, 0)),
                put(record(id, 1, 0)),
                put(record(id, 2, 3)),
                add_event(id, "used", "1", 2),
                add_event(id, "kept", "2", 3),
                enqueue(task(id, 0, 0, act, 1, 1)),
                enqueue(task(id, 2, 1, act, 1, 2)),
            ])
            .await
            .unwrap();
        let used = store.events(id).await.unwrap()[0].event_id;
        store.write(&[consume(id, used, 2, 3)]).await.unwrap();
    }
    assert_eq!(store.claim_tasks("purge-w", &names(&[act]), 10, 100, 10).await.unwrap().len(), 4);
    for id in [x, y] {
        assert!(store.complete_task("purge-w", id, 0, 0, 1, &outcome(true, "1", 5)).await.unwrap());
    }
    store.release_leases("purge-w").await.unwrap();
    let last_event = store.events(x).await.unwrap()[0].event_id;
    let journal_of = |id: &'static str| async move {
        let mut journal = Vec::new();
        for generation in 0..3 {
            journal.extend(store.journal(id, generation).await.unwrap());
        }
        journal
    };
    let y_before = (
        get(store, y).await,
        journal_of(y).await,
        store.events(y).await.unwrap(),
        store.finished_tasks(&names(&[y])).await.unwrap(),
    );
    assert_eq!(y_before.1.len(), 3);

    store.write(&[purge(x), purge("purge/nobody")]).await.unwrap();
    assert_eq!(store.instance(x).await.unwrap(), None);
    assert!(journal_of(x).await.is_empty(), "the journal of every generation");
    assert!(store.events(x).await.unwrap().is_empty());
    assert!(store.finished_tasks(&names(&[x])).await.unwrap().is_empty());
    assert_eq!(
        task_keys(&claim_everything(store, "purge-w2", &[act]).await),
        [(y, 2, 1)],
        "only the other's unfinished task"
    );
    let y_after = (
        get(store, y).await,
        journal_of(y).await,
        store.events(y).await.unwrap(),
        store.finished_tasks(&names(&[y])).await.unwrap(),
    );
    assert_eq!(y_after, y_before, "the other instance is untouched");

    // The id starts afresh, with none of the old rows; its events get new ids.
    store.write(&[create(instance(x, wf, 9)), add_event(x, "new", "3", 10)]).await.unwrap();
    assert_eq!(get(store, x).await, InstanceRecord { wake_at: Some(10), ..instance(x, wf, 9) });
    let events = store.events(x).await.unwrap();
    assert_eq!(event_names(&events), ["new"]);
    assert!(events[0].event_id > last_event, "ids are not reused: {} after {last_event}", events[0].event_id);
}

/// Purge keeps op order with the other ops of its id: what a batch wrote of the instance before
/// the purge goes with it, what it writes after stays (so a purge then a create leaves a fresh
/// instance, not a skipped create); a create of an existing id then a purge is skipped and the
/// instance gone. Assertions then purges of several ids, as a client purges an instance with its
/// children, purge all of them or none.
pub async fn check_purge_in_batch(store: &dyn Store) {
    use RuntimeStatus::{Completed, Failed, Running, Terminated};
    let (wf, act) = ("purgeb_wf", "purgeb_act");
    let x = "purgeb/x";
    store
        .write(&[
            create(with_status(instance(x, wf, 1), Completed)),
            put(record(x, 0, 0)),
            add_event(x, "old", "1", 2),
            enqueue(task(x, 0, 0, act, 1, 1)),
        ])
        .await
        .unwrap();
    let fresh = instance(x, "purgeb_other_wf", 5);
    let written = store
        .write(&[
            put(record(x, 0, 1)),
            add_event(x, "doomed", "1", 3),
            enqueue(task(x, 0, 1, act, 1, 2)),
            continue_as_new(x, "\"next\"", 1, 4),
            put(record(x, 1, 0)),
            enqueue(task(x, 1, 0, act, 1, 2)),
            purge(x),
            create(fresh.clone()),
            put(record(x, 0, 2)),
            enqueue(task(x, 0, 2, act, 1, 3)),
        ])
        .await
        .unwrap();
    assert!(written.existing.is_empty(), "the create after the purge is not skipped");
    assert_eq!(get(store, x).await, fresh);
    assert_eq!(store.journal(x, 0).await.unwrap(), [record(x, 0, 2)]);
    assert!(store.journal(x, 1).await.unwrap().is_empty());
    assert!(store.events(x).await.unwrap().is_empty());
    assert_eq!(task_keys(&claim_everything(store, "purgeb-w", &[act]).await), [(x, 0, 2)]);

    // An event added after the purge stays, consumed or not.
    store
        .write(&[add_event(x, "gone", "1", 6), purge(x), add_event(x, "after", "2", 7), create(fresh.clone())])
        .await
        .unwrap();
    assert_eq!(event_names(&store.events(x).await.unwrap()), ["after"]);
    assert!(store.journal(x, 0).await.unwrap().is_empty());

    // Purged, created, written and purged again, in one batch.
    store
        .write(&[purge(x), create(instance(x, wf, 7)), put(record(x, 0, 3)), add_event(x, "e", "1", 8), purge(x)])
        .await
        .unwrap();
    assert_eq!(store.instance(x).await.unwrap(), None);
    assert!(store.journal(x, 0).await.unwrap().is_empty());
    assert!(store.events(x).await.unwrap().is_empty());
    assert!(claim_everything(store, "purgeb-w", &[act]).await.is_empty());

    // A create of an existing id is skipped and reported; the purge after it deletes the instance.
    store.write(&[create(instance(x, wf, 8))]).await.unwrap();
    assert_eq!(store.write(&[create(instance(x, wf, 9)), purge(x)]).await.unwrap().existing, [x]);
    assert_eq!(store.instance(x).await.unwrap(), None);
    // Created, purged and created again: neither create is skipped. Then (it exists) the first of
    // three is, and the last, after the one right after the purge.
    let (first, second) = (instance(x, wf, 10), instance(x, "purgeb_other_wf", 11));
    let twice = [create(first.clone()), put(record(x, 0, 4)), purge(x), create(second.clone())];
    assert!(store.write(&twice).await.unwrap().existing.is_empty());
    assert_eq!(get(store, x).await, second);
    let thrice = [create(first.clone()), purge(x), create(first.clone()), create(second.clone())];
    assert_eq!(store.write(&thrice).await.unwrap().existing, [x, x]);
    assert_eq!(get(store, x).await, first, "the create right after the purge");
    store.write(&[purge(x)]).await.unwrap();

    // A parent and its children, all finished: asserted, then purged, in one batch.
    let finished = [Completed, Failed, Terminated];
    let family: Vec<String> = std::iter::once(x.to_owned()).chain((0..4).map(|i| format!("purgeb/kid{i}"))).collect();
    let create_family = |running: Option<usize>| {
        let mut ops = Vec::new();
        for (i, id) in family.iter().enumerate() {
            let status = if Some(i) == running { Running } else { finished[i % 3] };
            let parent = (i > 0).then(|| x.to_owned());
            ops.push(create(InstanceRecord {
                parent_id: parent,
                ..with_status(instance(id, wf, 10 + i as i64), status)
            }));
            ops.push(put(record(id, 0, 0)));
            ops.push(add_event(id, "e", "1", 20));
        }
        ops
    };
    let purge_family: Vec<WriteOp> =
        family.iter().map(|id| assert_status(id, &finished)).chain(family.iter().map(|id| purge(id))).collect();
    store.write(&create_family(None)).await.unwrap();
    store.write(&purge_family).await.unwrap();
    for id in &family {
        assert_eq!(store.instance(id).await.unwrap(), None, "{id}");
        assert!(store.journal(id, 0).await.unwrap().is_empty(), "{id}");
        assert!(store.events(id).await.unwrap().is_empty(), "{id}");
    }
    // One still runs: none is purged.
    store.write(&create_family(Some(2))).await.unwrap();
    assert_eq!(conflict(store.write(&purge_family).await), (family[2].clone(), Some(Running)));
    for id in &family {
        assert!(store.instance(id).await.unwrap().is_some(), "{id}");
        assert_eq!(store.journal(id, 0).await.unwrap().len(), 1, "{id}");
        assert_eq!(store.events(id).await.unwrap().len(), 1, "{id}");
    }
}
