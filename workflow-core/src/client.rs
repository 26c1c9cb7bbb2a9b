//! `Client`: start instances, read their status, wait for their results.

use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::engine::Engine;
use crate::error::{Error, FailureDetails};
use crate::model::time;
use crate::registry::WorkflowDef;
use crate::store::{InstanceRecord, JournalRecord, Millis, RuntimeStatus, Store, WakeSignal, WriteOp, WriteOutcome};

/// How often a result wait re-reads the store when no local notification arrives (an instance
/// finishing in another process).
const RESULT_POLL: Duration = Duration::from_millis(200);

/// The longest instance id accepted (as Dapr).
pub const MAX_INSTANCE_ID_LEN: usize = 64;

/// Checks an instance id: 1 to 64 characters of ASCII letters, digits, `-` and `_`.
pub fn validate_instance_id(id: &str) -> Result<(), Error> {
    let reason = if id.is_empty() {
        "it is empty"
    } else if id.len() > MAX_INSTANCE_ID_LEN {
        "it is longer than 64 characters"
    } else if !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        "only ASCII letters, digits, `-` and `_` are allowed"
    } else {
        return Ok(());
    };
    Err(Error::InvalidInstanceId { id: id.to_owned(), reason })
}

/// `id` once validated, or a new random id when `None`.
pub(crate) fn id_or_new(id: Option<&str>) -> Result<String, Error> {
    match id {
        Some(id) => {
            validate_instance_id(id)?;
            Ok(id.to_owned())
        }
        None => Ok(uuid::Uuid::new_v4().simple().to_string()),
    }
}

/// An instance's state, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceStatus {
    /// The instance id.
    pub instance_id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The runtime status.
    pub status: RuntimeStatus,
    /// The input (JSON).
    pub input: String,
    /// The output (JSON), once completed.
    pub output: Option<String>,
    /// The failure, once failed.
    pub failure: Option<FailureDetails>,
    /// The custom status the workflow set (JSON).
    pub custom_status: Option<String>,
    /// The parent instance, for a child workflow.
    pub parent_id: Option<String>,
    /// Creation time (ms since the Unix epoch).
    pub created_at: Millis,
    /// Last change (ms since the Unix epoch).
    pub updated_at: Millis,
}

