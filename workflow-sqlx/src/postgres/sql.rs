//! The SQL text of the store's statements: a batch's multi-row statements (each taking its rows as
//! bound arrays), its checks, the claims, and the reads and lease updates of the [`Store`] calls.
//!
//! [`Store`]: workflow_core::store::Store

use std::sync::LazyLock;

use super::signals::MAX_NOTICE;
use crate::shared::rows::{EVENT_COLUMNS, INSTANCE_COLUMNS, JOURNAL_COLUMNS, TASK_COLUMNS};
use crate::shared::Claimable;

/// The rows a batch's checks read, locked until the commit so the checks hold: those only fenced
/// (`$1`) FOR SHARE, so a concurrent claim (FOR UPDATE SKIP LOCKED) cannot move them meanwhile
/// while the owner's other batches check them too; those whose status is asserted (`$2`) FOR
/// UPDATE, since the batch asserting a status changes it (or deletes the row): two batches that
/// shared the lock would deadlock upgrading it, where this one waits for the other's commit and
/// then reads the row it left.
///
/// Each set is locked in id order, as every statement that waits for several instances' row
/// locks takes them (see [`WATCH`]): two such statements then never hold a row each that the
/// other waits for.
pub(super) const CHECK: &str =
    "WITH fenced AS (SELECT id, owner, status FROM instances WHERE id = ANY($1) ORDER BY id FOR SHARE), \
     asserted AS (SELECT id, owner, status FROM instances WHERE id = ANY($2) ORDER BY id FOR UPDATE) \
     SELECT id, owner, status FROM fenced UNION ALL SELECT id, owner, status FROM asserted";

/// Creates instances, each watched from its creation or not (`$18`, see [`WATCH`]): one left for
/// a claim or assigned to another worker is (`bind_instances`), since who starts an instance it
/// does not run itself (a client without a runtime, above all) most likely waits for it
/// elsewhere, and its waiter's watch then writes nothing and holds no row that the claim or the
/// runner's commits want (those waits cost a W1 round through such a client about a fifth of its
/// time). A runtime's own starts, under its lease, are watched only when someone asks.
pub(super) const CREATE: &str = "INSERT INTO instances \
     (id, workflow, status, input, output, error, generation, created_at, updated_at, owner, lease_until, \
     parent_id, custom_status, wake_at, priority, concurrency_key, trace_context, watched) \
     SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], \
     $8::int8[], $9::int8[], $10::text[], $11::int8[], $12::text[], $13::text[], $14::int8[], $15::int8[], \
     $16::text[], $17::text[], $18::bool[]) \
     ON CONFLICT (id) DO NOTHING RETURNING id";

/// The registered workers of `$1` (owners) and the workflows each takes, their rows locked until
/// the commit (see `starts::decide_assigns`), in owner order, as every such lock is taken.
pub(super) const LOCK_TAKERS: &str =
    "SELECT owner, takes FROM workers WHERE owner = ANY($1::text[]) ORDER BY owner FOR KEY SHARE";

/// The unfinished instances worker `$1` holds, by id (through `instances_owner`).
pub(super) const HELD_INSTANCES: &str =
    "SELECT id FROM instances WHERE owner = $1 AND status IN ('Pending', 'Running') ORDER BY id";

pub(super) const PUT: &str = "INSERT INTO journal \
     (instance_id, generation, seq, kind, name, status, input, payload, attempt, due_at, recorded_at, parallel_group) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::text[], $7::text[], \
     $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::int8[]) \
     ON CONFLICT (instance_id, generation, seq) DO UPDATE SET \
     kind = EXCLUDED.kind, name = EXCLUDED.name, status = EXCLUDED.status, input = EXCLUDED.input, \
     payload = EXCLUDED.payload, attempt = EXCLUDED.attempt, due_at = EXCLUDED.due_at, \
     recorded_at = EXCLUDED.recorded_at, parallel_group = EXCLUDED.parallel_group";

/// Only an event of the named instance, and only its first consumer is kept.
pub(super) const CONSUME: &str = "UPDATE events AS e SET consumed_generation = v.generation, consumed_by_seq = v.seq \
     FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS v (instance_id, event_id, generation, seq) \
     WHERE e.seq = v.event_id AND e.instance_id = v.instance_id AND e.consumed_by_seq IS NULL";

pub(super) const SET_STATUS: &str = "UPDATE instances AS i SET status = v.status, updated_at = v.updated_at \
     FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS v (id, status, updated_at) WHERE i.id = v.id";

pub(super) const FINISH_INSTANCES: &str =
    "UPDATE instances AS i SET status = v.status, output = v.output, error = v.error, \
     updated_at = v.updated_at, completed_at = v.completed_at, owner = NULL, lease_until = NULL \
     FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[]) \
     AS v (id, status, output, error, updated_at, completed_at) WHERE i.id = v.id";

/// Finishes the instances that exist and deletes the tasks of every named one (existing or not);
/// returns the ids of the finished ones someone watches.
pub(super) static FINISH: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH finished AS ({FINISH_INSTANCES} RETURNING i.id, i.watched), \
         deleted AS (DELETE FROM activity_tasks WHERE instance_id = ANY($1::text[])) \
         SELECT id FROM finished WHERE watched"
    )
});

/// The `Finished` signals of the instances a statement's `finished` CTE (returning `id` and
/// `watched`) finished, for those watched; `$1` is the channel. The row lock the finish takes
/// orders it with [`Store::watch`]'s update of the same row, so a watch committed first is seen
/// here, and a watch after it sees the finish. An id too long for a `NOTIFY` sends nothing (see
/// [`notice`]).
///
/// [`Store::watch`]: workflow_core::store::Store::watch
/// [`notice`]: super::signals::notice
pub(super) static FINISHED_NOTICE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "(SELECT count(pg_notify($1, 'f:' || id)) FROM finished WHERE watched AND octet_length(id) < {})",
        MAX_NOTICE - 2
    )
});

