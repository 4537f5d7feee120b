//! Stage 3, apply: carry out plans with as few NERM requests as possible, idempotently.
//!
//! Writes go out as bulk calls of at most 100 records, phase by phase — users, then profiles,
//! then the links that need both — so links find the ids created before them. Each bulk answer
//! (records or a job) is matched back to its inputs; whatever a bulk call did not confirm is
//! retried one by one, and a create without a clear answer is settled by looking the record up,
//! never by blindly creating it again (docs/nerm-api.md, "Bulk writes and jobs").

use std::collections::HashMap;

use futures::stream::{self, StreamExt};

use super::plan::{EmployeePlan, Op};
use super::snapshot::Snapshot;
use crate::login::LoginKey;
use crate::nerm::model::{JobItemFailure, JobOutcome, ProfilePatch};
use crate::nerm::{BulkAnswer, Identity, JobEntry, Listing, NermClient, NermError, Write, WriteKind as Kind};

/// Bulk bodies start at this size; the client lowers it when NERM refuses a body for its size.
pub use crate::nerm::client::BULK_MAX;
/// Pause between a lost bulk answer and the lookups that settle it; it doubles between the
/// re-checks of a write that may still land (see [`Applier::find_lost`]).
const SETTLE_BEFORE_LOOKUP: std::time::Duration = std::time::Duration::from_millis(500);

/// One write of one plan, and how its record is recognised in answers and lookups.
struct Item {
    plan: usize,
    write: Write,
    identity: Identity,
}

/// What a bulk body came to: each item's id or error, and whether NERM refused the body whole.
struct ChunkResult {
    results: Vec<(usize, Result<String, String>)>,
    refused: bool,
}

/// After one bulk call: settled, refused whole (a 400), or items to look up.
enum Sent {
    Done,
    Refused(Vec<Item>),
    Lost(Lost),
}

/// Items whose bulk write got no usable answer.
struct Lost {
    /// To look up before deciding anything.
    unconfirmed: Vec<Item>,
    /// NERM said it could not process them just then: written again in the next round.
    retry: Vec<Item>,
    /// NERM may still apply the write later (it timed out, or its job did not finish).
    may_still_land: bool,
    /// An unconfirmed item not found fails with `why` instead of being written again.
    never_again: bool,
    why: String,
    /// Whether a record found by lookup may be someone else's (and so gets the plan's values
    /// patched in). Not when a complete job reported every item written without an error, but
    /// named them in a way that cannot be matched: what the lookup finds is the job's work.
    foreign: bool,
}

impl Lost {
    fn of(unconfirmed: Vec<Item>, may_still_land: bool) -> Lost {
        Lost { unconfirmed, retry: Vec::new(), may_still_land, never_again: false, why: String::new(), foreign: true }
    }
}

/// Ids known so far: from the snapshot (or the plans themselves), then from what this run
/// created.
#[derive(Debug, Default, Clone)]
pub struct Ids {
    /// Login → user id.
    pub users: HashMap<LoginKey, String>,
    /// Employee key → profile id.
    pub profiles: HashMap<String, String>,
}

impl Ids {
    pub fn from_snapshot(snap: &Snapshot) -> Ids {
        let mut ids = Ids::default();
        for u in &snap.users {
            ids.users.insert(LoginKey::of(&u.login), u.id.clone());
        }
        for (k, p) in snap.keyed_profiles() {
            ids.profiles.insert(k.to_string(), p.id.clone());
        }
        ids
    }

    /// What the plans already know (their own user and profile ids).
    pub fn from_plans(plans: &[EmployeePlan]) -> Ids {
        let mut ids = Ids::default();
        for p in plans {
            if let Some(u) = &p.user_id {
                ids.users.insert(LoginKey::of(&p.login), u.clone());
            }
            if let Some(pr) = &p.profile_id {
                ids.profiles.insert(p.key.clone(), pr.clone());
            }
        }
        ids
    }

    /// Writes the ids of the managers `plan` links to into its operations, where known.
    pub fn resolve_managers(&self, plan: &mut EmployeePlan) {
        for op in &mut plan.ops {
            match op {
                Op::SetProfileManager { manager_key, manager_profile_id: id @ None, .. } => {
                    *id = self.profiles.get(manager_key).cloned();
                }
                Op::SetUserManager { manager_login, manager_user_id: id @ None, .. } => {
                    *id = self.users.get(&LoginKey::of(manager_login)).cloned();
                }
                _ => {}
            }
        }
    }
}

/// `plan` with only `ops` left to do: its user and profile exist now (ids from the plan or from
/// `ids`). Its report row still tells everything the plan changed.
pub fn remaining(plan: EmployeePlan, ops: Vec<Op>, ids: &Ids) -> EmployeePlan {
    let user_id = plan.user_id.clone().or_else(|| ids.users.get(&LoginKey::of(&plan.login)).cloned());
    let profile_id = plan.profile_id.clone().or_else(|| ids.profiles.get(&plan.key).cloned());
    EmployeePlan { ops, user_id, profile_id, ..plan }
}

