//! Stage 2, plan: diff each employee against the snapshot and list the NERM writes that make
//! NERM match the file — nothing for an unchanged employee.
//!
//! Operations name what does not exist yet by login or key, so the same plan can be applied in
//! one process (the CLI) or shipped over SQS and applied by workers (the Lambdas).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::read::{Employee, Rejection};
use super::snapshot::Snapshot;
use crate::config::{CatalogRole, ResolvedConfig, RoleStrategy, SelfRelationship, SyncMode};
use crate::input::validate::{Field, check_login, check_not_own_manager};
use crate::input::{KeyIndex, LoginIndex, LoginIndexFull, RowError};
use crate::login::LoginKey;
use crate::nerm::model::{NewProfile, NewUser, ProfilePatch, UserPatch};

/// One NERM write for one employee. The employee's own user and profile are implied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateUser {
        user: NewUser,
    },
    PatchUser {
        user_id: String,
        patch: UserPatch,
    },
    AssignRole {
        role_id: String,
        role_name: String,
    },
    RemoveRole {
        user_role_id: String,
        role_name: String,
    },
    /// Created without the manager attribute when the manager's profile does not exist yet
    /// (then a [`Op::SetProfileManager`] follows).
    CreateProfile {
        profile: NewProfile,
    },
    PatchProfile {
        profile_id: String,
        patch: ProfilePatch,
    },
    /// The employee's user becomes owner/contributor of the employee's profile.
    LinkSelf {
        relationship: String,
    },
    /// A configured user becomes contributor of the employee's profile.
    LinkContributor {
        contributor_user_id: String,
        contributor_login: String,
    },
    /// The profile's manager attribute points at the manager's profile: by id once known (the
    /// Lambdas' links wave carries it), else found by the manager's key when applied.
    SetProfileManager {
        manager_login: String,
        manager_key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        manager_profile_id: Option<String>,
    },
    /// The employee's user_manager link points at the manager's user (created or re-pointed);
    /// the manager's user id when NERM already had it at plan time.
    SetUserManager {
        manager_login: String,
        #[serde(default)]
        manager_user_id: Option<String>,
        existing_link_id: Option<String>,
    },
}

impl Op {
    /// A short name for counts in dry-run summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::CreateUser { .. } => "create_user",
            Op::PatchUser { .. } => "update_user",
            Op::AssignRole { .. } => "assign_role",
            Op::RemoveRole { .. } => "remove_role",
            Op::CreateProfile { .. } => "create_profile",
            Op::PatchProfile { .. } => "update_profile",
            Op::LinkSelf { .. } => "link_self",
            Op::LinkContributor { .. } => "link_contributor",
            Op::SetProfileManager { .. } => "set_profile_manager",
            Op::SetUserManager { .. } => "set_user_manager",
        }
    }

    /// A link to a manager whose record this run creates: its id exists only once the
    /// manager's own plan is applied (the Lambdas apply these links in a second wave).
    pub fn links_new_manager(&self) -> bool {
        matches!(
            self,
            Op::SetProfileManager { manager_profile_id: None, .. } | Op::SetUserManager { manager_user_id: None, .. }
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanKind {
    Create,
    Update,
    Disable,
}

/// Everything one employee needs, with the ids the snapshot already knows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmployeePlan {
    pub line: u64,
    pub login: String,
    pub key: String,
    pub user_id: Option<String>,
    pub profile_id: Option<String>,
    pub kind: PlanKind,
    pub ops: Vec<Op>,
    /// Human-readable list of what changes, for the report.
    pub changes: Vec<String>,
    /// What the row asked for but does not get (a bad manager reference), for the report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

impl EmployeePlan {
    /// Splits off the links to managers this run creates (see [`Op::links_new_manager`]).
    pub fn split_new_manager_links(mut self) -> (EmployeePlan, Vec<Op>) {
        let (later, now) = self.ops.into_iter().partition(Op::links_new_manager);
        self.ops = now;
        (self, later)
    }
}

/// The planner's verdict on one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowPlan {
    /// Nothing to write; `warnings` as in [`EmployeePlan::warnings`].
    Unchanged {
        line: u64,
        login: String,
        key: String,
        warnings: Vec<String>,
    },
    Rejected(Rejection),
    Change(EmployeePlan),
}

/// Why a full sync stops before any write.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ThresholdError {
    #[error(
        "full sync would disable {leavers} of {managed} managed employees ({percent:.1}%), above the \
         {limit:.1}% threshold; nothing was changed. Check the file, or set sync.allow_mass_disable = true"
    )]
    TooMany { leavers: usize, managed: usize, percent: f64, limit: f64 },
    #[error(
        "full sync with no valid row would disable all {managed} managed employees; nothing was changed \
         (an empty file never disables anyone)"
    )]
    EmptyFile { managed: usize },
}

/// What the first pass learnt about the file, needed before planning any row. This is what
/// grows with the file, so it lives in two arena indexes (a few tens of bytes per row).
#[derive(Debug, Default)]
pub struct FileIndex {
    /// Every login in the file, with the line of its first row and whether it was accepted;
    /// accepted ones with their employee key and the login as written (NERM's login filter is
    /// exact).
    pub logins: LoginIndex,
    /// Every non-empty employee key, with the line of its first accepted row: later rows with
    /// the key are duplicates, and a key in the file (even on a rejected row) is no leaver.
    pub keys: KeyIndex,
    /// Logins named as a manager on accepted rows: a run applied in chunks keeps their ids.
    pub managers: LoginIndex,
    /// Accepted logins (lower-cased) whose chain of managers in the file comes back to them
    /// (usually none): their manager links are left out.
    pub in_manager_cycles: std::collections::HashSet<String>,
    pub valid_rows: u64,
}

impl FileIndex {
    /// Records an accepted row's key (the first row of a key wins). Its login goes through
    /// [`LoginIndex::accept`] of the index that saw it, which during the first pass is still the
    /// reader's.
    pub fn add_accepted_key(&mut self, key: &str, line: u64) -> Result<(), LoginIndexFull> {
        self.valid_rows += 1;
        self.keys.insert(key, line, true)?;
        Ok(())
    }
    /// Records the key of a rejected row (it is still no leaver).
    pub fn add_rejected_key(&mut self, key: &str, line: u64) -> Result<(), LoginIndexFull> {
        if !key.is_empty() {
            self.keys.insert(key, line, false)?;
        }
        Ok(())
    }
    /// The employee key of an accepted login.
    pub fn key_of(&self, login: &str) -> Option<&str> {
        self.logins.key_of(login)
    }
    /// The login as written on its own row.
    pub fn login_as_written(&self, login: &str) -> Option<String> {
        self.logins.as_written(login).map(String::from)
    }
    /// Whether following the managers from `login`'s row comes back to it.
    pub fn in_manager_cycle(&self, login: &str) -> bool {
        !self.in_manager_cycles.is_empty()
            && crate::login::with_folded(login, |key| self.in_manager_cycles.contains(key))
    }
    pub fn has_key(&self, key: &str) -> bool {
        self.keys.contains(key)
    }
    /// Heap memory held by the index, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.logins.heap_bytes() + self.keys.heap_bytes()
    }
}