/// [`Store::watch`]'s mark, on the instances of `$1` still running and not yet marked (so a
/// repeated watch writes nothing). It commits before the instances are read again, in a statement
/// of its own: a finish that held a row meanwhile has committed by then, and the read (a later
/// snapshot) sees it; a finish after the mark sees the mark and signals.
///
/// While the mark holds its rows, a claim skips them (`SKIP LOCKED`) and, finding less than it
/// asked for, waits for a signal: so a mark of instances that wait to be claimed signals on `$2`
/// that they are runnable (a client without a runtime watches what it has just started).
///
/// The rows are locked in id order before the update (an `UPDATE` locks in whatever order its
/// plan reads), as a batch's fence locks its instances ([`CHECK`], and the one-statement batch's
/// fence): marks and commits that wait for each other's rows then queue instead of deadlocking,
/// which PostgreSQL would break only after `deadlock_timeout` (1 s) by failing one of them.
///
/// [`Store::watch`]: workflow_core::store::Store::watch
pub(super) const WATCH: &str = "WITH picked AS (SELECT id FROM instances \
     WHERE id = ANY($1) AND NOT watched AND status NOT IN ('Completed', 'Failed', 'Terminated') \
     ORDER BY id FOR NO KEY UPDATE), \
     marked AS (UPDATE instances AS i SET watched = true FROM picked WHERE i.id = picked.id RETURNING i.owner) \
     SELECT count(pg_notify($2, 'r')) FROM (SELECT 1 FROM marked WHERE owner IS NULL LIMIT 1) AS claimable";

/// Queues tasks afresh, or replaces a task of an earlier attempt only. One row per key (the plan
/// reduces a layer's task ops to one change per key): one statement cannot upsert a key twice.
pub(super) const ENQUEUE_TASK: &str = "INSERT INTO activity_tasks \
     (instance_id, generation, seq, name, input, attempt, start_to_close_ms, heartbeat_timeout_ms, visible_at, \
     concurrency_key, priority, trace_context) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::int8[], $7::int8[], \
     $8::int8[], $9::int8[], $10::text[], $11::int8[], $12::text[]) \
     ON CONFLICT (instance_id, generation, seq) DO UPDATE SET \
     name = EXCLUDED.name, input = EXCLUDED.input, attempt = EXCLUDED.attempt, \
     start_to_close_ms = EXCLUDED.start_to_close_ms, heartbeat_timeout_ms = EXCLUDED.heartbeat_timeout_ms, \
     visible_at = EXCLUDED.visible_at, concurrency_key = EXCLUDED.concurrency_key, \
     priority = EXCLUDED.priority, trace_context = EXCLUDED.trace_context, owner = NULL, lease_until = NULL, outcome_succeeded = NULL, \
     outcome = NULL, finished_at = NULL \
     WHERE activity_tasks.attempt < EXCLUDED.attempt";

pub(super) const DELETE_TASK: &str = "DELETE FROM activity_tasks AS t \
     USING UNNEST($1::text[], $2::int8[], $3::int8[]) AS v (instance_id, generation, seq) \
     WHERE t.instance_id = v.instance_id AND t.generation = v.generation AND t.seq = v.seq";

pub(super) const ADD_EVENT: &str = "INSERT INTO events (seq, instance_id, name, payload, created_at, payload_bytes) \
     SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[])";

/// The advisory lock class of inbox checks (two-key locks, which never meet the one-key locks of
/// liveness marks).
const INBOX_LOCK_CLASS: i32 = 0x5746_4942;

/// Locks the inboxes of `$1` (sorted, so two batches never wait for each other in a cycle) until
/// the transaction ends: a batch checking an inbox's room waits for one that checked it before
/// to commit, and its count (a later statement, so a later snapshot) sees what that one added.
pub(super) static LOCK_INBOXES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT count(pg_advisory_xact_lock({INBOX_LOCK_CLASS}, h)) FROM \
         (SELECT DISTINCT hashtext(id) AS h FROM UNNEST($1::text[]) AS id ORDER BY h) AS keys"
    )
});

/// What the inboxes of `$1` hold: their unconsumed events and payload bytes (from
/// `events_unconsumed`).
pub(super) const COUNT_INBOXES: &str = "SELECT instance_id, count(*), COALESCE(sum(payload_bytes), 0)::int8 \
     FROM events WHERE instance_id = ANY($1) AND consumed_by_seq IS NULL GROUP BY instance_id";

/// A batch's event ids, taken up front.
pub(super) const EVENT_IDS: &str = "SELECT nextval('event_ids') FROM generate_series(1, $1)";

pub(super) const SET_WAKE: &str = "UPDATE instances AS i SET wake_at = v.wake_at \
     FROM UNNEST($1::text[], $2::int8[]) AS v (id, wake_at) WHERE i.id = v.id";

pub(super) const EVICT: &str = "UPDATE instances AS i SET owner = NULL, lease_until = NULL, wake_at = v.wake_at \
     FROM UNNEST($1::text[], $2::int8[]) AS v (id, wake_at) WHERE i.id = v.id";

pub(super) const SET_CUSTOM_STATUS: &str =
    "UPDATE instances AS i SET custom_status = v.custom_status, updated_at = v.updated_at \
     FROM UNNEST($1::text[], $2::text[], $3::int8[]) AS v (id, custom_status, updated_at) WHERE i.id = v.id";

