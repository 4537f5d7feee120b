//! The provisioner half: apply one message's plans, report each employee, re-queue what waits
//! for a manager, and finish the run when its last row is reported.

use super::ids::{PartIds, managers_to_resolve, seed_manager_ids, write_ids};
use super::message::WorkMessage;
use super::{PartStats, Settings, finish_if_complete, write_part};
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
    let mut waiting: Vec<EmployeePlan> = Vec::new();
    for (plan, r) in msg.items.iter().cloned().zip(results) {
        match r {
            None => rows.push(outcome_row(plan, None)),
            Some(ItemError::Failed(e)) => rows.push(outcome_row(plan, Some(e))),
            Some(ItemError::Waiting(why)) if msg.attempt + 1 < settings.max_wait_attempts => {
                waiting.push(waiting_part(plan, &ids, &why));
            }
            Some(ItemError::Waiting(why)) => {
                rows.push(outcome_row(plan, Some(format!("{why}: it never appeared in NERM"))));
            }
        }
    }
    if !waiting.is_empty() {
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
    finish_if_complete(store, notifier, settings, &msg.run_id).await.map_err(storage)?;
    if all_failed {
        // The last receive: the rows are reported failed, and the message goes on to the DLQ.
        return Err(ProvisionError::AllFailed { run_id: msg.run_id.clone(), part: msg.part.clone(), first_error });
    }
    Ok(())
}

fn waiting_part(plan: EmployeePlan, ids: &Ids, why: &str) -> EmployeePlan {
    tracing::info!(login = %plan.login, reason = why, "plan waits for its manager");
    crate::engine::apply::waiting_rest(plan, ids)
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
