//! Ids objects: how the links wave learns the NERM ids of the managers a run created, without
//! asking NERM. After applying a records message a provisioner writes the user and profile ids
//! of its employees to `{state}{run}/ids/{part}.json`, before it reports the part; once every
//! records part is applied, the links wave reads them all (S3 requests do not spend NERM's rate
//! limit), and so does a records part applied after the links wave was queued.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::Settings;
use crate::engine::EmployeePlan;
use crate::engine::Ids;
use crate::login::LoginKey;
use crate::ports::{ObjectStore, PortError};

/// Ids objects read at once.
const READS_AT_ONCE: usize = 8;

/// What one part of a run left in NERM: the ids of its employees' users and profiles that exist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartIds {
    /// Login → user id.
    pub users: BTreeMap<LoginKey, String>,
    /// Employee key → profile id.
    pub profiles: BTreeMap<String, String>,
}

impl PartIds {
    /// The ids of the employees of `plans` among `ids` (what an apply answered).
    pub fn of(plans: &[EmployeePlan], ids: &Ids) -> PartIds {
        let mut out = PartIds::default();
        for p in plans {
            let login = LoginKey::of(&p.login);
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

/// The ids of every employee the records parts under `parts` (a prefix of part names, see
/// [`Settings::ids_key`]) left in NERM.
pub async fn read_run_ids<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    run: &str,
    parts: &str,
) -> Result<Ids, PortError> {
    let prefix = settings.ids_key(run, parts);
    let prefix = prefix.strip_suffix(".json").unwrap_or(&prefix);
    let keys = store.list(prefix).await?;
    let bodies: Vec<Option<Vec<u8>>> =
        stream::iter(keys.iter().map(|k| store.get(k))).buffered(READS_AT_ONCE).try_collect().await?;
    let mut ids = Ids::default();
    for (key, body) in keys.iter().zip(bodies) {
        match serde_json::from_slice::<PartIds>(&body.unwrap_or_default()) {
            Ok(part) => part.add_to(&mut ids),
            Err(e) => {
                tracing::warn!(key = %key, error = %e, "unreadable ids object; its employees count as not created")
            }
        }
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::PlanKind;
    use crate::ports::memory::MemoryStore;

    const RUN: &str = "run1";

    fn plan(login: &str, key: &str) -> EmployeePlan {
        EmployeePlan {
            line: 2,
            login: login.into(),
            key: key.into(),
            user_id: None,
            profile_id: None,
            kind: PlanKind::Create,
            ops: vec![],
            changes: vec![],
            warnings: vec![],
        }
    }

    fn boss_ids() -> PartIds {
        PartIds {
            users: BTreeMap::from([(LoginKey::of("boss@example.com"), "u-boss".into())]),
            profiles: BTreeMap::from([("E1".into(), "p-boss".into())]),
        }
    }

    #[tokio::test]
    async fn an_applied_part_writes_the_ids_of_its_employees_and_another_part_reads_them_back() {
        // GIVEN a part whose apply answered the ids of its employee and of a manager it looked up
        let store = MemoryStore::default();
        let settings = Settings::default();
        let mut ids = Ids::default();
        ids.users.insert(LoginKey::of("boss@example.com"), "u-boss".into());
        ids.profiles.insert("E1".into(), "p-boss".into());
        ids.users.insert(LoginKey::of("elsewhere@example.com"), "u-other".into());
        // WHEN it writes its ids object
        let mine = PartIds::of(&[plan("Boss@Example.com", "E1")], &ids);
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
    async fn the_links_wave_reads_the_ids_of_every_records_part_of_the_run() {
        // GIVEN two records parts applied (one of them with an unreadable ids object) and a part
        // of another attempt
        let store = MemoryStore::default();
        let settings = Settings::default();
        write_ids(&store, &settings, RUN, "a1.m00000", &boss_ids()).await.unwrap();
        let ann = PartIds {
            users: BTreeMap::from([(LoginKey::of("ann@example.com"), "u-ann".into())]),
            ..PartIds::default()
        };
        write_ids(&store, &settings, RUN, "a1.m00001", &ann).await.unwrap();
        store.insert("runs/run1/ids/a1.m00002.json", "not json");
        write_ids(
            &store,
            &settings,
            RUN,
            "zz.m00000",
            &PartIds {
                users: BTreeMap::from([(LoginKey::of("old@example.com"), "u-old".into())]),
                ..PartIds::default()
            },
        )
        .await
        .unwrap();
        // WHEN the links wave reads the ids of attempt a1's records parts
        let ids = read_run_ids(&store, &settings, RUN, "a1.m").await.unwrap();
        // THEN it knows the employees of both readable parts, and nothing of the other attempt
        assert_eq!(ids.users.get("boss@example.com").map(String::as_str), Some("u-boss"));
        assert_eq!(ids.users.get("ann@example.com").map(String::as_str), Some("u-ann"));
        assert_eq!(ids.profiles.get("E1").map(String::as_str), Some("p-boss"));
        assert_eq!(ids.users.len(), 2);
    }
}