/// Restarts the instances that exist and deletes their older journal and tasks and their consumed
/// events, in one statement: the deletes see the rows earlier statements of the batch wrote.
pub(super) const CONTINUE_AS_NEW: &str = "WITH continued AS (\
     UPDATE instances AS i SET input = v.input, generation = v.generation, status = 'Running', output = NULL, \
     error = NULL, updated_at = v.updated_at, completed_at = NULL \
     FROM UNNEST($1::text[], $2::text[], $3::int8[], $4::int8[]) AS v (id, input, generation, updated_at) \
     WHERE i.id = v.id RETURNING i.id, i.generation), \
     old_records AS (DELETE FROM journal AS j USING continued AS c \
     WHERE j.instance_id = c.id AND j.generation < c.generation), \
     consumed AS (DELETE FROM events AS e USING continued AS c \
     WHERE e.instance_id = c.id AND e.consumed_by_seq IS NOT NULL), \
     old_tasks AS (DELETE FROM activity_tasks AS t USING continued AS c \
     WHERE t.instance_id = c.id AND t.generation < c.generation) \
     SELECT count(*) FROM continued";

/// Deletes the named instances and every row of theirs: the journal of every generation, the
/// events (consumed or not), the tasks and the debounce keys pointing at them, in one statement (each delete sees the rows earlier
/// statements of the batch wrote).
pub(super) const PURGE: &str = "WITH instance_rows AS (DELETE FROM instances WHERE id = ANY($1::text[])), \
     journal_rows AS (DELETE FROM journal WHERE instance_id = ANY($1::text[])), \
     event_rows AS (DELETE FROM events WHERE instance_id = ANY($1::text[])), \
     debounce_rows AS (DELETE FROM debounces WHERE instance_id = ANY($1::text[])) \
     DELETE FROM activity_tasks WHERE instance_id = ANY($1::text[])";

/// The claim: the first `$5` runnable instances of the workflows `$3` at `$4` (highest priority
/// first, then oldest first), locked so that no
/// concurrent claim takes them (it skips them instead of waiting), taken for worker `$1` until `$2`.
///
/// Candidates come from three sets, each a range of an index: unowned instances ready now (no
/// wake-up, `instances_ready`, already in claim order: priority, then age), unowned instances
/// whose wake-up has come (`instances_due`, by wake-up time), and owned ones whose lease lapsed
/// (`instances_owned`, the lapsed range of each workflow's leases). An instance waiting for a
/// later wake-up is in none. The due set is taken in wake-up order, the order of its index:
/// ordering it by creation would sort every due instance on each claim (a backlog of 10,000
/// woken instances made each claim cost milliseconds). The instances running in workers are in
/// no set's range: when the ready set's index held them, a claim read past all of them (10,000
/// held in memory made each claim read 10,000 rows). The picks of the sets are then served in
/// priority order, oldest first within a priority.
pub(super) static CLAIM: LazyLock<String> = LazyLock::new(|| claim(Claimable::Any));

/// [`CLAIM`] of the starts (Pending instances) only: a rate-limited workflow's claim.
pub(super) static CLAIM_STARTS: LazyLock<String> = LazyLock::new(|| claim(Claimable::Starts));

/// [`CLAIM`] of the resumptions (Running instances) only: a rate-limited workflow's claim.
pub(super) static CLAIM_RESUMPTIONS: LazyLock<String> = LazyLock::new(|| claim(Claimable::Resumptions));

/// The end of every instance claim: takes the rows of its `picked` (`id`, and `status` and
/// `updated_at` as the claim found them, read under its row locks) for worker `$1` until `$2`,
/// and makes the Pending ones Running as of `$4` (the claim is their start). Returns each as
/// found, with the claim's owner and lease (see `Store::claim`).
///
/// The rows are also named by primary key (`id = ANY(ARRAY(...))`), which says nothing the join
/// does not: joined to `picked` alone, the planner hashes `picked` and reads the whole table to
/// probe it on every claim until the table is large (5,000 instances: 1.2 ms, 15,000: 2.5-4.4 ms
/// of a claim of 128 that took 4.5 ms by the primary key).
fn take_picked() -> String {
    let returned = qualified("i", INSTANCE_COLUMNS)
        .replace("i.status", "picked.status")
        .replace("i.updated_at", "picked.updated_at");
    format!(
        "UPDATE instances AS i SET owner = $1, lease_until = $2, wake_at = NULL, status = 'Running', \
         updated_at = CASE WHEN i.status = 'Pending' THEN $4 ELSE i.updated_at END \
         FROM picked WHERE i.id = picked.id AND i.id = ANY(ARRAY(SELECT id FROM picked)) RETURNING {returned}"
    )
}

/// The claim of `which` instances (see [`CLAIM`]).
fn claim(which: Claimable) -> String {
    let which = which.condition();
    let claimable = "status IN ('Pending', 'Running')";
    let columns = "id, created_at, priority, status, updated_at";
    format!(
        "WITH ready AS (SELECT {columns} FROM instances \
         WHERE {claimable} AND wake_at IS NULL AND owner IS NULL AND workflow = ANY($3){which} \
         ORDER BY priority DESC, created_at, id LIMIT $5 FOR UPDATE SKIP LOCKED), \
         due AS (SELECT {columns} FROM instances \
         WHERE {claimable} AND wake_at <= $4 AND owner IS NULL AND workflow = ANY($3){which} \
         ORDER BY wake_at, created_at, id LIMIT $5 FOR UPDATE SKIP LOCKED), \
         lapsed AS (SELECT {columns} FROM instances \
         WHERE workflow = ANY($3) AND owner IS NOT NULL AND (lease_until IS NULL OR lease_until < $4) \
         AND {claimable} AND (wake_at IS NULL OR wake_at <= $4){which} \
         ORDER BY lease_until NULLS FIRST, created_at, id LIMIT $5 FOR UPDATE SKIP LOCKED), \
         picked AS (SELECT {columns} FROM ready UNION ALL SELECT {columns} FROM due \
         UNION ALL SELECT {columns} FROM lapsed ORDER BY priority DESC, created_at, id LIMIT $5) {}",
        take_picked()
    )
}

