//! Schedules: a workflow started on a cron expression, exactly once per tick across every worker
//! on the store. [`Schedule`] is what a user declares; this module also owns the stored form
//! (the spec and the runs, as JSON in a `ScheduleRecord`) and the arithmetic of ticks: when a
//! schedule fires next, which due ticks a fire starts under its catch-up policy, and the id of a
//! tick's instance (derived from the schedule and the tick, so a tick never starts twice).
//!
//! Cron expressions are parsed and evaluated by the `croner` crate (five fields, or six with
//! seconds first), in a named time zone from `chrono-tz`; daylight-saving changes follow croner's
//! documented rules (a fixed-time job in a skipped hour runs just after the gap, once in a
//! repeated hour; interval jobs skip the gap and run in both passes of a repeated hour).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::model::{time, InstanceRecord, Millis, ScheduleRecord};
use crate::workflow::WorkflowDef;

/// The longest schedule id: a tick's instance id is the schedule id, `-` and the tick's
/// milliseconds (13 digits), within an instance id's 64.
pub const MAX_SCHEDULE_ID_LEN: usize = 40;

/// How many of a schedule's latest runs it remembers (for `describe`).
const RUNS_KEPT: usize = 10;

/// How long before its tick a schedule fires: the tick's instance is created then, due at the
/// tick (a delayed start), so a tick starts on time however many fall due together (10,000
/// schedules on one second take a few hundred ms to write). A schedule fires ahead only when no
/// overlap decision is left for the tick to make: it allows overlapping runs, or its previous
/// run has ended (which stays true), and never under [`Overlap::BufferOne`]. A change of the
/// schedule (update, pause, delete) cancels a tick fired ahead that has not started.
pub(crate) const FIRE_AHEAD_MS: Millis = 1_000;

/// The `updated_at` of a schedule written at `now` whose record read `updated_at`: every write
/// (a fire or a client's change) moves it on, so it versions the record and a conditional write
/// can tell the record changed since it was read.
pub(crate) fn next_version(updated_at: Millis, now: Millis) -> Millis {
    now.max(updated_at.saturating_add(1))
}

/// How often a schedule with a buffered tick ([`Overlap::BufferOne`]) looks whether the run it
/// waits for has ended.
pub(crate) const BUFFER_RECHECK_MS: Millis = 1_000;

/// The most ticks one fire starts under [`CatchUp::All`].
pub const MAX_CATCH_UP: u32 = 1_000;

/// What a schedule does with ticks that fell due while no worker fired it (every process was
/// stopped, say). Ticks that pass while a schedule is paused are never due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "policy", rename_all = "snake_case")]
pub enum CatchUp {
    /// Start only the latest due tick, however late; the earlier missed ones are skipped (the
    /// default: a nightly report missed for three nights runs once).
    #[default]
    Latest,
    /// Start no tick more than `grace_ms` late: a tick missed by longer is skipped.
    Skip {
        /// How late a tick may still start, in ms.
        grace_ms: u64,
    },
    /// Start every missed tick, oldest first, at most `max` of the latest (at most
    /// [`MAX_CATCH_UP`]).
    All {
        /// The most ticks one catch-up starts.
        max: u32,
    },
}

/// What a tick does while the instance its schedule started last is still running.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the tick (the default): at most one run at a time.
    #[default]
    Skip,
    /// Start it anyway: runs may overlap.
    AllowAll,
    /// Terminate the previous run (with its children), then start the tick.
    TerminatePrevious,
    /// Keep one tick waiting and start it as soon as the previous run ends (within a second of
    /// its end); further ticks while one waits are skipped. At most one run at a time, and no
    /// long run loses the tick after it.
    BufferOne,
}

impl Overlap {
    /// Whether a tick still to come may be fired ahead of its time ([`FIRE_AHEAD_MS`]): only
    /// when it has nothing left to decide at its time, that is when runs may overlap, or when
    /// the previous run has ended already (which stays true); never under
    /// [`Overlap::BufferOne`], whose waiting tick's recheck is not a tick either.
    pub(crate) fn fires_ahead(self, previous_running: bool) -> bool {
        match self {
            Overlap::AllowAll => true,
            Overlap::Skip | Overlap::TerminatePrevious => !previous_running,
            Overlap::BufferOne => false,
        }
    }
}

