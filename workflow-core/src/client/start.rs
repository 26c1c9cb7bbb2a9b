//! Starting instances: one builder, [`Start`], for every start. The macro's generated
//! `my_workflow::start(&client, input)` makes a typed one; [`Client::start_untyped`] makes one
//! from a workflow name and JSON, for the HTTP layer and tools.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Client, Handle};
use crate::error::Error;
use crate::model::time;
use crate::model::trace::TraceContext;
use crate::model::BoxFuture;
use crate::store::{Debounce, InstanceRecord, Millis, WriteOp};
use crate::worker::Engine;
use crate::workflow::WorkflowDef;

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

/// The longest debounce key accepted.
const MAX_DEBOUNCE_KEY_LEN: usize = 256;

/// The longest workflow name accepted.
const MAX_WORKFLOW_NAME_LEN: usize = 256;

/// Checks a workflow name given by a caller (a start by name, a list filter): 1 to 256 bytes
/// without control characters, so no store is ever asked for text it cannot hold (PostgreSQL
/// refuses NUL).
pub(crate) fn validate_workflow_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_WORKFLOW_NAME_LEN || name.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!(
            "workflow name {name:?} must be 1 to {MAX_WORKFLOW_NAME_LEN} bytes without control characters"
        )));
    }
    Ok(())
}

/// Checks an id a caller chooses for a new instance: a valid id ([`validate_instance_id`]) that
/// does not have the shape of a child workflow's generated id (`<parent>-g<generation>-c<seq>`),
/// so no start can create the row a parent's child call would then take for its own child.
pub(crate) fn validate_new_instance_id(id: &str) -> Result<(), Error> {
    validate_instance_id(id)?;
    if is_child_shaped(id) {
        return Err(Error::InvalidInstanceId {
            id: id.to_owned(),
            reason: "ids ending in `-g<digits>-c<digits>` are reserved for child workflows",
        });
    }
    Ok(())
}

/// Whether `id` ends like a generated child id: `-g<digits>-c<digits>`.
fn is_child_shaped(id: &str) -> bool {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let mut parts = id.rsplitn(3, '-');
    let (Some(seq), Some(generation), Some(_parent)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    seq.strip_prefix('c').is_some_and(digits) && generation.strip_prefix('g').is_some_and(digits)
}

/// `id` once validated as a new instance's, or a new id when `None`: a UUIDv7, whose leading bits
/// are the time, so a store's inserts of new instances (and of their journals, tasks and events,
/// keyed by instance id) land at the end of its indexes instead of at random pages. With random
/// ids, each commit dirtied pages all over a growing store: on SQLite W1 ran 2.5x slower once the
/// store held 10,000 finished instances. The 74 bits after the time stay random.
pub(crate) fn id_or_new(id: Option<&str>) -> Result<String, Error> {
    match id {
        Some(id) => {
            validate_new_instance_id(id)?;
            Ok(id.to_owned())
        }
        None => Ok(uuid::Uuid::now_v7().simple().to_string()),
    }
}

/// What a start does when an instance with the requested id already exists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReusePolicy {
    /// Fail with [`Error::InstanceExists`] (the default).
    #[default]
    Error,
    /// Start nothing and return the existing instance (it must be of the same workflow).
    ReturnExisting,
    /// Terminate the existing instance if it still runs (with its children), purge it, and start
    /// afresh under the same id.
    TerminateAndRestart,
}