/// Plans every statement of a capped task claim's transaction for its own parameters and the
/// table as it is now. A claim's statements are prepared once per connection; a generic plan
/// settled on while the task table was small (a scan of a few rows) stays cached as the backlog
/// grows, and a capped claim behind 100,000 queued tasks then read them all (118 ms instead of
/// 0.4 ms). (Not for the capped instance claim: there, a custom plan on a table without
/// statistics yet read the whole ready set, and the generic plan reads its index's front.)
pub(super) const CUSTOM_PLANS: &str = "SET LOCAL plan_cache_mode = force_custom_plan";

/// Takes the transaction's advisory lock on workflow `$1`'s concurrency cap: every capped claim of
/// that workflow takes it before it counts and claims (see `claims::claim_capped`).
pub(super) const LOCK_CAP: &str = "SELECT pg_advisory_xact_lock(hashtextextended('workflow-cap:' || $1::text, 0))";

/// Forgets workflow `$1`'s starts at or before `$2` (a rate's period ago).
pub(super) const FORGET_WORKFLOW_STARTS: &str = "DELETE FROM workflow_starts WHERE workflow = $1 AND started_at <= $2";

/// Workflow `$1`'s starts within the period (what remains after `FORGET_WORKFLOW_STARTS`).
pub(super) const COUNT_WORKFLOW_STARTS: &str =
    "SELECT coalesce(sum(starts), 0)::int8 FROM workflow_starts WHERE workflow = $1";

/// Records `$3` starts of workflow `$1` with concurrency key `$4` at `$2`.
pub(super) const RECORD_WORKFLOW_STARTS: &str =
    "INSERT INTO workflow_starts (workflow, started_at, starts, concurrency_key) VALUES ($1, $2, $3, $4)";

/// Workflow `$1`'s starts within the period, per concurrency key (a keyed rate's count).
pub(super) const COUNT_WORKFLOW_STARTS_PER_KEY: &str =
    "SELECT concurrency_key, coalesce(sum(starts), 0)::int8 FROM workflow_starts WHERE workflow = $1 \
     GROUP BY concurrency_key";

/// How many instances of workflow `$1` hold a lease at `$2`, per concurrency key (what a keyed
/// cap counts).
pub(super) const COUNT_RUNNING_PER_KEY: &str = "SELECT concurrency_key, count(*) FROM instances \
     WHERE workflow = $1 AND owner IS NOT NULL AND lease_until >= $2 AND (status || '') IN ('Pending', 'Running') \
     GROUP BY concurrency_key";

/// The concurrency keys of workflow `$1` with instances that may still run, by skipping along
/// `instances_keyed` (one index probe per key).
pub(super) const WORKFLOW_KEYS: &str = "WITH RECURSIVE keys(k) AS (\
     SELECT (SELECT concurrency_key FROM instances WHERE workflow = $1 AND status IN ('Pending', 'Running') \
     ORDER BY concurrency_key LIMIT 1) \
     UNION ALL SELECT (SELECT concurrency_key FROM instances WHERE workflow = $1 \
     AND status IN ('Pending', 'Running') AND concurrency_key > keys.k ORDER BY concurrency_key LIMIT 1) \
     FROM keys WHERE keys.k IS NOT NULL) \
     SELECT k FROM keys WHERE k IS NOT NULL";

/// [`CLAIM`] of one concurrency key `$6` of one workflow (`$3`, an array of one name), off the
/// front of `instances_keyed`: a keyed cap's claim.
pub(super) static CLAIM_KEY: LazyLock<String> = LazyLock::new(|| claim_key(Claimable::Any));

/// [`CLAIM_KEY`] of the starts (Pending instances) only.
pub(super) static CLAIM_KEY_STARTS: LazyLock<String> = LazyLock::new(|| claim_key(Claimable::Starts));

/// [`CLAIM_KEY`] of the resumptions (Running instances) only.
pub(super) static CLAIM_KEY_RESUMPTIONS: LazyLock<String> = LazyLock::new(|| claim_key(Claimable::Resumptions));

/// The claim of `which` instances of one key (see [`CLAIM_KEY`]).
fn claim_key(which: Claimable) -> String {
    format!(
        "WITH picked AS (SELECT id, status, updated_at FROM instances \
         WHERE workflow = ANY($3) AND concurrency_key = $6 AND status IN ('Pending', 'Running'){} \
         AND (wake_at IS NULL OR wake_at <= $4) AND (owner IS NULL OR lease_until IS NULL OR lease_until < $4) \
         ORDER BY priority DESC, created_at, id LIMIT $5 FOR UPDATE SKIP LOCKED) {}",
        which.condition(),
        take_picked()
    )
}

/// Serializes the claims of capped activity `$1` (held to the end of the claim's transaction).
pub(super) const LOCK_TASK_CAP: &str = "SELECT pg_advisory_xact_lock(hashtextextended('activity-cap:' || $1::text, 0))";

/// How many of activity `$1`'s attempts run at `$2`, per concurrency key (what its cap counts):
/// its tasks that hold a lease, read off the partial index of owned tasks, and the workers'
/// live slots, each counted as a running task; one round trip for both.
pub(super) const COUNT_HOLDING: &str = "SELECT concurrency_key, sum(n)::int8 FROM ( \
     SELECT concurrency_key, count(*) AS n FROM activity_tasks \
     WHERE name = $1 AND outcome IS NULL AND owner IS NOT NULL AND lease_until >= $2 GROUP BY concurrency_key \
     UNION ALL SELECT concurrency_key, sum(slots)::int8 FROM activity_slots \
     WHERE name = $1 AND lease_until >= $2 GROUP BY concurrency_key) AS held GROUP BY concurrency_key";

