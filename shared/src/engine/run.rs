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

/// Runs the whole pipeline. `open` is called twice (validation pass, planning pass).
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
    let catalog = Snapshot::catalog(client).await?;
    let resolved = config.resolve(&catalog)?;
    for w in resolved.warnings() {
        sink.warn(&w.to_string());
    }
    let ctx = ReadContext::new(&resolved);
    let file = index_file(open()?, &ctx)?;
    progress(&format!("validated the file: {} valid rows", file.valid_rows));
    let snap = Snapshot::load(client, &resolved.profile_type().id, &resolved.key_attribute().uid).await?;
    progress(&format!(
        "read NERM: {} users, {} {} profiles ({} requests so far)",
        snap.users.len(),
        snap.profiles.len(),
        resolved.profile_type().name,
        client.stats().total_requests()
    ));

    let mut planner = Planner::new(&resolved, &snap, &file);
    let mut reader = EmployeeReader::new(open()?, &ctx)?;
    let mut plans: Vec<EmployeePlan> = Vec::new();
    while let Some(item) = reader.next_employee()? {
        match planner.plan_row(item) {
            RowPlan::Unchanged { line, login, key } => sink.record(RowReport {
                line,
                login,
                employee_key: key,
                outcome: Outcome::Unchanged,
                changes: vec![],
                error: None,
            })?,
            RowPlan::Rejected(r) => sink.record(RowReport {
                line: r.line,
                login: r.login,
                employee_key: r.key,
                outcome: Outcome::Rejected,
                changes: vec![],
                error: Some(r.reasons.join("; ")),
            })?,
            RowPlan::Change(p) => plans.push(p),
        }
    }
    // A threshold breach stops the run before any write.
    plans.extend(planner.leavers()?);
    for w in planner.warnings() {
        sink.warn(w);
    }
    for p in &plans {
        for op in &p.ops {
            sink.plan(op.kind(), 1);
        }
    }
    progress(&format!("planned: {} employees to change", plans.len()));

    let errors = if dry_run {
        vec![None; plans.len()]
    } else {
        let m = resolved.config();
        let applier = Applier::new(
            client,
            &resolved.profile_type().id,
            &resolved.key_attribute().uid,
            resolved.manager_attribute().map(|a| a.uid.as_str()),
            m.nerm.concurrency as usize,
        );
        applier.apply(&plans, &snap).await
    };
    for (p, err) in plans.into_iter().zip(errors) {
        let outcome = match (&err, p.kind) {
            (Some(_), _) => Outcome::Failed,
            (None, PlanKind::Create) => Outcome::Created,
            (None, PlanKind::Update) => Outcome::Updated,
            (None, PlanKind::Disable) => Outcome::Disabled,
        };
        sink.record(RowReport {
            line: p.line,
            login: p.login,
            employee_key: p.key,
            outcome,
            changes: p.changes,
            error: err,
        })?;
    }
    let stats = client.stats();
    sink.set_requests(stats.requests.clone(), stats.rate_limited, stats.retries);
    progress(&format!("done in {:.1}s: {} NERM requests", started.elapsed().as_secs_f64(), stats.total_requests()));
    Ok(())
}