/// A start of one instance: set options, then `.await` it for a [`Handle`]. It is a future, so
/// many starts can be awaited together (`futures::future::try_join_all`); nothing is written
/// before it is first polled.
///
/// ```ignore
/// let handle = process_order::start(&client, order).id("order-7").reuse(ReusePolicy::ReturnExisting).await?;
/// let receipt = handle.result().await?;
/// ```
#[must_use = "a start does nothing until it is awaited"]
pub struct Start<T> {
    client: Client,
    workflow: String,
    input: Result<String, Error>,
    id: Option<String>,
    reuse: ReusePolicy,
    /// The claim priority; `None`: the workflow's default.
    priority: Option<i32>,
    /// The concurrency key, when the start knows the workflow's type; `None`: computed from the
    /// input by the runtime's registry.
    concurrency_key: Option<String>,
    /// A delayed start: when the instance becomes claimable.
    due: Option<Due>,
    /// Debounce: the key, the delay, and the longest wait.
    debounce: Option<(String, Duration, Option<Duration>)>,
    /// The caller's trace (a W3C `traceparent`), checked when the start runs.
    trace_parent: Option<String>,
    /// The start under way, once polled.
    running: Option<BoxFuture<'static, Result<String, Error>>>,
    _output: PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Start<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Start").field("workflow", &self.workflow).field("id", &self.id).finish_non_exhaustive()
    }
}

impl<T> Start<T> {
    /// The instance id (letters, digits, `-`, `_`; at most 64); a new UUIDv7 when not set. Ids
    /// that sort by creation time (a UUIDv7, a timestamp prefix) keep a large store's commits
    /// cheap; random ones scatter each commit's rows over its indexes (bench W10).
    pub fn id(mut self, instance_id: impl Into<String>) -> Self {
        self.id = Some(instance_id.into());
        self
    }

    /// What to do when an instance with this id exists ([`ReusePolicy::Error`] by default).
    pub fn reuse(mut self, policy: ReusePolicy) -> Self {
        self.reuse = policy;
        self
    }

    /// The instance's claim priority: when more instances are runnable than workers have slots,
    /// a higher priority is claimed first, and within one priority the oldest first (no other
    /// guarantee against starvation). The workflow's `#[workflow(priority = N)]` by default, else
    /// 0; negative values rank below it. A start that finds its id taken
    /// ([`ReusePolicy::ReturnExisting`]) leaves the existing instance's priority as it is.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = Some(priority);
        self
    }

    /// Delays the start by `delay`: the instance is created now, Pending (its status says when
    /// it is due, `InstanceStatus::wake_at`), and runs once `delay` has passed on the runtime's
    /// clock, on whichever worker claims it then. Durable: a delayed start survives restarts of
    /// every process, as any stored instance does. Not with [`Start::debounce`] (whose delay it
    /// is already).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.due = Some(Due::After(delay));
        self
    }

    /// Starts the instance at `at` (see [`Start::delay`]); a time already past starts it now.
    pub fn at(mut self, at: std::time::SystemTime) -> Self {
        self.due = Some(Due::At(at));
        self
    }

    /// Debounces the start: many starts of this workflow with the same `key` within `delay` of
    /// each other collapse into one run, with the input of the last. The start creates an
    /// instance due `delay` from now, or, while the key's instance still waits to start, gives
    /// that instance its input and puts it off until `delay` from now; the handle is to that
    /// instance. Once the instance has been claimed, the next start with the key waits in a new
    /// one. Atomic across processes. The key is 1 to 256 bytes without control characters; the
    /// delay is at least 1 ms. A debounced start takes no `.id()` (the key finds its instance).
    pub fn debounce(mut self, key: impl Into<String>, delay: Duration) -> Self {
        let max_wait = self.debounce.take().and_then(|(_, _, max_wait)| max_wait);
        self.debounce = Some((key.into(), delay, max_wait));
        self
    }

    /// Continues the caller's trace: `traceparent` is a W3C trace context
    /// (`00-<32 hex trace id>-<16 hex span id>-<2 hex flags>`, such as an incoming request's
    /// `traceparent` header, or what an OpenTelemetry propagator injects), stored with the
    /// instance, so its runs' `workflow` spans carry that trace id, before and after any restart,
    /// and its children continue it. A malformed one fails the start with
    /// [`Error::InvalidArgument`]. Without it, the instance's trace is derived from its id.
    pub fn trace_parent(mut self, traceparent: impl Into<String>) -> Self {
        self.trace_parent = Some(traceparent.into());
        self
    }

    /// With [`Start::debounce`]: the longest a steady stream of starts may put the run off,
    /// counted from the first start the run collapses (it runs then with the latest input, and
    /// later starts wait in a new instance). At least the delay. Without one, a stream of starts
    /// closer together than the delay puts the run off for as long as it lasts.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        match &mut self.debounce {
            Some((_, _, wait)) => *wait = Some(max_wait),
            None => self.debounce = Some((String::new(), Duration::ZERO, Some(max_wait))),
        }
        self
    }
}