/// Which of the keys `$2` of activity `$1` have a task claimable at `$3`.
pub(super) const KEYS_WAITING: &str = "SELECT DISTINCT concurrency_key FROM activity_tasks WHERE name = $1 \
     AND concurrency_key = ANY($2) AND outcome IS NULL AND visible_at <= $3 AND (owner IS NULL OR lease_until < $3)";

/// Adds `$4` slots to owner `$3`'s of activity `$1` and key `$2`, which last until `$5` (a count
/// lapsed at `$6` starts again from none).
pub(super) const ADD_SLOTS: &str = "INSERT INTO activity_slots (name, concurrency_key, owner, slots, lease_until) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name, concurrency_key, owner) DO UPDATE SET \
     slots = (CASE WHEN activity_slots.lease_until >= $6 THEN activity_slots.slots ELSE 0 END) + EXCLUDED.slots, \
     lease_until = EXCLUDED.lease_until";

/// Gives back `$4` of owner `$3`'s slots of activity `$1` and key `$2`.
pub(super) const GIVE_BACK_SLOTS: &str = "UPDATE activity_slots SET slots = greatest(slots - $4, 0) \
     WHERE name = $1 AND concurrency_key = $2 AND owner = $3";

/// Forgets the slots of activity `$1` that lapsed before `$2`.
pub(super) const FORGET_LAPSED_SLOTS: &str = "DELETE FROM activity_slots WHERE name = $1 AND lease_until < $2";

/// Forgets owner `$1`'s slot rows with none left.
pub(super) const FORGET_EMPTY_SLOTS: &str = "DELETE FROM activity_slots WHERE owner = $1 AND slots = 0";

/// Forgets activity `$1`'s claims at or before `$2` (a rate's period ago).
pub(super) const FORGET_STARTS: &str = "DELETE FROM activity_starts WHERE name = $1 AND started_at <= $2";

/// Activity `$1`'s claims within the period (what remains after `FORGET_STARTS`), per key.
pub(super) const COUNT_STARTS: &str =
    "SELECT concurrency_key, count(*) FROM activity_starts WHERE name = $1 GROUP BY concurrency_key";

/// Takes for worker `$1` until `$2` the tasks (`$3`..`$8`: instance, generation, seq, attempt,
/// activity, concurrency key) still queued unowned and unfinished at that attempt under that key
/// (see `Store::write_leasing`); returns the taken ones' keys and attempts.
pub(super) const TAKE_LEASES: &str = "UPDATE activity_tasks AS t SET owner = $1, lease_until = $2 \
     FROM UNNEST($3::text[], $4::int8[], $5::int8[], $6::int8[], $7::text[], $8::text[]) \
     AS v (instance_id, generation, seq, attempt, name, concurrency_key) \
     WHERE t.instance_id = v.instance_id AND t.generation = v.generation AND t.seq = v.seq \
     AND t.attempt = v.attempt AND t.name = v.name AND t.concurrency_key = v.concurrency_key \
     AND t.outcome IS NULL AND t.owner IS NULL \
     RETURNING t.instance_id, t.generation, t.seq, t.attempt";

/// Records claims of activity `$1` with the keys `$2` at `$3`.
pub(super) const RECORD_STARTS: &str = "INSERT INTO activity_starts (name, concurrency_key, started_at) \
     SELECT $1, k, $3 FROM UNNEST($2::text[]) AS k";

/// The concurrency keys of activity `$1`'s unfinished tasks: one index probe per key (a loose
/// index scan of `activity_tasks_keyed`), never a read of the backlog.
pub(super) const TASK_KEYS: &str = "WITH RECURSIVE keys(k) AS (\
     SELECT (SELECT concurrency_key FROM activity_tasks WHERE name = $1 AND outcome IS NULL \
     ORDER BY concurrency_key LIMIT 1) \
     UNION ALL SELECT (SELECT concurrency_key FROM activity_tasks WHERE name = $1 AND outcome IS NULL \
     AND concurrency_key > keys.k ORDER BY concurrency_key LIMIT 1) FROM keys WHERE keys.k IS NOT NULL) \
     SELECT k FROM keys WHERE k IS NOT NULL";

/// The first `$4` tasks (highest priority, then oldest) of activity `$1` with concurrency key `$2`
/// claimable at `$3`, off the front of `activity_tasks_keyed`; the priority negated, so the
/// picks of every key sort into claim order.
pub(super) const PICK_KEYED: &str = "SELECT -priority, visible_at, instance_id, generation, seq FROM activity_tasks \
     WHERE name = $1 AND concurrency_key = $2 AND outcome IS NULL AND visible_at <= $3 \
     AND (owner IS NULL OR lease_until IS NULL OR lease_until < $3) \
     ORDER BY priority DESC, visible_at, instance_id, generation, seq LIMIT $4";

/// Takes the picked tasks (`$3`..`$5`) for worker `$1` until `$2`, those still claimable at `$6`.
pub(super) static TAKE_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE activity_tasks AS t SET owner = $1, lease_until = $2 \
         FROM UNNEST($3::text[], $4::int8[], $5::int8[]) AS v (instance_id, generation, seq) \
         WHERE t.instance_id = v.instance_id AND t.generation = v.generation AND t.seq = v.seq \
         AND t.outcome IS NULL AND (t.owner IS NULL OR t.lease_until IS NULL OR t.lease_until < $6) \
         RETURNING {}",
        qualified("t", TASK_COLUMNS)
    )
});

