//! One run of an instance in memory, as the durable operations see it: the replay cursor (each
//! operation takes the next seq and the journal's record there, checked by kind and name), the
//! ops waiting for the next commit, and the fatal flag that stops the run.
//!
//! The rule every operation follows: what a run learned (an outcome, a recorded value) is
//! buffered and committed by the next flush, which every operation makes before it does anything
//! visible outside the workflow (an attempt, a wait, the end). So an outcome is durable before it
//! is observable, and a turn of a workflow costs at most one commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::WorkflowContext;
use crate::error::FailureDetails;
use crate::model::trace::TraceContext;
use crate::store::{EventRecord, InstanceRecord, JournalRecord, Lease, Millis, RecordStatus, StepKind, Store, WriteOp};
use crate::worker::Engine;

/// What stops an instance's run from the inside.
#[derive(Debug, Clone)]
pub(crate) enum Fatal {
    /// Fail the instance with these details (non-determinism, a corrupt journal).
    Fail(FailureDetails),
    /// Stop running it without changing what is stored (the store failed); it is claimed again later.
    Abandon(String),
    /// Stop running it without changing what is stored because this run's view is stale, as
    /// expected in normal operation: a client suspended or terminated it, or another worker took
    /// it over (the store fenced this run's commit).
    Superseded(String),
    /// Restart the instance with this input (JSON) and an empty journal.
    ContinueAsNew(String),
}

pub(super) struct InstanceState {
    pub(super) next_seq: u32,
    /// Records from the store not yet matched by the replaying code.
    pub(super) replay: BTreeMap<u32, JournalRecord>,
    /// Ops to write with the next commit: the Pending-to-Running change, recorded values
    /// (`now`, `random`, patches), the custom status.
    pub(super) buffered: Vec<WriteOp>,
    pub(super) fatal: Option<Fatal>,
    /// Activity attempts and commits under way (an instance with any is not idle).
    pub(super) busy: usize,
    /// Timers, event waits and child waits under way.
    pub(super) waits: usize,
    pub(super) last_progress: tokio::time::Instant,
    /// Deadlines of the live waits, by seq (for the wake-up time of an evicted instance).
    pub(super) deadlines: BTreeMap<u32, Millis>,
    /// Children being waited for, by seq.
    pub(super) children: BTreeMap<u32, String>,
    /// Event waits under way, by seq: the names they wait for.
    pub(super) event_waits: BTreeMap<u32, String>,
    /// Events this run has taken (so two waits never take the same one).
    pub(super) taken_events: HashSet<i64>,
    /// The front of the inbox as read beside the journal when the instance was claimed: a wait
    /// takes its event from here when it is here, without a read of its own.
    pub(super) inbox_front: Vec<EventRecord>,
    /// Every event id this run's waits have read from the inbox (ids need not become visible in
    /// order: PostgreSQL assigns them before commit).
    pub(super) seen_events: HashSet<i64>,
    /// The custom status this run set last, if it set one.
    pub(super) custom_status: Option<Option<String>>,
    /// For each seq issued by a fan-out, the fan-out's first seq.
    pub(super) parallel_groups: BTreeMap<u32, u32>,
    /// Patch ids this run has asked about, with the answer (fixed by the first ask).
    pub(super) patches: HashMap<String, bool>,
}

pub(super) struct InstanceShared {
    pub(super) instance_id: Arc<str>,
    generation: u32,
    /// Its claim priority, which the activity attempts it queues take too.
    priority: i32,
    /// The trace it belongs to, which its children continue.
    trace: TraceContext,
    engine: Arc<Engine>,
    state: Mutex<InstanceState>,
    fatal_signal: Notify,
    /// Woken when an event for this instance is raised in this process.
    inbox_signal: Arc<Notify>,
    /// Woken when the run may have become idle (a wait began, or the last busy thing ended while
    /// it waits), so the driver can evict it at once when its wait is long.
    idle_signal: Notify,
}

/// What an idle run waits for, read before its body (and its waits) drops: the instance is
/// evicted with this wake-up time, and woken at once if an event or a child's end raced it.
pub(crate) struct IdleWaits {
    /// The earliest deadline of its waits, or [`NEVER`](crate::store::NEVER).
    pub(crate) wake_at: Millis,
    /// Every event id the run's waits have read from the inbox.
    pub(crate) seen_events: HashSet<i64>,
    /// The names of the events it waits for.
    pub(crate) event_names: Vec<String>,
    /// The children it waits for.
    pub(crate) children: Vec<String>,
}

