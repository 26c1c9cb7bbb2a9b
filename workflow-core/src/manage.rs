//! The management half of [`Client`]: start policies, terminate, suspend and resume, purge,
//! list and query, history, rerun, diagrams, and retention.

use std::collections::VecDeque;
use std::time::Duration;

use crate::client::{id_or_new, validate_instance_id, Client, InstanceStatus};
use crate::diagram::{render_mermaid, DiagramInstance, DiagramStep};
use crate::error::{Error, FailureDetails};
use crate::store::{
    EventRecord, InstanceQuery, InstanceRecord, JournalRecord, Millis, RuntimeStatus, StoreError, WriteOp,
};

/// What a start does when an instance with the requested id already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReusePolicy {
    /// Fail with [`Error::InstanceExists`] (the default).
    #[default]
    Error,
    /// Start nothing and return the existing instance's id (it must be of the same workflow).
    ReturnExisting,
    /// Terminate the existing instance if it still runs (with its children), purge it, and start
    /// afresh under the same id.
    TerminateAndRestart,
}

/// Which instances [`Client::list`] returns: every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Any of these statuses (all statuses when empty).
    pub statuses: Vec<RuntimeStatus>,
    /// Instances of this workflow only.
    pub workflow: Option<String>,
    /// Created at or after this time (ms since the Unix epoch).
    pub created_after: Option<Millis>,
    /// Created before this time (ms since the Unix epoch).
    pub created_before: Option<Millis>,
    /// Children of this instance only.
    pub parent_id: Option<String>,
}

/// One page of [`Client::list`], oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePage {
    /// The instances on this page.
    pub instances: Vec<InstanceStatus>,
    /// Pass it to the next call for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

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

const NOT_FINISHED: [RuntimeStatus; 4] =
    [RuntimeStatus::Pending, RuntimeStatus::Running, RuntimeStatus::Suspended, RuntimeStatus::ContinuedAsNew];
const FINISHED: [RuntimeStatus; 3] = [RuntimeStatus::Completed, RuntimeStatus::Failed, RuntimeStatus::Terminated];
/// The most instances [`Client::list`] returns per page.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Descendants read per page while walking an instance's children.
const CHILD_PAGE: usize = 500;