/// Diffs employees against a snapshot, one row at a time.
pub struct Planner<'a> {
    cfg: &'a ResolvedConfig,
    snap: &'a Snapshot,
    file: &'a FileIndex,
    /// Self-link relationship, if any.
    self_rel: Option<&'static str>,
    /// Extra contributors resolved to user ids.
    extra: Vec<(String, String)>,
    warnings: Vec<String>,
    /// Profile id per user id, via the self link (to find managers' profiles outside the file).
    profile_of_user: HashMap<String, String>,
    /// The profile attribute filled from the login column, if the config has one.
    login_attr: Option<String>,
}

impl<'a> Planner<'a> {
    pub fn new(cfg: &'a ResolvedConfig, snap: &'a Snapshot, file: &'a FileIndex) -> Self {
        let m = cfg.config();
        let self_rel = match m.contributors.self_relationship {
            SelfRelationship::Owner => Some("owner"),
            SelfRelationship::Contributor => Some("contributor"),
            SelfRelationship::None => None,
        };
        let mut warnings = Vec::new();
        let mut extra = Vec::new();
        for login in &m.contributors.extra {
            match snap.user_by_login(login) {
                Some(u) => extra.push((u.id.clone(), u.login.clone())),
                None => warnings
                    .push(format!("contributors.extra: NERM has no user {login:?}; it is not added as a contributor")),
            }
        }
        let mut profile_of_user = HashMap::new();
        if let Some(rel) = self_rel {
            for l in snap.user_profiles.iter().filter(|l| l.relationship_type == rel) {
                if snap.profile_by_id(&l.profile_id).is_some() {
                    profile_of_user.entry(l.user_id.clone()).or_insert_with(|| l.profile_id.clone());
                }
            }
        }
        let login_attr = login_attribute(cfg);
        Planner { cfg, snap, file, self_rel, extra, warnings, profile_of_user, login_attr }
    }

    /// Warnings found while planning (for the report summary).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Plans one valid row (rejections pass through unchanged). The employee is borrowed, so
    /// the reader can refill it for the next row: a plan copies only what it keeps.
    pub fn plan_row(&mut self, item: Result<&Employee, Rejection>) -> RowPlan {
        let e = match item {
            Ok(e) => e,
            Err(r) => return RowPlan::Rejected(r),
        };
        let found = self.check_first_of_key(e).and_then(|()| self.identity(e.line, &e.login, &e.key));
        let id = match found {
            Ok(id) => id,
            Err(reason) => {
                return RowPlan::Rejected(Rejection {
                    line: e.line,
                    login: e.login.clone(),
                    key: e.key.clone(),
                    reasons: vec![reason],
                });
            }
        };
        let mut draft = Draft::default();
        let manager = self.manager_reference(e, &mut draft.warnings);
        self.plan_user(e, &id, &mut draft);
        self.plan_profile(e, id.profile, manager.as_ref(), &mut draft);
        self.plan_links(&id, manager.as_ref(), &mut draft);
        finish_row(e, &id, draft)
    }

    /// Only the first accepted row of an employee key is used.
    fn check_first_of_key(&self, e: &Employee) -> Result<(), String> {
        match self.file.keys.first_accepted(&e.key) {
            Some(first) if first != e.line.min(crate::input::LINE_MAX) => Err(format!(
                "line {}, column {:?}: employee key {:?} already appeared on line {first}; only the first row is used",
                e.line,
                self.cfg.config().columns.key,
                e.key
            )),
            _ => Ok(()),
        }
    }

