//! What statuses say about flow control: the limits an instance or an activity call waits behind
//! (as the client's runtime registered them), and when a full rate window next admits a start.

use std::collections::HashMap;

use super::{validate_instance_id, Client, InstanceStatus, QueueStatus, QueuedActivity, QueuedState};
use crate::error::Error;
use crate::store::{next_start_at, ActivityCap, Millis, QueueKind, RateLimit, RuntimeStatus, StartScope, WorkflowCap};

impl Client {
    /// Notes on each Pending status of a workflow this client's runtime caps or rate-limits what
    /// it waits behind, and, when its rate's window is full, when the next start may come. One
    /// store read per rate-limited workflow among `statuses`.
    pub(crate) async fn note_flow(&self, statuses: &mut [InstanceStatus]) {
        let Some(engine) = self.engine() else { return };
        let now = self.now();
        let mut next_starts: HashMap<(String, String), Option<Millis>> = HashMap::new();
        for status in statuses.iter_mut().filter(|status| status.status == RuntimeStatus::Pending) {
            let Some(cap) = engine.caps().iter().find(|cap| cap.workflow == status.workflow) else { continue };
            let key = if cap.keyed { status.concurrency_key.clone() } else { String::new() };
            status.limits = Some(workflow_limits(cap));
            if let Some(rate) = cap.rate {
                let scope = (cap.workflow.clone(), key);
                if !next_starts.contains_key(&scope) {
                    let next =
                        self.next_start(StartScope::Workflow { workflow: &scope.0, key: &scope.1 }, rate, now).await;
                    next_starts.insert(scope.clone(), next);
                }
                status.next_start_at = next_starts.get(&scope).copied().flatten();
            }
        }
    }

    /// When `rate` next admits a start of `scope`, if its window is full now (`None` if it has
    /// room, or if the store cannot say).
    async fn next_start(&self, scope: StartScope<'_>, rate: RateLimit, now: Millis) -> Option<Millis> {
        match self.store.recent_starts(scope, now.saturating_sub(rate.period_ms)).await {
            Ok(starts) => next_start_at(rate, &starts, now),
            Err(error) => {
                tracing::debug!(%error, "could not read the recent starts of a rate limit");
                None
            }
        }
    }

    /// The instance's activity calls in the store's task queue, waiting or running (see
    /// [`QueuedActivity`]): capped, rate-limited and shared-dispatch calls, with the limits they
    /// wait behind and, for a waiting call whose rate window is full, when the next may start.
    /// [`Error::InstanceNotFound`] for an unknown instance.
    pub async fn queued_activities(&self, instance_id: &str) -> Result<Vec<QueuedActivity>, Error> {
        validate_instance_id(instance_id)?;
        if self.store.instance(instance_id).await?.is_none() {
            return Err(Error::InstanceNotFound(instance_id.to_owned()));
        }
        let now = self.now();
        let tasks = self.store.tasks_of(instance_id).await?;
        let mut next_starts: HashMap<(String, String), Option<Millis>> = HashMap::new();
        let mut queued = Vec::with_capacity(tasks.len());
        for task in tasks {
            let state = match (&task.outcome, &task.owner, task.lease_until) {
                (Some(_), _, _) => QueuedState::Finished,
                (None, Some(worker), Some(until)) if until >= now => {
                    QueuedState::Running { worker: worker.clone(), lease_until: until }
                }
                _ => QueuedState::Waiting,
            };
            let cap =
                self.engine().and_then(|engine| engine.activity_caps().iter().find(|cap| cap.activity == task.name));
            let limits = cap.map(|cap| activity_limits(cap, !task.concurrency_key.is_empty()));
            let mut next_start = None;
            if let (QueuedState::Waiting, Some(rate)) = (&state, cap.and_then(|cap| cap.rate)) {
                let key = (task.name.clone(), task.concurrency_key.clone());
                if !next_starts.contains_key(&key) {
                    let scope = StartScope::Activity { activity: &task.name, key: &task.concurrency_key };
                    let next = self.next_start(scope, rate, now).await;
                    next_starts.insert(key.clone(), next);
                }
                next_start = next_starts.get(&key).copied().flatten();
            }
            queued.push(QueuedActivity {
                activity: task.name,
                seq: task.seq,
                attempt: task.attempt,
                concurrency_key: task.concurrency_key,
                queued_at: task.visible_at,
                state,
                limits,
                next_start_at: next_start,
            });
        }
        Ok(queued)
    }
}

