//! The engine split over AWS: the ingest plans a file and fans the plans out as messages; each
//! provisioner applies one message and writes its part of the report. A run goes in two waves:
//! first the employees' records (users, profiles, roles, profile links), then, once every
//! records part is applied, the links to the managers the run created ([`links`]). Whoever
//! reports the last row merges the report and announces it. Everything here talks to the outside through
//! [`crate::ports`], so it runs the same against S3/SQS/SNS, moto, or in-memory fakes.
//!
//! S3 layout of a run (prefixes from the settings):
//! - `{state}{run}/started.json`: the dedup marker (written only if absent: a second delivery
//!   of the same object is a no-op); `{state}{run}/manifest.json`: what the run expects;
//!   `{state}{run}/stats/{part}-{random}.json`: NERM request counts of each receive of a part; `{state}{run}/notified`;
//!   `{state}{run}/ids/{part}.json`: the NERM ids of a records part's employees, written once it
//!   is applied (the links wave reads its managers' ids there, see [`ids`]);
//!   `{state}{run}/claims/{part}.json`: what the first receive of a part decided to report, and
//!   the links it left for the second wave (see [`provision()`]: SQS may deliver a message more
//!   than once, and each part is reported once); `{state}{run}/links.json`: the links wave was
//!   queued (see [`links`]); `{state}{run}/plans/{part}.json`: a message's plans when they did
//!   not fit in it.
//! - `{reports}{run}/parts/{part}-{rows}.jsonl`: report rows (part names begin with the ingest
//!   attempt's tag, see [`Manifest::attempt`]); `{reports}{run}/report.jsonl`,
//!   `report.csv`, `summary.json`: the merged report once every row is accounted for.

pub mod ids;
pub mod ingest;
pub mod links;
pub mod message;
pub mod provision;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::Target;
use crate::engine::run::blocking;
use crate::ports::{Notifier, ObjectStore, PortError, WorkQueue};
use crate::report::{CsvReportWriter, JsonlWriter, Outcome, RowReport, Summary};
use crate::report_page::ListedRows;

pub use ingest::{IngestError, IngestOutcome, ingest};
pub use message::{MessageError, Stage, WorkMessage};
pub use provision::{ProvisionError, provision};

/// What the pipeline talks to, and where it keeps things: passed to every stage.
pub struct Pipeline<'a, S, Q, N> {
    pub store: &'a S,
    pub queue: &'a Q,
    pub notifier: &'a N,
    pub settings: &'a Settings,
}

/// Where a deployment keeps things; the Lambdas fill it from their environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub input_prefix: String,
    pub report_prefix: String,
    pub run_state_prefix: String,
    /// Employees per SQS message: one NERM bulk call's worth.
    pub items_per_message: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            input_prefix: "incoming/".into(),
            report_prefix: "reports/".into(),
            run_state_prefix: "runs/".into(),
            items_per_message: crate::nerm::client::BULK_MAX,
        }
    }
}

impl Settings {
    /// The deployment's settings from the Lambda environment (template.yaml names).
    pub fn from_env() -> Result<Settings, crate::env::EnvError> {
        Settings::from_vars(&crate::env::Env::process())
    }

    /// The settings from `env` (defaults as in [`Settings::default`]).
    pub fn from_vars(env: &crate::env::Env) -> Result<Settings, crate::env::EnvError> {
        Ok(Settings {
            input_prefix: env.var_or("INPUT_PREFIX", "incoming/"),
            report_prefix: env.var_or("REPORT_PREFIX", "reports/"),
            run_state_prefix: env.var_or("RUN_STATE_PREFIX", "runs/"),
            items_per_message: env.number("ITEMS_PER_MESSAGE", crate::nerm::client::BULK_MAX as u32)?.max(1) as usize,
        })
    }

