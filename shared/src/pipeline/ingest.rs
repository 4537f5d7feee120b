//! The ingest half: one uploaded CSV becomes a run — deduplicated by a run id derived from the
//! object, validated in full and checked against the full-sync threshold before anything is
//! queued, then planned row by row straight into SQS and report parts (memory stays flat).

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::message::{self, Stage, WorkMessage};
use super::{Manifest, PartStats, Pipeline, Settings, write_part};
use crate::config::MappingConfig;
use crate::engine::run::{PlanSink, RunError, outcome_row, plan_file, resolve};
use crate::engine::{EmployeePlan, Target};
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
const STALE_MARKER: time::Duration = time::Duration::minutes(16);

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

/// The uploaded object an S3 event names, and the Lambda invocation taking it on.
#[derive(Debug, Clone, Copy)]
pub struct Upload<'a> {
    pub bucket: &'a str,
    pub key: &'a str,
    pub version_or_etag: &'a str,
    /// The Lambda request id: Lambda retries an invocation that failed or timed out with the
    /// same one, while a duplicate S3 delivery comes with another.
    pub invocation: &'a str,
}

/// One run of the ingest, as it goes.
struct RunContext<'a> {
    run: String,
    key: &'a str,
    dry_run: bool,
    /// The object tag lifted the full-sync disable threshold.
    overridden: bool,
    started_at: OffsetDateTime,
}

impl RunContext<'_> {
    fn transient(&self, e: impl std::fmt::Display) -> IngestError {
        IngestError::Transient { run_id: self.run.clone(), key: self.key.to_string(), message: e.to_string() }
    }
    fn rejected(&self, e: impl std::fmt::Display) -> IngestError {
        IngestError::Rejected { run_id: self.run.clone(), key: self.key.to_string(), message: e.to_string() }
    }
}

/// Takes on one uploaded object: dedup, validate, plan, then queue the work.
pub async fn ingest<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    p: &Pipeline<'_, S, Q, N>,
    client: &NermClient,
    config: &MappingConfig,
    upload: Upload<'_>,
    work_dir: &Path,
) -> Result<IngestOutcome, IngestError> {
    let key = upload.key;
    if let Err(why) = accepts(p.settings, key) {
        return Ok(IngestOutcome::Ignored(why));
    }
    let run = run_id(upload.bucket, key, upload.version_or_etag);
    let mut ctx = RunContext { run, key, dry_run: false, overridden: false, started_at: crate::report::now() };
    // The first read of the object: one that is not there (or cannot be read) stays so on a retry.
    let tags = p.store.tags(key).await.map_err(|e| if e.retryable { ctx.transient(e) } else { ctx.rejected(e) })?;
    let tag = |name: &str| tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    ctx.dry_run =
        key[p.settings.input_prefix.len()..].starts_with("dry-run/") || tag(DRY_RUN_TAG).is_some_and(|v| v == "true");
    ctx.overridden = tag(OVERRIDE_TAG) == Some(OVERRIDE_VALUE);
    let mut config = config.clone();
    config.sync.allow_mass_disable |= ctx.overridden;
    if let Some(duplicate) = claim_run(p, &ctx, upload.version_or_etag, upload.invocation).await? {
        return Ok(duplicate);
    }
    // From here on a transient failure must let the retried event in: drop the marker again.
    let result = take_on(p, client, &config, &ctx, work_dir).await;
    if let Err(e) = &result
        && e.is_retryable()
        && let Err(de) = p.store.delete(&p.settings.marker_key(&ctx.run)).await
    {
        tracing::error!(run_id = %ctx.run, error = %de, "could not remove the run marker; a retry will be taken as a duplicate");
    }
    result
}

/// The run marker, `{state}{run}/started.json`. It is read only to tell a retry or a dead
/// attempt from a duplicate, so every field may be missing.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct RunMarker {
    run_id: String,
    key: String,
    version: String,
    #[serde(with = "time::serde::rfc3339::option")]
    started_at: Option<OffsetDateTime>,
    /// The Lambda request id of the attempt (see [`Upload::invocation`]).
    invocation: String,
}

