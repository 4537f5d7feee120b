//! The tenant's state and every rule a write must pass (docs/nerm-api.md: "Endpoints used", "Records and their values", and the open questions).
//!
//! Handlers stay thin: they parse HTTP, take the lock, and call one method here. Each method
//! validates the whole record first and only then mutates, so a rejected write changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::FormatItem;
use time::macros::format_description;
use uuid::Uuid;

use crate::config::Behaviour;
use crate::error::{ApiError, FieldErrors};
use crate::model::*;

const TS_FORMAT: &[FormatItem<'static>] = format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3][offset_hour sign:mandatory]:[offset_minute]"
);
const DAY_FORMAT: &[FormatItem<'static>] = format_description!("[year]-[month]-[day]");

/// ISO-8601 with milliseconds and offset, as NERM emits (docs/nerm-api.md, "Open questions, and the simulator switch for each").
pub fn now_iso() -> String {
    OffsetDateTime::now_utc().format(TS_FORMAT).unwrap_or_default()
}

pub fn today() -> String {
    OffsetDateTime::now_utc().format(DAY_FORMAT).unwrap_or_default()
}

/// A string field of a request body: absent, explicitly null, or a value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Absent,
    Null,
    Str(String),
}

impl Field {
    fn read(obj: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Field {
        match obj.get(key) {
            None => Field::Absent,
            Some(Value::Null) => Field::Null,
            Some(Value::String(s)) => Field::Str(s.clone()),
            Some(_) => {
                errs.add(key, "is invalid");
                Field::Absent
            }
        }
    }
    fn non_blank(&self) -> Option<&str> {
        match self {
            Field::Str(s) if !s.trim().is_empty() => Some(s),
            _ => None,
        }
    }
    fn is_present(&self) -> bool {
        !matches!(self, Field::Absent)
    }
    /// The new value of an optional field, `None` when cleared.
    fn optional(&self) -> Option<String> {
        match self {
            Field::Str(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        }
    }
}

fn parse_uuid_field(obj: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Option<Uuid> {
    match Field::read(obj, key, errs) {
        Field::Str(s) => match Uuid::parse_str(s.trim()) {
            Ok(id) => Some(id),
            Err(_) => {
                errs.add(key, "is invalid");
                None
            }
        },
        _ => None,
    }
}

fn check_enum(field: &Field, key: &str, allowed: &[&str], errs: &mut FieldErrors) {
    if let Field::Str(s) = field
        && !allowed.contains(&s.as_str())
    {
        errs.add(key, "is not included in the list");
    }
}

/// Lower-cased, trimmed login: the uniqueness key (docs/nerm-api.md, "Open questions, and the simulator switch for each").
pub fn login_key(login: &str) -> String {
    login.trim().to_lowercase()
}

/// What one bulk item produced.
pub type ItemResult = Result<Value, ApiError>;

/// The kinds of bulk call, kept so a queued job can run later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkKind {
    CreateUsers,
    PatchUsers,
    CreateProfiles,
    PatchProfiles,
    DeleteProfiles,
    CreateUserRoles,
    CreateUserProfiles,
    CreateUserManagers,
    PatchUserManagers,
}

impl BulkKind {
    /// The key naming each record's id in a job's `job_data`.
    pub fn id_key(self) -> &'static str {
        match self {
            BulkKind::CreateUsers | BulkKind::PatchUsers => "user_id",
            BulkKind::CreateProfiles | BulkKind::PatchProfiles | BulkKind::DeleteProfiles => "profile_id",
            BulkKind::CreateUserRoles => "user_role_id",
            BulkKind::CreateUserProfiles => "user_profile_id",
            BulkKind::CreateUserManagers | BulkKind::PatchUserManagers => "user_manager_id",
        }
    }
}

/// The whole simulated tenant.
#[derive(Debug, Default, Serialize)]
pub struct Tenant {
    pub users: Coll<User>,
    pub roles: Coll<Role>,
    pub user_roles: Coll<UserRole>,
    pub profile_types: Coll<ProfileType>,
    pub ne_attributes: Coll<NeAttribute>,
    pub profiles: Coll<Profile>,
    pub user_profiles: Coll<UserProfile>,
    pub user_managers: Coll<UserManager>,
    pub jobs: Coll<Job>,
    /// What the IdP would assert for each login (lower-cased), for logins and the daily refresh.
    pub idp_directory: BTreeMap<String, Vec<String>>,
    #[serde(skip)]
    login_index: HashMap<String, Uuid>,
    /// Profile ids in id order, for `after_id` paging (docs/nerm-api.md, "Records and their values").
    #[serde(skip)]
    profile_order: BTreeSet<Uuid>,
    #[serde(skip)]
    job_index: HashMap<String, Uuid>,
}

impl Tenant {
    pub fn user_by_login(&self, login: &str) -> Option<&User> {
        self.login_index.get(&login_key(login)).and_then(|id| self.users.get(id))
    }

    pub fn profile_type_by_key(&self, key: &str) -> Option<&ProfileType> {
        match Uuid::parse_str(key) {
            Ok(id) => self.profile_types.get(&id),
            Err(_) => self.profile_types.iter().find(|t| t.uid == key),
        }
    }

    pub fn attribute_by_key(&self, key: &str) -> Option<&NeAttribute> {
        match Uuid::parse_str(key) {
            Ok(id) => self.ne_attributes.get(&id),
            Err(_) => self.ne_attributes.iter().find(|a| a.uid == key),
        }
    }

    fn attribute_by_uid(&self, uid: &str) -> Option<&NeAttribute> {
        self.ne_attributes.iter().find(|a| a.uid == uid)
    }

    pub fn profile_ids_after(&self, after: Option<Uuid>) -> impl Iterator<Item = &Uuid> {
        use std::ops::Bound::{Excluded, Unbounded};
        let lower = after.map_or(Unbounded, Excluded);
        self.profile_order.range((lower, Unbounded))
    }

    pub fn job_by_job_id(&self, job_id: &str) -> Option<&Job> {
        self.job_index.get(job_id).and_then(|id| self.jobs.get(id))
    }

