//! The store conformance suite: the checks every [`Store`] must pass, so the in-memory store (the
//! reference) and the database stores cannot drift apart. Behind the `conformance` feature of
//! `workflow-core` (and of the `workflow` facade, as `workflow::store::conformance`).
//!
//! A store written outside this repository runs the whole suite from one test:
//!
//! ```no_run
//! # async fn demo() {
//! use workflow_core::store::conformance;
//!
//! let store = workflow_core::MemoryStore::new(); // your store, opened on an empty database
//! conformance::run_all(&store).await;
//! # }
//! ```
//!
//! or [`run_all_with`] and [`Options`] when the store refuses NUL characters in text, or can be
//! armed to fail a batch midway (for the atomicity check). Each `check_*` function is public too,
//! so a store can run (or debug) one topic at a time.
//!
//! # How a check fails
//!
//! By panicking: every check asserts (`assert!`, `assert_eq!`, and `unwrap` on the store's
//! results), so a failing check fails the test that runs it, with a message that says what was
//! expected. Nothing is returned.
//!
//! # What the suite expects of the store it is given
//!
//! - An empty store, used by nothing else while the suite runs. Each check uses instance ids,
//!   workflow, activity and worker names of its own (`create/...`, `claimf_wf`, ...), so all of
//!   them run one after the other on one store, in any order, but none twice: a second run finds
//!   its instances already created.
//! - The event ids the store assigns increase by one per event while no batch fails (the
//!   differential check, [`check_matches_reference`], compares them with the in-memory store's,
//!   shifted by the first one it sees).
//! - A multi-threaded Tokio runtime if the store needs one; the checks themselves only await the
//!   store (a few run several store calls concurrently on one task).
//!
//! The builders and helpers the checks are written with are public as well (for a store's own,
//! backend-specific checks); they do nothing but build values and call the [`Store`] trait.

mod batches;
mod claims;
mod counts;
mod events;
mod instances;
mod journal;
mod keys;
mod leases;
mod list;
mod purge;
mod reference;
mod schedules;
mod slots;
mod starts;
mod tasks;

pub use batches::{
    check_assert_status, check_batch_in_order, check_batch_is_atomic, check_new_ops_in_order, check_stats,
};
pub use claims::{
    check_claim_caps, check_claim_filters, check_claim_keyed, check_claim_order_and_limit, check_claim_priority,
    check_claim_rate, check_claim_wake, check_concurrent_claims, check_debounce, check_evict, check_set_wake,
};
pub use counts::{check_queue_depths, check_status_counts};
pub use events::{check_events, check_events_named, check_inbox_heads, check_inbox_room, check_inboxes, room};
pub use instances::{
    check_continue_as_new, check_create_and_read, check_custom_status, check_duplicate_create, check_payloads_verbatim,
    check_set_status_and_finish,
};
pub use journal::{check_journal_order_and_generations, check_journal_upsert, check_parallel_group};
pub use keys::check_list_keys;
pub use leases::{check_fencing, check_liveness, check_release, check_renew};
pub use list::check_list;
pub use purge::{check_purge, check_purge_in_batch};
pub use reference::check_matches_reference;
pub use schedules::check_schedules;
pub use slots::check_slots;
pub use starts::check_start_leasing;
pub use tasks::{
    check_tasks, check_tasks_caps, check_tasks_claim_filters, check_tasks_complete, check_tasks_complete_many,
    check_tasks_concurrent_claims, check_tasks_continue_as_new, check_tasks_enqueue_and_claim,
    check_tasks_enqueue_attempts, check_tasks_finish, check_tasks_in_batch, check_tasks_leases, check_tasks_payloads,
    check_tasks_priority, check_tasks_rate, check_write_leasing,
};

