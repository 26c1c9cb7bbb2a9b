//! Instances: create and read, duplicate creates, status changes and finishing, the custom status,
//! restarts (ContinueAsNew), and payloads kept verbatim.

use crate::store::{InstanceRecord, JournalRecord, RuntimeStatus, Store, StoreError, WriteOp, NEVER};

use super::{
    add_event, consume, continue_as_new, create, event_names, get, ids, instance, names, put, record, set_custom,
    with_status, Nul,
};

/// Every field of an instance comes back as written; an unknown id reads as `None`.
pub async fn check_create_and_read(store: &dyn Store) {
    let full = InstanceRecord {
        id: "create/full".into(),
        workflow: "create_wf".into(),
        status: RuntimeStatus::Running,
        input: r#"{"order":42}"#.into(),
        output: Some(r#""done""#.into()),
        error: Some(r#"{"message":"boom"}"#.into()),
        generation: 7,
        created_at: 1_700_000_000_123,
        updated_at: 1_700_000_000_456,
        owner: Some("worker-a".into()),
        lease_until: Some(1_700_000_030_000),
        parent_id: Some("create/parent".into()),
        custom_status: Some(r#"{"stage":"shipping"}"#.into()),
        wake_at: Some(1_700_000_060_000),
        priority: 7,
        concurrency_key: "tenant-7".into(),
        trace_context: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    };
    let minimal = instance("create/minimal", "create_wf", 5);
    let extremes = InstanceRecord {
        generation: u32::MAX,
        created_at: i64::MIN,
        updated_at: i64::MAX,
        lease_until: Some(-1),
        custom_status: Some(String::new()),
        wake_at: Some(NEVER),
        priority: i32::MIN,
        ..instance("create/extremes", "create_wf", 0)
    };
    let early =
        InstanceRecord { wake_at: Some(i64::MIN), priority: i32::MAX, ..instance("create/early", "create_wf", 0) };
    let outcome = store
        .write(&[create(full.clone()), create(minimal.clone()), create(extremes.clone()), create(early.clone())])
        .await
        .unwrap();
    assert!(outcome.existing.is_empty(), "nothing existed: {outcome:?}");
    assert_eq!(get(store, "create/full").await, full);
    assert_eq!(get(store, "create/minimal").await, minimal);
    assert_eq!(get(store, "create/extremes").await, extremes);
    assert_eq!(get(store, "create/early").await, early);
    assert_eq!(store.instance("create/nobody").await.unwrap(), None);
    for status in RuntimeStatus::ALL {
        let id = format!("create/status/{}", status.as_str());
        let record = with_status(instance(&id, "create_status_wf", 1), status);
        store.write(&[create(record.clone())]).await.unwrap();
        assert_eq!(get(store, &id).await, record, "status {status:?} round-trips");
    }
}

/// A create of an id that exists is skipped and reported, once per skipped op, and leaves the
/// original row alone; two creates of one new id in one batch create it once and skip once.
pub async fn check_duplicate_create(store: &dyn Store) {
    let original = instance("dup/a", "dup_wf", 10);
    assert!(store.write(&[create(original.clone())]).await.unwrap().existing.is_empty());

    let imposter = InstanceRecord {
        workflow: "other_wf".into(),
        status: RuntimeStatus::Failed,
        input: r#""imposter""#.into(),
        created_at: 99,
        ..original.clone()
    };
    let first_b = instance("dup/b", "dup_wf", 20);
    let second_b = InstanceRecord { input: r#""second""#.into(), ..instance("dup/b", "dup_wf", 21) };
    let outcome = store
        .write(&[create(imposter.clone()), create(first_b.clone()), create(second_b), create(imposter)])
        .await
        .unwrap();
    assert_eq!(outcome.existing, vec!["dup/a", "dup/b", "dup/a"], "one entry per skipped op, in op order");
    assert_eq!(get(store, "dup/a").await, original, "the existing row is untouched");
    assert_eq!(get(store, "dup/b").await, first_b, "the first create in the batch wins");
}

/// SetStatus changes status and time only; Finish sets the outcome and drops the lease; both are
/// no-ops on an unknown id.
pub async fn check_set_status_and_finish(store: &dyn Store) {
    let wf = "finish_wf";
    let a = instance("finish/a", wf, 1);
    let b = instance("finish/b", wf, 2);
    store.write(&[create(a.clone()), create(b.clone())]).await.unwrap();

    store
        .write(&[WriteOp::SetStatus { id: a.id.clone(), status: RuntimeStatus::Running, updated_at: 50 }])
        .await
        .unwrap();
    let running = get(store, &a.id).await;
    assert_eq!(running, InstanceRecord { status: RuntimeStatus::Running, updated_at: 50, ..a.clone() });

    let claimed = store.claim("finisher", &names(&[wf]), 100, 10_000, 10).await.unwrap();
    assert_eq!(ids(&claimed), vec!["finish/a", "finish/b"]);

    store
        .write(&[
            WriteOp::Finish {
                id: a.id.clone(),
                status: RuntimeStatus::Completed,
                output: Some(r#"{"total":3}"#.into()),
                error: None,
                updated_at: 200,
            },
            WriteOp::Finish {
                id: b.id.clone(),
                status: RuntimeStatus::Failed,
                output: None,
                error: Some(r#"{"message":"no"}"#.into()),
                updated_at: 201,
            },
        ])
        .await
        .unwrap();
    let done = get(store, &a.id).await;
    assert_eq!(
        done,
        InstanceRecord {
            status: RuntimeStatus::Completed,
            output: Some(r#"{"total":3}"#.into()),
            updated_at: 200,
            owner: None,
            lease_until: None,
            ..a.clone()
        },
        "finish clears the lease"
    );
    let failed = get(store, &b.id).await;
    assert_eq!(failed.status, RuntimeStatus::Failed);
    assert_eq!(failed.output, None);
    assert_eq!(failed.error.as_deref(), Some(r#"{"message":"no"}"#));
    assert_eq!((failed.owner, failed.lease_until, failed.updated_at), (None, None, 201));

    // Finished instances are not claimable, and the finisher holds nothing any more.
    assert!(store.claim("other", &names(&[wf]), 20_000, 30_000, 10).await.unwrap().is_empty());
    assert_eq!(store.renew_leases("finisher", 50_000).await.unwrap(), 0);

    // Unknown ids: nothing happens, nothing fails, nothing is created.
    store
        .write(&[
            WriteOp::SetStatus { id: "finish/nobody".into(), status: RuntimeStatus::Running, updated_at: 1 },
            WriteOp::Finish {
                id: "finish/nobody".into(),
                status: RuntimeStatus::Terminated,
                output: None,
                error: None,
                updated_at: 1,
            },
        ])
        .await
        .unwrap();
    assert_eq!(store.instance("finish/nobody").await.unwrap(), None);
}

/// SetCustomStatus sets or clears the custom status (verbatim) and the change time, nothing else;
/// a no-op on an unknown id.
pub async fn check_custom_status(store: &dyn Store, nul: Nul) {
    let a = instance("custom/a", "custom_wf", 1);
    store
        .write(&[
            create(a.clone()),
            set_custom(&a.id, Some(r#"{"step":1}"#), 10),
            set_custom(&a.id, Some("\"two\""), 11),
        ])
        .await
        .unwrap();
    assert_eq!(
        get(store, &a.id).await,
        InstanceRecord { custom_status: Some("\"two\"".into()), updated_at: 11, ..a.clone() }
    );
    store.write(&[set_custom(&a.id, None, 12), set_custom("custom/nobody", Some("1"), 1)]).await.unwrap();
    assert_eq!(get(store, &a.id).await, InstanceRecord { updated_at: 12, ..a.clone() });
    assert_eq!(store.instance("custom/nobody").await.unwrap(), None);

    let odd = match nul {
        Nul::Kept => "  { not json \u{0} ☕ ",
        Nul::Refused => {
            let refused = store.write(&[set_custom(&a.id, Some("\u{0}"), 13)]).await;
            assert!(matches!(refused, Err(StoreError::Backend(ref m)) if m.contains("NUL")), "{refused:?}");
            assert_eq!(get(store, &a.id).await.updated_at, 12, "the refused batch changed nothing");
            "  { not json ☕ "
        }
    };
    store.write(&[set_custom(&a.id, Some(odd), 13)]).await.unwrap();
    assert_eq!(get(store, &a.id).await.custom_status.as_deref(), Some(odd));
    store
        .write(&[WriteOp::Finish {
            id: a.id.clone(),
            status: RuntimeStatus::Completed,
            output: Some("1".into()),
            error: None,
            updated_at: 14,
        }])
        .await
        .unwrap();
    assert_eq!(get(store, &a.id).await.custom_status.as_deref(), Some(odd), "finishing keeps it");
}

/// ContinueAsNew restarts an instance: new input and generation, status Running, no output or
/// error, everything else kept; the journal of older generations is gone (the new one and any
/// later one stay), consumed events are gone and unconsumed ones stay; other instances are
/// untouched; a no-op on an unknown id, whose journal stays. In a batch it applies in op order.
pub async fn check_continue_as_new(store: &dyn Store) {
    let wf = "can_wf";
    let x = InstanceRecord {
        status: RuntimeStatus::Completed,
        output: Some("\"out\"".into()),
        error: Some(r#"{"e":1}"#.into()),
        generation: 1,
        owner: Some("can-w".into()),
        lease_until: Some(50),
        parent_id: Some("can/parent".into()),
        custom_status: Some("\"cs\"".into()),
        ..instance("can/x", wf, 1)
    };
    let (x_id, y_id) = (x.id.as_str(), "can/y");
    let mut ops = vec![create(x.clone()), create(instance(y_id, wf, 2))];
    ops.extend([(0, 0), (0, 1), (1, 0), (2, 0), (3, 5)].map(|(g, s)| put(record(x_id, g, s))));
    ops.extend([put(record(y_id, 0, 0)), put(record(y_id, 1, 0))]);
    ops.extend([
        add_event(x_id, "kept", "1", 10),
        add_event(x_id, "used", "2", 11),
        add_event(y_id, "y-used", "3", 12),
    ]);
    store.write(&ops).await.unwrap();
    let x_events = store.events(x_id).await.unwrap();
    let y_events = store.events(y_id).await.unwrap();
    store.write(&[consume(x_id, x_events[1].event_id, 1, 0), consume(y_id, y_events[0].event_id, 0, 1)]).await.unwrap();
    let before = get(store, x_id).await;

    store.write(&[continue_as_new(x_id, "\"next\"", 2, 77), continue_as_new("can/nobody", "0", 9, 1)]).await.unwrap();
    let expected = InstanceRecord {
        status: RuntimeStatus::Running,
        input: "\"next\"".into(),
        generation: 2,
        output: None,
        error: None,
        updated_at: 77,
        ..before
    };
    assert_eq!(get(store, x_id).await, expected);
    assert!(store.journal(x_id, 0).await.unwrap().is_empty());
    assert!(store.journal(x_id, 1).await.unwrap().is_empty());
    assert_eq!(store.journal(x_id, 2).await.unwrap(), vec![record(x_id, 2, 0)], "the new generation stays");
    assert_eq!(store.journal(x_id, 3).await.unwrap(), vec![record(x_id, 3, 5)], "a later one too");
    assert_eq!(store.journal(y_id, 0).await.unwrap(), vec![record(y_id, 0, 0)], "other instances keep theirs");
    assert_eq!(store.journal(y_id, 1).await.unwrap(), vec![record(y_id, 1, 0)]);
    assert_eq!(store.events(x_id).await.unwrap(), x_events[..1], "unconsumed events stay");
    assert!(store.events(y_id).await.unwrap().is_empty());
    assert_eq!(store.instance("can/nobody").await.unwrap(), None);

    store.write(&[put(record("can/nobody", 0, 0)), continue_as_new("can/nobody", "0", 5, 1)]).await.unwrap();
    assert_eq!(store.journal("can/nobody", 0).await.unwrap(), vec![record("can/nobody", 0, 0)]);

    // In op order: a restart before the create does nothing; records written before a restart go
    // with their generation, records written after it stay, even of an older generation.
    let z = instance("can/z", wf, 3);
    store
        .write(&[
            continue_as_new(&z.id, "\"too early\"", 1, 78),
            put(record(&z.id, 0, 0)),
            create(z.clone()),
            add_event(&z.id, "z1", "1", 79),
            put(record(&z.id, 0, 1)),
            continue_as_new(&z.id, "\"z again\"", 1, 80),
            put(record(&z.id, 0, 2)),
            put(record(&z.id, 1, 0)),
            add_event(&z.id, "z2", "2", 81),
        ])
        .await
        .unwrap();
    let z_now = get(store, &z.id).await;
    assert_eq!(
        z_now,
        InstanceRecord {
            status: RuntimeStatus::Running,
            input: "\"z again\"".into(),
            generation: 1,
            updated_at: 80,
            wake_at: Some(81),
            ..z.clone()
        }
    );
    assert_eq!(store.journal(&z.id, 0).await.unwrap(), vec![record(&z.id, 0, 2)]);
    assert_eq!(store.journal(&z.id, 1).await.unwrap(), vec![record(&z.id, 1, 0)]);
    let z_events = store.events(&z.id).await.unwrap();
    assert_eq!(event_names(&z_events), ["z1", "z2"]);

    // Restarting twice into one generation; consuming before and after a restart.
    store
        .write(&[
            put(record(&z.id, 1, 1)),
            consume(&z.id, z_events[0].event_id, 1, 2),
            continue_as_new(&z.id, "3", 3, 82),
            put(record(&z.id, 3, 0)),
            consume(&z.id, z_events[1].event_id, 3, 1),
            continue_as_new(&z.id, "3 again", 3, 83),
            add_event(&z.id, "z3", "3", 84),
        ])
        .await
        .unwrap();
    assert!(store.journal(&z.id, 0).await.unwrap().is_empty());
    assert!(store.journal(&z.id, 1).await.unwrap().is_empty());
    assert_eq!(store.journal(&z.id, 3).await.unwrap(), vec![record(&z.id, 3, 0)], "its own generation stays");
    let z_events = store.events(&z.id).await.unwrap();
    assert_eq!(event_names(&z_events), ["z3"]);
    assert_eq!((get(store, &z.id).await.input.as_str(), get(store, &z.id).await.updated_at), ("3 again", 83));

    // Event ids are not reused after the newest event is consumed and deleted.
    let newest = z_events[0].event_id;
    store.write(&[consume(&z.id, newest, 3, 2)]).await.unwrap();
    store.write(&[continue_as_new(&z.id, "4", 4, 85)]).await.unwrap();
    store.write(&[add_event(&z.id, "z4", "4", 86)]).await.unwrap();
    let z_events = store.events(&z.id).await.unwrap();
    assert_eq!(event_names(&z_events), ["z4"]);
    assert!(z_events[0].event_id > newest, "{} reuses {newest}", z_events[0].event_id);
}

/// Payloads are opaque text: stored and returned byte for byte, never parsed or normalised (a NUL
/// character is either kept or its batch refused, see [`Nul`]).
pub async fn check_payloads_verbatim(store: &dyn Store, nul: Nul) {
    let payloads = [
        r#"{"b":1,"a":2}"#.to_owned(),
        "  { \"spaced\" :\t[ 1 , 2 ] }\n".to_owned(),
        r#""caf\u00e9 \ud83d\ude00""#.to_owned(),
        "\"café ☕ 日本語 🦀 \u{202e}rtl\"".to_owned(),
        r#"{"unterminated": [1, 2"#.to_owned(),
        "not json at all".to_owned(),
        "12345678901234567890123456789.000000000000000000001".to_owned(),
        "with\0nul".to_owned(),
        String::new(),
        "x".repeat(1 << 20),
    ];
    for (i, payload) in payloads.iter().enumerate() {
        let id = format!("payload/{i}");
        let created = InstanceRecord {
            input: payload.clone(),
            output: Some(payload.clone()),
            error: Some(format!("{payload}!")),
            ..instance(&id, "payload_wf", 1)
        };
        let journal =
            JournalRecord { input: Some(payload.clone()), payload: Some(payload.clone()), ..record(&id, 0, 0) };
        if nul == Nul::Refused && payload.contains('\0') {
            let result = store.write(&[create(created), put(journal)]).await;
            assert!(matches!(result, Err(StoreError::Backend(ref m)) if m.contains("NUL")), "payload {i}: {result:?}");
            assert_eq!(store.instance(&id).await.unwrap(), None, "payload {i}: the refused batch wrote nothing");
            assert!(store.journal(&id, 0).await.unwrap().is_empty());
            continue;
        }
        store.write(&[create(created.clone()), put(journal.clone())]).await.unwrap();
        assert_eq!(get(store, &id).await, created, "payload {i} round-trips in instances");
        assert_eq!(store.journal(&id, 0).await.unwrap(), vec![journal], "payload {i} round-trips in the journal");

        store
            .write(&[WriteOp::Finish {
                id: id.clone(),
                status: RuntimeStatus::Completed,
                output: Some(payload.clone()),
                error: None,
                updated_at: 2,
            }])
            .await
            .unwrap();
        assert_eq!(get(store, &id).await.output.as_deref(), Some(payload.as_str()), "payload {i} via Finish");
    }
    // Ids and names are text too.
    let odd = instance("payload/ünï cødé/🦀/'; DROP TABLE instances; --", "payload ☕ wf", 1);
    store.write(&[create(odd.clone())]).await.unwrap();
    assert_eq!(get(store, &odd.id).await, odd);
    assert_eq!(ids(&store.claim("w ☕", &names(&["payload ☕ wf"]), 10, 20, 10).await.unwrap()), vec![odd.id.as_str()]);
}
