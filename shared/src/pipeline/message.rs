//! The SQS message between ingest and provisioners: a versioned batch of employee plans.

use serde::{Deserialize, Serialize};

use super::provision::Target;
use crate::engine::EmployeePlan;

/// The only message version this build understands.
pub const VERSION: u32 = 1;

/// SQS allows 256 KiB per message; stay well under it.
pub const MAX_BYTES: usize = 200 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkMessage {
    pub version: u32,
    pub run_id: String,
    /// Names this message's part of the report (unique within the run).
    pub part: String,
    /// How many times its plans already waited for a manager.
    #[serde(default)]
    pub attempt: u32,
    /// The NERM side of the run, resolved once by the ingest.
    pub target: Target,
    pub items: Vec<EmployeePlan>,
}

/// A message that can never be processed: retrying cannot help.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("the message is not a valid work message: {0}")]
    Malformed(String),
    #[error("message version {0} is not supported (this build understands version {VERSION})")]
    UnknownVersion(u64),
    #[error("the message has an empty run id or part")]
    Incomplete,
}

impl WorkMessage {
    pub fn parse(body: &str) -> Result<WorkMessage, MessageError> {
        // Check the version first, so a newer producer's message says so instead of "malformed".
        let raw: serde_json::Value = serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        let Some(fields) = raw.as_object() else {
            return Err(MessageError::Malformed(format!(
                "the body is a JSON {}, expected a JSON object with a \"version\"",
                json_kind(&raw)
            )));
        };
        match fields.get("version") {
            None => return Err(MessageError::Malformed("no \"version\"".into())),
            Some(v) => match v.as_u64() {
                Some(v) if v == u64::from(VERSION) => {}
                Some(v) => return Err(MessageError::UnknownVersion(v)),
                None => {
                    let mut shown = v.to_string();
                    if let Some((cut, _)) = shown.char_indices().nth(40) {
                        shown.truncate(cut);
                        shown.push('…');
                    }
                    return Err(MessageError::Malformed(format!(
                        "\"version\" must be a whole number, got the JSON {} {shown}",
                        json_kind(v)
                    )));
                }
            },
        }
        let msg: WorkMessage = serde_json::from_value(raw).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if msg.run_id.trim().is_empty() || msg.part.trim().is_empty() {
            return Err(MessageError::Incomplete);
        }
        Ok(msg)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("plans always serialise")
    }

    /// Splits plans into messages of at most `per_message` plans and [`MAX_BYTES`] each.
    pub fn batch(
        run_id: &str,
        prefix: &str,
        target: &Target,
        plans: Vec<EmployeePlan>,
        per_message: usize,
    ) -> Vec<WorkMessage> {
        Self::batch_from(run_id, prefix, target, plans, per_message, 0)
    }

    /// [`batch`](Self::batch) with parts numbered from `first` (plans sent in several goes).
    pub fn batch_from(
        run_id: &str,
        prefix: &str,
        target: &Target,
        plans: Vec<EmployeePlan>,
        per_message: usize,
        first: usize,
    ) -> Vec<WorkMessage> {
        let mut out = Vec::new();
        let mut current: Vec<EmployeePlan> = Vec::new();
        let mut size = 0usize;
        for p in plans {
            let len = serde_json::to_string(&p).map(|s| s.len()).unwrap_or(0);
            if !current.is_empty() && (current.len() >= per_message.max(1) || size + len > MAX_BYTES) {
                out.push(std::mem::take(&mut current));
                size = 0;
            }
            size += len;
            current.push(p);
        }
        if !current.is_empty() {
            out.push(current);
        }
        out.into_iter()
            .enumerate()
            .map(|(i, items)| WorkMessage {
                version: VERSION,
                run_id: run_id.to_string(),
                part: format!("{prefix}{:05}", first + i),
                attempt: 0,
                target: target.clone(),
                items,
            })
            .collect()
    }
}

/// What kind of JSON value `v` is, for messages.
fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            profile_type_id: "t".into(),
            key_attribute: "employee_id".into(),
            manager_attribute: Some("manager".into()),
            self_relationship: Some("owner".into()),
            concurrency: 2,
        }
    }

    #[test]
    fn an_unknown_version_is_named_not_called_malformed() {
        let err =
            WorkMessage::parse(r#"{"version": 2, "run_id": "r", "part": "p", "items": [], "target": {}}"#).unwrap_err();
        assert_eq!(err, MessageError::UnknownVersion(2));
        assert!(err.to_string().contains("version 2"));
    }

    #[test]
    fn garbage_and_missing_fields_are_malformed() {
        assert!(matches!(WorkMessage::parse("not json"), Err(MessageError::Malformed(_))));
        assert!(matches!(WorkMessage::parse(r#"{"run_id": "r"}"#), Err(MessageError::Malformed(_))));
        let target = serde_json::to_string(&target()).unwrap();
        assert!(matches!(
            WorkMessage::parse(&format!(
                r#"{{"version": 1, "run_id": "", "part": "p", "items": [], "target": {target}}}"#
            )),
            Err(MessageError::Incomplete)
        ));
    }

    #[test]
    fn a_message_round_trips_and_batches_respect_the_count() {
        let plan = crate::engine::EmployeePlan {
            line: 2,
            login: "a".into(),
            key: "K".into(),
            user_id: None,
            profile_id: None,
            kind: crate::engine::PlanKind::Create,
            ops: vec![],
            changes: vec![],
        };
        let msgs = WorkMessage::batch("run", "m", &target(), vec![plan.clone(); 7], 3);
        assert_eq!(msgs.iter().map(|m| m.items.len()).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(msgs[2].part, "m00002");
        assert_eq!(WorkMessage::parse(&msgs[0].to_body()).unwrap(), msgs[0]);
    }
}
