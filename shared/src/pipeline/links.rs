//! The links wave: the links to managers a run creates, queued once every records part of the
//! run is applied.
//!
//! A manager the run creates has no id until its own plan is applied, and it may be in any
//! part of the file. So the records wave leaves those links aside (each part's claim keeps
//! them, see [`super::provision`]); when the last records part is written, whoever notices
//! (the provisioner that wrote it, or the ingest if every part was done before its manifest)
//! reads the deferred links and the run's ids objects, writes the managers' ids into the
//! links, and queues them in messages of a full bulk call each. Its report rows are written by
//! those messages' parts.
//!
//! `{state}{run}/links.json` says the wave was queued. It is claimed before the messages are
//! sent (two provisioners finishing the last parts at once queue the wave once) and marked
//! queued after; a claim left by someone who died while sending is taken over once it is older
//! than any Lambda lives, or at once by the caller's own retry. Messages sent twice are
//! harmless: their parts have the same names, and each part is reported once.

use futures::stream::{self, StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::message::{self, Stage, WorkMessage};
use super::{Manifest, Pipeline, ids::read_run_ids, provision::Decision};
use crate::engine::EmployeePlan;
use crate::ports::{Notifier, ObjectStore, PortError, WorkQueue};

/// Claim objects read at once.
const READS_AT_ONCE: usize = 8;
/// A claim older than this (a Lambda lives 15 minutes at most) belongs to someone who died.
const STALE_CLAIM: time::Duration = time::Duration::minutes(16);

/// The content of `links.json`.
#[derive(Debug, Serialize, Deserialize)]
struct LinksMarker {
    /// `false` while the messages are being sent.
    queued: bool,
    /// When it was claimed, or queued (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    at: time::OffsetDateTime,
    messages: usize,
}

/// The part names of the run's records messages begin with this.
pub(super) fn records_parts(manifest: &Manifest) -> String {
    format!("{}.m", manifest.attempt)
}

/// Whether the links wave of `run` was (or is being) queued: a records part applied after that
/// applies its links itself.
pub(super) async fn started<S: ObjectStore>(
    store: &S,
    settings: &super::Settings,
    run: &str,
) -> Result<bool, PortError> {
    Ok(store.get(&settings.links_key(run)).await?.is_some())
}

/// Queues the run's links wave if every records part is applied and nobody queued it yet.
pub(super) async fn queue_if_due<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    p: &Pipeline<'_, S, Q, N>,
    manifest: &Manifest,
    parts: &[String],
    take_over: bool,
) -> Result<(), PortError> {
    let Some(target) = &manifest.target else { return Ok(()) };
    if manifest.messages == 0 || !records_applied(p, manifest, parts) || !claim(p, manifest, take_over).await? {
        return Ok(());
    }
    let plans = deferred_links(p, manifest).await?;
    let ids = read_run_ids(p.store, p.settings, &manifest.run_id, &records_parts(manifest)).await?;
    let plans: Vec<EmployeePlan> = plans
        .into_iter()
        .map(|mut plan| {
            ids.resolve_managers(&mut plan);
            plan
        })
        .collect();
    let prefix = format!("{}.l", manifest.attempt);
    let run = manifest.run_id.as_str();
    let per_message = p.settings.items_per_message;
    let messages = WorkMessage::batch(run, (&prefix, 0), Stage::ManagerLinks, target, plans, per_message);
    let count = messages.len();
    tracing::info!(run_id = run, messages = count, "every records part is applied: queueing the manager links");
    message::send(p.store, p.queue, p.settings, messages).await?;
    let marker = LinksMarker { queued: true, at: crate::report::now(), messages: count };
    p.store.put(&p.settings.links_key(run), to_body(&marker)?, "application/json").await
}

/// Whether every records message of the run has written its part (`parts`: the run's report
/// parts that count).
fn records_applied<S, Q, N>(p: &Pipeline<'_, S, Q, N>, manifest: &Manifest, parts: &[String]) -> bool {
    let prefix = format!("{}{}", p.settings.parts_prefix(&manifest.run_id), records_parts(manifest));
    parts.iter().filter(|k| k.starts_with(&prefix)).count() as u64 >= manifest.messages
}

