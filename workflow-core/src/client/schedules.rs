//! Managing schedules: create, update, pause, resume, trigger now, delete, describe, list. The
//! ticks themselves are fired by the runtimes' scheduler (`worker::scheduler`).

use super::Client;
use crate::error::Error;
use crate::schedule::{validate_schedule_id, Compiled, Schedule, ScheduleStatus, Spec};
use crate::store::{InstanceRecord, ScheduleRecord, WriteOp};

impl Client {
    /// Creates `schedule`; [`Error::ScheduleExists`] if its id is taken. A bad expression, time
    /// zone, id or input is an [`Error::InvalidArgument`] (or [`Error::InvalidInput`]); a
    /// workflow this client's runtime does not register, [`Error::UnknownWorkflow`]. It first
    /// fires at its first tick after now.
    pub async fn create_schedule(&self, schedule: Schedule) -> Result<(), Error> {
        let record = self.checked(&schedule)?;
        if self.store().put_schedule(&record, false).await? {
            self.wake_scheduler();
            Ok(())
        } else {
            Err(Error::ScheduleExists(schedule.id))
        }
    }

    /// Replaces the schedule with `schedule`'s id by `schedule` (its expression, zone, input,
    /// policies and pause); it fires next at its new expression's first tick after now. Its
    /// latest runs stay. [`Error::ScheduleNotFound`] if there is none.
    pub async fn update_schedule(&self, schedule: Schedule) -> Result<(), Error> {
        let record = self.checked(&schedule)?;
        if self.store().schedule(&schedule.id).await?.is_none() {
            return Err(Error::ScheduleNotFound(schedule.id));
        }
        self.store().put_schedule(&record, true).await?;
        self.wake_scheduler();
        Ok(())
    }

    /// Creates `schedule`, or replaces the one with its id (as [`Client::update_schedule`]) if
    /// its workflow or settings differ; what a schedule declared on the runtime builder does at
    /// start. A schedule an operator paused or resumed keeps that state.
    pub(crate) async fn declare_schedule(&self, schedule: Schedule) -> Result<(), Error> {
        let record = self.checked(&schedule)?;
        match self.store().schedule(&schedule.id).await? {
            Some(existing) if existing.workflow == record.workflow && existing.spec == record.spec => {}
            Some(existing) => {
                let next_fire_at = if existing.paused { existing.next_fire_at } else { record.next_fire_at };
                let record = ScheduleRecord { paused: existing.paused, next_fire_at, ..record };
                self.store().put_schedule(&record, true).await?;
            }
            None => {
                self.store().put_schedule(&record, false).await?;
            }
        }
        Ok(())
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

    /// Deletes the schedule `id` (the instances it started stay).
    pub async fn delete_schedule(&self, id: &str) -> Result<(), Error> {
        validate_schedule_id(id)?;
        if self.store().delete_schedule(id).await? {
            Ok(())
        } else {
            Err(Error::ScheduleNotFound(id.to_owned()))
        }
    }

    /// The schedule `id`: its settings, its next ticks and its latest runs.
    pub async fn schedule(&self, id: &str) -> Result<ScheduleStatus, Error> {
        Ok(ScheduleStatus::from_record(self.schedule_record(id).await?))
    }

    /// Every schedule, by id.
    pub async fn schedules(&self) -> Result<Vec<ScheduleStatus>, Error> {
        Ok(self.store().schedules().await?.into_iter().map(ScheduleStatus::from_record).collect())
    }

    async fn schedule_record(&self, id: &str) -> Result<ScheduleRecord, Error> {
        validate_schedule_id(id)?;
        self.store().schedule(id).await?.ok_or_else(|| Error::ScheduleNotFound(id.to_owned()))
    }

    async fn set_paused(&self, id: &str, paused: bool) -> Result<(), Error> {
        let record = self.schedule_record(id).await?;
        if record.paused == paused {
            return Ok(());
        }
        let spec = spec_of(&record)?;
        let compiled = Compiled::new(&spec).map_err(Error::InvalidArgument)?;
        let next_fire_at = if paused { record.next_fire_at } else { compiled.next_after(self.now()) };
        let updated = ScheduleRecord { paused, next_fire_at, updated_at: self.now(), ..record };
        self.store().put_schedule(&updated, true).await?;
        self.wake_scheduler();
        Ok(())
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
