//! The provisioner half: apply one message's plans, report each employee, re-queue what waits
//! for a manager, and finish the run when its last row is reported.

use super::ids::{PartIds, managers_to_resolve, seed_manager_ids, write_ids};
use super::message::WorkMessage;
use super::{PartStats, Settings, finish_if_complete, write_part};
use crate::engine::apply::waiting_rest;
use crate::engine::run::outcome_row;
use crate::engine::{Applier, EmployeePlan, Ids, ItemError};
use crate::nerm::NermClient;
use crate::ports::{Notifier, ObjectStore, PortError, WorkQueue};
use crate::report::RowReport;

/// What the provisioner needs to know about the run's NERM side (from the resolved config).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Target {
    pub profile_type_id: String,
    pub key_attribute: String,
    pub manager_attribute: Option<String>,
    pub self_relationship: Option<String>,
    pub concurrency: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// Nothing in the message could be applied (NERM down, token refused): SQS retries it, and
    /// after the last receive it goes to the DLQ with its rows reported as failed.
    #[error("run {run_id} part {part}: no employee could be provisioned ({first_error})")]
    AllFailed { run_id: String, part: String, first_error: String },
    #[error("run {run_id} part {part}: {0}", run_id = .1, part = .2)]
    Storage(PortError, String, String),
}

/// Applies one message. `last_attempt`: SQS will not deliver it again (its receive count
/// reached the redrive limit), so failures are reported now instead of retried.
#[allow(clippy::too_many_arguments)]
pub async fn provision<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    store: &S,
    queue: &Q,
    notifier: &N,
    client: &NermClient,
    settings: &Settings,
    msg: WorkMessage,
    last_attempt: bool,
) -> Result<(), ProvisionError> {
    let storage = |e: PortError| ProvisionError::Storage(e, msg.run_id.clone(), msg.part.clone());
    // A part an earlier receive reported without a failure needs nothing more from NERM; one
    // with failed rows (say, its last receive before the DLQ, now redriven) is applied again.
    let earlier = standing(store, settings, &msg).await.map_err(storage)?;
    if let Some((d, true)) = &earlier
        && !d.failed()
    {
        tracing::warn!(run_id = %msg.run_id, part = %msg.part, "this part was reported before: nothing to do");
        finish_if_complete(store, notifier, settings, &msg.run_id).await.map_err(storage)?;
        return Ok(());
    }
    let before = client.stats();
    let target = &msg.target;
    let applier = Applier::new(
        client,
        &target.profile_type_id,
        &target.key_attribute,
        target.manager_attribute.as_deref(),
        target.self_relationship.as_deref(),
        target.concurrency,
    );
    // Managers created by other parts of the run: their ids come from those parts' ids
    // objects; a part not applied yet makes its plans wait, and on the last wait whatever is
    // still missing is looked up in NERM.
    let mut ids = Ids::from_plans(&msg.items);
    let managers = seed_manager_ids(store, settings, &msg, &mut ids).await.map_err(storage)?;
    if !managers.waiting_for.is_empty() || !managers.look_up.is_empty() {
        tracing::info!(
            run_id = %msg.run_id,
            part = %msg.part,
            ids_read = managers.parts_read,
            waiting_for = ?managers.waiting_for,
            looked_up = managers.look_up.len(),
            "managers of other parts"
        );
    }
    let last_wait = msg.attempt + 1 >= settings.max_wait_attempts;
    let (results, ids) = applier.apply_with(&msg.items, ids, managers.missing(last_wait)).await;
    let all_failed = !msg.items.is_empty() && results.iter().all(|r| matches!(r, Some(ItemError::Failed(_))));
    let first_error = results.iter().flatten().next().map(|e| e.message().to_string()).unwrap_or_default();
    // Every receive's requests count, also one that fails and is retried: one stats object each.
    let stats = serde_json::to_vec(&PartStats::from_client(&client.stats().since(&before))).unwrap_or_default();
    let stats_key = format!("{}{}-{:016x}.json", settings.stats_prefix(&msg.run_id), msg.part, rand::random::<u64>());
    store.put(&stats_key, stats, "application/json").await.map_err(storage)?;
    if all_failed && !last_attempt {
        return Err(ProvisionError::AllFailed { run_id: msg.run_id.clone(), part: msg.part.clone(), first_error });
    }
    // The part's employees exist now (those whose writes went through): other parts read their
    // ids here, so it is written before the part is reported. A re-queued wait creates nobody.
    if msg.attempt == 0 {
        write_ids(store, settings, &msg.run_id, &msg.part, &PartIds::of(&msg.items, &ids)).await.map_err(storage)?;
    }
    let mut rows: Vec<RowReport> = Vec::new();
    let mut waiting: Vec<usize> = Vec::new();
    for (at, (plan, r)) in msg.items.iter().zip(results).enumerate() {
        match r {
            None => rows.push(outcome_row(plan.clone(), None)),
            Some(ItemError::Failed(e)) => rows.push(outcome_row(plan.clone(), Some(e))),
            Some(ItemError::Waiting(why)) if msg.attempt + 1 < settings.max_wait_attempts => {
                tracing::info!(login = %plan.login, reason = why, "plan waits for its manager");
                waiting.push(at);
            }
            Some(ItemError::Waiting(why)) => {
                rows.push(outcome_row(plan.clone(), Some(format!("{why}: it never appeared in NERM"))));
            }
        }
    }
    // The first receive to get here decides what the part reports and what waits; a later
    // receive (SQS delivers at least once) repeats that decision, so no row is reported twice.
    // A decision with failed rows is replaced, and its report part with it.
    let ours = Decision { rows, waiting };
    let (decision, replaced) = match earlier {
        Some((d, _)) if d.failed() => {
            let body = ours.to_body().map_err(storage)?;
            store.put(&settings.claim_key(&msg.run_id, &msg.part), body, "application/json").await.map_err(storage)?;
            (ours, Some(settings.part_key(&msg.run_id, &msg.part, d.rows.len())))
        }
        _ => (claim(store, settings, &msg, ours).await.map_err(storage)?, None),
    };
    let rows = decision.rows;
    let part_key = settings.part_key(&msg.run_id, &msg.part, rows.len());
    // Waits are queued before the part is written: once it is there, they were queued.
    if !decision.waiting.is_empty() && (replaced.is_some() || store.get(&part_key).await.map_err(storage)?.is_none()) {
        let waiting: Vec<EmployeePlan> =
            decision.waiting.iter().map(|at| waiting_rest(msg.items[*at].clone(), &ids)).collect();
        let needed: std::collections::HashSet<String> = waiting.iter().flat_map(managers_to_resolve).collect();
        let next = WorkMessage {
            version: super::message::VERSION,
            run_id: msg.run_id.clone(),
            part: format!("{}w{}", msg.part, msg.attempt + 1),
            attempt: msg.attempt + 1,
            target: msg.target.clone(),
            items: waiting,
            managers: msg
                .managers
                .iter()
                .filter(|(l, _)| needed.contains(*l))
                .map(|(l, p)| (l.clone(), p.clone()))
                .collect(),
        };
        queue.send(vec![next.to_body()], settings.wait_delay_seconds).await.map_err(storage)?;
    }
    write_part(store, settings, &msg.run_id, &msg.part, &rows).await.map_err(storage)?;
    if let Some(old) = replaced.filter(|old| *old != part_key) {
        store.delete(&old).await.map_err(storage)?;
    }
    finish_if_complete(store, notifier, settings, &msg.run_id).await.map_err(storage)?;
    if all_failed {
        // The last receive: the rows are reported failed, and the message goes on to the DLQ.
        return Err(ProvisionError::AllFailed { run_id: msg.run_id.clone(), part: msg.part.clone(), first_error });
    }
    Ok(())
}

