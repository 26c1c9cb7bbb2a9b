//! The runtime's background loops: claiming runnable instances, renewing leases, taking over dead
//! workers' leases, purging what retention allows, and turning other processes' change hints into
//! local wake-ups.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, OwnedSemaphorePermit};

use super::driver::Journal;
use super::engine::Engine;
use crate::client::{Client, RetentionPolicy};
use crate::store::{EventRecord, InstanceRecord, JournalRecord, QueueKind, RuntimeStatus, WakeSignal, WriteOp};

/// How many of a claimed instance's first events are read beside its journal.
const INBOX_FRONT: usize = 16;

/// How far a backlog grows the claim batch: up to this many times the configured one.
const BACKLOG_BATCH_GROWTH: usize = 8;

/// Claims runnable instances while this worker has free instance slots, and runs them.
///
/// A claim takes at most `batch` instances; while claims keep coming back full (a backlog), each
/// next one may take twice as many, up to [`BACKLOG_BATCH_GROWTH`] times `batch`, since a claim
/// costs a round trip and a commit whatever it takes (on PostgreSQL, 64 instances cost ~8 ms, 512
/// ~25 ms). The first short claim goes back to `batch`.
pub(super) async fn claim_loop(engine: Arc<Engine>, poll_interval: Duration, batch: usize) {
    let mut want = batch;
    loop {
        if engine.is_shutting_down() {
            return;
        }
        let free = engine.instance_slots().available_permits().min(want);
        let mut full_batch = false;
        if free > 0 && !engine.workflow_names().is_empty() {
            let (now, lease_until) = (engine.now(), engine.lease_until());
            let (owner, workflows, caps) = (engine.owner(), engine.workflow_names(), engine.caps());
            let claimed = engine.store().claim_capped(owner, workflows, caps, now, lease_until, free).await;
            match claimed {
                Ok(records) => {
                    full_batch = records.len() >= free;
                    engine.set_backlog(full_batch);
                    let mut runnable = Vec::with_capacity(records.len());
                    for record in &records {
                        // A rated workflow's starts leave its window a period after this claim:
                        // look again then, so a backlog starts at the full rate.
                        if record.status == RuntimeStatus::Pending {
                            if let Some(rate) = engine.workflow_rate(&record.workflow) {
                                engine.wake_claimer_at(now.saturating_add(rate.period_ms));
                            }
                        }
                    }
                    for record in records {
                        let Some(token) = engine.mark_running(&record.id) else {
                            // Claimable means its owner was cleared or its lease lapsed: a run
                            // here is stale. Stop it; it hands the claim back and is replayed.
                            // With no run (a start of an existing id holds the mark for a
                            // moment), hand the claim back now: nothing would, and the renewals
                            // would keep it ours for good.
                            if !engine.supersede(&record.id, "the instance was handed out again") {
                                let _ = engine.commit(hand_back(&engine, &record)).await;
                            }
                            continue;
                        };
                        // A local start may have taken the slot meanwhile.
                        runnable.extend(with_slot(&engine, record, token).await);
                    }
                    // Their journals are read beside the next claim, not before it: with a
                    // backlog, claims follow each other at the pace of the claim alone.
                    if !runnable.is_empty() {
                        tokio::spawn(start_drivers(engine.clone(), runnable));
                    }
                }
                Err(error) => tracing::warn!(%error, "claiming instances failed"),
            }
        }
        want = if full_batch { (want * 2).min(batch * BACKLOG_BATCH_GROWTH) } else { batch };
        if full_batch {
            // More may be waiting: claim again at once (other workers claim in between).
            tokio::task::yield_now().await;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(poll_interval) => {}
            _ = engine.claimer_woken() => {}
        }
    }
}

/// `record` (marked running here with `token`) with a free instance slot, or handed back to the
/// claims (and unmarked) when none is free.
async fn with_slot(engine: &Engine, record: InstanceRecord, token: u64) -> Option<Claimed> {
    match engine.instance_slots().clone().try_acquire_owned() {
        Ok(permit) => Some(Claimed { record, token, permit }),
        Err(_) => {
            engine.unmark_running(&record.id, token);
            let _ = engine.commit(hand_back(engine, &record)).await;
            None
        }
    }
}

/// Runs the starts that clients assign to this worker at their creation ([`WakeSignal::Assigned`],
/// `Lease::Assign`): reads them (a batch of them in one store read), and runs those still its own
/// as a claim runs what it takes, with no claim to write. One that finds no free slot is handed
/// back to the claims.
pub(super) async fn adopt_loop(engine: Arc<Engine>) {
    let mut shutdown = engine.shutdown_signal();
    loop {
        let ids = tokio::select! {
            ids = engine.assigned_starts() => ids,
            _ = shutdown.wait_for(|down| *down) => return,
        };
        adopt(&engine, ids, true).await;
    }
}

