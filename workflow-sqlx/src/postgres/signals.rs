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

/// A wake signal as a `NOTIFY` payload: `r`, `e:<instance id>`, `f:<instance id>`, `q`,
/// `t:<instance id>` or `a:<JSON array of the owner and the instance ids>`.
pub(super) fn encode_signal(signal: &WakeSignal) -> String {
    match signal {
        WakeSignal::Runnable => "r".to_owned(),
        WakeSignal::Event(id) => format!("e:{id}"),
        WakeSignal::Finished(id) => format!("f:{id}"),
        WakeSignal::TaskQueued => "q".to_owned(),
        WakeSignal::TaskDone(id) => format!("t:{id}"),
        WakeSignal::Assigned { owner, ids } => {
            let names: Vec<&str> = std::iter::once(owner.as_str()).chain(ids.iter().map(String::as_str)).collect();
            format!("a:{}", serde_json::Value::from(names))
        }
    }
}

fn decode_signal(payload: &str) -> Option<WakeSignal> {
    match payload.split_once(':') {
        None if payload == "r" => Some(WakeSignal::Runnable),
        None if payload == "q" => Some(WakeSignal::TaskQueued),
        Some(("e", id)) => Some(WakeSignal::Event(id.to_owned())),
        Some(("f", id)) => Some(WakeSignal::Finished(id.to_owned())),
        Some(("t", id)) => Some(WakeSignal::TaskDone(id.to_owned())),
        Some(("a", names)) => {
            let mut names = serde_json::from_str::<Vec<String>>(names).ok()?.into_iter();
            Some(WakeSignal::Assigned { owner: names.next()?, ids: names.collect() })
        }
        _ => None,
    }
}

/// The `Assigned` signals of the starts a write assigned (`(owner, instance id)`), one per owner
/// and as few as fit in `NOTICE`s: the owner runs them when it hears of them (a start whose
/// notice is lost, or too long to send, is run by its owner's reconciliation instead).
pub(super) fn assigned_notices(assigned: &[(&str, &str)]) -> Vec<String> {
    let mut by_owner: Vec<(&str, Vec<String>)> = Vec::new();
    for (owner, id) in assigned {
        match by_owner.iter_mut().find(|(known, _)| known == owner) {
            Some((_, ids)) => ids.push((*id).to_owned()),
            None => by_owner.push((owner, vec![(*id).to_owned()])),
        }
    }
    let mut notices = Vec::new();
    for (owner, ids) in by_owner {
        let mut chunk: Vec<String> = Vec::new();
        // The payload's length so far: `a:["<owner>"` and `]`, each id `,"<id>"` (ids and owners
        // that JSON escapes are counted as they encode, by `notice`'s check).
        let base = owner.len() + 6;
        let mut len = base;
        for id in ids {
            if !chunk.is_empty() && len + id.len() + 3 >= MAX_NOTICE {
                let signal = WakeSignal::Assigned { owner: owner.to_owned(), ids: std::mem::take(&mut chunk) };
                notices.extend(notice(&signal));
                len = base;
            }
            len += id.len() + 3;
            chunk.push(id);
        }
        notices.extend(notice(&WakeSignal::Assigned { owner: owner.to_owned(), ids: chunk }));
    }
    notices
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
            WakeSignal::Assigned { owner: "w-1#a:\"b".into(), ids: vec!["x".into(), "y,\"z".into()] },
            WakeSignal::Assigned { owner: String::new(), ids: Vec::new() },
        ] {
            assert_eq!(decode_signal(&encode_signal(&signal)), Some(signal));
        }
        assert_eq!(decode_signal("x:1"), None);
        assert_eq!(decode_signal("rr"), None);
        assert_eq!(decode_signal("q:x"), None);
        assert_eq!(decode_signal("a:[]"), None, "an assignment names its owner");
        assert_eq!(decode_signal("a:{"), None);
    }

    #[test]
    fn assigned_notices_are_one_per_owner_and_fit() {
        let assigned = [("w1", "a"), ("w2", "b"), ("w1", "c")];
        let notices = assigned_notices(&assigned);
        assert_eq!(notices, [r#"a:["w1","a","c"]"#, r#"a:["w2","b"]"#]);
        let ids: Vec<String> = (0..1000).map(|i| format!("{i:032}")).collect();
        let many: Vec<(&str, &str)> = ids.iter().map(|id| ("w", id.as_str())).collect();
        let notices = assigned_notices(&many);
        assert!(notices.len() > 1 && notices.iter().all(|n| n.len() < MAX_NOTICE));
        let decoded: Vec<String> = (notices.iter())
            .flat_map(|n| match decode_signal(n) {
                Some(WakeSignal::Assigned { owner, ids }) if owner == "w" => ids,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(decoded, ids, "every id, once, in order");
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
