//! The client: start instances, read and wait for them, and manage them.
//!
//! - `mod.rs`: [`Client`] (status, results, events); `start.rs`: the [`Start`] builder and reuse
//!   policies; `handle.rs`: [`Handle`], a typed instance with its actions;
//! - `status.rs`: [`InstanceStatus`] and the one place a final status is built;
//! - `manage.rs`: terminate, suspend, resume, purge, rerun, history, diagrams, retention;
//! - `list.rs`: listing and paging;
//! - `assign.rs`: a runtime-less client's starts handed straight to a live worker.

mod assign;
mod flow;
mod handle;
mod list;
mod manage;
mod schedules;
mod start;
mod status;
mod waiters;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) use assign::ASSIGNED_LEASE;
pub use handle::Handle;
pub use list::{InstancePage, ListFilter, MAX_PAGE_SIZE};
pub use manage::{HistoryEvent, Purge, RetentionPolicy, Terminate};
pub(crate) use start::{id_or_new, validate_workflow_name};
pub use start::{validate_instance_id, ReusePolicy, Start, MAX_INSTANCE_ID_LEN};
use status::found;
pub(crate) use status::Ending;
pub use status::{InstanceStatus, QueueStatus, QueuedActivity, QueuedState};
pub(crate) use waiters::{Ended, ResultWaiters};

use crate::error::{Error, FailureDetails};
use crate::limits::Limits;
use crate::model::time;
use crate::store::{JournalRecord, Lease, Millis, RuntimeStatus, Store, StoreError, WriteOp, WriteOutcome};
use crate::worker::{Committer, Engine};

/// Starts and inspects workflow instances.
///
/// A client from [`Runtime::client`](crate::Runtime::client) runs what it starts on that runtime
/// at once and checks names and inputs against its registry; [`Client::new`] makes one that only
/// writes to the store, for a process that runs no workers.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    engine: Option<Arc<Engine>>,
    /// The process's result waiters: the runtime's, or this client's own without one.
    waiters: Arc<ResultWaiters>,
    /// Group commit for a client without a runtime, shared by its clones.
    own_writes: Arc<OwnWrites>,
    /// The workers a client without a runtime assigns its starts to, shared by its clones.
    takers: Arc<assign::StartTakers>,
    /// Payload and inbox bounds: the runtime's, or this client's own without one.
    limits: Limits,
}

/// The group committer of a client without a runtime: started on its first write (in the tokio
/// runtime that makes it), and again if that runtime has gone.
#[derive(Default)]
struct OwnWrites {
    committer: std::sync::Mutex<Option<Committer>>,
}

impl OwnWrites {
    async fn write(&self, store: &Arc<dyn Store>, ops: Vec<WriteOp>) -> Result<WriteOutcome, StoreError> {
        Ok(self.write_leasing(store, ops, Vec::new()).await?.0)
    }

    async fn write_leasing(
        &self,
        store: &Arc<dyn Store>,
        ops: Vec<WriteOp>,
        leases: Vec<Lease>,
    ) -> Result<(WriteOutcome, Vec<bool>), StoreError> {
        let committer = {
            let mut slot = self.committer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match slot.as_ref().filter(|committer| !committer.is_closed()) {
                Some(committer) => committer.clone(),
                None => slot.insert(Committer::start(store.clone())).clone(),
            }
        };
        committer.commit(ops, leases).await
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let worker = self.engine.as_ref().map(|engine| engine.worker_id());
        f.debug_struct("Client").field("runtime", &worker).finish_non_exhaustive()
    }
}

impl Client {
    /// A client on a store alone: instances it starts are run by whichever worker claims them.
    pub fn new(store: impl Into<Arc<dyn Store>>) -> Self {
        let store = store.into();
        Self {
            waiters: ResultWaiters::new(store.clone()),
            takers: assign::StartTakers::new(store.clone()),
            store,
            engine: None,
            own_writes: Arc::default(),
            limits: Limits::default(),
        }
    }

