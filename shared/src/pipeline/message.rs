//! The SQS message between ingest and provisioners: a versioned batch of employee plans, one
//! NERM bulk call's worth, in one of the run's two waves ([`Stage`]).

use serde::{Deserialize, Serialize};

use super::Settings;
use crate::engine::{EmployeePlan, Target};
use crate::ports::{ObjectStore, PortError, WorkQueue};

/// The message version this build writes. Version 3 added [`WorkMessage::stage`] and
/// [`WorkMessage::plans_key`], and dropped the re-queues of plans waiting for a manager.
pub const VERSION: u32 = 3;
/// The oldest version this build still reads: a version 1 or 2 message (queued by an earlier
/// build, during an update) is applied whole, its managers' ids read from the run's ids objects
/// (see [`super::provision`]); the fields only they had are ignored.
pub const OLDEST_VERSION: u32 = 1;

/// SQS allows 256 KiB per message; a body larger than this keeps its plans in S3 instead.
pub const MAX_BYTES: usize = 200 * 1024;

/// Which wave of the run a message belongs to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Users, profiles, roles, profile links, and links to managers NERM already had. Links to
    /// managers the run itself creates wait for the second wave.
    #[default]
    Records,
    /// The links to managers the run created, with their ids: queued once every records part
    /// is applied (see [`super::links`]).
    ManagerLinks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkMessage {
    pub version: u32,
    pub run_id: String,
    /// Names this message's part of the report (unique within the run).
    pub part: String,
    #[serde(default)]
    pub stage: Stage,
    /// The NERM side of the run, resolved once by the ingest.
    pub target: Target,
    /// The plans, unless they travel in S3 ([`WorkMessage::plans_key`]).
    #[serde(default)]
    pub items: Vec<EmployeePlan>,
    /// Where the plans are when they would not fit in a message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans_key: Option<String>,
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
    pub fn new(run_id: &str, part: String, stage: Stage, target: &Target, items: Vec<EmployeePlan>) -> WorkMessage {
        WorkMessage {
            version: VERSION,
            run_id: run_id.to_string(),
            part,
            stage,
            target: target.clone(),
            items,
            plans_key: None,
        }
    }

    pub fn parse(body: &str) -> Result<WorkMessage, MessageError> {
        // Check the version first, so a newer producer's message says so instead of "malformed".
        let raw: serde_json::Value = serde_json::from_str(body).map_err(|e| MessageError::Malformed(e.to_string()))?;
        let Some(fields) = raw.as_object() else {
            return Err(MessageError::Malformed(format!(
                "the body is a JSON {}, expected a JSON object with a \"version\"",
                json_kind(&raw)
            )));
        };
        check_version(fields.get("version"))?;
        let msg: WorkMessage = serde_json::from_value(raw).map_err(|e| MessageError::Malformed(e.to_string()))?;
        if msg.run_id.trim().is_empty() || msg.part.trim().is_empty() {
            return Err(MessageError::Incomplete);
        }
        Ok(msg)
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).expect("plans always serialise")
    }

    /// Splits plans into messages of at most `per_message` plans, parts named `{prefix}{n}`
    /// with `n` counted from `first`.
    pub fn batch(
        run_id: &str,
        (prefix, first): (&str, usize),
        stage: Stage,
        target: &Target,
        plans: Vec<EmployeePlan>,
        per_message: usize,
    ) -> Vec<WorkMessage> {
        let mut out = Vec::new();
        let mut plans = plans.into_iter().peekable();
        while plans.peek().is_some() {
            let items: Vec<EmployeePlan> = plans.by_ref().take(per_message.max(1)).collect();
            let part = format!("{prefix}{:05}", first + out.len());
            out.push(WorkMessage::new(run_id, part, stage, target, items));
        }
        out
    }
}

fn check_version(version: Option<&serde_json::Value>) -> Result<(), MessageError> {
    let Some(v) = version else {
        return Err(MessageError::Malformed("no \"version\"".into()));
    };
    match v.as_u64() {
        Some(v) if (u64::from(OLDEST_VERSION)..=u64::from(VERSION)).contains(&v) => Ok(()),
        Some(v) => Err(MessageError::UnknownVersion(v)),
        None => {
            let mut shown = v.to_string();
            if let Some((cut, _)) = shown.char_indices().nth(40) {
                shown.truncate(cut);
                shown.push('…');
            }
            Err(MessageError::Malformed(format!(
                "\"version\" must be a whole number, got the JSON {} {shown}",
                json_kind(v)
            )))
        }
    }
}

