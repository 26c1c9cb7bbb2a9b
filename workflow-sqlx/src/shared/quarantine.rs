//! Claimed instance rows that do not decode: what a claim does with them.
//!
//! A claim takes rows before it decodes them, so a row damaged behind the store's back (a
//! `generation` of -1, a `NULL` where the engine always writes a value, a value of a newer
//! version of this library) is claimed with the healthy rows of its batch. Failing the whole claim
//! would strand them all: the claim committed, so the worker owns them and renews their leases,
//! but never runs them. So each row is decoded on its own: the healthy ones are returned, and a
//! damaged one is set aside, not returned:
//! - its claim is undone (owner and lease cleared) and its wake-up set [`FIRST_WAIT`] later,
//!   growing [`BACKOFF`] times with each failed decode in a row (1 s, 4 s, 16 s, 64 s, in the
//!   claim's clock), so it is not claimed again in a hot loop, and a repair or a worker that can
//!   read the row gets to it meanwhile; a warning names the row and the column;
//! - at the [`LIMIT`]th failed decode in a row, it is failed instead: status `Failed` (the claim
//!   only takes `Pending` and `Running` rows, so the status column reads, and writing it leaves
//!   the row unclaimable), error type `CorruptRow` with the decode error, no owner, no wake-up,
//!   its tasks deleted and its parent woken, as a finish does. The damaged column is left as it
//!   is, for a person to look at; reads of the row still report it as corrupt.
//!
//! The count of failed decodes is kept in memory by the store object (see [`Quarantine`]): each
//! process gives a row that many tries, and a row that decodes again is forgotten.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use workflow_core::store::{Millis, StoreError};
use workflow_core::FailureDetails;

/// Failed decodes in a row before the row's instance is failed.
pub(crate) const LIMIT: u32 = 5;

/// The wait before a set-aside row is claimable again, after its first failed decode.
pub(crate) const FIRST_WAIT: Duration = Duration::from_secs(1);

/// How much longer each next wait is.
pub(crate) const BACKOFF: u32 = 4;

/// What to do with a claimed row that did not decode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SetAside {
    /// Undo the claim; claimable again from `wake_at`.
    Later {
        /// The row's new wake-up time.
        wake_at: Millis,
    },
    /// Fail the instance with this stored failure (JSON, as `WriteOp::Finish` writes it).
    Fail {
        /// The `error` column's new value.
        error: String,
    },
}

/// The failed decodes in a row of each damaged row this store object claimed, by row key (the
/// instance id, or what names the row when the id does not read).
#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    strikes: Mutex<HashMap<String, u32>>,
}

impl Quarantine {
    /// Counts a failed decode of the claimed row `key` at `now`, logs it, and says what to do.
    pub(crate) fn set_aside(&self, key: &str, now: Millis, error: &StoreError) -> SetAside {
        let strikes = match self.strikes.lock() {
            Ok(mut strikes) => {
                let count = strikes.entry(key.to_owned()).or_default();
                *count += 1;
                let count = *count;
                if count >= LIMIT {
                    strikes.remove(key);
                }
                count
            }
            // Counting is lost, not the row: it is set aside as at its first failure.
            Err(_) => 1,
        };
        if strikes >= LIMIT {
            tracing::error!(row = key, %error, strikes, "a claimed instance row does not decode; failing it");
            let failure = FailureDetails {
                error_type: "CorruptRow".into(),
                message: format!("the instance's row did not decode when claimed, {strikes} times in a row: {error}"),
            };
            return SetAside::Fail { error: failure.to_stored() };
        }
        let wait = wait_after(strikes);
        tracing::warn!(row = key, %error, strikes, retry_in = ?wait, "a claimed instance row does not decode; setting it aside");
        let wait = i64::try_from(wait.as_millis()).unwrap_or(i64::MAX);
        SetAside::Later { wake_at: now.saturating_add(wait) }
    }

    /// Counts a failed decode of the claimed task row `key` at `now`, logs it, and says when the
    /// task may be claimed again. A task has no status to fail, so it waits ever longer, up to
    /// the last wait (64 s) each time, until a person repairs the row or ends its instance
    /// (a terminate deletes its tasks).
    pub(crate) fn set_aside_task(&self, key: &str, now: Millis, error: &StoreError) -> Millis {
        let strikes = match self.strikes.lock() {
            Ok(mut strikes) => {
                let count = strikes.entry(format!("task {key}")).or_default();
                *count = (*count + 1).min(LIMIT - 1);
                *count
            }
            Err(_) => 1,
        };
        let wait = wait_after(strikes);
        tracing::warn!(task = key, %error, strikes, retry_in = ?wait, "a claimed task row does not decode; setting it aside");
        now.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
    }

    /// Forgets the failed decodes of the rows of `keys`, which decoded (cheap when none failed).
    pub(crate) fn decoded<'a>(&self, keys: impl IntoIterator<Item = &'a str>) {
        let Ok(mut strikes) = self.strikes.lock() else { return };
        if strikes.is_empty() {
            return;
        }
        for key in keys {
            strikes.remove(key);
        }
    }
}

/// The wait after a row's `strikes`th failed decode in a row: [`FIRST_WAIT`], [`BACKOFF`] times
/// longer with each strike.
fn wait_after(strikes: u32) -> Duration {
    FIRST_WAIT.saturating_mul(BACKOFF.saturating_pow(strikes.saturating_sub(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_then_the_row_fails_and_is_forgotten() {
        let quarantine = Quarantine::default();
        let error = StoreError::Corrupt("instance \"x\": column `generation`: -1 is not a u32".into());
        let waits: Vec<SetAside> = (0..LIMIT - 1).map(|_| quarantine.set_aside("x", 100, &error)).collect();
        let expected: Vec<SetAside> =
            [1_000, 4_000, 16_000, 64_000].into_iter().map(|wait| SetAside::Later { wake_at: 100 + wait }).collect();
        assert_eq!(waits, expected);
        match quarantine.set_aside("x", 100, &error) {
            SetAside::Fail { error } => {
                let failure = FailureDetails::parse(&error);
                assert_eq!(failure.error_type, "CorruptRow");
                assert!(failure.message.contains("generation"), "{}", failure.message);
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        assert_eq!(quarantine.set_aside("x", 0, &error), SetAside::Later { wake_at: 1_000 }, "counted afresh");
        quarantine.decoded(["x"]);
        assert_eq!(quarantine.set_aside("x", 0, &error), SetAside::Later { wake_at: 1_000 }, "forgotten once decoded");
    }
}
