//! The store conformance suite, run on every store: the generic checks are exported by
//! `workflow-core` behind the `conformance` feature (`workflow::store::conformance`), so a store
//! written elsewhere runs them too; here they run on the in-memory store, the SQLite variants and
//! PostgreSQL. One `#[tokio::test]` per store runs them all, plus whatever only that backend can
//! check (pragmas, corrupt rows written behind the store's back, query plans, durability across
//! reopening, URLs, ...).

use std::sync::Arc;

use workflow::store::conformance::{
    self, add_event, assert_status, consume, continue_as_new, create, enqueue, event_names, get, ids, instance, names,
    outcome, purge, put, record, task, Options,
};
use workflow::store::{InstanceRecord, Store, WriteOp};
use workflow::{
    JournalRecord, MemoryStore, RecordStatus, RuntimeStatus, SqliteOptions, SqliteStore, StoreError, Synchronous,
};

// ---------------------------------------------------------------------------------------------
// The in-memory store
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::new();
    conformance::run_all(&store).await;
    // It takes leases on the tasks a write queues (the check in `run_all` accepts a store that
    // takes none).
    conformance::check_write_leasing(&MemoryStore::new(), true).await;
    conformance::check_slots(&MemoryStore::new(), true).await;
    conformance::check_start_leasing(&MemoryStore::new(), true).await;
    // No atomicity check: the memory store applies a batch under one lock and has no op that can
    // fail midway, so there is no way to make a batch fail after its first op.
}