    /// Who the row with this login and key is in NERM. The key is the identity: a profile with
    /// the key whose own user (see [`own_user`](Self::own_user)) has another login is the same
    /// employee renamed, so that user is kept and its login changed. A rename is refused
    /// (`Err`, naming both logins) when the new login belongs to another NERM user, or when
    /// another row of the file still uses the old one.
    fn identity(&self, line: u64, login: &str, key: &str) -> Result<Identity<'a>, String> {
        let profile = self.snap.profile_by_key(key);
        let by_login = self.snap.user_by_login(login);
        let renamed = profile.and_then(|p| self.own_user(p)).filter(|owner| by_login.is_none_or(|u| u.id != owner.id));
        let Some(owner) = renamed else {
            return Ok(Identity { user: by_login, profile, renamed_from: None });
        };
        let column = &self.cfg.config().columns.login;
        if let Some(other) = by_login {
            return Err(format!(
                "line {line}, column {column:?}: employee key {key:?} belongs to NERM user {:?}, which cannot be \
                 renamed to {login:?}: that login already belongs to another NERM user ({:?}); nothing was written \
                 for this row",
                owner.login, other.login
            ));
        }
        if let Some(seen) = self.file.logins.get(&owner.login).filter(|s| s.line != line.min(crate::input::LINE_MAX)) {
            return Err(format!(
                "line {line}, column {column:?}: employee key {key:?} belongs to NERM user {:?}, which cannot be \
                 renamed to {login:?}: line {} of this file still uses the login {:?}; nothing was written for \
                 this row",
                owner.login, seen.line, owner.login
            ));
        }
        Ok(Identity { user: Some(owner), profile, renamed_from: Some(owner.login.as_str()) })
    }

    /// The user a profile belongs to: the one user linked to it with the self-link
    /// relationship, apart from the configured extra contributors, and — when the config
    /// writes the login into a profile attribute — whose login the profile holds. `None`
    /// without a self link, or when several users qualify (which one is the employee cannot be
    /// told), or when the profile names another login (its owner is someone else, e.g. the
    /// administrator who created it by hand: never renamed).
    fn own_user(&self, p: &crate::nerm::model::Profile) -> Option<&'a crate::nerm::model::User> {
        let rel = self.self_rel?;
        let snap: &'a Snapshot = self.snap;
        let mut linked = snap
            .links_of(&p.id)
            .filter(|l| l.relationship_type == rel && !self.extra.iter().any(|(id, _)| *id == l.user_id));
        let only = linked.next()?;
        if linked.next().is_some() {
            return None;
        }
        let user = snap.user_by_id(&only.user_id)?;
        let recorded = self.login_attr.as_ref().and_then(|a| p.attributes.get(a));
        match recorded {
            Some(login)
                if !login.trim().eq_ignore_ascii_case(user.login.trim())
                    && LoginKey::of(login) != LoginKey::of(&user.login) =>
            {
                None
            }
            _ => Some(user),
        }
    }

    /// Judges the row's manager reference. A bad one (malformed, the employee's own login, part
    /// of a manager cycle, on a rejected row, unknown) costs only the manager link: `None`, and
    /// a warning naming line, column and reason. The manager links NERM holds stay as they are.
    fn manager_reference<'e>(&self, e: &'e Employee, warnings: &mut Vec<String>) -> Option<Manager<'e, 'a>> {
        let value = e.manager_login.as_deref()?;
        let m = self.cfg.config();
        let field = Field::new(m.columns.manager.as_deref().unwrap_or_default(), value);
        let judged = check_login(e.line, field)
            .and_then(|()| check_not_own_manager(e.line, Field::new(&m.columns.login, &e.login), field))
            .and_then(|()| self.manager_user(e, field));
        match judged {
            Ok(user) => Some(Manager { login: value, user }),
            Err(err) => {
                warnings.push(format!("{err}; the employee is imported without this manager link"));
                None
            }
        }
    }

    /// The NERM user of a manager the row may link to (`None`: created in this run), or why it
    /// may not. A manager whose row is in the file is found like that row's own employee (by
    /// key first, so a renamed manager is the same user).
    fn manager_user(&self, e: &Employee, field: Field<'_>) -> Result<Option<&'a crate::nerm::model::User>, RowError> {
        let manager = field.value;
        let warn = |reason: String| RowError::new(e.line, Some(field.column), reason);
        if self.file.in_manager_cycle(&e.login) {
            return Err(warn(format!(
                "manager {manager:?} leads back to this employee: the managers named in the file form a cycle"
            )));
        }
        let in_nerm = || self.snap.user_by_login(manager).map(Some);
        let rejected = |line: u64| warn(format!("manager {manager:?} is on line {line}, which was rejected"));
        match self.file.logins.get(manager) {
            None => {
                in_nerm().ok_or_else(|| warn(format!("manager {manager:?} is neither in the file nor a NERM user")))
            }
            Some(seen) if !seen.accepted => in_nerm().ok_or_else(|| rejected(seen.line)),
            Some(seen) => {
                let key = self.file.key_of(manager).unwrap_or_default();
                if self.file.keys.first_accepted(key).is_some_and(|first| first != seen.line) {
                    return in_nerm().ok_or_else(|| rejected(seen.line));
                }
                // A refused rename: the login in NERM is someone else's, so never link to it.
                self.identity(seen.line, manager, key).map(|id| id.user).map_err(|_| rejected(seen.line))
            }
        }
    }

    /// The user and, under `user_role`, its role assignments.
    fn plan_user(&self, e: &Employee, id: &Identity<'a>, d: &mut Draft) {
        let m = self.cfg.config();
        let roles = self.wanted_roles(e);
        let groups = match m.roles.strategy {
            RoleStrategy::GroupStrings => {
                Some(self.wanted_groups(&roles, id.user.and_then(|u| u.group_strings.as_deref())).join(","))
            }
            RoleStrategy::UserRole => None,
        };
        match id.user {
            None => {
                d.ops.push(Op::CreateUser {
                    user: NewUser {
                        name: e.name.clone(),
                        email: e.email.clone(),
                        kind: m.user.user_type.as_str().to_string(),
                        login: e.login.clone(),
                        status: Some(e.user_status.clone()),
                        title: e.title.clone(),
                        locale: e.locale.clone(),
                        group_strings: groups.filter(|g| !g.is_empty()),
                        sailpoint_identity_id: e.sailpoint_identity_id.clone(),
                    },
                });
                d.changes.push("user created".into());
            }
            Some(u) => self.patch_user(e, u, id.renamed_from, groups.as_deref(), d),
        }
        if m.roles.strategy == RoleStrategy::UserRole {
            self.plan_roles(&roles, id.user.map(|u| u.id.as_str()), d);
        }
    }

    /// Patches the fields of an existing user that differ from the row (its login too, for a
    /// renamed employee).
    fn patch_user(
        &self,
        e: &Employee,
        u: &crate::nerm::model::User,
        renamed_from: Option<&str>,
        groups: Option<&str>,
        d: &mut Draft,
    ) {
        let mut patch = UserPatch::default();
        let changes = &mut d.changes;
        if let Some(old) = renamed_from {
            patch.login = Some(e.login.clone());
            changes.push(format!("login {old} → {}", e.login));
        }
        diff_field(&mut patch.name, changes, "name", Some(&u.name), Some(&e.name));
        diff_field(&mut patch.email, changes, "email", Some(&u.email), Some(&e.email));
        diff_field(&mut patch.status, changes, "status", u.status.as_deref(), Some(&e.user_status));
        diff_field(&mut patch.title, changes, "title", u.title.as_deref(), e.title.as_deref());
        diff_field(&mut patch.locale, changes, "locale", u.locale.as_deref(), e.locale.as_deref());
        if e.sailpoint_identity_id.is_some() {
            let (have, want) = (u.sailpoint_identity_id.as_deref(), e.sailpoint_identity_id.as_deref());
            diff_field(&mut patch.sailpoint_identity_id, changes, "sailpoint_identity_id", have, want);
        }
        if let Some(g) = groups
            && !same_groups(u.group_strings.as_deref().unwrap_or(""), &[g])
        {
            diff_field(&mut patch.group_strings, changes, "group_strings", u.group_strings.as_deref(), Some(g));
        }
        if !patch.is_empty() {
            d.ops.push(Op::PatchUser { user_id: u.id.clone(), patch });
        }
    }

    /// `user_role` strategy: assigns the wanted roles the user lacks and, if roles are managed,
    /// removes the others.
    fn plan_roles(&self, roles: &[&'a CatalogRole], user_id: Option<&str>, d: &mut Draft) {
        let held: Vec<(&str, &str)> = user_id
            .map(|id| self.snap.roles_of(id).map(|r| (r.id.as_str(), r.role_id.as_str())).collect())
            .unwrap_or_default();
        for r in roles {
            if !held.iter().any(|(_, held)| *held == r.id) {
                d.ops.push(Op::AssignRole { role_id: r.id.clone(), role_name: r.name.clone() });
                d.changes.push(format!("role {} assigned", r.name));
            }
        }
        if self.cfg.config().roles.managed {
            for (ur_id, role_id) in held {
                if !roles.iter().any(|r| r.id == role_id) {
                    let name = self.cfg.roles().iter().find(|r| r.id == role_id).map_or(role_id, |r| r.name.as_str());
                    d.ops.push(Op::RemoveRole { user_role_id: ur_id.to_string(), role_name: name.to_string() });
                    d.changes.push(format!("role {name} removed"));
                }
            }
        }
    }

    /// The employee's profile: created with its attributes (and the manager, when NERM has the
    /// manager's profile already), or patched where it differs.
    fn plan_profile(
        &self,
        e: &Employee,
        profile: Option<&'a crate::nerm::model::Profile>,
        manager: Option<&Manager<'_, 'a>>,
        d: &mut Draft,
    ) {
        let target = manager.and_then(|m| Some((m.login, self.manager_profile(m.login)?)));
        let Some(p) = profile else {
            self.create_profile(e, manager.map(|m| m.login), target, d);
            return;
        };
        let mut patch = ProfilePatch::default();
        if p.status != e.profile_status {
            patch.status = Some(e.profile_status.clone());
            d.changes.push(format!("profile.status: {:?} -> {:?}", p.status, e.profile_status));
        }
        let attrs = &mut patch.attributes;
        for a in self.cfg.attributes() {
            // A handful of attributes: a linear search beats building a map per row.
            let want = e.attributes.iter().find(|(k, _)| *k == a.uid).map_or("", |(_, v)| v.as_str());
            let have = p.attributes.get(&a.uid).map(String::as_str).unwrap_or("");
            if want != have {
                attrs.insert(a.uid.clone(), want.to_string());
                d.changes.push(format!("profile.{}: {have:?} -> {want:?}", a.uid));
            }
        }
        if let (Some(attr), Some((ml, target))) = (self.cfg.manager_attribute().map(|a| a.uid.as_str()), target) {
            let have = p.attributes.get(attr).map(String::as_str).unwrap_or("");
            match target {
                ManagerProfile::Existing { id, name } if have != name => {
                    attrs.insert(attr.to_string(), id.to_string());
                    d.changes.push(format!("profile.{attr}: {have:?} -> {name:?}"));
                }
                ManagerProfile::InFile { key } => {
                    d.ops.push(Op::SetProfileManager {
                        manager_login: self.canonical_login(ml),
                        manager_key: key.to_string(),
                        manager_profile_id: None,
                    });
                    d.changes.push(format!("profile.{attr} -> manager {ml:?}"));
                }
                ManagerProfile::Existing { .. } => {}
            }
        }
        if !patch.is_empty() {
            let at = d.ops.iter().position(|o| matches!(o, Op::SetProfileManager { .. })).unwrap_or(d.ops.len());
            d.ops.insert(at, Op::PatchProfile { profile_id: p.id.clone(), patch });
        }
    }

    /// A new profile; a manager whose profile this run creates is linked after it.
    fn create_profile(
        &self,
        e: &Employee,
        manager: Option<&str>,
        target: Option<(&str, ManagerProfile<'a>)>,
        d: &mut Draft,
    ) {
        let mut attributes: BTreeMap<String, String> = e.attributes.iter().cloned().collect();
        let mut deferred_manager = None;
        if let (Some(attr), Some(ml)) = (self.cfg.manager_attribute().map(|a| a.uid.as_str()), manager) {
            match target {
                Some((_, ManagerProfile::Existing { id, .. })) => {
                    attributes.insert(attr.to_string(), id.to_string());
                }
                Some((_, ManagerProfile::InFile { key })) => {
                    deferred_manager = Some((self.canonical_login(ml), key.to_string()))
                }
                None => d
                    .changes
                    .push(format!("manager {ml:?} has no {} profile; profile manager not set", self.type_name())),
            }
        }
        d.ops.push(Op::CreateProfile {
            profile: NewProfile {
                profile_type_id: self.cfg.profile_type().id.clone(),
                status: e.profile_status.clone(),
                name: e.profile_name.clone(),
                attributes,
            },
        });
        d.changes.push("profile created".into());
        if let Some((manager_login, manager_key)) = deferred_manager {
            d.ops.push(Op::SetProfileManager { manager_login, manager_key, manager_profile_id: None });
        }
    }

    /// The self link, the configured contributors and the user_manager link.
    fn plan_links(&self, id: &Identity<'a>, manager: Option<&Manager<'_, 'a>>, d: &mut Draft) {
        let user_id = id.user.map(|u| u.id.as_str());
        let links = || {
            id.profile
                .into_iter()
                .flat_map(|p| self.snap.links_of(&p.id))
                .map(|l| (l.user_id.as_str(), l.relationship_type.as_str()))
        };
        if let Some(rel) = self.self_rel {
            let linked = user_id.is_some_and(|uid| links().any(|(u, r)| u == uid && r == rel));
            let other_owner = rel == "owner" && links().any(|(u, r)| r == "owner" && Some(u) != user_id);
            if other_owner {
                d.changes.push("profile already has another owner; self link not changed".into());
            } else if !linked {
                d.ops.push(Op::LinkSelf { relationship: rel.to_string() });
                d.changes.push(format!("user linked as {rel} of the profile"));
            }
        }
        for (cid, clogin) in &self.extra {
            if !links().any(|(u, r)| u == cid && r == "contributor") {
                d.ops.push(Op::LinkContributor { contributor_user_id: cid.clone(), contributor_login: clogin.clone() });
                d.changes.push(format!("{clogin} linked as contributor"));
            }
        }
        if self.cfg.config().managers.user_manager
            && let Some(m) = manager
        {
            let manager_id = m.user.map(|u| u.id.as_str());
            let existing = || user_id.into_iter().flat_map(|uid| self.snap.managers_of(uid));
            let already = manager_id.is_some_and(|mid| existing().any(|l| l.manager_id == mid));
            if !already {
                d.ops.push(Op::SetUserManager {
                    manager_login: self.canonical_login(m.login),
                    manager_user_id: manager_id.map(String::from),
                    existing_link_id: existing().next().map(|l| l.id.clone()),
                });
                d.changes.push(format!("user manager -> {}", m.login));
            }
        }
    }

    fn type_name(&self) -> &str {
        &self.cfg.profile_type().name
    }

    /// Default roles plus the row's, without repeats (by id).
    fn wanted_roles(&self, e: &Employee) -> Vec<&'a CatalogRole> {
        let mut out: Vec<&CatalogRole> = Vec::new();
        let row_roles = e.roles.iter().filter_map(|n| self.cfg.role(n));
        for r in self.cfg.default_roles().chain(row_roles) {
            if !out.iter().any(|o| o.id == r.id) {
                out.push(r);
            }
        }
        out
    }

    /// The user's `group_strings` for the wanted roles (docs/nerm-api.md, "Roles under SSO"), to be joined with
    /// `,`: each role's first directory group; groups the file does not mention are kept
    /// unless roles are managed.
    fn wanted_groups(&self, roles: &[&'a CatalogRole], current: Option<&'a str>) -> Vec<&'a str> {
        let mut groups: Vec<&str> = Vec::new();
        if !self.cfg.config().roles.managed {
            groups.extend(split_groups(current.unwrap_or("")));
        }
        for r in roles {
            if !r.groups.iter().any(|g| groups.contains(&g.as_str()))
                && let Some(g) = r.groups.first()
            {
                groups.push(g);
            }
        }
        groups
    }

    /// A login as written on its own row of the file (NERM's `login` filter is exact).
    fn canonical_login(&self, login: &str) -> String {
        self.file.login_as_written(login).unwrap_or_else(|| login.to_string())
    }

    /// Where the manager's profile is: already in NERM (id and display name), or to be created
    /// in this run from the file.
    fn manager_profile(&self, manager_login: &str) -> Option<ManagerProfile<'a>> {
        let lower = LoginKey::of(manager_login);
        if let Some(key) = self.file.key_of(lower.as_str()) {
            return Some(match self.snap.profile_by_key(key) {
                Some(p) => ManagerProfile::Existing { id: &p.id, name: &p.name },
                None => ManagerProfile::InFile { key },
            });
        }
        let user = self.snap.user_by_login(manager_login)?;
        let pid = self.profile_of_user.get(&user.id)?;
        let p = self.snap.profile_by_id(pid)?;
        Some(ManagerProfile::Existing { id: &p.id, name: &p.name })
    }

    /// Full sync: every managed employee whose key is not in the file is disabled (never
    /// deleted), unless that would cross the threshold.
    pub fn leavers(&self) -> Result<Vec<EmployeePlan>, ThresholdError> {
        let m = self.cfg.config();
        if m.sync.mode != SyncMode::Full {
            return Ok(Vec::new());
        }
        let user_status = m.sync.leaver_user_status.as_str();
        let profile_status = m.sync.leaver_profile_status.as_str();
        let login_attr = self.login_attr.clone();
        let mut plans = Vec::new();
        let mut managed = 0usize;
        let mut keyed: Vec<(&str, &crate::nerm::model::Profile)> = self.snap.keyed_profiles().collect();
        keyed.sort_by(|a, b| a.0.cmp(b.0));
        for (key, p) in keyed {
            managed += 1;
            if self.file.has_key(key) {
                continue;
            }
            let user = self.leaver_user(p, login_attr.as_deref());
            let mut ops = Vec::new();
            let mut changes = Vec::new();
            if let Some(u) = user
                && u.status.as_deref() != Some(user_status)
            {
                let patch = UserPatch { status: Some(user_status.to_string()), ..UserPatch::default() };
                changes.push(format!("user.status: {:?} -> {user_status:?}", u.status.as_deref().unwrap_or("")));
                ops.push(Op::PatchUser { user_id: u.id.clone(), patch });
            }
            if p.status != profile_status {
                let patch = ProfilePatch { status: Some(profile_status.to_string()), ..ProfilePatch::default() };
                changes.push(format!("profile.status: {:?} -> {profile_status:?}", p.status));
                ops.push(Op::PatchProfile { profile_id: p.id.clone(), patch });
            }
            if ops.is_empty() {
                continue;
            }
            plans.push(EmployeePlan {
                line: 0,
                login: user.map(|u| u.login.clone()).unwrap_or_default(),
                key: key.to_string(),
                user_id: user.map(|u| u.id.clone()),
                profile_id: Some(p.id.clone()),
                kind: PlanKind::Disable,
                ops,
                changes,
                warnings: Vec::new(),
            });
        }
        if plans.is_empty() {
            return Ok(plans);
        }
        if self.file.valid_rows == 0 {
            return Err(ThresholdError::EmptyFile { managed });
        }
        let percent = plans.len() as f64 * 100.0 / managed.max(1) as f64;
        if percent > m.sync.max_disable_percent && !m.sync.allow_mass_disable {
            return Err(ThresholdError::TooMany {
                leavers: plans.len(),
                managed,
                percent,
                limit: m.sync.max_disable_percent,
            });
        }
        Ok(plans)
    }

    /// A leaver profile's user: through the self link, else through the login attribute.
    fn leaver_user(
        &self,
        p: &crate::nerm::model::Profile,
        login_attr: Option<&str>,
    ) -> Option<&crate::nerm::model::User> {
        if let Some(rel) = self.self_rel
            && let Some(l) = self.snap.links_of(&p.id).find(|l| l.relationship_type == rel)
            && let Some(u) = self.snap.user_by_id(&l.user_id)
        {
            return Some(u);
        }
        login_attr.and_then(|a| p.attributes.get(a)).and_then(|login| self.snap.user_by_login(login))
    }
}

