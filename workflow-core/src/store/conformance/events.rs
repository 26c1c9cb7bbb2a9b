//! Events: the inbox of an instance, its ids, wake-ups and consumption.

use crate::store::{EventRecord, InstanceRecord, Store, StoreError, WriteOp};

use super::{add_event, consume, create, event_names, get, instance, set_wake};

/// Events are listed per instance, in arrival order (not `created_at` order), with ids the store
/// assigns increasing in arrival order across instances; one for an instance the store does not
/// know is kept (and creates nothing). AddEvent sets the instance's `wake_at` to the event's time
/// and nothing else. A consumed event is no longer listed; a ConsumeEvent naming another
/// instance's event, or an unknown event, does nothing.
pub async fn check_events(store: &dyn Store) {
    let (a, b, ghost) = ("events/a", "events/b", "events/ghost");
    let (a_record, b_record) = (instance(a, "events_wf", 1), instance(b, "events_wf", 2));
    store.write(&[create(a_record.clone()), create(b_record.clone())]).await.unwrap();
    assert!(store.events(a).await.unwrap().is_empty());
    store
        .write(&[
            add_event(a, "first", r#"{"n":1}"#, 100),
            add_event(b, "other", "null", 101),
            add_event(a, "second", "", 102),
            add_event(ghost, "early", r#""before its instance""#, 103),
        ])
        .await
        .unwrap();
    store.write(&[add_event(a, "third", "\"ü🦀\" not json", 99)]).await.unwrap();

    let listed = store.events(a).await.unwrap();
    assert_eq!(event_names(&listed), ["first", "second", "third"], "arrival order, this instance's only");
    assert_eq!(
        listed[0],
        EventRecord {
            instance_id: a.into(),
            event_id: listed[0].event_id,
            name: "first".into(),
            payload: r#"{"n":1}"#.into(),
            created_at: 100,
        }
    );
    assert_eq!((listed[1].payload.as_str(), listed[1].created_at), ("", 102));
    assert_eq!((listed[2].payload.as_str(), listed[2].created_at), ("\"ü🦀\" not json", 99));
    let others = store.events(b).await.unwrap();
    assert_eq!(event_names(&others), ["other"]);
    let early = store.events(ghost).await.unwrap();
    assert_eq!(event_names(&early), ["early"], "an event for an unknown instance is kept");
    assert_eq!(store.instance(ghost).await.unwrap(), None, "and creates no instance");
    assert!(store.events("events/nobody").await.unwrap().is_empty());
    let arrival = [listed[0].event_id, others[0].event_id, listed[1].event_id, early[0].event_id, listed[2].event_id];
    assert!(arrival.windows(2).all(|w| w[0] < w[1]), "ids increase in arrival order: {arrival:?}");

    assert_eq!(get(store, a).await, InstanceRecord { wake_at: Some(99), ..a_record.clone() }, "the last event's time");
    assert_eq!(get(store, b).await, InstanceRecord { wake_at: Some(101), ..b_record.clone() });

    let (first, second, third) = (listed[0].event_id, listed[1].event_id, listed[2].event_id);
    store
        .write(&[
            consume(b, first, 0, 0),
            consume(a, others[0].event_id, 0, 1),
            consume(a, third + 1_000_000, 0, 2),
            consume(a, -1, 0, 2),
            consume(a, second, 0, 3),
        ])
        .await
        .unwrap();
    assert_eq!(event_names(&store.events(a).await.unwrap()), ["first", "third"], "only a's own op consumes a's event");
    assert_eq!(event_names(&store.events(b).await.unwrap()), ["other"], "b's event is untouched");
    store.write(&[consume(a, second, 0, 4), consume(a, first, 0, 5), consume(a, first, 1, 0)]).await.unwrap();
    assert_eq!(event_names(&store.events(a).await.unwrap()), ["third"], "consuming again changes nothing");
    assert_eq!(get(store, a).await.wake_at, Some(99), "consuming leaves the wake-up alone");

    // In batch order: an event added after the consume of `third` is listed.
    store.write(&[consume(a, third, 0, 6), add_event(a, "fourth", "4", 200)]).await.unwrap();
    let now = store.events(a).await.unwrap();
    assert_eq!(event_names(&now), ["fourth"]);
    assert!(now[0].event_id > early[0].event_id);

    // An event is consumed whether or not its instance exists.
    store.write(&[consume(ghost, early[0].event_id, 0, 0)]).await.unwrap();
    assert!(store.events(ghost).await.unwrap().is_empty());
}

/// [`Store::events_named`] lists the unconsumed events of one instance and one name, matched
/// without regard to ASCII case (and only ASCII case), with ids greater than `after`, in arrival
/// order, at most `limit`.
pub async fn check_events_named(store: &dyn Store) {
    let (a, b) = ("named/a", "named/b");
    store.write(&[create(instance(a, "named_wf", 1)), create(instance(b, "named_wf", 2))]).await.unwrap();
    store
        .write(&[
            add_event(a, "approval", "1", 10),
            add_event(a, "other", "2", 11),
            add_event(b, "approval", "3", 12),
            add_event(a, "APPROVAL", "4", 13),
            add_event(a, "Approval", "5", 14),
            add_event(a, "approvál", "6", 15),
            add_event(a, "APPROVÁL", "7", 16),
            add_event(a, "approval2", "8", 17),
        ])
        .await
        .unwrap();
    let payloads = |events: &[EventRecord]| events.iter().map(|e| e.payload.clone()).collect::<Vec<_>>();
    let all = store.events_named(a, "aPPROVAL", i64::MIN, 100).await.unwrap();
    assert_eq!(payloads(&all), ["1", "4", "5"], "ASCII case ignored, this instance's only, in arrival order");
    assert_eq!(all[0], store.events(a).await.unwrap()[0], "the same records as `events`");
    assert_eq!(
        payloads(&store.events_named(a, "approvál", 0, 100).await.unwrap()),
        ["6"],
        "only ASCII case is ignored"
    );
    assert_eq!(payloads(&store.events_named(a, "APPROVÁL", 0, 100).await.unwrap()), ["7"]);
    assert_eq!(payloads(&store.events_named(a, "approval", 0, 2).await.unwrap()), ["1", "4"], "at most `limit`");
    let after = store.events_named(a, "approval", all[0].event_id, 100).await.unwrap();
    assert_eq!(payloads(&after), ["4", "5"], "after the given id");
    assert!(store.events_named(a, "approval", all[2].event_id, 100).await.unwrap().is_empty());
    assert!(store.events_named(a, "approval", 0, 0).await.unwrap().is_empty());
    assert!(store.events_named(a, "missing", 0, 100).await.unwrap().is_empty());
    assert!(store.events_named("named/nobody", "approval", 0, 100).await.unwrap().is_empty());

    store.write(&[consume(a, all[1].event_id, 0, 1)]).await.unwrap();
    let left = store.events_named(a, "approval", 0, 100).await.unwrap();
    assert_eq!(payloads(&left), ["1", "5"], "a consumed event is not listed");
}

/// `AssertInboxRoom` refuses a batch, with [`StoreError::InboxFull`] and nothing of it applied,
/// when the inbox's unconsumed events plus what the batch's assertions on it claim (added up in
/// op order) pass either limit; consumed events do not count; concurrent batches cannot together
/// overfill an inbox.
pub async fn check_inbox_room(store: &dyn Store) {
    let (a, b, ghost) = ("room/a", "room/b", "room/ghost");
    store.write(&[create(instance(a, "room_wf", 1)), create(instance(b, "room_wf", 2))]).await.unwrap();
    let raise = |id: &str, payload: &str, max_events: u64, max_bytes: u64| {
        vec![room(id, 1, payload.len() as u64, max_events, max_bytes), add_event(id, "e", payload, 5)]
    };
    // Three events of 10 bytes each fit a limit of 3 events and 30 bytes.
    for _ in 0..3 {
        store.write(&raise(a, "\"12345678\"", 3, 30)).await.unwrap();
    }
    let before = store.events(a).await.unwrap();
    assert_eq!(before.len(), 3);
    let full = |result: Result<_, StoreError>| match result {
        Err(StoreError::InboxFull { id, events, bytes }) => (id, events, bytes),
        other => panic!("expected InboxFull, got {other:?}"),
    };
    assert_eq!(full(store.write(&raise(a, "1", 3, 1_000)).await), (a.to_owned(), 3, 30), "the count limit");
    assert_eq!(full(store.write(&raise(a, "1", 10, 30)).await), (a.to_owned(), 3, 30), "the byte limit");
    // The rest of a refused batch is not applied either.
    let mut batch = vec![add_event(b, "other", "1", 6), set_wake(b, Some(77))];
    batch.extend(raise(a, "1", 3, 1_000));
    full(store.write(&batch).await);
    assert_eq!(store.events(a).await.unwrap(), before, "the inbox is unchanged");
    assert!(store.events(b).await.unwrap().is_empty(), "nothing of the batch was applied");
    assert_eq!(get(store, b).await.wake_at, None);

    // Assertions on one inbox in one batch add up: each fits alone, the two do not.
    store.write(&[room(b, 1, 1, 1, 100), add_event(b, "x", "1", 7)]).await.unwrap();
    store.write(&[consume(b, store.events(b).await.unwrap()[0].event_id, 0, 1)]).await.unwrap();
    let two = [room(b, 1, 1, 1, 100), add_event(b, "x", "1", 8), room(b, 1, 1, 1, 100), add_event(b, "x", "2", 8)];
    assert_eq!(full(store.write(&two).await), (b.to_owned(), 0, 0), "consumed events do not count");
    assert!(store.events(b).await.unwrap().is_empty());
    store.write(&two[..2]).await.unwrap();
    // Other instances' assertions are their own.
    store.write(&[room(ghost, 2, 2, 2, 2), room(b, 0, 0, 1, 100), add_event(ghost, "g", "1", 9)]).await.unwrap();
    full(store.write(&[room(ghost, 1, 0, 1, 100)]).await);

    // Concurrent raises on one inbox: exactly as many as fit get in.
    let c = "room/c";
    store.write(&[create(instance(c, "room_wf", 3))]).await.unwrap();
    let batches: Vec<Vec<WriteOp>> = (0..12).map(|n| raise(c, &n.to_string(), 5, 1_000)).collect();
    let results = futures::future::join_all(batches.iter().map(|batch| store.write(batch))).await;
    let accepted = results.iter().filter(|result| result.is_ok()).count();
    for result in results.into_iter().filter(Result::is_err) {
        full(result);
    }
    assert_eq!(accepted, 5, "5 of 12 concurrent raises fit");
    assert_eq!(store.events(c).await.unwrap().len(), 5);
}

/// [`WriteOp::AssertInboxRoom`].
pub fn room(id: &str, events: u64, bytes: u64, max_events: u64, max_bytes: u64) -> WriteOp {
    WriteOp::AssertInboxRoom { id: id.to_owned(), events, bytes, max_events, max_bytes }
}

/// `inbox_heads`: for each asked instance with unconsumed events, its highest unconsumed event
/// id; an instance whose events are all consumed, one without events, an unknown one, and an
/// instance not asked are left out.
pub async fn check_inbox_heads(store: &dyn Store) {
    let (a, b, c) = ("heads/a", "heads/b", "heads/c");
    let created =
        [create(instance(a, "heads_wf", 1)), create(instance(b, "heads_wf", 2)), create(instance(c, "heads_wf", 3))];
    store.write(&created).await.unwrap();
    store.write(&[add_event(a, "x", "1", 10), add_event(b, "x", "2", 11), add_event(a, "y", "3", 12)]).await.unwrap();
    store.write(&[add_event(c, "x", "4", 13)]).await.unwrap();
    let events_a = store.events(a).await.unwrap();
    let events_b = store.events(b).await.unwrap();
    assert_eq!((events_a.len(), events_b.len()), (2, 1));
    // b's only event is consumed: b has no head.
    store.write(&[consume(b, events_b[0].event_id, 0, 0)]).await.unwrap();
    let asked: Vec<String> = [a, b, "heads/unknown"].iter().map(|id| (*id).to_owned()).collect();
    let mut heads = store.inbox_heads(&asked).await.unwrap();
    heads.sort();
    let newest_a = events_a.iter().map(|event| event.event_id).max().unwrap();
    assert_eq!(heads, vec![(a.to_owned(), newest_a)]);
    // Consuming the newest leaves the older one as the head.
    store.write(&[consume(a, newest_a, 0, 1)]).await.unwrap();
    let oldest_a = events_a.iter().map(|event| event.event_id).min().unwrap();
    assert_eq!(store.inbox_heads(&asked).await.unwrap(), vec![(a.to_owned(), oldest_a)]);
    assert!(store.inbox_heads(&[]).await.unwrap().is_empty());
}

/// `inboxes` returns the first N unconsumed events of each instance asked about, in arrival
/// order within each, and nothing of the instances not asked about or without events.
pub async fn check_inboxes(store: &dyn Store) {
    let (a, b, c, other) = ("fronts/a", "fronts/b", "fronts/c", "fronts/other");
    let created = [a, b, c, other].map(|id| create(instance(id, "fronts_wf", 1)));
    store.write(&created).await.unwrap();
    let mut ops = vec![add_event(a, "x", "1", 10), add_event(a, "y", "2", 11), add_event(a, "x", "3", 12)];
    ops.extend((0..5).map(|n| add_event(b, "x", &n.to_string(), 20 + n)));
    ops.push(add_event(other, "x", "9", 30));
    store.write(&ops).await.unwrap();
    // a's first event is consumed: its front starts at the second.
    let first_a = store.events(a).await.unwrap()[0].event_id;
    store.write(&[consume(a, first_a, 0, 0)]).await.unwrap();
    let asked: Vec<String> = [a, b, c, "fronts/unknown"].iter().map(|id| (*id).to_owned()).collect();
    let events = store.inboxes(&asked, 3).await.unwrap();
    let of = |id: &str| -> Vec<String> {
        events.iter().filter(|event| event.instance_id == id).map(|event| event.payload.clone()).collect()
    };
    assert_eq!(of(a), ["2", "3"]);
    assert_eq!(of(b), ["0", "1", "2"], "the first 3, in arrival order");
    assert_eq!(events.len(), 5, "nothing of c, of unknown ids, or of instances not asked about");
    let ids = |id: &str| -> Vec<i64> {
        events.iter().filter(|event| event.instance_id == id).map(|event| event.event_id).collect()
    };
    assert!(ids(b).windows(2).all(|pair| pair[0] < pair[1]));
    assert!(store.inboxes(&[], 3).await.unwrap().is_empty());
}
