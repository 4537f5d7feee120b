//! What NERM holds today, read once in full pages and indexed for the diff (docs/nerm-api.md, "Endpoints used").
//!
//! A handful of paged reads replace per-employee lookups: an unchanged rerun costs only these.

use std::collections::HashMap;

use crate::config::{
    CatalogAttribute, CatalogProfileType, CatalogRole, NermCatalog, ResolvedConfig, RoleStrategy, RoleType,
};
use crate::login::LoginKey;
use crate::nerm::model::{Profile, Role, RoleKind, User, UserManager, UserProfile, UserRole};
use crate::nerm::{NermClient, NermError};

/// The NERM state the mapping config manages.
/// A snapshot index by id, login or key. The planner looks several up per row, so they hash
/// with foldhash (randomly seeded) rather than SipHash.
type Index<V, K = String> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    pub users: Vec<User>,
    pub profiles: Vec<Profile>,
    pub user_roles: Vec<UserRole>,
    pub user_profiles: Vec<UserProfile>,
    pub user_managers: Vec<UserManager>,
    /// Records NERM answered that could not be read, skipped (one line each, for the summary).
    pub warnings: Vec<String>,
    user_by_login: Index<usize, LoginKey>,
    user_by_id: Index<usize>,
    profile_by_key: Index<usize>,
    profile_by_id: Index<usize>,
    roles_by_user: Index<Vec<usize>>,
    links_by_profile: Index<Vec<usize>>,
    managers_by_user: Index<Vec<usize>>,
}

impl Snapshot {
    /// Reads the catalog (types, attributes, roles) the config is resolved against.
    pub async fn catalog(client: &NermClient) -> Result<NermCatalog, NermError> {
        let types = client.profile_types().await?;
        let attributes = client.attributes().await?;
        // A role's type is only known by asking for the roles of each type: two reads tell
        // lifecycle from portal roles, so a portal role in the file is a clear row error.
        let lifecycle = client.roles_of_type(RoleKind::Lifecycle).await?;
        let portal = client.roles_of_type(RoleKind::Portal).await?;
        let typed = |r: &Role| {
            if lifecycle.iter().any(|x| x.id == r.id) {
                Some(RoleType::NeprofileRole)
            } else if portal.iter().any(|x| x.id == r.id) {
                Some(RoleType::NeaccessRole)
            } else {
                None
            }
        };
        let roles: Vec<(Role, Option<RoleType>)> = client
            .roles()
            .await?
            .into_iter()
            .map(|r| {
                let t = typed(&r);
                (r, t)
            })
            .collect();
        Ok(NermCatalog {
            profile_types: types
                .into_iter()
                .map(|t| CatalogProfileType { id: t.id, uid: t.uid, name: t.name })
                .collect(),
            attributes: attributes
                .into_iter()
                .map(|a| CatalogAttribute {
                    id: a.id,
                    uid: a.uid,
                    label: a.label,
                    data_type: a.data_type,
                    profile_type_id: a.profile_type_id,
                })
                .collect(),
            roles: roles
                .into_iter()
                .map(|(r, role_type)| CatalogRole { id: r.id, uid: r.uid, name: r.name, groups: r.groups, role_type })
                .collect(),
        })
    }

    /// Reads users, the profiles of the config's type, and the links, in full pages. Role
    /// assignments (`/user_roles`) are read only for `roles.strategy = "user_role"`: under
    /// `group_strings` the planner never looks at them, and they can be a third of the pages.
    pub async fn load(client: &NermClient, cfg: &ResolvedConfig) -> Result<Snapshot, NermError> {
        let users = client.users().await?;
        let profiles = client.list_profiles_of_type(&cfg.profile_type().id).await?;
        let user_roles = match cfg.config().roles.strategy {
            RoleStrategy::UserRole => client.user_roles().await?,
            RoleStrategy::GroupStrings => Vec::new(),
        };
        let user_profiles = client.user_profiles().await?;
        let user_managers = client.user_managers().await?;
        let key_attribute = &cfg.key_attribute().uid;
        let mut snap = Snapshot::from_parts(users, profiles, user_roles, user_profiles, user_managers, key_attribute);
        snap.warnings = client.take_unreadable();
        Ok(snap)
    }

