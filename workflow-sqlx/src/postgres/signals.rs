//! Wake signals across processes: the `NOTIFY` channel of a schema, a signal's payload, the
//! signals a batch makes true, and the listener that forwards what it hears to subscribers.

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use workflow_core::store::{StoreError, WakeSignal, WriteOp};

use super::options::{opening, MAX_IDENTIFIER};

/// A `NOTIFY` payload must be shorter than this many bytes.
pub(super) const MAX_NOTICE: usize = 8000;

/// How many wake signals a subscriber may fall behind before it misses some.
const SIGNAL_CAPACITY: usize = 1024;

/// The `NOTIFY` channel of the tables in `schema`: its name, or a hash of it where that would be
/// too long for an identifier.
pub(super) fn channel_name(schema: &str) -> String {
    let channel = format!("workflow_wake_{schema}");
    if channel.len() <= MAX_IDENTIFIER {
        return channel;
    }
    // FNV-1a: every process must derive the same name, so no per-process random hasher.
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("workflow_wake_{hash:016x}")
}

/// A wake signal as a `NOTIFY` payload: `r`, `e:<instance id>`, `f:<instance id>`, `q` or
/// `t:<instance id>`.
pub(super) fn encode_signal(signal: &WakeSignal) -> String {
    match signal {
        WakeSignal::Runnable => "r".to_owned(),
        WakeSignal::Event(id) => format!("e:{id}"),
        WakeSignal::Finished(id) => format!("f:{id}"),
        WakeSignal::TaskQueued => "q".to_owned(),
        WakeSignal::TaskDone(id) => format!("t:{id}"),
    }
}

fn decode_signal(payload: &str) -> Option<WakeSignal> {
    match payload.split_once(':') {
        None if payload == "r" => Some(WakeSignal::Runnable),
        None if payload == "q" => Some(WakeSignal::TaskQueued),
        Some(("e", id)) => Some(WakeSignal::Event(id.to_owned())),
        Some(("f", id)) => Some(WakeSignal::Finished(id.to_owned())),
        Some(("t", id)) => Some(WakeSignal::TaskDone(id.to_owned())),
        _ => None,
    }
}

/// `signal` encoded, unless it is too long for a `NOTIFY` (an instance id of about 8000 bytes):
/// signals are hints, and the engine still polls.
pub(super) fn notice(signal: &WakeSignal) -> Option<String> {
    let notice = encode_signal(signal);
    let fits = notice.len() < MAX_NOTICE;
    if !fits {
        tracing::debug!(bytes = notice.len(), "postgres: a wake signal is too long for NOTIFY; not sent");
    }
    fits.then_some(notice)
}

/// The signals a batch makes true ([`WakeSignal::from_leased_batch`], the same rule the engine
/// wakes its own claimer by: none for the creates whose writer leased their starts, `started`),
/// encoded. A signal too long for a `NOTIFY` (an instance id of about 8000 bytes)
/// is dropped: signals are hints, and the engine still polls. `Finished` is sent by the statement
/// that finishes a watched instance ([`FINISHED_NOTICE`]), which alone can tell it is watched.
///
/// [`FINISHED_NOTICE`]: super::sql::FINISHED_NOTICE
pub(super) fn batch_notices(ops: &[WriteOp], started: &[&str]) -> Vec<String> {
    WakeSignal::from_leased_batch(ops, started).iter().filter_map(notice).collect()
}

/// Forwards the listener's notifications to the store's subscribers until the store stops it.
///
/// When the connection drops, `PgListener` reconnects and listens again; whatever was sent
/// meanwhile is lost, so a `Runnable` goes out after every reconnection to make the engine look.
async fn forward_signals(mut listener: PgListener, signals: broadcast::Sender<WakeSignal>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                backoff = Duration::from_millis(100);
                match decode_signal(notification.payload()) {
                    // No subscriber is not an error: signals are hints.
                    Some(signal) => {
                        let _ = signals.send(signal);
                    }
                    None => tracing::debug!(payload = notification.payload(), "postgres: unknown wake signal"),
                }
            }
            Ok(None) => {
                tracing::warn!("postgres: the wake-signal listener lost its connection and reconnected");
                let _ = signals.send(WakeSignal::Runnable);
            }
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "postgres: the wake-signal listener failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
                let _ = signals.send(WakeSignal::Runnable);
            }
        }
    }
}

/// Listens on `channel` on a connection of its own (made with `connect`, in a pool of one so it
/// never takes one the store needs) and spawns the task that forwards what it hears; returns that
/// pool, the sender subscribers subscribe to, and the task.
pub(super) async fn listen(
    connect: PgConnectOptions,
    channel: &str,
) -> Result<(PgPool, broadcast::Sender<WakeSignal>, JoinHandle<()>), StoreError> {
    let listener_pool = PgPoolOptions::new()
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(connect)
        .await
        .map_err(opening)?;
    let mut listener = PgListener::connect_with(&listener_pool).await.map_err(opening)?;
    listener.listen(channel).await.map_err(opening)?;
    let (signals, _) = broadcast::channel(SIGNAL_CAPACITY);
    let listener = tokio::spawn(forward_signals(listener, signals.clone()));
    Ok((listener_pool, signals, listener))
}

