//! Stage 2, plan: diff each employee against the snapshot and list the NERM writes that make
//! NERM match the file — nothing for an unchanged employee.
//!
//! Operations name what does not exist yet by login or key, so the same plan can be applied in
//! one process (the CLI) or shipped over SQS and applied by workers (the Lambdas).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::read::{Employee, Rejection};
use super::snapshot::{Snapshot, login_key};
use crate::config::{CatalogRole, ResolvedConfig, RoleStrategy, SelfRelationship, SyncMode};
use crate::input::{KeyIndex, LoginIndex, LoginIndexFull};
use crate::nerm::model::{NewProfile, NewUser, Patch};

/// One NERM write for one employee. The employee's own user and profile are implied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    CreateUser {
        user: NewUser,
    },
    PatchUser {
        user_id: String,
        patch: Patch,
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
        patch: Patch,
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
    /// The profile's manager attribute points at the manager's profile (resolved at apply).
    SetProfileManager {
        manager_login: String,
        manager_key: String,
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
}

/// The planner's verdict on one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowPlan {
    Unchanged { line: u64, login: String, key: String },
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
        Planner { cfg, snap, file, self_rel, extra, warnings, profile_of_user }
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
        let reject = |reason: String| {
            RowPlan::Rejected(Rejection {
                line: e.line,
                login: e.login.clone(),
                key: e.key.clone(),
                reasons: vec![reason],
            })
        };
        let m = self.cfg.config();
        if let Some(first) = self.file.keys.first_accepted(&e.key)
            && first != e.line.min(crate::input::LINE_MAX)
        {
            return reject(format!(
                "line {}, column {:?}: employee key {:?} already appeared on line {first}; only the first row is used",
                e.line, m.columns.key, e.key
            ));
        }
        let user = self.snap.user_by_login(&e.login);
        // Two different people may not share one NERM profile.
        let profile = self.snap.profile_by_key(&e.key);
        if let Some(manager) = &e.manager_login {
            let in_file = self.file.logins.get(manager);
            let in_nerm = self.snap.user_by_login(manager).is_some();
            match in_file {
                Some(seen) if !seen.accepted && !in_nerm => {
                    return reject(format!(
                        "line {}, column {:?}: manager {manager:?} is on line {}, which was rejected",
                        e.line,
                        m.columns.manager.as_deref().unwrap_or_default(),
                        seen.line
                    ));
                }
                None if !in_nerm => {
                    return reject(format!(
                        "line {}, column {:?}: manager {manager:?} is neither in the file nor a NERM user",
                        e.line,
                        m.columns.manager.as_deref().unwrap_or_default()
                    ));
                }
                _ => {}
            }
        }

        let mut ops = Vec::new();
        let mut changes = Vec::new();
        // Borrowed from the snapshot and the config: most rows are unchanged, and an unchanged
        // row's report needs only its login and key.
        let user_id = user.map(|u| u.id.as_str());
        let profile_id = profile.map(|p| p.id.as_str());

        // --- user and roles ---------------------------------------------------------------
        let roles = self.wanted_roles(e);
        let groups = match m.roles.strategy {
            RoleStrategy::GroupStrings => {
                Some(self.wanted_groups(&roles, user.and_then(|u| u.group_strings.as_deref())))
            }
            RoleStrategy::UserRole => None,
        };
        match user {
            None => {
                ops.push(Op::CreateUser {
                    user: NewUser {
                        name: e.name.clone(),
                        email: e.email.clone(),
                        kind: m.user.user_type.as_str().to_string(),
                        login: e.login.clone(),
                        status: Some(e.user_status.clone()),
                        title: e.title.clone(),
                        locale: e.locale.clone(),
                        group_strings: groups.as_ref().map(|g| g.join(",")).filter(|g| !g.is_empty()),
                        sailpoint_identity_id: e.sailpoint_identity_id.clone(),
                    },
                });
                changes.push("user created".into());
            }
            Some(u) => {
                let mut patch = Patch::new();
                diff_field(&mut patch, &mut changes, "name", Some(&u.name), Some(&e.name));
                diff_field(&mut patch, &mut changes, "email", Some(&u.email), Some(&e.email));
                diff_field(&mut patch, &mut changes, "status", u.status.as_deref(), Some(&e.user_status));
                diff_field(&mut patch, &mut changes, "title", u.title.as_deref(), e.title.as_deref());
                diff_field(&mut patch, &mut changes, "locale", u.locale.as_deref(), e.locale.as_deref());
                if e.sailpoint_identity_id.is_some() {
                    diff_field(
                        &mut patch,
                        &mut changes,
                        "sailpoint_identity_id",
                        u.sailpoint_identity_id.as_deref(),
                        e.sailpoint_identity_id.as_deref(),
                    );
                }
                if let Some(g) = &groups
                    && !same_groups(u.group_strings.as_deref().unwrap_or(""), g)
                {
                    let g = g.join(",");
                    diff_field(&mut patch, &mut changes, "group_strings", u.group_strings.as_deref(), Some(&g));
                }
                if !patch.is_empty() {
                    ops.push(Op::PatchUser { user_id: u.id.clone(), patch });
                }
            }
        }
        if m.roles.strategy == RoleStrategy::UserRole {
            let held: Vec<(&str, &str)> = user_id
                .map(|id| self.snap.roles_of(id).map(|r| (r.id.as_str(), r.role_id.as_str())).collect())
                .unwrap_or_default();
            for r in &roles {
                if !held.iter().any(|(_, held)| *held == r.id) {
                    ops.push(Op::AssignRole { role_id: r.id.clone(), role_name: r.name.clone() });
                    changes.push(format!("role {} assigned", r.name));
                }
            }
            if m.roles.managed {
                for (ur_id, role_id) in held {
                    if !roles.iter().any(|r| r.id == role_id) {
                        let name =
                            self.cfg.roles().iter().find(|r| r.id == role_id).map_or(role_id, |r| r.name.as_str());
                        ops.push(Op::RemoveRole { user_role_id: ur_id.to_string(), role_name: name.to_string() });
                        changes.push(format!("role {name} removed"));
                    }
                }
            }
        }

        // --- profile ----------------------------------------------------------------------
        let manager_attr = self.cfg.manager_attribute().map(|a| a.uid.as_str());
        let manager_target = e.manager_login.as_deref().and_then(|ml| self.manager_profile(ml));
        match profile {
            None => {
                let mut attributes: BTreeMap<String, String> = e.attributes.iter().cloned().collect();
                let mut deferred_manager = None;
                if let (Some(attr), Some(ml)) = (manager_attr, &e.manager_login) {
                    match manager_target {
                        Some(ManagerProfile::Existing { id, .. }) => {
                            attributes.insert(attr.to_string(), id.to_string());
                        }
                        Some(ManagerProfile::InFile { key }) => {
                            deferred_manager = Some((self.canonical_login(ml), key.to_string()))
                        }
                        None => changes.push(format!(
                            "manager {ml:?} has no {} profile; profile manager not set",
                            self.type_name()
                        )),
                    }
                }
                ops.push(Op::CreateProfile {
                    profile: NewProfile {
                        profile_type_id: self.cfg.profile_type().id.clone(),
                        status: e.profile_status.clone(),
                        name: e.profile_name.clone(),
                        attributes,
                    },
                });
                changes.push("profile created".into());
                if let Some((manager_login, manager_key)) = deferred_manager {
                    ops.push(Op::SetProfileManager { manager_login, manager_key });
                }
            }
            Some(p) => {
                let mut patch = Patch::new();
                if p.status != e.profile_status {
                    patch.insert("status".into(), json!(e.profile_status));
                    changes.push(format!("profile.status: {:?} -> {:?}", p.status, e.profile_status));
                }
                let mut attrs = serde_json::Map::new();
                for a in self.cfg.attributes() {
                    // A handful of attributes: a linear search beats building a map per row.
                    let want = e.attributes.iter().find(|(k, _)| *k == a.uid).map_or("", |(_, v)| v.as_str());
                    let have = p.attributes.get(&a.uid).map(String::as_str).unwrap_or("");
                    if want != have {
                        attrs.insert(a.uid.clone(), json!(want));
                        changes.push(format!("profile.{}: {have:?} -> {want:?}", a.uid));
                    }
                }
                if let (Some(attr), Some(ml)) = (manager_attr, &e.manager_login) {
                    let have = p.attributes.get(attr).map(String::as_str).unwrap_or("");
                    match manager_target {
                        Some(ManagerProfile::Existing { id, name }) if have != name => {
                            attrs.insert(attr.to_string(), json!(id));
                            changes.push(format!("profile.{attr}: {have:?} -> {name:?}"));
                        }
                        Some(ManagerProfile::InFile { key }) => {
                            ops.push(Op::SetProfileManager {
                                manager_login: self.canonical_login(ml),
                                manager_key: key.to_string(),
                            });
                            changes.push(format!("profile.{attr} -> manager {ml:?}"));
                        }
                        _ => {}
                    }
                }
                if !attrs.is_empty() {
                    patch.insert("attributes".into(), Value::Object(attrs));
                }
                if !patch.is_empty() {
                    ops.insert(
                        ops.iter().position(|o| matches!(o, Op::SetProfileManager { .. })).unwrap_or(ops.len()),
                        Op::PatchProfile { profile_id: p.id.clone(), patch },
                    );
                }
            }
        }

        // --- links ------------------------------------------------------------------------
        let links = || {
            profile_id
                .into_iter()
                .flat_map(|pid| self.snap.links_of(pid))
                .map(|l| (l.user_id.as_str(), l.relationship_type.as_str()))
        };
        if let Some(rel) = self.self_rel {
            let linked = user_id.is_some_and(|uid| links().any(|(u, r)| u == uid && r == rel));
            let other_owner = rel == "owner" && links().any(|(u, r)| r == "owner" && Some(u) != user_id);
            if other_owner {
                changes.push("profile already has another owner; self link not changed".into());
            } else if !linked {
                ops.push(Op::LinkSelf { relationship: rel.to_string() });
                changes.push(format!("user linked as {rel} of the profile"));
            }
        }
        for (cid, clogin) in &self.extra {
            if !links().any(|(u, r)| u == cid && r == "contributor") {
                ops.push(Op::LinkContributor { contributor_user_id: cid.clone(), contributor_login: clogin.clone() });
                changes.push(format!("{clogin} linked as contributor"));
            }
        }
        if m.managers.user_manager
            && let Some(ml) = &e.manager_login
        {
            let manager_id = self.snap.user_by_login(ml).map(|u| u.id.as_str());
            let existing = || user_id.into_iter().flat_map(|uid| self.snap.managers_of(uid));
            let already = manager_id.is_some_and(|mid| existing().any(|l| l.manager_id == mid));
            if !already {
                ops.push(Op::SetUserManager {
                    manager_login: self.canonical_login(ml),
                    manager_user_id: manager_id.map(String::from),
                    existing_link_id: existing().next().map(|l| l.id.clone()),
                });
                changes.push(format!("user manager -> {ml}"));
            }
        }

        if ops.is_empty() {
            return RowPlan::Unchanged { line: e.line, login: e.login.clone(), key: e.key.clone() };
        }
        let kind = if ops.iter().any(|o| matches!(o, Op::CreateUser { .. } | Op::CreateProfile { .. })) {
            PlanKind::Create
        } else {
            PlanKind::Update
        };
        RowPlan::Change(EmployeePlan {
            line: e.line,
            login: e.login.clone(),
            key: e.key.clone(),
            user_id: user_id.map(String::from),
            profile_id: profile_id.map(String::from),
            kind,
            ops,
            changes,
        })
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

    /// The user's `group_strings` for the wanted roles (NOTES §4 item 3), to be joined with
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
        let lower = login_key(manager_login);
        if let Some(key) = self.file.key_of(&lower) {
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
        let login_attr = self.login_attribute();
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
                let mut patch = Patch::new();
                patch.insert("status".into(), json!(user_status));
                changes.push(format!("user.status: {:?} -> {user_status:?}", u.status.as_deref().unwrap_or("")));
                ops.push(Op::PatchUser { user_id: u.id.clone(), patch });
            }
            if p.status != profile_status {
                let mut patch = Patch::new();
                patch.insert("status".into(), json!(profile_status));
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

    /// The attribute filled from the login column, if the config has one.
    fn login_attribute(&self) -> Option<String> {
        let login_col = crate::config::normalize_column(&self.cfg.config().columns.login);
        self.cfg
            .attributes()
            .iter()
            .find(|a| a.template.single_column() == Some(login_col.as_str()))
            .map(|a| a.uid.clone())
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

enum ManagerProfile<'a> {
    Existing { id: &'a str, name: &'a str },
    InFile { key: &'a str },
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

/// Adds `field` to the patch when the wanted value differs; an emptied value is cleared.
fn diff_field(patch: &mut Patch, changes: &mut Vec<String>, field: &str, have: Option<&str>, want: Option<&str>) {
    let have = have.unwrap_or("");
    let want = want.unwrap_or("");
    if have != want {
        patch.insert(field.to_string(), json!(want));
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
            f.logins.accept(&e.login, &e.key).unwrap();
            f.add_accepted_key(&e.key, e.line).unwrap();
        }
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
        assert_eq!(patch.len(), 1);
        assert_eq!(patch["title"], "Lead");
        let Op::PatchProfile { patch, .. } = &p.ops[1] else { panic!("{:?}", p.ops) };
        assert_eq!(patch["attributes"], json!({"job_title": "Lead"}));
    }

    #[test]
    fn a_manager_created_in_the_same_run_is_linked_at_apply_time() {
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let bob = employee(2, "bob", "E2", Some("ann"));
        let ann = employee(3, "ann", "E1", None);
        let file = file_of(&[&bob, &ann]);
        let p = change(Planner::new(&cfg, &snap, &file).plan_row(Ok(&bob)));
        assert!(p.ops.contains(&Op::SetProfileManager { manager_login: "ann".into(), manager_key: "E1".into() }));
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
    fn an_unknown_manager_rejects_the_row_with_line_and_column() {
        let cfg = resolved(EXAMPLE);
        let snap = Snapshot::default();
        let e = employee(7, "bob", "E2", Some("ghost"));
        let file = file_of(&[&e]);
        let RowPlan::Rejected(r) = Planner::new(&cfg, &snap, &file).plan_row(Ok(&e)) else { panic!() };
        assert_eq!(r.line, 7);
        assert!(r.reasons[0].contains("line 7") && r.reasons[0].contains("manager_login"), "{:?}", r.reasons);
        assert!(r.reasons[0].contains("neither in the file nor a NERM user"));
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
        assert_eq!(patch["group_strings"], "Employees,NERM_Admins,Sponsors");
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