/// How many instances of workflow `$1` hold a lease at `$2` (what its cap counts), read off the
/// partial index of owned instances (`instances_owned`). The status test is written as an
/// expression so no status index applies: without statistics (a table just filled), the planner
/// otherwise reads the status index's whole Pending range, the backlog queued behind the cap.
pub(super) const COUNT_RUNNING: &str = "SELECT count(*) FROM instances WHERE workflow = $1 AND owner IS NOT NULL \
     AND lease_until >= $2 AND (status || '') IN ('Pending', 'Running')";

/// [`COUNT_RUNNING`] per concurrency key, of the keys `$3` only (a keyed workflow's start leases).
pub(super) const COUNT_RUNNING_OF_KEYS: &str = "SELECT concurrency_key, count(*) FROM instances \
     WHERE workflow = $1 AND owner IS NOT NULL AND lease_until >= $2 AND (status || '') IN ('Pending', 'Running') \
     AND concurrency_key = ANY($3) GROUP BY concurrency_key";

/// Workflow `$1`'s starts within the period per concurrency key, of the keys `$2` only (a keyed
/// workflow's start leases).
pub(super) const COUNT_WORKFLOW_STARTS_OF_KEYS: &str = "SELECT concurrency_key, coalesce(sum(starts), 0)::int8 \
     FROM workflow_starts WHERE workflow = $1 AND concurrency_key = ANY($2) GROUP BY concurrency_key";

/// Records starts of workflow `$1` at `$2`: `$3[i]` under concurrency key `$4[i]` (none where 0).
pub(super) const RECORD_WORKFLOW_STARTS_OF_KEYS: &str = "INSERT INTO workflow_starts \
     (workflow, started_at, starts, concurrency_key) SELECT $1, $2, n, k FROM unnest($3::int8[], $4::text[]) AS u(n, k) \
     WHERE n > 0";

/// Whether an instance of workflow `$1` waits unowned for a claim, ready or due at `$2`: a probe
/// of the ready ones by workflow (`instances_waiting`) and of the due ones (`instances_due`, the
/// claim's range). Each is the first row in its index's order, not an `EXISTS`: for an `EXISTS`
/// (or a first row in an order the filter makes constant), the planner expects a match early in
/// a sequential scan of a table full of the workflow's finished instances, and reads all of them
/// (26 ms beside 100,000; the probe takes 0.03-0.09 ms).
const WAITING: &str = "(SELECT id FROM instances \
     WHERE status IN ('Pending', 'Running') AND wake_at IS NULL AND owner IS NULL AND workflow = $1 \
     ORDER BY concurrency_key, created_at LIMIT 1) IS NOT NULL \
     OR (SELECT id FROM instances WHERE status IN ('Pending', 'Running') AND wake_at IS NOT NULL \
     AND owner IS NULL AND wake_at <= $2 AND workflow = $1 ORDER BY wake_at LIMIT 1) IS NOT NULL";

/// [`WAITING`]'s answer: whether a start lease of workflow `$1` at `$2` would overtake a backlog.
pub(super) static OTHERS_WAIT: LazyLock<String> = LazyLock::new(|| format!("SELECT {WAITING}"));

/// Whether workflow `$1` has an instance a claim at `$2` could take: unowned and ready, unowned
/// and due ([`WAITING`]), or owned under a lease that lapsed (one before `$2`, or none at all),
/// each a probe of the first row of a range of its index (the lapsed ranges of
/// `instances_owned`), without a lock: what a capped claim asks before it takes its workflow's
/// lock and counts. Planned for its parameters each time (not prepared): a generic plan reads the
/// lapsed set off every lease of the workflow (20,000 held: 6 ms, 0.04 ms planned for them).
pub(super) static CLAIMABLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {WAITING} \
         OR (SELECT id FROM instances WHERE workflow = $1 AND owner IS NOT NULL \
         AND (lease_until IS NULL OR lease_until < $2) AND status IN ('Pending', 'Running') \
         AND (wake_at IS NULL OR wake_at <= $2) ORDER BY lease_until NULLS FIRST, created_at, id LIMIT 1) IS NOT NULL"
    )
});

/// [`OTHERS_WAIT`] per concurrency key: the keys of `$3` under which an instance of workflow `$1`
/// waits, each probed by workflow and key.
pub(super) const KEYS_OTHERS_WAIT_UNDER: &str =
    "SELECT k FROM unnest($3::text[]) AS k WHERE (SELECT id FROM instances \
     WHERE status IN ('Pending', 'Running') AND wake_at IS NULL AND owner IS NULL AND workflow = $1 \
     AND concurrency_key = k ORDER BY created_at LIMIT 1) IS NOT NULL \
     OR (SELECT id FROM instances WHERE status IN ('Pending', 'Running') AND wake_at IS NOT NULL \
     AND owner IS NULL AND wake_at <= $2 AND workflow = $1 AND concurrency_key = k \
     ORDER BY wake_at LIMIT 1) IS NOT NULL";

/// Undoes worker `$2`'s claim of the instance `$1`, whose row did not decode, until `$3` (see
/// `shared::quarantine`), with the status `$4` and update time `$5` the claim found, where they
/// read (a start the claim made Running is Pending again).
pub(super) const SET_ASIDE: &str = "UPDATE instances SET owner = NULL, lease_until = NULL, wake_at = $3, \
     status = coalesce($4, status), updated_at = coalesce($5, updated_at) WHERE id = $1 AND owner = $2";

/// Undoes worker `$4`'s claim of the task (`$1`, `$2`, `$3`), whose row did not decode, until `$5`
/// (see `Quarantine::set_aside_task`).
pub(super) const SET_ASIDE_TASK: &str = "UPDATE activity_tasks SET owner = NULL, lease_until = NULL, visible_at = $5 \
     WHERE instance_id = $1 AND generation = $2 AND seq = $3 AND owner = $4";

