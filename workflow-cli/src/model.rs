//! The rows `wfctl` prints, read from the JSON shapes of the HTTP routes. Both backends produce
//! those shapes (the database backend builds them as the router does), so each row is read in one
//! place and `--json` prints the same document whichever backend answered.

use serde_json::Value;

use crate::error::CliError;

/// One instance: a status from the status or list route.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Instance {
    pub(crate) id: String,
    pub(crate) workflow: String,
    /// Dapr's status name (`RUNNING`, ...).
    pub(crate) status: String,
    pub(crate) created_at: String,
    pub(crate) updated_at: String,
    pub(crate) priority: i64,
    pub(crate) input: Option<String>,
    pub(crate) output: Option<String>,
    pub(crate) custom_status: Option<String>,
    /// The failure's type and message.
    pub(crate) failure: Option<(String, String)>,
    /// The parent, when the backend says (`Some(None)`: no parent); the HTTP status has no parent.
    pub(crate) parent_id: Option<Option<String>>,
    /// The status as the backend gave it, for `--json`.
    pub(crate) json: Value,
}

/// One page of instances.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    pub(crate) instances: Vec<Instance>,
    pub(crate) continuation: Option<String>,
}

/// One item of an instance's history (its creation, a step, a buffered event, its status).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HistoryItem {
    /// `created`, `step`, `eventBuffered` or `status`.
    pub(crate) kind: String,
    pub(crate) seq: Option<u64>,
    /// The step's kind (`activity`, `timer`, ...).
    pub(crate) step_kind: Option<String>,
    pub(crate) name: String,
    pub(crate) status: Option<String>,
    pub(crate) attempt: Option<u64>,
    pub(crate) at: Option<String>,
    pub(crate) json: Value,
}

/// One queue of work (the queues route): an activity's attempts or a workflow's unfinished
/// instances, for one concurrency key.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Queue {
    /// `activity` or `workflow`.
    pub(crate) kind: String,
    pub(crate) name: String,
    pub(crate) concurrency_key: String,
    pub(crate) waiting: u64,
    pub(crate) running: u64,
    pub(crate) oldest_waiting: Option<String>,
    pub(crate) limits: Option<String>,
    pub(crate) next_start_at: Option<String>,
    pub(crate) json: Value,
}

/// One run of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ScheduleRun {
    pub(crate) tick: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) skipped: Option<String>,
    pub(crate) buffered: bool,
}

/// One schedule, as the schedule routes describe it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Schedule {
    pub(crate) id: String,
    pub(crate) workflow: String,
    pub(crate) cron: String,
    pub(crate) time_zone: String,
    pub(crate) input: Value,
    pub(crate) catch_up: String,
    pub(crate) overlap: String,
    pub(crate) paused: bool,
    pub(crate) next_runs: Vec<String>,
    pub(crate) recent_runs: Vec<ScheduleRun>,
    pub(crate) json: Value,
}

fn malformed(what: &str, field: &str, json: &Value) -> CliError {
    let mut shown = json.to_string();
    if shown.len() > 200 {
        let cut = (0..=200).rev().find(|&i| shown.is_char_boundary(i)).unwrap_or(0);
        shown.truncate(cut);
        shown.push_str("...");
    }
    CliError::failure(format!("the answer is not {what}: `{field}` is missing or of the wrong type in {shown}"))
}

fn text(json: &Value, field: &str, what: &str) -> Result<String, CliError> {
    json.get(field).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| malformed(what, field, json))
}

fn optional_text(json: &Value, field: &str) -> Option<String> {
    json.get(field).and_then(Value::as_str).map(str::to_owned)
}