/// A schedule: start workflow `workflow` with `input` on every tick of a cron expression, in a
/// time zone. Declare it on the runtime builder (`Runtime::builder().schedule(...)`, written when
/// the runtime starts) or manage it through the client (`Client::create_schedule` and the rest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub(crate) id: String,
    pub(crate) workflow: String,
    pub(crate) spec: Spec,
    pub(crate) paused: bool,
}

/// A schedule's stored settings (JSON in the store).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub(crate) struct Spec {
    pub(crate) cron: String,
    pub(crate) time_zone: String,
    pub(crate) input: String,
    #[serde(default)]
    pub(crate) catch_up: CatchUp,
    #[serde(default)]
    pub(crate) overlap: Overlap,
    #[serde(default)]
    pub(crate) jitter_ms: u64,
    #[serde(default)]
    pub(crate) start_at: Option<Millis>,
    #[serde(default)]
    pub(crate) end_at: Option<Millis>,
}

impl Schedule {
    /// Workflow `W` with `input` on every tick of `cron` (five fields, or six with seconds
    /// first: `"0 */5 * * * *"` is every five minutes), in UTC unless [`Schedule::time_zone`]
    /// says otherwise. The expression is checked when the schedule is written.
    pub fn of<W: WorkflowDef>(id: impl Into<String>, cron: impl Into<String>, input: &W::Input) -> Self {
        // An input that does not serialize is refused when the schedule is written.
        let input = serde_json::to_string(input).unwrap_or_default();
        Self::untyped(id, W::NAME, cron, input)
    }

    /// A schedule of a workflow by name with JSON input (for callers without its Rust types).
    pub fn untyped(
        id: impl Into<String>,
        workflow: impl Into<String>,
        cron: impl Into<String>,
        input: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            workflow: workflow.into(),
            spec: Spec { cron: cron.into(), time_zone: "UTC".into(), input: input.into(), ..Spec::default() },
            paused: false,
        }
    }

    /// The IANA time zone the expression is read in (`"Europe/Paris"`; `"UTC"` by default).
    pub fn time_zone(mut self, zone: impl Into<String>) -> Self {
        self.spec.time_zone = zone.into();
        self
    }

    /// What to do with ticks missed while no worker ran ([`CatchUp::Latest`] by default).
    pub fn catch_up(mut self, policy: CatchUp) -> Self {
        self.spec.catch_up = policy;
        self
    }

    /// What a tick does while the previous run still goes ([`Overlap::Skip`] by default).
    pub fn overlap(mut self, policy: Overlap) -> Self {
        self.spec.overlap = policy;
        self
    }

    /// Starts each tick's instance up to `jitter` after the tick (a random delay, so many
    /// schedules on the same minute do not all start at once). Its id is still the tick's.
    pub fn jitter(mut self, jitter: Duration) -> Self {
        self.spec.jitter_ms = u64::try_from(jitter.as_millis()).unwrap_or(u64::MAX);
        self
    }

    /// No tick before `at`.
    pub fn start_at(mut self, at: std::time::SystemTime) -> Self {
        self.spec.start_at = Some(system_ms(at));
        self
    }

    /// No tick after `at`: the schedule then has nothing left to fire (it stays, to describe).
    pub fn end_at(mut self, at: std::time::SystemTime) -> Self {
        self.spec.end_at = Some(system_ms(at));
        self
    }

    /// Written paused: it fires nothing until resumed (`Client::resume_schedule`), and ticks
    /// that pass while paused are never due.
    pub fn paused(mut self, paused: bool) -> Self {
        self.paused = paused;
        self
    }

    /// The schedule id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Checks everything a store cannot: the id, the workflow name, the expression, the time
    /// zone, the input's JSON and the policies; returns the compiled expression.
    pub(crate) fn check(&self) -> Result<Compiled, Error> {
        validate_schedule_id(&self.id)?;
        crate::client::validate_workflow_name(&self.workflow)?;
        serde_json::from_str::<serde_json::Value>(&self.spec.input)
            .map_err(|e| Error::InvalidInput { workflow: self.workflow.clone(), message: e.to_string() })?;
        if let CatchUp::All { max } = self.spec.catch_up {
            if max == 0 || max > MAX_CATCH_UP {
                return Err(Error::InvalidArgument(format!(
                    "a catch-up of all missed ticks takes a bound from 1 to {MAX_CATCH_UP}, got {max}"
                )));
            }
        }
        if let (Some(start), Some(end)) = (self.spec.start_at, self.spec.end_at) {
            if end < start {
                return Err(Error::InvalidArgument("a schedule's end is before its start".into()));
            }
        }
        Compiled::new(&self.spec).map_err(Error::InvalidArgument)
    }

    /// The stored form, first firing after `now`.
    pub(crate) fn record(&self, compiled: &Compiled, now: Millis) -> ScheduleRecord {
        ScheduleRecord {
            id: self.id.clone(),
            workflow: self.workflow.clone(),
            spec: serde_json::to_string(&self.spec).unwrap_or_default(),
            paused: self.paused,
            next_fire_at: compiled.next_after(now),
            runs: "[]".into(),
            created_at: now,
            updated_at: now,
        }
    }
}

