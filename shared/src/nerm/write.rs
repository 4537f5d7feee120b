//! The writes the engine asks for, as typed operations, and how NERM's answers name the records
//! they wrote (docs/nerm-api.md, "Bulk writes and jobs"). Routes, envelope keys and body shapes
//! stay here and in [`super::client`]; the engine never builds a request body.

use serde_json::{Value, json};

use super::NermError;
use super::model::{NewProfile, NewUser, ProfilePatch, UserPatch};
use crate::login::LoginKey;

/// A NERM collection the engine lists, counts or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    Users,
    Profiles,
    UserRoles,
    UserProfiles,
    UserManagers,
}

impl Collection {
    /// The list route, e.g. `/users` (also what reports and statistics call the collection).
    pub fn route(self) -> &'static str {
        match self {
            Collection::Users => "/users",
            Collection::Profiles => "/profiles",
            Collection::UserRoles => "/user_roles",
            Collection::UserProfiles => "/user_profiles",
            Collection::UserManagers => "/user_managers",
        }
    }

    /// The collection's name, e.g. `user_roles`: also the key a list page or a bulk body holds
    /// its records under.
    pub fn name(self) -> &'static str {
        match self {
            Collection::Users => "users",
            Collection::Profiles => "profiles",
            Collection::UserRoles => "user_roles",
            Collection::UserProfiles => "user_profiles",
            Collection::UserManagers => "user_managers",
        }
    }

    /// The one-record create route, e.g. `/user`.
    pub(crate) fn single_route(self) -> &'static str {
        match self {
            Collection::Users => "/user",
            Collection::Profiles => "/profile",
            Collection::UserRoles => "/user_role",
            Collection::UserProfiles => "/user_profile",
            Collection::UserManagers => "/user_manager",
        }
    }

    /// The key a one-record body or answer holds its record under: the single route's word.
    pub(crate) fn singular(self) -> &'static str {
        self.single_route().trim_start_matches('/')
    }

    /// The id key of a job's per-record result (`user_id` for users, ...).
    fn job_id_key(self) -> &'static str {
        match self {
            Collection::Users => "user_id",
            Collection::Profiles => "profile_id",
            Collection::UserRoles => "user_role_id",
            Collection::UserProfiles => "user_profile_id",
            Collection::UserManagers => "user_manager_id",
        }
    }
}

/// A collection read whole, or filtered the way the snapshot reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub collection: Collection,
    pub(crate) filters: Vec<(&'static str, String)>,
}

impl Listing {
    pub fn all(collection: Collection) -> Listing {
        Listing { collection, filters: Vec::new() }
    }

    /// The profiles of one profile type (read with keyset paging).
    pub fn profiles_of_type(profile_type_id: &str) -> Listing {
        Listing { collection: Collection::Profiles, filters: vec![("profile_type_id", profile_type_id.to_string())] }
    }
}

/// One kind of write: a bulk body holds writes of one kind only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteKind {
    CreateUsers,
    PatchUsers,
    CreateProfiles,
    PatchProfiles,
    CreateUserRoles,
    CreateUserProfiles,
    CreateUserManagers,
}

impl WriteKind {
    pub fn collection(self) -> Collection {
        match self {
            WriteKind::CreateUsers | WriteKind::PatchUsers => Collection::Users,
            WriteKind::CreateProfiles | WriteKind::PatchProfiles => Collection::Profiles,
            WriteKind::CreateUserRoles => Collection::UserRoles,
            WriteKind::CreateUserProfiles => Collection::UserProfiles,
            WriteKind::CreateUserManagers => Collection::UserManagers,
        }
    }

    pub fn is_patch(self) -> bool {
        matches!(self, WriteKind::PatchUsers | WriteKind::PatchProfiles)
    }

    /// Whether a one-record create was refused because its record already exists — most
    /// likely written by an earlier attempt whose answer was lost. `key_attribute` is the
    /// profiles' unique attribute.
    pub fn refused_as_existing(self, e: &NermError, key_attribute: &str) -> bool {
        ["login", "role_id", "user_id", "manager_id"].iter().any(|f| e.is_already_taken(f))
            || (self == WriteKind::CreateProfiles && e.is_already_taken(key_attribute))
    }
}

/// One record write, as the engine asks for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    CreateUser(NewUser),
    PatchUser { id: String, patch: UserPatch },
    CreateProfile(NewProfile),
    PatchProfile { id: String, patch: ProfilePatch },
    AssignRole { user_id: String, role_id: String },
    LinkProfile { user_id: String, profile_id: String, relationship: String },
    LinkManager { user_id: String, manager_id: String },
}

