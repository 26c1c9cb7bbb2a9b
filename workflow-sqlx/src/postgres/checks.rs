//! Text checks: PostgreSQL text cannot store a NUL character, so a batch (or a task's outcome)
//! holding one fails up front, naming the op and field, instead of with the database's error.

use workflow_core::store::{StoreError, WriteOp};

/// Fails a batch holding a NUL character in any text, before it reaches the database (whose
/// error would not say which op held it): PostgreSQL text cannot store one.
pub(super) fn check_text(ops: &[WriteOp]) -> Result<(), StoreError> {
    for (index, op) in ops.iter().enumerate() {
        let (kind, id, fields): (&str, &str, &[(&str, Option<&str>)]) = match op {
            WriteOp::CreateInstance(r) => (
                "CreateInstance",
                &r.id,
                &[
                    ("id", Some(r.id.as_str())),
                    ("workflow", Some(r.workflow.as_str())),
                    ("input", Some(r.input.as_str())),
                    ("output", r.output.as_deref()),
                    ("error", r.error.as_deref()),
                    ("owner", r.owner.as_deref()),
                    ("parent_id", r.parent_id.as_deref()),
                    ("custom_status", r.custom_status.as_deref()),
                ],
            ),
            WriteOp::PutRecord(r) => (
                "PutRecord",
                &r.instance_id,
                &[
                    ("instance_id", Some(r.instance_id.as_str())),
                    ("kind", Some(r.kind.as_str())),
                    ("name", Some(r.name.as_str())),
                    ("input", r.input.as_deref()),
                    ("payload", r.payload.as_deref()),
                ],
            ),
            WriteOp::SetStatus { id, .. } => ("SetStatus", id, &[("id", Some(id.as_str()))]),
            WriteOp::Finish { id, output, error, .. } => {
                ("Finish", id, &[("id", Some(id.as_str())), ("output", output.as_deref()), ("error", error.as_deref())])
            }
            WriteOp::AddEvent { instance_id, name, payload, .. } => (
                "AddEvent",
                instance_id,
                &[
                    ("instance_id", Some(instance_id.as_str())),
                    ("name", Some(name.as_str())),
                    ("payload", Some(payload.as_str())),
                ],
            ),
            WriteOp::ConsumeEvent { instance_id, .. } => {
                ("ConsumeEvent", instance_id, &[("instance_id", Some(instance_id.as_str()))])
            }
            WriteOp::SetWake { id, .. } => ("SetWake", id, &[("id", Some(id.as_str()))]),
            WriteOp::AssertOwner { id, .. } => ("AssertOwner", id, &[("id", Some(id.as_str()))]),
            WriteOp::AssertStatus { id, .. } => ("AssertStatus", id, &[("id", Some(id.as_str()))]),
            WriteOp::AssertInboxRoom { id, .. } => ("AssertInboxRoom", id, &[("id", Some(id.as_str()))]),
            WriteOp::Purge { id } => ("Purge", id, &[("id", Some(id.as_str()))]),
            WriteOp::Evict { id, .. } => ("Evict", id, &[("id", Some(id.as_str()))]),
            WriteOp::ContinueAsNew { id, input, .. } => {
                ("ContinueAsNew", id, &[("id", Some(id.as_str())), ("input", Some(input.as_str()))])
            }
            WriteOp::SetCustomStatus { id, custom_status, .. } => {
                ("SetCustomStatus", id, &[("id", Some(id.as_str())), ("custom_status", custom_status.as_deref())])
            }
            WriteOp::EnqueueTask(t) => (
                "EnqueueTask",
                &t.instance_id,
                &[
                    ("instance_id", Some(t.instance_id.as_str())),
                    ("name", Some(t.name.as_str())),
                    ("input", Some(t.input.as_str())),
                ],
            ),
            WriteOp::DeleteTask { instance_id, .. } => {
                ("DeleteTask", instance_id, &[("instance_id", Some(instance_id.as_str()))])
            }
        };
        if let Some((field, _)) = fields.iter().find(|(_, text)| text.is_some_and(|text| text.contains('\0'))) {
            return Err(StoreError::Backend(format!(
                "postgres: op {index} ({kind} of instance {id:?}): `{field}` holds a NUL character, which \
                 PostgreSQL text cannot store"
            )));
        }
    }
    Ok(())
}

/// Fails a task's completion holding a NUL character in any text, as [`check_text`] does a batch.
pub(super) fn check_completion(worker: &str, instance_id: &str, seq: u32, payload: &str) -> Result<(), StoreError> {
    for (field, text) in [("worker", worker), ("instance_id", instance_id), ("payload", payload)] {
        if text.contains('\0') {
            return Err(StoreError::Backend(format!(
                "postgres: completing task {seq} of instance {instance_id:?}: `{field}` holds a NUL character, \
                 which PostgreSQL text cannot store"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_up_front() {
        let ops = [WriteOp::SetCustomStatus { id: "a".into(), custom_status: Some("x\0y".into()), updated_at: 1 }];
        match check_text(&ops) {
            Err(StoreError::Backend(message)) => assert!(message.contains("custom_status"), "{message}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
        assert!(check_text(&[WriteOp::SetWake { id: "a".into(), wake_at: None }]).is_ok());
    }
}
