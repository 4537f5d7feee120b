//! Ids objects: how one part of a run learns the NERM ids of managers another part created,
//! without asking NERM. After applying a message a provisioner writes the user and profile ids
//! of its employees to `{state}{run}/ids/{part}.json`, before it reports the part. The ingest
//! tells each message which part creates each of its plans' managers
//! ([`WorkMessage::managers`]); the provisioner reads just those parts' ids objects (S3
//! requests do not spend NERM's rate limit). A plan whose manager's part has not been applied
//! yet waits for it; a manager no ids object can give (queued after the message, or its own
//! plan failed) is looked up in NERM, as is every missing one on the last wait.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use futures::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};

use super::Settings;
use super::message::WorkMessage;
use crate::engine::apply::MissingManager;
use crate::engine::snapshot::login_key;
use crate::engine::{EmployeePlan, Ids, Op};
use crate::ports::{ObjectStore, PortError};

/// Ids objects read at once.
const READS_AT_ONCE: usize = 8;

/// What one part of a run left in NERM: the ids of its employees' users and profiles that exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartIds {
    /// Lower-cased login → user id.
    pub users: BTreeMap<String, String>,
    /// Employee key → profile id.
    pub profiles: BTreeMap<String, String>,
}

impl PartIds {
    /// The ids of the employees of `plans` among `ids` (what an apply answered).
    pub fn of(plans: &[EmployeePlan], ids: &Ids) -> PartIds {
        let mut out = PartIds::default();
        for p in plans {
            let login = login_key(&p.login);
            if let Some(u) = ids.users.get(&login) {
                out.users.insert(login, u.clone());
            }
            if let Some(pr) = ids.profiles.get(&p.key) {
                out.profiles.insert(p.key.clone(), pr.clone());
            }
        }
        out
    }

    /// Adds these ids to `ids` (what `ids` already knows stays).
    pub fn add_to(self, ids: &mut Ids) {
        for (k, v) in self.users {
            ids.users.entry(k).or_insert(v);
        }
        for (k, v) in self.profiles {
            ids.profiles.entry(k).or_insert(v);
        }
    }
}

/// Writes a part's ids object (a redelivered message rewrites the same ids).
pub async fn write_ids<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    run: &str,
    part: &str,
    ids: &PartIds,
) -> Result<(), PortError> {
    let body = serde_json::to_vec(ids).map_err(|e| PortError::new("ids", e.to_string(), false))?;
    store.put(&settings.ids_key(run, part), body, "application/json").await
}

/// A part's ids object; `None` while that part has not been applied. One that cannot be read
/// as ids counts as empty (its managers are then looked up in NERM).
pub async fn read_ids<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    run: &str,
    part: &str,
) -> Result<Option<PartIds>, PortError> {
    let key = settings.ids_key(run, part);
    let Some(body) = store.get(&key).await? else { return Ok(None) };
    Ok(Some(serde_json::from_slice(&body).unwrap_or_else(|e| {
        tracing::warn!(key = %key, error = %e, "unreadable ids object; its managers will be looked up in NERM");
        PartIds::default()
    })))
}

/// The logins (lower-cased) of managers `plan` links to whose id it does not carry: those
/// created in the same run (a manager NERM had at plan time travels as an id).
pub fn managers_to_resolve(plan: &EmployeePlan) -> impl Iterator<Item = String> + '_ {
    plan.ops.iter().filter_map(|op| match op {
        Op::SetProfileManager { manager_login, .. }
        | Op::SetUserManager { manager_login, manager_user_id: None, .. } => Some(login_key(manager_login)),
        _ => None,
    })
}

/// For the messages of one go of the ingest: which other part creates each manager whose part
/// is known (`parts`: lower-cased login → part), per [`WorkMessage::managers`].
pub fn managers_of(
    plans: &[EmployeePlan],
    own_part: &str,
    parts: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for login in plans.iter().flat_map(managers_to_resolve) {
        if let Some(part) = parts.get(&login).filter(|p| p.as_str() != own_part) {
            out.insert(login, part.clone());
        }
    }
    out
}

