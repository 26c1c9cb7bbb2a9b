//! [`Handle`]: a started instance with its output type, and everything one can do with it.

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Client, HistoryEvent, InstanceStatus, Purge, Terminate};
use crate::error::Error;
use crate::store::JournalRecord;

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

    /// Raises event `name` with `payload` on the instance ([`Client::raise_event`]).
    pub async fn raise_event<P: Serialize>(&self, name: &str, payload: &P) -> Result<(), Error> {
        self.client.raise_event(&self.instance_id, name, payload).await
    }

    /// Terminates the instance and its running descendants ([`Client::terminate`]); set
    /// `.recursive(false)` to leave the descendants.
    pub fn terminate<'a>(&'a self, reason: Option<&'a str>) -> Terminate<'a> {
        self.client.terminate(&self.instance_id, reason)
    }

    /// Suspends the instance ([`Client::suspend`]).
    pub async fn suspend(&self, reason: Option<&str>) -> Result<(), Error> {
        self.client.suspend(&self.instance_id, reason).await
    }

    /// Resumes the suspended instance ([`Client::resume`]).
    pub async fn resume(&self, reason: Option<&str>) -> Result<(), Error> {
        self.client.resume(&self.instance_id, reason).await
    }

    /// Deletes the finished instance with its descendants ([`Client::purge`]).
    pub fn purge(&self) -> Purge<'_> {
        self.client.purge(&self.instance_id)
    }

    /// Everything recorded about the instance ([`Client::history`]).
    pub async fn history(&self) -> Result<Vec<HistoryEvent>, Error> {
        self.client.history(&self.instance_id).await
    }

    /// The instance's journal (its current generation), in seq order.
    pub async fn journal(&self) -> Result<Vec<JournalRecord>, Error> {
        self.client.journal(&self.instance_id).await
    }

    /// The instance's journal drawn as a Mermaid flowchart ([`Client::diagram`]).
    pub async fn diagram(&self) -> Result<String, Error> {
        self.client.diagram(&self.instance_id).await
    }

    /// The client this handle uses.
    pub fn client(&self) -> &Client {
        &self.client
    }
}