/// The attribute filled from the login column, if the config has one.
fn login_attribute(cfg: &ResolvedConfig) -> Option<String> {
    let login_col = crate::config::normalize_column(&cfg.config().columns.login);
    cfg.attributes().iter().find(|a| a.template.single_column() == Some(login_col.as_str())).map(|a| a.uid.clone())
}

enum ManagerProfile<'a> {
    Existing { id: &'a str, name: &'a str },
    InFile { key: &'a str },
}

/// Who a row is in NERM (see [`Planner::identity`]).
struct Identity<'s> {
    user: Option<&'s crate::nerm::model::User>,
    profile: Option<&'s crate::nerm::model::Profile>,
    /// The user's login in NERM, when the row renames it.
    renamed_from: Option<&'s str>,
}

/// A manager the row may link to (see [`Planner::manager_reference`]).
struct Manager<'e, 's> {
    /// As written on the row.
    login: &'e str,
    /// `None`: this run creates the manager.
    user: Option<&'s crate::nerm::model::User>,
}

/// What planning one row collects, step by step.
#[derive(Default)]
struct Draft {
    ops: Vec<Op>,
    changes: Vec<String>,
    warnings: Vec<String>,
}

/// The planner's verdict once every step has added its part: unchanged without operations.
fn finish_row(e: &Employee, id: &Identity<'_>, d: Draft) -> RowPlan {
    if d.ops.is_empty() {
        return RowPlan::Unchanged { line: e.line, login: e.login.clone(), key: e.key.clone(), warnings: d.warnings };
    }
    let kind = if d.ops.iter().any(|o| matches!(o, Op::CreateUser { .. } | Op::CreateProfile { .. })) {
        PlanKind::Create
    } else {
        PlanKind::Update
    };
    RowPlan::Change(EmployeePlan {
        line: e.line,
        login: e.login.clone(),
        key: e.key.clone(),
        user_id: id.user.map(|u| u.id.clone()),
        profile_id: id.profile.map(|p| p.id.clone()),
        kind,
        ops: d.ops,
        changes: d.changes,
        warnings: d.warnings,
    })
}