/// Claims the run with its marker. A run taken before is a duplicate, unless it died before
/// writing its manifest: then it is taken on again at once by Lambda's retry of the same
/// invocation (the attempt was killed or timed out), and by anyone once its marker is older
/// than any invocation can live. A retried invocation of a run that has its manifest moves the
/// run on instead (the attempt may have died queueing the links wave).
async fn claim_run<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    p: &Pipeline<'_, S, Q, N>,
    ctx: &RunContext<'_>,
    version: &str,
    invocation: &str,
) -> Result<Option<IngestOutcome>, IngestError> {
    let marker = RunMarker {
        run_id: ctx.run.clone(),
        key: ctx.key.to_string(),
        version: version.to_string(),
        started_at: Some(ctx.started_at),
        invocation: invocation.to_string(),
    };
    let marker_key = p.settings.marker_key(&ctx.run);
    let body = serde_json::to_vec(&marker).unwrap_or_default();
    let t = |e| ctx.transient(e);
    if p.store.put_if_absent(&marker_key, body.clone(), "application/json").await.map_err(t)? {
        return Ok(None);
    }
    let manifest = p.store.get(&p.settings.manifest_key(&ctx.run)).await.map_err(t)?;
    let earlier = p.store.get(&marker_key).await.map_err(t)?;
    let earlier: RunMarker = earlier.and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default();
    let retried = !invocation.is_empty() && earlier.invocation == invocation;
    let stale = earlier.started_at.is_some_and(|then| ctx.started_at - then > STALE_MARKER);
    let duplicate = Some(IngestOutcome::Duplicate { run_id: ctx.run.clone() });
    if manifest.is_some() {
        if retried {
            super::advance(p, &ctx.run, true).await.map_err(t)?;
        }
        return Ok(duplicate);
    }
    if !(retried || stale) {
        return Ok(duplicate);
    }
    tracing::warn!(run_id = %ctx.run, retried, "an earlier attempt of this run died before planning; starting it again");
    p.store.put(&marker_key, body, "application/json").await.map_err(t)?;
    Ok(None)
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
/// [`ROWS_PER_PART`] rows, plans into records messages queued a hundred at a time, so memory
/// does not grow with the file.
struct IngestSink<'a, S, Q, N> {
    p: &'a Pipeline<'a, S, Q, N>,
    run: &'a str,
    /// `None` in a dry run: plans are reported, not queued.
    target: Option<Target>,
    /// Begins every part name of this attempt (see [`Manifest::attempt`]).
    attempt: String,
    rows: Vec<RowReport>,
    parts: usize,
    plans: Vec<EmployeePlan>,
    messages: usize,
}

impl<S: ObjectStore, Q: WorkQueue, N> IngestSink<'_, S, Q, N> {
    async fn flush_rows(&mut self) -> Result<(), RunError> {
        if self.rows.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.rows);
        let part = format!("{}.ingest{:05}", self.attempt, self.parts);
        self.parts += 1;
        write_part(self.p.store, self.p.settings, self.run, &part, &rows).await.map_err(sink_error)
    }

    async fn flush_plans(&mut self) -> Result<(), RunError> {
        let Some(target) = &self.target else { return Ok(()) };
        if self.plans.is_empty() {
            return Ok(());
        }
        let plans = std::mem::take(&mut self.plans);
        let prefix = format!("{}.m", self.attempt);
        let (per_message, run) = (self.p.settings.items_per_message, self.run);
        let messages = WorkMessage::batch(run, (&prefix, self.messages), Stage::Records, target, plans, per_message);
        self.messages += messages.len();
        message::send(self.p.store, self.p.queue, self.p.settings, messages).await.map_err(sink_error)
    }

    /// Sends what is left.
    async fn flush(&mut self) -> Result<(), RunError> {
        self.flush_plans().await?;
        self.flush_rows().await
    }
}

fn sink_error(e: PortError) -> RunError {
    RunError::Sink(e.to_string())
}

impl<S: ObjectStore, Q: WorkQueue, N: Notifier> PlanSink for IngestSink<'_, S, Q, N> {
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
        if self.plans.len() >= self.p.settings.items_per_message * MESSAGES_PER_SEND {
            self.flush_plans().await?;
        }
        Ok(())
    }
}

/// Downloads the file, plans it into messages and report parts, and writes the manifest.
async fn take_on<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    p: &Pipeline<'_, S, Q, N>,
    client: &NermClient,
    config: &MappingConfig,
    ctx: &RunContext<'_>,
    work_dir: &Path,
) -> Result<IngestOutcome, IngestError> {
    // Removed when dropped, however this returns. Named by the run id, never by the key.
    let local = tempfile::Builder::new()
        .prefix(&format!("{}-", ctx.run))
        .suffix(".csv")
        .tempfile_in(work_dir)
        .map_err(|e| ctx.transient(PortError::new("local disk", format!("{}: {e}", work_dir.display()), false)))?;
    p.store.download(ctx.key, local.path()).await.map_err(|e| ctx.transient(e))?;
    let attempt = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let mut sink = IngestSink {
        p,
        run: &ctx.run,
        target: None,
        attempt,
        rows: Vec::new(),
        parts: 0,
        plans: Vec::new(),
        messages: 0,
    };
    let planned = plan_into(&mut sink, local.path(), config, client, ctx).await;
    drop(local);
    let stats = serde_json::to_vec(&PartStats::from_client(&client.stats())).unwrap_or_default();
    let stats_key = format!("{}ingest.json", p.settings.stats_prefix(&ctx.run));
    p.store.put(&stats_key, stats, "application/json").await.map_err(|e| ctx.transient(e))?;
    let (attempt, target, messages) = (sink.attempt, sink.target, sink.messages);
    let manifest = Manifest { target, messages: messages as u64, ..empty_manifest(ctx, &attempt) };
    let outcome = match planned {
        Ok(planned) => Ok(started(manifest, planned, ctx)),
        Err(e) => stopped(manifest, e, ctx),
    };
    let (manifest, outcome) = match outcome {
        Ok(o) => o,
        // S3, SQS or NERM trouble: the event is retried, and nothing is reported yet.
        Err(e) => return Err(e),
    };
    // Provisioners may have applied every message already: the run moves on from here then.
    put_manifest(p.store, p.settings, &manifest).await.map_err(|e| ctx.transient(e))?;
    super::advance(p, &ctx.run, false).await.map_err(|e| ctx.transient(e))?;
    outcome
}