fn system_ms(at: std::time::SystemTime) -> Millis {
    at.duration_since(std::time::UNIX_EPOCH).map_or(0, time::millis)
}

/// Schedule ids: 1 to [`MAX_SCHEDULE_ID_LEN`] letters, digits, `-` or `_`.
pub(crate) fn validate_schedule_id(id: &str) -> Result<(), Error> {
    let fine = !id.is_empty()
        && id.len() <= MAX_SCHEDULE_ID_LEN
        && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if fine {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "schedule id {id:?} must be 1 to {MAX_SCHEDULE_ID_LEN} letters, digits, `-` or `_`"
        )))
    }
}

/// The instance id of `schedule`'s tick at `tick`.
pub(crate) fn tick_instance_id(schedule: &str, tick: Millis) -> String {
    format!("{schedule}-{tick}")
}

/// A schedule's expression and time zone, parsed, with its bounds.
pub(crate) struct Compiled {
    cron: Cron,
    zone: Tz,
    start_at: Option<Millis>,
    end_at: Option<Millis>,
}

impl Compiled {
    pub(crate) fn new(spec: &Spec) -> Result<Self, String> {
        let cron = Cron::from_str(&spec.cron).map_err(|e| format!("invalid cron expression {:?}: {e}", spec.cron))?;
        let zone = Tz::from_str(&spec.time_zone)
            .map_err(|_| format!("unknown time zone {:?} (an IANA name, like \"Europe/Paris\")", spec.time_zone))?;
        Ok(Self { cron, zone, start_at: spec.start_at, end_at: spec.end_at })
    }

    fn at(&self, ms: Millis) -> Option<DateTime<Tz>> {
        self.zone.timestamp_millis_opt(ms).single()
    }

    /// The first tick strictly after `after`, within the schedule's bounds.
    pub(crate) fn next_after(&self, after: Millis) -> Option<Millis> {
        let after = match self.start_at {
            Some(start) if start > after => start - 1,
            _ => after,
        };
        // Ticks fall on whole seconds: strictly after `after` is strictly after its second.
        let from = self.at(after.div_euclid(1000) * 1000)?;
        let next = self.cron.find_next_occurrence(&from, false).ok()?.with_timezone(&Utc).timestamp_millis();
        self.end_at.is_none_or(|end| next <= end).then_some(next)
    }