/// Everything on a memory store lives in this process, so it tells its subscribers of every
/// change (a client without a runtime hears of ends instead of polling for them): a finish, a
/// raise, a queued task and its outcome, released leases.
#[tokio::test]
async fn memory_store_signals_its_changes() {
    use workflow::store::WakeSignal;
    let store = MemoryStore::new();
    let mut signals = store.wake_signals().expect("the memory store signals");
    let id = "signals/a";
    store.write(&[create(instance(id, "signals_wf", 1))]).await.unwrap();
    store.write(&[add_event(id, "go", "1", 2), enqueue(task(id, 0, 0, "signals_act", 1, 1))]).await.unwrap();
    let claimed = store.claim_tasks("signals-w", &names(&["signals_act"]), 10, 60_000, 1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert!(store.complete_task("signals-w", id, 0, 0, 1, &outcome(true, "1", 10)).await.unwrap());
    store.claim("signals-w", &names(&["signals_wf"]), 10, 60_000, 1).await.unwrap();
    assert_eq!(store.release_leases("signals-w").await.unwrap(), 1);
    store
        .write(&[WriteOp::Finish {
            id: id.to_owned(),
            status: RuntimeStatus::Completed,
            output: Some("1".into()),
            error: None,
            updated_at: 20,
        }])
        .await
        .unwrap();
    let mut heard = Vec::new();
    while let Ok(signal) = signals.try_recv() {
        heard.push(signal);
    }
    assert_eq!(
        heard,
        [
            WakeSignal::Runnable,
            WakeSignal::TaskQueued,
            WakeSignal::Event(id.to_owned()),
            WakeSignal::TaskDone(id.to_owned()),
            WakeSignal::Runnable,
            WakeSignal::TaskQueued,
            WakeSignal::Finished(id.to_owned()),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

const POISON: &str = "conformance-poison";

/// Makes the SQLite store reject any journal record named [`POISON`], through a trigger added
/// behind its back, so a batch can be made to fail midway.
async fn arm_sqlite_poison(store: &SqliteStore) {
    sqlx::query(&format!(
        "CREATE TRIGGER conformance_poison BEFORE INSERT ON journal WHEN NEW.name = '{POISON}' \
         BEGIN SELECT RAISE(ABORT, 'poisoned by the conformance suite'); END"
    ))
    .execute(store.pool())
    .await
    .unwrap();
}

async fn disarm_sqlite_poison(store: &SqliteStore) {
    sqlx::query("DROP TRIGGER conformance_poison").execute(store.pool()).await.unwrap();
}

fn temp_url(dir: &tempfile::TempDir, file: &str) -> String {
    format!("sqlite://{}", dir.path().join(file).display())
}

#[tokio::test]
async fn sqlite_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&temp_url(&dir, "conformance.db")).await.unwrap();
    arm_sqlite_poison(&store).await;
    conformance::run_all_with(&store, &Options::new().poisoned_name(POISON)).await;
    disarm_sqlite_poison(&store).await;
    check_sqlite_pragmas(&store, 2).await;
    check_sqlite_list_plan(&store).await;
    check_sqlite_corrupt_rows(&store).await;
    check_sqlite_corrupt_task_rows(&store).await;
    check_sqlite_event_rows(&store).await;
    check_sqlite_purge_rows(&store).await;
    check_sqlite_dropped_writes(&store).await;
    check_sqlite_dropped_claims(&store).await;
    store.close().await;
}

#[tokio::test]
async fn sqlite_memory_store_conforms() {
    conformance::check_write_leasing(&SqliteStore::open("sqlite::memory:").await.unwrap(), true).await;
    conformance::check_slots(&SqliteStore::open("sqlite::memory:").await.unwrap(), true).await;
    conformance::check_start_leasing(&SqliteStore::open("sqlite::memory:").await.unwrap(), true).await;
    let store = SqliteStore::open("sqlite::memory:").await.unwrap();
    arm_sqlite_poison(&store).await;
    conformance::run_all_with(&store, &Options::new().poisoned_name(POISON)).await;
    disarm_sqlite_poison(&store).await;
    check_sqlite_corrupt_rows(&store).await;
    check_sqlite_corrupt_task_rows(&store).await;
    check_sqlite_event_rows(&store).await;
    check_sqlite_purge_rows(&store).await;
    check_sqlite_dropped_writes(&store).await;

    // Each `sqlite::memory:` store is its own database.
    let other = SqliteStore::open("sqlite::memory:").await.unwrap();
    assert_eq!(other.instance("create/full").await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_normal_synchronous_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let options = SqliteOptions::new().synchronous(Synchronous::Normal).read_connections(2);
    let store = SqliteStore::open_with(&temp_url(&dir, "normal.db"), options).await.unwrap();
    conformance::run_all(&store).await;
    check_sqlite_pragmas(&store, 1).await;
}

/// A list page (the statement `list` sends: list order, after a keyset) reads the
/// (created_at, id) index as a range; it neither scans the table nor sorts it. A page of one
/// status reads the (status, created_at, id) index as a range; a page of several is a page of each,
/// merged, each a range read of it (the merge sorts at most a page of each, never the table). A
/// status with a parent still reads the parent's children only.
async fn check_sqlite_list_plan(store: &SqliteStore) {
    const COLUMNS: &str = "id, created_at";
    let status_page = |status: &str| {
        format!(
            "SELECT {COLUMNS} FROM instances WHERE status = {status} AND (created_at, id) > (?1, ?2) \
             ORDER BY created_at, id LIMIT 10"
        )
    };
    // Binds ?1 = 1, ?2 = 'a', ?3 = 'Running', ?4 = 'Pending', as many as the page has.
    let plan_of = |page: String| async move {
        let explain = format!("EXPLAIN QUERY PLAN {page}");
        let mut query = sqlx::query(&explain);
        if page.contains("?1") {
            query = query.bind(1_i64).bind("a");
        }
        for (mark, status) in [("?3", "Running"), ("?4", "Pending")] {
            if page.contains(mark) {
                query = query.bind(status);
            }
        }
        let rows = query.fetch_all(store.pool()).await.unwrap();
        rows.iter().map(|row| sqlx::Row::get::<String, _>(row, "detail")).collect::<Vec<_>>().join("; ")
    };
    for page in [
        format!("SELECT {COLUMNS} FROM instances ORDER BY created_at, id LIMIT 10"),
        format!("SELECT {COLUMNS} FROM instances WHERE (created_at, id) > (?1, ?2) ORDER BY created_at, id LIMIT 10"),
    ] {
        let plan = plan_of(page.clone()).await;
        assert!(plan.contains("instances_created"), "{page}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{page} sorts: {plan}");
    }
    // Newest first reads the same indexes backwards, without a sort.
    for (page, index) in [
        (format!("SELECT {COLUMNS} FROM instances ORDER BY created_at DESC, id DESC LIMIT 10"), "instances_created"),
        (
            format!(
                "SELECT {COLUMNS} FROM instances WHERE (created_at, id) < (?1, ?2) \
                 ORDER BY created_at DESC, id DESC LIMIT 10"
            ),
            "instances_created",
        ),
        (
            format!(
                "SELECT {COLUMNS} FROM instances WHERE status = ?3 AND (created_at, id) < (?1, ?2) \
                 ORDER BY created_at DESC, id DESC LIMIT 10"
            ),
            "instances_status (status=? AND (created_at,id)<(?,?))",
        ),
    ] {
        let plan = plan_of(page.clone()).await;
        assert!(plan.contains(index), "{page}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{page} sorts: {plan}");
    }
    let one = status_page("?3");
    let plan = plan_of(one.clone()).await;
    assert!(
        plan.contains("USING COVERING INDEX instances_status (status=? AND (created_at,id)>(?,?))"),
        "{one}: {plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "{one} sorts: {plan}");
    let several = format!(
        "SELECT {COLUMNS} FROM ({}) AS s0 UNION ALL SELECT {COLUMNS} FROM ({}) AS s1 ORDER BY created_at, id LIMIT 10",
        status_page("?3"),
        status_page("?4")
    );
    let plan = plan_of(several.clone()).await;
    assert!(plan.contains("MERGE (UNION ALL)"), "{several}: {plan}");
    assert_eq!(plan.matches("instances_status (status=? AND (created_at,id)>(?,?))").count(), 2, "{several}: {plan}");
    assert!(!plan.contains("SCAN instances"), "{several} scans the table: {plan}");
    let with_workflow = format!(
        "SELECT {COLUMNS} FROM instances WHERE status = ?3 AND workflow = ?4 AND (created_at, id) > (?1, ?2) \
         ORDER BY created_at, id LIMIT 10"
    );
    let plan = plan_of(with_workflow.clone()).await;
    assert!(plan.contains("instances_status"), "{with_workflow}: {plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{with_workflow} sorts: {plan}");
    let with_parent = format!(
        "SELECT {COLUMNS} FROM instances WHERE +status IN (?3) AND parent_id = ?4 AND (created_at, id) > (?1, ?2) \
         ORDER BY created_at, id LIMIT 10"
    );
    let plan = plan_of(with_parent.clone()).await;
    assert!(plan.contains("instances_parent"), "{with_parent}: {plan}");
    assert!(!plan.contains("TEMP B-TREE"), "{with_parent} sorts: {plan}");
}

/// WAL, the chosen `synchronous` level (2 = FULL, 1 = NORMAL), foreign keys and the busy timeout.
async fn check_sqlite_pragmas(store: &SqliteStore, synchronous: i64) {
    let pool = store.pool();
    let journal_mode: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(pool).await.unwrap();
    assert_eq!(journal_mode.to_lowercase(), "wal");
    let level: i64 = sqlx::query_scalar("PRAGMA synchronous").fetch_one(pool).await.unwrap();
    assert_eq!(level, synchronous);
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys").fetch_one(pool).await.unwrap();
    assert_eq!(foreign_keys, 1);
    let busy_timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout").fetch_one(pool).await.unwrap();
    assert_eq!(busy_timeout, 5_000);
}

/// Rows damaged behind the store's back read as `Corrupt` errors naming the row.
async fn check_sqlite_corrupt_rows(store: &SqliteStore) {
    let id = "corrupt/a";
    store.write(&[create(instance(id, "corrupt_wf", 1)), put(record(id, 0, 3))]).await.unwrap();

    sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = ?").bind(id).execute(store.pool()).await.unwrap();
    match store.instance(id).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(id) && message.contains("Exploded"), "message names the row: {message}")
        }
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    sqlx::query("UPDATE instances SET status = 'Pending', generation = -1 WHERE id = ?")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    assert!(
        matches!(store.instance(id).await, Err(StoreError::Corrupt(m)) if m.contains(id) && m.contains("generation"))
    );

    sqlx::query("UPDATE journal SET status = 'Sideways' WHERE instance_id = ?")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    match store.journal(id, 0).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(id) && message.contains("seq 3"), "message names the record: {message}")
        }
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    for group in [-1, 1_i64 << 32] {
        sqlx::query("UPDATE journal SET status = 'Completed', parallel_group = ? WHERE instance_id = ?")
            .bind(group)
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        match store.journal(id, 0).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains("seq 3") && message.contains("parallel_group"), "{message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
    }
    store.write(&[add_event(id, "late", "1", 5)]).await.unwrap();
    sqlx::query("UPDATE events SET created_at = 'soon' WHERE instance_id = ?")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    match store.events(id).await {
        Err(StoreError::Corrupt(message)) => {
            assert!(message.contains(id) && message.contains("created_at"), "message names the event: {message}")
        }
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    sqlx::query("DELETE FROM instances WHERE id = ?").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM journal WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM events WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
}

/// Task rows damaged behind the store's back read as `Corrupt` errors naming the task and column:
/// out-of-range numbers, a boolean that is not 0 or 1, outcome columns set only in part.
async fn check_sqlite_corrupt_task_rows(store: &SqliteStore) {
    let id = "corrupt/task";
    store.write(&[enqueue(task(id, 0, 3, "corrupt_act", 1, 1))]).await.unwrap();
    store.claim_tasks("corrupt-w", &names(&["corrupt_act"]), 1, 100, 1).await.unwrap();
    assert!(store.complete_task("corrupt-w", id, 0, 3, 1, &outcome(true, "1", 2)).await.unwrap());
    let damage = |sql: &'static str| sqlx::query(sql).bind(id).execute(store.pool());
    for (sql, column) in [
        ("UPDATE activity_tasks SET attempt = -1 WHERE instance_id = ?", "attempt"),
        ("UPDATE activity_tasks SET attempt = 1, outcome_succeeded = 2 WHERE instance_id = ?", "outcome_succeeded"),
        ("UPDATE activity_tasks SET outcome_succeeded = 1, finished_at = NULL WHERE instance_id = ?", "finished_at"),
        (
            "UPDATE activity_tasks SET finished_at = 2, outcome_succeeded = NULL WHERE instance_id = ?",
            "outcome_succeeded",
        ),
        ("UPDATE activity_tasks SET outcome_succeeded = 0, visible_at = 'soon' WHERE instance_id = ?", "visible_at"),
    ] {
        damage(sql).await.unwrap();
        match store.finished_tasks(&names(&[id])).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("seq 3") && message.contains(column), "{message}")
            }
            other => panic!("{sql}: expected a corrupt-row error, got {other:?}"),
        }
    }
    damage("UPDATE activity_tasks SET visible_at = 1, generation = 4294967296 WHERE instance_id = ?").await.unwrap();
    assert!(
        matches!(store.finished_tasks(&names(&[id])).await, Err(StoreError::Corrupt(m)) if m.contains("generation"))
    );
    damage("DELETE FROM activity_tasks WHERE instance_id = ?").await.unwrap();
}

