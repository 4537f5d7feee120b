//! The run report: every input row accounted for, plus a summary of the run.
//!
//! Operators need to answer "what happened to employee X?" and "did this run do its job?"
//! without reading logs. So each run writes one [`RowReport`] per input row (and per leaver
//! that is no longer in the file) as JSON Lines for machines and as CSV for people, plus a
//! [`Summary`] (counts per [`Outcome`], NERM requests, 429s, retries, duration, warnings).
//!
//! The CLI writes to a directory and the Lambdas to S3, so the writers take any
//! [`std::io::Write`] and everything else is pure. [`ReportSink`] ties them together.
//!
//! Secrets: callers must pass error and warning texts that are already free of tokens (the NERM
//! client's errors are). As a second line of defence [`ReportSink`] runs them through
//! [`redact`] with the run's known secrets, and caps row errors at [`MAX_ERROR_CHARS`].
//!
//! CSV injection: the CSV is meant to be opened in a spreadsheet, and its cells carry HR data
//! verbatim, so every cell goes through [`neutralise`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// What happened to one input row.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A new NERM user (and whatever hangs off it) was created.
    Created,
    /// The user existed and at least one change was applied.
    Updated,
    /// The user existed and already matched the file.
    Unchanged,
    /// A leaver: the user was disabled / the profile ended.
    Disabled,
    /// The row itself is invalid (validation or config); nothing was sent for it.
    Rejected,
    /// The row was valid but NERM refused or did not answer; it may be partly applied.
    Failed,
}

impl Outcome {
    /// All outcomes, in report order.
    pub const ALL: [Outcome; 6] =
        [Outcome::Created, Outcome::Updated, Outcome::Unchanged, Outcome::Disabled, Outcome::Rejected, Outcome::Failed];

    /// The name used in JSON and CSV (`created`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Disabled => "disabled",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
        }
    }

    /// Whether the row reached the state the file asks for.
    pub fn is_done(self) -> bool {
        !matches!(self, Outcome::Rejected | Outcome::Failed)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the report: one input row (or one leaver not in the file).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RowReport {
    /// Physical line in the CSV (header is line 1); 0 for leavers that are not in the file.
    pub line: u64,
    pub login: String,
    pub employee_key: String,
    pub outcome: Outcome,
    /// What was (or, in a dry run, would be) changed, e.g. `user.title: 'Dev' -> 'Lead'`,
    /// `profile created`, `role Sponsor assigned`.
    pub changes: Vec<String>,
    /// Why the row was rejected or failed. Must not contain secrets; see the module docs.
    pub error: Option<String>,
    /// What was left out of a row that was otherwise imported, e.g. a manager link that could
    /// not be set (`line 7, column "manager_login": manager "ghost" is neither in the file nor a
    /// NERM user; ...`). Left out of the JSON when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// Longest `error` text kept in a [`RowReport`], in characters (including the `…` marker).
pub const MAX_ERROR_CHARS: usize = 1000;

/// Secrets shorter than this are not redacted: they would blank out ordinary words.
pub const MIN_SECRET_CHARS: usize = 4;

/// Replaces every occurrence of each secret with `***`. Secrets that are empty or shorter than
/// [`MIN_SECRET_CHARS`] are ignored. Longer secrets are replaced first, so a secret that
/// contains another is removed whole.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut secrets: Vec<&str> = secrets.iter().copied().filter(|s| s.chars().count() >= MIN_SECRET_CHARS).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    let mut out = text.to_owned();
    for secret in secrets {
        if out.contains(secret) {
            out = out.replace(secret, "***");
        }
    }
    out
}

/// Cuts `text` to at most `max` characters; a cut text ends in `…`.
pub fn truncate_chars(text: &str, max: usize) -> Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => Cow::Borrowed(text),
        Some(_) => {
            let keep = max.saturating_sub(1);
            let end = text.char_indices().nth(keep).map_or(text.len(), |(i, _)| i);
            Cow::Owned(format!("{}…", &text[..end]))
        }
    }
}