impl Write {
    pub fn kind(&self) -> WriteKind {
        match self {
            Write::CreateUser(_) => WriteKind::CreateUsers,
            Write::PatchUser { .. } => WriteKind::PatchUsers,
            Write::CreateProfile(_) => WriteKind::CreateProfiles,
            Write::PatchProfile { .. } => WriteKind::PatchProfiles,
            Write::AssignRole { .. } => WriteKind::CreateUserRoles,
            Write::LinkProfile { .. } => WriteKind::CreateUserProfiles,
            Write::LinkManager { .. } => WriteKind::CreateUserManagers,
        }
    }

    /// The id of the record a patch changes.
    pub fn patched_id(&self) -> Option<&str> {
        match self {
            Write::PatchUser { id, .. } | Write::PatchProfile { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The record as it goes into a bulk body: a patch names its record with `id`.
    pub(crate) fn bulk_body(&self) -> Value {
        match self {
            Write::PatchUser { id, .. } | Write::PatchProfile { id, .. } => {
                let mut body = self.single_body();
                body["id"] = json!(id);
                body
            }
            other => other.single_body(),
        }
    }

    /// The record as it goes into a one-record call (a patch's id is in its path).
    pub(crate) fn single_body(&self) -> Value {
        match self {
            Write::CreateUser(user) => json!(user),
            Write::CreateProfile(profile) => json!(profile),
            Write::PatchUser { patch, .. } => json!(patch),
            Write::PatchProfile { patch, .. } => json!(patch),
            Write::AssignRole { user_id, role_id } => json!({ "user_id": user_id, "role_id": role_id }),
            Write::LinkProfile { user_id, profile_id, relationship } => {
                json!({ "user_id": user_id, "profile_id": profile_id, "relationship_type": relationship })
            }
            Write::LinkManager { user_id, manager_id } => json!({ "user_id": user_id, "manager_id": manager_id }),
        }
    }
}

/// How a record is recognised in an answer, and looked up when an answer was lost.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An existing record being patched.
    Id(String),
    /// A user by its login, folded as logins are compared everywhere (`crate::login`).
    User {
        login: LoginKey,
    },
    /// A profile by its key attribute's value, trimmed.
    Profile {
        key: String,
    },
    UserRole {
        user_id: String,
        role_id: String,
    },
    UserProfile {
        user_id: String,
        profile_id: String,
        rel: String,
    },
    UserManager {
        user_id: String,
        manager_id: String,
    },
}

impl Identity {
    /// How an answered record of `kind` names itself, with its fields as NERM writes them.
    pub(crate) fn in_record(kind: WriteKind, r: &Value, key_attribute: &str) -> Option<Identity> {
        let s = |k: &str| r.get(k).and_then(Value::as_str).map(String::from);
        Some(match kind {
            WriteKind::PatchUsers | WriteKind::PatchProfiles => Identity::Id(s("id")?),
            WriteKind::CreateUsers => Identity::User { login: LoginKey::of(&s("login")?) },
            WriteKind::CreateProfiles => {
                Identity::Profile { key: r.get("attributes")?.get(key_attribute)?.as_str()?.trim().to_string() }
            }
            WriteKind::CreateUserRoles => Identity::UserRole { user_id: s("user_id")?, role_id: s("role_id")? },
            WriteKind::CreateUserProfiles => Identity::UserProfile {
                user_id: s("user_id")?,
                profile_id: s("profile_id")?,
                rel: s("relationship_type")?,
            },
            WriteKind::CreateUserManagers => {
                Identity::UserManager { user_id: s("user_id")?, manager_id: s("manager_id")? }
            }
        })
    }
}

/// What a bulk call answered: the records that named themselves, with their ids, or a job to
/// poll. An answer without the list (a PATCH that changed nothing may say only that) confirms
/// no record: the caller settles each one.
#[derive(Debug, Clone, PartialEq)]
pub enum BulkAnswer {
    Records(Vec<(Identity, String)>),
    Job(String),
}

impl BulkAnswer {
    pub(crate) fn records(kind: WriteKind, records: &[Value], key_attribute: &str) -> BulkAnswer {
        let named = records.iter().filter_map(|r| {
            let id = r.get("id").and_then(Value::as_str)?;
            Some((Identity::in_record(kind, r, key_attribute)?, id.to_string()))
        });
        BulkAnswer::Records(named.collect())
    }
}

/// One entry of a complete job's results: which record it speaks of (if it can be told), the
/// id written, and NERM's error messages for it.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEntry {
    pub identity: Option<Identity>,
    pub id: Option<String>,
    pub errors: Vec<String>,
}

impl JobEntry {
    /// A `job_data` entry of a job that wrote `kind`: a patch's entry names its record by id; a
    /// create's by the fields a synchronous answer's record would carry.
    pub(crate) fn read(kind: WriteKind, entry: &Value, key_attribute: &str) -> JobEntry {
        let id = entry.get(kind.collection().job_id_key()).and_then(Value::as_str).map(String::from);
        let identity = if kind.is_patch() {
            id.clone().map(Identity::Id)
        } else {
            Identity::in_record(kind, entry, key_attribute)
        };
        let errors = entry
            .get("errors")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
            .unwrap_or_default();
        JobEntry { identity, id, errors }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collections_know_their_list_and_single_routes_and_keys() {
        assert_eq!(Collection::UserProfiles.route(), "/user_profiles");
        assert_eq!(Collection::UserProfiles.name(), "user_profiles");
        assert_eq!(Collection::UserProfiles.single_route(), "/user_profile");
        assert_eq!(Collection::Users.singular(), "user");
        assert_eq!(Collection::UserManagers.job_id_key(), "user_manager_id");
    }

    #[test]
    fn a_patch_names_its_record_in_a_bulk_body_and_not_in_a_single_one() {
        let patch = UserPatch { status: Some("Inactive".into()), ..UserPatch::default() };
        let w = Write::PatchUser { id: "u1".into(), patch };
        assert_eq!(w.bulk_body(), json!({ "id": "u1", "status": "Inactive" }));
        assert_eq!(w.single_body(), json!({ "status": "Inactive" }));
        assert_eq!(w.kind(), WriteKind::PatchUsers);
        assert_eq!(w.patched_id(), Some("u1"));
    }

    #[test]
    fn a_profile_link_is_written_with_its_relationship_type() {
        let w = Write::LinkProfile { user_id: "u".into(), profile_id: "p".into(), relationship: "owner".into() };
        assert_eq!(w.bulk_body(), json!({ "user_id": "u", "profile_id": "p", "relationship_type": "owner" }));
    }

    #[test]
    fn an_answered_user_is_recognised_by_its_folded_login_and_a_profile_by_its_trimmed_key() {
        let user = json!({ "id": "u1", "login": "Ann@Example.COM" });
        assert_eq!(
            Identity::in_record(WriteKind::CreateUsers, &user, "employee_id"),
            Some(Identity::User { login: LoginKey::of("ann@example.com") })
        );
        let profile = json!({ "id": "p1", "attributes": { "employee_id": " E1 " } });
        assert_eq!(
            Identity::in_record(WriteKind::CreateProfiles, &profile, "employee_id"),
            Some(Identity::Profile { key: "E1".into() })
        );
        assert_eq!(Identity::in_record(WriteKind::CreateProfiles, &profile, "badge"), None);
    }

    #[test]
    fn a_job_entry_of_a_create_is_recognised_by_its_fields_and_of_a_patch_by_its_id() {
        let created = json!({ "user_id": "u1", "role_id": "r1", "user_role_id": "ur1", "errors": [] });
        let e = JobEntry::read(WriteKind::CreateUserRoles, &created, "k");
        assert_eq!(e.identity, Some(Identity::UserRole { user_id: "u1".into(), role_id: "r1".into() }));
        assert_eq!(e.id.as_deref(), Some("ur1"));
        let patched = json!({ "profile_id": "p9", "errors": ["Status is invalid"] });
        let e = JobEntry::read(WriteKind::PatchProfiles, &patched, "k");
        assert_eq!(e.identity, Some(Identity::Id("p9".into())));
        assert_eq!(e.errors, ["Status is invalid"]);
    }

    #[test]
    fn a_bulk_answer_keeps_only_records_that_name_themselves_and_carry_an_id() {
        let records = [json!({ "id": "u1", "login": "a" }), json!({ "login": "b" }), json!({ "id": "u3" })];
        let BulkAnswer::Records(named) = BulkAnswer::records(WriteKind::CreateUsers, &records, "k") else {
            panic!("records")
        };
        assert_eq!(named, [(Identity::User { login: LoginKey::of("a") }, "u1".into())]);
    }
}