/// How often a worker that takes assigned starts looks at its free instance slots.
pub(super) const OFFER_CHECK: Duration = Duration::from_millis(100);

/// Offers the starts of `takes` to clients (see `Store::offer_starts`) only while this worker has
/// room for them: withdrawn once every one of its `slots` instance slots is taken (a start
/// assigned then would only be handed back to the claims), offered again once a quarter of them
/// (at most 64) are free. Clients see a change when they next read the takers, within a second;
/// what they assign meanwhile is handed back.
pub(super) async fn offer_loop(engine: Arc<Engine>, takes: Vec<String>, slots: usize) {
    let again_at = (slots / 4).clamp(1, 64);
    let mut offered = true;
    loop {
        tokio::time::sleep(OFFER_CHECK).await;
        if engine.is_shutting_down() {
            return;
        }
        let free = engine.instance_slots().available_permits();
        let offer = if offered { free > 0 } else { free >= again_at };
        if offer == offered {
            continue;
        }
        let names: &[String] = if offer { &takes } else { &[] };
        match engine.store().offer_starts(engine.owner(), names).await {
            Ok(()) => offered = offer,
            Err(error) => tracing::debug!(%error, "changing the starts this worker takes failed"),
        }
    }
}

/// Runs those of `ids` this worker holds the lease of and does not run yet (Pending or Running),
/// read in one store read; `starts`: they were assigned at their creation and never ran, so they
/// run as starts (as a claim returns a start: Pending). What the read fails on is left to the
/// reconciliation ([`renew_loop`]), which finds it again.
async fn adopt(engine: &Arc<Engine>, mut ids: Vec<String>, starts: bool) {
    ids.retain(|id| !engine.is_running(id));
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return;
    }
    let records = match engine.store().instances(&ids).await {
        Ok(records) => records,
        Err(error) => {
            tracing::warn!(%error, "reading the instances assigned to this worker failed");
            return;
        }
    };
    let mut runnable = Vec::with_capacity(records.len());
    for mut record in records {
        let unfinished = matches!(record.status, RuntimeStatus::Pending | RuntimeStatus::Running);
        if record.owner.as_deref() != Some(engine.owner()) || !unfinished {
            continue;
        }
        // Marked by a claim or a start here meanwhile: that one runs it.
        let Some(token) = engine.mark_running(&record.id) else { continue };
        if starts {
            record.status = RuntimeStatus::Pending;
        }
        runnable.extend(with_slot(engine, record, token).await);
    }
    // Their journals are read beside the next batch's read, as after a claim.
    if !runnable.is_empty() {
        tokio::spawn(start_drivers(engine.clone(), runnable));
    }
}

/// What hands an instance this worker claimed but will not run back to the next claim, if it is
/// still this worker's: as it was found, so a start the claim made Running is Pending again (and
/// counts as a start when it is claimed next), unless something (a suspend, a terminate) changed
/// its status meanwhile.
pub(super) fn hand_back(engine: &Engine, record: &InstanceRecord) -> Vec<WriteOp> {
    let (id, now) = (record.id.clone(), engine.now());
    let mut ops = vec![WriteOp::AssertOwner { id: id.clone(), owner: engine.owner().to_owned() }];
    if record.status == RuntimeStatus::Pending {
        ops.push(WriteOp::AssertStatus { id: id.clone(), allowed: vec![RuntimeStatus::Running] });
        ops.push(WriteOp::SetStatus { id: id.clone(), status: RuntimeStatus::Pending, updated_at: now });
    }
    ops.push(WriteOp::Evict { id, wake_at: now });
    ops
}

/// A claimed instance, marked running here, with its slot.
struct Claimed {
    record: InstanceRecord,
    token: u64,
    permit: OwnedSemaphorePermit,
}

/// Reads the claimed instances' journals and the fronts of their inboxes (a store read each, for
/// all of them) and runs each.
async fn start_drivers(engine: Arc<Engine>, claimed: Vec<Claimed>) {
    let (mut journals, mut inboxes) = tokio::join!(read_journals(&engine, &claimed), read_inboxes(&engine, &claimed));
    for Claimed { record, token, permit } in claimed {
        let journal = match journals.as_mut() {
            Some(journals) => Journal::Prefetched {
                journal: journals.remove(&record.id).unwrap_or_default(),
                inbox: inboxes.remove(&record.id).unwrap_or_default(),
            },
            None => Journal::Read,
        };
        engine.spawn_driver(record, journal, permit, token);
    }
}

