//! NERM records as the engine reads them, and the bodies it writes (docs/nerm-api.md, "Records and their values").
//!
//! Reads are tolerant: unknown fields are ignored, optional fields may be absent or null, and a
//! text field holding a number or a boolean reads as its text. Writes carry only the fields we
//! set, so a PATCH never clears what it does not mention.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::write::{JobEntry, WriteKind};

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A scalar as text: strings as they are, numbers and booleans as JSON writes them; `None` for
/// null, lists and objects.
fn scalar_text(v: serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// An optional text field that may hold any JSON value: a number or boolean reads as its text,
/// null, a list or an object as absent (the engine never writes such a field from them).
fn lenient_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(scalar_text(serde_json::Value::deserialize(d)?))
}

/// [`lenient_text`] for a field that is empty when absent.
fn lenient_text_or_empty<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(lenient_text(d)?.unwrap_or_default())
}

/// Profile attribute values of any JSON type: `null` is an absent value (left out); numbers and
/// booleans compare as their text; lists and objects are kept as their JSON text, opaque — the
/// planner only ever compares and writes the attributes the mapping manages, so such a value is
/// replaced only when the mapping owns that attribute.
fn attribute_values<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw = Option::<BTreeMap<String, serde_json::Value>>::deserialize(d)?.unwrap_or_default();
    Ok(raw
        .into_iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::Null => None,
            v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)) => Some((k, v.to_string())),
            v => scalar_text(v).map(|t| (k, t)),
        })
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    pub id: String,
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub uid: String,
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub name: String,
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub email: String,
    #[serde(rename = "type", default, deserialize_with = "lenient_text_or_empty")]
    pub kind: String,
    #[serde(default, deserialize_with = "lenient_text")]
    pub title: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub status: Option<String>,
    pub login: String,
    #[serde(default, deserialize_with = "lenient_text")]
    pub locale: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub group_strings: Option<String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub sailpoint_identity_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Role {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub uid: String,
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserRole {
    pub id: String,
    pub user_id: String,
    pub role_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct ProfileType {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub uid: String,
    pub name: String,
    #[serde(default)]
    pub category: Option<String>,
    #[serde(default)]
    pub archived: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Attribute {
    pub id: String,
    pub uid: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub label: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub data_type: String,
    #[serde(default)]
    pub profile_type_id: Option<String>,
    #[serde(default)]
    pub date_format: Option<String>,
    #[serde(default)]
    pub allow_multiple_selections: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Profile {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    pub profile_type_id: String,
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub status: String,
    /// Attribute uid → value as GET shows it (select attributes show names), read by
    /// [`attribute_values`].
    #[serde(default, deserialize_with = "attribute_values")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "lenient_text")]
    pub updated_at: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserProfile {
    pub id: String,
    pub user_id: String,
    pub profile_id: String,
    #[serde(default)]
    pub ne_attribute_id: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub relationship_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct UserManager {
    pub id: String,
    pub user_id: String,
    pub manager_id: String,
}

/// A new user (`POST /user`, docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewUser {
    pub name: String,
    pub email: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub login: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_strings: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sailpoint_identity_id: Option<String>,
}

/// A new profile (`POST /profile`, docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewProfile {
    pub profile_type_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// A partial update of a user: only the fields set change (docs/nerm-api.md, "Records and
/// their values"); an emptied value is sent as `""`, which clears it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct UserPatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_strings: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sailpoint_identity_id: Option<String>,
}

impl UserPatch {
    pub fn is_empty(&self) -> bool {
        *self == UserPatch::default()
    }
}

/// A partial update of a profile: its status and the attributes named (attribute uid → value;
/// the manager attribute holds the manager's profile id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ProfilePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

impl ProfilePatch {
    pub fn is_empty(&self) -> bool {
        self.status.is_none() && self.attributes.is_empty()
    }

    /// A patch that sets one attribute, e.g. the manager attribute to a profile id.
    pub fn attribute(attribute: &str, value: &str) -> ProfilePatch {
        ProfilePatch { status: None, attributes: BTreeMap::from([(attribute.to_string(), value.to_string())]) }
    }
}

impl NewUser {
    /// Every field the new user would have set, as a patch: what gives a user found in its
    /// place (created by an SSO login, say) the values the plan wanted.
    pub fn as_patch(&self) -> UserPatch {
        let u = self.clone();
        UserPatch {
            login: Some(u.login),
            name: Some(u.name),
            email: Some(u.email),
            kind: Some(u.kind),
            status: u.status,
            title: u.title,
            locale: u.locale,
            group_strings: u.group_strings,
            sailpoint_identity_id: u.sailpoint_identity_id,
        }
    }
}

impl NewProfile {
    /// The new profile's status and attributes, as a patch (its type cannot change).
    pub fn as_patch(&self) -> ProfilePatch {
        ProfilePatch { status: Some(self.status.clone()), attributes: self.attributes.clone() }
    }
}

/// A role's type, which `GET /roles` filters on but does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleKind {
    /// Roles of profile owners and sponsors (`NeprofileRole`): the ones employees get.
    Lifecycle,
    /// Portal roles (`NeaccessRole`).
    Portal,
}

/// A job's state and, once complete, its per-record outcome (`job_data`, in no promised order
/// and with per-resource keys, so entries are matched to inputs by what they name).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobStatus {
    #[serde(default, deserialize_with = "lenient_text_or_empty")]
    pub status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub job_data: Vec<serde_json::Value>,
}

impl JobStatus {
    /// Each `job_data` entry, read as a result of writes of `kind` (see [`JobEntry::read`]).
    pub fn entries(&self, kind: WriteKind, key_attribute: &str) -> Vec<JobEntry> {
        self.job_data.iter().map(|e| JobEntry::read(kind, e, key_attribute)).collect()
    }

    pub fn is_complete(&self) -> bool {
        self.status.trim().eq_ignore_ascii_case("complete") || self.status.trim().eq_ignore_ascii_case("completed")
    }

    /// A status that means the job is still on its way. Only `queued` and `complete` are
    /// documented; the others are the words such APIs use for work in progress.
    pub fn is_working(&self) -> bool {
        let s = self.status.trim().to_ascii_lowercase().replace([' ', '-'], "_");
        matches!(s.as_str(), "queued" | "pending" | "running" | "in_progress" | "processing" | "started" | "working")
    }
}

/// How a wait for a bulk job ended.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// `complete`: `job_data` tells each record's outcome.
    Complete(JobStatus),
    /// Another end state (`failed`, `error`, or one not known): nothing can be assumed.
    Ended(JobStatus),
    /// Still working when the wait's deadline passed: its writes may land later.
    StillRunning(JobStatus),
}

/// Whether NERM's message says a unique value is already taken. NERM marks this case with no
/// code, only in words, so this is the one place that reads them (for job items and for the
/// field errors of a refused write alike).
pub(crate) fn says_already_taken(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already been taken") || m.contains("already exists")
}

/// What a job item's error says about writing that record again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobItemFailure {
    /// A unique value is taken: most likely by an earlier attempt whose answer was lost.
    AlreadyTaken,
    /// NERM could not process the item just then: the same write may succeed later.
    Transient,
    /// The record itself is refused: report NERM's message.
    Permanent,
}