impl IdleWaits {
    /// Whether an event one of its waits would take is in the inbox of `id` unread by them (it
    /// raced the eviction). Reads only the events of the names waited for; a store error counts
    /// as an arrival (the instance is woken to look).
    pub(crate) async fn event_arrived(&self, store: &dyn Store, id: &str) -> bool {
        for name in &self.event_names {
            let mut after = i64::MIN;
            loop {
                let Ok(page) = store.events_named(id, name, after, super::event::EVENT_PAGE).await else {
                    return true;
                };
                if page.iter().any(|event| !self.seen_events.contains(&event.event_id)) {
                    return true;
                }
                match page.last() {
                    Some(last) if page.len() == super::event::EVENT_PAGE => after = last.event_id,
                    _ => break,
                }
            }
        }
        false
    }
}

impl WorkflowContext {
    /// The context of a run of `record` (Running in the store: its claim or its start made it so).
    pub(crate) fn new(
        engine: Arc<Engine>,
        record: &InstanceRecord,
        trace: TraceContext,
        journal: Vec<JournalRecord>,
        inbox_front: Vec<EventRecord>,
        inbox_signal: Arc<Notify>,
    ) -> Self {
        let instance_id: Arc<str> = record.id.as_str().into();
        let replay = journal.into_iter().map(|record| (record.seq, record)).collect();
        let state = InstanceState {
            next_seq: 0,
            replay,
            buffered: Vec::new(),
            fatal: None,
            busy: 0,
            waits: 0,
            last_progress: tokio::time::Instant::now(),
            deadlines: BTreeMap::new(),
            children: BTreeMap::new(),
            event_waits: BTreeMap::new(),
            taken_events: HashSet::new(),
            inbox_front,
            seen_events: HashSet::new(),
            custom_status: None,
            parallel_groups: BTreeMap::new(),
            patches: HashMap::new(),
        };
        Self {
            shared: Arc::new(InstanceShared {
                instance_id,
                generation: record.generation,
                priority: record.priority,
                trace,
                engine,
                state: Mutex::new(state),
                fatal_signal: Notify::new(),
                inbox_signal,
                idle_signal: Notify::new(),
            }),
        }
    }

    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.shared.engine
    }

    pub(crate) fn instance_id_arc(&self) -> Arc<str> {
        self.shared.instance_id.clone()
    }

    /// The instance's claim priority.
    pub(crate) fn priority(&self) -> i32 {
        self.shared.priority
    }

    /// The trace the instance belongs to.
    pub(crate) fn trace(&self) -> &TraceContext {
        &self.shared.trace
    }

    pub(crate) fn generation(&self) -> u32 {
        self.shared.generation
    }

    pub(crate) fn inbox_signal(&self) -> Arc<Notify> {
        self.shared.inbox_signal.clone()
    }

    /// Whether the run waits for an event now.
    pub(crate) fn waits_for_events(&self) -> bool {
        !self.state().event_waits.is_empty()
    }

    /// Records that these seqs were issued together (a fan-out), for the journal and diagrams.
    pub(crate) fn mark_parallel(&self, seqs: impl Iterator<Item = u32>) {
        let seqs: Vec<u32> = seqs.collect();
        if let (Some(first), true) = (seqs.first().copied(), seqs.len() > 1) {
            let mut state = self.state();
            for seq in seqs {
                state.parallel_groups.insert(seq, first);
            }
        }
    }

    pub(super) fn state(&self) -> MutexGuard<'_, InstanceState> {
        // A panic while the lock is held cannot leave the state half-written: recover it.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the next seq; returns the record found there, if it matches the operation.
    pub(crate) fn reserve(&self, kind: StepKind, name: &str) -> (u32, Option<JournalRecord>) {
        let mut state = self.state();
        let seq = state.next_seq;
        state.next_seq += 1;
        let recorded = state.replay.remove(&seq);
        if let Some(record) = &recorded {
            if record.kind != kind || record.name != name {
                let message = format!(
                    "non-determinism at seq {seq}: the journal recorded {} `{}` but the workflow now issues {kind} `{name}`",
                    record.kind, record.name
                );
                drop(state);
                self.fail(Fatal::Fail(FailureDetails { error_type: "NonDeterminism".into(), message }));
                return (seq, None);
            }
        }
        (seq, recorded)
    }

    /// Stops the run; the first fatal error wins.
    pub(crate) fn fail(&self, fatal: Fatal) {
        let mut state = self.state();
        if state.fatal.is_none() {
            state.fatal = Some(fatal);
            self.shared.fatal_signal.notify_one();
        }
    }

    pub(crate) fn is_fatal(&self) -> bool {
        self.state().fatal.is_some()
    }

    /// Resolves when the run has hit a fatal error.
    pub(crate) async fn fatal(&self) -> Fatal {
        loop {
            if let Some(fatal) = self.state().fatal.clone() {
                return fatal;
            }
            self.shared.fatal_signal.notified().await;
        }
    }

    /// Records the workflow did not reach though the journal holds them (a changed workflow).
    pub(crate) fn unmatched_records(&self) -> Option<JournalRecord> {
        self.state().replay.values().next().cloned()
    }

    /// Takes the ops waiting for the next commit, behind a check that this worker still owns
    /// the instance: a worker whose lease was taken over cannot write to it (the store refuses
    /// the batch and this run is abandoned).
    pub(crate) fn take_fenced_batch(&self) -> Vec<WriteOp> {
        let fence =
            WriteOp::AssertOwner { id: self.instance_id().to_owned(), owner: self.shared.engine.owner().to_owned() };
        let buffered = std::mem::take(&mut self.state().buffered);
        std::iter::once(fence).chain(buffered).collect()
    }

    /// Adds an op to the next commit.
    pub(crate) fn buffer(&self, op: WriteOp) {
        self.state().buffered.push(op);
    }

    /// Workflow time now.
    pub(crate) fn clock_now(&self) -> Millis {
        self.shared.engine.now()
    }

    /// Commits the buffered ops, if any. Every operation calls this before it does anything
    /// visible outside the workflow (an activity attempt, a wait, the end), so an outcome is
    /// committed together with what follows from it: a one-step workflow costs two commits in
    /// all (start, then step and end), and every turn of a workflow costs at most one.
    pub(crate) async fn flush(&self) -> Result<(), ()> {
        if self.state().buffered.is_empty() {
            return Ok(());
        }
        self.commit(Vec::new()).await
    }

    /// Writes ops (after the buffered ones) durably; on a store failure the run is abandoned.
    pub(crate) async fn commit(&self, ops: Vec<WriteOp>) -> Result<(), ()> {
        self.commit_leasing(ops, Vec::new()).await.map(|_| ())
    }

    /// Commits as [`WorkflowContext::commit`] does, then takes what it can of `leases` on tasks
    /// the commit queues (see `Store::write_leasing`); says which it took.
    pub(crate) async fn commit_leasing(&self, ops: Vec<WriteOp>, leases: Vec<Lease>) -> Result<Vec<bool>, ()> {
        let mut batch = self.take_fenced_batch();
        batch.extend(ops);
        let _busy = self.busy();
        let result = self.shared.engine.commit_leasing(batch, leases).await;
        self.state().last_progress = tokio::time::Instant::now();
        match result {
            Ok((_, taken)) => Ok(taken),
            Err(error @ crate::store::StoreError::Fenced(_)) => {
                self.fail(Fatal::Superseded(format!("the store refused the journal write: {error}")));
                Err(())
            }
            Err(error) => {
                self.fail(Fatal::Abandon(format!("could not write the journal: {error}")));
                Err(())
            }
        }
    }

    /// Whether more than one thing of the run is busy (this caller's guard is one): a branch of
    /// a fan-out or a race still runs, so the run commits next only when that ends.
    pub(crate) fn busy_elsewhere(&self) -> bool {
        self.state().busy > 1
    }

    /// Marks the instance busy (not evictable) while the guard lives.
    pub(crate) fn busy(&self) -> ActivityGuard {
        self.state().busy += 1;
        ActivityGuard { ctx: self.clone(), kind: Guarded::Busy }
    }

    /// Marks the instance busy while a wait reads the store for what it waits for (its inbox):
    /// not idle, so not evicted while the answer may be on its way, but no progress either, so
    /// a wait that polls stays as idle as it was.
    pub(crate) fn reading(&self) -> ActivityGuard {
        self.state().busy += 1;
        ActivityGuard { ctx: self.clone(), kind: Guarded::Read }
    }

    /// Marks a live wait (with its deadline, if any) while the guard lives.
    pub(crate) fn waiting(&self, seq: u32, deadline: Option<Millis>) -> ActivityGuard {
        let mut state = self.state();
        state.waits += 1;
        if let Some(deadline) = deadline {
            state.deadlines.insert(seq, deadline);
        }
        let idle = state.is_idle();
        drop(state);
        if idle {
            self.shared.idle_signal.notify_one();
        }
        ActivityGuard { ctx: self.clone(), kind: Guarded::Wait(seq) }
    }

    /// Resolves when the run may have become idle since this was last awaited; check
    /// [`Self::waits_longer_than`] then.
    pub(crate) async fn may_be_idle(&self) {
        self.shared.idle_signal.notified().await;
    }

    /// Whether the run is idle (waiting, with nothing running) and the earliest deadline of its
    /// waits is more than `limit` away on the workflow clock. A run waiting on nothing but events
    /// without a timeout or on children (no deadline) is not: its wait may end any moment.
    pub(crate) fn waits_longer_than(&self, limit: std::time::Duration) -> bool {
        let state = self.state();
        let Some(earliest) = state.deadlines.values().min().copied() else { return false };
        state.is_idle() && earliest.saturating_sub(self.clock_now()) > crate::model::time::millis(limit)
    }

    /// What the run waits for, to evict it.
    pub(crate) fn idle_waits(&self) -> IdleWaits {
        let state = self.state();
        IdleWaits {
            wake_at: state.deadlines.values().min().copied().unwrap_or(crate::store::NEVER),
            seen_events: state.seen_events.clone(),
            event_names: state.event_waits.values().cloned().collect(),
            children: state.children.values().cloned().collect(),
        }
    }

    /// The custom status this run set last, if it set one.
    pub(crate) fn custom_status(&self) -> Option<Option<String>> {
        self.state().custom_status.clone()
    }

    /// How long the instance has been waiting with nothing running, if it is.
    pub(crate) fn idle_for(&self) -> Option<std::time::Duration> {
        let state = self.state();
        state.is_idle().then(|| state.last_progress.elapsed())
    }

    pub(crate) fn corrupt(&self, seq: u32, detail: impl fmt::Display) {
        let message = format!("corrupt journal record at seq {seq} of instance `{}`: {detail}", self.instance_id());
        self.fail(Fatal::Fail(FailureDetails { error_type: "CorruptJournal".into(), message }));
    }

    /// Stores a Scheduled record with its deadline; returns false if the run must stop.
    pub(crate) async fn schedule(
        &self,
        seq: u32,
        kind: StepKind,
        name: &str,
        due: Option<Millis>,
        payload: Option<String>,
    ) -> bool {
        let mut record = self.new_record(seq, kind, name, RecordStatus::Scheduled, payload);
        record.due_at = due;
        self.commit(vec![WriteOp::PutRecord(record)]).await.is_ok()
    }

    /// A journal record of this instance's current generation, stamped now.
    pub(crate) fn new_record(
        &self,
        seq: u32,
        kind: StepKind,
        name: &str,
        status: RecordStatus,
        payload: Option<String>,
    ) -> JournalRecord {
        JournalRecord {
            instance_id: self.instance_id().to_owned(),
            generation: self.shared.generation,
            seq,
            kind,
            name: name.to_owned(),
            status,
            input: None,
            payload,
            attempt: 1,
            due_at: None,
            recorded_at: self.clock_now(),
            parallel_group: self.state().parallel_groups.get(&seq).copied(),
        }
    }
}

impl InstanceState {
    /// Waiting, with nothing running, and not stopping.
    fn is_idle(&self) -> bool {
        self.busy == 0 && self.waits > 0 && self.fatal.is_none()
    }
}

/// What an [`ActivityGuard`] marks.
enum Guarded {
    /// Something running (an attempt, a commit).
    Busy,
    /// A wait's read of the store.
    Read,
    /// A live wait, by seq.
    Wait(u32),
}

/// Keeps an instance marked busy or waiting while it lives.
pub(crate) struct ActivityGuard {
    ctx: WorkflowContext,
    kind: Guarded,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        let mut state = self.ctx.state();
        match self.kind {
            Guarded::Wait(seq) => {
                state.waits = state.waits.saturating_sub(1);
                state.deadlines.remove(&seq);
                state.children.remove(&seq);
                state.event_waits.remove(&seq);
            }
            Guarded::Busy | Guarded::Read => state.busy = state.busy.saturating_sub(1),
        }
        if !matches!(self.kind, Guarded::Read) {
            state.last_progress = tokio::time::Instant::now();
        }
        let idle = state.is_idle();
        drop(state);
        if idle {
            self.ctx.shared.idle_signal.notify_one();
        }
    }
}
