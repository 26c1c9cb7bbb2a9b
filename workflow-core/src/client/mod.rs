//! The client: start instances, read and wait for them, and manage them.
//!
//! - `mod.rs`: [`Client`] (status, results, events); `start.rs`: the [`Start`] builder and reuse
//!   policies; `handle.rs`: [`Handle`], a typed instance with its actions;
//! - `status.rs`: [`InstanceStatus`] and the one place a final status is built;
//! - `manage.rs`: terminate, suspend, resume, purge, rerun, history, diagrams, retention;
//! - `list.rs`: listing and paging.

mod handle;
mod list;
mod manage;
mod start;
mod status;

use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

pub use handle::Handle;
pub use list::{InstancePage, ListFilter, MAX_PAGE_SIZE};
pub use manage::{HistoryEvent, Purge, RetentionPolicy, Terminate};
pub(crate) use start::{id_or_new, validate_workflow_name};
pub use start::{validate_instance_id, ReusePolicy, Start, MAX_INSTANCE_ID_LEN};
use status::found;
pub(crate) use status::Ending;
pub use status::InstanceStatus;

use crate::error::{Error, FailureDetails};
use crate::model::time;
use crate::store::{JournalRecord, Millis, RuntimeStatus, Store, StoreError, WakeSignal, WriteOp, WriteOutcome};
use crate::worker::Engine;

/// How often a result wait re-reads the store when no local notification arrives (an instance
/// finishing in another process).
const RESULT_POLL: Duration = Duration::from_millis(200);

/// Starts and inspects workflow instances.
///
/// A client from [`Runtime::client`](crate::Runtime::client) runs what it starts on that runtime
/// at once and checks names and inputs against its registry; [`Client::new`] makes one that only
/// writes to the store, for a process that runs no workers.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
    engine: Option<Arc<Engine>>,
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
        Self { store: store.into(), engine: None }
    }

    pub(crate) fn local(engine: Arc<Engine>) -> Self {
        Self { store: engine.store().clone(), engine: Some(engine) }
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

    /// Writes one batch: through the local runtime's group commit when there is one.
    pub(crate) async fn write(&self, ops: Vec<WriteOp>) -> Result<WriteOutcome, Error> {
        match &self.engine {
            Some(engine) => Ok(engine.commit(ops).await?),
            None => Ok(self.store.write(&ops).await?),
        }
    }

    /// Raises event `name` with `payload` on a running instance. An event raised before the
    /// workflow waits for it is buffered in the store, not lost.
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
        serde_json::from_str::<serde_json::Value>(payload)
            .map_err(|e| Error::InvalidInput { workflow: format!("event `{name}`"), message: e.to_string() })?;
        let status = self.status(instance_id).await?;
        if status.status.is_terminal() {
            return Err(Error::InstanceFinished(instance_id.to_owned()));
        }
        let op = WriteOp::AddEvent {
            instance_id: instance_id.to_owned(),
            name: name.to_owned(),
            payload: payload.to_owned(),
            created_at: self.now(),
        };
        // Through a runtime, the commit also wakes the instance if it runs (or waits) here.
        self.write(vec![op]).await?;
        Ok(())
    }

    /// The instance's current state.
    pub async fn status(&self, instance_id: &str) -> Result<InstanceStatus, Error> {
        validate_instance_id(instance_id)?;
        found(instance_id, self.store.instance(instance_id).await?)
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
        let wait = async {
            // Without a runtime, the store's signals (if it has any) announce the end.
            let mut signals = if self.engine.is_none() { self.store.wake_signals() } else { None };
            loop {
                let Some(engine) = &self.engine else {
                    // A store that fails for a while (a database restarting) is waited out.
                    if let Some(status) = self.waited_status(instance_id).await? {
                        if status.status.is_terminal() {
                            return Ok(status);
                        }
                    }
                    match &mut signals {
                        Some(receiver) => {
                            if let Ok(false) = tokio::time::timeout(RESULT_POLL, finished(receiver, instance_id)).await
                            {
                                signals = None;
                            }
                        }
                        None => tokio::time::sleep(RESULT_POLL).await,
                    }
                    continue;
                };
                let notified = engine.subscribe_completion(instance_id);
                // Running here: its end arrives through the hub, no store read needed. Elsewhere:
                // the read asks the store to signal its end to this process.
                if !engine.is_running(instance_id) {
                    if let Some(status) = self.waited_status(instance_id).await? {
                        if status.status.is_terminal() {
                            return Ok(status);
                        }
                    }
                }
                // The store is read again after a while in case it ends in another process.
                if let Ok(Ok(status)) = tokio::time::timeout(RESULT_POLL, notified).await {
                    return Ok(status);
                }
            }
        };
        match timeout {
            Some(limit) => {
                tokio::time::timeout(limit, wait).await.map_err(|_| Error::Timeout(instance_id.to_owned()))?
            }
            None => wait.await,
        }
    }

    /// [`Client::watched_status`] for a waiter: `None` when the store failed (and the waiter
    /// tries again later), so a database restarting does not end the wait.
    async fn waited_status(&self, instance_id: &str) -> Result<Option<InstanceStatus>, Error> {
        match self.watched_status(instance_id).await {
            Ok(status) => Ok(Some(status)),
            Err(Error::Store(StoreError::Backend(error))) => {
                tracing::warn!(%error, instance_id, "reading an awaited instance failed; trying again");
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The instance's state, read so that the store signals its end to this process
    /// ([`Store::watch`]).
    async fn watched_status(&self, instance_id: &str) -> Result<InstanceStatus, Error> {
        validate_instance_id(instance_id)?;
        found(instance_id, self.store.watch(instance_id).await?)
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

/// Returns when `signals` says `instance_id` finished, or may have (signals were lost): the
/// caller reads the store either way. `false` if the channel closed (no more signals).
async fn finished(signals: &mut tokio::sync::broadcast::Receiver<WakeSignal>, instance_id: &str) -> bool {
    loop {
        match signals.recv().await {
            Ok(WakeSignal::Finished(id)) if id == instance_id => return true,
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return true,
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return false,
        }
    }
}
