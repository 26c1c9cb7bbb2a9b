//! Schedules: the rows as written, what is due, and fires that take at most once per tick.

use super::{add_event, get, instance};
use crate::store::{InstanceRecord, RuntimeStatus, ScheduleChange, ScheduleFire, ScheduleRecord, Store, WriteOp};

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

/// A schedule reads back as written; a create of a taken id changes nothing and says so; due
/// schedules come earliest first, paused or finished ones never; a fire takes only at the tick
/// and the version it read (a second worker's fire of the same tick changes nothing), creates its
/// instances, leaves an existing instance as it is; a change takes only at the version it read,
/// keeps the creation time, and cancels the Pending unowned instances it names (not one that
/// started); a delete takes once.
pub async fn check_schedules(store: &dyn Store) {
    let (a, b) = (schedule("sched-a", Some(5_000)), schedule("sched-b", Some(4_000)));
    let paused = ScheduleRecord { paused: true, ..schedule("sched-paused", Some(1_000)) };
    let done = schedule("sched-done", None);
    for record in [&a, &b, &paused, &done] {
        assert!(store.put_schedule(record).await.unwrap(), "{} is new", record.id);
    }
    assert_eq!(store.schedule("sched-a").await.unwrap().as_ref(), Some(&a));
    assert_eq!(store.schedule("sched-missing").await.unwrap(), None);
    let taken = ScheduleRecord { workflow: "other_wf".into(), ..a.clone() };
    assert!(!store.put_schedule(&taken).await.unwrap(), "a taken id");
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
        expected_updated_at: 1_000,
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
        expected_updated_at: 4_100,
        next_fire_at: Some(6_000),
        fired_at: 4_200,
        instances: vec![instance("sched-b-4000", "sched_wf", 9_999)],
        ..fire.clone()
    };
    // One that read an older version (before the last fire or a client's change) does not take.
    let stale = ScheduleFire { expected_updated_at: 1_000, ..again.clone() };
    assert_eq!(store.fire_schedules(&[stale]).await.unwrap(), [false], "an older version");
    assert_eq!(store.fire_schedules(&[again]).await.unwrap(), [true]);
    assert_eq!(get(store, "sched-b-4000").await, tick, "not overwritten");
    // A paused schedule never fires, whatever a worker read.
    let paused_fire = ScheduleFire { id: "sched-paused".into(), expected_next: 1_000, ..fire.clone() };
    assert_eq!(store.fire_schedules(&[paused_fire]).await.unwrap(), [false]);

    // A change takes only at the version it read, and keeps the creation time.
    let b_now = store.schedule("sched-b").await.unwrap().unwrap();
    let moved = ScheduleRecord {
        spec: r#"{"cron":"0 * * * * *"}"#.into(),
        paused: true,
        next_fire_at: Some(60_000),
        runs: r#"[{"tick":4000,"instance_id":"sched-b-4000"}]"#.into(),
        created_at: 50_000,
        updated_at: 50_000,
        ..b.clone()
    };
    // Ticks it fired ahead: one still waiting (with an event raised for it), one that started.
    let ahead = InstanceRecord { wake_at: Some(70_000), ..instance("sched-b-70000", "sched_wf", 4_200) };
    let started = InstanceRecord {
        status: RuntimeStatus::Running,
        owner: Some("w1".into()),
        lease_until: Some(99_000),
        ..instance("sched-b-65000", "sched_wf", 4_200)
    };
    let ops = vec![
        WriteOp::CreateInstance(ahead.clone()),
        WriteOp::CreateInstance(started.clone()),
        add_event("sched-b-70000", "early", "1", 4_300),
    ];
    store.write(&ops).await.unwrap();
    let change = ScheduleChange {
        id: "sched-b".into(),
        expected_updated_at: b_now.updated_at,
        to: Some(moved.clone()),
        cancel: vec!["sched-b-70000".into(), "sched-b-65000".into(), "sched-b-missing".into()],
    };
    let late = ScheduleChange { expected_updated_at: 1_000, ..change.clone() };
    assert!(!store.change_schedule(&late).await.unwrap(), "an older version");
    assert_eq!(store.schedule("sched-b").await.unwrap(), Some(b_now.clone()), "left as it was");
    assert!(store.instance("sched-b-70000").await.unwrap().is_some(), "not cancelled by a change that did not take");
    assert!(store.change_schedule(&change).await.unwrap());
    let expected = ScheduleRecord { created_at: b.created_at, ..moved.clone() };
    assert_eq!(store.schedule("sched-b").await.unwrap(), Some(expected));
    assert_eq!(store.instance("sched-b-70000").await.unwrap(), None, "the waiting tick is cancelled");
    assert!(store.inboxes(&["sched-b-70000".into()], 10).await.unwrap().is_empty(), "with its events");
    assert_eq!(get(store, "sched-b-65000").await, started, "a started tick runs on");
    assert!(!store.change_schedule(&change).await.unwrap(), "its own version is gone");
    assert!(store.due_schedules(i64::MAX, 10).await.unwrap().iter().all(|r| r.id == "sched-a"));

    // A delete is a change to nothing: it takes once.
    let a_now = store.schedule("sched-a").await.unwrap().unwrap();
    let delete =
        ScheduleChange { id: "sched-a".into(), expected_updated_at: a_now.updated_at, to: None, cancel: vec![] };
    assert!(store.change_schedule(&delete).await.unwrap());
    assert!(!store.change_schedule(&delete).await.unwrap());
    assert_eq!(store.schedule("sched-a").await.unwrap(), None);
    for id in ["sched-b", "sched-paused", "sched-done"] {
        delete_schedule(store, id).await;
    }
    assert!(store.schedules().await.unwrap().is_empty());

    // A fire that starts several ticks (a catch-up) writes each instance whole, every field.
    let many = schedule("sched-many", Some(7_000));
    assert!(store.put_schedule(&many).await.unwrap());
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
        expected_updated_at: 1_000,
        next_fire_at: Some(8_000),
        runs: "[]".into(),
        fired_at: 7_100,
        instances: ticks.clone(),
    };
    assert_eq!(store.fire_schedules(&[fire]).await.unwrap(), [true]);
    for tick in &ticks {
        assert_eq!(&get(store, &tick.id).await, tick);
    }
    delete_schedule(store, "sched-many").await;
}

/// Deletes the schedule `id` as it is now.
async fn delete_schedule(store: &dyn Store, id: &str) {
    let now = store.schedule(id).await.unwrap().unwrap_or_else(|| panic!("schedule {id} is missing"));
    let delete = ScheduleChange { id: id.into(), expected_updated_at: now.updated_at, to: None, cancel: vec![] };
    assert!(store.change_schedule(&delete).await.unwrap(), "{id} deleted");
}
