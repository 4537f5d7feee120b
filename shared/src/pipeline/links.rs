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
const STALE_CLAIM_MS: u64 = 16 * 60 * 1000;

/// The content of `links.json`.
#[derive(Debug, Serialize, Deserialize)]
struct LinksMarker {
    /// `false` while the messages are being sent.
    queued: bool,
    at: String,
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
    let marker = LinksMarker { queued: true, at: crate::report::now_rfc3339(), messages: count };
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
    let now = crate::report::now_rfc3339();
    let ours = to_body(&LinksMarker { queued: false, at: now.clone(), messages: 0 })?;
    if p.store.put_if_absent(&key, ours.clone(), "application/json").await? {
        return Ok(true);
    }
    let Some(body) = p.store.get(&key).await? else { return Ok(false) };
    let Ok(theirs) = serde_json::from_slice::<LinksMarker>(&body) else { return Ok(false) };
    let abandoned = take_over || crate::report::millis_between(&theirs.at, &now) > STALE_CLAIM_MS;
    if theirs.queued || !abandoned {
        return Ok(false);
    }
    tracing::warn!(run_id = %manifest.run_id, since = %theirs.at, "taking over the links wave of someone who died queueing it");
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