/// Fails the instance `$1` claimed by worker `$2`, whose row did not decode, with the stored
/// failure `$3` at `$4`, as a finish does: its tasks deleted, its parent woken (see
/// `shared::quarantine`).
pub(super) const FAIL_DAMAGED: &str = "WITH failed AS (UPDATE instances SET status = 'Failed', error = $3, \
     owner = NULL, lease_until = NULL, wake_at = NULL, updated_at = $4, completed_at = $4 \
     WHERE id = $1 AND owner = $2 RETURNING id, parent_id), \
     tasks AS (DELETE FROM activity_tasks WHERE instance_id IN (SELECT id FROM failed)), \
     parent AS (UPDATE instances SET wake_at = $4 WHERE id IN (SELECT parent_id FROM failed)) \
     SELECT count(*) FROM failed";

/// The task claim: the first `$5` (highest priority, then oldest) unfinished tasks of the
/// activities `$3` visible at `$4`, unowned
/// or with a lapsed lease, locked so that no concurrent claim takes them (it skips them instead of
/// waiting), taken for worker `$1` until `$2`. The outcome test is spelled as in the partial index
/// `activity_tasks_unfinished`, which is already in claim order.
pub(super) static CLAIM_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH picked AS (SELECT instance_id, generation, seq FROM activity_tasks \
         WHERE outcome IS NULL AND visible_at <= $4 AND name = ANY($3) \
         AND (owner IS NULL OR lease_until IS NULL OR lease_until < $4) \
         ORDER BY priority DESC, visible_at, instance_id, generation, seq LIMIT $5 FOR UPDATE SKIP LOCKED) \
         UPDATE activity_tasks AS t SET owner = $1, lease_until = $2 FROM picked \
         WHERE t.instance_id = picked.instance_id AND t.generation = picked.generation AND t.seq = picked.seq \
         RETURNING {}",
        qualified("t", TASK_COLUMNS)
    )
});

pub(super) static FINISHED_TASKS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {TASK_COLUMNS} FROM activity_tasks WHERE instance_id = ANY($1) AND outcome IS NOT NULL \
         ORDER BY instance_id, generation, seq"
    )
});

pub(super) static SELECT_INSTANCE: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = $1"));

/// The instances of `$1`, whose ids lie between `$2` and `$3` (the least and greatest of them).
///
/// The range says nothing the list does not, but it tells the planner what the list cannot: how
/// much of the table the ids span. A batch's ids (claimed together, ended together) were made
/// together, and generated ids sort by creation, so they span the table's newest sliver, which
/// the planner measures off the index itself even beyond its statistics. For a list alone it
/// reckons each id's share of the table, and reads the whole of a table of a few thousand to a
/// hundred thousand rows rather than the index (a claim's journal read: 0.4 ms at 2,000 rows, 8 ms
/// at 18,000, on the critical path of every instance the claim took).
pub(super) static SELECT_INSTANCES: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ANY($1) AND id BETWEEN $2 AND $3"));

/// The journals of the instances of `$1`, whose ids lie between `$2` and `$3`: see
/// [`SELECT_INSTANCES`] for why the range.
pub(super) static SELECT_JOURNALS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE instance_id = ANY($1) AND instance_id BETWEEN $2 AND $3")
});

/// `columns` (a list of column names, as [`INSTANCE_COLUMNS`]) qualified with `table`'s alias.
fn qualified(table: &str, columns: &str) -> String {
    let qualified: Vec<String> = columns.split(", ").map(|column| format!("{table}.{column}")).collect();
    qualified.join(", ")
}

pub(super) static SELECT_JOURNAL: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {JOURNAL_COLUMNS} FROM journal WHERE instance_id = $1 AND generation = $2 ORDER BY seq")
});

/// The unconsumed events of instance `$1` named `$2` (given in ASCII lower case) after id `$3`,
/// at most `$4`: a range of `events_unconsumed`.
pub(super) static SELECT_EVENTS_NAMED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE instance_id = $1 AND lower(name) = $2 AND seq > $3 \
         AND consumed_by_seq IS NULL ORDER BY seq LIMIT $4"
    )
});

/// The first `$2` unconsumed events of each of the instances `$1`, in arrival order within each:
/// one probe of the unconsumed index per instance, however full its inbox.
pub(super) static SELECT_INBOXES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM UNNEST($1::text[]) AS i (id) CROSS JOIN LATERAL \
         (SELECT {EVENT_COLUMNS} FROM events WHERE instance_id = i.id AND consumed_by_seq IS NULL \
         ORDER BY seq LIMIT $2) AS e",
        qualified("e", EVENT_COLUMNS)
    )
});

pub(super) static SELECT_EVENTS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {EVENT_COLUMNS} FROM events WHERE instance_id = $1 AND consumed_by_seq IS NULL ORDER BY seq")
});

/// Sends the signals `$2` on channel `$1`.
pub(super) const NOTIFY: &str = "SELECT pg_notify($1, notice) FROM UNNEST($2::text[]) AS notice";

/// Extends the leases of worker `$1` on the first `$4` of its instances after id `$3` to `$2`;
/// returns how many, and the last id. A renewal goes through a worker's instances a chunk at a
/// time (`instances_owner`, by owner then id, serves each chunk as a range), so no commit of an
/// instance waits long behind it: the row locks of one statement over every held instance were
/// held for as long as it took (2.7 s for 100,000). Each chunk locks its rows in id order, as
/// [`WATCH`] says why, and updates them by primary key (joined to the locked rows instead, the
/// planner read the whole table for each chunk: 42 ms a chunk beside 100,000 rows, 17 ms now).
pub(super) const RENEW_INSTANCE_LEASES: &str =
    "WITH owned AS (SELECT id FROM instances WHERE owner = $1 AND id > $3 ORDER BY id LIMIT $4 \
     FOR NO KEY UPDATE), \
     renewed AS (UPDATE instances SET lease_until = $2 WHERE id = ANY(ARRAY(SELECT id FROM owned)) RETURNING id) \
     SELECT count(*), max(id) FROM renewed";