impl<T: DeserializeOwned> Future for Start<T> {
    type Output = Result<Handle<T>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let running = this.running.get_or_insert_with(|| {
            let client = this.client.clone();
            let workflow = std::mem::take(&mut this.workflow);
            let input = std::mem::replace(&mut this.input, Err(Error::InvalidArgument("start polled twice".into())));
            let (id, reuse, priority) = (this.id.take(), this.reuse, this.priority);
            let (debounce, concurrency_key, due) = (this.debounce.take(), this.concurrency_key.take(), this.due);
            let trace_parent = this.trace_parent.take();
            Box::pin(async move {
                let input = input?;
                let concurrency_key = concurrency_key.as_deref();
                let trace_context = trace_parent
                    .map(|given| TraceContext::parse(&given).map(|context| context.traceparent()))
                    .transpose()
                    .map_err(Error::InvalidArgument)?;
                let trace_context = trace_context.as_deref();
                let new = New { workflow: &workflow, input: &input, priority, concurrency_key, due, trace_context };
                match debounce {
                    Some(_) if due.is_some() => Err(Error::InvalidArgument(
                        "a debounced start is delayed by its debounce delay: it takes no `.delay(..)` or `.at(..)`"
                            .into(),
                    )),
                    Some(debounce) if id.is_none() => client.debounced(new, debounce).await,
                    Some(_) => Err(Error::InvalidArgument(
                        "a debounced start takes no id: its key finds the instance to run".into(),
                    )),
                    None => client.start_with_policy(new, id.as_deref(), reuse).await,
                }
            })
        });
        running.as_mut().poll(cx).map(|started| started.map(|id| Handle::new(this.client.clone(), id)))
    }
}

/// What a start creates: the workflow, its input (JSON), the priority asked for and the
/// concurrency key.
#[derive(Clone, Copy)]
struct New<'a> {
    workflow: &'a str,
    input: &'a str,
    /// `None`: the workflow's default.
    priority: Option<i32>,
    /// `None`: unknown to the caller (an untyped start).
    concurrency_key: Option<&'a str>,
    /// When a delayed start becomes claimable.
    due: Option<Due>,
    /// The caller's trace, checked (a `traceparent`).
    trace_context: Option<&'a str>,
}

/// When a delayed start becomes claimable: after a delay from its creation, or at a time.
#[derive(Clone, Copy, Debug)]
enum Due {
    After(Duration),
    At(std::time::SystemTime),
}

impl Due {
    /// The due time in ms since the Unix epoch, for a start created `now`.
    fn at(self, now: Millis) -> Millis {
        match self {
            Due::After(delay) => now.saturating_add(time::millis(delay)),
            Due::At(at) => match at.duration_since(std::time::UNIX_EPOCH) {
                Ok(since) => time::millis(since),
                Err(_) => 0,
            },
        }
    }
}