    /// Builds the indexes (also used by tests with hand-made state).
    pub fn from_parts(
        users: Vec<User>,
        profiles: Vec<Profile>,
        user_roles: Vec<UserRole>,
        user_profiles: Vec<UserProfile>,
        user_managers: Vec<UserManager>,
        key_attribute: &str,
    ) -> Snapshot {
        let mut s = Snapshot { users, profiles, user_roles, user_profiles, user_managers, ..Snapshot::default() };
        for (i, u) in s.users.iter().enumerate() {
            s.user_by_login.insert(LoginKey::of(&u.login), i);
            s.user_by_id.insert(u.id.clone(), i);
        }
        for (i, p) in s.profiles.iter().enumerate() {
            s.profile_by_id.insert(p.id.clone(), i);
            if let Some(k) = p.attributes.get(key_attribute).map(|k| k.trim()).filter(|k| !k.is_empty()) {
                // First one wins; a second profile with the same key is left alone.
                s.profile_by_key.entry(k.to_string()).or_insert(i);
            }
        }
        for (i, r) in s.user_roles.iter().enumerate() {
            s.roles_by_user.entry(r.user_id.clone()).or_default().push(i);
        }
        for (i, l) in s.user_profiles.iter().enumerate() {
            s.links_by_profile.entry(l.profile_id.clone()).or_default().push(i);
        }
        for (i, m) in s.user_managers.iter().enumerate() {
            s.managers_by_user.entry(m.user_id.clone()).or_default().push(i);
        }
        s
    }

    /// The user with this login, compared like [`login_key`] (without allocating for ASCII).
    pub fn user_by_login(&self, login: &str) -> Option<&User> {
        crate::login::with_folded(login, |key| self.user_by_login.get(key).copied()).map(|i| &self.users[i])
    }

    pub fn user_by_id(&self, id: &str) -> Option<&User> {
        self.user_by_id.get(id).map(|&i| &self.users[i])
    }

    pub fn profile_by_key(&self, key: &str) -> Option<&Profile> {
        self.profile_by_key.get(key.trim()).map(|&i| &self.profiles[i])
    }

    pub fn profile_by_id(&self, id: &str) -> Option<&Profile> {
        self.profile_by_id.get(id).map(|&i| &self.profiles[i])
    }

    /// Role assignments of a user; always empty under `group_strings` (not read, see
    /// [`Snapshot::load`]).
    pub fn roles_of(&self, user_id: &str) -> impl Iterator<Item = &UserRole> {
        self.roles_by_user.get(user_id).into_iter().flatten().map(|&i| &self.user_roles[i])
    }

    pub fn links_of(&self, profile_id: &str) -> impl Iterator<Item = &UserProfile> {
        self.links_by_profile.get(profile_id).into_iter().flatten().map(|&i| &self.user_profiles[i])
    }

    pub fn managers_of(&self, user_id: &str) -> impl Iterator<Item = &UserManager> {
        self.managers_by_user.get(user_id).into_iter().flatten().map(|&i| &self.user_managers[i])
    }

    /// Profiles of the type that carry a key: the employees the config manages.
    pub fn keyed_profiles(&self) -> impl Iterator<Item = (&str, &Profile)> {
        self.profile_by_key.iter().map(|(k, &i)| (k.as_str(), &self.profiles[i]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, login: &str) -> User {
        serde_json::from_value(serde_json::json!({ "id": id, "login": login })).expect("a user")
    }

    #[test]
    fn a_user_is_found_by_login_ignoring_case_and_surrounding_spaces() {
        let users = vec![user("u1", "Ann.Lee@Example.com"), user("u2", "zoë.østergaard@example.com")];
        let snap = Snapshot::from_parts(users, vec![], vec![], vec![], vec![], "employee_id");
        for (login, id) in [
            ("ann.lee@example.com", Some("u1")),
            (" ANN.LEE@EXAMPLE.COM ", Some("u1")),
            ("ZOË.ØSTERGAARD@example.com", Some("u2")),
            ("zoe.ostergaard@example.com", None),
            ("", None),
        ] {
            assert_eq!(snap.user_by_login(login).map(|u| u.id.as_str()), id, "{login:?}");
        }
    }
}
