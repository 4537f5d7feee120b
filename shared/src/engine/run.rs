//! One whole run in one process (the CLI; the Lambdas split the same stages over SQS):
//! resolve the config, validate the file, snapshot NERM, plan, then apply or stop (dry run),
//! writing one report row per input row.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::apply::Applier;
use super::plan::{EmployeePlan, PlanKind, Planner, RowPlan, ThresholdError};
use super::read::{EmployeeReader, ReadContext, index_file};
use super::snapshot::Snapshot;
use crate::config::{ConfigError, MappingConfig};
use crate::input::FileError;
use crate::nerm::{NermClient, NermError};
use crate::report::{Outcome, ReportSink, RowReport};

/// Why a run did not start (nothing was written to NERM).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("reading NERM's catalog failed: {0}")]
    Nerm(#[from] NermError),
    #[error("the mapping config does not fit this NERM tenant: {0}")]
    Config(#[from] ConfigError),
    #[error("the CSV file cannot be used: {0}")]
    File(#[from] FileError),
    #[error("{0}")]
    Threshold(#[from] ThresholdError),
    #[error("writing the report failed: {0}")]
    Report(#[from] io::Error),
}

/// A planned run: the rows already settled (unchanged, rejected) and the plans to apply.
#[derive(Debug)]
pub struct PlannedRun {
    pub resolved: crate::config::ResolvedConfig,
    pub settled: Vec<RowReport>,
    pub plans: Vec<EmployeePlan>,
    pub warnings: Vec<String>,
    /// Operation kind → count.
    pub planned: std::collections::BTreeMap<String, u64>,
}

/// Stages 1 and 2: resolve the config against NERM, validate the whole file (nothing is
/// written if that fails), snapshot NERM, and plan every row (`open` is called twice).
/// A full-sync threshold breach is an error: nothing may be applied.
pub async fn plan_file<R, F>(
    open: F,
    config: &MappingConfig,
    client: &NermClient,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<PlannedRun, RunError>
where
    R: Read,
    F: Fn() -> io::Result<R>,
{
    let catalog = Snapshot::catalog(client).await?;
    let resolved = config.resolve(&catalog)?;
    let mut warnings: Vec<String> = resolved.warnings().iter().map(|w| w.to_string()).collect();
    let ctx = ReadContext::new(&resolved);
    let file = index_file(open()?, &ctx)?;
    progress(&format!("validated the file: {} valid rows", file.valid_rows));
    let snap = Snapshot::load(client, &resolved).await?;
    progress(&format!(
        "read NERM: {} users, {} {} profiles ({} requests so far)",
        snap.users.len(),
        snap.profiles.len(),
        resolved.profile_type().name,
        client.stats().total_requests()
    ));
    let mut planner = Planner::new(&resolved, &snap, &file);
    let mut reader = EmployeeReader::new(open()?, &ctx)?;
    let mut settled = Vec::new();
    let mut plans: Vec<EmployeePlan> = Vec::new();
    while let Some(item) = reader.next_employee()? {
        match planner.plan_row(item) {
            RowPlan::Unchanged { line, login, key } => settled.push(RowReport {
                line,
                login,
                employee_key: key,
                outcome: Outcome::Unchanged,
                changes: vec![],
                error: None,
            }),
            RowPlan::Rejected(r) => settled.push(RowReport {
                line: r.line,
                login: r.login,
                employee_key: r.key,
                outcome: Outcome::Rejected,
                changes: vec![],
                error: Some(r.reasons.join("; ")),
            }),
            RowPlan::Change(p) => plans.push(p),
        }
    }
    plans.extend(planner.leavers()?);
    warnings.extend(planner.warnings().iter().cloned());
    let mut planned = std::collections::BTreeMap::new();
    for p in &plans {
        for op in &p.ops {
            *planned.entry(op.kind().to_string()).or_insert(0) += 1;
        }
    }
    drop(planner);
    drop(reader);
    progress(&format!("planned: {} employees to change", plans.len()));
    Ok(PlannedRun { resolved, settled, plans, warnings, planned })
}

/// The report row of an applied (or, in a dry run, planned) employee.
pub fn outcome_row(p: EmployeePlan, error: Option<String>) -> RowReport {
    let outcome = match (&error, p.kind) {
        (Some(_), _) => Outcome::Failed,
        (None, PlanKind::Create) => Outcome::Created,
        (None, PlanKind::Update) => Outcome::Updated,
        (None, PlanKind::Disable) => Outcome::Disabled,
    };
    RowReport { line: p.line, login: p.login, employee_key: p.key, outcome, changes: p.changes, error }
}

/// Runs the whole pipeline in one process. `open` is called twice (validation, planning).
pub async fn run<R, F, J, C>(
    open: F,
    config: &MappingConfig,
    client: &NermClient,
    sink: &mut ReportSink<J, C>,
    dry_run: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), RunError>
where
    R: Read,
    F: Fn() -> io::Result<R>,
    J: Write,
    C: Write,
{
    let started = Instant::now();
    let planned = plan_file(open, config, client, progress).await?;
    for w in &planned.warnings {
        sink.warn(w);
    }
    for (kind, n) in &planned.planned {
        sink.plan(kind, *n);
    }
    for row in planned.settled {
        sink.record(row)?;
    }
    let resolved = &planned.resolved;
    let errors = if dry_run {
        vec![None; planned.plans.len()]
    } else {
        // The snapshot the plans were made from already gave each plan its ids.
        let applier = Applier::new(
            client,
            &resolved.profile_type().id,
            &resolved.key_attribute().uid,
            resolved.manager_attribute().map(|a| a.uid.as_str()),
            self_relationship(resolved),
            resolved.config().nerm.concurrency as usize,
        );
        applier
            .apply_with(&planned.plans, super::apply::Ids::from_plans(&planned.plans), false)
            .await
            .0
            .into_iter()
            .map(|e| e.map(|e| e.message().to_string()))
            .collect()
    };
    for (p, err) in planned.plans.into_iter().zip(errors) {
        sink.record(outcome_row(p, err))?;
    }
    let stats = client.stats();
    sink.set_requests(stats.requests.clone(), stats.rate_limited, stats.retries);
    progress(&format!("done in {:.1}s: {} NERM requests", started.elapsed().as_secs_f64(), stats.total_requests()));
    Ok(())
}

/// The self-link relationship the config asks for (`owner`/`contributor`), if any.
pub fn self_relationship(cfg: &crate::config::ResolvedConfig) -> Option<&'static str> {
    match cfg.config().contributors.self_relationship {
        crate::config::SelfRelationship::Owner => Some("owner"),
        crate::config::SelfRelationship::Contributor => Some("contributor"),
        crate::config::SelfRelationship::None => None,
    }
}