/// The journals of the claimed instances, in one store read, by instance id; `None` when the read
/// failed (each driver then reads its own).
async fn read_journals(engine: &Engine, claimed: &[Claimed]) -> Option<HashMap<String, Vec<JournalRecord>>> {
    let keys: Vec<(String, u32)> =
        claimed.iter().map(|claimed| (claimed.record.id.clone(), claimed.record.generation)).collect();
    match engine.store().journals(&keys).await {
        Ok(records) => {
            let mut journals: HashMap<String, Vec<JournalRecord>> = HashMap::with_capacity(claimed.len());
            for record in records {
                journals.entry(record.instance_id.clone()).or_default().push(record);
            }
            Some(journals)
        }
        Err(error) => {
            tracing::warn!(%error, "reading the claimed instances' journals failed; each reads its own");
            None
        }
    }
}

/// The first events of the inboxes of the claimed instances that resume (Running), in one store
/// read, by instance id: an instance woken by an event finds it there. (An instance that starts
/// seldom has events yet, and its waits read the inbox as before.) Empty when the read failed:
/// each wait then reads the inbox, as it does for anything not there.
async fn read_inboxes(engine: &Engine, claimed: &[Claimed]) -> HashMap<String, Vec<EventRecord>> {
    let mut inboxes: HashMap<String, Vec<EventRecord>> = HashMap::new();
    let resuming = claimed.iter().filter(|claimed| claimed.record.status == RuntimeStatus::Running);
    let ids: Vec<String> = resuming.map(|claimed| claimed.record.id.clone()).collect();
    if ids.is_empty() {
        return inboxes;
    }
    match engine.store().inboxes(&ids, INBOX_FRONT).await {
        Ok(events) => {
            for event in events {
                inboxes.entry(event.instance_id.clone()).or_default().push(event);
            }
        }
        Err(error) => tracing::warn!(%error, "reading the claimed instances' inboxes failed; each wait reads its own"),
    }
    inboxes
}

/// Purges finished instances older than `policy` allows, every `every`.
pub(super) async fn retention_loop(engine: Arc<Engine>, policy: RetentionPolicy, every: Duration) {
    let client = Client::local(engine.clone());
    loop {
        tokio::time::sleep(every).await;
        if engine.is_shutting_down() {
            return;
        }
        match client.purge_expired(&policy).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "retention purged finished instances"),
            Err(error) => tracing::warn!(%error, "retention purge failed"),
        }
    }
}

/// Extends this worker's leases every third of a lease; after a failure (the database restarting,
/// say), tries again sooner, backing off, so a short outage does not let the leases lapse.
///
/// After each renewal it also reconciles: the instances it holds but does not run (a start
/// assigned to it whose signal was lost, say) would be renewed for good, so one found so at two
/// looks in a row runs here (a single look catches the moments between a claim or an eviction and
/// its mark).
pub(super) async fn renew_loop(engine: Arc<Engine>) {
    // A start assigned to this worker comes with a lease of the default length.
    let every = engine.lease().min(crate::client::ASSIGNED_LEASE) / 3;
    let first_retry = (every / 8).max(Duration::from_millis(10));
    let mut wait = every;
    let mut idle: HashSet<String> = HashSet::new();
    loop {
        tokio::time::sleep(wait).await;
        if engine.is_shutting_down() {
            return;
        }
        wait = match engine.store().renew_leases(engine.owner(), engine.lease_until()).await {
            Ok(_) => {
                idle = reconcile(&engine, idle).await;
                every
            }
            Err(error) => {
                let retry = if wait >= every { first_retry } else { (wait * 2).min(every) };
                tracing::warn!(%error, ?retry, "renewing leases failed");
                retry
            }
        };
    }
}

/// Runs the instances this worker holds but has not run at two looks in a row (`before`, and the
/// store's answer now); returns those it found idle now, for the next look.
async fn reconcile(engine: &Arc<Engine>, before: HashSet<String>) -> HashSet<String> {
    let held = match engine.store().held_instances(engine.owner()).await {
        Ok(held) => held,
        Err(error) => {
            tracing::debug!(%error, "reading the instances this worker holds failed");
            return before;
        }
    };
    let idle: HashSet<String> = held.into_iter().filter(|id| !engine.is_running(id)).collect();
    let stranded: Vec<String> = idle.intersection(&before).cloned().collect();
    if !stranded.is_empty() {
        tracing::info!(count = stranded.len(), "running instances this worker held without running them");
        adopt(engine, stranded, false).await;
    }
    idle
}

