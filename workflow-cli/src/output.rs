//! What `wfctl` prints for people: aligned tables and `field: value` blocks. (`--json` prints
//! the rows' JSON instead; see `commands.rs`.)

use std::fmt::Write as _;

use serde_json::Value;

use crate::model::{HistoryItem, Instance, Queue, Schedule};

/// A cell as one line (control characters, such as newlines in a name, would break the columns).
fn cell(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

/// An aligned table: a header row, then `rows`, columns two spaces apart.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows.iter().map(|row| row.iter().map(|text| cell(text)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|header| header.chars().count()).collect();
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    let headers: Vec<String> = headers.iter().map(|header| (*header).to_owned()).collect();
    for row in std::iter::once(&headers).chain(&rows) {
        let mut line = String::new();
        for (i, (text, width)) in row.iter().zip(&widths).enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(text);
            line.extend(std::iter::repeat_n(' ', width - text.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `label: value` lines, the values aligned.
fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(label, _)| label.len() + 1).max().unwrap_or(0);
    let mut out = String::new();
    for (label, value) in pairs {
        let _ = writeln!(out, "{:<width$}  {value}", format!("{label}:"));
    }
    out
}

const NONE: &str = "-";

/// The instances of a list page, one row each.
pub(crate) fn instances(instances: &[Instance]) -> String {
    if instances.is_empty() {
        return "no instances\n".to_owned();
    }
    let rows: Vec<Vec<String>> = instances
        .iter()
        .map(|instance| {
            vec![
                instance.id.clone(),
                instance.workflow.clone(),
                instance.status.clone(),
                instance.created_at.clone(),
                instance.updated_at.clone(),
            ]
        })
        .collect();
    table(&["INSTANCE ID", "WORKFLOW", "STATUS", "CREATED", "UPDATED"], &rows)
}

/// One instance's status, a field a line.
pub(crate) fn instance(instance: &Instance) -> String {
    let mut pairs = vec![
        ("Instance", instance.id.clone()),
        ("Workflow", instance.workflow.clone()),
        ("Status", instance.status.clone()),
        ("Created", instance.created_at.clone()),
        ("Updated", instance.updated_at.clone()),
    ];
    if let Some(parent) = &instance.parent_id {
        pairs.push(("Parent", parent.clone().unwrap_or_else(|| NONE.to_owned())));
    }
    pairs.push(("Priority", instance.priority.to_string()));
    pairs.push(("Input", instance.input.clone().unwrap_or_else(|| NONE.to_owned())));
    pairs.push(("Output", instance.output.clone().unwrap_or_else(|| NONE.to_owned())));
    pairs.push(("Custom status", instance.custom_status.clone().unwrap_or_else(|| NONE.to_owned())));
    let error = instance.failure.as_ref().map(|(kind, message)| format!("{kind}: {message}"));
    pairs.push(("Error", error.unwrap_or_else(|| NONE.to_owned())));
    fields(&pairs)
}

/// An instance's history: its creation, each step, each buffered event (the status item, last
/// in the history, is what `instance` shows).
pub(crate) fn history(items: &[HistoryItem]) -> String {
    let or_none = |value: Option<String>| value.unwrap_or_else(|| NONE.to_owned());
    let rows: Vec<Vec<String>> = items
        .iter()
        .filter(|item| item.kind != "status")
        .map(|item| {
            let (kind, status) = match item.kind.as_str() {
                "step" => (or_none(item.step_kind.clone()), or_none(item.status.clone())),
                "eventBuffered" => ("event".to_owned(), "buffered".to_owned()),
                other => (other.to_owned(), NONE.to_owned()),
            };
            vec![
                or_none(item.seq.map(|seq| seq.to_string())),
                kind,
                if item.name.is_empty() { NONE.to_owned() } else { item.name.clone() },
                status,
                or_none(item.attempt.map(|attempt| attempt.to_string())),
                or_none(item.at.clone()),
            ]
        })
        .collect();
    table(&["SEQ", "KIND", "NAME", "STATUS", "ATTEMPT", "RECORDED AT"], &rows)
}

/// Every queue of work, one row each.
pub(crate) fn queues(queues: &[Queue]) -> String {
    if queues.is_empty() {
        return "no queues: no activity attempt is queued and no instance is unfinished\n".to_owned();
    }
    let or_none = |value: &Option<String>| value.clone().unwrap_or_else(|| NONE.to_owned());
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|queue| {
            vec![
                queue.kind.clone(),
                queue.name.clone(),
                if queue.concurrency_key.is_empty() { NONE.to_owned() } else { queue.concurrency_key.clone() },
                queue.waiting.to_string(),
                queue.running.to_string(),
                or_none(&queue.oldest_waiting),
                or_none(&queue.next_start_at),
                or_none(&queue.limits),
            ]
        })
        .collect();
    table(&["KIND", "NAME", "KEY", "WAITING", "RUNNING", "OLDEST WAITING", "NEXT START", "LIMITS"], &rows)
}

/// Every schedule, one row each.
pub(crate) fn schedules(schedules: &[Schedule]) -> String {
    if schedules.is_empty() {
        return "no schedules\n".to_owned();
    }
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|schedule| {
            vec![
                schedule.id.clone(),
                schedule.workflow.clone(),
                schedule.cron.clone(),
                schedule.time_zone.clone(),
                if schedule.paused { "paused" } else { "active" }.to_owned(),
                schedule.next_runs.first().cloned().unwrap_or_else(|| NONE.to_owned()),
            ]
        })
        .collect();
    table(&["SCHEDULE ID", "WORKFLOW", "CRON", "TIME ZONE", "STATE", "NEXT RUN"], &rows)
}