impl New<'_> {
    /// The instance `id` this start creates at `now`, Pending. `engine`'s registry checks the
    /// input and knows the workflow's default priority and concurrency key; without a runtime,
    /// the input need only be JSON, the priority defaults to 0, and an untyped start's key to
    /// the empty one (see `WorkflowDef::concurrency_key`).
    fn record(
        &self,
        engine: Option<&std::sync::Arc<Engine>>,
        id: String,
        now: Millis,
    ) -> Result<InstanceRecord, Error> {
        let (default, key) = match engine {
            Some(engine) => {
                let key = engine.registry().input_key(self.workflow, self.input)?;
                (engine.registry().workflow(self.workflow).map_or(0, |entry| entry.priority), key)
            }
            None => {
                serde_json::from_str::<serde_json::Value>(self.input)
                    .map_err(|e| Error::InvalidInput { workflow: self.workflow.to_owned(), message: e.to_string() })?;
                (0, String::new())
            }
        };
        // Due later: the claims skip it until then (as they skip a debounced start).
        let wake_at = self.due.map(|due| due.at(now)).filter(|due| *due > now);
        Ok(InstanceRecord {
            priority: self.priority.unwrap_or(default),
            concurrency_key: self.concurrency_key.map_or(key, str::to_owned),
            wake_at,
            trace_context: self.trace_context.map(str::to_owned),
            ..InstanceRecord::pending(id, self.workflow, self.input, now)
        })
    }
}

impl Client {
    /// Starts workflow `W` with `input`. Prefer the generated `my_workflow::start(&client, input)`.
    pub fn start<W: WorkflowDef>(&self, input: &W::Input) -> Start<W::Output> {
        let concurrency_key = Some(W::concurrency_key(input));
        let input = serde_json::to_string(input).map_err(Error::from);
        Start { priority: Some(W::PRIORITY), concurrency_key, ..self.start_request(W::NAME, input) }
    }

    /// Starts a workflow by name with JSON input, for callers that know no Rust types (the HTTP
    /// layer, tools). The handle's output is untyped JSON.
    pub fn start_untyped(&self, workflow: &str, input: impl Into<String>) -> Start<serde_json::Value> {
        self.start_request(workflow, Ok(input.into()))
    }

    fn start_request<T>(&self, workflow: &str, input: Result<String, Error>) -> Start<T> {
        Start {
            client: self.clone(),
            workflow: workflow.to_owned(),
            input,
            id: None,
            reuse: ReusePolicy::default(),
            priority: None,
            concurrency_key: None,
            due: None,
            debounce: None,
            trace_parent: None,
            running: None,
            _output: PhantomData,
        }
    }

    /// Starts `new` under `policy` if `instance_id` is taken; returns the instance id.
    async fn start_with_policy(
        &self,
        new: New<'_>,
        instance_id: Option<&str>,
        policy: ReusePolicy,
    ) -> Result<String, Error> {
        // Before anything changes (a restart terminates what it replaces).
        self.limits
            .check_payload(new.input)
            .map_err(|size| size.error(format!("the input of workflow `{}`", new.workflow)))?;
        let Some(id) = instance_id else { return self.create(&new, None).await };
        validate_new_instance_id(id)?;
        match policy {
            // The create itself refuses a taken id.
            ReusePolicy::Error => self.create(&new, Some(id)).await,
            ReusePolicy::ReturnExisting => self.create_or_return(&new, id).await,
            ReusePolicy::TerminateAndRestart => {
                if let Some(existing) = self.store().instance(id).await? {
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
                }
                self.create(&new, Some(id)).await
            }
        }
    }

    /// [`ReusePolicy::ReturnExisting`], atomic: whoever loses a race to create `id` (the create
    /// reports it exists) reads the winner's instance and returns it, so concurrent starts of one
    /// id, in one process or several, all get the same instance.
    async fn create_or_return(&self, new: &New<'_>, id: &str) -> Result<String, Error> {
        // A start of the same id in this process marks it before its commit: until that commit
        // lands the instance is neither readable nor creatable here. It lands within a commit's
        // time; the deadline only bounds a store that stopped answering.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(existing) = self.store().instance(id).await? {
                return if existing.workflow == new.workflow {
                    Ok(existing.id)
                } else {
                    Err(Error::InstanceExists(id.to_owned()))
                };
            }
            match self.create(new, Some(id)).await {
                Err(Error::InstanceExists(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                other => return other,
            }
        }
    }

