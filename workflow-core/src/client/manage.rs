//! Managing instances: terminate, suspend, resume, purge, retention, history, rerun, diagrams.
//! Each change of state is conditional on the status it expects (`AssertStatus`), so it never
//! overwrites a change that raced it.

use std::collections::HashMap;
use std::future::IntoFuture;
use std::time::Duration;

use super::{id_or_new, Client, Ending, InstanceStatus};
use crate::diagram::{render_mermaid, render_svg, render_text, DiagramInstance, DiagramStep};
use crate::error::{Error, FailureDetails};
use crate::model::time::millis;
use crate::model::BoxFuture;
use crate::store::{
    EventRecord, InstanceKey, InstanceQuery, InstanceRecord, JournalRecord, Millis, RuntimeStatus, StoreError, WriteOp,
    NEVER,
};

/// One entry of an instance's history ([`Client::history`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HistoryEvent {
    /// The instance was created with this input.
    Created {
        /// When.
        at: Millis,
        /// The workflow.
        workflow: String,
        /// Its input (JSON).
        input: String,
    },
    /// One durable operation, as journaled.
    Step(JournalRecord),
    /// An event waiting in the inbox, not yet taken by the workflow.
    EventBuffered(EventRecord),
    /// The instance's current status, last.
    Status(InstanceStatus),
}

/// How long finished instances are kept before [`Client::purge_expired`] (or a runtime with
/// [`RuntimeBuilder::retention`](crate::RuntimeBuilder::retention)) purges them, per terminal
/// status. `None` keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    /// Age (since they finished) at which Completed instances are purged.
    pub completed: Option<Duration>,
    /// Age at which Failed instances are purged.
    pub failed: Option<Duration>,
    /// Age at which Terminated instances are purged.
    pub terminated: Option<Duration>,
}

impl RetentionPolicy {
    /// Every terminal status kept for `age`.
    pub fn all(age: Duration) -> Self {
        Self { completed: Some(age), failed: Some(age), terminated: Some(age) }
    }

    pub(crate) fn ages(&self) -> impl Iterator<Item = (RuntimeStatus, Duration)> {
        [
            (RuntimeStatus::Completed, self.completed),
            (RuntimeStatus::Failed, self.failed),
            (RuntimeStatus::Terminated, self.terminated),
        ]
        .into_iter()
        .filter_map(|(status, age)| age.map(|age| (status, age)))
    }
}

/// Expired instances [`Client::purge_expired`] reads (as keys) and purges per page.
const RETENTION_PAGE: usize = 500;

/// The statuses of an instance that has not ended.
pub(super) const NOT_FINISHED: [RuntimeStatus; 4] =
    [RuntimeStatus::Pending, RuntimeStatus::Running, RuntimeStatus::Suspended, RuntimeStatus::ContinuedAsNew];
const FINISHED: [RuntimeStatus; 3] = [RuntimeStatus::Completed, RuntimeStatus::Failed, RuntimeStatus::Terminated];

/// A store refusal of an `AssertStatus` as the typed error of the operation that asked.
pub(super) fn status_error(error: Error, wrong_state: impl Fn(String, RuntimeStatus) -> Error) -> Error {
    match error {
        Error::Store(StoreError::Conflict { id, status: None }) => Error::InstanceNotFound(id),
        Error::Store(StoreError::Conflict { id, status: Some(status) }) => wrong_state(id, status),
        other => other,
    }
}

/// A terminate of one instance: `.recursive(false)` leaves its descendants; `.await` it.
#[must_use = "a terminate does nothing until it is awaited"]
#[derive(Debug)]
pub struct Terminate<'a> {
    client: &'a Client,
    instance_id: &'a str,
    reason: Option<&'a str>,
    recursive: bool,
}

impl Terminate<'_> {
    /// Whether running descendants are terminated too (yes by default).
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }
}

impl<'a> IntoFuture for Terminate<'a> {
    type Output = Result<(), Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            // A descendant that finishes between the read and the write must keep its outcome:
            // each one is written only if it still runs, and the walk is retried if one changed.
            let (client, id, reason, recursive) = (self.client, self.instance_id, self.reason, self.recursive);
            for _ in 0..5 {
                match client.try_terminate(id, reason, recursive).await {
                    Err(Error::Store(StoreError::Conflict { id: changed, .. })) if changed != id => continue,
                    other => return other,
                }
            }
            client.try_terminate(id, reason, recursive).await
        })
    }
}

/// A purge of one finished instance: `.recursive(false)` leaves its descendants; `.await` it for
/// how many instances were purged.
#[must_use = "a purge does nothing until it is awaited"]
#[derive(Debug)]
pub struct Purge<'a> {
    client: &'a Client,
    instance_id: &'a str,
    recursive: bool,
}