impl Instance {
    pub(crate) fn from_json(json: Value) -> Result<Self, CliError> {
        const WHAT: &str = "an instance status";
        let properties = json.get("properties").cloned().unwrap_or(Value::Null);
        let property = |name: &str| optional_text(&properties, &format!("dapr.workflow.{name}"));
        let failure =
            property("failure.error_type").map(|kind| (kind, property("failure.error_message").unwrap_or_default()));
        let parent_id = json.get("parentInstanceID").map(|parent| parent.as_str().map(str::to_owned));
        Ok(Self {
            id: text(&json, "instanceID", WHAT)?,
            workflow: text(&json, "workflowName", WHAT)?,
            status: text(&json, "runtimeStatus", WHAT)?,
            created_at: text(&json, "createdAt", WHAT)?,
            updated_at: text(&json, "lastUpdatedAt", WHAT)?,
            priority: json.get("priority").and_then(Value::as_i64).unwrap_or(0),
            input: property("input"),
            output: property("output"),
            custom_status: property("custom_status"),
            failure,
            parent_id,
            json,
        })
    }
}

impl Page {
    /// A page of the list route: `{"instances": [...], "continuationToken": ...}`.
    pub(crate) fn from_json(json: Value) -> Result<Self, CliError> {
        let instances = json
            .get("instances")
            .and_then(Value::as_array)
            .ok_or_else(|| malformed("a list of instances", "instances", &json))?
            .iter()
            .cloned()
            .map(Instance::from_json)
            .collect::<Result<_, _>>()?;
        Ok(Self { instances, continuation: optional_text(&json, "continuationToken") })
    }
}

impl HistoryItem {
    pub(crate) fn from_json(json: Value) -> Result<Self, CliError> {
        const WHAT: &str = "a history item";
        let kind = text(&json, "type", WHAT)?;
        let number = |field: &str| json.get(field).and_then(Value::as_u64);
        let (name, at) = match kind.as_str() {
            "created" => (optional_text(&json, "workflowName"), optional_text(&json, "at")),
            "step" => (optional_text(&json, "name"), optional_text(&json, "recordedAt")),
            "eventBuffered" => (optional_text(&json, "name"), optional_text(&json, "at")),
            _ => (None, None),
        };
        Ok(Self {
            seq: number("seq"),
            step_kind: optional_text(&json, "kind"),
            name: name.unwrap_or_default(),
            status: optional_text(&json, "status"),
            attempt: number("attempt"),
            at,
            kind,
            json,
        })
    }
}

impl Queue {
    pub(crate) fn from_json(json: Value) -> Result<Self, CliError> {
        const WHAT: &str = "a queue";
        let count = |field: &str| json.get(field).and_then(Value::as_u64).ok_or_else(|| malformed(WHAT, field, &json));
        Ok(Self {
            kind: text(&json, "kind", WHAT)?,
            name: text(&json, "name", WHAT)?,
            concurrency_key: optional_text(&json, "concurrencyKey").unwrap_or_default(),
            waiting: count("waiting")?,
            running: count("running")?,
            oldest_waiting: optional_text(&json, "oldestWaitingSince"),
            limits: optional_text(&json, "limits"),
            next_start_at: optional_text(&json, "nextStartAt"),
            json,
        })
    }
}

impl Schedule {
    pub(crate) fn from_json(json: Value) -> Result<Self, CliError> {
        const WHAT: &str = "a schedule";
        let texts = |field: &str| -> Vec<String> {
            json.get(field)
                .and_then(Value::as_array)
                .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default()
        };
        let recent_runs = json
            .get("recentRuns")
            .and_then(Value::as_array)
            .map(|runs| {
                runs.iter()
                    .map(|run| ScheduleRun {
                        tick: optional_text(run, "tick").unwrap_or_default(),
                        instance_id: optional_text(run, "instanceID"),
                        skipped: optional_text(run, "skipped"),
                        buffered: run.get("buffered").and_then(Value::as_bool).unwrap_or(false),
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            id: text(&json, "scheduleID", WHAT)?,
            workflow: text(&json, "workflowName", WHAT)?,
            cron: text(&json, "cron", WHAT)?,
            time_zone: optional_text(&json, "timeZone").unwrap_or_default(),
            input: json.get("input").cloned().unwrap_or(Value::Null),
            catch_up: optional_text(&json, "catchUp").unwrap_or_default(),
            overlap: optional_text(&json, "overlap").unwrap_or_default(),
            paused: json.get("paused").and_then(Value::as_bool).unwrap_or(false),
            next_runs: texts("nextRuns"),
            recent_runs,
            json,
        })
    }
}
