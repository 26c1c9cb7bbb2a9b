//! The scheduler: fires the store's due schedules, on every runtime. A fire is one conditional
//! store write per batch (`Store::fire_schedules`): it moves a schedule from the tick a worker
//! read to its next, and creates the tick's instance, whose id is derived from the schedule and
//! the tick; so when several workers see the same due tick, one fire takes and the others change
//! nothing, and a tick never starts twice. The instances are then claimed as any other.
//!
//! A tick is fired up to [`FIRE_AHEAD_MS`] before its time where the tick has nothing left to
//! decide (see there): its instance is created due at the tick, so it starts on time however
//! many ticks fall due together.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::engine::Engine;
use crate::client::Client;
use crate::error::Error;
use crate::schedule::{
    next_version, runs_after, tick_instance, Compiled, Overlap, ScheduleRun, Spec, BUFFER_RECHECK_MS, FIRE_AHEAD_MS,
};
use crate::store::{InstanceRecord, Millis, ScheduleFire, ScheduleRecord, StoreError};

/// The most due schedules one pass reads and fires (in one store read and one write).
const FIRE_BATCH: usize = 2_048;

/// Fires due schedules every `poll_interval` at the latest, [`FIRE_AHEAD_MS`] before the next
/// tick on the engine's clock when that is sooner, and when a client in this process changes a
/// schedule.
pub(super) async fn schedule_loop(engine: Arc<Engine>, poll_interval: Duration) {
    let mut compiled: HashMap<String, Arc<Compiled>> = HashMap::new();
    loop {
        if engine.is_shutting_down() {
            return;
        }
        let mut pass = Pass::default();
        match fire_due(&engine, &mut compiled).await {
            Ok(done) => pass = done,
            Err(StoreError::Config(reason)) => {
                // A store that keeps no schedules (the trait's default): nothing to fire, ever.
                tracing::debug!(%reason, "the store keeps no schedules; the scheduler stops");
                return;
            }
            Err(error) => tracing::warn!(%error, "firing due schedules failed"),
        }
        if pass.due >= FIRE_BATCH && pass.fired > 0 {
            // More are due: fire them at once.
            tokio::task::yield_now().await;
            continue;
        }
        match engine.store().due_schedules(Millis::MAX, 1).await {
            Ok(next) => {
                if let Some(at) = next.first().and_then(|record| record.next_fire_at) {
                    engine.wake_scheduler_at(next_pass(at, &pass, engine.now()));
                }
            }
            Err(error) => tracing::debug!(%error, "reading the next due schedule failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(poll_interval) => {}
            _ = engine.scheduler_woken() => {}
        }
    }
}

/// What one pass of the scheduler did.
#[derive(Default)]
struct Pass {
    /// How many schedules were due (or due within [`FIRE_AHEAD_MS`]).
    due: usize,
    /// How many of them it fired.
    fired: usize,
    /// The earliest tick it left to fire at its time rather than ahead (an overlap decision is
    /// left for the tick to make).
    deferred: Option<Millis>,
}

/// When the next pass runs, given the earliest `next_fire_at` of any schedule (`at`): ahead of
/// it by [`FIRE_AHEAD_MS`]. A schedule already that close was either left for its tick by this
/// pass (then at its tick, or at the earliest tick left so) or became due since (then now); a
/// pass that fired nothing does not run again sooner than [`IDLE_PASS_MS`], so a record it
/// cannot fire is not read in a loop.
fn next_pass(at: Millis, pass: &Pass, now: Millis) -> Millis {
    let ahead = at.saturating_sub(FIRE_AHEAD_MS);
    if ahead > now {
        return ahead;
    }
    match pass.deferred {
        Some(deferred) if deferred <= at => deferred,
        _ if pass.fired == 0 => at.max(now.saturating_add(IDLE_PASS_MS)),
        _ => now,
    }
}

/// The soonest a pass that fired nothing runs again.
const IDLE_PASS_MS: Millis = 50;

/// Fires the schedules due now or within [`FIRE_AHEAD_MS`] (a batch of them): a tick due now
/// starts (with those its catch-up policy keeps), a tick to come is created ahead, due at its
/// time, where no overlap decision is left for it.
async fn fire_due(engine: &Arc<Engine>, compiled: &mut HashMap<String, Arc<Compiled>>) -> Result<Pass, StoreError> {
    let now = engine.now();
    let due = engine.store().due_schedules(now.saturating_add(FIRE_AHEAD_MS), FIRE_BATCH).await?;
    let mut pass = Pass { due: due.len(), ..Pass::default() };
    if due.is_empty() {
        return Ok(pass);
    }
    // Each record's spec and runs, read once.
    let specs: Vec<(&ScheduleRecord, Spec, Vec<ScheduleRun>)> = due
        .iter()
        .filter_map(|record| match serde_json::from_str::<Spec>(&record.spec) {
            Ok(spec) => Some((record, spec, serde_json::from_str(&record.runs).unwrap_or_default())),
            Err(_) => {
                tracing::warn!(schedule = %record.id, "a schedule's spec does not read; it is left as it is");
                None
            }
        })
        .collect();
    // The instances the latest runs of the schedules that skip overlapping ticks started: one
    // read for the batch.
    let previous: Vec<String> = specs
        .iter()
        .filter(|(_, spec, _)| spec.overlap != Overlap::AllowAll)
        .filter_map(|(_, _, runs)| last_instance(runs))
        .collect();
    let running: std::collections::HashSet<String> = if previous.is_empty() {
        std::collections::HashSet::new()
    } else {
        let records = engine.store().instances(&previous).await?;
        records.into_iter().filter(|r| !r.status.is_terminal()).map(|r| r.id).collect()
    };
    let mut fires = Vec::with_capacity(due.len());
    let mut soonest_wake: Option<Millis> = None;
    let mut runnable_now = false;
    for (record, spec, mut past_runs) in specs {
        let Some(expected_next) = record.next_fire_at else { continue };
        let schedule = match compiled.get(&record.spec) {
            Some(schedule) => schedule.clone(),
            None => match Compiled::new(&spec) {
                Ok(schedule) => {
                    let schedule = Arc::new(schedule);
                    compiled.insert(record.spec.clone(), schedule.clone());
                    schedule
                }
                Err(error) => {
                    tracing::warn!(schedule = %record.id, %error, "a schedule's expression does not parse");
                    continue;
                }
            },
        };
        let still_running = last_instance(&past_runs).filter(|id| running.contains(id));
        let (instances, runs, next_fire_at) = if expected_next > now {
            // Its next tick is still to come: fired ahead if the tick has nothing left to decide.
            if !spec.overlap.fires_ahead(still_running.is_some()) {
                pass.deferred = Some(pass.deferred.map_or(expected_next, |d| d.min(expected_next)));
                continue;
            }
            let (instances, runs) = tick_runs(record, &spec, &[expected_next], now);
            (instances, runs, schedule.next_after(expected_next))
        } else {
            let due = Due { record, spec: &spec, schedule: &schedule, expected_next, now };
            due.fire(engine, &mut past_runs, still_running).await
        };
        if spec.overlap != Overlap::BufferOne {
            // A tick buffered under an earlier overlap policy starts no more.
            for run in past_runs.iter_mut().filter(|run| run.buffered) {
                *run = ScheduleRun::skipped(run.tick, "the overlap policy changed while it waited".into());
            }
        }
        for instance in &instances {
            match instance.wake_at {
                Some(due_at) => soonest_wake = Some(soonest_wake.map_or(due_at, |soonest| soonest.min(due_at))),
                None => runnable_now = true,
            }
        }
        fires.push(ScheduleFire {
            id: record.id.clone(),
            expected_next,
            expected_updated_at: record.updated_at,
            next_fire_at,
            runs: runs_after(past_runs, runs),
            fired_at: next_version(record.updated_at, now),
            instances,
        });
    }
    if compiled.len() > 4 * FIRE_BATCH {
        compiled.clear();
    }
    pass.fired = fires.len();
    let took = engine.store().fire_schedules(&fires).await?;
    if fires.iter().zip(&took).any(|(fire, took)| *took && !fire.instances.is_empty()) {
        if runnable_now {
            engine.wake_claimer();
        }
        if let Some(at) = soonest_wake {
            engine.wake_claimer_at(at);
        }
    }
    tracing::trace!(due = due.len(), fired = took.iter().filter(|t| **t).count(), "fired due schedules");
    Ok(pass)
}

/// A schedule whose tick has come, as a pass read it.
struct Due<'a> {
    record: &'a ScheduleRecord,
    spec: &'a Spec,
    schedule: &'a Compiled,
    expected_next: Millis,
    now: Millis,
}