/// A write dropped before it is through (its future cancelled, as a timeout does) is applied
/// entirely or not at all, and the store goes on writing and reading: whatever transaction it left
/// open on the writer is rolled back by the writer's next user.
async fn check_sqlite_dropped_writes(store: &SqliteStore) {
    let id = "dropped/a";
    store.write(&[create(instance(id, "dropped_wf", 1))]).await.unwrap();
    for round in 0..40 {
        let ops = [put(record(id, 0, round)), put(record(id, 1, round)), add_event(id, "e", "1", 5)];
        let small = [put(record(id, 0, round)), put(record(id, 1, round))];
        {
            let mut write = if round % 2 == 0 { store.write(&ops) } else { store.write(&small) };
            let _ = futures::poll!(write.as_mut());
            for _ in 0..round % 4 {
                tokio::task::yield_now().await;
            }
        }
        // Whatever the writer's next user is. (The dropped write may still be running on the
        // writer's thread, and commit; the writer's next command runs after it.)
        match round % 3 {
            0 => store.write(&[put(record(id, 2, round))]).await.map(drop).unwrap(),
            1 => assert_eq!(store.renew_leases("dropped-nobody", 10).await.unwrap(), 0),
            _ => assert!(!store.complete_task("dropped-nobody", id, 0, 0, 1, &outcome(true, "1", 1)).await.unwrap()),
        }
        let gen0 = store.journal(id, 0).await.unwrap().iter().any(|r| r.seq == round);
        let gen1 = store.journal(id, 1).await.unwrap().iter().any(|r| r.seq == round);
        assert_eq!(gen0, gen1, "round {round}: a batch is all or nothing");
    }
    store.write(&[put(record(id, 3, 0))]).await.unwrap();
    assert_eq!(store.journal(id, 3).await.unwrap().len(), 1);
    sqlx::query("DELETE FROM journal WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
    sqlx::query("DELETE FROM events WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
}

/// Claims, renewals and releases dropped midway (as a stopping runtime drops its loops) leave the
/// writer usable: whatever transaction they began is rolled back by the writer's next user.
async fn check_sqlite_dropped_claims(store: &SqliteStore) {
    let wf = "dropped_claim_wf";
    store.write(&[create(instance("dropped/c", wf, 1))]).await.unwrap();
    let workflows = names(&[wf]);
    let activities = names(&["dropped_activity"]);
    for round in 0..80_u32 {
        {
            let mut dropped = match round % 4 {
                0 => Box::pin(async { store.claim("dropped-w", &workflows, 10, 20, 5).await.map(drop) })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send + '_>>,
                1 => Box::pin(async { store.renew_leases("dropped-w", 30).await.map(drop) }),
                2 => Box::pin(async { store.release_leases("dropped-w").await.map(drop) }),
                _ => Box::pin(async { store.claim_tasks("dropped-w", &activities, 10, 20, 5).await.map(drop) }),
            };
            // Polled a few times (the writer's thread runs meanwhile), then dropped midway.
            for _ in 0..round % 8 {
                if futures::poll!(dropped.as_mut()).is_ready() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_micros(50)).await;
            }
        }
        store.release_leases("dropped-w").await.unwrap();
        assert_eq!(store.renew_leases("dropped-nobody", 10).await.unwrap(), 0, "round {round}");
    }
    let claimed = store.claim("dropped-w", &workflows, 10, 20, 5).await.unwrap();
    assert_eq!(ids(&claimed), ["dropped/c"], "the writer still claims");
    store.release_leases("dropped-w").await.unwrap();
}

/// What the trait cannot show: a restart deletes the consumed event rows (those consumed after it
/// stay, consumed), an event keeps its first consumer, and an event added earlier in a batch can
/// be consumed later in it (this store assigns consecutive ids, so the test knows the id).
async fn check_sqlite_event_rows(store: &SqliteStore) {
    let id = "sqlev/a";
    store.write(&[create(instance(id, "sqlev_wf", 1)), add_event(id, "e1", "1", 10)]).await.unwrap();
    let e1 = store.events(id).await.unwrap()[0].event_id;
    let e2 = e1 + 1;
    store
        .write(&[
            consume(id, e1, 0, 3),
            add_event(id, "e2", "2", 11),
            continue_as_new(id, "\"next\"", 1, 12),
            consume(id, e2, 1, 0),
            consume(id, e2, 1, 9),
            add_event(id, "e3", "3", 13),
        ])
        .await
        .unwrap();
    let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
        "SELECT seq, consumed_generation, consumed_by_seq FROM events WHERE instance_id = ? ORDER BY seq",
    )
    .bind(id)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![(e2, Some(1), Some(0)), (e2 + 1, None, None)],
        "e1 went with the restart; e2's first consumer"
    );
    assert_eq!(event_names(&store.events(id).await.unwrap()), ["e3"]);
    sqlx::query("DELETE FROM events WHERE instance_id = ?").bind(id).execute(store.pool()).await.unwrap();
}

/// What the trait cannot show: a purge leaves no row of the instance in any table (consumed
/// events included), and an assertion on a status the engine cannot have written is a corrupt row.
async fn check_sqlite_purge_rows(store: &SqliteStore) {
    let id = "sqlpurge/a";
    store
        .write(&[
            create(instance(id, "sqlpurge_wf", 1)),
            put(record(id, 0, 0)),
            put(record(id, 3, 0)),
            add_event(id, "used", "1", 2),
            add_event(id, "kept", "2", 3),
            enqueue(task(id, 0, 0, "sqlpurge_act", 1, 1)),
            enqueue(task(id, 1, 0, "sqlpurge_act", 1, 1)),
        ])
        .await
        .unwrap();
    let used = store.events(id).await.unwrap()[0].event_id;
    store.write(&[consume(id, used, 0, 1)]).await.unwrap();
    // A debounce key pointing at it goes with it.
    sqlx::query("INSERT INTO debounces (workflow, key, instance_id) VALUES ('sqlpurge_wf', 'k', ?)")
        .bind(id)
        .execute(store.pool())
        .await
        .unwrap();
    let count = || async {
        let mut counts = Vec::new();
        for sql in [
            "SELECT count(*) FROM instances WHERE id = ?",
            "SELECT count(*) FROM journal WHERE instance_id = ?",
            "SELECT count(*) FROM events WHERE instance_id = ?",
            "SELECT count(*) FROM activity_tasks WHERE instance_id = ?",
            "SELECT count(*) FROM debounces WHERE instance_id = ?",
        ] {
            counts.push(sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(store.pool()).await.unwrap());
        }
        counts
    };
    assert_eq!(count().await, [1, 2, 2, 2, 1]);
    store.write(&[purge(id)]).await.unwrap();
    assert_eq!(count().await, [0, 0, 0, 0, 0]);

    store.write(&[create(instance(id, "sqlpurge_wf", 1))]).await.unwrap();
    sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = ?").bind(id).execute(store.pool()).await.unwrap();
    match store.write(&[assert_status(id, &RuntimeStatus::ALL)]).await {
        Err(StoreError::Corrupt(message)) => assert!(message.contains(id) && message.contains("Exploded"), "{message}"),
        other => panic!("expected a corrupt-row error, got {other:?}"),
    }
    store.write(&[purge(id)]).await.unwrap();
}

/// Opening creates the file; everything committed is there after reopening it.
#[tokio::test]
async fn sqlite_reopen_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("durable.db");
    assert!(!path.exists());
    let url = format!("sqlite:{}", path.display());

    let created = InstanceRecord {
        status: RuntimeStatus::Running,
        output: Some(r#""ok""#.into()),
        generation: 2,
        parent_id: Some("reopen/parent".into()),
        custom_status: Some("\"cs\"".into()),
        ..instance("reopen/a", "reopen_wf", 7)
    };
    let journal = vec![
        record("reopen/a", 2, 0),
        JournalRecord { status: RecordStatus::Retrying, due_at: Some(9), ..record("reopen/a", 2, 1) },
    ];
    {
        let store = SqliteStore::open(&url).await.unwrap();
        assert!(path.exists(), "opening creates the file");
        let ops: Vec<WriteOp> =
            std::iter::once(create(created.clone())).chain(journal.iter().cloned().map(put)).collect();
        store.write(&ops).await.unwrap();
        store.write(&[add_event("reopen/a", "used", "1", 8), add_event("reopen/a", "kept", "2", 9)]).await.unwrap();
        let used = store.events("reopen/a").await.unwrap()[0].event_id;
        store.write(&[consume("reopen/a", used, 2, 5)]).await.unwrap();
        store.claim("reopen-w", &names(&["reopen_wf"]), 10, 5_000, 1).await.unwrap();
        store.probe_commit().await.unwrap();
        // Dropped without `close`, as a process that stops would.
    }
    let store = SqliteStore::open(&format!("sqlite://{}", path.display())).await.unwrap();
    let claimed = InstanceRecord { owner: Some("reopen-w".into()), lease_until: Some(5_000), ..created };
    assert_eq!(get(&store, "reopen/a").await, claimed);
    assert_eq!(store.journal("reopen/a", 2).await.unwrap(), journal);
    let events = store.events("reopen/a").await.unwrap();
    assert_eq!(event_names(&events), ["kept"], "events and their consumption are kept");
    assert_eq!(store.stats(), Default::default(), "counters are per process");
    // Migrations already applied are not applied again, and the store still writes.
    store.write(&[put(record("reopen/a", 2, 2))]).await.unwrap();
    store.close().await;

    let again = SqliteStore::open(&url).await.unwrap();
    assert_eq!(again.journal("reopen/a", 2).await.unwrap().len(), 3);
    again.write(&[add_event("reopen/a", "after", "3", 10)]).await.unwrap();
    let after = again.events("reopen/a").await.unwrap();
    assert_eq!(event_names(&after), ["kept", "after"]);
    assert!(after[1].event_id > events[0].event_id, "ids keep counting up across reopening");

    // The store converts into what `Runtime::builder().store(..)` takes.
    let _shared: Arc<dyn Store> = again.into();
}