/// What is left of a plan that waited for its manager: only the manager links.
pub fn waiting_rest(plan: EmployeePlan, ids: &Ids) -> EmployeePlan {
    let links =
        plan.ops.iter().filter(|o| matches!(o, Op::SetProfileManager { .. } | Op::SetUserManager { .. })).cloned();
    let links = links.collect();
    remaining(plan, links, ids)
}

/// What [`Applier::apply_with`] does about a manager that is neither in the ids it is given
/// nor created by the plans it applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissingManager {
    /// Every plan that could create it was applied: the manager's own plan failed.
    Fail,
    /// The caller knows every manager created so far (it passes them in `ids`): one missing is
    /// still to come, so the plan is [`ItemError::Waiting`].
    Wait,
}

/// Why an employee's plan did not complete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemError {
    /// NERM refused or never confirmed a write: report it as failed.
    Failed(String),
    /// It needs a record another part of the run has not created yet (a manager): try later.
    Waiting(String),
}

impl ItemError {
    pub fn message(&self) -> &str {
        match self {
            ItemError::Failed(m) | ItemError::Waiting(m) => m,
        }
    }
}

/// How one plan stands while it is applied.
#[derive(Debug, Clone, Default)]
enum Status {
    #[default]
    Fine,
    /// Only a manager is missing: `wait` says so for a plan that may wait, `fail` for one that
    /// may not.
    ManagerMissing {
        wait: String,
        fail: String,
    },
    Failed(String),
}

/// The status of every plan: the first failure stands, and any failure replaces a missing
/// manager, so a plan only waits when nothing else went wrong.
struct Statuses(Vec<Status>);

impl Statuses {
    fn fail(&mut self, plan: usize, msg: String) {
        if !matches!(self.0[plan], Status::Failed(_)) {
            self.0[plan] = Status::Failed(msg);
        }
    }

    fn manager_missing(&mut self, plan: usize, login: &str, record: &str) {
        if matches!(self.0[plan], Status::Fine) {
            let wait = format!("waiting for the manager {login:?}'s {record}");
            let fail = format!("the manager {login:?} has no {record} in NERM (it was not created)");
            self.0[plan] = Status::ManagerMissing { wait, fail };
        }
    }

    fn failed(&self, plan: usize) -> bool {
        matches!(self.0[plan], Status::Failed(_))
    }

    fn into_errors(self, missing: MissingManager) -> Vec<Option<ItemError>> {
        let error = |s| match s {
            Status::Fine => None,
            Status::ManagerMissing { wait, .. } if missing == MissingManager::Wait => Some(ItemError::Waiting(wait)),
            Status::ManagerMissing { fail, .. } => Some(ItemError::Failed(fail)),
            Status::Failed(e) => Some(ItemError::Failed(e)),
        };
        self.0.into_iter().map(error).collect()
    }
}

/// What the applier needs to know about the NERM side of a run (from the resolved config); the
/// Lambdas carry it in every work message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub profile_type_id: String,
    pub key_attribute: String,
    pub manager_attribute: Option<String>,
    /// The employee↔profile self-link relationship (`owner`/`contributor`), if any.
    pub self_relationship: Option<String>,
    pub concurrency: usize,
}

impl Target {
    pub fn from_resolved(cfg: &crate::config::ResolvedConfig) -> Target {
        Target {
            profile_type_id: cfg.profile_type().id.clone(),
            key_attribute: cfg.key_attribute().uid.clone(),
            manager_attribute: cfg.manager_attribute().map(|a| a.uid.clone()),
            self_relationship: super::run::self_relationship(cfg).map(String::from),
            concurrency: cfg.config().nerm.concurrency as usize,
        }
    }
}

/// The link writes of a set of plans, by kind (phase 3 of [`Applier::apply_with`]).
#[derive(Default)]
struct Links {
    roles: Vec<Item>,
    /// Self and contributor links.
    profiles: Vec<Item>,
    managers: Vec<Item>,
    manager_attributes: Vec<Item>,
    /// (plan, existing user_manager link, new manager id)
    repoints: Vec<(usize, String, String)>,
    /// (plan, user_role id)
    removals: Vec<(usize, String)>,
}

/// Applies plans; returns, per plan, `None` when every operation succeeded or the first error.
pub struct Applier<'a> {
    client: &'a NermClient,
    target: Target,
    /// Creates settled by finding an existing record: (kind, plan). Such a record may hold
    /// someone else's values (an SSO login created the user first), so it gets a patch.
    adopted: std::sync::Mutex<Vec<(Kind, usize)>>,
}

impl<'a> Applier<'a> {
    pub fn new(client: &'a NermClient, target: &Target) -> Self {
        let target = Target { concurrency: target.concurrency.max(1), ..target.clone() };
        Applier { client, target, adopted: std::sync::Mutex::new(Vec::new()) }
    }

    fn concurrency(&self) -> usize {
        self.target.concurrency
    }

    /// Rounds of "write, then look up what is unconfirmed" before an item is given up: a lost
    /// write is tried again (after a lookup) as often as the client retries any call.
    fn rounds(&self) -> usize {
        self.client.options().max_retries as usize + 1
    }

