//! The ingest half: one uploaded CSV becomes a run — deduplicated by a run id derived from the
//! object, validated in full and checked against the full-sync threshold before anything is
//! queued, then planned row by row straight into SQS and report parts (memory stays flat).

use std::path::Path;

use sha2::{Digest, Sha256};

use super::message::WorkMessage;
use super::provision::Target;
use super::{Manifest, PartStats, Settings, finish_if_complete, write_part};
use crate::config::MappingConfig;
use crate::engine::run::{PlanSink, RunError, outcome_row, plan_file, resolve};
use crate::engine::snapshot::login_key;
use crate::engine::{EmployeePlan, FileIndex};
use crate::input::LoginIndex;
use crate::nerm::NermClient;
use crate::ports::{Notifier, ObjectStore, PortError, WorkQueue};
use crate::report::RowReport;

/// Object tag asking for a dry run (also: a key under `{input}dry-run/`).
pub const DRY_RUN_TAG: &str = "nerm-sync-dry-run";
/// Object tag overriding the full-sync disable threshold, value [`OVERRIDE_VALUE`].
pub const OVERRIDE_TAG: &str = "nerm-sync-override";
pub const OVERRIDE_VALUE: &str = "allow-mass-disable";
/// A run marker without a manifest older than this (a Lambda lives 15 minutes at most) belongs
/// to an attempt that died.
const STALE_MARKER_MS: u64 = 16 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    /// The key is outside the input prefix or not a `.csv`: not ours.
    Ignored(String),
    /// The same object version was already taken on by an earlier delivery.
    Duplicate { run_id: String },
    /// Planned and queued; provisioners finish it.
    Started { run_id: String, messages: usize, rows: u64 },
    /// Nothing to apply (all unchanged/rejected, or a dry run): the report is complete.
    Finished { run_id: String, rows: u64 },
    /// A full-sync threshold stopped it before any write; the report says why.
    Quarantined { run_id: String, reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file or the config cannot be used: retrying the same object cannot help.
    #[error("run {run_id} for {key} did not start: {message}")]
    Rejected { run_id: String, key: String, message: String },
    /// S3/SQS/NERM trouble: the event may be retried.
    #[error("run {run_id} for {key} failed: {message}")]
    Transient { run_id: String, key: String, message: String },
}

impl IngestError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, IngestError::Transient { .. })
    }
}

/// The run id: the same for every delivery of one object version, different for a new upload.
pub fn run_id(bucket: &str, key: &str, version_or_etag: &str) -> String {
    let mut h = Sha256::new();
    for part in [bucket, key, version_or_etag] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// Whether `key` is an input this deployment should process.
pub fn accepts(settings: &Settings, key: &str) -> Result<(), String> {
    if !key.starts_with(&settings.input_prefix) {
        return Err(format!("{key} is outside the input prefix {}", settings.input_prefix));
    }
    if !key.to_ascii_lowercase().ends_with(".csv") {
        return Err(format!("{key} is not a .csv file"));
    }
    if key.split('/').any(|seg| seg == "..") {
        return Err(format!("{key} contains a '..' segment"));
    }
    Ok(())
}

/// Takes on one uploaded object: dedup, validate, plan, then queue the work. `invocation` is
/// the Lambda request id: Lambda retries an invocation that failed or timed out with the same
/// one, while a duplicate S3 delivery comes with another.
#[allow(clippy::too_many_arguments)]
pub async fn ingest<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    store: &S,
    queue: &Q,
    notifier: &N,
    client: &NermClient,
    config: &MappingConfig,
    settings: &Settings,
    bucket: &str,
    key: &str,
    version_or_etag: &str,
    invocation: &str,
    work_dir: &Path,
) -> Result<IngestOutcome, IngestError> {
    if let Err(why) = accepts(settings, key) {
        return Ok(IngestOutcome::Ignored(why));
    }
    let run = run_id(bucket, key, version_or_etag);
    let transient =
        |e: PortError| IngestError::Transient { run_id: run.clone(), key: key.to_string(), message: e.to_string() };
    // The first read of the object: one that is not there (or cannot be read) stays so on a retry.
    let tags = store.tags(key).await.map_err(|e| match e.retryable {
        true => transient(e),
        false => IngestError::Rejected { run_id: run.clone(), key: key.to_string(), message: e.to_string() },
    })?;
    let tag = |name: &str| tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let dry_run =
        key[settings.input_prefix.len()..].starts_with("dry-run/") || tag(DRY_RUN_TAG).is_some_and(|v| v == "true");
    let mut config = config.clone();
    let overridden = tag(OVERRIDE_TAG) == Some(OVERRIDE_VALUE);
    if overridden {
        config.sync.allow_mass_disable = true;
    }

    let started_at = crate::report::now_rfc3339();
    let marker = serde_json::json!({
        "run_id": run, "key": key, "version": version_or_etag, "started_at": started_at, "invocation": invocation
    });
    let marker_key = settings.marker_key(&run);
    let body = marker.to_string().into_bytes();
    if !store.put_if_absent(&marker_key, body.clone(), "application/json").await.map_err(transient)? {
        // Taken before. Only a run that died before writing its manifest is taken on again:
        // at once by Lambda's retry of the same invocation (the attempt was killed or timed
        // out), and by anyone once its marker is older than any invocation can live.
        let manifest = store.get(&settings.manifest_key(&run)).await.map_err(transient)?;
        let earlier = store
            .get(&marker_key)
            .await
            .map_err(transient)?
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .unwrap_or_default();
        let field = |name: &str| earlier.get(name).and_then(|t| t.as_str()).unwrap_or_default().to_string();
        let retried = !invocation.is_empty() && field("invocation") == invocation;
        let stale = crate::report::millis_between(&field("started_at"), &started_at) > STALE_MARKER_MS;
        if manifest.is_some() || !(retried || stale) {
            return Ok(IngestOutcome::Duplicate { run_id: run });
        }
        tracing::warn!(run_id = %run, retried, "an earlier attempt of this run died before planning; starting it again");
        store.put(&marker_key, body, "application/json").await.map_err(transient)?;
    }

    // From here on a transient failure must let the retried event in: drop the marker again.
    let result = take_on(
        store,
        queue,
        notifier,
        client,
        &config,
        settings,
        &run,
        key,
        dry_run,
        overridden,
        &started_at,
        work_dir,
    )
    .await;
    if let Err(e) = &result
        && e.is_retryable()
        && let Err(de) = store.delete(&settings.marker_key(&run)).await
    {
        tracing::error!(run_id = %run, error = %de, "could not remove the run marker; a retry will be taken as a duplicate");
    }
    result
}