    pub fn marker_key(&self, run: &str) -> String {
        format!("{}{run}/started.json", self.run_state_prefix)
    }
    pub fn manifest_key(&self, run: &str) -> String {
        format!("{}{run}/manifest.json", self.run_state_prefix)
    }
    pub fn stats_prefix(&self, run: &str) -> String {
        format!("{}{run}/stats/", self.run_state_prefix)
    }
    /// The ids object of one part (see [`ids`]).
    pub fn ids_key(&self, run: &str, part: &str) -> String {
        format!("{}{run}/ids/{part}.json", self.run_state_prefix)
    }
    /// Where a message's plans wait when they do not fit in it (see [`message::send`]).
    pub fn plans_key(&self, run: &str, part: &str) -> String {
        format!("{}{run}/plans/{part}.json", self.run_state_prefix)
    }
    /// Whether the links wave was queued (see [`links`]).
    pub fn links_key(&self, run: &str) -> String {
        format!("{}{run}/links.json", self.run_state_prefix)
    }
    /// What the first receive of a part decided (see [`provision()`]).
    pub fn claim_key(&self, run: &str, part: &str) -> String {
        format!("{}{run}/claims/{part}.json", self.run_state_prefix)
    }
    pub fn notified_key(&self, run: &str) -> String {
        format!("{}{run}/notified", self.run_state_prefix)
    }
    pub fn parts_prefix(&self, run: &str) -> String {
        format!("{}{run}/parts/", self.report_prefix)
    }
    /// The parts that count toward a run (see [`Manifest::attempt`]).
    pub(crate) fn counted_parts_prefix(&self, manifest: &Manifest) -> String {
        match manifest.attempt.as_str() {
            "" => self.parts_prefix(&manifest.run_id),
            attempt => format!("{}{attempt}.", self.parts_prefix(&manifest.run_id)),
        }
    }
    pub fn report_key(&self, run: &str, name: &str) -> String {
        format!("{}{run}/{name}", self.report_prefix)
    }
    /// One part of the report; its name carries its row count so completion is a listing.
    pub fn part_key(&self, run: &str, part: &str, rows: usize) -> String {
        format!("{}{part}-{rows}.jsonl", self.parts_prefix(run))
    }
}

/// What the ingest promised: the finisher compares the rows reported with `expected_rows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub source_key: String,
    pub dry_run: bool,
    /// When the ingest took the run on (RFC 3339, see [`crate::report::now`]).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    /// The ingest attempt that planned the run: every part name it made begins `{attempt}.`,
    /// and only those parts count. An attempt that died before writing the manifest may have
    /// queued messages; they are applied (NERM writes are idempotent) but not reported, since
    /// the attempt that finished planned every row again. Empty in a manifest from before
    /// attempts were named: every part counts.
    #[serde(default)]
    pub attempt: String,
    /// Rows the run must report: every input row plus every full-sync leaver.
    pub expected_rows: u64,
    pub messages: u64,
    pub warnings: Vec<String>,
    /// Why nothing was applied (full-sync threshold), if so.
    pub quarantined: Option<String>,
    pub planned: BTreeMap<String, u64>,
    /// The NERM side of the run, for the links wave's messages. `None` in a manifest from
    /// before the links wave, or of a run that applies nothing.
    #[serde(default)]
    pub target: Option<Target>,
}

/// NERM requests made by one part of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartStats {
    pub requests: BTreeMap<String, u64>,
    pub rate_limited: u64,
    pub retries: u64,
}

impl PartStats {
    pub fn from_client(c: &crate::nerm::ClientStats) -> PartStats {
        PartStats { requests: c.requests.clone(), rate_limited: c.rate_limited, retries: c.retries }
    }
}

/// Writes one part of the report (see [`Settings::part_key`]).
pub(crate) async fn write_part<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    run: &str,
    part: &str,
    rows: &[RowReport],
) -> Result<(), PortError> {
    let mut w = JsonlWriter::new(Vec::new());
    for r in rows {
        w.write(r).map_err(|e| PortError::new("report", e.to_string(), false))?;
    }
    let body = w.finish().map_err(|e| PortError::new("report", e.to_string(), false))?;
    store.put(&settings.part_key(run, part, rows.len()), body, "application/x-ndjson").await
}

/// Rows reported so far, from the names of the parts that count (`parts`, listed under
/// [`Settings::counted_parts_prefix`]).
fn rows_reported(parts: &[String], settings: &Settings, manifest: &Manifest) -> u64 {
    let prefix = settings.counted_parts_prefix(manifest);
    parts
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(".jsonl")?.rsplit_once('-')?.1.parse::<u64>().ok())
        .sum()
}