    fn adopt(&self, kind: Kind, plan: usize) {
        if matches!(kind, Kind::CreateUsers | Kind::CreateProfiles) {
            self.adopted.lock().unwrap_or_else(|e| e.into_inner()).push((kind, plan));
        }
    }

    /// Patches that give adopted records the values the plan wanted (an unchanged field is a
    /// no-op for NERM, see docs/nerm-api.md).
    fn adopted_patches(&self, kind: Kind, plans: &[EmployeePlan], ids: &Ids) -> Vec<Item> {
        let mut out = Vec::new();
        for plan in self.take_adopted(kind) {
            let p = &plans[plan];
            for op in &p.ops {
                let write = match (kind, op) {
                    (Kind::CreateUsers, Op::CreateUser { user }) => ids
                        .users
                        .get(&LoginKey::of(&p.login))
                        .map(|id| Write::PatchUser { id: id.clone(), patch: user.as_patch() }),
                    (Kind::CreateProfiles, Op::CreateProfile { profile }) => ids
                        .profiles
                        .get(&p.key)
                        .map(|id| Write::PatchProfile { id: id.clone(), patch: profile.as_patch() }),
                    _ => None,
                };
                if let Some(write) = write {
                    out.push(Item::patch(plan, write));
                }
            }
        }
        out
    }

    fn take_adopted(&self, kind: Kind) -> Vec<usize> {
        let mut all = self.adopted.lock().unwrap_or_else(|e| e.into_inner());
        let (mine, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(k, _)| *k == kind);
        *all = rest;
        mine.into_iter().map(|(_, p)| p).collect()
    }

    /// Applies plans in one process: every record the plans refer to is either in `ids` or
    /// created by these plans, so a missing manager is a failure.
    pub async fn apply(&self, plans: &[EmployeePlan], snap: &Snapshot) -> Vec<Option<String>> {
        self.apply_with(plans, Ids::from_snapshot(snap), MissingManager::Fail)
            .await
            .0
            .into_iter()
            .map(|e| e.map(|e| e.message().to_string()))
            .collect()
    }

    /// Applies plans phase by phase — users, then profiles, then the links that need both —
    /// so links find the ids created before them. A manager neither in `ids` nor created by
    /// these plans fails the plan or makes it wait (`missing`). Also answers the ids known at
    /// the end (to re-plan what waits).
    pub async fn apply_with(
        &self,
        plans: &[EmployeePlan],
        mut ids: Ids,
        missing: MissingManager,
    ) -> (Vec<Option<ItemError>>, Ids) {
        let mut status = Statuses(vec![Status::Fine; plans.len()]);
        self.apply_users(plans, &mut ids, &mut status).await;
        self.apply_profiles(plans, &mut ids, &mut status).await;
        let links = self.links_of(plans, &ids, &mut status);
        self.apply_links(links, &mut status).await;
        (status.into_errors(missing), ids)
    }

    /// Phase 1: creates and patches users; the ids of those created join `ids`.
    async fn apply_users(&self, plans: &[EmployeePlan], ids: &mut Ids, status: &mut Statuses) {
        let (mut creates, mut patches) = (Vec::new(), Vec::new());
        for (i, p) in plans.iter().enumerate() {
            for op in &p.ops {
                match op {
                    Op::CreateUser { user } => creates.push(Item {
                        plan: i,
                        identity: Identity::User { login: LoginKey::of(&user.login) },
                        write: Write::CreateUser(user.clone()),
                    }),
                    Op::PatchUser { user_id, patch } => {
                        patches.push(Item::patch(i, Write::PatchUser { id: user_id.clone(), patch: patch.clone() }))
                    }
                    _ => {}
                }
            }
        }
        for (plan, r) in self.write(Kind::CreateUsers, creates).await {
            match r {
                Ok(id) => {
                    ids.users.insert(LoginKey::of(&plans[plan].login), id);
                }
                Err(e) => status.fail(plan, format!("creating the user failed: {e}")),
            }
        }
        patches.extend(self.adopted_patches(Kind::CreateUsers, plans, ids));
        self.settle(Kind::PatchUsers, patches, status, "updating the user").await;
    }

    /// Phase 2: creates and patches the employees' own profiles (manager links come in phase 3).
    async fn apply_profiles(&self, plans: &[EmployeePlan], ids: &mut Ids, status: &mut Statuses) {
        let (mut creates, mut patches) = (Vec::new(), Vec::new());
        for (i, p) in plans.iter().enumerate().filter(|(i, _)| !status.failed(*i)) {
            for op in &p.ops {
                match op {
                    Op::CreateProfile { profile } => creates.push(Item {
                        plan: i,
                        identity: Identity::Profile { key: p.key.clone() },
                        write: Write::CreateProfile(profile.clone()),
                    }),
                    Op::PatchProfile { profile_id, patch } => patches
                        .push(Item::patch(i, Write::PatchProfile { id: profile_id.clone(), patch: patch.clone() })),
                    _ => {}
                }
            }
        }
        for (plan, r) in self.write(Kind::CreateProfiles, creates).await {
            match r {
                Ok(id) => {
                    ids.profiles.insert(plans[plan].key.clone(), id);
                }
                Err(e) => status.fail(plan, format!("creating the profile failed: {e}")),
            }
        }
        patches.extend(self.adopted_patches(Kind::CreateProfiles, plans, ids));
        self.settle(Kind::PatchProfiles, patches, status, "updating the profile").await;
    }