/// One schedule: its spec, its next runs, its recent runs.
pub(crate) fn schedule(schedule: &Schedule) -> String {
    let mut catch_up = schedule.catch_up.clone();
    for (field, label) in [("catchUpGraceMs", "grace"), ("catchUpMax", "at most")] {
        if let Some(value) = schedule.json.get(field).filter(|value| !value.is_null()) {
            let unit = if field == "catchUpGraceMs" { " ms" } else { "" };
            let _ = write!(catch_up, " ({label} {value}{unit})");
        }
    }
    let mut out = fields(&[
        ("Schedule", schedule.id.clone()),
        ("Workflow", schedule.workflow.clone()),
        ("Cron", schedule.cron.clone()),
        ("Time zone", schedule.time_zone.clone()),
        ("Input", schedule.input.to_string()),
        ("Catch-up", catch_up),
        ("Overlap", schedule.overlap.clone()),
        ("Paused", if schedule.paused { "yes" } else { "no" }.to_owned()),
    ]);
    out.push_str("\nNext runs:\n");
    if schedule.next_runs.is_empty() {
        out.push_str("  none\n");
    }
    for run in &schedule.next_runs {
        let _ = writeln!(out, "  {run}");
    }
    out.push_str("\nRecent runs:\n");
    if schedule.recent_runs.is_empty() {
        out.push_str("  none\n");
    } else {
        let rows: Vec<Vec<String>> = schedule
            .recent_runs
            .iter()
            .map(|run| {
                let note = match (&run.skipped, run.buffered) {
                    (Some(why), _) => format!("skipped: {why}"),
                    (None, true) => "buffered".to_owned(),
                    (None, false) => String::new(),
                };
                vec![run.tick.clone(), run.instance_id.clone().unwrap_or_else(|| NONE.to_owned()), note]
            })
            .collect();
        out.push_str(&table(&["TICK", "INSTANCE ID", "NOTE"], &rows));
    }
    out
}

/// JSON for scripts: pretty, one document, a newline after it.
pub(crate) fn json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let rows = vec![
            vec!["a".to_owned(), "long value".to_owned(), "x".to_owned()],
            vec!["bbbb".to_owned(), "v".to_owned(), "line\nbreak".to_owned()],
        ];
        let text = table(&["K", "VALUE", "LAST"], &rows);
        assert_eq!(text, "K     VALUE       LAST\na     long value  x\nbbbb  v           line break\n");
    }
}