/// Moves a run on after one of its parts (or its manifest) was written: queues the links wave
/// once every records part is applied, and finishes the run once every row is reported.
/// `take_over`: the caller knows that whoever started queueing the links wave died.
pub async fn advance<S: ObjectStore, Q: WorkQueue, N: Notifier>(
    p: &Pipeline<'_, S, Q, N>,
    run: &str,
    take_over: bool,
) -> Result<Option<Summary>, PortError> {
    let Some(manifest) = read_manifest(p.store, p.settings, run).await? else {
        return Ok(None);
    };
    let parts = p.store.list(&p.settings.counted_parts_prefix(&manifest)).await?;
    links::queue_if_due(p, &manifest, &parts, take_over).await?;
    finish_if_complete(p, &manifest, &parts).await
}

/// If every row of the run is reported, merges the parts into the final report, writes
/// `summary.json` and announces it once. Returns the summary when the run is complete.
async fn finish_if_complete<S: ObjectStore, Q, N: Notifier>(
    p: &Pipeline<'_, S, Q, N>,
    manifest: &Manifest,
    parts: &[String],
) -> Result<Option<Summary>, PortError> {
    let (store, settings, run) = (p.store, p.settings, manifest.run_id.as_str());
    if rows_reported(parts, settings, manifest) < manifest.expected_rows {
        return Ok(None);
    }
    // Removed with everything in it when dropped, however the merge ends.
    let work = tempfile::Builder::new()
        .prefix(&format!("nerm-report-{}-", short(run)))
        .tempdir()
        .map_err(|e| PortError::new("local disk", format!("{}: {e}", std::env::temp_dir().display()), true))?;
    let merged = merge_and_upload(store, settings, run, work.path(), manifest).await;
    drop(work);
    let (mut summary, listed) = merged?;
    add_run_facts(&mut summary, manifest, run_stats(store, settings, run).await?);
    let page = crate::report_page::render(&summary, &store.uri(&manifest.source_key), &listed)
        .map_err(|e| PortError::new("report", format!("report.html: {e}"), false))?;
    store.put(&settings.report_key(run, "report.html"), page.into_bytes(), "text/html; charset=utf-8").await?;
    store
        .put(&settings.report_key(run, "summary.json"), summary.to_json_pretty().into_bytes(), "application/json")
        .await?;
    if store.put_if_absent(&settings.notified_key(run), b"{}".to_vec(), "application/json").await? {
        announce(store, p.notifier, settings, &summary).await?;
    }
    Ok(Some(summary))
}

async fn read_manifest<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    run: &str,
) -> Result<Option<Manifest>, PortError> {
    let Some(bytes) = store.get(&settings.manifest_key(run)).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| PortError::new("manifest", format!("{}: {e}", settings.manifest_key(run)), false))
}

/// Merges the parts in `work` and uploads `report.jsonl` and `report.csv`; the summary counts
/// rows, and the listed rows are those `report.html` shows.
async fn merge_and_upload<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    run: &str,
    work: &std::path::Path,
    manifest: &Manifest,
) -> Result<(Summary, ListedRows), PortError> {
    let merged = merge_parts(store, settings, run, work, manifest).await?;
    store.upload(&settings.report_key(run, "report.jsonl"), &work.join("report.jsonl"), "application/x-ndjson").await?;
    store.upload(&settings.report_key(run, "report.csv"), &work.join("report.csv"), "text/csv").await?;
    Ok(merged)
}

/// The NERM requests of every receive of every part, added up.
async fn run_stats<S: ObjectStore>(store: &S, settings: &Settings, run: &str) -> Result<PartStats, PortError> {
    let mut stats = PartStats::default();
    for key in store.list(&settings.stats_prefix(run)).await? {
        if let Some(b) = store.get(&key).await?
            && let Ok(s) = serde_json::from_slice::<PartStats>(&b)
        {
            for (k, v) in s.requests {
                *stats.requests.entry(k).or_default() += v;
            }
            stats.rate_limited += s.rate_limited;
            stats.retries += s.retries;
        }
    }
    Ok(stats)
}