/// How a message's missing managers are to be found, once the ids objects were read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ManagerIds {
    /// Parts whose ids object does not exist yet: the plans whose manager they create wait.
    pub waiting_for: BTreeSet<String>,
    /// Managers (lower-cased logins) no ids object gives: looked up in NERM.
    pub look_up: HashSet<String>,
    /// Ids objects read.
    pub parts_read: usize,
}

impl ManagerIds {
    /// What the applier does about a manager still missing: on the last wait (`last_wait`)
    /// it looks every one up in NERM, so nothing is lost if a part never got applied (it
    /// ended in the DLQ, or a provisioner died); before that only the managers no ids object
    /// gives, and the rest wait.
    pub fn missing(self, last_wait: bool) -> MissingManager {
        if last_wait {
            MissingManager::LookUp
        } else if self.look_up.is_empty() {
            MissingManager::Wait
        } else {
            MissingManager::LookUpOnly(self.look_up)
        }
    }
}

/// Seeds `ids` with the ids of the managers `msg`'s plans need from other parts of the run,
/// read from those parts' ids objects (only the parts named for them in
/// [`WorkMessage::managers`]). `ids` should already hold what the plans know themselves.
pub async fn seed_manager_ids<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    msg: &WorkMessage,
    ids: &mut Ids,
) -> Result<ManagerIds, PortError> {
    let own: HashSet<String> = msg.items.iter().map(|p| login_key(&p.login)).collect();
    let missing = missing_managers(&msg.items, &own, ids);
    let mut out = ManagerIds::default();
    let parts: BTreeSet<&str> =
        missing.iter().filter_map(|login| msg.managers.get(login)).map(String::as_str).collect();
    let reads: Vec<_> = parts.iter().map(|part| read_ids(store, settings, &msg.run_id, part)).collect();
    let found: Vec<Result<Option<PartIds>, PortError>> = stream::iter(reads).buffered(READS_AT_ONCE).collect().await;
    let mut absent: BTreeSet<&str> = BTreeSet::new();
    for (part, f) in parts.into_iter().zip(found) {
        match f? {
            Some(part_ids) => {
                out.parts_read += 1;
                part_ids.add_to(ids);
            }
            None => {
                absent.insert(part);
            }
        }
    }
    // What is still missing waits for its part, or, if that part is done without it, is looked up.
    for login in missing_managers(&msg.items, &own, ids) {
        match msg.managers.get(&login) {
            Some(part) if absent.contains(part.as_str()) => {
                out.waiting_for.insert(part.clone());
            }
            _ => {
                out.look_up.insert(login);
            }
        }
    }
    Ok(out)
}