    /// Creates the instance (and runs it at once when this client's runtime has a free slot);
    /// returns its id (generated when `None`).
    async fn create(&self, new: &New<'_>, instance_id: Option<&str>) -> Result<String, Error> {
        validate_workflow_name(new.workflow)?;
        let id = id_or_new(instance_id)?;
        let Some(engine) = self.engine() else {
            let now = time::now_ms();
            let record = new.record(None, id.clone(), now)?;
            // Handed to a live worker that takes the workflow's starts where the store offers
            // one (`assign.rs`), else left for a claim.
            let leases = self.takers().assign(&record, now).await.into_iter().collect();
            // Through this client's group commit: many starts share a transaction.
            let (outcome, _) = self.write_leasing(vec![WriteOp::CreateInstance(record)], leases).await?;
            return if outcome.existing.is_empty() { Ok(id) } else { Err(Error::InstanceExists(id)) };
        };
        let record = new.record(Some(engine), id.clone(), engine.now())?;
        engine.start_instance(record, Vec::new()).await?;
        Ok(id)
    }

    /// A debounced start (see [`Start::debounce`]); returns the id of the instance that will run.
    async fn debounced(
        &self,
        new: New<'_>,
        (key, delay, max_wait): (String, Duration, Option<Duration>),
    ) -> Result<String, Error> {
        let (workflow, input) = (new.workflow, new.input);
        validate_workflow_name(workflow)?;
        if key.is_empty() && delay.is_zero() {
            return Err(Error::InvalidArgument("`.max_wait(..)` goes with `.debounce(key, delay)`".into()));
        }
        if key.is_empty() || key.len() > MAX_DEBOUNCE_KEY_LEN || key.chars().any(char::is_control) {
            return Err(Error::InvalidArgument(format!(
                "debounce key {key:?} must be 1 to {MAX_DEBOUNCE_KEY_LEN} bytes without control characters"
            )));
        }
        if delay < Duration::from_millis(1) {
            return Err(Error::InvalidArgument("a debounce delay must be at least 1 ms".into()));
        }
        if max_wait.is_some_and(|max_wait| max_wait < delay) {
            return Err(Error::InvalidArgument("a debounce's maximum wait must be at least its delay".into()));
        }
        self.limits.check_payload(input).map_err(|size| size.error(format!("the input of workflow `{workflow}`")))?;
        let now = self.engine().map_or_else(time::now_ms, |engine| engine.now());
        let record = new.record(self.engine(), id_or_new(None)?, now)?;
        let start = Debounce {
            record,
            key,
            due: now.saturating_add(time::millis(delay)),
            max_wait_ms: max_wait.map(time::millis),
        };
        let id = self.store().debounce(&start).await?;
        if let Some(engine) = self.engine() {
            engine.wake_claimer_at(start.due);
        }
        Ok(id)
    }

    /// Waits (briefly) until a run of `id` stopped here has left, so the id can run again.
    async fn wait_for_local_stop(&self, id: &str) {
        let Some(engine) = self.engine() else { return };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while engine.is_running(id) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_shaped_ids_are_reserved() {
        for id in ["P-g0-c0", "order-7-g12-c3", "a-g1-c99999"] {
            assert!(matches!(validate_new_instance_id(id), Err(Error::InvalidInstanceId { .. })), "{id}");
            assert!(validate_instance_id(id).is_ok(), "{id} can still be looked up");
        }
        for id in ["g0-c0", "P-g-c0", "P-g0-c", "P-gx-c0", "P-g0-c0x", "P_g0_c0", "order-1", "P-c0-g0"] {
            assert!(validate_new_instance_id(id).is_ok(), "{id}");
        }
    }

    /// New ids sort in the order they were made (so new rows land at the ends of the indexes)
    /// and are valid instance ids.
    #[test]
    fn generated_ids_sort_by_creation() {
        let ids: Vec<String> = (0..10_000).map(|_| id_or_new(None).expect("a new id")).collect();
        assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "generated ids are strictly increasing");
        assert!(ids.iter().all(|id| validate_new_instance_id(id).is_ok()));
    }
}