use crate::store::{
    EventRecord, InstanceRecord, JournalRecord, RecordStatus, RuntimeStatus, StepKind, Store, StoreError, TaskOutcome,
    TaskRecord, WriteOp, WriteOutcome,
};

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// Whether a store keeps a NUL character in text like any other character, or refuses the batch
/// that holds one. PostgreSQL's text types cannot hold a NUL, so its store refuses such a batch up
/// front, before it touches the database; payloads are JSON, and JSON text never holds a raw NUL
/// (it is written `\u0000`), so the engine never hands one over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Nul {
    /// A NUL character is stored and read back like any other (the in-memory store, SQLite).
    #[default]
    Kept,
    /// A batch (or a task completion) holding a NUL character anywhere in its text fails with a
    /// [`StoreError::Backend`] whose message contains `NUL`, and writes nothing (PostgreSQL).
    Refused,
}

/// What [`run_all_with`] needs to know about the store beyond the [`Store`] trait.
/// `Options::default()` (or [`Options::new`]) is what [`run_all`] uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// How the store treats NUL characters in text. Default: [`Nul::Kept`].
    pub nul: Nul,
    /// A journal record name the caller has armed the store to reject (each backend its own way,
    /// e.g. with a trigger added behind the store's back), so a batch can be made to fail midway.
    /// When set, [`run_all_with`] ends with [`check_batch_is_atomic`]; the store must reject the
    /// name for the whole run (no other check writes a record of that name). Default: `None`,
    /// the atomicity check is skipped (a store with no op that can fail midway, like the
    /// in-memory store, has no way to be poisoned).
    pub poisoned_name: Option<String>,
}

impl Options {
    /// The defaults: NUL characters kept, no poisoned name (see the fields).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets how the store treats NUL characters in text.
    pub fn nul(mut self, nul: Nul) -> Self {
        self.nul = nul;
        self
    }

    /// Sets the journal record name the store is armed to reject, which turns on the atomicity
    /// check.
    pub fn poisoned_name(mut self, name: impl Into<String>) -> Self {
        self.poisoned_name = Some(name.into());
        self
    }
}

/// Runs every check every store must pass, with the default [`Options`] (NUL characters kept, no
/// atomicity check). Panics on the first failing check.
pub async fn run_all(store: &dyn Store) {
    run_all_with(store, &Options::default()).await;
}