/// Makes a cell safe to open in a spreadsheet: a cell starting with `=`, `+`, `-`, `@`, tab or
/// carriage return gets a leading `'`, so it is shown as text instead of run as a formula
/// (OWASP "CSV Injection"). This includes negative numbers (`-5` → `'-5`): OWASP lists `-` as
/// dangerous (`-2+3+cmd|...`), and the report's number cells (`line`) are never negative.
pub fn neutralise(cell: &str) -> Cow<'_, str> {
    match cell.as_bytes().first() {
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// Writes one [`RowReport`] as JSON per line (JSON Lines). Wrap files in a `BufWriter`.
pub struct JsonlWriter<W: Write> {
    out: W,
}

impl<W: Write> JsonlWriter<W> {
    pub fn new(out: W) -> Self {
        JsonlWriter { out }
    }

    pub fn write(&mut self, row: &RowReport) -> io::Result<()> {
        serde_json::to_writer(&mut self.out, row)?;
        self.out.write_all(b"\n")
    }

    /// Flushes and hands back the underlying writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes the report as CSV with header `line,login,employee_key,outcome,changes,error,warnings`.
/// `changes` and `warnings` are joined with `"; "`; every cell goes through [`neutralise`].
pub struct CsvReportWriter<W: Write> {
    out: csv::Writer<W>,
}

impl<W: Write> CsvReportWriter<W> {
    pub const HEADER: [&'static str; 7] = ["line", "login", "employee_key", "outcome", "changes", "error", "warnings"];

    /// Writes the header right away, so a run with no rows still yields a valid CSV.
    pub fn new(out: W) -> io::Result<Self> {
        let mut out = csv::Writer::from_writer(out);
        out.write_record(Self::HEADER)?;
        Ok(CsvReportWriter { out })
    }

    pub fn write(&mut self, row: &RowReport) -> io::Result<()> {
        let line = row.line.to_string();
        let changes = row.changes.join("; ");
        let warnings = row.warnings.join("; ");
        let cells = [
            line.as_str(),
            &row.login,
            &row.employee_key,
            row.outcome.as_str(),
            &changes,
            row.error.as_deref().unwrap_or(""),
            &warnings,
        ];
        self.out.write_record(cells.iter().map(|c| neutralise(c).into_owned()))?;
        Ok(())
    }

    /// Flushes and hands back the underlying writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// The run as a whole: counts, NERM traffic, timing, warnings. Written as pretty JSON next to
/// the row files, and shown to CLI users through [`Display`](fmt::Display).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Summary {
    pub run_id: String,
    /// RFC 3339, UTC, to the millisecond (see [`now`]).
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// As `started_at`; `None` until the run is finished.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub finished_at: Option<OffsetDateTime>,
    pub duration_ms: u64,
    pub dry_run: bool,
    /// Rows in the report (input rows plus leavers not in the file); the sum of `counts`.
    pub rows_total: u64,
    /// Rows per outcome; all six are always present.
    pub counts: BTreeMap<Outcome, u64>,
    /// Rows that carry at least one warning (their outcome is counted in `counts` as usual).
    #[serde(default)]
    pub rows_with_warnings: u64,
    pub requests_total: u64,
    /// `"GET /users"` → requests sent (each attempt counts).
    pub requests_by_endpoint: BTreeMap<String, u64>,
    /// 429 answers received.
    pub rate_limited: u64,
    pub retries: u64,
    pub warnings: Vec<String>,
    /// Operation kind → count: what a dry run would have done (also filled on real runs).
    pub planned: BTreeMap<String, u64>,
}

impl Summary {
    pub fn new(run_id: impl Into<String>, started_at: OffsetDateTime, dry_run: bool) -> Self {
        Summary {
            run_id: run_id.into(),
            started_at,
            finished_at: None,
            duration_ms: 0,
            dry_run,
            rows_total: 0,
            counts: Outcome::ALL.iter().map(|&o| (o, 0)).collect(),
            rows_with_warnings: 0,
            requests_total: 0,
            requests_by_endpoint: BTreeMap::new(),
            rate_limited: 0,
            retries: 0,
            warnings: Vec::new(),
            planned: BTreeMap::new(),
        }
    }

    /// Counts one row with this outcome (and in `rows_total`).
    pub fn count(&mut self, outcome: Outcome) {
        *self.counts.entry(outcome).or_default() += 1;
        self.rows_total += 1;
    }

    /// Counts one report row: its outcome, and whether it carries warnings.
    pub fn count_row(&mut self, row: &RowReport) {
        self.count(row.outcome);
        if !row.warnings.is_empty() {
            self.rows_with_warnings += 1;
        }
    }

    /// Rows with this outcome.
    pub fn count_of(&self, outcome: Outcome) -> u64 {
        self.counts.get(&outcome).copied().unwrap_or(0)
    }

    pub fn to_json_pretty(&self) -> String {
        serde_json::to_string_pretty(self).expect("a Summary always serialises")
    }

    /// Process exit code: 0 when every row is done, 2 when any row was rejected or failed.
    /// Warnings alone leave it at 0: a row with a warning reached the state the file asks for,
    /// except for the part the warning names.
    pub fn exit_code(&self) -> i32 {
        if Outcome::ALL.iter().any(|&o| !o.is_done() && self.count_of(o) > 0) { 2 } else { 0 }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dry = if self.dry_run { " (dry run)" } else { "" };
        writeln!(f, "run {}{dry}: {} rows", self.run_id, self.rows_total)?;
        let counts: Vec<String> = Outcome::ALL.iter().map(|&o| format!("{} {o}", self.count_of(o))).collect();
        writeln!(f, "  {}", counts.join(", "))?;
        if self.rows_with_warnings > 0 {
            writeln!(f, "  rows with warnings: {} (see the report's warnings column)", self.rows_with_warnings)?;
        }
        if !self.planned.is_empty() {
            let planned: Vec<String> = self.planned.iter().map(|(k, n)| format!("{n} {k}")).collect();
            writeln!(f, "  planned: {}", planned.join(", "))?;
        }
        writeln!(f, "  requests: {}, 429s: {}, retries: {}", self.requests_total, self.rate_limited, self.retries)?;
        write!(f, "  duration: {:.1} s", self.duration_ms as f64 / 1000.0)?;
        if !self.warnings.is_empty() {
            write!(f, "\n  warnings: {}", self.warnings.len())?;
        }
        Ok(())
    }
}

/// Collects a run's report: writes each row to both writers as it comes, keeps the
/// [`Summary`], and applies [`redact`] (and the [`MAX_ERROR_CHARS`] cap) to row errors and
/// warnings. To keep the bytes (e.g. for an S3 upload), pass `&mut Vec<u8>` as a writer.
pub struct ReportSink<J: Write, C: Write> {
    jsonl: JsonlWriter<J>,
    csv: CsvReportWriter<C>,
    summary: Summary,
    secrets: Vec<String>,
    started: Instant,
    listed: crate::report_page::ListedRows,
}

impl<J: Write, C: Write> ReportSink<J, C> {
    /// Starts the clock and writes the CSV header. `secrets` are redacted from errors and
    /// warnings (see [`redact`]).
    pub fn new(run_id: impl Into<String>, dry_run: bool, jsonl: J, csv: C, secrets: Vec<String>) -> io::Result<Self> {
        Ok(ReportSink {
            jsonl: JsonlWriter::new(jsonl),
            csv: CsvReportWriter::new(csv)?,
            summary: Summary::new(run_id, now(), dry_run),
            secrets,
            started: Instant::now(),
            listed: Default::default(),
        })
    }

    /// Counts the row, then writes it to both outputs (error and warnings redacted and capped).
    pub fn record(&mut self, mut row: RowReport) -> io::Result<()> {
        self.summary.count_row(&row);
        if let Some(error) = row.error.take() {
            let clean = self.clean(&error);
            row.error = Some(truncate_chars(&clean, MAX_ERROR_CHARS).into_owned());
        }
        for warning in &mut row.warnings {
            let clean = self.clean(warning);
            *warning = truncate_chars(&clean, MAX_ERROR_CHARS).into_owned();
        }
        self.listed.note(&row);
        self.jsonl.write(&row)?;
        self.csv.write(&row)
    }

    /// The rows `report.html` lists (see [`crate::report_page`]), taken out of the sink.
    pub fn take_listed(&mut self) -> crate::report_page::ListedRows {
        std::mem::take(&mut self.listed)
    }

    /// Adds a run-level warning (redacted).
    pub fn warn(&mut self, warning: &str) {
        let clean = self.clean(warning);
        self.summary.warnings.push(clean);
    }

    /// Counts `n` planned operations of one kind (e.g. `create_user`).
    pub fn plan(&mut self, kind: &str, n: u64) {
        *self.summary.planned.entry(kind.to_owned()).or_default() += n;
    }

    /// Takes the request statistics the NERM client kept (`ClientStats`); replaces earlier values.
    pub fn set_requests(&mut self, by_endpoint: BTreeMap<String, u64>, rate_limited: u64, retries: u64) {
        self.summary.requests_total = by_endpoint.values().sum();
        self.summary.requests_by_endpoint = by_endpoint;
        self.summary.rate_limited = rate_limited;
        self.summary.retries = retries;
    }

    /// The summary so far.
    pub fn summary(&self) -> &Summary {
        &self.summary
    }

    /// Flushes both writers, stops the clock and returns the summary.
    pub fn finish(self) -> io::Result<Summary> {
        self.jsonl.finish()?;
        self.csv.finish()?;
        let mut summary = self.summary;
        summary.finished_at = Some(now());
        summary.duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(summary)
    }

    fn clean(&self, text: &str) -> String {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        redact(text, &secrets)
    }
}

/// Now, UTC, to the millisecond: the precision of every timestamp a run writes
/// (`2026-05-04T09:30:00.123Z` in RFC 3339).
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_millisecond(now.millisecond()).unwrap_or(now)
}

/// `at` in RFC 3339, as the run's files carry it (for logs, and for JSON built by hand).
pub fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn row(line: u64, outcome: Outcome) -> RowReport {
        RowReport {
            line,
            login: format!("user{line}@example.com"),
            employee_key: format!("E{line}"),
            outcome,
            changes: vec![],
            error: None,
            warnings: vec![],
        }
    }

    fn parse_csv(bytes: &[u8]) -> Vec<csv::StringRecord> {
        csv::Reader::from_reader(bytes).records().collect::<Result<_, _>>().unwrap()
    }

    #[test]
    fn a_cell_starting_with_equals_is_neutralised() {
        assert_eq!(neutralise("=1+1"), "'=1+1");
    }

    #[test]
    fn every_dangerous_prefix_is_neutralised() {
        for cell in ["=cmd", "+cmd", "-cmd", "@SUM(A1)", "\tx", "\rx"] {
            assert_eq!(neutralise(cell), format!("'{cell}"), "{cell:?}");
        }
    }

    #[test]
    fn a_negative_number_is_neutralised_too() {
        assert_eq!(neutralise("-5"), "'-5");
    }

    #[test]
    fn safe_cells_are_left_alone_and_not_copied() {
        for cell in ["", "Ada", "42", "a=b", " =x", "'quoted", "user.title: 'Dev' -> 'Lead'"] {
            assert!(matches!(neutralise(cell), Cow::Borrowed(c) if c == cell), "{cell:?}");
        }
    }

    #[test]
    fn csv_output_parses_back_with_header_and_neutralised_cells() {
        let mut w = CsvReportWriter::new(Vec::new()).unwrap();
        let mut r = row(7, Outcome::Failed);
        r.login = "=HYPERLINK(\"http://evil\")".into();
        r.changes = vec!["user.title: 'Dev' -> 'Lead'".into(), "role Sponsor assigned".into()];
        r.error = Some("NERM rejected POST /users: 400".into());
        w.write(&r).unwrap();
        let bytes = w.finish().unwrap();

        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(reader.headers().unwrap(), &CsvReportWriter::<Vec<u8>>::HEADER[..]);
        let records = parse_csv(&bytes);
        assert_eq!(records.len(), 1);
        let rec = &records[0];
        assert_eq!(&rec[0], "7");
        assert_eq!(&rec[1], "'=HYPERLINK(\"http://evil\")");
        assert_eq!(&rec[2], "E7");
        assert_eq!(&rec[3], "failed");
        assert_eq!(&rec[4], "user.title: 'Dev' -> 'Lead'; role Sponsor assigned");
        assert_eq!(&rec[5], "NERM rejected POST /users: 400");
    }

    #[test]
    fn a_cell_with_commas_quotes_and_newlines_round_trips_through_csv() {
        let tricky = "O'Brien, \"Ted\"\nsecond line\r\nthird";
        let mut w = CsvReportWriter::new(Vec::new()).unwrap();
        let mut r = row(3, Outcome::Rejected);
        r.employee_key = tricky.into();
        r.error = Some(tricky.into());
        w.write(&r).unwrap();
        let records = parse_csv(&w.finish().unwrap());
        assert_eq!(records.len(), 1);
        assert_eq!(&records[0][2], tricky);
        assert_eq!(&records[0][5], tricky);
    }

    #[test]
    fn an_empty_csv_report_still_has_its_header() {
        let bytes = CsvReportWriter::new(Vec::new()).unwrap().finish().unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "line,login,employee_key,outcome,changes,error,warnings\n");
    }

    #[test]
    fn a_row_with_warnings_is_counted_and_shows_them_in_both_outputs() {
        // GIVEN a created row with two warnings (one quoting the token) and a plain row
        let (mut jsonl, mut csv) = (Vec::new(), Vec::new());
        let mut sink = ReportSink::new("run", false, &mut jsonl, &mut csv, vec!["s3cr3t-token".into()]).unwrap();
        let mut warned = row(7, Outcome::Created);
        warned.warnings =
            vec!["line 7, column \"manager\": manager \"ghost\" is unknown".into(), "s3cr3t-token".into()];
        sink.record(warned).unwrap();
        sink.record(row(8, Outcome::Created)).unwrap();
        // WHEN the report is finished
        let summary = sink.finish().unwrap();
        // THEN the summary counts one row with warnings, the exit code stays 0
        assert_eq!((summary.count_of(Outcome::Created), summary.rows_with_warnings), (2, 1));
        assert_eq!(summary.exit_code(), 0);
        assert!(summary.to_string().contains("rows with warnings: 1"), "{summary}");
        // AND the JSON carries them (redacted) only where there are any, the CSV in its last column
        let lines: Vec<&str> = std::str::from_utf8(&jsonl).unwrap().lines().collect();
        let first: RowReport = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first.warnings, ["line 7, column \"manager\": manager \"ghost\" is unknown", "***"]);
        assert!(!lines[1].contains("warnings"), "{}", lines[1]);
        let records = parse_csv(&csv);
        assert_eq!(&records[0][6], "line 7, column \"manager\": manager \"ghost\" is unknown; ***");
        assert_eq!(&records[1][6], "");
    }

    #[test]
    fn jsonl_lines_parse_back_to_the_same_row_reports() {
        let mut a = row(2, Outcome::Updated);
        a.changes = vec!["user.title: 'Dev' -> 'Lead'".into()];
        let mut b = row(0, Outcome::Failed);
        b.error = Some("line one\nline \"two\"".into());
        let mut w = JsonlWriter::new(Vec::new());
        w.write(&a).unwrap();
        w.write(&b).unwrap();
        let text = String::from_utf8(w.finish().unwrap()).unwrap();

        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(serde_json::from_str::<RowReport>(lines[0]).unwrap(), a);
        assert_eq!(serde_json::from_str::<RowReport>(lines[1]).unwrap(), b);
        assert!(lines[0].contains(r#""outcome":"updated""#));
    }

    #[test]
    fn a_new_summary_lists_all_six_outcomes_at_zero() {
        let s = Summary::new("r1", datetime!(2026-01-01 0:00 UTC), false);
        assert_eq!(s.counts.len(), 6);
        assert!(s.counts.values().all(|&n| n == 0));
        let json: serde_json::Value = serde_json::from_str(&s.to_json_pretty()).unwrap();
        let keys: Vec<&str> = json["counts"].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["created", "disabled", "failed", "rejected", "unchanged", "updated"]);
    }

    #[test]
    fn the_summary_times_are_rfc3339_utc_strings_to_the_millisecond() {
        let mut s = Summary::new("r1", datetime!(2026-05-04 9:30:00.123 UTC), false);
        s.finished_at = Some(datetime!(2026-05-04 9:31:05 UTC));
        let json: serde_json::Value = serde_json::from_str(&s.to_json_pretty()).unwrap();
        assert_eq!(json["started_at"], "2026-05-04T09:30:00.123Z");
        assert_eq!(json["finished_at"], "2026-05-04T09:31:05Z");
        assert_eq!(now().nanosecond() % 1_000_000, 0, "whole milliseconds");
    }

    #[test]
    fn the_summary_counts_all_six_outcomes_and_round_trips_as_json() {
        let mut s = Summary::new("r1", datetime!(2026-01-01 0:00 UTC), true);
        for (i, &o) in Outcome::ALL.iter().enumerate() {
            for _ in 0..=i {
                s.count(o);
            }
        }
        for (i, &o) in Outcome::ALL.iter().enumerate() {
            assert_eq!(s.count_of(o), i as u64 + 1, "{o}");
        }
        assert_eq!(s.rows_total, 21);
        let back: Summary = serde_json::from_str(&s.to_json_pretty()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn exit_code_is_zero_when_every_row_is_done() {
        let mut s = Summary::new("r1", datetime!(2026-01-01 0:00 UTC), false);
        assert_eq!(s.exit_code(), 0);
        for o in [Outcome::Created, Outcome::Updated, Outcome::Unchanged, Outcome::Disabled] {
            s.count(o);
        }
        assert_eq!(s.exit_code(), 0);
    }

    #[test]
    fn exit_code_is_two_when_any_row_is_rejected_or_failed() {
        for bad in [Outcome::Rejected, Outcome::Failed] {
            let mut s = Summary::new("r1", datetime!(2026-01-01 0:00 UTC), false);
            s.count(Outcome::Created);
            s.count(bad);
            assert_eq!(s.exit_code(), 2, "{bad}");
        }
    }

    #[test]
    fn the_human_summary_shows_counts_requests_429s_retries_and_duration() {
        let mut s = Summary::new("r1", datetime!(2026-01-01 0:00 UTC), true);
        s.count(Outcome::Created);
        s.requests_total = 12;
        s.rate_limited = 3;
        s.retries = 4;
        s.duration_ms = 1500;
        let text = s.to_string();
        assert!(text.contains("run r1 (dry run): 1 rows"), "{text}");
        assert!(text.contains("1 created, 0 updated"), "{text}");
        assert!(text.contains("requests: 12, 429s: 3, retries: 4"), "{text}");
        assert!(text.contains("duration: 1.5 s"), "{text}");
    }

    #[test]
    fn redact_removes_a_token_occurring_inside_an_error() {
        let text = "auth failed for Bearer eyJabc.def-123 at /users";
        assert_eq!(redact(text, &["eyJabc.def-123"]), "auth failed for Bearer *** at /users");
    }

    #[test]
    fn redact_ignores_empty_and_short_secrets_and_prefers_the_longest() {
        assert_eq!(redact("abc and the words", &["", "abc"]), "abc and the words");
        assert_eq!(redact("key=secretXYZ", &["secret", "secretXYZ"]), "key=***");
    }

    #[test]
    fn errors_longer_than_1000_chars_are_cut() {
        let long = "é".repeat(1500);
        let cut = truncate_chars(&long, MAX_ERROR_CHARS);
        assert_eq!(cut.chars().count(), MAX_ERROR_CHARS);
        assert!(cut.ends_with('…'));
        assert!(matches!(truncate_chars(&"x".repeat(1000), MAX_ERROR_CHARS), Cow::Borrowed(_)));
    }

    #[test]
    fn the_sink_counts_rows_redacts_and_caps_errors_and_flushes_both_outputs() {
        let (mut jsonl, mut csv) = (Vec::new(), Vec::new());
        let mut sink =
            ReportSink::new("run-9", false, &mut jsonl, &mut csv, vec!["tok-SECRET-1".into(), "".into()]).unwrap();
        sink.record(row(2, Outcome::Created)).unwrap();
        let mut failed = row(3, Outcome::Failed);
        failed.error = Some(format!("401 with tok-SECRET-1 {}", "x".repeat(2000)));
        sink.record(failed).unwrap();
        sink.warn("token tok-SECRET-1 expires soon");
        sink.plan("create_user", 1);
        sink.plan("create_user", 2);
        sink.set_requests(BTreeMap::from([("GET /users".into(), 5), ("POST /users".into(), 2)]), 1, 3);
        let summary = sink.finish().unwrap();

        assert_eq!(summary.run_id, "run-9");
        assert_eq!(summary.rows_total, 2);
        assert_eq!(summary.count_of(Outcome::Created), 1);
        assert_eq!(summary.count_of(Outcome::Failed), 1);
        assert_eq!(summary.exit_code(), 2);
        assert_eq!(summary.requests_total, 7);
        assert_eq!((summary.rate_limited, summary.retries), (1, 3));
        assert_eq!(summary.planned["create_user"], 3);
        assert_eq!(summary.warnings, ["token *** expires soon"]);
        assert!(summary.finished_at.is_some_and(|end| end >= summary.started_at));

        let text = String::from_utf8(jsonl).unwrap();
        assert!(!text.contains("tok-SECRET-1"));
        let rows: Vec<RowReport> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(rows.len(), 2);
        let error = rows[1].error.as_deref().unwrap();
        assert!(error.starts_with("401 with *** x"));
        assert_eq!(error.chars().count(), MAX_ERROR_CHARS);
        let records = parse_csv(&csv);
        assert_eq!(records.len(), 2);
        assert_eq!(&records[1][5], error);
    }
}
