//! The provisioner half, one work message at a time, top to bottom: load its plans, skip a part
//! reported before, apply, record the ids, claim what the part reports, write the part, then
//! advance the run (the links wave once every records part is in, the report once every row is).

use std::collections::HashSet;

use super::ids::{PartIds, read_run_ids, write_ids};
use super::message::{Stage, WorkMessage, load_plans};
use super::{PartStats, Pipeline, advance, links, write_part};
use crate::engine::apply::{MissingManager, remaining};
use crate::engine::run::outcome_row;
use crate::engine::{Applier, EmployeePlan, Ids, ItemError, Op};
use crate::nerm::{ClientStats, NermClient};
use crate::ports::{Notifier, ObjectStore, PortError, WorkQueue};
use crate::report::{Outcome, RowReport};

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
pub async fn provision<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    p: &Pipeline<'_, S, Q, N>,
    client: &NermClient,
    mut msg: WorkMessage,
    last_attempt: bool,
) -> Result<(), ProvisionError> {
    let (run, part) = (msg.run_id.clone(), msg.part.clone());
    let storage = |e: PortError| ProvisionError::Storage(e, run.clone(), part.clone());
    load_plans(p.store, &mut msg).await.map_err(storage)?;
    // A part an earlier receive reported without a failure needs nothing more from NERM; one
    // with failed rows (say, its last receive before the DLQ, now redriven) is applied again.
    let earlier = standing(p, &msg).await.map_err(storage)?;
    if let Some((d, true)) = &earlier
        && !d.failed()
    {
        tracing::warn!(run_id = %run, part = %part, "this part was reported before: nothing to do");
        advance(p, &run, false).await.map_err(storage)?;
        return Ok(());
    }
    let before = client.stats();
    let applied = apply(p, client, &msg).await.map_err(storage)?;
    record_stats(p, &msg, &client.stats().since(&before)).await.map_err(storage)?;
    let all_failed = applied.all_failed();
    if all_failed.is_some() && !last_attempt {
        return Err(ProvisionError::AllFailed { run_id: run, part, first_error: all_failed.unwrap_or_default() });
    }
    // The part's employees exist now (those whose writes went through): the links wave reads
    // their ids, so they are written before the part is reported.
    if msg.stage == Stage::Records {
        let ids = PartIds::of(&msg.items, &applied.ids);
        write_ids(p.store, p.settings, &run, &part, &ids).await.map_err(storage)?;
    }
    let ours = applied.decision(&msg.items);
    let decision = claim(p, &msg, ours, earlier).await.map_err(storage)?;
    write_part(p.store, p.settings, &run, &part, &decision.rows).await.map_err(storage)?;
    // (a replaced part of as many rows has the same key: it was just overwritten)
    if let Some(old) = decision.replaces.filter(|old| *old != p.settings.part_key(&run, &part, decision.rows.len())) {
        p.store.delete(&old).await.map_err(storage)?;
    }
    advance(p, &run, false).await.map_err(storage)?;
    match all_failed {
        // The last receive: the rows are reported failed, and the message goes on to the DLQ.
        Some(first_error) => Err(ProvisionError::AllFailed { run_id: run, part, first_error }),
        None => Ok(()),
    }
}

/// What applying a message came to.
struct Applied {
    /// Per plan: its error, if any.
    errors: Vec<Option<ItemError>>,
    /// Per plan: the links it leaves for the links wave.
    deferred: Vec<Vec<Op>>,
    /// The ids known at the end (the part's employees among them).
    ids: Ids,
}

impl Applied {
    /// The first error, when every plan failed.
    fn all_failed(&self) -> Option<String> {
        let all = !self.errors.is_empty() && self.errors.iter().all(Option::is_some);
        all.then(|| self.errors.iter().flatten().next().map(|e| e.message().to_string()).unwrap_or_default())
    }

    /// The part's rows, and what waits for the links wave (plans whose own writes went through).
    fn decision(self, items: &[EmployeePlan]) -> Decision {
        let mut out = Decision::default();
        for ((plan, error), later) in items.iter().zip(self.errors).zip(self.deferred) {
            match error {
                Some(e) => out.rows.push(outcome_row(plan.clone(), Some(e.message().to_string()))),
                None if later.is_empty() => out.rows.push(outcome_row(plan.clone(), None)),
                None => out.deferred.push(remaining(plan.clone(), later, &self.ids)),
            }
        }
        out
    }
}