impl From<InstanceRecord> for InstanceStatus {
    fn from(record: InstanceRecord) -> Self {
        Self {
            failure: record.error.as_deref().map(FailureDetails::parse),
            custom_status: record.custom_status,
            parent_id: record.parent_id,
            instance_id: record.id,
            workflow: record.workflow,
            status: record.status,
            input: record.input,
            output: record.output,
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

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

impl Client {
    /// A client on a store alone: instances it starts are run by whichever worker claims them.
    pub fn new(store: impl Into<Arc<dyn Store>>) -> Self {
        Self { store: store.into(), engine: None }
    }

    pub(crate) fn local(engine: Arc<Engine>) -> Self {
        Self { store: engine.store.clone(), engine: Some(engine) }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub(crate) fn engine(&self) -> Option<&Arc<Engine>> {
        self.engine.as_ref()
    }

    /// Now on the runtime's clock (the system clock without a runtime).
    pub(crate) fn now(&self) -> Millis {
        self.engine.as_ref().map_or_else(time::now_ms, |engine| engine.clock.now_ms())
    }

    /// Writes one batch: through the local runtime's group commit when there is one.
    pub(crate) async fn write(&self, ops: Vec<WriteOp>) -> Result<WriteOutcome, Error> {
        match &self.engine {
            Some(engine) => Ok(engine.committer.commit(ops).await?),
            None => Ok(self.store.write(&ops).await?),
        }
    }

    /// Starts workflow `W`. Prefer the generated `my_workflow::start(&client, input)`.
    pub async fn start_workflow<W: WorkflowDef>(
        &self,
        instance_id: Option<&str>,
        input: &W::Input,
    ) -> Result<Handle<W::Output>, Error> {
        let input = serde_json::to_string(input)?;
        let id = self.start_raw(W::NAME, instance_id, &input).await?;
        Ok(Handle::new(self.clone(), id))
    }

    /// Starts a workflow by name with JSON input; returns the instance id (generated when `None`).
    pub async fn start_raw(&self, workflow: &str, instance_id: Option<&str>, input: &str) -> Result<String, Error> {
        let id = id_or_new(instance_id)?;
        let now = time::now_ms();
        let mut record = InstanceRecord::pending(id.clone(), workflow, input, now);
        let Some(engine) = &self.engine else {
            serde_json::from_str::<serde_json::Value>(input)
                .map_err(|e| Error::InvalidInput { workflow: workflow.to_owned(), message: e.to_string() })?;
            let outcome = self.store.write(&[WriteOp::CreateInstance(record)]).await?;
            return if outcome.existing.is_empty() { Ok(id) } else { Err(Error::InstanceExists(id)) };
        };
        let entry =
            engine.registry.workflows.get(workflow).ok_or_else(|| Error::UnknownWorkflow(workflow.to_owned()))?;
        (entry.check_input)(input).map_err(|message| Error::InvalidInput { workflow: workflow.to_owned(), message })?;
        record.created_at = engine.clock.now_ms();
        record.updated_at = record.created_at;
        engine.start_instance(record, Vec::new()).await?;
        Ok(id)
    }

    /// Raises event `name` with `payload` on a running instance. An event raised before the
    /// workflow waits for it is buffered in the store, not lost.
    pub async fn raise_event<T: Serialize>(&self, instance_id: &str, name: &str, payload: &T) -> Result<(), Error> {
        let payload = serde_json::to_string(payload)?;
        self.raise_event_raw(instance_id, name, &payload).await
    }

    /// Raises an event with a JSON payload.
    pub async fn raise_event_raw(&self, instance_id: &str, name: &str, payload: &str) -> Result<(), Error> {
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
        self.write(vec![op]).await?;
        if let Some(engine) = &self.engine {
            engine.signal_inbox(instance_id);
            engine.wake_claimer.notify_one();
        }
        Ok(())
    }

    /// The instance's current state.
    pub async fn status(&self, instance_id: &str) -> Result<InstanceStatus, Error> {
        found(instance_id, self.store.instance(instance_id).await?)
    }

    /// The instance's journal (its current generation), in seq order.
    pub async fn journal(&self, instance_id: &str) -> Result<Vec<JournalRecord>, Error> {
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
                    let status = self.watched_status(instance_id).await?;
                    if status.status.is_terminal() {
                        return Ok(status);
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
                let notified = engine.completions.subscribe(instance_id);
                // Running here: its end arrives through the hub, no store read needed. Elsewhere:
                // the read asks the store to signal its end to this process.
                if !engine.is_running(instance_id) {
                    let status = self.watched_status(instance_id).await?;
                    if status.status.is_terminal() {
                        return Ok(status);
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

    /// The instance's state, read so that the store signals its end to this process
    /// ([`Store::watch`]).
    async fn watched_status(&self, instance_id: &str) -> Result<InstanceStatus, Error> {
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

/// The status of the instance read as `record`, or [`Error::InstanceNotFound`].
fn found(instance_id: &str, record: Option<InstanceRecord>) -> Result<InstanceStatus, Error> {
    record.map(InstanceStatus::from).ok_or_else(|| Error::InstanceNotFound(instance_id.to_owned()))
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

/// A typed handle to a started instance.
pub struct Handle<T> {
    client: Client,
    instance_id: String,
    _output: PhantomData<fn() -> T>,
}

impl<T> Clone for Handle<T> {
    fn clone(&self) -> Self {
        Self { client: self.client.clone(), instance_id: self.instance_id.clone(), _output: PhantomData }
    }
}

impl<T> std::fmt::Debug for Handle<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("instance_id", &self.instance_id).finish()
    }
}

impl<T: DeserializeOwned> Handle<T> {
    /// A handle to an existing instance whose output type is `T`.
    pub fn new(client: Client, instance_id: impl Into<String>) -> Self {
        Self { client, instance_id: instance_id.into(), _output: PhantomData }
    }

    /// The instance id.
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// The instance's current state.
    pub async fn status(&self) -> Result<InstanceStatus, Error> {
        self.client.status(&self.instance_id).await
    }

    /// Waits for the output.
    pub async fn result(&self) -> Result<T, Error> {
        self.client.result(&self.instance_id, None).await
    }

    /// Waits for the output, up to `timeout`.
    pub async fn result_timeout(&self, timeout: Duration) -> Result<T, Error> {
        self.client.result(&self.instance_id, Some(timeout)).await
    }
}