fn encode_token(created_at: Millis, id: &str) -> String {
    let raw = format!("{created_at}:{id}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<(Millis, String), Error> {
    let bad = || Error::InvalidArgument(format!("invalid continuation token {token:?}"));
    if token.len() % 2 != 0 || !token.is_ascii() {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    let raw = String::from_utf8(bytes).map_err(|_| bad())?;
    let (created_at, id) = raw.split_once(':').ok_or_else(bad)?;
    Ok((created_at.parse().map_err(|_| bad())?, id.to_owned()))
}

/// A store refusal of an `AssertStatus` as the typed error of the operation that asked.
fn status_error(error: Error, wrong_state: impl Fn(String, RuntimeStatus) -> Error) -> Error {
    match error {
        Error::Store(StoreError::Conflict { id, status: None }) => Error::InstanceNotFound(id),
        Error::Store(StoreError::Conflict { id, status: Some(status) }) => wrong_state(id, status),
        other => other,
    }
}

impl Client {
    /// Every instance matching `query` (its `after` and `limit` are set here), read a page at
    /// a time.
    async fn list_all(&self, mut query: InstanceQuery) -> Result<Vec<InstanceRecord>, Error> {
        let mut found = Vec::new();
        query.limit = CHILD_PAGE;
        loop {
            let page = self.store().list(&query).await?;
            let full = page.len() >= CHILD_PAGE;
            query.after = page.last().map(|last| (last.created_at, last.id.clone()));
            found.extend(page);
            if !full {
                return Ok(found);
            }
        }
    }

    async fn instance_record(&self, instance_id: &str) -> Result<InstanceRecord, Error> {
        self.store().instance(instance_id).await?.ok_or_else(|| Error::InstanceNotFound(instance_id.to_owned()))
    }

    /// Every descendant of `root` (children, their children, ...), parents before children.
    async fn descendants(&self, root: &str) -> Result<Vec<InstanceRecord>, Error> {
        let mut found = Vec::new();
        let mut queue = VecDeque::from([root.to_owned()]);
        while let Some(parent) = queue.pop_front() {
            let children = InstanceQuery { parent_id: Some(parent), ..InstanceQuery::default() };
            for child in self.list_all(children).await? {
                queue.push_back(child.id.clone());
                found.push(child);
            }
        }
        Ok(found)
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

    /// Waits (briefly) until a run of `id` stopped here has left, so the id can run again.
    async fn wait_for_local_stop(&self, id: &str) {
        let Some(engine) = self.engine() else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while engine.is_running(id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Starts a workflow by name with JSON input, under `policy` if `instance_id` is taken;
    /// returns the instance id.
    pub async fn start_raw_with(
        &self,
        workflow: &str,
        instance_id: Option<&str>,
        input: &str,
        policy: ReusePolicy,
    ) -> Result<String, Error> {
        let Some(id) = instance_id else { return self.start_raw(workflow, None, input).await };
        validate_instance_id(id)?;
        match (policy, self.store().instance(id).await?) {
            (_, None) | (ReusePolicy::Error, Some(_)) => self.start_raw(workflow, Some(id), input).await,
            (ReusePolicy::ReturnExisting, Some(existing)) => {
                if existing.workflow == workflow {
                    Ok(existing.id)
                } else {
                    Err(Error::InstanceExists(id.to_owned()))
                }
            }
            (ReusePolicy::TerminateAndRestart, Some(existing)) => {
                if !existing.status.is_terminal() {
                    match self.terminate(id, Some("restarted under the same id")).await {
                        Ok(()) | Err(Error::InstanceFinished(_)) => {}
                        Err(error) => return Err(error),
                    }
                }
                match self.purge(id).await {
                    Ok(_) | Err(Error::InstanceNotFound(_)) => {}
                    Err(error) => return Err(error),
                }
                self.wait_for_local_stop(id).await;
                self.start_raw(workflow, Some(id), input).await
            }
        }
    }

    /// Terminates a running, pending or suspended instance and every descendant still running:
    /// each ends Terminated with `reason` as its failure message, runs no further step, and a
    /// parent waiting on a terminated child sees it fail. [`Error::InstanceFinished`] if it has
    /// already finished.
    pub async fn terminate(&self, instance_id: &str, reason: Option<&str>) -> Result<(), Error> {
        self.terminate_with(instance_id, reason, true).await
    }

    /// [`Client::terminate`], choosing whether children are terminated too.
    pub async fn terminate_with(&self, instance_id: &str, reason: Option<&str>, recursive: bool) -> Result<(), Error> {
        // A descendant that finishes between the read and the write must keep its outcome: each
        // one is written only if it still runs, and the walk is retried if one changed.
        for _ in 0..5 {
            match self.try_terminate(instance_id, reason, recursive).await {
                Err(Error::Store(StoreError::Conflict { id, .. })) if id != instance_id => continue,
                other => return other,
            }
        }
        self.try_terminate(instance_id, reason, recursive).await
    }

    async fn try_terminate(&self, instance_id: &str, reason: Option<&str>, recursive: bool) -> Result<(), Error> {
        let root = self.instance_record(instance_id).await?;
        let mut targets = vec![root];
        if recursive {
            targets.extend(self.descendants(instance_id).await?.into_iter().filter(|c| !c.status.is_terminal()));
        }
        let now = self.now();
        let details = FailureDetails {
            error_type: "Terminated".into(),
            message: reason.unwrap_or("terminated by a client").to_owned(),
        };
        let mut ops: Vec<WriteOp> = targets
            .iter()
            .map(|target| WriteOp::AssertStatus { id: target.id.clone(), allowed: NOT_FINISHED.to_vec() })
            .collect();
        for target in &targets {
            ops.push(WriteOp::Finish {
                id: target.id.clone(),
                status: RuntimeStatus::Terminated,
                output: None,
                error: Some(details.to_stored()),
                updated_at: now,
            });
            if let Some(parent) = &target.parent_id {
                ops.push(WriteOp::SetWake { id: parent.clone(), wake_at: Some(now) });
            }
        }
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
            for target in targets {
                let mut status = InstanceStatus::from(target);
                status.status = RuntimeStatus::Terminated;
                status.failure = Some(details.clone());
                status.updated_at = now;
                engine.completions.notify(&status);
            }
            engine.wake_claimer.notify_one();
        }
        Ok(())
    }

    /// Suspends a pending or running instance: it runs no new step (an attempt under way may
    /// finish, and its outcome is not recorded; it runs again after the resume), and events
    /// raised meanwhile are buffered. Suspending a suspended instance changes nothing.
    pub async fn suspend(&self, instance_id: &str, reason: Option<&str>) -> Result<(), Error> {
        let now = self.now();
        let ops = vec![
            WriteOp::AssertStatus {
                id: instance_id.to_owned(),
                allowed: vec![RuntimeStatus::Pending, RuntimeStatus::Running, RuntimeStatus::Suspended],
            },
            WriteOp::SetStatus { id: instance_id.to_owned(), status: RuntimeStatus::Suspended, updated_at: now },
            // Nobody owns it while suspended: the run that held it is refused its next commit.
            WriteOp::Evict { id: instance_id.to_owned(), wake_at: crate::store::NEVER },
        ];
        self.write(ops).await.map_err(|e| status_error(e, |id, _| Error::InstanceFinished(id)))?;
        tracing::info!(instance_id, reason = reason.unwrap_or(""), "instance suspended");
        self.stop_local_runs([instance_id]);
        Ok(())
    }

    /// Resumes a suspended instance: it is replayed and continues from its last recorded step.
    /// [`Error::NotSuspended`] if it is not suspended.
    pub async fn resume(&self, instance_id: &str, reason: Option<&str>) -> Result<(), Error> {
        let now = self.now();
        let ops = vec![
            WriteOp::AssertStatus { id: instance_id.to_owned(), allowed: vec![RuntimeStatus::Suspended] },
            WriteOp::SetStatus { id: instance_id.to_owned(), status: RuntimeStatus::Running, updated_at: now },
            WriteOp::SetWake { id: instance_id.to_owned(), wake_at: Some(now) },
        ];
        self.write(ops).await.map_err(|e| status_error(e, |id, status| Error::NotSuspended { id, status }))?;
        tracing::info!(instance_id, reason = reason.unwrap_or(""), "instance resumed");
        if let Some(engine) = self.engine() {
            engine.wake_claimer.notify_one();
        }
        Ok(())
    }

    /// Deletes a finished instance and every row of it (journal, events, tasks), with its
    /// descendants; returns how many instances were purged. [`Error::NotFinished`] if it, or a
    /// descendant, has not finished.
    pub async fn purge(&self, instance_id: &str) -> Result<usize, Error> {
        self.purge_with(instance_id, true).await
    }

    /// [`Client::purge`], choosing whether descendants are purged too.
    pub async fn purge_with(&self, instance_id: &str, recursive: bool) -> Result<usize, Error> {
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

    /// Purges instances finished longer ago than `policy` allows (with their descendants);
    /// returns how many instances were purged.
    pub async fn purge_expired(&self, policy: &RetentionPolicy) -> Result<usize, Error> {
        let mut purged = 0;
        for (status, age) in policy.ages() {
            let cutoff = self.now().saturating_sub(crate::clock::millis(age));
            let expired =
                InstanceQuery { statuses: vec![status], updated_before: Some(cutoff), ..InstanceQuery::default() };
            for instance in self.list_all(expired).await? {
                match self.purge(&instance.id).await {
                    Ok(n) => purged += n,
                    // Purged with its parent already, or a descendant still runs: later.
                    Err(Error::InstanceNotFound(_) | Error::NotFinished { .. }) => {}
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(purged)
    }

    /// Instances matching `filter`, oldest first, at most `page_size` (1 to
    /// [`MAX_PAGE_SIZE`]) per page; pass the page's `continuation` back for the next.
    pub async fn list(
        &self,
        filter: &ListFilter,
        page_size: usize,
        continuation: Option<&str>,
    ) -> Result<InstancePage, Error> {
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(Error::InvalidArgument(format!("page size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")));
        }
        let after = continuation.map(decode_token).transpose()?;
        let query = InstanceQuery {
            statuses: filter.statuses.clone(),
            workflow: filter.workflow.clone(),
            created_after: filter.created_after,
            created_before: filter.created_before,
            parent_id: filter.parent_id.clone(),
            updated_before: None,
            after,
            // One more than asked tells whether another page follows.
            limit: page_size + 1,
        };
        let mut records = self.store().list(&query).await?;
        let more = records.len() > page_size;
        records.truncate(page_size);
        let continuation = if more { records.last().map(|last| encode_token(last.created_at, &last.id)) } else { None };
        Ok(InstancePage { instances: records.into_iter().map(InstanceStatus::from).collect(), continuation })
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
        if let Some(engine) = self.engine() {
            if let Some(entry) = engine.registry.workflows.get(&source.workflow) {
                (entry.check_input)(input)
                    .map_err(|message| Error::InvalidInput { workflow: source.workflow.clone(), message })?;
            }
        }
        let journal = self.store().journal(source_id, source.generation).await?;
        let now = self.now();
        let record = InstanceRecord::pending(id.clone(), source.workflow.clone(), input, now);
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
        if let Some(engine) = self.engine() {
            engine.backlog.store(true, std::sync::atomic::Ordering::SeqCst);
            engine.wake_claimer.notify_one();
        }
        Ok(id)
    }

    /// The instance's journal drawn as a Mermaid flowchart (steps in order, fan-outs side by
    /// side, retries, timers, events, children, failures).
    pub async fn diagram(&self, instance_id: &str) -> Result<String, Error> {
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
        Ok(render_mermaid(&instance, &steps))
    }
}
