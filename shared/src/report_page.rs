//! `report.html`: the run report as one page to look at, beside `report.csv`, `report.jsonl` and
//! `summary.json` (CLI and Lambda alike).
//!
//! The page is self-contained (inline CSS, no scripts, no external assets), so it opens from a
//! download or an S3 console link. It is rendered with minijinja from `templates/report.html`,
//! whose `.html` name turns on auto-escaping: every HR value (a name such as
//! `<script>…</script>`) shows as text. Its size is bounded whatever the file's: it lists at most
//! [`MAX_LISTED_ROWS`] rows per table (rejected or failed rows, rows with warnings and, for a dry
//! run, rows with changes) and says how many more the CSV holds.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::report::{Outcome, RowReport, Summary};

/// Rows listed on the page per table; the rest are counted.
pub const MAX_LISTED_ROWS: usize = 1000;

const TEMPLATE: &str = include_str!("../templates/report.html");

/// The rows the page lists, collected while the report is written (see [`ListedRows::note`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ListedRows {
    /// The first rejected or failed rows, in the order they were noted.
    pub problems: Vec<RowReport>,
    pub more_problems: u64,
    /// The first rows that were done but carry warnings (e.g. a manager link left out).
    pub warned: Vec<RowReport>,
    pub more_warned: u64,
    /// The first rows with changes (created, updated, disabled), for a dry run's page.
    pub changes: Vec<RowReport>,
    pub more_changes: u64,
}

impl ListedRows {
    /// Keeps the row in each table it belongs to while that table has room, else counts it.
    pub fn note(&mut self, row: &RowReport) {
        if !row.outcome.is_done() {
            keep(&mut self.problems, &mut self.more_problems, row);
            return;
        }
        if !row.warnings.is_empty() {
            keep(&mut self.warned, &mut self.more_warned, row);
        }
        if row.outcome != Outcome::Unchanged {
            keep(&mut self.changes, &mut self.more_changes, row);
        }
    }
}

fn keep(list: &mut Vec<RowReport>, more: &mut u64, row: &RowReport) {
    if list.len() < MAX_LISTED_ROWS {
        list.push(row.clone());
    } else {
        *more += 1;
    }
}

#[derive(Serialize)]
struct OutcomeBar {
    name: &'static str,
    count: u64,
    /// Share of all rows, to one decimal, for the bar's segment width.
    percent: String,
}

#[derive(Serialize)]
struct Count<'a> {
    #[serde(rename = "endpoint")]
    name: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct Planned<'a> {
    kind: &'a str,
    count: u64,
}

/// Everything the template reads.
#[derive(Serialize)]
struct Page<'a> {
    run: &'a Summary,
    source: &'a str,
    duration: String,
    outcomes: Vec<OutcomeBar>,
    warnings: &'a [String],
    requests: Vec<Count<'a>>,
    planned: Vec<Planned<'a>>,
    problems: &'a [RowReport],
    more_problems: u64,
    warned: &'a [RowReport],
    more_warned: u64,
    /// Rows with changes; listed for a dry run only (a real run's are in the CSV).
    changes: &'a [RowReport],
    more_changes: u64,
}

/// Renders the page for a run. `source` names the input file (may be empty).
pub fn render(summary: &Summary, source: &str, rows: &ListedRows) -> Result<String, minijinja::Error> {
    let mut env = minijinja::Environment::new();
    env.add_template("report.html", TEMPLATE)?;
    let dry = summary.dry_run;
    let page = Page {
        run: summary,
        source,
        duration: format!("{:.1} s", summary.duration_ms as f64 / 1000.0),
        outcomes: outcome_bars(summary),
        warnings: &summary.warnings,
        requests: counts(&summary.requests_by_endpoint),
        planned: summary.planned.iter().map(|(kind, &count)| Planned { kind, count }).collect(),
        problems: &rows.problems,
        more_problems: rows.more_problems,
        warned: &rows.warned,
        more_warned: rows.more_warned,
        changes: if dry { &rows.changes } else { &[] },
        more_changes: if dry { rows.more_changes } else { 0 },
    };
    env.get_template("report.html")?.render(minijinja::value::Serde(&page))
}

fn outcome_bars(summary: &Summary) -> Vec<OutcomeBar> {
    let total = summary.rows_total.max(1) as f64;
    Outcome::ALL
        .iter()
        .map(|&o| {
            let count = summary.count_of(o);
            OutcomeBar { name: o.as_str(), count, percent: format!("{:.1}", count as f64 * 100.0 / total) }
        })
        .collect()
}

fn counts(by_name: &BTreeMap<String, u64>) -> Vec<Count<'_>> {
    by_name.iter().map(|(name, &count)| Count { name, count }).collect()
}