    /// The due ticks a fire at `now` starts, oldest first, for a schedule next due at `due`
    /// (`due <= now`), under `catch_up`.
    pub(crate) fn due_ticks(&self, due: Millis, now: Millis, catch_up: CatchUp) -> Vec<Millis> {
        let (keep, oldest) = match catch_up {
            CatchUp::Latest => (1, due),
            CatchUp::Skip { grace_ms } => {
                (MAX_CATCH_UP as usize, due.max(now.saturating_sub(i64::try_from(grace_ms).unwrap_or(i64::MAX))))
            }
            CatchUp::All { max } => (max.clamp(1, MAX_CATCH_UP) as usize, due),
        };
        let Some(from) = self.at(now) else { return Vec::new() };
        let mut ticks: Vec<Millis> = Vec::new();
        // Backwards from now, inclusive, down to the oldest tick that may start.
        if let Ok(latest) = self.cron.find_previous_occurrence(&from, true) {
            let mut tick = latest;
            loop {
                let ms = tick.with_timezone(&Utc).timestamp_millis();
                if ms < oldest || ticks.len() >= keep {
                    break;
                }
                if self.end_at.is_none_or(|end| ms <= end) && self.start_at.is_none_or(|start| ms >= start) {
                    ticks.push(ms);
                }
                match self.cron.find_previous_occurrence(&tick, false) {
                    Ok(earlier) => tick = earlier,
                    Err(_) => break,
                }
            }
        }
        ticks.reverse();
        ticks
    }

    /// The next `count` ticks after `after`.
    pub(crate) fn upcoming(&self, after: Millis, count: usize) -> Vec<Millis> {
        let mut ticks = Vec::with_capacity(count);
        let mut from = after;
        while ticks.len() < count {
            match self.next_after(from) {
                Some(next) => {
                    ticks.push(next);
                    from = next;
                }
                None => break,
            }
        }
        ticks
    }
}

/// One of a schedule's latest runs: a tick and the instance it started, or why it started none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleRun {
    /// The tick (ms since the Unix epoch), or when a trigger started it.
    pub tick: Millis,
    /// The instance it started, if it started one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    /// Why it started none (the previous run still went, under [`Overlap::Skip`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
    /// Whether it waits for the previous run to end ([`Overlap::BufferOne`]); it starts then,
    /// and this run then names its instance.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub buffered: bool,
}

impl ScheduleRun {
    /// A tick that started `instance_id`.
    pub(crate) fn started(tick: Millis, instance_id: &str) -> Self {
        Self { tick, instance_id: Some(instance_id.to_owned()), skipped: None, buffered: false }
    }

    /// A tick that waits for the previous run to end.
    pub(crate) fn buffered(tick: Millis) -> Self {
        Self { tick, instance_id: None, skipped: None, buffered: true }
    }

    /// A tick that started nothing, and why.
    pub(crate) fn skipped(tick: Millis, why: String) -> Self {
        Self { tick, instance_id: None, skipped: Some(why), buffered: false }
    }
}

/// A schedule's `runs` (read from its record) with `new` appended, the latest [`RUNS_KEPT`]
/// kept (and a buffered run however old: it has yet to start), as the record's JSON.
pub(crate) fn runs_after(mut all: Vec<ScheduleRun>, new: impl IntoIterator<Item = ScheduleRun>) -> String {
    all.extend(new);
    let skip = all.len().saturating_sub(RUNS_KEPT);
    let kept: Vec<&ScheduleRun> = all[..skip].iter().filter(|run| run.buffered).chain(all[skip..].iter()).collect();
    serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into())
}

/// The ticks a schedule fired ahead of their time (the scheduler creates a tick's instance up to
/// [`FIRE_AHEAD_MS`] before it, due at the tick): the runs of `runs` (a record's JSON) whose tick
/// is after `now` and that started an instance. Returns the other runs (JSON) and those
/// instances' ids, which a change of the schedule cancels.
pub(crate) fn runs_ahead(runs: &str, now: Millis) -> (String, Vec<String>) {
    let all: Vec<ScheduleRun> = serde_json::from_str(runs).unwrap_or_default();
    let (ahead, kept): (Vec<ScheduleRun>, Vec<ScheduleRun>) =
        all.into_iter().partition(|run| run.tick > now && run.instance_id.is_some());
    let cancel = ahead.into_iter().filter_map(|run| run.instance_id).collect();
    (serde_json::to_string(&kept).unwrap_or_else(|_| "[]".into()), cancel)
}

