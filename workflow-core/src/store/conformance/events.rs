//! Events: the inbox of an instance, its ids, wake-ups and consumption.

use crate::store::{EventRecord, InstanceRecord, Store};

use super::{add_event, consume, create, event_names, get, instance};

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