    /// Phase 3's writes, now that every user and profile of the plans exists.
    fn links_of(&self, plans: &[EmployeePlan], ids: &Ids, status: &mut Statuses) -> Links {
        let mut links = Links::default();
        for (i, p) in plans.iter().enumerate() {
            if status.failed(i) {
                continue;
            }
            let user_id = ids.users.get(&LoginKey::of(&p.login)).cloned().or_else(|| p.user_id.clone());
            let profile_id = ids.profiles.get(&p.key).cloned().or_else(|| p.profile_id.clone());
            let own = Own { plan: i, login: &p.login, key: &p.key, user_id, profile_id };
            for op in &p.ops {
                if let Err(e) = self.link_of(op, &own, ids, &mut links, status) {
                    status.fail(i, e);
                }
            }
        }
        links
    }

    /// The link write of one operation (others are written in phases 1 and 2).
    fn link_of(&self, op: &Op, own: &Own, ids: &Ids, links: &mut Links, status: &mut Statuses) -> Result<(), String> {
        let i = own.plan;
        match op {
            Op::AssignRole { role_id, .. } => {
                let uid = own.user()?;
                let identity = Identity::UserRole { user_id: uid.clone(), role_id: role_id.clone() };
                let write = Write::AssignRole { user_id: uid, role_id: role_id.clone() };
                links.roles.push(Item { plan: i, write, identity });
            }
            Op::RemoveRole { user_role_id, .. } => links.removals.push((i, user_role_id.clone())),
            Op::LinkSelf { relationship } => {
                links.profiles.push(profile_link(i, own.user()?, own.profile()?, relationship))
            }
            Op::LinkContributor { contributor_user_id, .. } => {
                links.profiles.push(profile_link(i, contributor_user_id.clone(), own.profile()?, "contributor"))
            }
            Op::SetProfileManager { manager_login, manager_key, manager_profile_id } => {
                let pid = own.profile()?;
                let Some(mid) = manager_profile_id.clone().or_else(|| ids.profiles.get(manager_key).cloned()) else {
                    status.manager_missing(i, manager_login, "profile");
                    return Ok(());
                };
                let attr = self.target.manager_attribute.clone().ok_or("no manager attribute configured")?;
                let write = Write::PatchProfile { id: pid, patch: ProfilePatch::attribute(&attr, &mid) };
                links.manager_attributes.push(Item::patch(i, write));
            }
            Op::SetUserManager { manager_login, manager_user_id, existing_link_id } => {
                let uid = own.user()?;
                let known = manager_user_id.clone().or_else(|| ids.users.get(&LoginKey::of(manager_login)).cloned());
                let Some(mid) = known else {
                    status.manager_missing(i, manager_login, "user");
                    return Ok(());
                };
                match existing_link_id {
                    Some(link) => links.repoints.push((i, link.clone(), mid)),
                    None => {
                        let identity = Identity::UserManager { user_id: uid.clone(), manager_id: mid.clone() };
                        let write = Write::LinkManager { user_id: uid, manager_id: mid };
                        links.managers.push(Item { plan: i, write, identity });
                    }
                }
            }
            Op::CreateUser { .. } | Op::PatchUser { .. } | Op::CreateProfile { .. } | Op::PatchProfile { .. } => {}
        }
        Ok(())
    }

    /// Phase 3: roles, profile links, manager links; role removals and manager re-points one by
    /// one (NERM has no bulk form of either).
    async fn apply_links(&self, links: Links, status: &mut Statuses) {
        self.settle(Kind::CreateUserRoles, links.roles, status, "assigning a role").await;
        self.settle(Kind::CreateUserProfiles, links.profiles, status, "linking the profile").await;
        self.settle(Kind::CreateUserManagers, links.managers, status, "linking the manager").await;
        self.settle(Kind::PatchProfiles, links.manager_attributes, status, "setting the profile's manager").await;
        let removed = stream::iter(links.removals.into_iter().map(|(i, id)| async move {
            (i, self.client.delete_user_role(&id).await.map_err(|e| format!("removing a role failed: {e}")))
        }))
        .buffer_unordered(self.concurrency())
        .collect::<Vec<_>>()
        .await;
        let repointed = stream::iter(links.repoints.into_iter().map(|(i, link, mid)| async move {
            let r = self.client.patch_user_manager(&link, &mid).await;
            (i, r.map(|_| ()).map_err(|e| format!("re-pointing the manager failed: {e}")))
        }))
        .buffer_unordered(self.concurrency())
        .collect::<Vec<_>>()
        .await;
        for (i, r) in removed.into_iter().chain(repointed) {
            if let Err(e) = r {
                status.fail(i, e);
            }
        }
    }

