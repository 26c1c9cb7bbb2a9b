//! The schedule routes (ours; Dapr has none for workflows), under `/v1.0/schedules`:
//!
//! | route | does | answers |
//! |---|---|---|
//! | `GET /v1.0/schedules` | list | 200 JSON list |
//! | `GET /v1.0/schedules/{scheduleId}` | describe: settings, next runs, recent runs | 200 |
//! | `POST /v1.0/schedules/{scheduleId}` (body: the schedule) | create | 201; 409 if it exists |
//! | `PUT /v1.0/schedules/{scheduleId}` (body: the schedule) | update | 202; 404 if missing |
//! | `DELETE /v1.0/schedules/{scheduleId}` | delete (its instances stay) | 202 |
//! | `POST .../{scheduleId}/pause`, `.../resume` | pause, resume | 202 |
//! | `POST .../{scheduleId}/trigger` | start its workflow now | 202 `{"instanceID": ...}` |
//!
//! A schedule's body: `{"workflowName": "...", "cron": "*/5 * * * * *", "timeZone": "UTC",
//! "input": <JSON>, "catchUp": "latest" | "skip" | "all", "catchUpGraceMs": N, "catchUpMax": N,
//! "overlap": "skip" | "allowAll" | "terminatePrevious" | "bufferOne", "jitterMs": N, "paused": false}`; only `workflowName` and
//! `cron` are required.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use workflow_core::{rfc3339, CatchUp, Client, Overlap, Schedule, ScheduleStatus};

use super::{accepted, bad_request, error_response, json_body, path, respond, Body, PathOf};

/// A schedule as the schedules routes show it.
pub fn schedule_json(status: &ScheduleStatus) -> Value {
    let (catch_up, grace, max) = match status.catch_up {
        CatchUp::Latest => ("latest", None, None),
        CatchUp::Skip { grace_ms } => ("skip", Some(grace_ms), None),
        CatchUp::All { max } => ("all", None, Some(max)),
    };
    let runs: Vec<Value> = status
        .recent_runs
        .iter()
        .map(|run| {
            json!({ "tick": rfc3339(run.tick), "instanceID": run.instance_id, "skipped": run.skipped, "buffered": run.buffered })
        })
        .collect();
    json!({
        "scheduleID": status.id,
        "workflowName": status.workflow,
        "cron": status.cron,
        "timeZone": status.time_zone,
        "input": serde_json::from_str::<Value>(&status.input).unwrap_or(Value::Null),
        "catchUp": catch_up,
        "catchUpGraceMs": grace,
        "catchUpMax": max,
        "overlap": match status.overlap {
            Overlap::Skip => "skip",
            Overlap::AllowAll => "allowAll",
            Overlap::TerminatePrevious => "terminatePrevious",
            Overlap::BufferOne => "bufferOne",
        },
        "paused": status.paused,
        "nextRuns": status.next_runs.iter().map(|t| rfc3339(*t)).collect::<Vec<_>>(),
        "recentRuns": runs,
    })
}

