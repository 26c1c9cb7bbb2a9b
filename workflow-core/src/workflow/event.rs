//! Waits for external events: buffered in the store's inbox, taken in arrival order, consumed
//! with the commit that journals the wait's outcome.

use std::future::IntoFuture;
use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::{Fatal, WorkflowContext};
use crate::error::WorkflowError;
use crate::model::codec::StoredFailure;
use crate::model::time::millis;
use crate::model::BoxFuture;
use crate::store::{EventRecord, JournalRecord, RecordStatus, StepKind, Store, StoreError, WriteOp};

/// Events of its name a wait reads at a time: the first one not taken by another wait of the
/// run is the one, so a page rarely holds more than one that matters.
pub(super) const EVENT_PAGE: usize = 16;

/// Takes the first event named `name` in the inbox that no other wait of this run has taken:
/// reads only events of that name (never the payloads of the others the inbox holds), a page
/// at a time past those already taken. `None` if there is none now.
async fn take_next(ctx: &WorkflowContext, store: &dyn Store, name: &str) -> Result<Option<EventRecord>, StoreError> {
    {
        // Read beside the journal at the claim: the oldest of its name there, if any, is the
        // oldest in the inbox (the front holds every event older than its last).
        let mut state = ctx.state();
        let state = &mut *state;
        let front = state
            .inbox_front
            .iter()
            .position(|event| event.name.eq_ignore_ascii_case(name) && !state.taken_events.contains(&event.event_id));
        if let Some(at) = front {
            let event = state.inbox_front.remove(at);
            state.seen_events.insert(event.event_id);
            state.taken_events.insert(event.event_id);
            return Ok(Some(event));
        }
    }
    let mut after = i64::MIN;
    loop {
        let page = store.events_named(ctx.instance_id(), name, after, EVENT_PAGE).await?;
        let full = page.len() >= EVENT_PAGE;
        let last = page.last().map(|event| event.event_id);
        {
            let mut state = ctx.state();
            state.seen_events.extend(page.iter().map(|event| event.event_id));
            let found = page.into_iter().find(|event| !state.taken_events.contains(&event.event_id));
            if let Some(event) = found {
                state.taken_events.insert(event.event_id);
                return Ok(Some(event));
            }
        }
        match last {
            Some(last) if full => after = last,
            _ => return Ok(None),
        }
    }
}

/// A wait for an external event; await it, optionally after `.timeout(d)`.
#[must_use = "an event wait does nothing until it is awaited"]
pub struct EventWait<T> {
    pub(crate) ctx: WorkflowContext,
    pub(crate) seq: u32,
    pub(crate) name: String,
    pub(crate) recorded: Option<JournalRecord>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) _payload: PhantomData<fn() -> T>,
}

impl<T> EventWait<T> {
    /// Gives up after `limit` with [`WorkflowError::Timeout`]. A zero limit takes only an event
    /// that is already buffered.
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
}

fn decode_event<T: DeserializeOwned>(name: &str, payload: &str) -> Result<T, WorkflowError> {
    serde_json::from_str(payload).map_err(|error| {
        WorkflowError::Serialization(format!(
            "the payload of event `{name}` does not deserialize into `{}`: {error}",
            std::any::type_name::<T>()
        ))
    })
}

impl<T: DeserializeOwned + Send + 'static> IntoFuture for EventWait<T> {
    type Output = Result<T, WorkflowError>;
    type IntoFuture = BoxFuture<'static, Self::Output>;

    fn into_future(self) -> Self::IntoFuture {
        let Self { ctx, seq, name, recorded, timeout, .. } = self;
        Box::pin(async move {
            if ctx.is_fatal() {
                return std::future::pending().await;
            }
            let timed_out = || WorkflowError::Timeout { operation: format!("event `{name}`") };
            let due = match recorded {
                Some(record) if record.status == RecordStatus::Completed => {
                    return decode_event(&name, record.payload.as_deref().unwrap_or("null"));
                }
                Some(record) if record.status == RecordStatus::Failed => return Err(timed_out()),
                Some(record) => record.due_at,
                None => match timeout {
                    Some(limit) if !limit.is_zero() => {
                        let due = ctx.clock_now().saturating_add(millis(limit));
                        if !ctx.schedule(seq, StepKind::Event, &name, Some(due), None).await {
                            return std::future::pending().await;
                        }
                        Some(due)
                    }
                    Some(_) => Some(ctx.clock_now()),
                    None => None,
                },
            };
            // Named before the wait counts, so an eviction that follows knows what to look for.
            ctx.state().event_waits.insert(seq, name.clone());
            let _wait = ctx.waiting(seq, due);
            let engine = ctx.engine().clone();
            let signal = ctx.inbox_signal();
            loop {
                let notified = signal.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let reading = ctx.reading();
                let taken = take_next(&ctx, engine.store().as_ref(), &name).await;
                drop(reading);
                let taken = match taken {
                    Ok(taken) => taken,
                    Err(error) => {
                        ctx.fail(Fatal::Abandon(format!("could not read the inbox: {error}")));
                        return std::future::pending().await;
                    }
                };
                if let Some(event) = taken {
                    let record = ctx.new_record(
                        seq,
                        StepKind::Event,
                        &name,
                        RecordStatus::Completed,
                        Some(event.payload.clone()),
                    );
                    let consume = WriteOp::ConsumeEvent {
                        instance_id: ctx.instance_id().to_owned(),
                        event_id: event.event_id,
                        generation: ctx.generation(),
                        seq,
                    };
                    // Taken here, consumed in the store with the next commit (atomically with the
                    // record): a crash before it leaves the event in the inbox for the replay.
                    ctx.buffer(WriteOp::PutRecord(record));
                    ctx.buffer(consume);
                    return decode_event(&event.name, &event.payload);
                }
                if let Some(due) = due {
                    if ctx.clock_now() >= due {
                        let failure = StoredFailure::step(format!("timed out waiting for event `{name}`"), 1);
                        let payload = Some(failure.encode());
                        let record = ctx.new_record(seq, StepKind::Event, &name, RecordStatus::Failed, payload);
                        ctx.buffer(WriteOp::PutRecord(record));
                        return Err(timed_out());
                    }
                }
                if ctx.flush().await.is_err() {
                    return std::future::pending().await;
                }
                let deadline = async {
                    match due {
                        Some(due) => engine.clock().sleep_until(due).await,
                        None => std::future::pending().await,
                    }
                };
                // Woken by the local raise, a store signal, or the runtime's one inbox poll
                // (events raised where no signal reaches): never a poll of this wait's own.
                tokio::select! {
                    () = notified => {}
                    () = deadline => {}
                }
            }
        })
    }
}