/// What the summary says beyond the row counts: requests, warnings, the plan, timing.
fn add_run_facts(summary: &mut Summary, manifest: &Manifest, stats: PartStats) {
    summary.requests_total = stats.requests.values().sum();
    summary.requests_by_endpoint = stats.requests;
    summary.rate_limited = stats.rate_limited;
    summary.retries = stats.retries;
    summary.warnings = manifest.warnings.clone();
    if let Some(q) = &manifest.quarantined {
        summary.warnings.push(format!("quarantined: {q}"));
    }
    summary.planned = manifest.planned.clone();
    let finished_at = crate::report::now();
    summary.finished_at = Some(finished_at);
    // 0 if the clocks of the ingest and of this finisher disagree the other way.
    summary.duration_ms = u64::try_from((finished_at - manifest.started_at).whole_milliseconds()).unwrap_or(0);
}

/// The report files of a finished run, by name, as the store addresses them.
pub const REPORT_FILES: [&str; 4] = ["report.html", "report.csv", "report.jsonl", "summary.json"];

/// What the run's notification carries: the summary's fields, where the report files are, and
/// (in AWS) the console page of `report.html`, so an operator can open the report from the message.
#[derive(Debug, Serialize)]
struct Announcement<'a> {
    #[serde(flatten)]
    summary: &'a Summary,
    report_files: BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    report_console_url: Option<String>,
}

/// Publishes the run's notification and its CloudWatch metrics; called once per run.
async fn announce<S: ObjectStore, N: Notifier>(
    store: &S,
    notifier: &N,
    settings: &Settings,
    summary: &Summary,
) -> Result<(), PortError> {
    let run = &summary.run_id;
    let subject = format!(
        "nerm-employee-sync run {}: {} rows, {} failed, {} rejected",
        short(run),
        summary.rows_total,
        summary.count_of(Outcome::Failed),
        summary.count_of(Outcome::Rejected)
    );
    let announcement = Announcement {
        summary,
        report_files: REPORT_FILES.iter().map(|&f| (f, store.uri(&settings.report_key(run, f)))).collect(),
        report_console_url: store.console_url(&settings.report_key(run, "report.html")),
    };
    let message = serde_json::to_string_pretty(&announcement)
        .map_err(|e| PortError::new("report", format!("the run notification: {e}"), false))?;
    notifier.publish(&subject, &message).await?;
    crate::metrics::emit_run(summary);
    Ok(())
}

/// Where one report row is in the merged parts file, and what it sorts by.
struct MergeEntry {
    /// Leavers (line 0) come last, by key.
    leaver: bool,
    line: u64,
    leaver_key: Option<Box<str>>,
    at: u64,
    len: u32,
}

/// Merges the report parts into `report.jsonl` and `report.csv` in `work`, sorted by line
/// (leavers, line 0, last by key), and counts the outcomes. Parts are streamed through local
/// disk; memory holds a small index entry per row, not the rows. The downloads are async; the
/// local reading and writing runs on tokio's blocking threads.
async fn merge_parts<S: ObjectStore>(
    store: &S,
    settings: &Settings,
    run: &str,
    work: &std::path::Path,
    manifest: &Manifest,
) -> Result<(Summary, ListedRows), PortError> {
    let mut merge = Merge::new(work, Summary::new(run, manifest.started_at, manifest.dry_run))?;
    // Each part as it is downloaded: removed once every part is read.
    let part = tempfile::NamedTempFile::new_in(work).map_err(|e| merge.disk(e))?;
    for key in store.list(&settings.counted_parts_prefix(manifest)).await? {
        store.download(&key, part.path()).await?;
        let path = part.path().to_path_buf();
        merge = blocking(move || merge.add_part(&key, &path).map(|()| merge)).await?;
    }
    drop(part);
    blocking(move || merge.write_sorted()).await
}

/// The report parts read so far: their rows one after another in a scratch file, an index
/// entry per row, and the outcomes counted. Its methods do blocking file I/O.
struct Merge {
    work: std::path::PathBuf,
    /// Removed when the merge is dropped.
    all: std::io::BufWriter<tempfile::NamedTempFile>,
    offset: u64,
    index: Vec<MergeEntry>,
    summary: Summary,
}