/// Applies the message's plans. A records part of a run whose links wave is not queued yet
/// leaves the links to managers the run creates for that wave; any other part applies all of
/// its plans, with the ids of every manager the run created (links wave messages carry them; a
/// records part applied late, or queued by an earlier build, reads them from the ids objects).
async fn apply<S: ObjectStore, Q, N>(
    p: &Pipeline<'_, S, Q, N>,
    client: &NermClient,
    msg: &WorkMessage,
) -> Result<Applied, PortError> {
    let mut ids = Ids::from_plans(&msg.items);
    let new_managers = msg.stage == Stage::Records && msg.items.iter().flat_map(|p| &p.ops).any(Op::links_new_manager);
    let late = new_managers && (msg.version < 3 || links::started(p.store, p.settings, &msg.run_id).await?);
    if late {
        let attempt = msg.part.split_once('.').map_or("", |(a, _)| a);
        let run_ids = read_run_ids(p.store, p.settings, &msg.run_id, &format!("{attempt}.m")).await?;
        ids.users.extend(run_ids.users);
        ids.profiles.extend(run_ids.profiles);
    }
    let (plans, deferred): (Vec<EmployeePlan>, Vec<Vec<Op>>) = match new_managers && !late {
        true => msg.items.iter().cloned().map(EmployeePlan::split_new_manager_links).unzip(),
        false => (msg.items.clone(), vec![Vec::new(); msg.items.len()]),
    };
    let applier = Applier::new(client, &msg.target);
    let (errors, ids) = applier.apply_with(&plans, ids, MissingManager::Fail).await;
    Ok(Applied { errors, deferred, ids })
}

/// Every receive's requests count, also one that fails and is retried: one stats object each.
async fn record_stats<S: ObjectStore, Q, N>(
    p: &Pipeline<'_, S, Q, N>,
    msg: &WorkMessage,
    spent: &ClientStats,
) -> Result<(), PortError> {
    let stats = serde_json::to_vec(&PartStats::from_client(spent)).unwrap_or_default();
    let key = format!("{}{}-{:016x}.json", p.settings.stats_prefix(&msg.run_id), msg.part, rand::random::<u64>());
    p.store.put(&key, stats, "application/json").await
}

/// What a receive of a part reports: its rows, and the plans whose links to new managers wait
/// for the links wave (reported by that wave's parts).
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct Decision {
    pub rows: Vec<RowReport>,
    #[serde(default)]
    pub deferred: Vec<EmployeePlan>,
    /// The report part an earlier decision wrote, to delete once this one's is written.
    #[serde(skip)]
    pub replaces: Option<String>,
}

impl Decision {
    fn failed(&self) -> bool {
        self.rows.iter().any(|r| r.outcome == Outcome::Failed)
    }

    /// The claim object's body.
    fn to_body(&self) -> Result<Vec<u8>, PortError> {
        serde_json::to_vec(self).map_err(|e| PortError::new("claim", e.to_string(), false))
    }

    pub(super) fn parse(key: &str, bytes: &[u8]) -> Result<Decision, PortError> {
        serde_json::from_slice(bytes).map_err(|e| PortError::new("claim", format!("{key}: {e}"), false))
    }

    /// This decision, replacing `earlier` (which had failed rows): what `earlier` left for the
    /// links wave stays there (the wave may be queued already), so it is not reported here.
    fn replacing(mut self, earlier: Decision, earlier_part: String) -> Decision {
        let waiting: HashSet<(u64, String)> = earlier.deferred.iter().map(|p| (p.line, p.key.clone())).collect();
        self.rows.retain(|r| !waiting.contains(&(r.line, r.employee_key.clone())));
        self.deferred.retain(|p| !waiting.contains(&(p.line, p.key.clone())));
        self.deferred.extend(earlier.deferred);
        self.replaces = Some(earlier_part);
        self
    }
}

/// The first receive to get here decides what the part reports and what waits; a later receive
/// (SQS delivers at least once) repeats that decision, so no row is reported twice. A decision
/// with failed rows is replaced, and its report part with it.
async fn claim<S: ObjectStore, Q, N>(
    p: &Pipeline<'_, S, Q, N>,
    msg: &WorkMessage,
    ours: Decision,
    earlier: Option<(Decision, bool)>,
) -> Result<Decision, PortError> {
    let key = p.settings.claim_key(&msg.run_id, &msg.part);
    if let Some((earlier, _)) = earlier.filter(|(d, _)| d.failed()) {
        let earlier_part = p.settings.part_key(&msg.run_id, &msg.part, earlier.rows.len());
        let ours = ours.replacing(earlier, earlier_part);
        p.store.put(&key, ours.to_body()?, "application/json").await?;
        return Ok(ours);
    }
    if p.store.put_if_absent(&key, ours.to_body()?, "application/json").await? {
        return Ok(ours);
    }
    let body = p
        .store
        .get(&key)
        .await?
        .ok_or_else(|| PortError::new("claim", format!("{key} vanished after it was found taken"), true))?;
    let earlier = Decision::parse(&key, &body)?;
    tracing::warn!(
        run_id = %msg.run_id,
        part = %msg.part,
        rows = earlier.rows.len(),
        deferred = earlier.deferred.len(),
        "this part was received before: reporting what that receive decided"
    );
    Ok(earlier)
}

/// What an earlier receive of the part decided, and whether it wrote the report part.
async fn standing<S: ObjectStore, Q, N>(
    p: &Pipeline<'_, S, Q, N>,
    msg: &WorkMessage,
) -> Result<Option<(Decision, bool)>, PortError> {
    let key = p.settings.claim_key(&msg.run_id, &msg.part);
    let Some(bytes) = p.store.get(&key).await? else {
        return Ok(None);
    };
    let d = Decision::parse(&key, &bytes)?;
    let written = p.store.get(&p.settings.part_key(&msg.run_id, &msg.part, d.rows.len())).await?.is_some();
    Ok(Some((d, written)))
}