/// What a receive of a part reports: its rows, and which of the message's plans (by position)
/// wait for their manager and go on in the part's next message.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Decision {
    rows: Vec<RowReport>,
    waiting: Vec<usize>,
}

impl Decision {
    fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.outcome == crate::report::Outcome::Failed)
    }

    /// The claim object's body.
    fn to_body(&self) -> Result<Vec<u8>, PortError> {
        serde_json::to_vec(self).map_err(|e| PortError::new("claim", e.to_string(), false))
    }
}

/// Stores `ours` as the part's decision unless an earlier receive stored one; returns the one
/// that stands.
async fn claim<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    msg: &WorkMessage,
    ours: Decision,
) -> Result<Decision, PortError> {
    let key = settings.claim_key(&msg.run_id, &msg.part);
    if store.put_if_absent(&key, ours.to_body()?, "application/json").await? {
        return Ok(ours);
    }
    let earlier = read_claim(store, &key, msg.items.len()).await?;
    tracing::warn!(
        run_id = %msg.run_id,
        part = %msg.part,
        rows = earlier.rows.len(),
        waiting = earlier.waiting.len(),
        "this part was received before: reporting what that receive decided"
    );
    Ok(earlier)
}

/// What an earlier receive of the part decided, and whether it wrote the report part.
async fn standing<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    msg: &WorkMessage,
) -> Result<Option<(Decision, bool)>, PortError> {
    let key = settings.claim_key(&msg.run_id, &msg.part);
    let Some(bytes) = store.get(&key).await? else {
        return Ok(None);
    };
    let d = parse_claim(&key, &bytes, msg.items.len())?;
    let written = store.get(&settings.part_key(&msg.run_id, &msg.part, d.rows.len())).await?.is_some();
    Ok(Some((d, written)))
}

async fn read_claim<S: ObjectStore>(store: &S, key: &str, items: usize) -> Result<Decision, PortError> {
    let bytes = store
        .get(key)
        .await?
        .ok_or_else(|| PortError::new("claim", format!("{key} vanished after it was found taken"), true))?;
    parse_claim(key, &bytes, items)
}

fn parse_claim(key: &str, bytes: &[u8], items: usize) -> Result<Decision, PortError> {
    let d: Decision =
        serde_json::from_slice(bytes).map_err(|e| PortError::new("claim", format!("{key}: {e}"), false))?;
    if let Some(bad) = d.waiting.iter().find(|at| **at >= items) {
        return Err(PortError::new("claim", format!("{key}: plan {bad} waits, but the message has {items}"), false));
    }
    Ok(d)
}

impl Target {
    pub fn from_resolved(cfg: &crate::config::ResolvedConfig) -> Target {
        Target {
            profile_type_id: cfg.profile_type().id.clone(),
            key_attribute: cfg.key_attribute().uid.clone(),
            manager_attribute: cfg.manager_attribute().map(|a| a.uid.clone()),
            self_relationship: crate::engine::run::self_relationship(cfg).map(String::from),
            concurrency: cfg.config().nerm.concurrency as usize,
        }
    }
}