impl Merge {
    fn new(work: &std::path::Path, summary: Summary) -> Result<Merge, PortError> {
        let all = tempfile::NamedTempFile::new_in(work).map_err(|e| disk_error(work, e))?;
        let all = std::io::BufWriter::new(all);
        Ok(Merge { work: work.to_path_buf(), all, offset: 0, index: Vec::new(), summary })
    }

    fn disk(&self, e: std::io::Error) -> PortError {
        disk_error(&self.work, e)
    }

    /// Appends the rows of one part (`key`, downloaded to `path`) and indexes them.
    fn add_part(&mut self, key: &str, path: &std::path::Path) -> Result<(), PortError> {
        use std::io::{BufRead, Write};
        let mut lines = std::io::BufReader::new(std::fs::File::open(path).map_err(|e| self.disk(e))?);
        let mut line = Vec::new();
        loop {
            line.clear();
            if lines.read_until(b'\n', &mut line).map_err(|e| self.disk(e))? == 0 {
                return Ok(());
            }
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            let row: RowReport =
                serde_json::from_slice(text).map_err(|e| PortError::new("report", format!("{key}: {e}"), false))?;
            self.summary.count_row(&row);
            let leaver_key = (row.line == 0).then(|| row.employee_key.into_boxed_str());
            self.index.push(MergeEntry {
                leaver: row.line == 0,
                line: row.line,
                leaver_key,
                at: self.offset,
                len: text.len() as u32,
            });
            self.all.write_all(text).map_err(|e| self.disk(e))?;
            self.offset += text.len() as u64;
        }
    }

    /// Writes `report.jsonl` and `report.csv` in `work`, the rows in report order; the summary
    /// counts them, and the listed rows are those `report.html` shows.
    fn write_sorted(mut self) -> Result<(Summary, ListedRows), PortError> {
        use std::io::{BufWriter, Write};
        use std::os::unix::fs::FileExt;
        let work = &self.work;
        let disk = |e| disk_error(work, e);
        let report = |e: std::io::Error| PortError::new("report", e.to_string(), false);
        let all = self.all.into_inner().map_err(|e| disk(e.into_error()))?;
        self.index.sort_by(|a, b| (a.leaver, a.line, &a.leaver_key).cmp(&(b.leaver, b.line, &b.leaver_key)));
        let mut jsonl = BufWriter::new(std::fs::File::create(work.join("report.jsonl")).map_err(disk)?);
        let mut csv =
            CsvReportWriter::new(BufWriter::new(std::fs::File::create(work.join("report.csv")).map_err(disk)?))
                .map_err(report)?;
        let mut buf = Vec::new();
        let mut listed = ListedRows::default();
        for entry in &self.index {
            buf.resize(entry.len as usize, 0);
            all.as_file().read_exact_at(&mut buf, entry.at).map_err(disk)?;
            jsonl.write_all(&buf).and_then(|()| jsonl.write_all(b"\n")).map_err(disk)?;
            let row: RowReport =
                serde_json::from_slice(&buf).map_err(|e| PortError::new("report", e.to_string(), false))?;
            csv.write(&row).map_err(report)?;
            listed.note(&row);
        }
        jsonl.flush().map_err(disk)?;
        csv.finish().map_err(report)?.flush().map_err(disk)?;
        Ok((self.summary, listed))
    }
}

fn disk_error(work: &std::path::Path, e: std::io::Error) -> PortError {
    PortError::new("local disk", format!("{}: {e}", work.display()), true)
}

fn short(run: &str) -> &str {
    &run[..run.len().min(12)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_written_by_an_earlier_build_reads_and_is_written_the_same_way() {
        let earlier = serde_json::json!({
            "run_id": "r1", "source_key": "incoming/hr.csv", "dry_run": false,
            "started_at": "2026-12-07T10:00:00.123Z", "attempt": "a1b2c3", "expected_rows": 3,
            "messages": 1, "warnings": [], "quarantined": null, "planned": {"create_user": 3}, "target": null
        });
        let manifest: Manifest = serde_json::from_value(earlier.clone()).unwrap();
        assert_eq!(manifest.started_at, time::macros::datetime!(2026-12-07 10:00:00.123 UTC));
        assert_eq!(serde_json::to_value(&manifest).unwrap(), earlier);
    }
}