impl Client {
    /// Every queue of work in the store: for each activity and concurrency key, its attempts in
    /// the task queue (waiting, or held by a worker); for each workflow and key, its Pending and
    /// Running instances. With the limits each waits behind, as this client's runtime registered
    /// them, and, where a rate's window is full while items wait, when it next admits a start.
    /// Activities first, then workflows, by name and key. One store read, plus one per queue of a
    /// rate-limited name with items waiting.
    pub async fn queues(&self) -> Result<Vec<QueueStatus>, Error> {
        let now = self.now();
        let depths = self.store.queue_depths(now).await?;
        let mut queues = Vec::with_capacity(depths.len());
        for depth in depths {
            let keyed = !depth.concurrency_key.is_empty();
            let (limits, rate) = match (depth.kind, self.engine()) {
                (_, None) => (None, None),
                (QueueKind::Activity, Some(engine)) => engine
                    .activity_caps()
                    .iter()
                    .find(|cap| cap.activity == depth.name)
                    .map_or((None, None), |cap| (Some(activity_limits(cap, keyed)), cap.rate)),
                (QueueKind::Workflow, Some(engine)) => engine
                    .caps()
                    .iter()
                    .find(|cap| cap.workflow == depth.name)
                    .map_or((None, None), |cap| (Some(workflow_limits(cap)), cap.rate)),
            };
            let mut next_start = None;
            if let (Some(rate), true) = (rate, depth.waiting > 0) {
                let scope = match depth.kind {
                    QueueKind::Activity => StartScope::Activity { activity: &depth.name, key: &depth.concurrency_key },
                    QueueKind::Workflow => StartScope::Workflow { workflow: &depth.name, key: &depth.concurrency_key },
                };
                next_start = self.next_start(scope, rate, now).await;
            }
            queues.push(QueueStatus {
                kind: depth.kind,
                name: depth.name,
                concurrency_key: depth.concurrency_key,
                waiting: depth.waiting,
                running: depth.running,
                oldest_waiting: depth.oldest_waiting,
                limits,
                next_start_at: next_start,
            });
        }
        Ok(queues)
    }
}

/// What an activity's attempts wait behind, for a call with a concurrency key or without.
fn activity_limits(cap: &ActivityCap, keyed: bool) -> String {
    let (at_once, per) = if keyed { ("at once per key", "per key") } else { ("at once in all", "in all") };
    describe_limits(cap.concurrency, cap.rate, at_once, per)
}

/// What a workflow's Pending instances wait behind.
fn workflow_limits(cap: &WorkflowCap) -> String {
    let (at_once, per) =
        if cap.keyed { ("running at once per key", "per key") } else { ("running at once in all", "in all") };
    describe_limits(cap.concurrency, cap.rate, at_once, per)
}

/// Flow control as statuses say it: `"at most 4 {at_once}; at most 10 starts per 1000 ms {per}"`.
fn describe_limits(concurrency: Option<u32>, rate: Option<RateLimit>, at_once: &str, per: &str) -> String {
    let mut said = Vec::new();
    if let Some(n) = concurrency {
        said.push(format!("at most {n} {at_once}"));
    }
    if let Some(rate) = rate {
        said.push(format!("at most {} starts per {} ms {per}", rate.limit, rate.period_ms));
    }
    said.join("; ")
}