impl Due<'_> {
    /// The instances, new runs and next fire of the ticks due now, under the schedule's
    /// catch-up and overlap policies, given its earlier runs and its latest run if it still goes.
    async fn fire(
        &self,
        engine: &Arc<Engine>,
        past_runs: &mut [ScheduleRun],
        still_running: Option<String>,
    ) -> (Vec<InstanceRecord>, Vec<ScheduleRun>, Option<Millis>) {
        let Self { record, spec, schedule, expected_next, now } = *self;
        let ticks = schedule.due_ticks(expected_next, now, spec.catch_up);
        let mut next_fire_at = schedule.next_after(now);
        let (instances, runs) = match (spec.overlap, still_running, ticks.last()) {
            (Overlap::BufferOne, previous, _) => {
                let (instances, runs, waiting) = buffer_one(record, spec, past_runs, previous, &ticks, now);
                if waiting {
                    // Look again soon whether the run it waits for has ended (never later than
                    // the next tick, so no tick is passed over).
                    let recheck = now.saturating_add(BUFFER_RECHECK_MS);
                    next_fire_at = Some(next_fire_at.map_or(recheck, |next| next.min(recheck)));
                }
                (instances, runs)
            }
            (Overlap::Skip, Some(previous), Some(&latest)) => {
                let skipped = ScheduleRun::skipped(latest, format!("the previous run {previous} was still running"));
                (Vec::new(), vec![skipped])
            }
            (Overlap::TerminatePrevious, Some(previous), Some(_)) => {
                // Before the fire: a fire another worker takes first terminates it too, which
                // changes nothing more.
                let reason = format!("terminated by schedule {}: its next tick started", record.id);
                match Client::local(engine.clone()).terminate(&previous, Some(&reason)).await {
                    Ok(()) | Err(Error::InstanceFinished(_) | Error::InstanceNotFound(_)) => {}
                    Err(error) => tracing::warn!(%error, schedule = %record.id, "terminating the previous run failed"),
                }
                tick_runs(record, spec, &ticks, now)
            }
            _ => tick_runs(record, spec, &ticks, now),
        };
        (instances, runs, next_fire_at)
    }
}