    async fn settle(&self, kind: Kind, items: Vec<Item>, status: &mut Statuses, what: &str) {
        for (plan, r) in self.write(kind, items).await {
            if let Err(e) = r {
                status.fail(plan, format!("{what} failed: {e}"));
            }
        }
    }

    /// Writes items in bulk chunks of the size NERM is known to take; answers each item's
    /// record id or error.
    async fn write(&self, kind: Kind, items: Vec<Item>) -> Vec<(usize, Result<String, String>)> {
        let mut items = items;
        let mut out = Vec::new();
        // Until NERM has taken a full body, one goes first: if the size is too large for this
        // tenant, only that body is refused, and the rest go out at the size that works.
        if !self.client.bulk_size_proven() && items.len() > self.client.bulk_size() {
            let rest = items.split_off(self.client.bulk_size());
            out = self.write_chunk(kind, items).await.results;
            items = rest;
        }
        if items.is_empty() {
            return out;
        }
        let size = self.client.bulk_size();
        let mut chunks: Vec<Vec<Item>> = Vec::new();
        let mut it = items.into_iter().peekable();
        while it.peek().is_some() {
            chunks.push(it.by_ref().take(size).collect());
        }
        let rest: Vec<_> =
            stream::iter(chunks.into_iter().map(|chunk| async move { self.write_chunk(kind, chunk).await.results }))
                .buffer_unordered(self.concurrency())
                .flat_map(stream::iter)
                .collect()
                .await;
        out.extend(rest);
        out
    }

