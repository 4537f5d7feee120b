//! CloudWatch metrics in Embedded Metric Format: one JSON line on stdout, which Lambda's log
//! pipeline turns into metrics in the namespace [`NAMESPACE`]. Outside Lambda (tests, the local
//! demo, the CLI) the line goes to the debug log instead.
//!
//! Two families, both charted by the dashboard in `template.yaml`:
//! - per invocation, with the dimension `Function` (rows ingested, NERM requests, 429s, ...);
//! - per run, without dimensions, written once when the run's summary is announced: rows by
//!   outcome, rows with warnings, the run's NERM requests and 429s, and its duration.

use serde_json::{Value, json};

use crate::report::{Outcome, Summary};

pub const NAMESPACE: &str = "NermEmployeeSync";

/// One value and its CloudWatch unit.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric<'a> {
    pub name: &'a str,
    pub value: u64,
    pub unit: &'static str,
}

impl<'a> Metric<'a> {
    pub fn count(name: &'a str, value: u64) -> Self {
        Metric { name, value, unit: "Count" }
    }
    pub fn millis(name: &'a str, value: u64) -> Self {
        Metric { name, value, unit: "Milliseconds" }
    }
}

/// The EMF line for `metrics` under one dimension set (empty: metrics without dimensions).
pub fn emf_line(dimensions: &[(&str, &str)], metrics: &[Metric<'_>]) -> Value {
    let timestamp =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let mut line = json!({
        "_aws": {
            "Timestamp": timestamp,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(k, _)| *k).collect::<Vec<_>>()],
                "Metrics": metrics.iter().map(|m| json!({ "Name": m.name, "Unit": m.unit })).collect::<Vec<_>>(),
            }]
        },
    });
    for (k, v) in dimensions {
        line[*k] = json!(v);
    }
    for m in metrics {
        line[m.name] = json!(m.value);
    }
    line
}

/// Writes the metrics where Lambda picks them up (stdout), or to the debug log elsewhere.
pub fn emit(dimensions: &[(&str, &str)], metrics: &[Metric<'_>]) {
    let line = emf_line(dimensions, metrics);
    if crate::env::var_opt("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        println!("{line}");
    } else {
        tracing::debug!(metrics = %line, "metrics");
    }
}

/// The metric names of a run's rows: `RowsCreated`, `RowsUpdated`, ...
pub fn rows_metric(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Created => "RowsCreated",
        Outcome::Updated => "RowsUpdated",
        Outcome::Unchanged => "RowsUnchanged",
        Outcome::Disabled => "RowsDisabled",
        Outcome::Rejected => "RowsRejected",
        Outcome::Failed => "RowsFailed",
    }
}

/// A finished run's metrics (see the module doc).
pub fn run_metrics(summary: &Summary) -> Vec<Metric<'static>> {
    let mut metrics: Vec<_> =
        Outcome::ALL.iter().map(|&o| Metric::count(rows_metric(o), summary.count_of(o))).collect();
    metrics.push(Metric::count("RowsWithWarnings", summary.rows_with_warnings));
    metrics.push(Metric::count("RunNermRequests", summary.requests_total));
    metrics.push(Metric::count("RunNermThrottled", summary.rate_limited));
    metrics.push(Metric::millis("RunDuration", summary.duration_ms));
    metrics
}

/// Emits a finished run's metrics; called once per run, when its summary is announced.
pub fn emit_run(summary: &Summary) {
    emit(&[], &run_metrics(summary));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_metric_line_names_its_dimension_and_every_metric_with_its_unit() {
        let line = emf_line(&[("Function", "csv-ingest")], &[Metric::count("NermRequests", 7)]);
        let directive = &line["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], NAMESPACE);
        assert_eq!(directive["Dimensions"], json!([["Function"]]));
        assert_eq!(directive["Metrics"], json!([{ "Name": "NermRequests", "Unit": "Count" }]));
        assert_eq!(line["Function"], "csv-ingest");
        assert_eq!(line["NermRequests"], 7);
        assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_600_000_000_000);
    }

    #[test]
    fn a_finished_run_reports_rows_by_outcome_requests_and_duration_without_dimensions() {
        let mut summary = Summary::new("run-1", time::macros::datetime!(2026-12-07 10:00 UTC), false);
        summary.count(Outcome::Created);
        summary.count(Outcome::Created);
        summary.count(Outcome::Rejected);
        summary.requests_total = 12;
        summary.rate_limited = 1;
        summary.duration_ms = 4_500;
        let line = emf_line(&[], &run_metrics(&summary));
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[]]));
        assert_eq!((line["RowsCreated"].as_u64(), line["RowsRejected"].as_u64()), (Some(2), Some(1)));
        assert_eq!(line["RowsFailed"], 0, "every outcome is present, zero included");
        assert_eq!((line["RunNermRequests"].as_u64(), line["RunNermThrottled"].as_u64()), (Some(12), Some(1)));
        assert_eq!(line["RunDuration"], 4_500);
        let units: Vec<_> = line["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["Name"].as_str().unwrap().to_string(), m["Unit"].as_str().unwrap().to_string()))
            .collect();
        assert!(units.contains(&("RunDuration".into(), "Milliseconds".into())), "{units:?}");
        assert_eq!(units.len(), 10);
    }
}