/// Runs every check every store must pass, for a store that is as `options` say: NUL characters
/// kept or refused, and, when [`Options::poisoned_name`] is set, the atomicity check last. Panics
/// on the first failing check.
pub async fn run_all_with(store: &dyn Store, options: &Options) {
    let nul = options.nul;
    check_create_and_read(store).await;
    check_duplicate_create(store).await;
    check_journal_upsert(store).await;
    check_journal_order_and_generations(store).await;
    check_set_status_and_finish(store).await;
    check_claim_filters(store).await;
    check_claim_order_and_limit(store).await;
    check_concurrent_claims(store).await;
    check_renew(store).await;
    check_release(store).await;
    check_batch_in_order(store).await;
    check_stats(store).await;
    check_payloads_verbatim(store, nul).await;
    check_events(store).await;
    check_events_named(store).await;
    check_inbox_heads(store).await;
    check_inboxes(store).await;
    check_inbox_room(store).await;
    check_claim_wake(store).await;
    check_claim_priority(store).await;
    check_claim_caps(store).await;
    check_claim_rate(store).await;
    check_claim_keyed(store).await;
    check_debounce(store).await;
    check_set_wake(store).await;
    check_evict(store).await;
    check_continue_as_new(store).await;
    check_custom_status(store, nul).await;
    check_new_ops_in_order(store).await;
    check_matches_reference(store).await;
    check_fencing(store).await;
    check_tasks(store, nul).await;
    check_parallel_group(store).await;
    check_assert_status(store).await;
    check_purge(store).await;
    check_purge_in_batch(store).await;
    check_list(store).await;
    check_list_keys(store).await;
    check_queue_depths(store).await;
    check_status_counts(store).await;
    check_liveness(store).await;
    check_schedules(store).await;
    check_slots(store, false).await;
    check_start_leasing(store, false).await;
    if let Some(poisoned_name) = &options.poisoned_name {
        check_batch_is_atomic(store, poisoned_name).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Builders and helpers
// ---------------------------------------------------------------------------------------------

/// A Pending instance of `workflow`, created (and last updated) at `created_at`, with input
/// `{"id":"<id>"}`, priority 0 and every optional field `None`.
pub fn instance(id: &str, workflow: &str, created_at: i64) -> InstanceRecord {
    InstanceRecord {
        id: id.to_owned(),
        workflow: workflow.to_owned(),
        status: RuntimeStatus::Pending,
        input: format!(r#"{{"id":"{id}"}}"#),
        output: None,
        error: None,
        generation: 0,
        created_at,
        updated_at: created_at,
        owner: None,
        lease_until: None,
        parent_id: None,
        custom_status: None,
        wake_at: None,
        priority: 0,
        concurrency_key: String::new(),
        trace_context: None,
    }
}

/// `record` with its status set to `status`.
pub fn with_status(mut record: InstanceRecord, status: RuntimeStatus) -> InstanceRecord {
    record.status = status;
    record
}

/// A completed activity record of instance `id` at (generation, seq), named `step_<seq>`, with an
/// input, a payload and a record time derived from `seq`.
pub fn record(id: &str, generation: u32, seq: u32) -> JournalRecord {
    JournalRecord {
        instance_id: id.to_owned(),
        generation,
        seq,
        kind: StepKind::Activity,
        name: format!("step_{seq}"),
        status: RecordStatus::Completed,
        input: Some(format!("[{seq}]")),
        payload: Some(format!(r#"{{"seq":{seq}}}"#)),
        attempt: 1,
        due_at: None,
        recorded_at: 1_000 + i64::from(seq),
        parallel_group: None,
    }
}

/// [`WriteOp::CreateInstance`] of `record`.
pub fn create(record: InstanceRecord) -> WriteOp {
    WriteOp::CreateInstance(record)
}

/// [`WriteOp::PutRecord`] of `record`.
pub fn put(record: JournalRecord) -> WriteOp {
    WriteOp::PutRecord(record)
}

/// The ids of `records`, in order.
pub fn ids(records: &[InstanceRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

/// The names as owned strings, as [`Store::claim`] and others take them.
pub fn names(workflows: &[&str]) -> Vec<String> {
    workflows.iter().map(|w| (*w).to_owned()).collect()
}

/// Reads instance `id`; panics if the read fails or the instance is missing.
pub async fn get(store: &dyn Store, id: &str) -> InstanceRecord {
    store.instance(id).await.unwrap().unwrap_or_else(|| panic!("instance {id} is missing"))
}

/// [`WriteOp::AddEvent`].
pub fn add_event(id: &str, name: &str, payload: &str, created_at: i64) -> WriteOp {
    WriteOp::AddEvent { instance_id: id.to_owned(), name: name.to_owned(), payload: payload.to_owned(), created_at }
}

/// [`WriteOp::ConsumeEvent`].
pub fn consume(id: &str, event_id: i64, generation: u32, seq: u32) -> WriteOp {
    WriteOp::ConsumeEvent { instance_id: id.to_owned(), event_id, generation, seq }
}

/// [`WriteOp::SetWake`].
pub fn set_wake(id: &str, wake_at: Option<i64>) -> WriteOp {
    WriteOp::SetWake { id: id.to_owned(), wake_at }
}

/// [`WriteOp::Evict`].
pub fn evict(id: &str, wake_at: i64) -> WriteOp {
    WriteOp::Evict { id: id.to_owned(), wake_at }
}

/// [`WriteOp::ContinueAsNew`].
pub fn continue_as_new(id: &str, input: &str, generation: u32, updated_at: i64) -> WriteOp {
    WriteOp::ContinueAsNew { id: id.to_owned(), input: input.to_owned(), generation, updated_at }
}

/// [`WriteOp::SetCustomStatus`].
pub fn set_custom(id: &str, custom_status: Option<&str>, updated_at: i64) -> WriteOp {
    WriteOp::SetCustomStatus { id: id.to_owned(), custom_status: custom_status.map(str::to_owned), updated_at }
}

/// Completes the instance with output `1`.
pub fn finish_of(id: &str) -> WriteOp {
    WriteOp::Finish {
        id: id.into(),
        status: RuntimeStatus::Completed,
        output: Some("1".into()),
        error: None,
        updated_at: 8,
    }
}

/// The names of `events`, in order.
pub fn event_names(events: &[EventRecord]) -> Vec<&str> {
    events.iter().map(|e| e.name.as_str()).collect()
}

/// An unowned, unfinished task of activity `name` for instance `id` at (generation, seq), visible
/// at `visible_at`, with an input derived from `seq` and `attempt` and no timeouts.
pub fn task(id: &str, generation: u32, seq: u32, name: &str, attempt: u32, visible_at: i64) -> TaskRecord {
    TaskRecord {
        instance_id: id.to_owned(),
        generation,
        seq,
        name: name.to_owned(),
        input: format!(r#"{{"seq":{seq},"attempt":{attempt}}}"#),
        concurrency_key: String::new(),
        priority: 0,
        attempt,
        start_to_close_ms: None,
        heartbeat_timeout_ms: None,
        visible_at,
        owner: None,
        lease_until: None,
        outcome: None,
        trace_context: None,
    }
}

/// [`WriteOp::EnqueueTask`] of `task`.
pub fn enqueue(task: TaskRecord) -> WriteOp {
    WriteOp::EnqueueTask(task)
}

/// [`WriteOp::DeleteTask`].
pub fn delete_task(id: &str, generation: u32, seq: u32) -> WriteOp {
    WriteOp::DeleteTask { instance_id: id.to_owned(), generation, seq }
}

/// A task outcome.
pub fn outcome(succeeded: bool, payload: &str, finished_at: i64) -> TaskOutcome {
    TaskOutcome { succeeded, payload: payload.to_owned(), finished_at }
}

/// A task as a claim by `worker` until `lease_until` returns it.
pub fn claimed(task: &TaskRecord, worker: &str, lease_until: i64) -> TaskRecord {
    TaskRecord { owner: Some(worker.to_owned()), lease_until: Some(lease_until), ..task.clone() }
}

/// The (instance, generation, seq) keys of `tasks`, in order.
pub fn task_keys(tasks: &[TaskRecord]) -> Vec<(&str, u32, u32)> {
    tasks.iter().map(|t| (t.instance_id.as_str(), t.generation, t.seq)).collect()
}

/// Claims every unfinished task of `activities`, whatever its visibility or lease, for `worker`
/// (a name of its own), and releases them again: what a store holds unfinished, seen through the
/// trait, as claimed records. Panics if a call fails or the release does not count the claims.
pub async fn claim_everything(store: &dyn Store, worker: &str, activities: &[&str]) -> Vec<TaskRecord> {
    let claimed = store.claim_tasks(worker, &names(activities), i64::MAX, i64::MAX, 10_000).await.unwrap();
    assert_eq!(store.release_leases(worker).await.unwrap(), claimed.len() as u64);
    claimed
}

/// [`WriteOp::AssertStatus`].
pub fn assert_status(id: &str, allowed: &[RuntimeStatus]) -> WriteOp {
    WriteOp::AssertStatus { id: id.to_owned(), allowed: allowed.to_vec() }
}

/// [`WriteOp::Purge`].
pub fn purge(id: &str) -> WriteOp {
    WriteOp::Purge { id: id.to_owned() }
}

/// [`WriteOp::AssertOwner`]: a fence on `id` for `owner`.
pub fn fence(id: &str, owner: &str) -> WriteOp {
    WriteOp::AssertOwner { id: id.to_owned(), owner: owner.to_owned() }
}

/// The (id, status) of the `Conflict` a batch was refused with; panics on anything else.
pub fn conflict(result: Result<WriteOutcome, StoreError>) -> (String, Option<RuntimeStatus>) {
    match result {
        Err(StoreError::Conflict { id, status }) => (id, status),
        other => panic!("expected a conflict, got {other:?}"),
    }
}
