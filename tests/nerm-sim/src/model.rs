//! The simulated tenant's records (docs/nerm-api.md, "Records and their values") and how each renders on the wire.
//!
//! Records keep canonical values (ids for select attributes, hidden fields such as a user's
//! password); rendering applies NERM's read-side quirks (names instead of ids, hidden fields
//! omitted, absent optionals left out rather than sent as `null`, so bodies match the spec).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use uuid::Uuid;

/// Anything stored in a [`Coll`].
pub trait Record {
    fn id(&self) -> Uuid;
}

/// A collection that keeps creation order (the default list order) and O(1) lookups by id.
#[derive(Debug, Clone)]
pub struct Coll<T> {
    slots: Vec<Option<T>>,
    index: HashMap<Uuid, usize>,
}

impl<T: Serialize> Serialize for Coll<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.slots.iter().flatten())
    }
}

impl<T> Default for Coll<T> {
    fn default() -> Self {
        Coll { slots: Vec::new(), index: HashMap::new() }
    }
}

impl<T: Record> Coll<T> {
    pub fn insert(&mut self, item: T) {
        self.index.insert(item.id(), self.slots.len());
        self.slots.push(Some(item));
    }
    pub fn get(&self, id: &Uuid) -> Option<&T> {
        self.index.get(id).and_then(|&i| self.slots[i].as_ref())
    }
    pub fn get_mut(&mut self, id: &Uuid) -> Option<&mut T> {
        let i = *self.index.get(id)?;
        self.slots[i].as_mut()
    }
    pub fn remove(&mut self, id: &Uuid) -> Option<T> {
        let i = self.index.remove(id)?;
        self.slots[i].take()
    }
    pub fn contains(&self, id: &Uuid) -> bool {
        self.index.contains_key(id)
    }
    /// Live records in creation order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
    }
    pub fn len(&self) -> usize {
        self.index.len()
    }
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
    /// Drops records matching `pred`, returning them.
    pub fn remove_where(&mut self, pred: impl Fn(&T) -> bool) -> Vec<T> {
        let ids: Vec<Uuid> = self.iter().filter(|t| pred(t)).map(Record::id).collect();
        ids.iter().filter_map(|id| self.remove(id)).collect()
    }
}

/// A 32-hex random `uid`, as NERM assigns when the caller gives none (docs/nerm-api.md, "Base URL and envelopes").
pub fn random_uid() -> String {
    Uuid::new_v4().simple().to_string()
}

fn put_opt(map: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        map.insert(key.to_string(), Value::String(v.clone()));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserType {
    NeprofileUser,
    NeaccessUser,
}

impl UserType {
    pub const ALL: [&'static str; 2] = ["NeprofileUser", "NeaccessUser"];
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "NeprofileUser" => Some(UserType::NeprofileUser),
            "NeaccessUser" => Some(UserType::NeaccessUser),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::NeprofileUser => "NeprofileUser",
            UserType::NeaccessUser => "NeaccessUser",
        }
    }
    /// The role type a user of this type may hold (docs/nerm-api.md, "Records and their values").
    pub fn role_type(self) -> &'static str {
        match self {
            UserType::NeprofileUser => "NeprofileRole",
            UserType::NeaccessUser => "NeaccessRole",
        }
    }
}

pub const USER_STATUSES: [&str; 3] = ["Active", "Pending", "Disabled"];
pub const PROFILE_STATUSES: [&str; 4] = ["Active", "Inactive", "On Leave", "Terminated"];
pub const ID_PROOFING: [&str; 3] = ["pending", "pass", "fail"];
pub const ROLE_TYPES: [&str; 3] = ["NeprofileRole", "NeaccessRole", "IdproxyRole"];
pub const RELATIONSHIPS: [&str; 2] = ["owner", "contributor"];
pub const CATEGORIES: [&str; 5] = ["employee", "non-employee", "organization", "assignment", "other"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: Uuid,
    pub uid: String,
    pub name: String,
    pub email: String,
    #[serde(rename = "type")]
    pub kind: UserType,
    pub title: Option<String>,
    pub status: String,
    pub login: String,
    pub last_login: Option<String>,
    pub cookies_accepted_at: Option<String>,
    pub preferred_language: Option<String>,
    pub locale: Option<String>,
    pub group_strings: Option<String>,
    pub sailpoint_identity_id: Option<String>,
    /// Never returned by GET (docs/nerm-api.md, "Endpoints used").
    pub profile_id: Option<Uuid>,
    /// Never returned by GET.
    pub password: Option<String>,
    /// The groups of the user's last IdP login, for the daily refresh (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub last_idp_groups: Option<Vec<String>>,
    pub updated_at: String,
}