/// Extends the leases of worker `$1` on its unfinished tasks and its activity slots to `$2`;
/// returns how many.
pub(super) const RENEW_TASK_LEASES: &str =
    "WITH tasks AS (UPDATE activity_tasks SET lease_until = $2 WHERE owner = $1 AND outcome IS NULL RETURNING 1), \
     slots AS (UPDATE activity_slots SET lease_until = $2 WHERE owner = $1 RETURNING 1) \
     SELECT (SELECT count(*) FROM tasks) + (SELECT count(*) FROM slots)";

/// Releases the leases of worker `$1`; returns how many, and sends signal `$3` (Runnable) on
/// channel `$2` if it released an instance and `$4` (TaskQueued) if it released a task. Its
/// instances are locked in id order, as [`WATCH`] says why, then updated by primary key, as
/// [`RENEW_INSTANCE_LEASES`] says why.
pub(super) const RELEASE_LEASES: &str =
    "WITH owned AS (SELECT id FROM instances WHERE owner = $1 ORDER BY id FOR NO KEY UPDATE), \
     instances AS (UPDATE instances SET owner = NULL, lease_until = NULL \
     WHERE id = ANY(ARRAY(SELECT id FROM owned)) RETURNING 1), \
     tasks AS (UPDATE activity_tasks SET owner = NULL, lease_until = NULL \
     WHERE owner = $1 AND outcome IS NULL RETURNING 1), \
     slots AS (DELETE FROM activity_slots WHERE owner = $1), \
     counted AS (SELECT (SELECT count(*) FROM instances) AS instances, (SELECT count(*) FROM tasks) AS tasks) \
     SELECT instances + tasks, CASE WHEN instances > 0 THEN pg_notify($2, $3) END, \
     CASE WHEN tasks > 0 THEN pg_notify($2, $4) END FROM counted";

/// Stores outcome (`$6`, `$7`, `$8`) of task (`$1`, `$2`, `$3`) attempt `$4`, if worker `$5` holds it
/// and it has none; returns how many it stored, and sends signal `$10` (if not NULL) on channel
/// `$9` if it stored one.
pub(super) const COMPLETE_TASK: &str =
    "WITH done AS (UPDATE activity_tasks SET outcome_succeeded = $6, outcome = $7, finished_at = $8 \
     WHERE instance_id = $1 AND generation = $2 AND seq = $3 AND attempt = $4 AND owner = $5 \
     AND outcome IS NULL RETURNING 1), \
     counted AS (SELECT count(*) AS done FROM done) \
     SELECT done, CASE WHEN done > 0 AND $10::text IS NOT NULL THEN pg_notify($9, $10) END \
     FROM counted";
/// Stores many task outcomes (`$1`..`$7`, one row each) for worker `$8`, each only if that worker
/// holds its task for that attempt and it has none yet; returns the stored ones' keys and sends
/// each stored task's signal (`$10`, NULL for none) on channel `$9` in the same statement. Rows
/// another transaction has locked are skipped, not waited for: a journal commit deleting some of
/// them while this waits on others would deadlock. `STILL_OPEN` tells the skipped from the gone.
pub(super) const COMPLETE_TASKS: &str = "WITH v AS (SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], \
     $4::int8[], $5::bool[], $6::text[], $7::int8[], $10::text[]) \
     AS v (instance_id, generation, seq, attempt, succeeded, outcome, finished_at, notice)), \
     open AS (SELECT t.instance_id, t.generation, t.seq, v.attempt, v.succeeded, v.outcome, v.finished_at, v.notice \
     FROM activity_tasks AS t JOIN v ON t.instance_id = v.instance_id AND t.generation = v.generation \
     AND t.seq = v.seq AND t.attempt = v.attempt WHERE t.owner = $8 AND t.outcome IS NULL \
     FOR UPDATE OF t SKIP LOCKED), \
     done AS (UPDATE activity_tasks AS t SET outcome_succeeded = o.succeeded, outcome = o.outcome, \
     finished_at = o.finished_at FROM open AS o WHERE t.instance_id = o.instance_id \
     AND t.generation = o.generation AND t.seq = o.seq \
     RETURNING t.instance_id, t.generation, t.seq, t.attempt, o.notice) \
     SELECT instance_id, generation, seq, attempt, (CASE WHEN notice IS NOT NULL THEN pg_notify($9, notice) END) IS NULL \
     FROM done";

/// Which of the tasks (`$1`..`$4`, with the attempt) worker `$5` still holds without an outcome.
pub(super) const STILL_OPEN: &str = "SELECT t.instance_id, t.generation, t.seq, t.attempt FROM activity_tasks AS t \
     JOIN UNNEST($1::text[], $2::int8[], $3::int8[], $4::int8[]) AS v (instance_id, generation, seq, attempt) \
     ON t.instance_id = v.instance_id AND t.generation = v.generation AND t.seq = v.seq AND t.attempt = v.attempt \
     WHERE t.owner = $5 AND t.outcome IS NULL";
pub(super) const PROBE: &str = "INSERT INTO probe (id, commits) VALUES (1, 1) \
     ON CONFLICT (id) DO UPDATE SET commits = probe.commits + 1";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_columns() {
        assert_eq!(qualified("i", "id, workflow"), "i.id, i.workflow");
    }
}