/// How often a runtime whose store keeps liveness marks looks for dead workers' leases.
pub(super) const LIVENESS_CHECK: Duration = Duration::from_millis(250);

/// Every `every`, drops the leases of workers whose process has died (their liveness mark is
/// gone), on instances and tasks, so this worker (or any other) takes them over at once instead
/// of when the leases lapse; the first look is at start, so a process restarted after a crash
/// resumes its predecessor's instances straight away.
pub(super) async fn liveness_loop(engine: Arc<Engine>, every: Duration) {
    loop {
        if engine.is_shutting_down() {
            return;
        }
        match engine.store().release_dead_workers().await {
            Ok(0) => {}
            Ok(released) => {
                crate::metrics::dead_worker_leases_released(released);
                tracing::info!(released, "took over the leases of workers whose process died");
                engine.on_signal(WakeSignal::Runnable);
                engine.on_signal(WakeSignal::TaskQueued);
            }
            Err(error) => tracing::warn!(%error, "looking for dead workers failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Every `every`, samples the depth of every queue in the store into the queue gauges
/// ([`crate::metrics::QUEUE_WAITING`], [`crate::metrics::QUEUE_RUNNING`]); a queue seen before and
/// gone now is set to 0 once.
pub(super) async fn queue_metrics_loop(engine: Arc<Engine>, every: Duration) {
    let mut seen: HashSet<(QueueKind, String, String)> = HashSet::new();
    loop {
        if engine.is_shutting_down() {
            return;
        }
        match engine.store().queue_depths(engine.now()).await {
            Ok(depths) => {
                let now_seen: HashSet<(QueueKind, String, String)> =
                    depths.iter().map(|d| (d.kind, d.name.clone(), d.concurrency_key.clone())).collect();
                let gone: Vec<(QueueKind, String, String)> =
                    seen.into_iter().filter(|queue| !now_seen.contains(queue)).collect();
                crate::metrics::queue_depths(&depths, &gone);
                seen = now_seen;
            }
            Err(error) => tracing::warn!(%error, "sampling the queue depths failed"),
        }
        tokio::time::sleep(every).await;
    }
}

/// How often the event waits running here are checked for events their signals did not bring.
pub(super) const INBOX_POLL: Duration = Duration::from_secs(1);

/// The most inboxes one check reads (in one store call).
const INBOX_POLL_BATCH: usize = 1024;

/// Every `every`, reads in one store call per batch which inboxes of the instances waiting for
/// events here got something new, and wakes those waits: the fallback for events whose signal
/// never came (raised by another process on a store that cannot signal across processes, or
/// while a signal was lost). A wait never reads the store on its own schedule; the cost is one
/// read per batch of waiting instances per tick, however many wait.
pub(super) async fn inbox_poll_loop(engine: Arc<Engine>, every: Duration) {
    // The highest unconsumed event id last seen per waiting instance: only a change wakes it.
    let mut heads: HashMap<String, i64> = HashMap::new();
    loop {
        tokio::time::sleep(every).await;
        if engine.is_shutting_down() {
            return;
        }
        let waiting = engine.waiting_for_events();
        let still: HashSet<&str> = waiting.iter().map(String::as_str).collect();
        heads.retain(|id, _| still.contains(id.as_str()));
        for batch in waiting.chunks(INBOX_POLL_BATCH) {
            match engine.store().inbox_heads(batch).await {
                Ok(found) => {
                    for (id, head) in found {
                        if heads.insert(id.clone(), head) != Some(head) {
                            engine.signal_inbox(&id);
                        }
                    }
                }
                Err(error) => tracing::debug!(%error, "reading the inboxes of waiting instances failed"),
            }
        }
    }
}

/// Turns the store's change hints (other processes' writes) into local wake-ups.
pub(super) async fn wake_loop(engine: Arc<Engine>, mut signals: broadcast::Receiver<WakeSignal>) {
    use broadcast::error::RecvError;
    loop {
        let signal = match signals.recv().await {
            Ok(signal) => signal,
            Err(RecvError::Lagged(_)) => {
                engine.waiters().signals_lost();
                WakeSignal::Runnable
            }
            Err(RecvError::Closed) => return,
        };
        if let WakeSignal::Finished(id) = &signal {
            // A run here that finished it tells its waiters itself once its commit returns; the
            // signal of that commit often comes first, and reading the store for it would only
            // duplicate the news.
            if !engine.is_running(id) {
                engine.waiters().ended_elsewhere(id);
            }
        }
        engine.on_signal(signal);
    }
}