/// URLs that are not SQLite URLs, or name no file, are configuration errors.
#[tokio::test]
async fn sqlite_bad_urls_are_config_errors() {
    for url in [
        "",
        "postgres://localhost/db",
        "sqlite",
        "sqlite://",
        "sqlite:",
        "sqlite://x.db?bogus=1",
        "sqlite://x.db?mode=sideways",
    ] {
        match SqliteStore::open(url).await {
            Err(StoreError::Config(message)) => assert!(!message.is_empty()),
            Err(other) => panic!("{url:?}: expected a configuration error, got {other:?}"),
            Ok(_) => panic!("{url:?}: expected a configuration error, got a store"),
        }
    }
    // A well-formed URL whose directory does not exist is a backend error, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("no/such/dir/x.db").display());
    assert!(matches!(SqliteStore::open(&missing).await, Err(StoreError::Backend(_))));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

// Each test reads `DATABASE_URL` (and says SKIPPED and passes when it is unset, unless `CI` is set:
// then it fails), works in a fresh schema of its own and drops it at the end (best effort: a
// failed test leaves its schema behind, named `wf_test_...`, for a look).

#[cfg(feature = "postgres")]
mod postgres {
    use std::collections::HashSet;
    use std::time::Duration;

    use tokio::sync::broadcast;
    use workflow::store::conformance::{conflict, delete_task, evict, finish_of, set_custom, with_status, Nul};
    use workflow::store::WakeSignal;
    use workflow::{PostgresOptions, PostgresStore};

    use super::*;

    /// `DATABASE_URL`, or `None` (the test says SKIPPED and passes) when it is unset or empty;
    /// under CI (`CI` set) a missing `DATABASE_URL` fails the test instead, so a misconfigured CI
    /// cannot pass without PostgreSQL.
    fn database_url() -> Option<String> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(url),
            _ if std::env::var_os("CI").is_some() => {
                panic!("postgres conformance: DATABASE_URL is not set, and CI is: PostgreSQL tests must run in CI")
            }
            _ => {
                eprintln!("SKIPPED: postgres conformance: DATABASE_URL is not set");
                None
            }
        }
    }

    /// A schema name no other test (in this process or another) uses.
    fn fresh_schema() -> String {
        static COUNT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
        let count = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        format!("wf_test_{}_{nanos}_{count}", std::process::id())
    }

    async fn open(url: &str, schema: &str) -> PostgresStore {
        PostgresStore::open_with(url, PostgresOptions::new().schema(schema).max_connections(4)).await.unwrap()
    }

    async fn drop_schema(store: &PostgresStore) {
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", store.schema());
        if let Err(error) = sqlx::query(&drop).execute(store.pool()).await {
            eprintln!("could not drop schema {}: {error}", store.schema());
        }
        store.close().await;
    }

    /// Makes the store reject any journal record named [`POISON`], through a trigger added behind
    /// its back, so a batch can be made to fail midway.
    async fn arm_poison(store: &PostgresStore) {
        sqlx::query(&format!(
            "CREATE FUNCTION conformance_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF NEW.name = '{POISON}' THEN RAISE EXCEPTION 'poisoned by the conformance suite'; END IF; \
             RETURN NEW; END $$"
        ))
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "CREATE TRIGGER conformance_poison BEFORE INSERT OR UPDATE ON journal \
             FOR EACH ROW EXECUTE FUNCTION conformance_poison()",
        )
        .execute(store.pool())
        .await
        .unwrap();
    }

    async fn disarm_poison(store: &PostgresStore) {
        sqlx::query("DROP TRIGGER conformance_poison ON journal").execute(store.pool()).await.unwrap();
        sqlx::query("DROP FUNCTION conformance_poison()").execute(store.pool()).await.unwrap();
    }

    #[tokio::test]
    async fn postgres_store_conforms() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let store = open(&url, &schema).await;
        arm_poison(&store).await;
        conformance::run_all_with(&store, &Options::new().nul(Nul::Refused).poisoned_name(POISON)).await;
        check_rolled_back_event_ids(&store).await;
        disarm_poison(&store).await;
        check_schema_and_settings(&store, &schema).await;
        // It takes leases on the tasks a write queues.
        let leasing = open(&url, &fresh_schema()).await;
        conformance::check_write_leasing(&leasing, true).await;
        drop_schema(&leasing).await;
        let slots = open(&url, &fresh_schema()).await;
        conformance::check_slots(&slots, true).await;
        drop_schema(&slots).await;
        let starts = open(&url, &fresh_schema()).await;
        conformance::check_start_leasing(&starts, true).await;
        drop_schema(&starts).await;
        check_list_plan(&store).await;
        check_claim_indexes(&store).await;
        check_corrupt_rows(&store).await;
        check_corrupt_task_rows(&store).await;
        check_event_rows(&store).await;
        check_purge_rows(&store).await;
        drop_schema(&store).await;
    }

    /// `table`'s row count as the last `ANALYZE` (or vacuum) left it; -1 before the first.
    async fn counted_rows(store: &PostgresStore, table: &str) -> f32 {
        sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = $1::regclass")
            .bind(table)
            .fetch_one(store.pool())
            .await
            .unwrap()
    }

    /// The store analyzes its tables as they grow, so PostgreSQL plans its statements for the
    /// tables as they are (this server runs no autovacuum: without it, they would be planned as
    /// empty for good), and leaves them alone when told to.
    #[tokio::test]
    async fn postgres_analyzes_its_tables_as_they_grow() {
        let Some(url) = database_url() else { return };
        let on = open(&url, &fresh_schema()).await;
        let options = PostgresOptions::new().schema(fresh_schema()).max_connections(4);
        let off = PostgresStore::open_with(&url, options.analyze_as_tables_grow(false)).await.unwrap();
        let autovacuum: String = sqlx::query_scalar("SHOW autovacuum").fetch_one(on.pool()).await.unwrap();
        for store in [&on, &off] {
            assert_eq!(counted_rows(store, "journal").await, -1.0, "a fresh table was analyzed");
            store.write(&[create(instance("grow/a", "grow_wf", 1))]).await.unwrap();
            for batch in 0..12 {
                let puts: Vec<WriteOp> =
                    (batch * 100..(batch + 1) * 100).map(|seq| put(record("grow/a", 0, seq))).collect();
                store.write(&puts).await.unwrap();
            }
        }
        crate::support::wait_until("the store to analyze its tables", || async {
            counted_rows(&on, "journal").await >= 1_000.0
        })
        .await;
        if autovacuum == "off" {
            assert_eq!(counted_rows(&off, "journal").await, -1.0, "analyzed with analyze_as_tables_grow(false)");
        }
        drop_schema(&on).await;
        drop_schema(&off).await;
    }

    /// Whether another transaction could lock instance `id` at once (it takes the lock and lets
    /// it go), or someone holds it.
    async fn lockable(store: &PostgresStore, id: &str) -> bool {
        let mut probe = store.pool().begin().await.unwrap();
        let locked = sqlx::query("SELECT 1 FROM instances WHERE id = $1 FOR UPDATE NOWAIT")
            .bind(id)
            .execute(&mut *probe)
            .await
            .is_ok();
        probe.rollback().await.unwrap();
        locked
    }

    /// A watch and a batch's fence take their instances' row locks in id order, whatever order
    /// the rows lie in: held up at `b`, each holds `a` and not yet `c`. Two statements that locked
    /// in the order their plans read (a watch beside a runtime's commits did) deadlocked, and
    /// PostgreSQL broke each deadlock after a second by failing one of them.
    #[tokio::test]
    async fn postgres_locks_instances_in_id_order() {
        let Some(url) = database_url() else { return };
        let store = Arc::new(open(&url, &fresh_schema()).await);
        // Written one by one, in reverse, so a plan that reads the table in its physical order
        // meets `c` first.
        for id in ["lock/c", "lock/b", "lock/a"] {
            let owned = InstanceRecord {
                owner: Some("w".to_owned()),
                lease_until: Some(i64::MAX / 2),
                status: RuntimeStatus::Running,
                ..instance(id, "lock_wf", 1)
            };
            store.write(&[create(owned)]).await.unwrap();
        }
        let ids: Vec<String> = ["lock/c", "lock/b", "lock/a"].map(String::from).to_vec();
        let fence = ids.iter().map(|id| WriteOp::AssertOwner { id: id.clone(), owner: "w".to_owned() });
        let mut fenced = fence.collect::<Vec<_>>();
        fenced.push(WriteOp::SetStatus { id: "lock/a".to_owned(), status: RuntimeStatus::Running, updated_at: 2 });
        for what in ["watch", "fence"] {
            let mut holder = store.pool().begin().await.unwrap();
            sqlx::query("SELECT 1 FROM instances WHERE id = 'lock/b' FOR UPDATE").execute(&mut *holder).await.unwrap();
            let (store2, ids2, fenced2) = (store.clone(), ids.clone(), fenced.clone());
            let waiting = tokio::spawn(async move {
                if what == "watch" {
                    store2.watch(&ids2).await.map(|_| ())
                } else {
                    store2.write(&fenced2).await.map(|_| ())
                }
            });
            crate::support::wait_until(&format!("the {what} to lock lock/a and wait for lock/b"), || async {
                !lockable(&store, "lock/a").await
            })
            .await;
            assert!(lockable(&store, "lock/c").await, "the {what} locked lock/c before lock/b");
            holder.rollback().await.unwrap();
            waiting.await.unwrap().unwrap();
        }
        let watched: Vec<bool> =
            sqlx::query_scalar("SELECT watched FROM instances ORDER BY id").fetch_all(store.pool()).await.unwrap();
        assert_eq!(watched, [true, true, true]);
        drop_schema(&store).await;
    }

    /// What the trait cannot show: a purge leaves no row of the instance in any table (consumed
    /// events included), and an assertion on a status the engine cannot have written is a corrupt
    /// row.
    async fn check_purge_rows(store: &PostgresStore) {
        let id = "pgpurge/a";
        store
            .write(&[
                create(instance(id, "pgpurge_wf", 1)),
                put(record(id, 0, 0)),
                put(record(id, 3, 0)),
                add_event(id, "used", "1", 2),
                add_event(id, "kept", "2", 3),
                enqueue(task(id, 0, 0, "pgpurge_act", 1, 1)),
                enqueue(task(id, 1, 0, "pgpurge_act", 1, 1)),
            ])
            .await
            .unwrap();
        let used = store.events(id).await.unwrap()[0].event_id;
        store.write(&[consume(id, used, 0, 1)]).await.unwrap();
        // A debounce key pointing at it goes with it.
        sqlx::query("INSERT INTO debounces (workflow, key, instance_id) VALUES ('pgpurge_wf', 'k', $1)")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        let count = || async {
            let mut counts = Vec::new();
            for sql in [
                "SELECT count(*) FROM instances WHERE id = $1",
                "SELECT count(*) FROM journal WHERE instance_id = $1",
                "SELECT count(*) FROM events WHERE instance_id = $1",
                "SELECT count(*) FROM activity_tasks WHERE instance_id = $1",
                "SELECT count(*) FROM debounces WHERE instance_id = $1",
            ] {
                counts.push(sqlx::query_scalar::<_, i64>(sql).bind(id).fetch_one(store.pool()).await.unwrap());
            }
            counts
        };
        assert_eq!(count().await, [1, 2, 2, 2, 1]);
        store.write(&[purge(id)]).await.unwrap();
        assert_eq!(count().await, [0, 0, 0, 0, 0]);

        store.write(&[create(instance(id, "pgpurge_wf", 1))]).await.unwrap();
        sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = $1")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        match store.write(&[assert_status(id, &RuntimeStatus::ALL)]).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("Exploded"), "{message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        store.write(&[purge(id)]).await.unwrap();
    }

    /// A rolled-back batch leaves no event behind and no wake-up; its ids are skipped, not reused,
    /// and later ids still increase. (The poison must be armed.)
    async fn check_rolled_back_event_ids(store: &PostgresStore) {
        let id = "pgroll/a";
        store.write(&[create(instance(id, "pgroll_wf", 1)), add_event(id, "before", "1", 5)]).await.unwrap();
        let before = store.events(id).await.unwrap()[0].event_id;
        let poisoned = JournalRecord { name: POISON.into(), ..record(id, 0, 0) };
        let result =
            store.write(&[add_event(id, "lost", "2", 6), add_event(id, "lost too", "3", 7), put(poisoned)]).await;
        assert!(result.is_err(), "{result:?}");
        assert_eq!(get(store, id).await.wake_at, Some(5), "the wake-up was rolled back");
        store.write(&[add_event(id, "after", "4", 8)]).await.unwrap();
        let events = store.events(id).await.unwrap();
        assert_eq!(event_names(&events), ["before", "after"]);
        assert!(events[1].event_id > before + 1, "the rolled-back ids are skipped: {events:?}");
    }

    /// A list page (list order, after a keyset) can be read from the (created_at, id) index as a
    /// range, without a sort; a page of one status from the (status, created_at, id) index, and a
    /// page of several as a merge of a page of each, without a sort either. (Asked with sequential
    /// and bitmap scans and sorts priced out: on a table this small the planner would rightly read
    /// it all, or the few rows of a status and sort them; priced out, a sort still comes when no
    /// index can serve the order, which is what this checks. The store
    /// has analyzed this table, whose instances are mostly Pending or Running: a page of those
    /// may rightly be read off the (created_at, id) index instead, filtered, still in order, so
    /// the pages asked for here are of the rarer statuses a status filter exists to find.)
    /// The ready and due sets a claim reads are partial indexes of unowned instances only, so a
    /// claim never reads past the instances running in workers (with them in the ready set's
    /// index, 10,000 held in memory made each claim read 10,000 rows; bench W14).
    async fn check_claim_indexes(store: &PostgresStore) {
        for index in ["instances_ready", "instances_due"] {
            let definition: String = sqlx::query_scalar(
                "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1",
            )
            .bind(index)
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert!(definition.contains("(owner IS NULL)"), "{definition}");
        }
        // What a start lease probes for a backlog of its workflow (or key): its unowned ready ones.
        let waiting: String = sqlx::query_scalar(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = 'instances_waiting'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        assert!(
            waiting.contains("(workflow, concurrency_key, created_at)") && waiting.contains("(owner IS NULL)"),
            "{waiting}"
        );
    }

    async fn check_list_plan(store: &PostgresStore) {
        let mut tx = store.pool().begin().await.unwrap();
        for off in ["enable_seqscan", "enable_bitmapscan", "enable_sort"] {
            sqlx::query(&format!("SET LOCAL {off} = off")).execute(&mut *tx).await.unwrap();
        }
        let status_page = |status: &str| {
            format!(
                "SELECT id, created_at FROM instances WHERE status = '{status}' AND (created_at, id) > (1, 'a') \
                 ORDER BY created_at, id LIMIT 10"
            )
        };
        let several = format!(
            "SELECT id, created_at FROM ({}) AS s0 UNION ALL SELECT id, created_at FROM ({}) AS s1 \
             ORDER BY created_at, id LIMIT 10",
            status_page("Suspended"),
            status_page("Terminated")
        );
        for (page, index, uses) in [
            ("SELECT id FROM instances ORDER BY created_at, id LIMIT 10".to_owned(), "instances_created", 1),
            (
                "SELECT id FROM instances WHERE (created_at, id) > (1, 'a') ORDER BY created_at, id LIMIT 10"
                    .to_owned(),
                "instances_created",
                1,
            ),
            (status_page("Suspended"), "instances_status", 1),
            (several, "instances_status", 1),
        ] {
            let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {page}")).fetch_all(&mut *tx).await.unwrap();
            let plan = plan.join("; ");
            assert!(plan.matches(&format!(" using {index} ")).count() >= uses, "{page}: {plan}");
            let branches = page.matches("UNION").count() + 1;
            assert_eq!(plan.matches(" using instances_").count(), branches, "a branch reads no index: {plan}");
            assert!(!plan.contains("Sort  "), "{page} sorts: {plan}");
        }
        tx.rollback().await.unwrap();
    }

    /// The tables and sqlx's bookkeeping are in the store's schema, every connection searches only
    /// it, and commits stay synchronous.
    async fn check_schema_and_settings(store: &PostgresStore, schema: &str) {
        assert_eq!(store.schema(), schema);
        let pool = store.pool();
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 ORDER BY 1",
        )
        .bind(schema)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(
            tables,
            [
                "_sqlx_migrations",
                "activity_slots",
                "activity_starts",
                "activity_tasks",
                "debounces",
                "events",
                "instances",
                "journal",
                "probe",
                "schedules",
                "workers",
                "workflow_starts"
            ]
        );
        let (current, search_path, synchronous_commit): (String, String, String) = sqlx::query_as(
            "SELECT current_schema(), current_setting('search_path'), current_setting('synchronous_commit')",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        assert_eq!((current.as_str(), search_path.trim_matches('"')), (schema, schema));
        assert_eq!(synchronous_commit, "on");
    }

    /// Rows damaged behind the store's back read as `Corrupt` errors naming the row.
    async fn check_corrupt_rows(store: &PostgresStore) {
        let id = "corrupt/a";
        let pool = store.pool();
        store.write(&[create(instance(id, "corrupt_wf", 1)), put(record(id, 0, 3))]).await.unwrap();
        sqlx::query("UPDATE instances SET status = 'Exploded' WHERE id = $1").bind(id).execute(pool).await.unwrap();
        match store.instance(id).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("Exploded"), "message names the row: {message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        for generation in [-1, 1_i64 << 32] {
            sqlx::query("UPDATE instances SET status = 'Pending', generation = $2 WHERE id = $1")
                .bind(id)
                .bind(generation)
                .execute(pool)
                .await
                .unwrap();
            assert!(
                matches!(store.instance(id).await, Err(StoreError::Corrupt(m)) if m.contains(id) && m.contains("generation"))
            );
        }
        sqlx::query("UPDATE journal SET status = 'Sideways' WHERE instance_id = $1")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        match store.journal(id, 0).await {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(id) && message.contains("seq 3"), "message names the record: {message}")
            }
            other => panic!("expected a corrupt-row error, got {other:?}"),
        }
        sqlx::query("UPDATE journal SET status = 'Completed', attempt = -1 WHERE instance_id = $1")
            .bind(id)
            .execute(pool)
            .await
            .unwrap();
        assert!(matches!(store.journal(id, 0).await, Err(StoreError::Corrupt(m)) if m.contains("attempt")));
        for group in [-1, 1_i64 << 32] {
            sqlx::query("UPDATE journal SET attempt = 1, parallel_group = $2 WHERE instance_id = $1")
                .bind(id)
                .bind(group)
                .execute(pool)
                .await
                .unwrap();
            assert!(matches!(store.journal(id, 0).await, Err(StoreError::Corrupt(m)) if m.contains("parallel_group")));
        }
        sqlx::query("DELETE FROM instances WHERE id = $1").bind(id).execute(pool).await.unwrap();
        sqlx::query("DELETE FROM journal WHERE instance_id = $1").bind(id).execute(pool).await.unwrap();
    }

    /// Task rows damaged behind the store's back read as `Corrupt` errors naming the task and
    /// column: out-of-range numbers, outcome columns set only in part; a claim sets them aside.
    async fn check_corrupt_task_rows(store: &PostgresStore) {
        let id = "corrupt/task";
        store.write(&[enqueue(task(id, 0, 3, "corrupt_act", 1, 1))]).await.unwrap();
        store.claim_tasks("corrupt-w", &names(&["corrupt_act"]), 1, 100, 1).await.unwrap();
        assert!(store.complete_task("corrupt-w", id, 0, 3, 1, &outcome(true, "1", 2)).await.unwrap());
        for (sql, column) in [
            ("UPDATE activity_tasks SET attempt = -1 WHERE instance_id = $1", "attempt"),
            ("UPDATE activity_tasks SET attempt = 4294967296 WHERE instance_id = $1", "attempt"),
            ("UPDATE activity_tasks SET attempt = 1, seq = -3 WHERE instance_id = $1", "seq"),
            ("UPDATE activity_tasks SET seq = 3, finished_at = NULL WHERE instance_id = $1", "finished_at"),
        ] {
            sqlx::query(sql).bind(id).execute(store.pool()).await.unwrap();
            match store.finished_tasks(&names(&[id])).await {
                Err(StoreError::Corrupt(message)) => {
                    assert!(message.contains(id) && message.contains(column), "{message}")
                }
                other => panic!("{sql}: expected a corrupt-row error, got {other:?}"),
            }
        }
        // Without its outcome text the task counts as unfinished, and a claim reads the damaged row.
        sqlx::query("UPDATE activity_tasks SET finished_at = 2, outcome = NULL WHERE instance_id = $1")
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
        assert!(store.finished_tasks(&names(&[id])).await.unwrap().is_empty());
        // A claim that takes the damaged row sets it aside (unowned, visible again later) instead
        // of failing, so it strands none of the healthy tasks claimed with it.
        let claimed = store.claim_tasks("corrupt-w2", &names(&["corrupt_act"]), 200, 300, 1).await.unwrap();
        assert!(claimed.is_empty(), "{claimed:?}");
        let (owner, visible_at): (Option<String>, i64) =
            sqlx::query_as("SELECT owner, visible_at FROM activity_tasks WHERE instance_id = $1")
                .bind(id)
                .fetch_one(store.pool())
                .await
                .unwrap();
        assert_eq!((owner, visible_at), (None, 1_200));
        sqlx::query("DELETE FROM activity_tasks WHERE instance_id = $1").bind(id).execute(store.pool()).await.unwrap();
    }

    /// What the trait cannot show: a restart deletes the consumed event rows (those consumed after
    /// it stay, consumed), and an event keeps its first consumer.
    async fn check_event_rows(store: &PostgresStore) {
        let id = "pgev/a";
        store.write(&[create(instance(id, "pgev_wf", 1)), add_event(id, "e1", "1", 10)]).await.unwrap();
        let e1 = store.events(id).await.unwrap()[0].event_id;
        store.write(&[consume(id, e1, 0, 3), add_event(id, "e2", "2", 11)]).await.unwrap();
        let e2 = store.events(id).await.unwrap()[0].event_id;
        store
            .write(&[
                continue_as_new(id, "\"next\"", 1, 12),
                consume(id, e2, 1, 0),
                consume(id, e2, 1, 9),
                add_event(id, "e3", "3", 13),
            ])
            .await
            .unwrap();
        let e3 = store.events(id).await.unwrap()[0].event_id;
        let rows: Vec<(i64, Option<i64>, Option<i64>)> = sqlx::query_as(
            "SELECT seq, consumed_generation, consumed_by_seq FROM events WHERE instance_id = $1 ORDER BY seq",
        )
        .bind(id)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            rows,
            vec![(e2, Some(1), Some(0)), (e3, None, None)],
            "e1 went with the restart; e2's first consumer"
        );
        assert!(e1 < e2 && e2 < e3);
    }

    /// Claimers on separate stores (separate pools, as separate processes would have) never take
    /// the same instance, and together take every one.
    #[tokio::test]
    async fn postgres_concurrent_stores_never_claim_the_same_instance() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let mut stores = Vec::new();
        for _ in 0..8 {
            stores.push(open(&url, &schema).await);
        }
        let wf = "pgclaim_wf";
        let ops: Vec<WriteOp> = (0..300).map(|i| create(instance(&format!("pgclaim/{i:03}"), wf, i % 17))).collect();
        stores[0].write(&ops).await.unwrap();
        let workflows = names(&[wf]);
        let claims = futures::future::join_all(stores.iter().enumerate().map(|(n, store)| {
            let workflows = &workflows;
            async move {
                let worker = format!("pgclaim-worker-{n}");
                let mut taken = Vec::new();
                loop {
                    let claimed = store.claim(&worker, workflows, 100, 1_000, 7).await.unwrap();
                    if claimed.is_empty() {
                        return (worker, taken);
                    }
                    assert!(claimed.iter().all(|r| r.owner.as_deref() == Some(worker.as_str())));
                    taken.extend(claimed.into_iter().map(|r| r.id));
                }
            }
        }))
        .await;
        let mut seen = HashSet::new();
        for (worker, taken) in &claims {
            for id in taken {
                assert!(seen.insert(id.clone()), "{id} claimed twice");
                assert_eq!(get(&stores[0], id).await.owner.as_deref(), Some(worker.as_str()));
            }
        }
        assert_eq!(seen.len(), 300);
        assert!(claims.iter().filter(|(_, taken)| !taken.is_empty()).count() > 1, "the claimers did race");

        // Leases lapse for every store alike: a second round takes them all again, once each.
        let again = futures::future::join_all(
            stores.iter().map(|store| store.claim("pgclaim-late", &workflows, 1_001, 2_000, 1_000)),
        )
        .await;
        let mut retaken = HashSet::new();
        for claim in again {
            for record in claim.unwrap() {
                assert!(retaken.insert(record.id), "claimed twice after the leases lapsed");
            }
        }
        assert_eq!(retaken, seen);
        for store in &stores[1..] {
            store.close().await;
        }
        drop_schema(&stores[0]).await;
    }

    /// Batches asserting a status, on separate stores (as separate processes would be), racing to
    /// change it: the assertion holds until the commit, so exactly one goes through and every
    /// other one is refused with the status the winner left (or `None` once it purged), with no
    /// deadlock between them.
    #[tokio::test]
    async fn postgres_racing_assertions_let_one_through() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let mut stores = Vec::new();
        for _ in 0..6 {
            stores.push(open(&url, &schema).await);
        }
        let (wf, x) = ("pgrace_wf", "pgrace/x");
        stores[0].write(&[create(with_status(instance(x, wf, 1), RuntimeStatus::Running))]).await.unwrap();

        let finish = |n: usize| {
            vec![
                assert_status(x, &[RuntimeStatus::Running]),
                WriteOp::Finish {
                    id: x.into(),
                    status: RuntimeStatus::Terminated,
                    output: None,
                    error: Some(format!("\"by {n}\"")),
                    updated_at: 10,
                },
            ]
        };
        let results = futures::future::join_all(
            stores.iter().enumerate().map(|(n, store)| async move { store.write(&finish(n)).await }),
        )
        .await;
        let winners: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_ok()).map(|(n, _)| n).collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        for result in results.into_iter().filter(|r| r.is_err()) {
            assert_eq!(conflict(result), (x.into(), Some(RuntimeStatus::Terminated)));
        }
        assert_eq!(get(&stores[0], x).await.error, Some(format!("\"by {}\"", winners[0])));

        let purge_x = [assert_status(x, &[RuntimeStatus::Terminated]), purge(x), put(record(x, 0, 0))];
        let results = futures::future::join_all(stores.iter().map(|store| store.write(&purge_x))).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        for result in results.into_iter().filter(|r| r.is_err()) {
            assert_eq!(conflict(result), (x.into(), None));
        }
        assert_eq!(stores[0].instance(x).await.unwrap(), None);
        assert_eq!(stores[0].journal(x, 0).await.unwrap().len(), 1, "written once, after the purge");
        for store in &stores[1..] {
            store.close().await;
        }
        drop_schema(&stores[0]).await;
    }

    async fn next_signal(signals: &mut broadcast::Receiver<WakeSignal>) -> WakeSignal {
        tokio::time::timeout(Duration::from_secs(10), signals.recv())
            .await
            .expect("no wake signal within 10 s")
            .expect("the wake-signal channel failed")
    }

    /// Commits on one store wake another store on the same schema (another process, in effect),
    /// once per signal per batch, in commit order; a rolled-back batch sends nothing, nor do
    /// batches that make nothing runnable, nor the finish of an instance nobody watches; a store
    /// on another schema hears none of it.
    #[tokio::test]
    async fn postgres_wake_signals_reach_other_stores() {
        let Some(url) = database_url() else { return };
        let (schema, other_schema) = (fresh_schema(), fresh_schema());
        let writer = open(&url, &schema).await;
        let listener = open(&url, &schema).await;
        let other = open(&url, &other_schema).await;
        let mut signals = listener.wake_signals().expect("PostgreSQL sends wake signals");
        let mut own = writer.wake_signals().unwrap();
        let mut elsewhere = other.wake_signals().unwrap();
        let (wf, x, y, q, u) = ("pgwake_wf", "pgwake/x", "pgwake/y", "pgwake/q", "pgwake/u");

        // y, q and u are started by a runtime that runs them (under its lease: no signal, nobody
        // watches them yet); y and q are then evicted, left for a claim. x is started by a client
        // without a runtime: left for a claim, and watched from its creation.
        let leased = |id: &str, created_at: i64| InstanceRecord {
            owner: Some("pgwake-runner".to_owned()),
            lease_until: Some(1_000_000),
            ..instance(id, wf, created_at)
        };
        writer.write(&[create(leased(y, 2)), create(leased(q, 3)), create(leased(u, 4))]).await.unwrap();
        writer.write(&[create(instance(x, wf, 1)), evict(y, 2), evict(q, 3)]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable);
        assert_eq!(next_signal(&mut own).await, WakeSignal::Runnable, "the writing store hears itself too");

        writer
            .write(&[
                add_event(x, "a", "1", 3),
                put(record(x, 0, 0)),
                add_event(y, "b", "2", 4),
                add_event(x, "c", "3", 5),
            ])
            .await
            .unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(x.into()));
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(y.into()));

        // Nothing runnable: no signal. (The next signal is the next batch's.)
        writer.write(&[put(record(x, 0, 1)), set_custom(x, Some("1"), 6)]).await.unwrap();
        assert_eq!(writer.release_leases("pgwake-nobody").await.unwrap(), 0);
        // Rolled back: no signal.
        arm_poison(&writer).await;
        let poisoned = JournalRecord { name: POISON.into(), ..record(y, 0, 0) };
        assert!(writer.write(&[add_event(y, "lost", "0", 7), put(poisoned)]).await.is_err());
        disarm_poison(&writer).await;

        let finish = finish_of(y);
        // Watched (by a waiter on the listening store), its finish is signalled.
        let watched = listener.watch(&[y.into(), "pgwake/missing".into()]).await.unwrap();
        assert_eq!(watched.len(), 1, "a watch reads the instances that exist");
        assert_eq!((watched[0].id.as_str(), watched[0].status), (y, RuntimeStatus::Pending));
        // The mark held y, unclaimed, for a moment (a claim meanwhile skipped it): it wakes claimers.
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable);
        writer.write(&[finish.clone(), evict(x, 50), finish]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable);
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Finished(y.into()));
        let done = listener.watch(&[y.into()]).await.unwrap().pop().expect("y exists");
        assert_eq!(
            (done.status, done.output.as_deref()),
            (RuntimeStatus::Completed, Some("1")),
            "a watch reads the end"
        );
        // A batch that takes the transaction path (it adds an event) signals a watched finish too.
        listener.watch(&[q.into()]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable, "q waits for a claim too");
        let finish_q = finish_of(q);
        writer.write(&[add_event(q, "late", "1", 9), finish_q]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(q.into()));
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Finished(q.into()));

        assert_eq!(ids(&writer.claim("pgwake-w", &names(&[wf]), 50, 1_000, 10).await.unwrap()), [x]);
        assert_eq!(writer.release_leases("pgwake-w").await.unwrap(), 1);
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Runnable, "releasing a lease wakes claimers");

        other.write(&[add_event("pgwake/z", "z", "1", 1)]).await.unwrap();
        assert_eq!(next_signal(&mut elsewhere).await, WakeSignal::Event("pgwake/z".into()));
        // Created without an owner, x was watched from its creation: its finish is signalled.
        writer.write(&[finish_of(x)]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Finished(x.into()));
        // Nobody watches u: its finish sends nothing (the next signal is the next batch's).
        writer.write(&[finish_of(u)]).await.unwrap();
        writer.write(&[add_event(x, "last", "1", 9)]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::Event(x.into()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(signals.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "nothing else came");
        assert!(matches!(elsewhere.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "no cross-talk");

        drop_schema(&other).await;
        listener.close().await;
        drop_schema(&writer).await;
    }

    /// Queueing a task (and releasing a task's lease) signals `TaskQueued`, a stored outcome
    /// `TaskDone` of its instance, to every store on the schema; a queue rolled back or a
    /// completion refused sends nothing.
    #[tokio::test]
    async fn postgres_task_signals_reach_other_stores() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let writer = open(&url, &schema).await;
        let listener = open(&url, &schema).await;
        let mut signals = listener.wake_signals().unwrap();
        let (act, x) = ("pgtask_act", "pgtask/x");

        writer.write(&[enqueue(task(x, 0, 0, act, 1, 1)), enqueue(task(x, 0, 1, act, 1, 1))]).await.unwrap();
        assert_eq!(next_signal(&mut signals).await, WakeSignal::TaskQueued, "once per batch");
        assert_eq!(writer.claim_tasks("pgtask-w", &names(&[act]), 1, 100, 10).await.unwrap().len(), 2);

        arm_poison(&writer).await;
        let poisoned = JournalRecord { name: POISON.into(), ..record(x, 0, 0) };
        assert!(writer.write(&[enqueue(task(x, 0, 2, act, 1, 1)), put(poisoned)]).await.is_err());
        disarm_poison(&writer).await;
        let done = outcome(true, "1", 2);
        assert!(!writer.complete_task("pgtask-other", x, 0, 0, 1, &done).await.unwrap());
        assert!(writer.complete_task("pgtask-w", x, 0, 0, 1, &done).await.unwrap());
        assert_eq!(next_signal(&mut signals).await, WakeSignal::TaskDone(x.into()), "nothing before it");

        assert_eq!(writer.release_leases("pgtask-w").await.unwrap(), 1);
        assert_eq!(next_signal(&mut signals).await, WakeSignal::TaskQueued, "a released task is claimable");
        assert_eq!(writer.release_leases("pgtask-w").await.unwrap(), 0);
        writer.write(&[delete_task(x, 0, 1)]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(matches!(signals.try_recv(), Err(broadcast::error::TryRecvError::Empty)), "nothing else came");
        listener.close().await;
        drop_schema(&writer).await;
    }

    /// Everything committed is there after reconnecting; migrations already applied are not
    /// applied again; event ids keep increasing.
    #[tokio::test]
    async fn postgres_reopen_keeps_everything() {
        let Some(url) = database_url() else { return };
        let schema = fresh_schema();
        let created = InstanceRecord {
            status: RuntimeStatus::Running,
            output: Some(r#""ok""#.into()),
            generation: 2,
            parent_id: Some("reopen/parent".into()),
            custom_status: Some("\"cs\"".into()),
            ..instance("reopen/a", "reopen_wf", 7)
        };
        let journal = vec![
            record("reopen/a", 2, 0),
            JournalRecord { status: RecordStatus::Retrying, due_at: Some(9), ..record("reopen/a", 2, 1) },
        ];
        let kept = {
            let store = open(&url, &schema).await;
            let ops: Vec<WriteOp> =
                std::iter::once(create(created.clone())).chain(journal.iter().cloned().map(put)).collect();
            store.write(&ops).await.unwrap();
            store.write(&[add_event("reopen/a", "used", "1", 8), add_event("reopen/a", "kept", "2", 9)]).await.unwrap();
            let events = store.events("reopen/a").await.unwrap();
            store.write(&[consume("reopen/a", events[0].event_id, 2, 5)]).await.unwrap();
            store.claim("reopen-w", &names(&["reopen_wf"]), 10, 5_000, 1).await.unwrap();
            store.probe_commit().await.unwrap();
            events[1].event_id
            // Dropped without `close`, as a process that stops would.
        };
        let store = open(&url, &schema).await;
        let claimed = InstanceRecord { owner: Some("reopen-w".into()), lease_until: Some(5_000), ..created };
        assert_eq!(get(&store, "reopen/a").await, claimed);
        assert_eq!(store.journal("reopen/a", 2).await.unwrap(), journal);
        assert_eq!(event_names(&store.events("reopen/a").await.unwrap()), ["kept"]);
        assert_eq!(store.stats(), Default::default(), "counters are per process");
        let migrations: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations").fetch_one(store.pool()).await.unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/workflow-sqlx/migrations/postgres"))
            .unwrap()
            .count();
        assert_eq!(migrations, files as i64, "each migration applied once");
        store.write(&[add_event("reopen/a", "after", "3", 10)]).await.unwrap();
        let after = store.events("reopen/a").await.unwrap();
        assert_eq!(event_names(&after), ["kept", "after"]);
        assert!(after[1].event_id > kept, "ids keep counting up across reconnecting");
        let _shared: Arc<dyn Store> = open(&url, &schema).await.into();
        drop_schema(&store).await;
    }

    /// URLs that are not PostgreSQL URLs and schema names that are not plain identifiers are
    /// configuration errors, found before connecting.
    #[tokio::test]
    async fn postgres_bad_configuration_is_a_config_error() {
        for url in ["", "sqlite://x.db", "postgres", "mysql://localhost/db", "postgres://h:notaport/db"] {
            match PostgresStore::open(url).await {
                Err(StoreError::Config(message)) => assert!(!message.is_empty()),
                Err(other) => panic!("{url:?}: expected a configuration error, got {other:?}"),
                Ok(_) => panic!("{url:?}: expected a configuration error, got a store"),
            }
        }
        let url = "postgres://nobody@127.0.0.1:1/none";
        for schema in ["", "1abc", "a-b", "x\"; DROP SCHEMA public; --", "pg_catalog", &"s".repeat(64)] {
            match PostgresStore::open_with(url, PostgresOptions::new().schema(schema)).await {
                Err(StoreError::Config(message)) => assert!(message.contains("schema"), "{message}"),
                Err(other) => panic!("{schema:?}: expected a configuration error, got {other:?}"),
                Ok(_) => panic!("{schema:?}: expected a configuration error, got a store"),
            }
        }
        match PostgresStore::open("postgres://u:hunter2@h:notaport/db").await {
            Err(StoreError::Config(message)) => assert!(!message.contains("hunter2"), "the password shows: {message}"),
            other => panic!("expected a configuration error, got {:?}", other.map(|_| ())),
        }
    }
}