/// What a schedule is and what it did: [`Client::schedule`](crate::Client::schedule) and
/// [`Client::schedules`](crate::Client::schedules).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleStatus {
    /// The schedule id.
    pub id: String,
    /// The workflow it starts.
    pub workflow: String,
    /// The cron expression.
    pub cron: String,
    /// The time zone it is read in.
    pub time_zone: String,
    /// The input each run starts with (JSON).
    pub input: String,
    /// The catch-up policy.
    pub catch_up: CatchUp,
    /// The overlap policy.
    pub overlap: Overlap,
    /// Whether it is paused.
    pub paused: bool,
    /// Its next ticks (up to 5; none while paused or past its end).
    pub next_runs: Vec<Millis>,
    /// Its latest runs, oldest first.
    pub recent_runs: Vec<ScheduleRun>,
}

impl ScheduleStatus {
    /// The status of `record` at `now` (whose spec the engine wrote; a spec that does not read
    /// shows what does).
    pub(crate) fn from_record(record: ScheduleRecord, now: Millis) -> Self {
        let spec: Option<Spec> = serde_json::from_str(&record.spec).ok();
        let compiled = spec.as_ref().and_then(|spec| Compiled::new(spec).ok());
        let recent_runs: Vec<ScheduleRun> = serde_json::from_str(&record.runs).unwrap_or_default();
        // From just before its next fire, which may be a buffered tick's recheck rather than a
        // tick (a recheck is never later than the next tick), or its first tick fired ahead that
        // is still to come.
        let ahead = recent_runs.iter().filter(|run| run.tick > now && run.instance_id.is_some()).map(|run| run.tick);
        let next_runs = match (&compiled, ahead.chain(record.next_fire_at).min()) {
            (Some(compiled), Some(next)) if !record.paused => compiled.upcoming(next.saturating_sub(1), 5),
            _ => Vec::new(),
        };
        let spec = spec.unwrap_or_default();
        Self {
            recent_runs,
            id: record.id,
            workflow: record.workflow,
            cron: spec.cron,
            time_zone: spec.time_zone,
            input: spec.input,
            catch_up: spec.catch_up,
            overlap: spec.overlap,
            paused: record.paused,
            next_runs,
        }
    }
}

