//! Local waiters for instances' ends: a result wait here is answered by the run that finishes
//! the instance (or by the wake loop, for an end signalled from elsewhere), not by polling.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::client::InstanceStatus;

/// Hands an instance's final status to local waiters when it finishes.
#[derive(Default)]
pub(super) struct CompletionHub {
    waiters: Mutex<HashMap<String, Vec<oneshot::Sender<InstanceStatus>>>>,
}

impl CompletionHub {
    pub(super) fn subscribe(&self, id: &str) -> oneshot::Receiver<InstanceStatus> {
        let (sender, receiver) = oneshot::channel();
        if let Ok(mut waiters) = self.waiters.lock() {
            let list = waiters.entry(id.to_owned()).or_default();
            list.retain(|sender| !sender.is_closed());
            list.push(sender);
        }
        receiver
    }

    pub(super) fn has_waiters(&self, id: &str) -> bool {
        self.waiters.lock().map(|waiters| waiters.contains_key(id)).unwrap_or(false)
    }

    pub(super) fn notify(&self, status: &InstanceStatus) {
        let senders = self.waiters.lock().ok().and_then(|mut waiters| {
            let senders = waiters.remove(&status.instance_id);
            super::engine::shrink(&mut waiters);
            senders
        });
        for sender in senders.into_iter().flatten() {
            let _ = sender.send(status.clone());
        }
    }
}