/// Queues messages; one whose body would pass [`MAX_BYTES`] leaves its plans in S3 and carries
/// their key, so every message holds a full bulk call's worth of plans whatever their size.
pub async fn send<S: ObjectStore, Q: WorkQueue>(
    store: &S,
    queue: &Q,
    settings: &Settings,
    messages: Vec<WorkMessage>,
) -> Result<(), PortError> {
    let mut bodies = Vec::with_capacity(messages.len());
    for mut m in messages {
        let mut body = m.to_body();
        if body.len() > MAX_BYTES {
            let key = settings.plans_key(&m.run_id, &m.part);
            let plans = serde_json::to_vec(&m.items).map_err(|e| PortError::new("plans", e.to_string(), false))?;
            store.put(&key, plans, "application/json").await?;
            m.items = Vec::new();
            m.plans_key = Some(key);
            body = m.to_body();
        }
        bodies.push(body);
    }
    queue.send(bodies).await
}

/// Brings the message's plans in from S3 if they travelled there.
pub async fn load_plans<S: ObjectStore>(store: &S, msg: &mut WorkMessage) -> Result<(), PortError> {
    let Some(key) = msg.plans_key.take() else { return Ok(()) };
    let body = store.get(&key).await?.ok_or_else(|| PortError::new("plans", format!("{key} is missing"), false))?;
    msg.items = serde_json::from_slice(&body).map_err(|e| PortError::new("plans", format!("{key}: {e}"), false))?;
    Ok(())
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
    use crate::ports::memory::{MemoryQueue, MemoryStore};

    fn target() -> Target {
        Target {
            profile_type_id: "t".into(),
            key_attribute: "employee_id".into(),
            manager_attribute: Some("manager".into()),
            self_relationship: Some("owner".into()),
            concurrency: 2,
        }
    }

    fn plan(title: &str) -> EmployeePlan {
        EmployeePlan {
            line: 2,
            login: "a".into(),
            key: "K".into(),
            user_id: None,
            profile_id: None,
            kind: crate::engine::PlanKind::Create,
            ops: vec![],
            changes: vec![title.to_string()],
            warnings: vec![],
        }
    }

    #[test]
    fn an_unknown_version_is_named_not_called_malformed() {
        let err =
            WorkMessage::parse(r#"{"version": 4, "run_id": "r", "part": "p", "items": [], "target": {}}"#).unwrap_err();
        assert_eq!(err, MessageError::UnknownVersion(4));
        assert!(err.to_string().contains("version 4"));
    }

    #[test]
    fn a_version_2_message_from_an_earlier_build_is_read_as_a_records_part() {
        // GIVEN a message as the build before wrote it (version 2, with the fields it had)
        let target = serde_json::to_string(&target()).unwrap();
        let body = format!(
            r#"{{"version": 2, "run_id": "r", "part": "m00000w1", "attempt": 1, "items": [], "target": {target},
                "managers": {{"boss@example.com": "m00004"}}}}"#
        );
        // WHEN this build reads it
        let msg = WorkMessage::parse(&body).unwrap();
        // THEN it is taken as a records part, the old fields ignored
        assert_eq!((msg.version, msg.stage), (2, Stage::Records));
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
        let msgs = WorkMessage::batch("run", ("m", 3), Stage::Records, &target(), vec![plan("x"); 7], 3);
        assert_eq!(msgs.iter().map(|m| m.items.len()).collect::<Vec<_>>(), [3, 3, 1]);
        assert_eq!(msgs[2].part, "m00005");
        assert_eq!(WorkMessage::parse(&msgs[0].to_body()).unwrap(), msgs[0]);
    }

    #[tokio::test]
    async fn plans_too_big_for_a_message_travel_in_s3_and_come_back_whole() {
        // GIVEN 100 plans of 4 KiB each: 400 KiB, over SQS's limit
        let (store, queue, settings) = (MemoryStore::default(), MemoryQueue::default(), Settings::default());
        let plans = vec![plan(&"x".repeat(4096)); 100];
        let msgs = WorkMessage::batch("run", ("m", 0), Stage::Records, &target(), plans.clone(), 100);
        assert_eq!(msgs.len(), 1, "one message: one full bulk call");
        // WHEN it is queued
        send(&store, &queue, &settings, msgs).await.unwrap();
        // THEN the body stays small and names the plans object ...
        let bodies: Vec<String> = queue.sent.lock().unwrap().clone();
        assert_eq!(bodies.len(), 1);
        assert!(bodies[0].len() < 2048, "{} bytes", bodies[0].len());
        let mut msg = WorkMessage::parse(&bodies[0]).unwrap();
        assert_eq!(msg.plans_key.as_deref(), Some("runs/run/plans/m00000.json"));
        // ... and the provisioner gets all 100 plans back
        load_plans(&store, &mut msg).await.unwrap();
        assert_eq!(msg.items, plans);
        assert_eq!(msg.plans_key, None);
    }
}