/// The token endpoint refused the PAT: no retry can help until someone fixes the secret, so the
/// run ends like a config error, before any write.
fn credentials_refused(e: &RunError) -> bool {
    matches!(e, RunError::Nerm(crate::nerm::NermError::CredentialsRefused { .. }))
}

/// Report rows per part written by the ingest (unchanged and rejected rows, or a dry run's).
const ROWS_PER_PART: usize = 10_000;
/// Messages queued per send (the adapter splits them into SQS batches of ten).
const MESSAGES_PER_SEND: usize = 100;

/// Where the ingest's planner output goes as it comes: settled rows into report parts of
/// [`ROWS_PER_PART`] rows, plans into messages queued a hundred at a time, so memory does not
/// grow with the file.
struct IngestSink<'a, S, Q> {
    store: &'a S,
    queue: &'a Q,
    settings: &'a Settings,
    run: &'a str,
    /// `None` in a dry run: plans are reported, not queued.
    target: Option<Target>,
    /// Begins every part name of this attempt (see [`Manifest::attempt`]).
    attempt: String,
    rows: Vec<RowReport>,
    parts: usize,
    plans: Vec<EmployeePlan>,
    messages: usize,
    /// Logins that manage someone in the file (from the first pass).
    managers: LoginIndex,
    /// Which part each manager queued so far went to (lower-cased login → part): a message
    /// names the parts its plans' managers come from (see [`super::ids`]).
    manager_parts: std::collections::BTreeMap<String, String>,
}

impl<S: ObjectStore, Q: WorkQueue> IngestSink<'_, S, Q> {
    async fn flush_rows(&mut self) -> Result<(), RunError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let part = format!("{}.ingest{:05}", self.attempt, self.parts);
        self.parts += 1;
        write_part(self.store, self.settings, self.run, &part, &rows).await.map_err(sink_error)
    }

    async fn flush_plans(&mut self) -> Result<(), RunError> {
        let Some(target) = &self.target else { return Ok(()) };
        if self.plans.is_empty() {
            return Ok(());
        }
        let plans = std::mem::take(&mut self.plans);
        let per_message = self.settings.items_per_message;
        let prefix = format!("{}.m", self.attempt);
        let mut messages = WorkMessage::batch_from(self.run, &prefix, target, plans, per_message, self.messages);
        self.messages += messages.len();
        // The parts of the managers in this go first: a plan's manager may come later in it.
        for m in &messages {
            for p in m.items.iter().filter(|p| self.managers.contains(&p.login)) {
                self.manager_parts.insert(login_key(&p.login), m.part.clone());
            }
        }
        for m in &mut messages {
            m.managers = super::ids::managers_of(&m.items, &m.part, &self.manager_parts);
        }
        self.queue.send(messages.iter().map(WorkMessage::to_body).collect(), 0).await.map_err(sink_error)
    }
}

