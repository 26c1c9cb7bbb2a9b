//! Running one attempt of a registered activity: on its own task, under its start-to-close and
//! heartbeat timeouts, with a panic turned into a failed attempt. The same code runs an attempt
//! the owner of an instance makes itself and one a worker took from the task queue.

use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tracing::Instrument;

use super::{ActivityContext, ActivityOptions};
use crate::error::ActivityError;
use crate::model::time;
use crate::worker::{ActivityEntry, Engine};

/// Which attempt of which call to run.
pub(crate) struct Attempt<'a> {
    pub(crate) instance_id: Arc<str>,
    pub(crate) generation: u32,
    pub(crate) seq: u32,
    pub(crate) attempt: u32,
    pub(crate) name: &'a str,
    pub(crate) input: &'a str,
    pub(crate) options: ActivityOptions,
    /// The trace id of the instance that calls it (32 hex digits), for the attempt's span.
    pub(crate) trace_id: Option<String>,
}

/// Runs the attempt; the caller holds an activity slot for it. `Ok` holds the output JSON.
pub(crate) async fn run_attempt(engine: &Engine, attempt: Attempt<'_>) -> Result<String, ActivityError> {
    let name = attempt.name;
    let Some(entry) = engine.registry().activity(name) else {
        return Err(ActivityError::non_retryable(format!("activity `{name}` is not registered with this runtime")));
    };
    let began = std::time::Instant::now();
    let result = run_registered(engine, &entry, attempt).await;
    entry.metrics.attempt(name, result.is_ok(), began.elapsed());
    result
}

async fn run_registered(engine: &Engine, entry: &ActivityEntry, attempt: Attempt<'_>) -> Result<String, ActivityError> {
    let name = attempt.name;
    let heartbeat = Arc::new(AtomicI64::new(time::now_ms()));
    let context = ActivityContext::new(
        attempt.instance_id.clone(),
        engine.worker_id().into(),
        name.into(),
        attempt.generation,
        attempt.seq,
        attempt.attempt,
        heartbeat.clone(),
    );
    let span = tracing::info_span!(
        "activity",
        instance_id = %attempt.instance_id,
        activity = name,
        seq = attempt.seq,
        attempt = attempt.attempt,
        worker_id = %engine.worker_id(),
        trace_id = attempt.trace_id.as_deref(),
    );
    let mut task = AbortOnDrop(tokio::spawn((entry.run)(context, attempt.input.to_owned()).instrument(span)));
    let output = watch(&mut task, name, attempt.options, &heartbeat).await?;
    // A result over the limit is never stored. Not retried: a rerun would most likely return as
    // much again.
    engine.limits().check_payload(&output).map_err(|size| {
        ActivityError::non_retryable(format!(
            "PayloadTooLarge: the result of activity `{name}` is {} bytes, over the payload limit of {} bytes",
            size.size, size.limit
        ))
    })?;
    Ok(output)
}

/// Waits for an attempt, failing it when it outlives its start-to-close timeout or goes too long
/// without a heartbeat (both in real time: activities are real work).
async fn watch(
    task: &mut AbortOnDrop,
    name: &str,
    options: ActivityOptions,
    heartbeat: &AtomicI64,
) -> Result<String, ActivityError> {
    let deadline = options.start_to_close.map(|limit| tokio::time::Instant::now() + limit);
    let check_every =
        options.heartbeat_timeout.map_or(Duration::from_secs(3600), |h| (h / 4).max(Duration::from_millis(5)));
    loop {
        let until_deadline = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = &mut *task => return result,
            () = until_deadline => {
                let limit = options.start_to_close.unwrap_or_default();
                return Err(ActivityError::new(format!("activity `{name}` timed out after {limit:?} (start-to-close timeout)")));
            }
            () = tokio::time::sleep(check_every) => {
                if let Some(limit) = options.heartbeat_timeout {
                    let silent = time::elapsed_since_ms(heartbeat.load(Ordering::Relaxed));
                    if silent > limit {
                        return Err(ActivityError::new(format!("activity `{name}` sent no heartbeat for {silent:?} (heartbeat timeout {limit:?})")));
                    }
                }
            }
        }
    }
}

/// Aborts a spawned attempt when nobody waits for it any more (shutdown, a dropped branch).
struct AbortOnDrop(tokio::task::JoinHandle<Result<String, ActivityError>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Future for AbortOnDrop {
    type Output = Result<String, ActivityError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|joined| joined.unwrap_or_else(|error| Err(panic_error(error))))
    }
}

fn panic_error(error: tokio::task::JoinError) -> ActivityError {
    match error.try_into_panic() {
        Ok(panic) => ActivityError::new(format!("activity panicked: {}", crate::error::panic_message(panic.as_ref()))),
        Err(_) => ActivityError::new("activity attempt was cancelled"),
    }
}