#[cfg(test)]
mod tests {
    use workflow_core::store::{InstanceRecord, TaskRecord, NEVER};

    use super::*;

    #[test]
    fn signals_round_trip() {
        for signal in [
            WakeSignal::Runnable,
            WakeSignal::Event("a:b/é".into()),
            WakeSignal::Finished(String::new()),
            WakeSignal::Event("e:x".into()),
            WakeSignal::TaskQueued,
            WakeSignal::TaskDone("t:ü/1".into()),
            WakeSignal::TaskDone(String::new()),
        ] {
            assert_eq!(decode_signal(&encode_signal(&signal)), Some(signal));
        }
        assert_eq!(decode_signal("x:1"), None);
        assert_eq!(decode_signal("rr"), None);
        assert_eq!(decode_signal("q:x"), None);
    }

    #[test]
    fn batch_notices_are_deduplicated() {
        let finish = |id: &str| WriteOp::Finish {
            id: id.into(),
            status: workflow_core::store::RuntimeStatus::Completed,
            output: None,
            error: None,
            updated_at: 1,
        };
        let event = |id: &str| WriteOp::AddEvent {
            instance_id: id.into(),
            name: "n".into(),
            payload: "1".into(),
            created_at: 1,
        };
        let ops = [
            event("a"),
            finish("b"),
            event("a"),
            WriteOp::SetWake { id: "c".into(), wake_at: None },
            finish("b"),
            WriteOp::Evict { id: "d".into(), wake_at: 5 },
            event(&"x".repeat(MAX_NOTICE)),
        ];
        // Finishes send their signal from SQL, for watched instances only.
        assert_eq!(batch_notices(&ops, &[]), ["r", "e:a"]);
        let task = TaskRecord {
            instance_id: "a".into(),
            generation: 0,
            seq: 0,
            name: "n".into(),
            input: "1".into(),
            concurrency_key: String::new(),
            priority: 0,
            attempt: 1,
            start_to_close_ms: None,
            heartbeat_timeout_ms: None,
            visible_at: 1,
            owner: None,
            lease_until: None,
            outcome: None,
            trace_context: None,
        };
        let queued = [
            WriteOp::EnqueueTask(task.clone()),
            finish("b"),
            WriteOp::DeleteTask { instance_id: "a".into(), generation: 0, seq: 1 },
            WriteOp::EnqueueTask(task),
        ];
        assert_eq!(batch_notices(&queued, &[]), ["q"], "one TaskQueued per batch");
        assert!(
            batch_notices(&[WriteOp::DeleteTask { instance_id: "a".into(), generation: 0, seq: 0 }], &[]).is_empty()
        );
        let waiting = [
            WriteOp::Evict { id: "a".into(), wake_at: NEVER },
            WriteOp::SetWake { id: "b".into(), wake_at: Some(NEVER) },
            event("c"),
        ];
        assert_eq!(batch_notices(&waiting, &[]), ["e:c"], "an instance waiting for NEVER is not runnable");
        assert_eq!(batch_notices(&[WriteOp::SetWake { id: "b".into(), wake_at: None }], &[]), ["r"]);
        let pending = InstanceRecord::pending("a", "wf", "1", 1);
        let owned = InstanceRecord { owner: Some("w".into()), lease_until: Some(100), ..pending.clone() };
        let ownerless = InstanceRecord { owner: Some("w".into()), ..pending.clone() };
        assert!(batch_notices(&[WriteOp::CreateInstance(owned.clone())], &[]).is_empty(), "its owner runs it");
        let both = [WriteOp::CreateInstance(owned), WriteOp::CreateInstance(pending.clone())];
        assert_eq!(batch_notices(&both, &[]), ["r"]);
        assert!(batch_notices(&both, &["a"]).is_empty(), "its start was leased: its creator runs it");
        let other = InstanceRecord { id: "b".into(), ..pending };
        let leased_and_not = [both[1].clone(), WriteOp::CreateInstance(other)];
        assert_eq!(batch_notices(&leased_and_not, &["a"]), ["r"], "b was not leased");
        assert_eq!(batch_notices(&[WriteOp::CreateInstance(ownerless)], &[]), ["r"], "no lease: claimable");
        assert!(batch_notices(
            &[WriteOp::SetStatus {
                id: "a".into(),
                status: workflow_core::store::RuntimeStatus::Running,
                updated_at: 1
            }],
            &[]
        )
        .is_empty());
    }

    #[test]
    fn channel_names_fit_an_identifier() {
        assert_eq!(channel_name("public"), "workflow_wake_public");
        let long = "s".repeat(MAX_IDENTIFIER);
        let channel = channel_name(&long);
        assert!(channel.len() <= MAX_IDENTIFIER);
        assert_eq!(channel, channel_name(&long), "the same in every process");
        assert_ne!(channel, channel_name(&"t".repeat(MAX_IDENTIFIER)));
    }
}