/// Takes the duty of queueing the wave: `false` when it is queued, or someone alive is at it.
async fn claim<S: ObjectStore, Q, N>(
    p: &Pipeline<'_, S, Q, N>,
    manifest: &Manifest,
    take_over: bool,
) -> Result<bool, PortError> {
    let key = p.settings.links_key(&manifest.run_id);
    let now = crate::report::now();
    let ours = to_body(&LinksMarker { queued: false, at: now, messages: 0 })?;
    if p.store.put_if_absent(&key, ours.clone(), "application/json").await? {
        return Ok(true);
    }
    let Some(body) = p.store.get(&key).await? else { return Ok(false) };
    let Ok(theirs) = serde_json::from_slice::<LinksMarker>(&body) else { return Ok(false) };
    let abandoned = take_over || now - theirs.at > STALE_CLAIM;
    if theirs.queued || !abandoned {
        return Ok(false);
    }
    tracing::warn!(run_id = %manifest.run_id, since = %crate::report::rfc3339(theirs.at), "taking over the links wave of someone who died queueing it");
    p.store.put(&key, ours, "application/json").await?;
    Ok(true)
}

/// The links every records part left for the second wave, in part order.
async fn deferred_links<S: ObjectStore, Q, N>(
    p: &Pipeline<'_, S, Q, N>,
    manifest: &Manifest,
) -> Result<Vec<EmployeePlan>, PortError> {
    let prefix = p.settings.claim_key(&manifest.run_id, &records_parts(manifest));
    let prefix = prefix.strip_suffix(".json").unwrap_or(&prefix);
    let keys = p.store.list(prefix).await?;
    let bodies: Vec<Option<Vec<u8>>> =
        stream::iter(keys.iter().map(|k| p.store.get(k))).buffered(READS_AT_ONCE).try_collect().await?;
    let mut plans = Vec::new();
    for (key, body) in keys.iter().zip(bodies) {
        if let Some(body) = body {
            plans.extend(Decision::parse(key, &body)?.deferred);
        }
    }
    Ok(plans)
}

