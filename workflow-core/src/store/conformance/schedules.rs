//! Schedules: the rows as written, what is due, and fires that take at most once per tick.

use super::{get, instance};
use crate::store::{InstanceRecord, ScheduleFire, ScheduleRecord, Store};

fn schedule(id: &str, next: Option<i64>) -> ScheduleRecord {
    ScheduleRecord {
        id: id.to_owned(),
        workflow: "sched_wf".to_owned(),
        spec: format!(r#"{{"cron":"* * * * * *","of":"{id}"}}"#),
        paused: false,
        next_fire_at: next,
        runs: "[]".to_owned(),
        created_at: 1_000,
        updated_at: 1_000,
    }
}

/// A schedule reads back as written; a create of a taken id changes nothing and says so; a
/// replace keeps the runs and the creation time; due schedules come earliest first, paused or
/// finished ones never; a fire takes only at the tick it read (a second worker's fire of the same
/// tick changes nothing), creates its instances, leaves an existing instance as it is; a delete
/// says whether there was one.
pub async fn check_schedules(store: &dyn Store) {
    let (a, b) = (schedule("sched-a", Some(5_000)), schedule("sched-b", Some(4_000)));
    let paused = ScheduleRecord { paused: true, ..schedule("sched-paused", Some(1_000)) };
    let done = schedule("sched-done", None);
    for record in [&a, &b, &paused, &done] {
        assert!(store.put_schedule(record, false).await.unwrap(), "{} is new", record.id);
    }
    assert_eq!(store.schedule("sched-a").await.unwrap().as_ref(), Some(&a));
    assert_eq!(store.schedule("sched-missing").await.unwrap(), None);
    let taken = ScheduleRecord { workflow: "other_wf".into(), ..a.clone() };
    assert!(!store.put_schedule(&taken, false).await.unwrap(), "a taken id");
    assert_eq!(store.schedule("sched-a").await.unwrap().as_ref(), Some(&a), "left as it was");
    let ids = |records: Vec<ScheduleRecord>| records.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let all = ids(store.schedules().await.unwrap());
    assert_eq!(all, ["sched-a", "sched-b", "sched-done", "sched-paused"]);
    assert_eq!(ids(store.due_schedules(4_999, 10).await.unwrap()), ["sched-b"]);
    assert_eq!(ids(store.due_schedules(5_000, 10).await.unwrap()), ["sched-b", "sched-a"]);
    assert_eq!(ids(store.due_schedules(5_000, 1).await.unwrap()), ["sched-b"]);

    // Two workers fire b's tick at 4,000: one takes it.
    let tick = instance("sched-b-4000", "sched_wf", 4_100);
    let fire = ScheduleFire {
        id: "sched-b".into(),
        expected_next: 4_000,
        next_fire_at: Some(5_000),
        runs: r#"[{"tick":4000,"instance_id":"sched-b-4000"}]"#.into(),
        fired_at: 4_100,
        instances: vec![tick.clone()],
    };
    assert_eq!(store.fire_schedules(std::slice::from_ref(&fire)).await.unwrap(), [true]);
    let other = ScheduleFire { runs: "[]".into(), ..fire.clone() };
    assert_eq!(store.fire_schedules(&[other]).await.unwrap(), [false], "the tick is taken");
    let b_now = store.schedule("sched-b").await.unwrap().unwrap();
    assert_eq!((b_now.next_fire_at, b_now.runs.as_str(), b_now.updated_at), (Some(5_000), fire.runs.as_str(), 4_100));
    assert_eq!(get(store, "sched-b-4000").await, tick);
    // A fire whose instance exists (made by an earlier fire, say) leaves it as it is.
    let again = ScheduleFire {
        expected_next: 5_000,
        next_fire_at: Some(6_000),
        instances: vec![instance("sched-b-4000", "sched_wf", 9_999)],
        ..fire.clone()
    };
    assert_eq!(store.fire_schedules(&[again]).await.unwrap(), [true]);
    assert_eq!(get(store, "sched-b-4000").await, tick, "not overwritten");
    // A paused schedule never fires, whatever a worker read.
    let paused_fire = ScheduleFire { id: "sched-paused".into(), expected_next: 1_000, ..fire.clone() };
    assert_eq!(store.fire_schedules(&[paused_fire]).await.unwrap(), [false]);

    // A replace keeps the runs and the creation time.
    let moved = ScheduleRecord {
        spec: r#"{"cron":"0 * * * * *"}"#.into(),
        paused: true,
        next_fire_at: Some(60_000),
        runs: "[]".into(),
        created_at: 50_000,
        updated_at: 50_000,
        ..b.clone()
    };
    assert!(store.put_schedule(&moved, true).await.unwrap());
    let expected = ScheduleRecord { runs: b_now.runs.clone(), created_at: b.created_at, ..moved };
    assert_eq!(store.schedule("sched-b").await.unwrap(), Some(expected));
    assert!(store.due_schedules(i64::MAX, 10).await.unwrap().iter().all(|r| r.id == "sched-a"));

    assert!(store.delete_schedule("sched-a").await.unwrap());
    assert!(!store.delete_schedule("sched-a").await.unwrap());
    for id in ["sched-b", "sched-paused", "sched-done"] {
        store.delete_schedule(id).await.unwrap();
    }
    assert!(store.schedules().await.unwrap().is_empty());

    // A fire that starts several ticks (a catch-up) writes each instance whole, every field.
    let many = schedule("sched-many", Some(7_000));
    assert!(store.put_schedule(&many, false).await.unwrap());
    let ticks: Vec<InstanceRecord> = (0..3)
        .map(|i| InstanceRecord {
            priority: i,
            concurrency_key: format!("key-{i}"),
            wake_at: Some(7_000 + i64::from(i)),
            trace_context: (i == 1).then(|| "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned()),
            ..instance(&format!("sched-many-{}", 5_000 + i), "sched_wf", 7_100)
        })
        .collect();
    let fire = ScheduleFire {
        id: "sched-many".into(),
        expected_next: 7_000,
        next_fire_at: Some(8_000),
        runs: "[]".into(),
        fired_at: 7_100,
        instances: ticks.clone(),
    };
    assert_eq!(store.fire_schedules(&[fire]).await.unwrap(), [true]);
    for tick in &ticks {
        assert_eq!(&get(store, &tick.id).await, tick);
    }
    assert!(store.delete_schedule("sched-many").await.unwrap());
}
