//! Managing schedules: create, update, pause, resume, trigger now, delete, describe, list. The
//! ticks themselves are fired by the runtimes' scheduler (`worker::scheduler`).

use super::Client;
use crate::error::Error;
use crate::schedule::{next_version, runs_ahead, validate_schedule_id, Compiled, Schedule, ScheduleStatus, Spec};
use crate::store::{InstanceRecord, ScheduleChange, ScheduleRecord, StoreError, WriteOp};

/// How many times a change of a schedule reads it again when a fire (or another client) changed
/// it between the read and the write; a schedule fires at most once a second, so a change
/// seldom needs a second try.
const CHANGE_TRIES: usize = 16;

/// What a change makes of a schedule as stored now.
enum Edit {
    /// Nothing to change.
    Keep,
    /// Its new settings (the runs and the version are the change's).
    Replace(ScheduleRecord),
    /// Delete it.
    Delete,
}

impl Client {
    /// Creates `schedule`; [`Error::ScheduleExists`] if its id is taken. A bad expression, time
    /// zone, id or input is an [`Error::InvalidArgument`] (or [`Error::InvalidInput`]); a
    /// workflow this client's runtime does not register, [`Error::UnknownWorkflow`]. It first
    /// fires at its first tick after now.
    pub async fn create_schedule(&self, schedule: Schedule) -> Result<(), Error> {
        let record = self.checked(&schedule)?;
        if self.store().put_schedule(&record).await? {
            self.wake_scheduler();
            Ok(())
        } else {
            Err(Error::ScheduleExists(schedule.id))
        }
    }

    /// Replaces the schedule with `schedule`'s id by `schedule` (its expression, zone, input,
    /// policies and pause); it fires next at its new expression's first tick after now (a tick
    /// already fired ahead of its time is cancelled and fired again with the new settings). Its
    /// latest runs stay. [`Error::ScheduleNotFound`] if there is none.
    pub async fn update_schedule(&self, schedule: Schedule) -> Result<(), Error> {
        let record = self.checked(&schedule)?;
        self.change(&schedule.id, |_| Ok(Edit::Replace(record.clone()))).await?;
        self.wake_scheduler();
        Ok(())
    }

    /// Creates `schedule`, or replaces the one with its id (as [`Client::update_schedule`]) if
    /// its workflow or settings differ; what a schedule declared on the runtime builder does at
    /// start. A schedule an operator paused or resumed keeps that state.
    pub(crate) async fn declare_schedule(&self, schedule: Schedule) -> Result<(), Error> {
        let record = self.checked(&schedule)?;
        loop {
            let edit = |existing: &ScheduleRecord| {
                if existing.workflow == record.workflow && existing.spec == record.spec {
                    return Ok(Edit::Keep);
                }
                let next_fire_at = if existing.paused { existing.next_fire_at } else { record.next_fire_at };
                Ok(Edit::Replace(ScheduleRecord { paused: existing.paused, next_fire_at, ..record.clone() }))
            };
            match self.change(&schedule.id, edit).await {
                Err(Error::ScheduleNotFound(_)) if self.store().put_schedule(&record).await? => return Ok(()),
                // Created meanwhile by another process declaring it too: compare with that.
                Err(Error::ScheduleNotFound(_)) => continue,
                other => return other,
            }
        }
    }

    /// Pauses the schedule `id`: it fires nothing until resumed.
    pub async fn pause_schedule(&self, id: &str) -> Result<(), Error> {
        self.set_paused(id, true).await
    }

    /// Resumes the schedule `id`: it fires from its first tick after now (the ticks that passed
    /// while it was paused are not caught up).
    pub async fn resume_schedule(&self, id: &str) -> Result<(), Error> {
        self.set_paused(id, false).await
    }

    /// Starts the schedule's workflow now, with its input, outside its ticks (as the id
    /// `{id}-manual-{now}`), whatever its overlap policy; returns the instance id.
    pub async fn trigger_schedule(&self, id: &str) -> Result<String, Error> {
        let record = self.schedule_record(id).await?;
        let spec = spec_of(&record)?;
        let now = self.now();
        let instance = InstanceRecord::pending(format!("{id}-manual-{now}"), record.workflow, spec.input, now);
        let instance_id = instance.id.clone();
        match self.engine() {
            Some(engine) => engine.start_instance(instance, Vec::new()).await?,
            None => {
                let outcome = self.write(vec![WriteOp::CreateInstance(instance)]).await?;
                if !outcome.existing.is_empty() {
                    return Err(Error::InstanceExists(instance_id));
                }
            }
        }
        Ok(instance_id)
    }