    /// One bulk body, re-sent (after looking up what may have landed) until every item is
    /// confirmed, failed, or out of rounds. A body larger than NERM took lately is split first.
    fn write_chunk(&self, kind: Kind, chunk: Vec<Item>) -> futures::future::BoxFuture<'_, ChunkResult> {
        Box::pin(async move {
            let size = self.client.bulk_size();
            if chunk.len() > size {
                let mut pieces = Vec::new();
                let mut it = chunk.into_iter().peekable();
                while it.peek().is_some() {
                    pieces.push(self.write_chunk(kind, it.by_ref().take(size).collect()));
                }
                let results = futures::future::join_all(pieces).await.into_iter().flat_map(|c| c.results).collect();
                return ChunkResult { results, refused: false };
            }
            let mut out = Vec::with_capacity(chunk.len());
            let mut pending: Vec<Item> = chunk;
            let rounds = self.rounds();
            for round in 0..rounds {
                if pending.is_empty() {
                    break;
                }
                let last = round + 1 == rounds;
                let lost = match self.send_bulk(kind, pending, &mut out).await {
                    Sent::Done => return ChunkResult { results: out, refused: false },
                    // A one-record body refused: the record fails on its own; the one-record
                    // endpoint tells why (and settles "already taken").
                    Sent::Refused(items) if items.len() == 1 => {
                        out.extend(self.one_by_one(kind, items).await);
                        return ChunkResult { results: out, refused: true };
                    }
                    Sent::Refused(items) => {
                        out.extend(self.split_refused(kind, items).await);
                        return ChunkResult { results: out, refused: true };
                    }
                    Sent::Lost(lost) => lost,
                };
                // The write may or may not have happened: look each record up before trying again.
                // Before the last verdict, or while the write may still land, keep looking a while.
                pending = lost.retry;
                let found = if lost.unconfirmed.is_empty() {
                    Vec::new()
                } else {
                    self.find_lost(kind, &lost.unconfirmed, lost.may_still_land || last).await
                };
                for (item, f) in lost.unconfirmed.into_iter().zip(found) {
                    match f {
                        Ok(Some(id)) => {
                            if lost.foreign {
                                self.adopt(kind, item.plan);
                            }
                            out.push((item.plan, Ok(id)));
                        }
                        Ok(None) if lost.never_again => out.push((item.plan, Err(lost.why.clone()))),
                        Ok(None) if !last => pending.push(item),
                        Ok(None) => out.push((item.plan, Err("NERM never confirmed the write".into()))),
                        Err(e) => out.push((item.plan, Err(e.to_string()))),
                    }
                }
            }
            out.extend(pending.into_iter().map(|i| (i.plan, Err("NERM never confirmed the write".into()))));
            ChunkResult { results: out, refused: false }
        })
    }

    /// Sends one bulk body and reads its answer: confirmed items go to `out`; what is left
    /// either was refused whole, or needs a lookup (and maybe another round).
    async fn send_bulk(&self, kind: Kind, pending: Vec<Item>, out: &mut Vec<(usize, Result<String, String>)>) -> Sent {
        let writes: Vec<&Write> = pending.iter().map(|i| &i.write).collect();
        match self.client.write_bulk(kind, &writes, &self.target.key_attribute).await {
            Ok(BulkAnswer::Records(records)) => {
                let unmatched = self.match_records(pending, records, out);
                out.extend(self.settle_unmatched(kind, unmatched).await);
                Sent::Done
            }
            Ok(BulkAnswer::Job(job_id)) => self.read_job(kind, &job_id, pending, out).await,
            Err(NermError::Ambiguous { timed_out, .. }) => Sent::Lost(Lost::of(pending, timed_out)),
            Err(NermError::Rejected { status: 400, .. }) => Sent::Refused(pending),
            Err(NermError::Rejected { .. }) => {
                out.extend(self.one_by_one(kind, pending).await);
                Sent::Done
            }
            Err(e) => {
                let msg = e.to_string();
                out.extend(pending.into_iter().map(|i| (i.plan, Err(msg.clone()))));
                Sent::Done
            }
        }
    }

    /// A bulk body NERM refused whole (400): each half is written on its own. When both halves
    /// go through, the body was too large for this tenant, and later bodies keep to the half's
    /// size; a half refused again is split again, down to single records, which then fail (or
    /// not) on their own.
    async fn split_refused(&self, kind: Kind, items: Vec<Item>) -> Vec<(usize, Result<String, String>)> {
        let half = items.len().div_ceil(2);
        let mut second = items;
        let first: Vec<Item> = second.drain(..half).collect();
        let (a, b) = futures::join!(self.write_chunk(kind, first), self.write_chunk(kind, second));
        if !a.refused && !b.refused {
            self.client.shrink_bulk_size(half);
        }
        a.results.into_iter().chain(b.results).collect()
    }

    /// Confirms the items a synchronous bulk answer names (by identity, never by position);
    /// answers the rest.
    fn match_records(
        &self,
        pending: Vec<Item>,
        records: Vec<(Identity, String)>,
        out: &mut Vec<(usize, Result<String, String>)>,
    ) -> Vec<Item> {
        let by_identity: HashMap<Identity, String> = records.into_iter().collect();
        let mut unmatched = Vec::new();
        for item in pending {
            match by_identity.get(&item.identity) {
                Some(id) => out.push((item.plan, Ok(id.clone()))),
                None => unmatched.push(item),
            }
        }
        unmatched
    }

    /// Items a synchronous answer did not name: a create is looked up first (the answer may
    /// only have been shaped differently); what is still missing, and every patch (re-sending
    /// one is harmless), goes one by one, which tells why a record failed.
    async fn settle_unmatched(&self, kind: Kind, items: Vec<Item>) -> Vec<(usize, Result<String, String>)> {
        if items.is_empty() {
            return Vec::new();
        }
        if kind.is_patch() {
            return self.one_by_one(kind, items).await;
        }
        let asked: Vec<&Item> = items.iter().collect();
        let found = self.look_up(kind, &asked).await;
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for (item, f) in items.into_iter().zip(found) {
            match f {
                Ok(Some(id)) => {
                    self.adopt(kind, item.plan);
                    out.push((item.plan, Ok(id)));
                }
                _ => missing.push(item),
            }
        }
        out.extend(self.one_by_one(kind, missing).await);
        out
    }

    /// Waits for a bulk call's job and reads its outcome. Entries are matched to items by what
    /// they name; an item with a transient error is written again, one with a permanent error
    /// fails with NERM's message, and an item no entry names is looked up. A job that ended
    /// otherwise than `complete` is looked up at once; one still running at the deadline is
    /// looked up patiently and not written again (it may still land).
    async fn read_job(
        &self,
        kind: Kind,
        job_id: &str,
        pending: Vec<Item>,
        out: &mut Vec<(usize, Result<String, String>)>,
    ) -> Sent {
        let status = match self.client.wait_job(job_id).await {
            Ok(JobOutcome::Complete(status)) => status,
            Ok(JobOutcome::Ended(status)) => {
                let mut lost = Lost::of(pending, false);
                lost.why = format!("the bulk job ended as {:?}", status.status);
                return Sent::Lost(lost);
            }
            Ok(JobOutcome::StillRunning(status)) => {
                let mut lost = Lost::of(pending, true);
                lost.never_again = true;
                lost.why = format!(
                    "NERM's bulk job {job_id} was still {:?} at the deadline; not written again, so the \
                     job cannot land a duplicate (the next run settles the row)",
                    status.status
                );
                return Sent::Lost(lost);
            }
            Err(e) => {
                tracing::warn!(error = %e, "bulk job could not be followed; checking its records one by one");
                return Sent::Lost(Lost::of(pending, true));
            }
        };
        let entries = status.entries(kind, &self.target.key_attribute);
        let mut lost = Lost::of(Vec::new(), false);
        lost.foreign = entries.len() != pending.len() || entries.iter().any(|e| !e.errors.is_empty());
        let by_identity: HashMap<&Identity, &JobEntry> =
            entries.iter().filter_map(|e| Some((e.identity.as_ref()?, e))).collect();
        for item in pending {
            let Some(entry) = by_identity.get(&item.identity) else {
                lost.unconfirmed.push(item);
                continue;
            };
            match (&entry.id, entry.errors.is_empty()) {
                (Some(id), true) => out.push((item.plan, Ok(id.clone()))),
                (None, true) => lost.unconfirmed.push(item),
                (_, false) => match JobItemFailure::of(&entry.errors) {
                    // Taken by an earlier attempt whose answer was lost: look it up.
                    JobItemFailure::AlreadyTaken => lost.unconfirmed.push(item),
                    JobItemFailure::Transient => lost.retry.push(item),
                    JobItemFailure::Permanent => out.push((item.plan, Err(entry.errors.join("; ")))),
                },
            }
        }
        if lost.unconfirmed.is_empty() && lost.retry.is_empty() { Sent::Done } else { Sent::Lost(lost) }
    }

    /// Writes items one at a time, settling "already taken" and lost answers by lookup.
    async fn one_by_one(&self, kind: Kind, items: Vec<Item>) -> Vec<(usize, Result<String, String>)> {
        stream::iter(items.into_iter().map(|item| async move {
            let r = self.write_one(kind, &item).await;
            (item.plan, r)
        }))
        .buffer_unordered(self.concurrency())
        .collect()
        .await
    }

    async fn write_one(&self, kind: Kind, item: &Item) -> Result<String, String> {
        let rounds = self.rounds();
        for round in 0..rounds {
            match self.client.write_one(&item.write).await {
                // A patch needs no id from its answer (a "no change" answer may carry none).
                Ok(answered) => {
                    let id = item.write.patched_id().map(String::from).or(answered);
                    return id.ok_or_else(|| "no id in the answer".into());
                }
                Err(e) if kind.refused_as_existing(&e, &self.target.key_attribute) => {
                    // Created by an earlier attempt whose answer was lost: find it.
                    return match self.look_up_one(kind, item).await {
                        Ok(Some(id)) => {
                            self.adopt(kind, item.plan);
                            Ok(id)
                        }
                        Ok(None) => Err(e.to_string()),
                        Err(le) => Err(le.to_string()),
                    };
                }
                Err(NermError::Ambiguous { timed_out, .. }) => match self
                    .find_lost(kind, std::slice::from_ref(item), timed_out || round + 1 == rounds)
                    .await
                    .pop()
                    .unwrap_or(Ok(None))
                {
                    Ok(Some(id)) => {
                        self.adopt(kind, item.plan);
                        return Ok(id);
                    }
                    Ok(None) => continue,
                    Err(le) => return Err(le.to_string()),
                },
                Err(e) => return Err(e.to_string()),
            }
        }
        Err("NERM never confirmed the write".into())
    }

    /// Looks up records whose write got no clear answer: after [`SETTLE_BEFORE_LOOKUP`], so
    /// that a bulk job the write started can run; when `patient`, the ones still missing are
    /// looked for again, the pause doubling each time, until the client's timeout has passed
    /// since the answer was lost: a request NERM held past that timeout (or the job it
    /// started) may still land, and writing again before it does would race it.
    async fn find_lost(&self, kind: Kind, items: &[Item], patient: bool) -> Vec<Result<Option<String>, NermError>> {
        let lost_at = std::time::Instant::now();
        let horizon = if patient { self.client.options().timeout } else { std::time::Duration::ZERO };
        let mut found: Vec<Result<Option<String>, NermError>> = items.iter().map(|_| Ok(None)).collect();
        let mut missing: Vec<usize> = (0..items.len()).collect();
        let mut pause = SETTLE_BEFORE_LOOKUP;
        loop {
            tokio::time::sleep(pause).await;
            let last = lost_at.elapsed() >= horizon;
            let asked: Vec<&Item> = missing.iter().map(|&i| &items[i]).collect();
            let answers = self.look_up(kind, &asked).await;
            let mut still = Vec::new();
            for (i, a) in missing.into_iter().zip(answers) {
                match a {
                    Ok(None) => still.push(i),
                    other => found[i] = other,
                }
            }
            if still.is_empty() || last {
                return found;
            }
            tracing::debug!(?kind, missing = still.len(), "lost writes not found yet; looking again");
            missing = still;
            pause = pause.saturating_mul(2);
        }
    }

    /// Looks records up after a lost answer, with as few requests as it takes: profiles take
    /// one scan for the whole batch; other records one scan of their collection when that is
    /// fewer pages than there are records to find, else a filtered lookup each.
    async fn look_up(&self, kind: Kind, items: &[&Item]) -> Vec<Result<Option<String>, NermError>> {
        let wanted = items.iter().filter(|i| !matches!(i.identity, Identity::Id(_))).count() as u64;
        if wanted > 1 && kind != Kind::CreateProfiles {
            let page = u64::from(self.client.page_size().max(1));
            let scanned = match self.client.count(&Listing::all(kind.collection())).await {
                Ok(0) => Some(Ok(HashMap::new())),
                Ok(total) if total.div_ceil(page) < wanted => Some(self.scan(kind).await),
                Ok(_) => None,
                // NERM does not answer reads either: asking once per record would not help.
                Err(e) => Some(Err(e)),
            };
            if let Some(scanned) = scanned {
                return match scanned {
                    Ok(by_identity) => items
                        .iter()
                        .map(|i| match &i.identity {
                            Identity::Id(id) => Ok(Some(id.clone())),
                            other => Ok(by_identity.get(other).cloned()),
                        })
                        .collect(),
                    Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
                };
            }
        }
        if kind == Kind::CreateProfiles {
            return match self.client.list_profiles_of_type(&self.target.profile_type_id).await {
                Ok(all) => {
                    let by_key: HashMap<String, String> = all
                        .into_iter()
                        .filter_map(|p| {
                            p.attributes.get(&self.target.key_attribute).map(|k| (k.trim().to_string(), p.id.clone()))
                        })
                        .collect();
                    items
                        .iter()
                        .map(|i| match &i.identity {
                            Identity::Profile { key } => Ok(by_key.get(key).cloned()),
                            _ => Ok(None),
                        })
                        .collect()
                }
                Err(e) => items.iter().map(|_| Err(e.clone())).collect(),
            };
        }
        // Futures collected first: a closure over `&Item` inside the stream type defeats the
        // compiler's proof that this future is `Send`.
        let lookups: Vec<_> = items.iter().map(|i| self.look_up_one(kind, i)).collect();
        stream::iter(lookups).buffered(self.concurrency()).collect().await
    }

    /// Every record of `kind`'s collection, by identity (for [`Applier::look_up`]).
    async fn scan(&self, kind: Kind) -> Result<HashMap<Identity, String>, NermError> {
        let c = self.client;
        Ok(match kind {
            Kind::CreateUsers => {
                c.users().await?.into_iter().map(|u| (Identity::User { login: LoginKey::of(&u.login) }, u.id)).collect()
            }
            Kind::CreateUserRoles => c
                .user_roles()
                .await?
                .into_iter()
                .map(|r| (Identity::UserRole { user_id: r.user_id, role_id: r.role_id }, r.id))
                .collect(),
            Kind::CreateUserProfiles => c
                .user_profiles()
                .await?
                .into_iter()
                .map(|l| {
                    (
                        Identity::UserProfile {
                            user_id: l.user_id,
                            profile_id: l.profile_id,
                            rel: l.relationship_type,
                        },
                        l.id,
                    )
                })
                .collect(),
            Kind::CreateUserManagers => c
                .user_managers()
                .await?
                .into_iter()
                .map(|m| (Identity::UserManager { user_id: m.user_id, manager_id: m.manager_id }, m.id))
                .collect(),
            Kind::PatchUsers | Kind::PatchProfiles | Kind::CreateProfiles => HashMap::new(),
        })
    }

    async fn look_up_one(&self, kind: Kind, item: &Item) -> Result<Option<String>, NermError> {
        Ok(match &item.identity {
            Identity::Id(id) => Some(id.clone()),
            // NERM's login filter may compare exactly: ask with the login as written.
            Identity::User { login } => {
                let asked = match &item.write {
                    Write::CreateUser(user) => user.login.trim(),
                    _ => login.as_str(),
                };
                self.client.user_by_login(asked).await?.map(|u| u.id)
            }
            Identity::Profile { .. } => {
                return self.look_up(kind, &[item]).await.pop().unwrap_or(Ok(None));
            }
            Identity::UserRole { user_id, role_id } => {
                self.client.user_roles_of(user_id).await?.into_iter().find(|r| &r.role_id == role_id).map(|r| r.id)
            }
            Identity::UserProfile { user_id, profile_id, rel } => self
                .client
                .user_profiles_of(profile_id)
                .await?
                .into_iter()
                .find(|l| &l.user_id == user_id && &l.relationship_type == rel)
                .map(|l| l.id),
            Identity::UserManager { user_id, manager_id } => self
                .client
                .user_managers_of(user_id)
                .await?
                .into_iter()
                .find(|m| &m.manager_id == manager_id)
                .map(|m| m.id),
        })
    }
}

/// One plan's own records, as phase 3 sees them.
struct Own<'p> {
    plan: usize,
    login: &'p str,
    key: &'p str,
    user_id: Option<String>,
    profile_id: Option<String>,
}

impl Own<'_> {
    fn user(&self) -> Result<String, String> {
        self.user_id.clone().ok_or_else(|| format!("the user {:?} does not exist", self.login))
    }
    fn profile(&self) -> Result<String, String> {
        self.profile_id.clone().ok_or_else(|| format!("the profile {:?} does not exist", self.key))
    }
}

impl Item {
    /// A patch of an existing record, recognised by its id.
    fn patch(plan: usize, write: Write) -> Item {
        let identity = Identity::Id(write.patched_id().unwrap_or_default().to_string());
        Item { plan, write, identity }
    }
}

/// A user↔profile link.
fn profile_link(plan: usize, user_id: String, profile_id: String, rel: &str) -> Item {
    let identity =
        Identity::UserProfile { user_id: user_id.clone(), profile_id: profile_id.clone(), rel: rel.to_string() };
    Item { plan, write: Write::LinkProfile { user_id, profile_id, relationship: rel.to_string() }, identity }
}