impl Record for User {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl User {
    pub fn render(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("uid".into(), json!(self.uid));
        m.insert("name".into(), json!(self.name));
        m.insert("email".into(), json!(self.email));
        m.insert("type".into(), json!(self.kind.as_str()));
        put_opt(&mut m, "title", &self.title);
        m.insert("status".into(), json!(self.status));
        m.insert("login".into(), json!(self.login));
        put_opt(&mut m, "last_login", &self.last_login);
        put_opt(&mut m, "cookies_accepted_at", &self.cookies_accepted_at);
        put_opt(&mut m, "preferred_language", &self.preferred_language);
        put_opt(&mut m, "locale", &self.locale);
        put_opt(&mut m, "group_strings", &self.group_strings);
        put_opt(&mut m, "sailpoint_identity_id", &self.sailpoint_identity_id);
        Value::Object(m)
    }

    /// `group_strings` split on commas, trimmed, blanks dropped (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub fn groups(&self) -> Vec<String> {
        split_groups(self.group_strings.as_deref().unwrap_or(""))
    }
}

pub fn split_groups(s: &str) -> Vec<String> {
    s.split(',').map(str::trim).filter(|g| !g.is_empty()).map(String::from).collect()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Role {
    pub id: Uuid,
    pub uid: String,
    pub name: String,
    pub groups: Vec<String>,
    /// Stored, honoured by `GET /roles?type=`, not emitted (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    #[serde(rename = "type")]
    pub kind: String,
    pub archived: bool,
}

impl Record for Role {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl Role {
    pub fn render(&self) -> Value {
        json!({ "id": self.id, "uid": self.uid, "name": self.name, "groups": self.groups })
    }
}

/// Why a user holds a role; one visible `user_role` record per (user, role) is the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleSource {
    /// From the user's `group_strings` matching the role's groups.
    Group,
    /// From `POST /user_role`.
    Direct,
    /// From the groups of an SSO login.
    Idp,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserRole {
    pub id: Uuid,
    pub uid: String,
    pub user_id: Uuid,
    pub role_id: Uuid,
    pub sources: BTreeSet<RoleSource>,
}

impl Record for UserRole {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl UserRole {
    pub fn render(&self) -> Value {
        json!({ "id": self.id, "uid": self.uid, "user_id": self.user_id, "role_id": self.role_id })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProfileType {
    pub id: Uuid,
    pub uid: String,
    pub name: String,
    pub category: String,
    pub bypass_dup_protection: bool,
    pub archived: bool,
    pub permitted_role_ids: Vec<Uuid>,
    pub isc_synced: bool,
    /// Attribute ids used for duplicate detection.
    pub dup_attribute_ids: Vec<Uuid>,
    /// Attribute ids whose values build the profile name, in order (docs/nerm-api.md, "Records and their values").
    pub naming_attribute_ids: Vec<Uuid>,
}

impl Record for ProfileType {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl ProfileType {
    pub fn render(&self) -> Value {
        let dups: Vec<Value> = self
            .dup_attribute_ids
            .iter()
            .map(|a| {
                json!({ "id": Uuid::new_v5(&self.id, a.as_bytes()), "uid": format!("dup_{}", a.simple()),
                        "profile_type_id": self.id, "ne_attribute_id": a })
            })
            .collect();
        let namings: Vec<Value> = self
            .naming_attribute_ids
            .iter()
            .enumerate()
            .map(|(i, a)| {
                json!({ "id": Uuid::new_v5(&self.id, &[a.as_bytes().as_slice(), b"naming"].concat()),
                        "uid": format!("naming_{}", a.simple()), "profile_type_id": self.id,
                        "ne_attribute_id": a, "order": i })
            })
            .collect();
        json!({
            "id": self.id, "uid": self.uid, "name": self.name, "category": self.category,
            "bypass_dup_protection": self.bypass_dup_protection, "archived": self.archived,
            "permitted_role_ids": self.permitted_role_ids, "isc_synced": self.isc_synced,
            "profile_type_dup_attributes": dups, "profile_type_namings": namings,
        })
    }
}

/// How an attribute's values are written and read (docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    Text,
    Date,
    Options,
    ProfileRef,
    UserRef { owner: bool },
    Attachment,
}

pub const DATA_TYPES: [(&str, &str); 14] = [
    ("text field", "TextFieldAttribute"),
    ("text area", "TextAreaAttribute"),
    ("drop-down", "DropDownAttribute"),
    ("radio buttons", "RadioButtonsAttribute"),
    ("check boxes", "CheckBoxesAttribute"),
    ("date", "DateAttribute"),
    ("tags", "TagsAttribute"),
    ("attachment", "AttachmentAttribute"),
    ("profile select", "ProfileSelectAttribute"),
    ("profile search", "ProfileSearchAttribute"),
    ("owner select", "OwnerSelectAttribute"),
    ("owner search", "OwnerSearchAttribute"),
    ("contributor select", "ContributorSelectAttribute"),
    ("contributor search", "ContributorSearchAttribute"),
];

pub const DATE_FORMATS: [&str; 6] =
    ["mm/dd/yyyy", "mm-dd-yyyy", "dd/mm/yyyy", "dd-mm-yyyy", "yyyy/mm/dd", "yyyy-mm-dd"];

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NeAttribute {
    pub id: Uuid,
    pub uid: String,
    pub label: String,
    pub data_type: String,
    pub date_format: Option<String>,
    /// For profile select/search: which type of profile can be picked.
    pub profile_type_id: Option<Uuid>,
    pub allow_multiple_selections: bool,
    pub archived: bool,
    /// Validation methods (`required`, `unique`, `email_format`, ...).
    pub validations: Vec<String>,
}

impl Record for NeAttribute {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl NeAttribute {
    pub fn kind(&self) -> AttrKind {
        match self.data_type.as_str() {
            "date" => AttrKind::Date,
            "drop-down" | "radio buttons" | "check boxes" | "tags" => AttrKind::Options,
            "profile select" | "profile search" => AttrKind::ProfileRef,
            "owner select" | "owner search" => AttrKind::UserRef { owner: true },
            "contributor select" | "contributor search" => AttrKind::UserRef { owner: false },
            "attachment" => AttrKind::Attachment,
            _ => AttrKind::Text,
        }
    }
    pub fn class_name(&self) -> &'static str {
        DATA_TYPES.iter().find(|(d, _)| *d == self.data_type).map(|(_, c)| *c).unwrap_or("TextFieldAttribute")
    }
    pub fn has_validation(&self, method: &str) -> bool {
        self.validations.iter().any(|v| v == method)
    }
    pub fn render(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("uid".into(), json!(self.uid));
        m.insert("label".into(), json!(self.label));
        m.insert("data_type".into(), json!(self.data_type));
        m.insert("type".into(), json!(self.class_name()));
        m.insert("archived".into(), json!(self.archived));
        m.insert("allow_multiple_selections".into(), json!(self.allow_multiple_selections));
        put_opt(&mut m, "date_format", &self.date_format);
        if let Some(pt) = self.profile_type_id {
            m.insert("profile_type_id".into(), json!(pt));
        }
        Value::Object(m)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Profile {
    pub id: Uuid,
    pub uid: String,
    pub name: String,
    pub profile_type_id: Uuid,
    pub status: String,
    pub id_proofing_status: Option<String>,
    /// Stored, not emitted unless the compatibility flag is set (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub archived: bool,
    pub created_at: String,
    pub updated_at: String,
    /// The day of the last real change, for `updated_after`.
    pub updated_on: String,
    /// attribute uid → canonical value (ids for select attributes).
    pub attributes: BTreeMap<String, String>,
}

impl Record for Profile {
    fn id(&self) -> Uuid {
        self.id
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserProfile {
    pub id: Uuid,
    pub uid: String,
    pub user_id: Uuid,
    pub profile_id: Uuid,
    pub ne_attribute_id: Option<Uuid>,
    pub relationship_type: String,
}

impl Record for UserProfile {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl UserProfile {
    pub fn render(&self) -> Value {
        let mut v = json!({ "id": self.id, "uid": self.uid, "user_id": self.user_id,
                            "profile_id": self.profile_id, "relationship_type": self.relationship_type });
        if let Some(a) = self.ne_attribute_id {
            v["ne_attribute_id"] = json!(a);
        }
        v
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserManager {
    pub id: Uuid,
    pub uid: String,
    pub user_id: Uuid,
    pub manager_id: Uuid,
}

impl Record for UserManager {
    fn id(&self) -> Uuid {
        self.id
    }
}

impl UserManager {
    pub fn render(&self) -> Value {
        json!({ "id": self.id, "uid": self.uid, "user_id": self.user_id, "manager_id": self.manager_id })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub job_id: String,
    pub uid: Uuid,
    pub complete: bool,
    /// The status shown once the job has run (`complete` unless `job_end_status` says otherwise).
    #[serde(default)]
    pub end_status: String,
    pub job_data: Vec<Value>,
}

impl Record for Job {
    fn id(&self) -> Uuid {
        self.uid
    }
}

impl Job {
    pub fn render_status(&self) -> Value {
        if self.complete {
            let status = if self.end_status.is_empty() { "complete" } else { self.end_status.as_str() };
            json!({ "uid": self.uid, "status": status, "job_type": "import", "job_data": self.job_data })
        } else {
            json!({ "uid": self.uid, "status": "queued", "job_type": "import", "job_data": [] })
        }
    }
}