impl Purge<'_> {
    /// Whether descendants are purged too (yes by default).
    pub fn recursive(mut self, recursive: bool) -> Self {
        self.recursive = recursive;
        self
    }
}

impl<'a> IntoFuture for Purge<'a> {
    type Output = Result<usize, Error>;
    type IntoFuture = BoxFuture<'a, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.client.purge_now(self.instance_id, self.recursive))
    }
}

impl Client {
    /// The instance's record; an id no instance can have (one that fails
    /// [`validate_instance_id`](super::validate_instance_id)) is refused before the store is asked.
    async fn instance_record(&self, instance_id: &str) -> Result<InstanceRecord, Error> {
        super::validate_instance_id(instance_id)?;
        self.store().instance(instance_id).await?.ok_or_else(|| Error::InstanceNotFound(instance_id.to_owned()))
    }

    /// Stops this process's run of each instance at once (elsewhere, a run finds out at its next
    /// commit, which the store refuses).
    fn stop_local_runs<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Some(engine) = self.engine() {
            for id in ids {
                engine.supersede(id, "a client changed the instance");
            }
        }
    }

    /// Terminates a running, pending or suspended instance and every descendant still running:
    /// each ends Terminated with `reason` as its failure message, runs no further step, and a
    /// parent waiting on a terminated child sees it fail. [`Error::InstanceFinished`] if it has
    /// already finished. `.recursive(false)` leaves the descendants running.
    pub fn terminate<'a>(&'a self, instance_id: &'a str, reason: Option<&'a str>) -> Terminate<'a> {
        Terminate { client: self, instance_id, reason, recursive: true }
    }

    async fn try_terminate(&self, instance_id: &str, reason: Option<&str>, recursive: bool) -> Result<(), Error> {
        let root = self.instance_record(instance_id).await?;
        let mut targets = vec![root];
        if recursive {
            targets.extend(self.descendants(instance_id).await?.into_iter().filter(|c| !c.status.is_terminal()));
        }
        let now = self.now();
        let ending = Ending::terminated(reason.unwrap_or("terminated by a client"));
        let mut ops: Vec<WriteOp> = targets
            .iter()
            .map(|target| WriteOp::AssertStatus { id: target.id.clone(), allowed: NOT_FINISHED.to_vec() })
            .collect();
        ops.extend(targets.iter().flat_map(|target| ending.ops(target, now)));
        match self.write(ops).await {
            Err(Error::Store(StoreError::Conflict { id, status })) if id == instance_id => {
                return Err(match status {
                    None => Error::InstanceNotFound(id),
                    Some(_) => Error::InstanceFinished(id),
                });
            }
            other => {
                other?;
            }
        }
        self.stop_local_runs(targets.iter().map(|t| t.id.as_str()));
        if let Some(engine) = self.engine() {
            for target in &targets {
                engine.notify_completion(&ending.status(target, target.custom_status.clone(), now));
            }
        }
        Ok(())
    }

    /// Suspends a pending or running instance: it runs no new step (an attempt under way may
    /// finish, and its outcome is not recorded; it runs again after the resume), and events
    /// raised meanwhile are buffered. Suspending a suspended instance changes nothing.
    pub async fn suspend(&self, instance_id: &str, reason: Option<&str>) -> Result<(), Error> {
        super::validate_instance_id(instance_id)?;
        let now = self.now();
        let ops = vec![
            WriteOp::AssertStatus {
                id: instance_id.to_owned(),
                allowed: vec![RuntimeStatus::Pending, RuntimeStatus::Running, RuntimeStatus::Suspended],
            },
            WriteOp::SetStatus { id: instance_id.to_owned(), status: RuntimeStatus::Suspended, updated_at: now },
            // Nobody owns it while suspended: the run that held it is refused its next commit.
            WriteOp::Evict { id: instance_id.to_owned(), wake_at: NEVER },
        ];
        self.write(ops).await.map_err(|e| status_error(e, |id, _| Error::InstanceFinished(id)))?;
        tracing::info!(instance_id, reason = reason.unwrap_or(""), "instance suspended");
        self.stop_local_runs([instance_id]);
        Ok(())
    }

    /// Resumes a suspended instance: it is replayed and continues from its last recorded step.
    /// [`Error::NotSuspended`] if it is not suspended.
    pub async fn resume(&self, instance_id: &str, reason: Option<&str>) -> Result<(), Error> {
        super::validate_instance_id(instance_id)?;
        let now = self.now();
        let ops = vec![
            WriteOp::AssertStatus { id: instance_id.to_owned(), allowed: vec![RuntimeStatus::Suspended] },
            WriteOp::SetStatus { id: instance_id.to_owned(), status: RuntimeStatus::Running, updated_at: now },
            WriteOp::SetWake { id: instance_id.to_owned(), wake_at: Some(now) },
        ];
        self.write(ops).await.map_err(|e| status_error(e, |id, status| Error::NotSuspended { id, status }))?;
        tracing::info!(instance_id, reason = reason.unwrap_or(""), "instance resumed");
        Ok(())
    }

    /// Deletes a finished instance and every row of it (journal, events, tasks), with its
    /// descendants; `.await` it for how many instances were purged. [`Error::NotFinished`] if it,
    /// or a descendant, has not finished. `.recursive(false)` leaves the descendants.
    pub fn purge<'a>(&'a self, instance_id: &'a str) -> Purge<'a> {
        Purge { client: self, instance_id, recursive: true }
    }

    async fn purge_now(&self, instance_id: &str, recursive: bool) -> Result<usize, Error> {
        self.instance_record(instance_id).await?;
        let mut ids = vec![instance_id.to_owned()];
        if recursive {
            ids.extend(self.descendants(instance_id).await?.into_iter().map(|child| child.id));
        }
        let mut ops: Vec<WriteOp> =
            ids.iter().map(|id| WriteOp::AssertStatus { id: id.clone(), allowed: FINISHED.to_vec() }).collect();
        ops.extend(ids.iter().map(|id| WriteOp::Purge { id: id.clone() }));
        self.write(ops).await.map_err(|e| status_error(e, |id, status| Error::NotFinished { id, status }))?;
        Ok(ids.len())
    }

    /// Purges instances finished longer ago than `policy` allows, each root with its descendants;
    /// returns how many instances were purged.
    ///
    /// A child is never purged on its own: it goes with its parent (the parent may still run and
    /// replay the call), unless its parent is gone (purged with `.recursive(false)`), when it
    /// counts as a root. A root with a descendant still running is kept for a later pass. The
    /// expired instances are read a page of keys at a time ([`Store::list_keys`], no payloads),
    /// each page purged before the next is read. An instance whose rows do not read back (a
    /// [`StoreError::Corrupt`] row, an id no instance can have) is left in place with a warning,
    /// and the pass goes on; one whose key (id, creation time, parent) does not read is passed
    /// only by the instances before it in list order: it ends the pass over its status.
    /// A store that fails (a backend error) fails the call.
    ///
    /// [`Store::list_keys`]: crate::store::Store::list_keys
    pub async fn purge_expired(&self, policy: &RetentionPolicy) -> Result<usize, Error> {
        let mut purged = 0;
        for (status, age) in policy.ages() {
            let cutoff = self.now().saturating_sub(millis(age));
            let mut expired = InstanceQuery {
                statuses: vec![status],
                updated_before: Some(cutoff),
                limit: RETENTION_PAGE,
                ..InstanceQuery::default()
            };
            loop {
                let page = match self.store().list_keys(&expired).await {
                    Ok(page) => page,
                    // A key that does not read: smaller pages reach the instances before it.
                    Err(StoreError::Corrupt(_)) if expired.limit > 1 => {
                        expired.limit /= 2;
                        continue;
                    }
                    Err(StoreError::Corrupt(message)) => {
                        let status = status.as_str();
                        tracing::warn!(status, %message, "retention cannot read past an expired instance's key");
                        break;
                    }
                    Err(error) => return Err(error.into()),
                };
                purged += self.purge_expired_page(&page).await?;
                if page.len() < expired.limit {
                    break;
                }
                expired.after = page.last().map(|last| (last.created_at, last.id.clone()));
            }
        }
        Ok(purged)
    }

    /// Purges the roots of one page of expired keys with their descendants; how many instances.
    async fn purge_expired_page(&self, page: &[InstanceKey]) -> Result<usize, Error> {
        let mut purged = 0;
        // Whether each parent seen on this page is still there (one read per parent per page).
        let mut parents: HashMap<&str, bool> = HashMap::new();
        for key in page {
            if let Some(parent) = key.parent_id.as_deref() {
                let exists = match parents.get(parent) {
                    Some(&exists) => exists,
                    None => {
                        let exists = match self.store().instance(parent).await {
                            Ok(found) => found.is_some(),
                            // There, if unreadable: its child stays with it.
                            Err(StoreError::Corrupt(_)) => true,
                            Err(error) => return Err(error.into()),
                        };
                        parents.insert(parent, exists);
                        exists
                    }
                };
                if exists {
                    continue;
                }
            }
            match self.purge(&key.id).await {
                Ok(n) => purged += n,
                // Purged with its parent already, or a descendant still runs: later.
                Err(Error::InstanceNotFound(_) | Error::NotFinished { .. }) => {}
                Err(error @ Error::Store(StoreError::Backend(_))) => return Err(error),
                Err(error) => {
                    tracing::warn!(instance_id = %key.id, %error, "retention left an expired instance it cannot read");
                }
            }
        }
        Ok(purged)
    }

    /// Everything recorded about an instance: its creation, every journaled step of its current
    /// generation in seq order, the events buffered for it, and its status.
    pub async fn history(&self, instance_id: &str) -> Result<Vec<HistoryEvent>, Error> {
        let record = self.instance_record(instance_id).await?;
        let journal = self.store().journal(instance_id, record.generation).await?;
        let events = self.store().events(instance_id).await?;
        let mut history = vec![HistoryEvent::Created {
            at: record.created_at,
            workflow: record.workflow.clone(),
            input: record.input.clone(),
        }];
        history.extend(journal.into_iter().map(HistoryEvent::Step));
        history.extend(events.into_iter().map(HistoryEvent::EventBuffered));
        history.push(HistoryEvent::Status(InstanceStatus::from(record)));
        Ok(history)
    }

    /// Forks a finished instance into a new one (id `new_id`, generated when `None`) that keeps
    /// the source's recorded steps before seq `from_seq` and runs the rest live, with
    /// `new_input` (JSON) or the source's input. Returns the new id.
    pub async fn rerun(
        &self,
        source_id: &str,
        from_seq: u32,
        new_id: Option<&str>,
        new_input: Option<&str>,
    ) -> Result<String, Error> {
        let source = self.instance_record(source_id).await?;
        if !source.status.is_terminal() {
            return Err(Error::NotFinished { id: source_id.to_owned(), status: source.status });
        }
        let id = id_or_new(new_id)?;
        let input = new_input.unwrap_or(&source.input);
        serde_json::from_str::<serde_json::Value>(input)
            .map_err(|e| Error::InvalidInput { workflow: source.workflow.clone(), message: e.to_string() })?;
        // The key of the new input, if this process knows the workflow; the source's otherwise
        // (the same input, or one no registry here can read).
        let mut concurrency_key = source.concurrency_key.clone();
        if let Some(engine) = self.engine() {
            match engine.registry().input_key(&source.workflow, input) {
                Ok(key) => concurrency_key = key,
                Err(Error::UnknownWorkflow(_)) => {}
                Err(error) => return Err(error),
            }
        }
        let journal = self.store().journal(source_id, source.generation).await?;
        let now = self.now();
        let record = InstanceRecord {
            priority: source.priority,
            concurrency_key,
            ..InstanceRecord::pending(id.clone(), source.workflow.clone(), input, now)
        };
        let mut ops = vec![WriteOp::CreateInstance(record)];
        ops.extend(
            journal
                .into_iter()
                .filter(|step| step.seq < from_seq)
                .map(|step| WriteOp::PutRecord(JournalRecord { instance_id: id.clone(), generation: 0, ..step })),
        );
        let outcome = self.write(ops).await?;
        if !outcome.existing.is_empty() {
            return Err(Error::InstanceExists(id));
        }
        Ok(id)
    }

    /// The instance's journal drawn as a Mermaid flowchart (steps in order, fan-outs side by
    /// side, retries, timers, events, children, failures).
    pub async fn diagram(&self, instance_id: &str) -> Result<String, Error> {
        self.drawn(instance_id, render_mermaid).await
    }

    /// The same diagram as [`Client::diagram`], as text for a terminal: one line per node, marked
    /// by state, a fan-out's branches listed under its fork.
    pub async fn diagram_text(&self, instance_id: &str) -> Result<String, Error> {
        self.drawn(instance_id, render_text).await
    }

    /// The same diagram as [`Client::diagram`], drawn as a standalone SVG picture (every label
    /// escaped as XML text), for a page or a file.
    pub async fn diagram_svg(&self, instance_id: &str) -> Result<String, Error> {
        self.drawn(instance_id, render_svg).await
    }

    /// The instance's current journal, drawn by `render`.
    async fn drawn(
        &self,
        instance_id: &str,
        render: fn(&DiagramInstance<'_>, &[DiagramStep<'_>]) -> String,
    ) -> Result<String, Error> {
        let record = self.instance_record(instance_id).await?;
        let journal = self.store().journal(instance_id, record.generation).await?;
        let failure = record.error.as_deref().map(FailureDetails::parse);
        let instance = DiagramInstance {
            id: &record.id,
            workflow: &record.workflow,
            status: record.status,
            error_message: failure.as_ref().map(|f| f.message.as_str()),
        };
        let steps: Vec<DiagramStep<'_>> = journal.iter().map(DiagramStep::from_record).collect();
        Ok(render(&instance, &steps))
    }
}