fn sink_error(e: PortError) -> RunError {
    RunError::Sink(e.to_string())
}

impl<S: ObjectStore, Q: WorkQueue> PlanSink for IngestSink<'_, S, Q> {
    fn wants_managers(&self) -> bool {
        self.target.is_some()
    }

    fn file_indexed(&mut self, file: &FileIndex) {
        self.managers = file.managers.clone();
    }

    async fn settled(&mut self, row: RowReport) -> Result<(), RunError> {
        self.rows.push(row);
        if self.rows.len() >= ROWS_PER_PART {
            self.flush_rows().await?;
        }
        Ok(())
    }

    async fn change(&mut self, plan: EmployeePlan) -> Result<(), RunError> {
        if self.target.is_none() {
            return self.settled(outcome_row(plan, None)).await;
        }
        self.plans.push(plan);
        if self.plans.len() >= self.settings.items_per_message * MESSAGES_PER_SEND {
            self.flush_plans().await?;
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
async fn take_on<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    store: &S,
    queue: &Q,
    notifier: &N,
    client: &NermClient,
    config: &MappingConfig,
    settings: &Settings,
    run: &str,
    key: &str,
    dry_run: bool,
    overridden: bool,
    started_at: &str,
    work_dir: &Path,
) -> Result<IngestOutcome, IngestError> {
    let transient =
        |e: PortError| IngestError::Transient { run_id: run.to_string(), key: key.to_string(), message: e.to_string() };
    let local = work_dir.join(format!("{run}.csv"));
    store.download(key, &local).await.map_err(transient)?;
    let progress = |msg: &str| tracing::info!(run_id = run, "{msg}");
    let mut sink = IngestSink {
        store,
        queue,
        settings,
        run,
        target: None,
        attempt: format!("{:06x}", rand::random::<u32>() & 0xff_ffff),
        rows: Vec::new(),
        parts: 0,
        plans: Vec::new(),
        messages: 0,
        managers: LoginIndex::default(),
        manager_parts: Default::default(),
    };
    let planned = match resolve(config, client).await {
        Ok(resolved) => {
            sink.target = (!dry_run).then(|| Target::from_resolved(&resolved));
            let planned = plan_file(|| std::fs::File::open(&local), &resolved, client, &mut sink, &progress).await;
            match planned {
                Ok(p) => match (sink.flush_plans().await, sink.flush_rows().await) {
                    (Ok(()), Ok(())) => Ok(p),
                    (Err(e), _) | (_, Err(e)) => Err(e),
                },
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&local);
    let stats = PartStats::from_client(&client.stats());
    let stats_body = serde_json::to_vec(&stats).unwrap_or_default();
    store
        .put(&format!("{}ingest.json", settings.stats_prefix(run)), stats_body, "application/json")
        .await
        .map_err(transient)?;
    let planned = match planned {
        Ok(p) => p,
        Err(RunError::Threshold(t)) => {
            // Quarantine: nothing applied, the report says why, an operator can override.
            let reason = format!(
                "{t}. To apply anyway, upload the file again with the object tag {OVERRIDE_TAG}={OVERRIDE_VALUE}"
            );
            let manifest = Manifest {
                quarantined: Some(reason.clone()),
                ..empty_manifest(run, key, dry_run, started_at, &sink.attempt)
            };
            put_manifest(store, settings, &manifest).await.map_err(transient)?;
            finish_if_complete(store, notifier, settings, run).await.map_err(transient)?;
            return Ok(IngestOutcome::Quarantined { run_id: run.to_string(), reason });
        }
        Err(e @ (RunError::Nerm(_) | RunError::Report(_) | RunError::Sink(_))) if !credentials_refused(&e) => {
            return Err(IngestError::Transient {
                run_id: run.to_string(),
                key: key.to_string(),
                message: e.to_string(),
            });
        }
        Err(e) => {
            // A file or config error: report it as the run's only outcome.
            let message = e.to_string();
            let manifest = Manifest {
                warnings: vec![format!("the run did not start: {message}")],
                ..empty_manifest(run, key, dry_run, started_at, &sink.attempt)
            };
            put_manifest(store, settings, &manifest).await.map_err(transient)?;
            finish_if_complete(store, notifier, settings, run).await.map_err(transient)?;
            return Err(IngestError::Rejected { run_id: run.to_string(), key: key.to_string(), message });
        }
    };

    let rows = planned.settled + planned.plans;
    let messages = sink.messages;
    let manifest = Manifest {
        run_id: run.to_string(),
        source_key: key.to_string(),
        dry_run,
        started_at: started_at.to_string(),
        attempt: sink.attempt.clone(),
        expected_rows: rows,
        messages: messages as u64,
        warnings: {
            let mut w = planned.warnings;
            if overridden {
                w.push(format!(
                    "the object tag {OVERRIDE_TAG}={OVERRIDE_VALUE} lifted the full-sync disable threshold for this run"
                ));
            }
            w
        },
        quarantined: None,
        planned: planned.planned,
    };
    // Provisioners may have finished every message already: whoever sees the last row
    // reported after the manifest exists completes the run.
    put_manifest(store, settings, &manifest).await.map_err(transient)?;
    finish_if_complete(store, notifier, settings, run).await.map_err(transient)?;
    if messages == 0 {
        return Ok(IngestOutcome::Finished { run_id: run.to_string(), rows });
    }
    Ok(IngestOutcome::Started { run_id: run.to_string(), messages, rows })
}

/// A manifest for a run that applies nothing (quarantined, or never started).
fn empty_manifest(run: &str, key: &str, dry_run: bool, started_at: &str, attempt: &str) -> Manifest {
    Manifest {
        run_id: run.to_string(),
        source_key: key.to_string(),
        dry_run,
        started_at: started_at.to_string(),
        attempt: attempt.to_string(),
        expected_rows: 0,
        messages: 0,
        warnings: vec![],
        quarantined: None,
        planned: Default::default(),
    }
}

async fn put_manifest<S: ObjectStore>(store: &S, settings: &Settings, m: &Manifest) -> Result<(), PortError> {
    let body = serde_json::to_vec_pretty(m).unwrap_or_default();
    store.put(&settings.manifest_key(&m.run_id), body, "application/json").await
}

/// Decodes a key as S3 event notifications carry it: form-encoded, `+` for a space and `%XX`
/// for other bytes (UTF-8). Invalid escapes or bytes are an error, never guessed at.
pub fn decode_s3_key(raw: &str) -> Result<String, String> {
    // `percent_decode_str` passes a malformed escape through as-is; a key we cannot read is an
    // error here, so check every '%' first. '+' becomes a space before decoding so that an
    // escaped plus (%2B) stays a plus.
    let bytes = raw.as_bytes();
    for (i, _) in raw.match_indices('%') {
        let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
        if hex.is_none() {
            return Err(format!("key {raw:?}: '%' at byte {i} is not followed by two hex digits"));
        }
    }
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| format!("key {raw:?} does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_keys_decode_plus_as_space_and_percent_escapes() {
        assert_eq!(decode_s3_key("incoming/hr+export+2026-11.csv").unwrap(), "incoming/hr export 2026-11.csv");
        assert_eq!(decode_s3_key("incoming/a%2Bb%20c%C3%A9.csv").unwrap(), "incoming/a+b cé.csv");
        assert_eq!(decode_s3_key("incoming%2Fx.csv").unwrap(), "incoming/x.csv");
        assert!(decode_s3_key("bad%2").is_err());
        assert!(decode_s3_key("bad%zz").is_err());
        assert!(decode_s3_key("bad%ff.csv").is_err());
    }

    #[test]
    fn only_csv_keys_under_the_input_prefix_are_taken_on() {
        let s = Settings::default();
        assert!(accepts(&s, "incoming/hr.csv").is_ok());
        assert!(accepts(&s, "incoming/dry-run/hr.CSV").is_ok());
        assert!(accepts(&s, "reports/abc/report.csv").is_err());
        assert!(accepts(&s, "incoming/hr.xlsx").is_err());
        assert!(accepts(&s, "incoming/../reports/x.csv").is_err());
    }

    #[test]
    fn the_run_id_is_stable_per_object_version_and_differs_between_versions() {
        let a = run_id("b", "incoming/x.csv", "v1");
        assert_eq!(a, run_id("b", "incoming/x.csv", "v1"));
        assert_ne!(a, run_id("b", "incoming/x.csv", "v2"));
        assert_ne!(a, run_id("b", "incoming/y.csv", "v1"));
        assert_eq!(a.len(), 24);
    }
}