/// The instances `ticks` start and their runs.
fn tick_runs(
    record: &ScheduleRecord,
    spec: &Spec,
    ticks: &[Millis],
    now: Millis,
) -> (Vec<InstanceRecord>, Vec<ScheduleRun>) {
    let instances: Vec<InstanceRecord> = ticks.iter().map(|tick| tick_instance(record, spec, *tick, now)).collect();
    let runs = instances.iter().zip(ticks).map(|(instance, tick)| ScheduleRun::started(*tick, &instance.id)).collect();
    (instances, runs)
}

/// Under [`Overlap::BufferOne`]: the instances and new runs of a fire at `now`, and whether a
/// tick is left waiting. A tick buffered earlier starts once `previous` (the latest run, while
/// it still goes) has ended, and its run in `past_runs` then names its instance; each due tick
/// then starts if nothing runs, waits if nothing waits, and is skipped otherwise.
fn buffer_one(
    record: &ScheduleRecord,
    spec: &Spec,
    past_runs: &mut [ScheduleRun],
    previous: Option<String>,
    ticks: &[Millis],
    now: Millis,
) -> (Vec<InstanceRecord>, Vec<ScheduleRun>, bool) {
    let mut instances = Vec::new();
    let mut busy = previous;
    let buffered = past_runs.iter().position(|run| run.buffered);
    let mut waiting = buffered.map(|at| past_runs[at].tick);
    if let (None, Some(at)) = (&busy, buffered) {
        // The run it waited for has ended: the buffered tick starts now.
        let instance = tick_instance(record, spec, past_runs[at].tick, now);
        past_runs[at] = ScheduleRun::started(past_runs[at].tick, &instance.id);
        busy = Some(instance.id.clone());
        waiting = None;
        instances.push(instance);
    }
    let mut runs = Vec::with_capacity(ticks.len());
    for &tick in ticks {
        match (&busy, waiting) {
            (None, _) => {
                let instance = tick_instance(record, spec, tick, now);
                runs.push(ScheduleRun::started(tick, &instance.id));
                busy = Some(instance.id.clone());
                instances.push(instance);
            }
            (Some(_), None) => {
                runs.push(ScheduleRun::buffered(tick));
                waiting = Some(tick);
            }
            (Some(running), Some(buffered)) => runs.push(ScheduleRun::skipped(
                tick,
                format!("the previous run {running} was still running and tick {buffered} already waited"),
            )),
        }
    }
    (instances, runs, waiting.is_some())
}

/// The instance the schedule's latest run started, if any.
fn last_instance(runs: &[ScheduleRun]) -> Option<String> {
    runs.iter().rev().find_map(|run| run.instance_id.clone())
}