/// The schedule `id` a request body describes.
fn schedule_of(id: &str, body: &Body) -> Result<Schedule, super::ApiError> {
    let text = json_body(body, "schedule")?;
    let Value::Object(fields) = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null) else {
        return Err(bad_request("the schedule must be a JSON object"));
    };
    let text_field = |name: &str| -> Result<Option<&str>, super::ApiError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(Some(text)),
            Some(_) => Err(bad_request(format!("`{name}` must be a string"))),
        }
    };
    let number = |name: &str| -> Result<Option<u64>, super::ApiError> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => {
                value.as_u64().map(Some).ok_or_else(|| bad_request(format!("`{name}` must be a whole number")))
            }
        }
    };
    let workflow = text_field("workflowName")?.ok_or_else(|| bad_request("the schedule needs `workflowName`"))?;
    let cron = text_field("cron")?.ok_or_else(|| bad_request("the schedule needs `cron`"))?;
    let input = fields.get("input").map_or_else(|| "null".to_owned(), Value::to_string);
    let mut schedule = Schedule::untyped(id, workflow, cron, input);
    if let Some(zone) = text_field("timeZone")? {
        schedule = schedule.time_zone(zone);
    }
    let catch_up = match text_field("catchUp")? {
        None | Some("latest") => CatchUp::Latest,
        Some("skip") => CatchUp::Skip { grace_ms: number("catchUpGraceMs")?.unwrap_or(0) },
        Some("all") => {
            let max = number("catchUpMax")?.ok_or_else(|| bad_request("`catchUp: all` needs `catchUpMax`"))?;
            CatchUp::All { max: u32::try_from(max).unwrap_or(u32::MAX) }
        }
        Some(other) => return Err(bad_request(format!("`catchUp` is latest, skip or all, got {other:?}"))),
    };
    let overlap = match text_field("overlap")? {
        None | Some("skip") => Overlap::Skip,
        Some("allowAll") => Overlap::AllowAll,
        Some("terminatePrevious") => Overlap::TerminatePrevious,
        Some("bufferOne") => Overlap::BufferOne,
        Some(other) => {
            return Err(bad_request(format!(
                "`overlap` is skip, allowAll, terminatePrevious or bufferOne, got {other:?}"
            )));
        }
    };
    schedule = schedule.catch_up(catch_up).overlap(overlap);
    if let Some(ms) = number("jitterMs")? {
        schedule = schedule.jitter(std::time::Duration::from_millis(ms));
    }
    match fields.get("paused") {
        None | Some(Value::Null) => {}
        Some(Value::Bool(paused)) => schedule = schedule.paused(*paused),
        Some(_) => return Err(bad_request("`paused` must be true or false")),
    }
    Ok(schedule)
}

pub(super) async fn list(State(client): State<Client>) -> Response {
    respond(async {
        let schedules = client.schedules().await.map_err(error_response)?;
        Ok(Json(Value::Array(schedules.iter().map(schedule_json).collect())).into_response())
    })
    .await
}

pub(super) async fn describe(State(client): State<Client>, params: PathOf<String>) -> Response {
    respond(async {
        let id = path(params)?;
        let status = client.schedule(&id).await.map_err(error_response)?;
        Ok(Json(schedule_json(&status)).into_response())
    })
    .await
}

pub(super) async fn create(State(client): State<Client>, params: PathOf<String>, body: Body) -> Response {
    respond(async {
        let id = path(params)?;
        client.create_schedule(schedule_of(&id, &body)?).await.map_err(error_response)?;
        Ok(StatusCode::CREATED.into_response())
    })
    .await
}

pub(super) async fn update(State(client): State<Client>, params: PathOf<String>, body: Body) -> Response {
    respond(async {
        let id = path(params)?;
        client.update_schedule(schedule_of(&id, &body)?).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

pub(super) async fn delete(State(client): State<Client>, params: PathOf<String>) -> Response {
    respond(async {
        let id = path(params)?;
        client.delete_schedule(&id).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

pub(super) async fn pause(State(client): State<Client>, params: PathOf<String>) -> Response {
    respond(async {
        let id = path(params)?;
        client.pause_schedule(&id).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

pub(super) async fn resume(State(client): State<Client>, params: PathOf<String>) -> Response {
    respond(async {
        let id = path(params)?;
        client.resume_schedule(&id).await.map_err(error_response)?;
        Ok(accepted())
    })
    .await
}

pub(super) async fn trigger(State(client): State<Client>, params: PathOf<String>) -> Response {
    respond(async {
        let id = path(params)?;
        let instance = client.trigger_schedule(&id).await.map_err(error_response)?;
        Ok((StatusCode::ACCEPTED, Json(json!({ "instanceID": instance }))).into_response())
    })
    .await
}
