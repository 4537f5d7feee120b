//! NERM records as the engine reads them, and the bodies it writes (NOTES §2).
//!
//! Reads are tolerant (unknown fields ignored, optional fields may be absent or null);
//! writes carry only the fields we set, so a PATCH never clears what it does not mention.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    pub id: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub uid: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub email: String,
    #[serde(rename = "type", default, deserialize_with = "null_as_default")]
    pub kind: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
    pub login: String,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub group_strings: Option<String>,
    #[serde(default)]
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
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// Attribute uid → value as GET shows it (select attributes show names, NOTES §3.6).
    #[serde(default, deserialize_with = "null_as_default")]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
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

/// A new user (`POST /user`, NOTES §2.1).
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

/// A new profile (`POST /profile`, NOTES §2.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NewProfile {
    pub profile_type_id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

/// A partial update: only the named fields change (NOTES §3.5).
pub type Patch = serde_json::Map<String, serde_json::Value>;

/// What a bulk call answered (NOTES §2.11): the records, or a job to poll.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkAnswer {
    Records(Vec<serde_json::Value>),
    Job(String),
}

/// A finished job's per-record outcome.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct JobStatus {
    #[serde(default)]
    pub status: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub job_data: Vec<serde_json::Value>,
}