    /// Deletes the schedule `id` (the instances it started stay, but for a tick fired ahead of
    /// its time that has not started: it is cancelled).
    pub async fn delete_schedule(&self, id: &str) -> Result<(), Error> {
        validate_schedule_id(id)?;
        self.change(id, |_| Ok(Edit::Delete)).await
    }

    /// The schedule `id`: its settings, its next ticks and its latest runs.
    pub async fn schedule(&self, id: &str) -> Result<ScheduleStatus, Error> {
        Ok(ScheduleStatus::from_record(self.schedule_record(id).await?, self.now()))
    }

    /// Every schedule, by id.
    pub async fn schedules(&self) -> Result<Vec<ScheduleStatus>, Error> {
        let now = self.now();
        Ok(self.store().schedules().await?.into_iter().map(|record| ScheduleStatus::from_record(record, now)).collect())
    }

    async fn schedule_record(&self, id: &str) -> Result<ScheduleRecord, Error> {
        validate_schedule_id(id)?;
        self.store().schedule(id).await?.ok_or_else(|| Error::ScheduleNotFound(id.to_owned()))
    }

    async fn set_paused(&self, id: &str, paused: bool) -> Result<(), Error> {
        validate_schedule_id(id)?;
        let now = self.now();
        self.change(id, |record| {
            if record.paused == paused {
                return Ok(Edit::Keep);
            }
            let compiled = Compiled::new(&spec_of(record)?).map_err(Error::InvalidArgument)?;
            let next_fire_at = if paused { record.next_fire_at } else { compiled.next_after(now) };
            Ok(Edit::Replace(ScheduleRecord { paused, next_fire_at, ..record.clone() }))
        })
        .await?;
        self.wake_scheduler();
        Ok(())
    }

    /// Changes the schedule `id` to what `edit` makes of it as stored now, in one store write
    /// that takes only if nothing changed it since it was read (read again otherwise). The
    /// change cancels the ticks the schedule fired ahead of their time that have not come yet,
    /// and drops their runs: they were fired under the settings being changed.
    async fn change(&self, id: &str, edit: impl Fn(&ScheduleRecord) -> Result<Edit, Error>) -> Result<(), Error> {
        for _ in 0..CHANGE_TRIES {
            let record = self.schedule_record(id).await?;
            let now = self.now();
            let version = next_version(record.updated_at, now);
            let (runs, cancel) = runs_ahead(&record.runs, now);
            let to = match edit(&record)? {
                Edit::Keep => return Ok(()),
                Edit::Replace(to) => Some(ScheduleRecord { runs, updated_at: version, ..to }),
                Edit::Delete => None,
            };
            let change = ScheduleChange { id: id.to_owned(), expected_updated_at: record.updated_at, to, cancel };
            if self.store().change_schedule(&change).await? {
                return Ok(());
            }
        }
        Err(Error::Store(StoreError::Backend(format!(
            "schedule {id:?} changed under each of {CHANGE_TRIES} tries to change it"
        ))))
    }

    /// `schedule` checked (and its workflow against this client's runtime, if it has one), as
    /// stored now.
    fn checked(&self, schedule: &Schedule) -> Result<ScheduleRecord, Error> {
        let compiled = schedule.check()?;
        if let Some(engine) = self.engine() {
            engine.registry().input_key(&schedule.workflow, &schedule.spec.input)?;
        }
        Ok(schedule.record(&compiled, self.now()))
    }

    fn wake_scheduler(&self) {
        if let Some(engine) = self.engine() {
            engine.wake_scheduler();
        }
    }
}

/// The spec of a stored schedule, which this engine wrote.
fn spec_of(record: &ScheduleRecord) -> Result<Spec, Error> {
    serde_json::from_str(&record.spec)
        .map_err(|e| Error::Store(crate::store::StoreError::Corrupt(format!("schedule {:?}: spec: {e}", record.id))))
}