/// The instance a tick starts: Pending, due at the tick plus `jitter` (if any).
pub(crate) fn tick_instance(record: &ScheduleRecord, spec: &Spec, tick: Millis, now: Millis) -> InstanceRecord {
    let jitter = if spec.jitter_ms == 0 {
        0
    } else {
        let bits = uuid::Uuid::new_v4().as_u128();
        i64::try_from(bits % u128::from(spec.jitter_ms)).unwrap_or(0)
    };
    let due = tick.saturating_add(jitter);
    InstanceRecord {
        wake_at: (due > now).then_some(due),
        ..InstanceRecord::pending(tick_instance_id(&record.id, tick), record.workflow.clone(), spec.input.clone(), now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(cron: &str, zone: &str) -> Compiled {
        Compiled::new(&Schedule::untyped("s", "w", cron, "null").time_zone(zone).spec).expect("a valid schedule")
    }

    #[test]
    fn ticks_come_from_the_expression_in_its_zone() {
        // 2026-01-01T00:00:00Z.
        let new_year = 1_767_225_600_000;
        let every_second = compiled("* * * * * *", "UTC");
        assert_eq!(every_second.next_after(new_year), Some(new_year + 1_000));
        assert_eq!(every_second.next_after(new_year + 500), Some(new_year + 1_000));
        assert_eq!(every_second.upcoming(new_year, 3), [new_year + 1_000, new_year + 2_000, new_year + 3_000]);
        // 09:00 in Paris is 08:00 UTC in winter.
        let nine_in_paris = compiled("0 0 9 * * *", "Europe/Paris");
        assert_eq!(nine_in_paris.next_after(new_year), Some(new_year + 8 * 3_600_000));
        assert!(Compiled::new(&Schedule::untyped("s", "w", "not cron", "null").spec).is_err());
        assert!(
            Compiled::new(&Schedule::untyped("s", "w", "* * * * *", "null").time_zone("Mars/Olympus").spec).is_err()
        );
    }

    /// Berlin's clocks jump from 02:00 to 03:00 on 2026-03-29 and fall back from 03:00 to 02:00
    /// on 2026-10-25. As croner documents: a fixed-time job whose time falls in the gap runs
    /// just after it, and once in the repeated hour; an interval job runs in both passes.
    #[test]
    fn daylight_saving_changes_follow_the_cron_crate() {
        let half_past_two = compiled("0 30 2 * * *", "Europe/Berlin");
        // From 2026-03-27T00:00Z: 02:30 CET (01:30Z) on the 27th and the 28th, 03:00 CEST (01:00Z)
        // on the 29th, just after the gap, and 02:30 CEST (00:30Z) on the 30th.
        let spring = [1_774_575_000_000, 1_774_661_400_000, 1_774_746_000_000, 1_774_830_600_000];
        assert_eq!(half_past_two.upcoming(1_774_569_600_000, 4), spring);
        // From 2026-10-23T00:00Z: 02:30 CEST (00:30Z) on the 23rd, 24th and 25th (the first of
        // that day's two 02:30s, and only that one), then 02:30 CET (01:30Z) on the 26th.
        let autumn = [1_792_715_400_000, 1_792_801_800_000, 1_792_888_200_000, 1_792_978_200_000];
        assert_eq!(half_past_two.upcoming(1_792_713_600_000, 4), autumn);
        // Every half hour through the repeated hour: 02:00 and 02:30 twice each.
        let half_hourly = compiled("0 */30 * * * *", "Europe/Berlin");
        let from = 1_792_886_400_000 - 1; // just before 2026-10-25T00:00Z (02:00 CEST)
        assert_eq!(
            half_hourly.upcoming(from, 5),
            [1_792_886_400_000, 1_792_888_200_000, 1_792_890_000_000, 1_792_891_800_000, 1_792_893_600_000]
        );
    }

    #[test]
    fn catch_up_policies_pick_the_due_ticks() {
        let t0 = 1_767_225_600_000;
        let every_second = compiled("* * * * * *", "UTC");
        // Due since t0 + 1 s, now t0 + 5.5 s: ticks 1..=5 are due.
        let (due, now) = (t0 + 1_000, t0 + 5_500);
        assert_eq!(every_second.due_ticks(due, now, CatchUp::Latest), [t0 + 5_000]);
        assert_eq!(every_second.due_ticks(due, now, CatchUp::All { max: 10 }), [1, 2, 3, 4, 5].map(|s| t0 + s * 1_000));
        assert_eq!(every_second.due_ticks(due, now, CatchUp::All { max: 2 }), [t0 + 4_000, t0 + 5_000]);
        assert_eq!(every_second.due_ticks(due, now, CatchUp::Skip { grace_ms: 1_000 }), [t0 + 5_000]);
        assert!(every_second.due_ticks(due, now, CatchUp::Skip { grace_ms: 100 }).is_empty());
    }

    #[test]
    fn schedule_ids_leave_room_for_the_tick() {
        assert!(validate_schedule_id(&"a".repeat(MAX_SCHEDULE_ID_LEN)).is_ok());
        for bad in ["", "has space", "slash/", &"a".repeat(MAX_SCHEDULE_ID_LEN + 1)] {
            assert!(validate_schedule_id(bad).is_err(), "{bad:?}");
        }
        assert!(tick_instance_id(&"a".repeat(MAX_SCHEDULE_ID_LEN), 9_999_999_999_999).len() <= 64);
    }
}
