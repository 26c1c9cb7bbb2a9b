//! Wall-clock time in the store's unit (milliseconds since the Unix epoch), in one place.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::store::Millis;

/// Now, in milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> Millis {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)).unwrap_or(0)
}

/// Time since `start` (zero if the clock went back).
pub(crate) fn elapsed_since_ms(start: Millis) -> Duration {
    Duration::from_millis(u64::try_from(now_ms().saturating_sub(start)).unwrap_or(0))
}

/// Sleeps until wall-clock time `at` (returns at once if it has passed).
pub(crate) async fn sleep_until_ms(at: Millis) {
    let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}