    // ----- seeding -------------------------------------------------------------------------

    pub fn add_role(&mut self, role: Role) {
        self.roles.insert(role);
    }
    pub fn add_profile_type(&mut self, pt: ProfileType) {
        self.profile_types.insert(pt);
    }
    pub fn add_attribute(&mut self, a: NeAttribute) {
        self.ne_attributes.insert(a);
    }

    // ----- users ---------------------------------------------------------------------------

    /// `POST /user` (docs/nerm-api.md, "Endpoints used").
    pub fn create_user(&mut self, obj: &Map<String, Value>) -> Result<Value, ApiError> {
        let mut errs = FieldErrors::default();
        let name = Field::read(obj, "name", &mut errs);
        let email = Field::read(obj, "email", &mut errs);
        let kind = Field::read(obj, "type", &mut errs);
        let login = Field::read(obj, "login", &mut errs);
        let status = Field::read(obj, "status", &mut errs);
        for (f, key) in [(&name, "name"), (&email, "email"), (&kind, "type"), (&login, "login")] {
            if f.non_blank().is_none() && !errs_has(&errs, key) {
                errs.add(key, "can't be blank");
            }
        }
        check_enum(&kind, "type", &UserType::ALL, &mut errs);
        check_enum(&status, "status", &USER_STATUSES, &mut errs);
        if let Some(e) = email.non_blank()
            && !looks_like_email(e)
        {
            errs.add("email", "is invalid");
        }
        if let Some(l) = login.non_blank()
            && self.login_index.contains_key(&login_key(l))
        {
            errs.add("login", "has already been taken");
        }
        let profile_id = parse_uuid_field(obj, "profile_id", &mut errs);
        let user_type = kind.non_blank().and_then(UserType::parse);
        if user_type == Some(UserType::NeaccessUser) {
            match profile_id {
                Some(pid) if self.profiles.contains(&pid) => {}
                Some(_) => errs.add("profile_id", "must exist"),
                None => errs.add("profile_id", "can't be blank"),
            }
        }
        let opt = self.read_optional_user_fields(obj, &mut errs);
        errs.into_result("user", "create")?;
        let now = now_iso();
        let user = User {
            id: Uuid::new_v4(),
            uid: random_uid(),
            name: name.non_blank().unwrap_or_default().to_string(),
            email: email.non_blank().unwrap_or_default().to_string(),
            kind: user_type.unwrap_or(UserType::NeprofileUser),
            title: opt.title,
            status: status.optional().unwrap_or_else(|| "Active".into()),
            login: login.non_blank().unwrap_or_default().trim().to_string(),
            last_login: None,
            cookies_accepted_at: None,
            preferred_language: None,
            locale: opt.locale,
            group_strings: opt.group_strings,
            sailpoint_identity_id: opt.sailpoint_identity_id,
            profile_id,
            password: opt.password,
            last_idp_groups: None,
            updated_at: now,
        };
        let id = user.id;
        self.login_index.insert(login_key(&user.login), id);
        self.users.insert(user);
        self.sync_group_roles(id);
        Ok(self.users.get(&id).expect("just inserted").render())
    }

    fn read_optional_user_fields(&self, obj: &Map<String, Value>, errs: &mut FieldErrors) -> OptionalUserFields {
        let title = Field::read(obj, "title", errs);
        let locale = Field::read(obj, "locale", errs);
        let groups = Field::read(obj, "group_strings", errs);
        let sp = Field::read(obj, "sailpoint_identity_id", errs);
        let password = Field::read(obj, "password", errs);
        OptionalUserFields {
            title: title.optional(),
            locale: locale.optional(),
            group_strings: groups.optional(),
            sailpoint_identity_id: sp.optional(),
            password: password.optional(),
            present: [
                ("title", title.is_present()),
                ("locale", locale.is_present()),
                ("group_strings", groups.is_present()),
                ("sailpoint_identity_id", sp.is_present()),
                ("password", password.is_present()),
            ]
            .into_iter()
            .filter(|(_, p)| *p)
            .map(|(k, _)| k)
            .collect(),
        }
    }

    /// `PATCH /users/{id}`: partial; an unchanged PATCH writes nothing (docs/nerm-api.md, "Endpoints used").
    pub fn patch_user(&mut self, id: Uuid, obj: &Map<String, Value>) -> Result<Value, ApiError> {
        let Some(current) = self.users.get(&id) else {
            return Err(ApiError::NotFound("User"));
        };
        let mut errs = FieldErrors::default();
        let mut next = current.clone();
        for key in ["name", "email", "login", "type"] {
            let f = Field::read(obj, key, &mut errs);
            if f.is_present() && f.non_blank().is_none() && !errs_has(&errs, key) {
                errs.add(key, "can't be blank");
            }
            if let Some(v) = f.non_blank() {
                match key {
                    "name" => next.name = v.to_string(),
                    "email" => {
                        if looks_like_email(v) {
                            next.email = v.to_string()
                        } else {
                            errs.add("email", "is invalid")
                        }
                    }
                    "login" => {
                        let v = v.trim();
                        match self.login_index.get(&login_key(v)) {
                            Some(other) if *other != id => errs.add("login", "has already been taken"),
                            _ => next.login = v.to_string(),
                        }
                    }
                    _ => match UserType::parse(v) {
                        Some(t) => next.kind = t,
                        None => errs.add("type", "is not included in the list"),
                    },
                }
            }
        }
        let status = Field::read(obj, "status", &mut errs);
        check_enum(&status, "status", &USER_STATUSES, &mut errs);
        if let Field::Str(s) = &status
            && USER_STATUSES.contains(&s.as_str())
        {
            next.status = s.clone();
        }
        if obj.contains_key("profile_id") {
            next.profile_id = parse_uuid_field(obj, "profile_id", &mut errs);
        }
        let opt = self.read_optional_user_fields(obj, &mut errs);
        for key in &opt.present {
            match *key {
                "title" => next.title = opt.title.clone(),
                "locale" => next.locale = opt.locale.clone(),
                "group_strings" => next.group_strings = opt.group_strings.clone(),
                "sailpoint_identity_id" => next.sailpoint_identity_id = opt.sailpoint_identity_id.clone(),
                _ => next.password = opt.password.clone(),
            }
        }
        errs.into_result("user", "update")?;
        let changed = serde_json::to_value(&next).ok() != serde_json::to_value(current).ok();
        if !changed {
            return Ok(current.render());
        }
        let groups_changed = next.group_strings != current.group_strings;
        let old_login = current.login.clone();
        next.updated_at = now_iso();
        if login_key(&old_login) != login_key(&next.login) {
            self.login_index.remove(&login_key(&old_login));
            self.login_index.insert(login_key(&next.login), id);
        }
        *self.users.get_mut(&id).expect("exists") = next;
        if groups_changed {
            self.sync_group_roles(id);
        }
        Ok(self.users.get(&id).expect("exists").render())
    }

