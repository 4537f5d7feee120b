//! The SQS message between ingest and provisioners: a versioned batch of employee plans.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::provision::Target;
use crate::engine::EmployeePlan;

/// The message version this build writes. Version 2 added [`WorkMessage::managers`].
pub const VERSION: u32 = 2;
/// The oldest version this build still reads: a version 1 message (queued by the build before,
/// during an update) has no [`WorkMessage::managers`], so its managers are looked up in NERM.
pub const OLDEST_VERSION: u32 = 1;

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
    /// Managers of these plans that another part of the same run creates: lower-cased login
    /// (see [`login_key`](crate::engine::snapshot::login_key)) → that part. The provisioner
    /// reads their ids from that part's ids object (see [`super::ids`]) instead of asking NERM.
    /// A manager created in the run but missing here (queued after this message) is looked up.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub managers: BTreeMap<String, String>,
}

/// A message that can never be processed: retrying cannot help.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("the message is not a valid work message: {0}")]
    Malformed(String),
    #[error("message version {0} is not supported (this build understands versions {OLDEST_VERSION} to {VERSION})")]
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
                Some(v) if (u64::from(OLDEST_VERSION)..=u64::from(VERSION)).contains(&v) => {}
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
                managers: BTreeMap::new(),
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
            WorkMessage::parse(r#"{"version": 3, "run_id": "r", "part": "p", "items": [], "target": {}}"#).unwrap_err();
        assert_eq!(err, MessageError::UnknownVersion(3));
        assert!(err.to_string().contains("version 3"));
    }

    #[test]
    fn a_version_1_message_from_the_build_before_is_read_without_managers() {
        // GIVEN a message as the build before wrote it (version 1, no "managers")
        let target = serde_json::to_string(&target()).unwrap();
        let body = format!(r#"{{"version": 1, "run_id": "r", "part": "m00000", "items": [], "target": {target}}}"#);
        // WHEN this build reads it
        let msg = WorkMessage::parse(&body).unwrap();
        // THEN it is taken, with no manager known to come from another part
        assert_eq!(msg.version, 1);
        assert!(msg.managers.is_empty());
    }

    #[test]
    fn managers_travel_with_the_message_and_an_empty_map_is_left_out() {
        // GIVEN a message whose plans' manager is created by part m00004
        let mut msg = WorkMessage {
            version: VERSION,
            run_id: "run".into(),
            part: "m00000".into(),
            attempt: 0,
            target: target(),
            items: vec![],
            managers: BTreeMap::new(),
        };
        assert!(!msg.to_body().contains("managers"), "an empty map costs no bytes");
        msg.managers.insert("boss@example.com".into(), "m00004".into());
        // WHEN it is sent and read back
        let back = WorkMessage::parse(&msg.to_body()).unwrap();
        // THEN the map is intact
        assert_eq!(back.managers.get("boss@example.com").map(String::as_str), Some("m00004"));
        assert_eq!(back, msg);
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
            warnings: vec![],
        };
        let msgs = WorkMessage::batch("run", "m", &target(), vec![plan.clone(); 7], 3);
        assert_eq!(msgs.iter().map(|m| m.items.len()).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(msgs[2].part, "m00002");
        assert_eq!(WorkMessage::parse(&msgs[0].to_body()).unwrap(), msgs[0]);
    }
}