fn split_groups(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|g| !g.is_empty())
}

/// Whether `have` holds the groups of `want` joined with `,` (order and repeats aside).
fn same_groups(have: &str, want: &[&str]) -> bool {
    let mut x: Vec<&str> = split_groups(have).collect();
    let mut y: Vec<&str> = want.iter().flat_map(|g| split_groups(g)).collect();
    x.sort();
    x.dedup();
    y.sort();
    y.dedup();
    x == y
}

/// Sets a patch's `field` (`slot`) when the wanted value differs; an emptied value is cleared.
fn diff_field(
    slot: &mut Option<String>,
    changes: &mut Vec<String>,
    field: &str,
    have: Option<&str>,
    want: Option<&str>,
) {
    let have = have.unwrap_or("");
    let want = want.unwrap_or("");
    if have != want {
        *slot = Some(want.to_string());
        changes.push(format!("user.{field}: {have:?} -> {want:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MappingConfig;
    use crate::config::tests::{EXAMPLE, demo_catalog};
    use crate::nerm::model::{Profile, User, UserManager, UserProfile};

    const TYPE_ID: &str = "7b0e6a57-0000-4000-8000-000000000001";

    fn resolved(text: &str) -> ResolvedConfig {
        MappingConfig::from_toml_str(text).unwrap().resolve(&demo_catalog()).unwrap()
    }

    fn employee(line: u64, login: &str, key: &str, manager: Option<&str>) -> Employee {
        let first = login.split('.').next().unwrap_or(login).to_string();
        Employee {
            line,
            login: login.into(),
            key: key.into(),
            name: format!("{first} Doe"),
            email: format!("{login}@example.com"),
            title: Some("Engineer".into()),
            locale: None,
            sailpoint_identity_id: None,
            user_status: "Active".into(),
            profile_status: "Active".into(),
            profile_name: Some(format!("{first} Doe")),
            attributes: vec![
                ("employee_id".into(), key.into()),
                ("first_name".into(), first.clone()),
                ("last_name".into(), "Doe".into()),
                ("email".into(), format!("{login}@example.com")),
                ("job_title".into(), "Engineer".into()),
                ("login".into(), login.into()),
            ],
            roles: vec![],
            manager_login: manager.map(String::from),
        }
    }

    /// NERM already holding `e` exactly as the example config would write it.
    fn provisioned(e: &Employee, n: usize) -> (User, Profile, UserProfile) {
        let user = User {
            id: format!("u-{n}"),
            uid: String::new(),
            name: e.name.clone(),
            email: e.email.clone(),
            kind: "NeprofileUser".into(),
            title: e.title.clone(),
            status: Some("Active".into()),
            login: e.login.clone(),
            locale: None,
            group_strings: Some("Employees".into()),
            sailpoint_identity_id: None,
        };
        let profile = Profile {
            id: format!("p-{n}"),
            name: e.name.clone(),
            profile_type_id: TYPE_ID.into(),
            status: "Active".into(),
            attributes: e.attributes.iter().cloned().collect(),
            updated_at: None,
        };
        let link = UserProfile {
            id: format!("l-{n}"),
            user_id: user.id.clone(),
            profile_id: profile.id.clone(),
            ne_attribute_id: None,
            relationship_type: "owner".into(),
        };
        (user, profile, link)
    }

    fn file_of(employees: &[&Employee]) -> FileIndex {
        let mut f = FileIndex::default();
        for e in employees {
            f.logins.insert(&e.login, e.line, true).unwrap();
            f.logins.accept(&e.login, &e.key, e.manager_login.as_deref().unwrap_or_default()).unwrap();
            f.add_accepted_key(&e.key, e.line).unwrap();
        }
        f.in_manager_cycles = f.logins.logins_in_manager_cycles();
        f
    }

    fn change(plan: RowPlan) -> EmployeePlan {
        match plan {
            RowPlan::Change(p) => p,
            other => panic!("expected a change, got {other:?}"),
        }
    }

    #[test]
    fn a_new_employee_plans_a_user_a_profile_and_the_owner_link() {
        // GIVEN an empty tenant and one employee
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let e = employee(2, "ann", "E1", None);
        let file = file_of(&[&e]);
        // WHEN it is planned
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&e)));
        // THEN the user carries the default role's group, and the profile and owner link follow
        assert_eq!(p.kind, PlanKind::Create);
        let kinds: Vec<&str> = p.ops.iter().map(Op::kind).collect();
        assert_eq!(kinds, ["create_user", "create_profile", "link_self"]);
        let Op::CreateUser { user } = &p.ops[0] else { unreachable!() };
        assert_eq!(user.group_strings.as_deref(), Some("Employees"));
        assert_eq!(user.status.as_deref(), Some("Active"));
    }

    #[test]
    fn an_employee_nerm_already_matches_plans_nothing() {
        let cfg = resolved(EXAMPLE);
        let e = employee(2, "ann", "E1", None);
        let (u, p, l) = provisioned(&e, 1);
        let snap = Snapshot::from_parts(vec![u], vec![p], vec![], vec![l], vec![], "employee_id");
        let file = file_of(&[&e]);
        let plan = Planner::new(&cfg, &snap, &file).plan_row(Ok(&e));
        assert!(matches!(plan, RowPlan::Unchanged { line: 2, .. }), "{plan:?}");
    }

    #[test]
    fn a_changed_title_patches_only_the_changed_fields() {
        let cfg = resolved(EXAMPLE);
        let e = employee(2, "ann", "E1", None);
        let (u, p, l) = provisioned(&e, 1);
        let snap = Snapshot::from_parts(vec![u], vec![p], vec![], vec![l], vec![], "employee_id");
        let mut changed = e.clone();
        changed.title = Some("Lead".into());
        changed.attributes.retain(|(k, _)| k != "job_title");
        changed.attributes.push(("job_title".into(), "Lead".into()));
        let file = file_of(&[&changed]);
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&changed)));
        assert_eq!(p.kind, PlanKind::Update);
        assert_eq!(p.ops.len(), 2, "{:?}", p.ops);
        let Op::PatchUser { patch, .. } = &p.ops[0] else { panic!("{:?}", p.ops) };
        assert_eq!(patch, &UserPatch { title: Some("Lead".into()), ..UserPatch::default() });
        let Op::PatchProfile { patch, .. } = &p.ops[1] else { panic!("{:?}", p.ops) };
        assert_eq!(patch.attributes, BTreeMap::from([("job_title".to_string(), "Lead".to_string())]));
    }

    #[test]
    fn a_manager_created_in_the_same_run_is_linked_at_apply_time() {
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let bob = employee(2, "bob", "E2", Some("ann"));
        let ann = employee(3, "ann", "E1", None);
        let file = file_of(&[&bob, &ann]);
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&bob)));
        assert!(p.ops.contains(&Op::SetProfileManager {
            manager_login: "ann".into(),
            manager_key: "E1".into(),
            manager_profile_id: None
        }));
        assert!(p.ops.contains(&Op::SetUserManager {
            manager_login: "ann".into(),
            manager_user_id: None,
            existing_link_id: None
        }));
    }

    #[test]
    fn a_manager_already_in_nerm_is_written_with_the_profile() {
        let cfg = resolved(EXAMPLE);
        let ann = employee(3, "ann", "E1", None);
        let (u, p, l) = provisioned(&ann, 1);
        let snap = Snapshot::from_parts(vec![u], vec![p], vec![], vec![l], vec![], "employee_id");
        let bob = employee(2, "bob", "E2", Some("ann"));
        let file = file_of(&[&bob, &ann]);
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&bob)));
        let Some(Op::CreateProfile { profile }) = p.ops.iter().find(|o| o.kind() == "create_profile") else { panic!() };
        assert_eq!(profile.attributes["manager"], "p-1");
        assert!(!p.ops.iter().any(|o| o.kind() == "set_profile_manager"));
    }

    #[test]
    fn a_manager_whose_login_ends_in_a_capital_sigma_is_found_whatever_the_case_of_the_reference() {
        // GIVEN a manager "ΟΔΥΣ" in the file (word-final Σ lower-cases to ς or σ depending on
        // who lower-cases it)
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let manager = employee(3, "ΟΔΥΣ", "E1", None);
        for reference in ["ΟΔΥΣ", "οδυς", "οδυσ", "Οδυς"] {
            let report = employee(2, "bob", "E2", Some(reference));
            let file = file_of(&[&report, &manager]);
            // WHEN a report naming the manager in any case is planned
            let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&report)));
            // THEN the manager is the one in the file, written as on its own row
            assert!(
                p.ops.contains(&Op::SetProfileManager {
                    manager_login: "ΟΔΥΣ".into(),
                    manager_key: "E1".into(),
                    manager_profile_id: None
                }),
                "{reference:?}: {:?}",
                p.ops
            );
        }
    }

    #[test]
    fn a_manager_already_in_nerm_whose_login_ends_in_a_capital_sigma_is_found_whatever_the_case() {
        // GIVEN the manager "ΟΔΥΣ" already in NERM and not in the file
        let cfg = resolved(EXAMPLE);
        let manager = employee(3, "ΟΔΥΣ", "E1", None);
        let (u, p, l) = provisioned(&manager, 1);
        let snap = Snapshot::from_parts(vec![u], vec![p], vec![], vec![l], vec![], "employee_id");
        for reference in ["ΟΔΥΣ", "οδυς", "οδυσ"] {
            let report = employee(2, "bob", "E2", Some(reference));
            let file = file_of(&[&report]);
            // WHEN a report naming it in any case is planned
            let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&report)));
            // THEN its profile is the new profile's manager
            let Some(Op::CreateProfile { profile }) = p.ops.iter().find(|o| o.kind() == "create_profile") else {
                panic!("{reference:?}: {:?}", p.ops)
            };
            assert_eq!(profile.attributes["manager"], "p-1", "{reference:?}");
        }
    }

    /// The plan of a change, or of an unchanged row (no operations), with its warnings.
    fn planned(plan: RowPlan) -> (Vec<Op>, Vec<String>) {
        match plan {
            RowPlan::Change(p) => (p.ops, p.warnings),
            RowPlan::Unchanged { warnings, .. } => (vec![], warnings),
            RowPlan::Rejected(r) => panic!("rejected: {r:?}"),
        }
    }

    fn manager_ops(ops: &[Op]) -> Vec<&Op> {
        ops.iter().filter(|o| matches!(o, Op::SetProfileManager { .. } | Op::SetUserManager { .. })).collect()
    }

    #[test]
    fn an_unknown_manager_costs_the_link_and_leaves_a_warning_with_line_and_column() {
        // GIVEN an empty tenant and an employee whose manager is nowhere
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let e = employee(7, "bob", "E2", Some("ghost"));
        let file = file_of(&[&e]);
        // WHEN it is planned
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&e)));
        // THEN the employee is created without a manager, and the warning says why
        assert_eq!(p.kind, PlanKind::Create);
        assert!(manager_ops(&p.ops).is_empty(), "{:?}", p.ops);
        let Some(Op::CreateProfile { profile }) = p.ops.iter().find(|o| o.kind() == "create_profile") else { panic!() };
        assert!(!profile.attributes.contains_key("manager"));
        assert_eq!(
            p.warnings,
            [
                r#"line 7, column "manager_login": manager "ghost" is neither in the file nor a NERM user; the employee is imported without this manager link"#
            ]
        );
    }

    #[test]
    fn a_self_manager_a_malformed_manager_and_a_rejected_managers_row_each_cost_only_the_link() {
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let own = employee(2, "ann", "E1", Some("ANN"));
        let malformed = employee(3, "bea", "E2", Some("not a login"));
        let under_rejected = employee(4, "cid", "E3", Some("dee"));
        let mut file = file_of(&[&own, &malformed, &under_rejected]);
        file.logins.insert("dee", 5, false).unwrap();
        let mut planner = Planner::new(&cfg, &snap, &file);
        for (e, reason) in [
            (&own, r#"column "manager_login": "ANN" is the employee's own login"#),
            (&malformed, r#"column "manager_login": "not a login" is not a valid login"#),
            (&under_rejected, r#"column "manager_login": manager "dee" is on line 5, which was rejected"#),
        ] {
            let p = change(planner.plan_row(Ok(e)));
            assert_eq!(p.kind, PlanKind::Create, "{}", e.login);
            assert!(manager_ops(&p.ops).is_empty(), "{}: {:?}", e.login, p.ops);
            assert_eq!(p.warnings.len(), 1, "{}", e.login);
            assert!(p.warnings[0].starts_with(&format!("line {}, ", e.line)), "{:?}", p.warnings);
            assert!(p.warnings[0].contains(reason), "{:?}", p.warnings);
        }
    }

    #[test]
    fn two_new_employees_managing_each_other_are_created_without_either_link() {
        // GIVEN ann managed by bob and bob by ann, and cid managed by ann (outside the cycle)
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let ann = employee(2, "ann", "E1", Some("bob"));
        let bob = employee(3, "bob", "E2", Some("Ann"));
        let cid = employee(4, "cid", "E3", Some("ann"));
        let file = file_of(&[&ann, &bob, &cid]);
        let mut planner = Planner::new(&cfg, &snap, &file);
        // THEN the two in the cycle lose their link with a warning; cid keeps his
        for e in [&ann, &bob] {
            let p = change(planner.plan_row(Ok(e)));
            assert!(manager_ops(&p.ops).is_empty(), "{}: {:?}", e.login, p.ops);
            assert!(p.warnings[0].contains("form a cycle"), "{:?}", p.warnings);
        }
        let p = change(planner.plan_row(Ok(&cid)));
        assert_eq!(manager_ops(&p.ops).len(), 2, "{:?}", p.ops);
        assert!(p.warnings.is_empty());
    }

    #[test]
    fn a_bad_manager_reference_leaves_the_manager_link_nerm_holds_alone() {
        // GIVEN bob in NERM with ann as manager (profile attribute and user_manager)
        let cfg = resolved(EXAMPLE);
        let ann = employee(3, "ann", "E1", None);
        let bob = employee(2, "bob", "E2", Some("ann"));
        let (au, mut ap, al) = provisioned(&ann, 1);
        let (bu, mut bp, bl) = provisioned(&bob, 2);
        ap.name = "ann Doe".into();
        bp.attributes.insert("manager".into(), ap.name.clone());
        let link = UserManager { id: "m-1".into(), user_id: bu.id.clone(), manager_id: au.id.clone() };
        let snap = Snapshot::from_parts(vec![au, bu], vec![ap, bp], vec![], vec![al, bl], vec![link], "employee_id");
        // WHEN the file names a manager nobody knows
        let mut ghostly = bob.clone();
        ghostly.manager_login = Some("ghost".into());
        let file = file_of(&[&ghostly, &ann]);
        let (ops, warnings) = planned(Planner::new(&cfg, &snap, &file).plan_row(Ok(&ghostly)));
        // THEN nothing is written, and the row carries the warning
        assert!(ops.is_empty(), "{ops:?}");
        assert_eq!(warnings.len(), 1);
    }

    /// Ann (E1) in NERM as `ann`, with her profile, owner link and the rest as `provisioned`.
    fn renamed_ann() -> (Employee, Snapshot) {
        let ann = employee(2, "ann", "E1", None);
        let (u, p, l) = provisioned(&ann, 1);
        let snap = Snapshot::from_parts(vec![u], vec![p], vec![], vec![l], vec![], "employee_id");
        let mut renamed = ann.clone();
        renamed.login = "ann.renamed".into();
        renamed.email = ann.email.clone();
        renamed.attributes.retain(|(k, _)| k != "login");
        renamed.attributes.push(("login".into(), "ann.renamed".into()));
        (renamed, snap)
    }

    #[test]
    fn a_new_login_on_a_known_key_renames_the_user_instead_of_creating_a_second() {
        // GIVEN ann in NERM, and a file where her key comes with a new login
        let cfg = resolved(EXAMPLE);
        let (renamed, snap) = renamed_ann();
        let file = file_of(&[&renamed]);
        // WHEN it is planned
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&renamed)));
        // THEN her own user gets the new login, and nothing is created
        assert_eq!(
            (p.kind, p.user_id.as_deref(), p.profile_id.as_deref()),
            (PlanKind::Update, Some("u-1"), Some("p-1"))
        );
        let kinds: Vec<&str> = p.ops.iter().map(Op::kind).collect();
        assert_eq!(kinds, ["update_user", "update_profile"]);
        let Op::PatchUser { patch, .. } = &p.ops[0] else { unreachable!() };
        assert_eq!(patch, &UserPatch { login: Some("ann.renamed".into()), ..UserPatch::default() });
        assert_eq!(p.changes[0], "login ann → ann.renamed");
    }

    #[test]
    fn a_profile_owned_by_someone_whose_login_it_does_not_hold_is_no_rename() {
        // GIVEN ann's profile owned by an administrator (the profile's login attribute says ann)
        let cfg = resolved(EXAMPLE);
        let ann = employee(2, "ann", "E1", None);
        let (mut u, p, l) = provisioned(&ann, 1);
        u.login = "admin".into();
        let snap = Snapshot::from_parts(vec![u], vec![p], vec![], vec![l], vec![], "employee_id");
        let file = file_of(&[&ann]);
        // WHEN ann's row is planned, THEN her own user is created and the administrator is left alone
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&ann)));
        assert!(matches!(&p.ops[0], Op::CreateUser { user } if user.login == "ann"), "{:?}", p.ops);
        assert!(!p.ops.iter().any(|o| matches!(o, Op::PatchUser { .. })), "{:?}", p.ops);
    }

    #[test]
    fn a_rename_to_a_login_another_user_holds_is_rejected_naming_both() {
        // GIVEN ann in NERM, and another user already holding the new login
        let cfg = resolved(EXAMPLE);
        let (renamed, snap) = renamed_ann();
        let (other, _, _) = provisioned(&employee(9, "ann.renamed", "E9", None), 9);
        let mut users = snap.users.clone();
        users.push(other);
        let snap = Snapshot::from_parts(
            users,
            snap.profiles.clone(),
            vec![],
            snap.user_profiles.clone(),
            vec![],
            "employee_id",
        );
        let file = file_of(&[&renamed]);
        // WHEN it is planned, THEN the row is rejected naming both logins
        let RowPlan::Rejected(r) = Planner::new(&cfg, &snap, &file).plan_row(Ok(&renamed)) else { panic!() };
        assert!(r.reasons[0].starts_with(r#"line 2, column "login""#), "{:?}", r.reasons);
        assert!(r.reasons[0].contains(r#""ann""#) && r.reasons[0].contains(r#""ann.renamed""#), "{:?}", r.reasons);
    }

    #[test]
    fn a_second_row_with_the_same_key_is_rejected() {
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let a = employee(2, "ann", "E1", None);
        let b = employee(3, "bea", "E1", None);
        let file = file_of(&[&a, &b]);
        let mut planner = Planner::new(&cfg, &snap, &file);
        assert!(matches!(planner.plan_row(Ok(&a)), RowPlan::Change(_)));
        let RowPlan::Rejected(r) = planner.plan_row(Ok(&b)) else { panic!() };
        assert!(r.reasons[0].contains("already appeared on line 2"), "{:?}", r.reasons);
    }

    #[test]
    fn groups_nerm_holds_are_kept_when_roles_are_not_managed() {
        let cfg = resolved(EXAMPLE);
        let e = employee(2, "ann", "E1", None);
        let (mut u, p, l) = provisioned(&e, 1);
        u.group_strings = Some("Employees,NERM_Admins".into());
        let snap = Snapshot::from_parts(vec![u], vec![p], vec![], vec![l], vec![], "employee_id");
        let file = file_of(&[&e]);
        let mut sponsor = e.clone();
        sponsor.roles = vec!["Sponsor".into()];
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&sponsor)));
        let Op::PatchUser { patch, .. } = &p.ops[0] else { panic!() };
        assert_eq!(patch.group_strings.as_deref(), Some("Employees,NERM_Admins,Sponsors"));
    }

    fn full_sync(percent: &str) -> ResolvedConfig {
        resolved(&EXAMPLE.replacen("mode = \"upsert\"", "mode = \"full\"", 1).replacen(
            "max_disable_percent = 10.0",
            &format!("max_disable_percent = {percent}"),
            1,
        ))
    }

    fn tenant_of(n: usize) -> (Vec<Employee>, Snapshot) {
        let employees: Vec<Employee> =
            (0..n).map(|i| employee(i as u64 + 2, &format!("e{i}"), &format!("K{i}"), None)).collect();
        let (mut users, mut profiles, mut links) = (vec![], vec![], vec![]);
        for (i, e) in employees.iter().enumerate() {
            let (u, p, l) = provisioned(e, i);
            users.push(u);
            profiles.push(p);
            links.push(l);
        }
        let snap = Snapshot::from_parts(users, profiles, vec![], links, Vec::<UserManager>::new(), "employee_id");
        (employees, snap)
    }

    #[test]
    fn a_full_sync_disables_the_employee_missing_from_the_file() {
        let cfg = full_sync("10.0");
        let (employees, snap) = tenant_of(20);
        let kept: Vec<&Employee> = employees.iter().filter(|e| e.key != "K5").collect();
        let file = file_of(&kept);
        let leavers = Planner::new(&cfg, &snap, &file).leavers().unwrap();
        assert_eq!(leavers.len(), 1);
        let l = &leavers[0];
        assert_eq!((l.key.as_str(), l.login.as_str(), l.line, l.kind), ("K5", "e5", 0, PlanKind::Disable));
        let kinds: Vec<&str> = l.ops.iter().map(Op::kind).collect();
        assert_eq!(kinds, ["update_user", "update_profile"]);
    }

    #[test]
    fn the_threshold_stops_a_mass_disable_and_an_empty_file_disables_nobody() {
        let cfg = full_sync("10.0");
        let (employees, snap) = tenant_of(20);
        let kept: Vec<&Employee> = employees.iter().skip(5).collect();
        let err = Planner::new(&cfg, &snap, &file_of(&kept)).leavers().unwrap_err();
        assert!(matches!(err, ThresholdError::TooMany { leavers: 5, managed: 20, .. }), "{err}");
        let err = Planner::new(&cfg, &snap, &FileIndex::default()).leavers().unwrap_err();
        assert_eq!(err, ThresholdError::EmptyFile { managed: 20 });
        // With the explicit override the same file goes through.
        let cfg = resolved(&EXAMPLE.replacen("mode = \"upsert\"", "mode = \"full\"", 1).replacen(
            "allow_mass_disable = false",
            "allow_mass_disable = true",
            1,
        ));
        assert_eq!(Planner::new(&cfg, &snap, &file_of(&kept)).leavers().unwrap().len(), 5);
    }
}