    /// This client with other bounds on payloads and inboxes (a client from
    /// [`Runtime::client`](crate::Runtime::client) has its runtime's): its starts and raises are
    /// checked against them.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The bounds this client checks starts and raises against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub(crate) fn local(engine: Arc<Engine>) -> Self {
        Self {
            store: engine.store().clone(),
            waiters: engine.waiters().clone(),
            limits: *engine.limits(),
            takers: assign::StartTakers::new(engine.store().clone()),
            engine: Some(engine),
            own_writes: Arc::default(),
        }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }

    /// Now on the runtime's clock (the system clock without a runtime).
    pub(crate) fn now(&self) -> Millis {
        self.engine.as_ref().map_or_else(time::now_ms, |engine| engine.now())
    }

    /// The workers this client (without a runtime) assigns starts to.
    pub(crate) fn takers(&self) -> &Arc<assign::StartTakers> {
        &self.takers
    }

    /// Writes one batch (without a runtime) with `leases`, in this client's group commit.
    pub(crate) async fn write_leasing(
        &self,
        ops: Vec<WriteOp>,
        leases: Vec<Lease>,
    ) -> Result<(WriteOutcome, Vec<bool>), Error> {
        Ok(self.own_writes.write_leasing(&self.store, ops, leases).await?)
    }

    /// Writes one batch, in a group commit: the local runtime's, or this client's own.
    pub(crate) async fn write(&self, ops: Vec<WriteOp>) -> Result<WriteOutcome, Error> {
        match &self.engine {
            Some(engine) => Ok(engine.commit(ops).await?),
            None => Ok(self.own_writes.write(&self.store, ops).await?),
        }
    }

    /// Raises event `name` with `payload` on a running instance. An event raised before the
    /// workflow waits for it is buffered in the store, not lost, up to the inbox limits
    /// ([`Limits::max_inbox_events`], [`Limits::max_inbox_bytes`]): a raise past them fails with
    /// [`Error::InboxFull`] and stores nothing. A payload over [`Limits::max_payload_bytes`]
    /// fails with [`Error::PayloadTooLarge`].
    pub async fn raise_event<T: Serialize>(&self, instance_id: &str, name: &str, payload: &T) -> Result<(), Error> {
        let payload = serde_json::to_string(payload)?;
        self.raise_event_untyped(instance_id, name, &payload).await
    }

    /// Raises an event with a JSON payload, for callers that know no Rust types (the HTTP layer, tools).
    pub async fn raise_event_untyped(&self, instance_id: &str, name: &str, payload: &str) -> Result<(), Error> {
        if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "event name {name:?} must be 1 to 256 bytes without control characters"
            )));
        }
        self.limits.check_payload(payload).map_err(|size| size.error(format!("the payload of event `{name}`")))?;
        serde_json::from_str::<serde_json::Value>(payload)
            .map_err(|e| Error::InvalidInput { workflow: format!("event `{name}`"), message: e.to_string() })?;
        validate_instance_id(instance_id)?;
        // Checked in the write, not read before it: an instance that finishes (or is purged)
        // meanwhile must not get an event nobody will ever take.
        let unfinished = WriteOp::AssertStatus { id: instance_id.to_owned(), allowed: manage::NOT_FINISHED.to_vec() };
        // The room is checked in the store, in the transaction that adds the event, so raises
        // racing each other (here or in other processes) cannot together overfill the inbox.
        let (max_events, max_bytes) = (self.limits.inbox_events(), self.limits.inbox_bytes());
        let room = WriteOp::AssertInboxRoom {
            id: instance_id.to_owned(),
            events: 1,
            bytes: payload.len() as u64,
            max_events,
            max_bytes,
        };
        let op = WriteOp::AddEvent {
            instance_id: instance_id.to_owned(),
            name: name.to_owned(),
            payload: payload.to_owned(),
            created_at: self.now(),
        };
        // Through a runtime, the commit also wakes the instance if it runs (or waits) here.
        match self.write(vec![unfinished, room, op]).await {
            Ok(_) => Ok(()),
            Err(Error::Store(StoreError::InboxFull { id, events, bytes })) => {
                Err(Error::InboxFull { instance_id: id, events, bytes, max_events, max_bytes })
            }
            Err(error) => Err(manage::status_error(error, |id, _| Error::InstanceFinished(id))),
        }
    }

    /// The instance's current state.
    pub async fn status(&self, instance_id: &str) -> Result<InstanceStatus, Error> {
        validate_instance_id(instance_id)?;
        let mut status = [found(instance_id, self.store.instance(instance_id).await?)?];
        self.note_flow(&mut status).await;
        let [status] = status;
        Ok(status)
    }

    /// The instance's journal (its current generation), in seq order.
    pub async fn journal(&self, instance_id: &str) -> Result<Vec<JournalRecord>, Error> {
        validate_instance_id(instance_id)?;
        let record =
            self.store.instance(instance_id).await?.ok_or_else(|| Error::InstanceNotFound(instance_id.to_owned()))?;
        Ok(self.store.journal(instance_id, record.generation).await?)
    }

    /// Waits until the instance is Completed, Failed or Terminated, up to `timeout` if given.
    pub async fn wait_for_completion(
        &self,
        instance_id: &str,
        timeout: Option<Duration>,
    ) -> Result<InstanceStatus, Error> {
        validate_instance_id(instance_id)?;
        let wait = async {
            // Subscribed first, so an end after the read below reaches the receiver.
            let ended = self.waiters.subscribe(instance_id, self.engine.is_none());
            // Running here, its end arrives without a read. Otherwise the read (batched with other
            // waiters') also asks the store to signal its end to this process.
            if !self.engine.as_ref().is_some_and(|engine| engine.is_running(instance_id)) {
                self.waiters.read_soon(instance_id);
            }
            match ended.await {
                Ok(Some(status)) => Ok(status),
                Ok(None) => Err(Error::InstanceNotFound(instance_id.to_owned())),
                Err(_) => Err(Error::Store(StoreError::backend("the result waiters stopped"))),
            }
        };
        match timeout {
            Some(limit) => {
                tokio::time::timeout(limit, wait).await.map_err(|_| Error::Timeout(instance_id.to_owned()))?
            }
            None => wait.await,
        }
    }

    /// Waits for the instance and returns its output, deserialized as `T`.
    pub async fn result<T: DeserializeOwned>(&self, instance_id: &str, timeout: Option<Duration>) -> Result<T, Error> {
        let status = self.wait_for_completion(instance_id, timeout).await?;
        match status.status {
            RuntimeStatus::Completed => Ok(serde_json::from_str(status.output.as_deref().unwrap_or("null"))?),
            RuntimeStatus::Failed => Err(Error::Failed {
                instance_id: status.instance_id,
                details: status.failure.unwrap_or_else(|| FailureDetails {
                    error_type: "Unknown".into(),
                    message: "no failure details were stored".into(),
                }),
            }),
            other => Err(Error::NoResult { instance_id: status.instance_id, status: other }),
        }
    }
}
