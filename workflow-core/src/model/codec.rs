//! The one payload codec: how outcomes and failures are stored as JSON text, for every reader
//! (replay, the driver, the client, the task queue, diagrams), so they all decode the same way.
//!
//! Stored forms (unchanged from earlier versions, so existing databases read the same):
//! - a failed or retrying activity, a timed-out event wait: `{"message": "...", "attempts": n}`;
//! - an instance's failure, a failed child's record: `{"error_type": "...", "message": "..."}`;
//! - a queued attempt's failure: an [`ActivityError`] as JSON.

use serde::{Deserialize, Serialize};

use crate::error::{ActivityError, FailureDetails};
use crate::store::{Millis, TaskOutcome};

/// A failure as stored: in a journal record or an instance's `error` column.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredFailure {
    /// The kind of failure, for an instance's end (`ActivityFailed`, `Terminated`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) error_type: Option<String>,
    /// What went wrong.
    pub(crate) message: String,
    /// Attempts made, for an activity's failure.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) attempts: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl StoredFailure {
    /// An activity's (or a wait's) failure after `attempts` attempts.
    pub(crate) fn step(message: impl Into<String>, attempts: u32) -> Self {
        Self { error_type: None, message: message.into(), attempts }
    }

    /// The stored (JSON) text.
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// Decodes a stored failure strictly: a record the engine wrote must decode (replay treats
    /// anything else as a corrupt journal).
    pub(crate) fn decode(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Reads a stored failure for display: text that is not the JSON form is kept as the
    /// message, and a message that is not a string is shown as JSON.
    pub(crate) fn read(text: &str) -> Self {
        if let Ok(failure) = Self::decode(text) {
            return failure;
        }
        let value: Option<serde_json::Value> = serde_json::from_str(text).ok();
        let field = |key: &str| value.as_ref().and_then(|v| v.get(key));
        let message = match field("message") {
            Some(serde_json::Value::String(message)) => message.clone(),
            Some(other) => other.to_string(),
            None => text.to_owned(),
        };
        let error_type = field("error_type").and_then(|v| v.as_str()).map(str::to_owned);
        let attempts = field("attempts").and_then(|v| v.as_u64()).and_then(|n| u32::try_from(n).ok()).unwrap_or(0);
        Self { error_type, message, attempts }
    }
}

impl From<&FailureDetails> for StoredFailure {
    fn from(details: &FailureDetails) -> Self {
        Self { error_type: Some(details.error_type.clone()), message: details.message.clone(), attempts: 0 }
    }
}

impl From<StoredFailure> for FailureDetails {
    fn from(failure: StoredFailure) -> Self {
        Self { error_type: failure.error_type.unwrap_or_else(|| "Unknown".to_owned()), message: failure.message }
    }
}

/// A queued attempt's result as its task row stores it.
pub(crate) fn encode_outcome(result: &Result<String, ActivityError>, finished_at: Millis) -> TaskOutcome {
    match result {
        Ok(output) => TaskOutcome { succeeded: true, payload: output.clone(), finished_at },
        Err(error) => TaskOutcome {
            succeeded: false,
            payload: serde_json::to_string(error).unwrap_or_else(|_| error.message().to_owned()),
            finished_at,
        },
    }
}

/// A queued attempt's result as the instance's owner sees it.
pub(crate) fn decode_outcome(outcome: TaskOutcome) -> Result<String, ActivityError> {
    if outcome.succeeded {
        return Ok(outcome.payload);
    }
    Err(serde_json::from_str::<ActivityError>(&outcome.payload).unwrap_or_else(|_| ActivityError::new(outcome.payload)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_forms_are_the_ones_existing_databases_hold() {
        assert_eq!(StoredFailure::step("boom", 3).encode(), r#"{"message":"boom","attempts":3}"#);
        let details = FailureDetails { error_type: "Terminated".into(), message: "bye".into() };
        assert_eq!(StoredFailure::from(&details).encode(), r#"{"error_type":"Terminated","message":"bye"}"#);
        assert_eq!(FailureDetails::parse(&details.to_stored()), details);
        assert_eq!(StoredFailure::decode(r#"{"message":"m","attempts":2}"#).unwrap(), StoredFailure::step("m", 2));
    }

    #[test]
    fn display_reads_keep_what_does_not_decode() {
        assert_eq!(StoredFailure::read("plain text").message, "plain text");
        assert_eq!(StoredFailure::read(r#"{"message":42}"#).message, "42");
        assert!(StoredFailure::decode("plain text").is_err());
        let details = FailureDetails::parse("not json");
        assert_eq!((details.error_type.as_str(), details.message.as_str()), ("Unknown", "not json"));
    }

    #[test]
    fn task_outcomes_round_trip() {
        let failed = encode_outcome(&Err(ActivityError::non_retryable("no")), 5);
        assert!(!failed.succeeded);
        assert_eq!(decode_outcome(failed), Err(ActivityError::non_retryable("no")));
        assert_eq!(decode_outcome(encode_outcome(&Ok("1".into()), 5)), Ok("1".to_owned()));
    }
}