/// Managers of `plans` (lower-cased logins) that neither `ids` nor the plans themselves (`own`
/// logins, created in the same apply) give.
fn missing_managers(plans: &[EmployeePlan], own: &HashSet<String>, ids: &Ids) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for p in plans {
        for op in &p.ops {
            let login = match op {
                Op::SetProfileManager { manager_login, manager_key } if !ids.profiles.contains_key(manager_key) => {
                    login_key(manager_login)
                }
                Op::SetUserManager { manager_login, manager_user_id: None, .. }
                    if !ids.users.contains_key(&login_key(manager_login)) =>
                {
                    login_key(manager_login)
                }
                _ => continue,
            };
            if !own.contains(&login) {
                out.insert(login);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PlanKind;
    use crate::pipeline::Target;
    use crate::ports::memory::MemoryStore;

    const RUN: &str = "run1";

    fn plan(login: &str, key: &str, manager: Option<(&str, &str)>) -> EmployeePlan {
        let mut ops = vec![];
        if let Some((ml, mk)) = manager {
            ops.push(Op::SetProfileManager { manager_login: ml.into(), manager_key: mk.into() });
            ops.push(Op::SetUserManager { manager_login: ml.into(), manager_user_id: None, existing_link_id: None });
        }
        EmployeePlan {
            line: 2,
            login: login.into(),
            key: key.into(),
            user_id: None,
            profile_id: None,
            kind: PlanKind::Create,
            ops,
            changes: vec![],
            warnings: vec![],
        }
    }

    fn message(part: &str, items: Vec<EmployeePlan>, managers: &[(&str, &str)]) -> WorkMessage {
        WorkMessage {
            version: super::super::message::VERSION,
            run_id: RUN.into(),
            part: part.into(),
            attempt: 0,
            target: Target {
                profile_type_id: "t".into(),
                key_attribute: "employee_id".into(),
                manager_attribute: Some("manager".into()),
                self_relationship: Some("owner".into()),
                concurrency: 2,
            },
            items,
            managers: managers.iter().map(|(l, p)| (l.to_string(), p.to_string())).collect(),
        }
    }

    fn boss_ids() -> PartIds {
        PartIds {
            users: BTreeMap::from([("boss@example.com".into(), "u-boss".into())]),
            profiles: BTreeMap::from([("E1".into(), "p-boss".into())]),
        }
    }

    #[tokio::test]
    async fn an_applied_part_writes_the_ids_of_its_employees_and_another_part_reads_them_back() {
        // GIVEN a part whose apply answered the ids of its employee and of a manager it looked up
        let store = MemoryStore::default();
        let settings = Settings::default();
        let mut ids = Ids::default();
        ids.users.insert("boss@example.com".into(), "u-boss".into());
        ids.profiles.insert("E1".into(), "p-boss".into());
        ids.users.insert("elsewhere@example.com".into(), "u-other".into());
        // WHEN it writes its ids object
        let mine = PartIds::of(&[plan("Boss@Example.com", "E1", None)], &ids);
        write_ids(&store, &settings, RUN, "m00001", &mine).await.unwrap();
        // THEN the object is under the run's state prefix, holds only the part's own employee
        // (login lower-cased), and reads back as written
        assert_eq!(mine, boss_ids());
        assert!(store.text("runs/run1/ids/m00001.json").is_some());
        assert_eq!(read_ids(&store, &settings, RUN, "m00001").await.unwrap(), Some(boss_ids()));
        // AND a part not applied yet has none
        assert_eq!(read_ids(&store, &settings, RUN, "m00002").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_redelivered_part_rewrites_the_same_ids_object() {
        // GIVEN a part's ids object written once
        let store = MemoryStore::default();
        let settings = Settings::default();
        write_ids(&store, &settings, RUN, "m00001", &boss_ids()).await.unwrap();
        let first = store.text("runs/run1/ids/m00001.json");
        // WHEN the redelivered message writes it again with the ids its settled writes found
        write_ids(&store, &settings, RUN, "m00001", &boss_ids()).await.unwrap();
        // THEN it is the same single object
        assert_eq!(store.text("runs/run1/ids/m00001.json"), first);
        assert_eq!(store.objects.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_plan_whose_managers_part_is_applied_gets_the_managers_ids_without_asking_nerm() {
        // GIVEN part m00001 applied (its ids object holds the manager) and a message whose plan's
        // manager that part created
        let store = MemoryStore::default();
        let settings = Settings::default();
        write_ids(&store, &settings, RUN, "m00001", &boss_ids()).await.unwrap();
        let msg = message(
            "m00002",
            vec![plan("ann@example.com", "E2", Some(("BOSS@example.com", "E1")))],
            &[("boss@example.com", "m00001")],
        );
        // WHEN the provisioner seeds its ids before applying
        let mut ids = Ids::from_plans(&msg.items);
        let found = seed_manager_ids(&store, &settings, &msg, &mut ids).await.unwrap();
        // THEN the manager's user and profile ids are known, nothing waits, nothing is looked up
        assert_eq!(ids.users.get("boss@example.com").map(String::as_str), Some("u-boss"));
        assert_eq!(ids.profiles.get("E1").map(String::as_str), Some("p-boss"));
        assert_eq!(found, ManagerIds { parts_read: 1, ..ManagerIds::default() });
        assert_eq!(found.missing(false), MissingManager::Wait);
    }

    #[tokio::test]
    async fn a_plan_whose_managers_part_is_not_applied_yet_waits_instead_of_looking_it_up() {
        // GIVEN no ids object for m00001 yet, and a message whose plan's manager it creates
        let store = MemoryStore::default();
        let settings = Settings::default();
        let msg = message(
            "m00002",
            vec![plan("ann@example.com", "E2", Some(("boss@example.com", "E1")))],
            &[("boss@example.com", "m00001")],
        );
        // WHEN the provisioner seeds its ids before applying
        let mut ids = Ids::from_plans(&msg.items);
        let found = seed_manager_ids(&store, &settings, &msg, &mut ids).await.unwrap();
        // THEN the plan waits for m00001 (no NERM lookup), except on the last wait, which looks
        // the manager up in NERM so nothing is lost if m00001 never gets applied
        assert_eq!(found.waiting_for, BTreeSet::from(["m00001".to_string()]));
        assert!(found.look_up.is_empty());
        assert_eq!(found.clone().missing(false), MissingManager::Wait);
        assert_eq!(found.missing(true), MissingManager::LookUp);
    }

    #[tokio::test]
    async fn a_manager_no_ids_object_can_give_is_looked_up_and_only_that_one() {
        // GIVEN a message with three plans: one whose manager's part is not in the message (a v1
        // message, or a manager queued after it), one whose manager's part ended without it
        // (the manager's own plan failed), one whose manager is in the same message
        let store = MemoryStore::default();
        let settings = Settings::default();
        write_ids(&store, &settings, RUN, "m00001", &PartIds::default()).await.unwrap();
        let msg = message(
            "m00002",
            vec![
                plan("ann@example.com", "E2", Some(("later@example.com", "E9"))),
                plan("bob@example.com", "E3", Some(("failed@example.com", "E8"))),
                plan("cat@example.com", "E4", Some(("dan@example.com", "E5"))),
                plan("dan@example.com", "E5", None),
            ],
            &[("failed@example.com", "m00001")],
        );
        // WHEN the provisioner seeds its ids before applying
        let mut ids = Ids::from_plans(&msg.items);
        let found = seed_manager_ids(&store, &settings, &msg, &mut ids).await.unwrap();
        // THEN just the first two managers are looked up in NERM; nothing waits
        let want: HashSet<String> = ["later@example.com".to_string(), "failed@example.com".to_string()].into();
        assert!(found.waiting_for.is_empty());
        assert_eq!(found.clone().missing(false), MissingManager::LookUpOnly(want.clone()));
        assert_eq!(found.look_up, want);
    }

    #[test]
    fn the_ingest_names_only_managers_created_by_another_part() {
        // GIVEN the parts of the managers queued so far
        let parts: BTreeMap<String, String> =
            BTreeMap::from([("boss@example.com".into(), "m00001".into()), ("dan@example.com".into(), "m00002".into())]);
        // WHEN a message of part m00002 is built with a plan managed by each, one by a manager
        // NERM already had (its id travels in the plan), one by a manager not queued yet
        let mut known = plan("eve@example.com", "E6", None);
        known.ops.push(Op::SetUserManager {
            manager_login: "old@example.com".into(),
            manager_user_id: Some("u-old".into()),
            existing_link_id: None,
        });
        let plans = vec![
            plan("ann@example.com", "E2", Some(("Boss@Example.com", "E1"))),
            plan("cat@example.com", "E4", Some(("dan@example.com", "E5"))),
            plan("fay@example.com", "E7", Some(("later@example.com", "E9"))),
            known,
        ];
        let managers = managers_of(&plans, "m00002", &parts);
        // THEN only the manager from the other part is named
        assert_eq!(managers, BTreeMap::from([("boss@example.com".to_string(), "m00001".to_string())]));
    }
}