impl JobItemFailure {
    /// Job items carry only message strings, so the wording is all there is to go on; this is
    /// the one place that reads it.
    pub fn of(messages: &[String]) -> JobItemFailure {
        let all = |needles: &[&str]| {
            messages.iter().all(|m| {
                let m = m.to_ascii_lowercase();
                needles.iter().any(|n| m.contains(n))
            })
        };
        if messages.iter().all(|m| says_already_taken(m)) {
            JobItemFailure::AlreadyTaken
        } else if all(&[
            "timeout",
            "timed out",
            "try again",
            "temporarily",
            "unavailable",
            "deadlock",
            "lock wait",
            "too many requests",
            "rate limit",
            "something went wrong",
        ]) {
            JobItemFailure::Transient
        } else {
            JobItemFailure::Permanent
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_profile_reads_attribute_values_of_any_json_type() {
        let p: Profile = serde_json::from_value(json!({
            "id": "p1", "profile_type_id": "t1", "status": "Active", "surprise": {"new": "field"},
            "attributes": {"employee_id": "E1", "badge": 4100, "remote": true, "manager": null,
                           "skills": ["a", "b"], "address": {"city": "Oslo"}}
        }))
        .expect("the profile reads");
        assert_eq!(p.attributes["employee_id"], "E1");
        assert_eq!(p.attributes["badge"], "4100");
        assert_eq!(p.attributes["remote"], "true");
        assert!(!p.attributes.contains_key("manager"), "null is an absent value");
        assert_eq!(p.attributes["skills"], r#"["a","b"]"#);
        assert_eq!(p.attributes["address"], r#"{"city":"Oslo"}"#);
    }

    #[test]
    fn typed_patches_write_only_the_fields_set_and_read_the_maps_older_builds_queued() {
        let older = json!({ "status": "Inactive", "title": "", "type": "NeprofileUser" });
        let patch: UserPatch = serde_json::from_value(older.clone()).expect("an older message's patch reads");
        assert_eq!(patch.title.as_deref(), Some(""), "an emptied value stays a clearing write");
        assert_eq!(serde_json::to_value(&patch).unwrap(), older);
        let profile = ProfilePatch::attribute("manager", "p-9");
        assert_eq!(serde_json::to_value(&profile).unwrap(), json!({ "attributes": { "manager": "p-9" } }));
    }

    #[test]
    fn job_item_errors_are_told_apart_by_what_they_say_about_trying_again() {
        let of = |m: &[&str]| JobItemFailure::of(&m.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(of(&["Login has already been taken"]), JobItemFailure::AlreadyTaken);
        assert_eq!(of(&["Request timed out, please try again"]), JobItemFailure::Transient);
        assert_eq!(of(&["Email is invalid"]), JobItemFailure::Permanent);
        assert_eq!(of(&["Login has already been taken", "Email is invalid"]), JobItemFailure::Permanent);
    }

    #[test]
    fn a_job_status_is_complete_working_or_ended() {
        let st = |s: &str| JobStatus { status: s.into(), job_data: vec![] };
        assert!(st("complete").is_complete());
        assert!(st("queued").is_working() && st("In Progress").is_working());
        for ended in ["failed", "error", "cancelled", ""] {
            assert!(!st(ended).is_complete() && !st(ended).is_working(), "{ended}");
        }
    }

    #[test]
    fn a_user_with_odd_optional_fields_and_unknown_ones_still_reads() {
        let u: User = serde_json::from_value(json!({
            "id": "u1", "login": "ann", "title": 7, "status": null, "locale": ["en"], "name": null,
            "last_login": "2026-01-01T00:00:00Z", "x_tenant": {"any": 1}
        }))
        .expect("the user reads");
        assert_eq!(u.title.as_deref(), Some("7"));
        assert_eq!(u.status, None);
        assert_eq!(u.locale, None);
        assert_eq!(u.name, "");
    }
}