    /// `DELETE /users/{id}`, cascading to the user's links (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub fn delete_user(&mut self, id: Uuid) -> Result<(), ApiError> {
        let user = self.users.remove(&id).ok_or(ApiError::NotFound("User"))?;
        self.login_index.remove(&login_key(&user.login));
        self.user_roles.remove_where(|r| r.user_id == id);
        self.user_profiles.remove_where(|r| r.user_id == id);
        self.user_managers.remove_where(|r| r.user_id == id || r.manager_id == id);
        Ok(())
    }

    /// Roles of `kind` whose directory groups intersect `groups` (exact, case-sensitive).
    fn roles_matching(&self, groups: &[String], role_type: &str) -> Vec<Uuid> {
        self.roles
            .iter()
            .filter(|r| !r.archived && r.kind == role_type && r.groups.iter().any(|g| groups.contains(g)))
            .map(|r| r.id)
            .collect()
    }

    /// Recomputes the roles a user holds through `group_strings` (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    fn sync_group_roles(&mut self, user_id: Uuid) {
        let Some(user) = self.users.get(&user_id) else {
            return;
        };
        let wanted = self.roles_matching(&user.groups(), user.kind.role_type());
        self.set_source(user_id, RoleSource::Group, &wanted);
    }

    /// Makes `source` back exactly the roles in `wanted` for this user.
    fn set_source(&mut self, user_id: Uuid, source: RoleSource, wanted: &[Uuid]) {
        let mut have = HashMap::new();
        for ur in self.user_roles.iter().filter(|r| r.user_id == user_id) {
            have.insert(ur.role_id, ur.id);
        }
        for (role_id, ur_id) in &have {
            let ur = self.user_roles.get_mut(ur_id).expect("listed");
            if wanted.contains(role_id) {
                ur.sources.insert(source);
            } else {
                ur.sources.remove(&source);
                if ur.sources.is_empty() {
                    self.user_roles.remove(ur_id);
                }
            }
        }
        for role_id in wanted.iter().filter(|r| !have.contains_key(r)) {
            self.user_roles.insert(UserRole {
                id: Uuid::new_v4(),
                uid: random_uid(),
                user_id,
                role_id: *role_id,
                sources: BTreeSet::from([source]),
            });
        }
    }

    // ----- SSO hooks (docs/nerm-api.md, "Roles under SSO") -----------------------------------------------

    /// An SSO login. Returns the user after the login, or why the login failed.
    pub fn simulate_login(&mut self, req: &LoginRequest, b: &Behaviour) -> Result<Value, String> {
        let via_idp = req.via != "isc_local";
        let groups: Vec<String> = if via_idp { req.idp_groups.clone() } else { req.isc_user_levels.clone() };
        let existing = self.user_by_login(&req.login).map(|u| (u.id, u.kind));
        let role_type = existing.map_or("NeprofileRole", |(_, k)| k.role_type());
        let is_org_admin = !via_idp && req.isc_user_levels.iter().any(|l| l == "ORG_ADMIN");
        let effective: Vec<String> = if is_org_admin { vec!["ORG_ADMIN".into()] } else { groups.clone() };
        let matching = self.roles_matching(&effective, role_type);
        let keeps_roles = b.isc_entitlement_mode || (!via_idp && !is_org_admin && b.isc_local_keeps_roles);
        let user_id = match existing {
            Some((id, _)) => {
                let held = self.user_roles.iter().any(|r| r.user_id == id);
                if !keeps_roles && matching.is_empty() || keeps_roles && !held && matching.is_empty() {
                    return Err(format!("login refused: no role matches the groups {effective:?}"));
                }
                id
            }
            None => {
                if matching.is_empty() {
                    return Err(format!("login refused: no role matches the groups {effective:?}"));
                }
                let mut obj = Map::new();
                obj.insert("login".into(), json!(req.login));
                obj.insert("name".into(), json!(req.name.clone().unwrap_or_else(|| req.login.clone())));
                let email = req.email.clone().unwrap_or_else(|| {
                    if looks_like_email(req.login.trim()) {
                        req.login.trim().to_string()
                    } else {
                        format!("{}@idp.invalid", req.login.trim())
                    }
                });
                obj.insert("email".into(), json!(email));
                obj.insert("type".into(), json!("NeprofileUser"));
                let created = self.create_user(&obj).map_err(|e| format!("JIT creation failed: {}", e.body()))?;
                Uuid::parse_str(created["id"].as_str().unwrap_or_default()).map_err(|e| e.to_string())?
            }
        };
        // Only a successful login teaches the IdP directory anything (a refusal changes nothing).
        if via_idp {
            self.idp_directory.insert(login_key(&req.login), req.idp_groups.clone());
        }
        let now = now_iso();
        let user = self.users.get_mut(&user_id).expect("exists");
        user.last_login = Some(now);
        if !keeps_roles {
            if via_idp {
                user.group_strings = Some(effective.join(","));
                user.last_idp_groups = Some(effective.clone());
            }
            // Every source is replaced by what the assertion says.
            let ids: Vec<Uuid> = self.user_roles.iter().filter(|r| r.user_id == user_id).map(|r| r.id).collect();
            for id in ids {
                self.user_roles.remove(&id);
            }
            self.set_source(user_id, RoleSource::Idp, &matching);
        }
        Ok(self.users.get(&user_id).expect("exists").render())
    }

    /// NERM's daily refresh: drops every role the IdP does not back (docs/nerm-api.md, "Roles under SSO").
    /// Returns how many role assignments were removed.
    pub fn daily_refresh(&mut self, b: &Behaviour) -> usize {
        if b.isc_entitlement_mode {
            return 0;
        }
        let mut removed = 0;
        let users: Vec<(Uuid, String, &'static str, Option<Vec<String>>)> =
            self.users.iter().map(|u| (u.id, u.login.clone(), u.kind.role_type(), u.last_idp_groups.clone())).collect();
        for (id, login, role_type, last) in users {
            let backing = self.idp_directory.get(&login_key(&login)).cloned().or(last).unwrap_or_default();
            let backed = self.roles_matching(&backing, role_type);
            removed += self.user_roles.remove_where(|r| r.user_id == id && !backed.contains(&r.role_id)).len();
        }
        removed
    }

    // ----- user roles ----------------------------------------------------------------------

    /// `POST /user_role` (docs/nerm-api.md, "Endpoints used").
    pub fn create_user_role(&mut self, obj: &Map<String, Value>) -> Result<Value, ApiError> {
        let mut errs = FieldErrors::default();
        let user_id = self.required_ref(obj, "user_id", &mut errs, |t, id| t.users.contains(id));
        let role_id = self.required_ref(obj, "role_id", &mut errs, |t, id| t.roles.contains(id));
        if let (Some(u), Some(r)) = (user_id, role_id) {
            let user = self.users.get(&u).expect("checked");
            let role = self.roles.get(&r).expect("checked");
            if role.kind != user.kind.role_type() {
                errs.add("role_id", "is not permitted for this type of user");
            } else if self.user_roles.iter().any(|x| x.user_id == u && x.role_id == r) {
                errs.add("role_id", "has already been taken");
            }
        }
        errs.into_result("user role", "create")?;
        let ur = UserRole {
            id: Uuid::new_v4(),
            uid: random_uid(),
            user_id: user_id.expect("checked"),
            role_id: role_id.expect("checked"),
            sources: BTreeSet::from([RoleSource::Direct]),
        };
        let v = ur.render();
        self.user_roles.insert(ur);
        Ok(v)
    }

    pub fn delete_user_role(&mut self, id: Uuid) -> Result<(), ApiError> {
        self.user_roles.remove(&id).map(|_| ()).ok_or(ApiError::NotFound("UserRole"))
    }

    fn required_ref(
        &self,
        obj: &Map<String, Value>,
        key: &str,
        errs: &mut FieldErrors,
        exists: impl Fn(&Tenant, &Uuid) -> bool,
    ) -> Option<Uuid> {
        if obj.get(key).is_none_or(Value::is_null) {
            errs.add(key, "can't be blank");
            return None;
        }
        let id = parse_uuid_field(obj, key, errs)?;
        if exists(self, &id) {
            Some(id)
        } else {
            errs.add(key, "must exist");
            None
        }
    }

    // ----- user ↔ profile links ------------------------------------------------------------

    /// `POST /user_profile` (docs/nerm-api.md, "Endpoints used"; single owner per profile).
    pub fn create_user_profile(&mut self, obj: &Map<String, Value>, b: &Behaviour) -> Result<Value, ApiError> {
        let mut errs = FieldErrors::default();
        let user_id = self.required_ref(obj, "user_id", &mut errs, |t, id| t.users.contains(id));
        let profile_id = self.required_ref(obj, "profile_id", &mut errs, |t, id| t.profiles.contains(id));
        let attr_id = if obj.get("ne_attribute_id").is_some_and(|v| !v.is_null()) {
            self.required_ref(obj, "ne_attribute_id", &mut errs, |t, id| t.ne_attributes.contains(id))
        } else {
            None
        };
        let rel = Field::read(obj, "relationship_type", &mut errs);
        if rel.non_blank().is_none() {
            errs.add("relationship_type", "can't be blank");
        }
        check_enum(&rel, "relationship_type", &RELATIONSHIPS, &mut errs);
        let rel = rel.non_blank().unwrap_or_default().to_string();
        let mut replace_owner = None;
        if let (Some(u), Some(p)) = (user_id, profile_id) {
            if self.user_profiles.iter().any(|x| {
                x.user_id == u && x.profile_id == p && x.relationship_type == rel && x.ne_attribute_id == attr_id
            }) {
                errs.add("user_id", "has already been taken");
            } else if rel == "owner"
                && let Some(owner) =
                    self.user_profiles.iter().find(|x| x.profile_id == p && x.relationship_type == "owner")
            {
                if b.owner_replaces {
                    replace_owner = Some(owner.id);
                } else {
                    errs.add("relationship_type", "owner has already been taken for this profile");
                }
            }
        }
        errs.into_result("user profile", "create")?;
        if let Some(old) = replace_owner {
            self.user_profiles.remove(&old);
        }
        let up = UserProfile {
            id: Uuid::new_v4(),
            uid: random_uid(),
            user_id: user_id.expect("checked"),
            profile_id: profile_id.expect("checked"),
            ne_attribute_id: attr_id,
            relationship_type: rel,
        };
        let v = up.render();
        self.user_profiles.insert(up);
        Ok(v)
    }

    pub fn delete_user_profile(&mut self, id: Uuid) -> Result<(), ApiError> {
        self.user_profiles.remove(&id).map(|_| ()).ok_or(ApiError::NotFound("UserProfile"))
    }

    // ----- user managers -------------------------------------------------------------------

    /// `POST /user_manager` (docs/nerm-api.md, "Endpoints used").
    pub fn create_user_manager(&mut self, obj: &Map<String, Value>) -> Result<Value, ApiError> {
        let mut errs = FieldErrors::default();
        let user_id = self.required_ref(obj, "user_id", &mut errs, |t, id| t.users.contains(id));
        let manager_id = self.required_ref(obj, "manager_id", &mut errs, |t, id| t.users.contains(id));
        if let (Some(u), Some(m)) = (user_id, manager_id)
            && self.user_managers.iter().any(|x| x.user_id == u && x.manager_id == m)
        {
            errs.add("manager_id", "has already been taken");
        }
        errs.into_result("user manager", "create")?;
        let um = UserManager {
            id: Uuid::new_v4(),
            uid: random_uid(),
            user_id: user_id.expect("checked"),
            manager_id: manager_id.expect("checked"),
        };
        let v = um.render();
        self.user_managers.insert(um);
        Ok(v)
    }

    /// `PATCH /user_managers/{id}`: re-points a link (there is no DELETE).
    pub fn patch_user_manager(&mut self, id: Uuid, obj: &Map<String, Value>) -> Result<Value, ApiError> {
        let Some(current) = self.user_managers.get(&id).cloned() else {
            return Err(ApiError::NotFound("UserManager"));
        };
        let mut errs = FieldErrors::default();
        let mut next = current.clone();
        if obj.contains_key("user_id") {
            next.user_id =
                self.required_ref(obj, "user_id", &mut errs, |t, i| t.users.contains(i)).unwrap_or(next.user_id);
        }
        if obj.contains_key("manager_id") {
            next.manager_id =
                self.required_ref(obj, "manager_id", &mut errs, |t, i| t.users.contains(i)).unwrap_or(next.manager_id);
        }
        if self.user_managers.iter().any(|x| x.id != id && x.user_id == next.user_id && x.manager_id == next.manager_id)
        {
            errs.add("manager_id", "has already been taken");
        }
        errs.into_result("user manager", "update")?;
        let v = next.render();
        *self.user_managers.get_mut(&id).expect("exists") = next;
        Ok(v)
    }

    // ----- profiles ------------------------------------------------------------------------

    /// `POST /profile` (docs/nerm-api.md, "Records and their values").
    pub fn create_profile(&mut self, obj: &Map<String, Value>, b: &Behaviour) -> Result<Value, ApiError> {
        let mut errs = FieldErrors::default();
        let type_id = self.required_ref(obj, "profile_type_id", &mut errs, |t, id| {
            t.profile_types.get(id).is_some_and(|pt| !pt.archived)
        });
        let status = Field::read(obj, "status", &mut errs);
        if status.non_blank().is_none() && !errs_has(&errs, "status") {
            errs.add("status", "can't be blank");
        }
        check_enum(&status, "status", &PROFILE_STATUSES, &mut errs);
        let name = Field::read(obj, "name", &mut errs);
        let proofing = Field::read(obj, "id_proofing_status", &mut errs);
        check_enum(&proofing, "id_proofing_status", &ID_PROOFING, &mut errs);
        let archived = read_bool(obj, "archived", &mut errs);
        let mut attributes = BTreeMap::new();
        if let Some(type_id) = type_id {
            self.apply_attributes(obj, type_id, None, &mut attributes, &mut errs);
            self.check_required_attributes(type_id, &attributes, &mut errs);
            if b.enforce_dup_protection {
                self.check_duplicate(type_id, &attributes, None, &mut errs);
            }
        }
        errs.into_result("profile", "create")?;
        let type_id = type_id.expect("checked");
        let now = now_iso();
        let mut profile = Profile {
            id: Uuid::new_v4(),
            uid: random_uid(),
            name: name.optional().unwrap_or_default(),
            profile_type_id: type_id,
            status: status.non_blank().unwrap_or_default().to_string(),
            id_proofing_status: proofing.optional(),
            archived: archived.unwrap_or(false),
            created_at: now.clone(),
            updated_at: now,
            updated_on: today(),
            attributes,
        };
        self.apply_naming(&mut profile);
        let id = profile.id;
        self.profile_order.insert(id);
        self.profiles.insert(profile);
        self.sync_user_select_links(id);
        Ok(self.render_profile(self.profiles.get(&id).expect("inserted"), false, b))
    }

    /// `PATCH /profiles/{id}`: attributes merge, `""`/null clears, unchanged writes nothing.
    pub fn patch_profile(&mut self, id: Uuid, obj: &Map<String, Value>, b: &Behaviour) -> Result<Value, ApiError> {
        let Some(current) = self.profiles.get(&id).cloned() else {
            return Err(ApiError::NotFound("Profile"));
        };
        let mut errs = FieldErrors::default();
        let mut next = current.clone();
        if obj.contains_key("profile_type_id") {
            next.profile_type_id = self
                .required_ref(obj, "profile_type_id", &mut errs, |t, i| {
                    t.profile_types.get(i).is_some_and(|pt| !pt.archived)
                })
                .unwrap_or(next.profile_type_id);
        }
        let status = Field::read(obj, "status", &mut errs);
        check_enum(&status, "status", &PROFILE_STATUSES, &mut errs);
        if let Some(s) = status.non_blank() {
            next.status = s.to_string();
        } else if status.is_present() {
            errs.add("status", "can't be blank");
        }
        let name = Field::read(obj, "name", &mut errs);
        if name.is_present() {
            next.name = name.optional().unwrap_or_default();
        }
        let proofing = Field::read(obj, "id_proofing_status", &mut errs);
        check_enum(&proofing, "id_proofing_status", &ID_PROOFING, &mut errs);
        if proofing.is_present() {
            next.id_proofing_status = proofing.optional();
        }
        if let Some(a) = read_bool(obj, "archived", &mut errs) {
            next.archived = a;
        }
        let mut attributes = next.attributes.clone();
        self.apply_attributes(obj, next.profile_type_id, Some(id), &mut attributes, &mut errs);
        next.attributes = attributes;
        errs.into_result("profile", "update")?;
        self.apply_naming(&mut next);
        let changed = next.name != current.name
            || next.status != current.status
            || next.profile_type_id != current.profile_type_id
            || next.id_proofing_status != current.id_proofing_status
            || next.archived != current.archived
            || next.attributes != current.attributes;
        if changed {
            next.updated_at = now_iso();
            next.updated_on = today();
            *self.profiles.get_mut(&id).expect("exists") = next;
            self.sync_user_select_links(id);
        }
        Ok(self.render_profile(self.profiles.get(&id).expect("exists"), false, b))
    }

    /// `DELETE /profiles/{id}`; its user_profiles go with it (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub fn delete_profile(&mut self, id: Uuid) -> Result<(), ApiError> {
        self.profiles.remove(&id).ok_or(ApiError::NotFound("Profile"))?;
        self.profile_order.remove(&id);
        self.user_profiles.remove_where(|r| r.profile_id == id);
        Ok(())
    }

    /// Validates and merges `obj.attributes` into `attrs` (canonical values).
    fn apply_attributes(
        &self,
        obj: &Map<String, Value>,
        type_id: Uuid,
        self_id: Option<Uuid>,
        attrs: &mut BTreeMap<String, String>,
        errs: &mut FieldErrors,
    ) {
        let Some(raw) = obj.get("attributes") else {
            return;
        };
        let Some(map) = raw.as_object() else {
            if !raw.is_null() {
                errs.add("attributes", "must be an object keyed by attribute uid");
            }
            return;
        };
        for (uid, value) in map {
            let Some(attr) = self.attribute_by_uid(uid).filter(|a| !a.archived) else {
                errs.add(uid, "is not a known attribute");
                continue;
            };
            let text = match value {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                _ => {
                    errs.add(uid, "must be a string");
                    continue;
                }
            };
            if text.is_empty() {
                attrs.remove(uid);
                continue;
            }
            match self.canonical_attribute_value(attr, &text) {
                Ok(canon) => {
                    if attr.has_validation("unique")
                        && self.profiles.iter().any(|p| {
                            p.profile_type_id == type_id
                                && Some(p.id) != self_id
                                && p.attributes.get(uid) == Some(&canon)
                        })
                    {
                        errs.add(uid, "has already been taken");
                    }
                    attrs.insert(uid.clone(), canon);
                }
                Err(msg) => errs.add(uid, &msg),
            }
        }
    }

    fn canonical_attribute_value(&self, attr: &NeAttribute, text: &str) -> Result<String, String> {
        if attr.has_validation("email_format") && !looks_like_email(text) {
            return Err("is not a valid email".into());
        }
        match attr.kind() {
            AttrKind::Text | AttrKind::Options | AttrKind::Attachment => Ok(text.to_string()),
            AttrKind::Date => {
                let fmt = attr.date_format.as_deref().unwrap_or("mm/dd/yyyy");
                if date_matches(text, fmt) {
                    Ok(text.to_string())
                } else {
                    Err(format!("must be a date in {fmt} format"))
                }
            }
            AttrKind::ProfileRef | AttrKind::UserRef { .. } => {
                let ids: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
                if ids.len() > 1 && !attr.allow_multiple_selections {
                    return Err("does not allow multiple selections".into());
                }
                let mut out = Vec::with_capacity(ids.len());
                for raw in ids {
                    let id = Uuid::parse_str(raw).map_err(|_| format!("must be ids, got {raw:?}"))?;
                    let ok = match attr.kind() {
                        AttrKind::ProfileRef => self
                            .profiles
                            .get(&id)
                            .is_some_and(|p| attr.profile_type_id.is_none_or(|t| t == p.profile_type_id)),
                        _ => self.users.contains(&id),
                    };
                    if !ok {
                        return Err(format!("references {raw} which does not exist"));
                    }
                    out.push(id.to_string());
                }
                Ok(out.join(","))
            }
        }
    }

    fn check_required_attributes(&self, type_id: Uuid, attrs: &BTreeMap<String, String>, errs: &mut FieldErrors) {
        let _ = type_id;
        for a in self.ne_attributes.iter().filter(|a| a.has_validation("required") && !a.archived) {
            if !attrs.contains_key(&a.uid) {
                errs.add(&a.uid, "can't be blank");
            }
        }
    }

    fn check_duplicate(
        &self,
        type_id: Uuid,
        attrs: &BTreeMap<String, String>,
        self_id: Option<Uuid>,
        errs: &mut FieldErrors,
    ) {
        let Some(pt) = self.profile_types.get(&type_id) else {
            return;
        };
        if pt.dup_attribute_ids.is_empty() || pt.bypass_dup_protection {
            return;
        }
        let uids: Vec<&str> =
            pt.dup_attribute_ids.iter().filter_map(|id| self.ne_attributes.get(id)).map(|a| a.uid.as_str()).collect();
        let dup = self.profiles.iter().any(|p| {
            p.profile_type_id == type_id
                && Some(p.id) != self_id
                && uids.iter().all(|u| attrs.get(*u).is_some() && p.attributes.get(*u) == attrs.get(*u))
        });
        if dup {
            errs.add("base", "a profile with the same duplicate-detection attributes already exists");
        }
    }

    /// Names from the type's naming attributes, joined by one space (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    fn apply_naming(&self, p: &mut Profile) {
        let Some(pt) = self.profile_types.get(&p.profile_type_id) else {
            return;
        };
        if pt.naming_attribute_ids.is_empty() {
            return;
        }
        let parts: Vec<String> = pt
            .naming_attribute_ids
            .iter()
            .filter_map(|id| self.ne_attributes.get(id))
            .filter_map(|a| p.attributes.get(&a.uid).map(|v| self.render_attribute(a, v)))
            .filter(|s| !s.is_empty())
            .collect();
        p.name = parts.join(" ");
    }

    /// Owner/contributor select attributes materialise as user_profiles rows (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    fn sync_user_select_links(&mut self, profile_id: Uuid) {
        let Some(p) = self.profiles.get(&profile_id) else {
            return;
        };
        let mut wanted: Vec<(Uuid, Uuid, &'static str)> = Vec::new();
        for (uid, value) in &p.attributes {
            if let Some(a) = self.attribute_by_uid(uid)
                && let AttrKind::UserRef { owner } = a.kind()
            {
                for id in value.split(',').filter_map(|s| Uuid::parse_str(s).ok()) {
                    wanted.push((a.id, id, if owner { "owner" } else { "contributor" }));
                }
            }
        }
        self.user_profiles.remove_where(|r| {
            r.profile_id == profile_id
                && r.ne_attribute_id.is_some_and(|a| !wanted.iter().any(|(wa, wu, _)| *wa == a && *wu == r.user_id))
        });
        for (attr_id, user_id, rel) in wanted {
            let exists = self
                .user_profiles
                .iter()
                .any(|r| r.profile_id == profile_id && r.user_id == user_id && r.ne_attribute_id == Some(attr_id));
            if !exists {
                self.user_profiles.insert(UserProfile {
                    id: Uuid::new_v4(),
                    uid: random_uid(),
                    user_id,
                    profile_id,
                    ne_attribute_id: Some(attr_id),
                    relationship_type: rel.into(),
                });
            }
        }
    }

    fn render_attribute(&self, attr: &NeAttribute, canon: &str) -> String {
        match attr.kind() {
            AttrKind::ProfileRef => canon
                .split(',')
                .filter_map(|s| Uuid::parse_str(s).ok())
                .filter_map(|id| self.profiles.get(&id))
                .map(|p| p.name.clone())
                .collect::<Vec<_>>()
                .join(","),
            AttrKind::UserRef { .. } => canon
                .split(',')
                .filter_map(|s| Uuid::parse_str(s).ok())
                .filter_map(|id| self.users.get(&id))
                .map(|u| format!("{} ({})", u.name, u.email))
                .collect::<Vec<_>>()
                .join(","),
            _ => canon.to_string(),
        }
    }

    /// A profile as GET shows it: select attributes as names (docs/nerm-api.md, "Records and their values").
    pub fn render_profile(&self, p: &Profile, exclude_attributes: bool, b: &Behaviour) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(p.id));
        m.insert("uid".into(), json!(p.uid));
        m.insert("name".into(), json!(p.name));
        m.insert("profile_type_id".into(), json!(p.profile_type_id));
        m.insert("status".into(), json!(p.status));
        if let Some(s) = &p.id_proofing_status {
            m.insert("id_proofing_status".into(), json!(s));
        }
        if b.emit_profile_archived {
            m.insert("archived".into(), json!(p.archived));
        }
        m.insert("created_at".into(), json!(p.created_at));
        m.insert("updated_at".into(), json!(p.updated_at));
        if !exclude_attributes {
            let mut attrs: Map<String, Value> = p
                .attributes
                .iter()
                .map(|(uid, v)| {
                    let shown = self.attribute_by_uid(uid).map_or_else(|| v.clone(), |a| self.render_attribute(a, v));
                    (uid.clone(), Value::String(shown))
                })
                .collect();
            if b.odd_attribute_values {
                self.make_attributes_odd(&mut attrs);
            }
            m.insert("attributes".into(), Value::Object(attrs));
        }
        Value::Object(m)
    }

    /// The `odd_attribute_values` variant: whole numbers as JSON numbers, every attribute
    /// without a value as `null`, and extra attributes of each other JSON type.
    fn make_attributes_odd(&self, attrs: &mut Map<String, Value>) {
        for v in attrs.values_mut() {
            let number = v.as_str().filter(|s| !s.starts_with('0') && s.len() < 16).and_then(|s| s.parse::<u64>().ok());
            if let Some(n) = number {
                *v = json!(n);
            }
        }
        for a in self.ne_attributes.iter() {
            attrs.entry(a.uid.clone()).or_insert(Value::Null);
        }
        attrs.insert("x_badge_count".into(), json!(3));
        attrs.insert("x_remote".into(), json!(false));
        attrs.insert("x_skills".into(), json!(["rust", "sql"]));
        attrs.insert("x_address".into(), json!({ "city": "Oslo" }));
    }

    // ----- bulk and jobs -------------------------------------------------------------------

    /// Applies one bulk body item by item (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    pub fn apply_bulk(&mut self, kind: BulkKind, items: &[Value], b: &Behaviour) -> Vec<ItemResult> {
        items
            .iter()
            .map(|item| {
                let Some(obj) = item.as_object() else {
                    return Err(ApiError::bad_request("each item must be an object"));
                };
                let id_of = |errs_obj: &str| -> Result<Uuid, ApiError> {
                    obj.get("id").and_then(Value::as_str).and_then(|s| Uuid::parse_str(s).ok()).ok_or_else(|| {
                        let mut e = Map::new();
                        e.insert("id".into(), json!("can't be blank"));
                        ApiError::invalid(errs_obj, "update", e)
                    })
                };
                match kind {
                    BulkKind::CreateUsers => self.create_user(obj),
                    BulkKind::PatchUsers => self.patch_user(id_of("user")?, obj),
                    BulkKind::CreateProfiles => self.create_profile(obj, b),
                    BulkKind::PatchProfiles => self.patch_profile(id_of("profile")?, obj, b),
                    BulkKind::DeleteProfiles => {
                        let id = id_of("profile")?;
                        let shown = self.profiles.get(&id).map(|p| self.render_profile(p, true, b));
                        self.delete_profile(id)?;
                        Ok(shown.unwrap_or(Value::Null))
                    }
                    BulkKind::CreateUserRoles => self.create_user_role(obj),
                    BulkKind::CreateUserProfiles => self.create_user_profile(obj, b),
                    BulkKind::CreateUserManagers => self.create_user_manager(obj),
                    BulkKind::PatchUserManagers => self.patch_user_manager(id_of("user manager")?, obj),
                }
            })
            .collect()
    }

    /// Checks every item without keeping any change: for the all-or-nothing bulk mode.
    pub fn dry_run_bulk(&self, kind: BulkKind, items: &[Value], b: &Behaviour) -> Vec<ItemResult> {
        let mut scratch = self.clone_state();
        scratch.apply_bulk(kind, items, b)
    }

    fn clone_state(&self) -> Tenant {
        Tenant {
            users: self.users.clone(),
            roles: self.roles.clone(),
            user_roles: self.user_roles.clone(),
            profile_types: self.profile_types.clone(),
            ne_attributes: self.ne_attributes.clone(),
            profiles: self.profiles.clone(),
            user_profiles: self.user_profiles.clone(),
            user_managers: self.user_managers.clone(),
            jobs: Coll::default(),
            idp_directory: self.idp_directory.clone(),
            login_index: self.login_index.clone(),
            profile_order: self.profile_order.clone(),
            job_index: HashMap::new(),
        }
    }

    /// Registers a queued job and returns its 24-hex job id.
    pub fn queue_job(&mut self) -> String {
        let job_id: String = Uuid::new_v4().simple().to_string()[..24].to_string();
        let job = Job {
            job_id: job_id.clone(),
            uid: Uuid::new_v4(),
            complete: false,
            end_status: String::new(),
            job_data: Vec::new(),
        };
        self.job_index.insert(job_id.clone(), job.uid);
        self.jobs.insert(job);
        job_id
    }

    /// Runs a queued job's items and marks it complete.
    pub fn complete_job(&mut self, job_id: &str, kind: BulkKind, items: &[Value], b: &Behaviour) {
        let results = if b.bulk_all_or_nothing && self.dry_run_bulk(kind, items, b).iter().any(Result::is_err) {
            self.dry_run_bulk(kind, items, b)
                .into_iter()
                .map(|r| r.and_then(|_| Err(ApiError::bad_request("not applied: another item failed"))))
                .collect()
        } else {
            self.apply_bulk(kind, items, b)
        };
        let mut data: Vec<Value> = results
            .into_iter()
            .zip(items)
            .map(|(r, item)| {
                // Each entry names its record: the written record's fields (the item's, when it
                // failed) and the record id under the per-resource key.
                let (fields, errors) = match r {
                    Ok(v) => (v, json!([])),
                    Err(e) => (item.clone(), json!(e.messages())),
                };
                let mut entry = Map::new();
                if let Value::Object(m) = &fields {
                    for (k, v) in m {
                        if k != "id" && k != "uid" {
                            entry.insert(k.clone(), v.clone());
                        }
                    }
                    if let Some(id) = m.get("id").filter(|v| v.is_string()) {
                        entry.insert(kind.id_key().into(), id.clone());
                    }
                }
                entry.insert("errors".into(), errors);
                if b.job_data_spec_only {
                    entry.retain(|k, _| matches!(k.as_str(), "user_id" | "manager_id" | "errors"));
                }
                Value::Object(entry)
            })
            .collect();
        if b.job_data_spec_only {
            data.reverse();
        }
        if let Some(uid) = self.job_index.get(job_id).copied()
            && let Some(job) = self.jobs.get_mut(&uid)
        {
            job.complete = true;
            job.end_status = b.job_end_status.clone();
            job.job_data = data;
        }
    }

    /// Rebuilds the lookup indexes after records were inserted directly (seeding).
    pub fn reindex(&mut self) {
        self.login_index = self.users.iter().map(|u| (login_key(&u.login), u.id)).collect();
        self.profile_order = self.profiles.iter().map(|p| p.id).collect();
        self.job_index = self.jobs.iter().map(|j| (j.job_id.clone(), j.uid)).collect();
    }
}