fn to_body(marker: &LinksMarker) -> Result<Vec<u8>, PortError> {
    serde_json::to_vec(marker).map_err(|e| PortError::new("links", e.to_string(), false))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::engine::{Op, PlanKind, Target};
    use crate::login::LoginKey;
    use crate::pipeline::ids::{PartIds, write_ids};
    use crate::pipeline::{Settings, write_part};
    use crate::ports::memory::{MemoryNotifier, MemoryQueue, MemoryStore};

    const RUN: &str = "run1";

    fn manifest() -> Manifest {
        Manifest {
            run_id: RUN.into(),
            source_key: "incoming/hr.csv".into(),
            dry_run: false,
            started_at: time::macros::datetime!(2026-12-07 20:00 UTC),
            attempt: "a1".into(),
            expected_rows: 2,
            messages: 2,
            warnings: vec![],
            quarantined: None,
            planned: BTreeMap::new(),
            target: Some(Target {
                profile_type_id: "t".into(),
                key_attribute: "employee_id".into(),
                manager_attribute: Some("manager".into()),
                self_relationship: Some("owner".into()),
                concurrency: 2,
            }),
        }
    }

    /// Ann, created by part a1.m00000, whose manager Boss part a1.m00001 created.
    fn ann_waiting() -> EmployeePlan {
        EmployeePlan {
            line: 2,
            login: "ann@example.com".into(),
            key: "E2".into(),
            user_id: Some("u-ann".into()),
            profile_id: Some("p-ann".into()),
            kind: PlanKind::Create,
            ops: vec![
                Op::SetProfileManager {
                    manager_login: "Boss@example.com".into(),
                    manager_key: "E1".into(),
                    manager_profile_id: None,
                },
                Op::SetUserManager {
                    manager_login: "Boss@example.com".into(),
                    manager_user_id: None,
                    existing_link_id: None,
                },
            ],
            changes: vec!["user created".into()],
            warnings: vec![],
        }
    }

    /// The run's state once both records parts are applied: Ann's links deferred by part 0.
    async fn records_applied(store: &MemoryStore, settings: &Settings) {
        let decision = Decision { deferred: vec![ann_waiting()], ..Decision::default() };
        store.insert(&settings.claim_key(RUN, "a1.m00000"), serde_json::to_vec(&decision).unwrap());
        store.insert(&settings.claim_key(RUN, "a1.m00001"), serde_json::to_vec(&Decision::default()).unwrap());
        let boss = PartIds {
            users: BTreeMap::from([(LoginKey::of("boss@example.com"), "u-boss".into())]),
            profiles: BTreeMap::from([("E1".into(), "p-boss".into())]),
        };
        write_ids(store, settings, RUN, "a1.m00000", &PartIds::default()).await.unwrap();
        write_ids(store, settings, RUN, "a1.m00001", &boss).await.unwrap();
        write_part(store, settings, RUN, "a1.m00000", &[]).await.unwrap();
        write_part(store, settings, RUN, "a1.m00001", &[]).await.unwrap();
    }

    fn sent(queue: &MemoryQueue) -> Vec<WorkMessage> {
        queue.sent.lock().unwrap().iter().map(|b| WorkMessage::parse(b).unwrap()).collect()
    }

    async fn parts(store: &MemoryStore, settings: &Settings) -> Vec<String> {
        store.list(&settings.parts_prefix(RUN)).await.unwrap()
    }

    #[tokio::test]
    async fn the_links_wave_goes_out_once_with_the_managers_ids_when_every_records_part_is_in() {
        // GIVEN both records parts applied, the first leaving Ann's links to her new manager
        let (store, queue, notifier, settings) =
            (MemoryStore::default(), MemoryQueue::default(), MemoryNotifier::default(), Settings::default());
        let p = Pipeline { store: &store, queue: &queue, notifier: &notifier, settings: &settings };
        records_applied(&store, &settings).await;
        // WHEN two provisioners see the run complete, one after the other
        let all = parts(&store, &settings).await;
        queue_if_due(&p, &manifest(), &all, false).await.unwrap();
        queue_if_due(&p, &manifest(), &all, false).await.unwrap();
        // THEN one links message went out, carrying Ann with her manager's ids ...
        let msgs = sent(&queue);
        assert_eq!(msgs.len(), 1, "{msgs:#?}");
        assert_eq!((msgs[0].stage, msgs[0].part.as_str()), (Stage::ManagerLinks, "a1.l00000"));
        assert_eq!(msgs[0].items.len(), 1);
        assert!(msgs[0].items[0].ops.iter().all(|op| !op.links_new_manager()), "{:?}", msgs[0].items[0].ops);
        assert!(msgs[0].items[0].ops.contains(&Op::SetUserManager {
            manager_login: "Boss@example.com".into(),
            manager_user_id: Some("u-boss".into()),
            existing_link_id: None
        }));
        // ... and the wave is marked queued
        let marker: LinksMarker =
            serde_json::from_slice(&store.get(&settings.links_key(RUN)).await.unwrap().unwrap()).unwrap();
        assert!(marker.queued && marker.messages == 1);
    }

    #[tokio::test]
    async fn no_links_go_out_while_a_records_part_is_missing() {
        // GIVEN only the first records part written
        let (store, queue, notifier, settings) =
            (MemoryStore::default(), MemoryQueue::default(), MemoryNotifier::default(), Settings::default());
        let p = Pipeline { store: &store, queue: &queue, notifier: &notifier, settings: &settings };
        write_part(&store, &settings, RUN, "a1.m00000", &[]).await.unwrap();
        // WHEN the run is advanced
        queue_if_due(&p, &manifest(), &parts(&store, &settings).await, false).await.unwrap();
        // THEN nothing is queued or claimed
        assert!(sent(&queue).is_empty());
        assert!(!started(&store, &settings, RUN).await.unwrap());
    }

    #[tokio::test]
    async fn a_claim_left_by_a_sender_who_died_is_taken_over_when_stale_or_by_its_own_retry() {
        // GIVEN both records parts applied, and a claim of the wave that was never marked queued
        let (store, queue, notifier, settings) =
            (MemoryStore::default(), MemoryQueue::default(), MemoryNotifier::default(), Settings::default());
        let p = Pipeline { store: &store, queue: &queue, notifier: &notifier, settings: &settings };
        records_applied(&store, &settings).await;
        let all = parts(&store, &settings).await;
        let fresh = LinksMarker { queued: false, at: crate::report::now(), messages: 0 };
        store.insert(&settings.links_key(RUN), serde_json::to_vec(&fresh).unwrap());
        // WHEN another provisioner advances the run while the claim is fresh: nothing
        queue_if_due(&p, &manifest(), &all, false).await.unwrap();
        assert!(sent(&queue).is_empty(), "a fresh claim may be someone still sending");
        // ... but the caller's own retry (it knows the claimant died) sends the wave
        queue_if_due(&p, &manifest(), &all, true).await.unwrap();
        assert_eq!(sent(&queue).len(), 1);
        // AND a claim older than any Lambda lives is taken over by anyone
        queue.sent.lock().unwrap().clear();
        let stale = LinksMarker { queued: false, at: time::macros::datetime!(2026-12-07 0:00 UTC), messages: 0 };
        store.insert(&settings.links_key(RUN), serde_json::to_vec(&stale).unwrap());
        queue_if_due(&p, &manifest(), &all, false).await.unwrap();
        assert_eq!(sent(&queue).len(), 1);
    }
}
