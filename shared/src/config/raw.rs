//! The TOML document exactly as written (serde layer). Unknown keys are rejected everywhere
//! except inside the free-form maps (`status_map`, `attributes`). Validated types live in
//! `mod.rs`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::values::{
    Delimiter, Encoding, ProfileStatus, RoleStrategy, SelfRelationship, SyncMode, UserStatus, UserType,
};

pub(crate) const DEFAULT_MAX_FIELD_BYTES: usize = 8 * 1024;
pub(crate) const DEFAULT_MAX_ROWS: usize = 100_000;
pub(crate) const DEFAULT_MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Document {
    #[serde(default)]
    pub csv: Csv,
    pub columns: Columns,
    pub user: User,
    pub profile: Profile,
    #[serde(default)]
    pub roles: Roles,
    #[serde(default)]
    pub contributors: Contributors,
    #[serde(default)]
    pub managers: Managers,
    #[serde(default)]
    pub sync: Sync,
    #[serde(default)]
    pub nerm: Nerm,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Csv {
    pub delimiter: Delimiter,
    pub encoding: Encoding,
    pub max_field_bytes: usize,
    pub max_rows: usize,
    pub max_file_bytes: u64,
    pub headers: Option<Vec<String>>,
}

impl Default for Csv {
    fn default() -> Self {
        Csv {
            delimiter: Delimiter::Auto,
            encoding: Encoding::Utf8,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            max_rows: DEFAULT_MAX_ROWS,
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            headers: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Columns {
    pub key: String,
    pub login: String,
    pub status: String,
    pub manager: Option<String>,
    pub roles: Option<String>,
    #[serde(default = "default_roles_separator")]
    pub roles_separator: char,
}

fn default_roles_separator() -> char {
    ';'
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct User {
    #[serde(rename = "type", default)]
    pub user_type: UserType,
    pub name: String,
    pub email: String,
    pub title: Option<String>,
    pub locale: Option<String>,
    pub sailpoint_identity_id: Option<String>,
    pub status_map: BTreeMap<String, UserStatus>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Profile {
    #[serde(rename = "type")]
    pub profile_type: String,
    pub name: Option<String>,
    pub key_attribute: String,
    pub status_map: BTreeMap<String, ProfileStatus>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Roles {
    pub strategy: RoleStrategy,
    pub defaults: Vec<String>,
    pub managed: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Contributors {
    #[serde(rename = "self")]
    pub self_relationship: SelfRelationship,
    pub extra: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Managers {
    /// `None` = default: on when `columns.manager` is set.
    pub user_manager: Option<bool>,
    pub profile_attribute: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Sync {
    pub mode: SyncMode,
    pub leaver_user_status: UserStatus,
    pub leaver_profile_status: ProfileStatus,
    pub max_disable_percent: f64,
    pub allow_mass_disable: bool,
}

impl Default for Sync {
    fn default() -> Self {
        Sync {
            mode: SyncMode::Upsert,
            leaver_user_status: UserStatus::Disabled,
            leaver_profile_status: ProfileStatus::Inactive,
            max_disable_percent: 10.0,
            allow_mass_disable: false,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Nerm {
    pub requests_per_window: u32,
    pub window_seconds: u32,
    pub concurrency: u32,
    pub page_size: u32,
    pub timeout_seconds: u32,
    pub max_retries: u32,
    pub retry_budget: u32,
}

impl Default for Nerm {
    fn default() -> Self {
        Nerm {
            requests_per_window: 100,
            window_seconds: 10,
            concurrency: 4,
            page_size: 500,
            timeout_seconds: 30,
            max_retries: 6,
            retry_budget: 1000,
        }
    }
}