struct OptionalUserFields {
    title: Option<String>,
    locale: Option<String>,
    group_strings: Option<String>,
    sailpoint_identity_id: Option<String>,
    password: Option<String>,
    present: Vec<&'static str>,
}

/// The body of `POST /_sim/sso/login`.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub login: String,
    #[serde(default)]
    pub idp_groups: Vec<String>,
    /// `idp` (default) or `isc_local`.
    #[serde(default = "default_via")]
    pub via: String,
    #[serde(default)]
    pub isc_user_levels: Vec<String>,
    pub name: Option<String>,
    pub email: Option<String>,
}

fn default_via() -> String {
    "idp".into()
}

/// Whether a type error was already recorded for this key when the field was read.
fn errs_has(errs: &FieldErrors, key: &str) -> bool {
    errs.has(key)
}

fn read_bool(obj: &Map<String, Value>, key: &str, errs: &mut FieldErrors) -> Option<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => {
            errs.add(key, "is invalid");
            None
        }
    }
}

/// Rails-ish e-mail check: something@something.tld, no spaces.
pub fn looks_like_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
        && !domain.contains('@')
}

/// Checks `text` against one of NERM's date formats (docs/nerm-api.md, "Records and their values").
pub fn date_matches(text: &str, fmt: &str) -> bool {
    let sep = if fmt.contains('/') { '/' } else { '-' };
    let parts: Vec<&str> = text.split(sep).collect();
    let order: Vec<&str> = fmt.split(sep).collect();
    if parts.len() != 3 || order.len() != 3 {
        return false;
    }
    let (mut y, mut m, mut d) = (None, None, None);
    for (p, o) in parts.iter().zip(&order) {
        if p.len() != o.len() || !p.bytes().all(|c| c.is_ascii_digit()) {
            return false;
        }
        let n: u32 = p.parse().unwrap_or(0);
        match *o {
            "yyyy" => y = Some(n as i32),
            "mm" => m = Some(n as u8),
            _ => d = Some(n as u8),
        }
    }
    match (y, m, d) {
        (Some(y), Some(m), Some(d)) => {
            time::Month::try_from(m).ok().and_then(|m| time::Date::from_calendar_date(y, m, d).ok()).is_some()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_checked_against_the_attribute_format() {
        assert!(date_matches("01/15/2020", "mm/dd/yyyy"));
        assert!(!date_matches("15/01/2020", "mm/dd/yyyy"));
        assert!(date_matches("2020-02-29", "yyyy-mm-dd"));
        assert!(!date_matches("2021-02-29", "yyyy-mm-dd"));
        assert!(!date_matches("2021-2-1", "yyyy-mm-dd"));
    }

    #[test]
    fn email_syntax_needs_a_dotted_domain() {
        assert!(looks_like_email("a.b@example.com"));
        assert!(!looks_like_email("a@b"));
        assert!(!looks_like_email("a b@example.com"));
        assert!(!looks_like_email("@example.com"));
    }
}