/// Resolves the config and plans the file into the sink.
async fn plan_into<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    sink: &mut IngestSink<'_, S, Q, N>,
    local: &Path,
    config: &MappingConfig,
    client: &NermClient,
    ctx: &RunContext<'_>,
) -> Result<crate::engine::run::PlannedRun, RunError> {
    let resolved = resolve(config, client).await?;
    sink.target = (!ctx.dry_run).then(|| Target::from_resolved(&resolved));
    let progress = |msg: &str| tracing::info!(run_id = %ctx.run, "{msg}");
    let planned = plan_file(|| std::fs::File::open(local), &resolved, client, sink, &progress).await?;
    sink.flush().await?;
    Ok(planned)
}

/// The manifest of a planned run, and what the ingest answers.
fn started(
    manifest: Manifest,
    planned: crate::engine::run::PlannedRun,
    ctx: &RunContext<'_>,
) -> (Manifest, Result<IngestOutcome, IngestError>) {
    let rows = planned.settled + planned.plans;
    let mut warnings = planned.warnings;
    if ctx.overridden {
        warnings.push(format!(
            "the object tag {OVERRIDE_TAG}={OVERRIDE_VALUE} lifted the full-sync disable threshold for this run"
        ));
    }
    let run_id = ctx.run.clone();
    let outcome = match manifest.messages {
        0 => IngestOutcome::Finished { run_id, rows },
        m => IngestOutcome::Started { run_id, messages: m as usize, rows },
    };
    (Manifest { expected_rows: rows, warnings, planned: planned.planned, ..manifest }, Ok(outcome))
}

/// A run that stopped before any write: quarantined by the full-sync threshold, or a file or
/// config error reported as its only outcome; or trouble worth retrying (`Err`).
fn stopped(
    manifest: Manifest,
    e: RunError,
    ctx: &RunContext<'_>,
) -> Result<(Manifest, Result<IngestOutcome, IngestError>), IngestError> {
    let nothing = Manifest { messages: 0, target: None, ..manifest };
    match e {
        RunError::Threshold(t) => {
            let reason = format!(
                "{t}. To apply anyway, upload the file again with the object tag {OVERRIDE_TAG}={OVERRIDE_VALUE}"
            );
            let outcome = IngestOutcome::Quarantined { run_id: ctx.run.clone(), reason: reason.clone() };
            Ok((Manifest { quarantined: Some(reason), ..nothing }, Ok(outcome)))
        }
        e @ (RunError::Nerm(_) | RunError::Report(_) | RunError::Sink(_)) if !credentials_refused(&e) => {
            Err(ctx.transient(e))
        }
        e => {
            let message = e.to_string();
            let warnings = vec![format!("the run did not start: {message}")];
            Ok((Manifest { warnings, ..nothing }, Err(ctx.rejected(message))))
        }
    }
}

/// A manifest for a run that applies nothing yet.
fn empty_manifest(ctx: &RunContext<'_>, attempt: &str) -> Manifest {
    Manifest {
        run_id: ctx.run.clone(),
        source_key: ctx.key.to_string(),
        dry_run: ctx.dry_run,
        started_at: ctx.started_at,
        attempt: attempt.to_string(),
        expected_rows: 0,
        messages: 0,
        warnings: vec![],
        quarantined: None,
        planned: Default::default(),
        target: None,
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
    for (i, _) in raw.match_indices('%') {
        let Some(escape) = raw.get(i + 1..i + 3) else {
            return Err(format!("key {raw:?}: '%' at byte {i} is not followed by two hex digits"));
        };
        if !escape.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("key {raw:?}: bad escape %{escape} at byte {i}"));
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
        assert!(decode_s3_key("bad%zz").unwrap_err().contains("bad escape %zz at byte 3"));
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
    fn a_run_marker_written_by_an_earlier_build_reads_and_is_written_the_same_way() {
        let earlier = serde_json::json!({
            "run_id": "r1", "key": "incoming/hr.csv", "version": "v1",
            "started_at": "2026-12-07T10:00:00.123Z", "invocation": "req-1"
        });
        let marker: RunMarker = serde_json::from_value(earlier.clone()).unwrap();
        assert_eq!(marker.started_at, Some(time::macros::datetime!(2026-12-07 10:00:00.123 UTC)));
        assert_eq!(marker.invocation, "req-1");
        assert_eq!(serde_json::to_value(&marker).unwrap(), earlier);
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
