//! One whole run in one process (the CLI; the Lambdas split the same stages over SQS):
//! resolve the config, validate the file, snapshot NERM, plan, then apply or stop (dry run),
//! writing one report row per input row.

use std::io::{self, Read, Write};
use std::time::Instant;

use super::apply::{Applier, Ids, ItemError, MissingManager, waiting_rest};
use super::plan::{EmployeePlan, FileIndex, PlanKind, Planner, RowPlan, ThresholdError};
use super::read::{Employee, EmployeeReader, ReadContext, index_file};
use super::snapshot::Snapshot;
use crate::config::{ConfigError, MappingConfig, ResolvedConfig};
use crate::input::{FileError, LoginIndex};
use crate::login::LoginKey;
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
    /// The sink could not take the planner's output (S3 or SQS trouble in the Lambda).
    #[error("handing over the plan failed: {0}")]
    Sink(String),
}

/// What planning found besides the rows themselves.
#[derive(Debug)]
pub struct PlannedRun {
    pub warnings: Vec<String>,
    /// Operation kind → count.
    pub planned: std::collections::BTreeMap<String, u64>,
    /// Rows settled without a write (unchanged, rejected).
    pub settled: u64,
    /// Plans handed to the sink (leavers included).
    pub plans: u64,
}

/// Takes the planner's output as it comes, so that memory does not grow with the file: the
/// CLI applies plans in chunks and writes report rows at once, the ingest Lambda queues plans
/// and writes report parts.
pub trait PlanSink: Send {
    /// Whether [`file_indexed`](Self::file_indexed) needs [`FileIndex::managers`].
    fn wants_managers(&self) -> bool {
        false
    }
    /// The first pass is done: what it learnt about the file (before any other call).
    fn file_indexed(&mut self, _file: &FileIndex) {}
    /// A row that needs no write: unchanged or rejected.
    fn settled(&mut self, row: RowReport) -> impl Future<Output = Result<(), RunError>> + Send;
    /// An employee to change (leavers first, with line 0).
    fn change(&mut self, plan: EmployeePlan) -> impl Future<Output = Result<(), RunError>> + Send;
}

/// The report row of a row the planner settled.
fn settled_row(plan: RowPlan) -> Result<RowReport, Box<EmployeePlan>> {
    match plan {
        RowPlan::Unchanged { line, login, key, warnings } => Ok(RowReport {
            line,
            login,
            employee_key: key,
            outcome: Outcome::Unchanged,
            changes: vec![],
            error: None,
            warnings,
        }),
        RowPlan::Rejected(r) => Ok(RowReport {
            line: r.line,
            login: r.login,
            employee_key: r.key,
            outcome: Outcome::Rejected,
            changes: vec![],
            error: Some(r.reasons.join("; ")),
            warnings: vec![],
        }),
        RowPlan::Change(p) => Err(Box::new(p)),
    }
}

/// Reads NERM's catalog (profile types, attributes, roles) and resolves the mapping config
/// against it: an unknown attribute or role stops the run here, before any write.
pub async fn resolve(config: &MappingConfig, client: &NermClient) -> Result<ResolvedConfig, RunError> {
    let catalog = Snapshot::catalog(client).await?;
    Ok(config.resolve(&catalog)?)
}

/// Plans per hand-over from the planning thread to the sink: enough to make the channel cost
/// nothing per row, few enough to keep memory flat.
const PLANS_PER_BATCH: usize = 256;
/// Batches planned ahead of the sink.
const BATCHES_AHEAD: usize = 4;

/// Validates the whole file (nothing is written if that fails), snapshots NERM, works out the
/// leavers (a full-sync threshold breach is an error before the sink sees anything), then
/// plans every row into `sink` as it is read (`open` is called twice). Both passes over the
/// file run on tokio's blocking threads ([`blocking`]): the runtime only snapshots NERM and
/// feeds the sink.
pub async fn plan_file<R, F, S>(
    open: F,
    resolved: &ResolvedConfig,
    client: &NermClient,
    sink: &mut S,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<PlannedRun, RunError>
where
    R: Read + Send + 'static,
    F: Fn() -> io::Result<R>,
    S: PlanSink,
{
    let warnings = resolved.warnings().iter().map(|w| w.to_string()).collect();
    let mut run = PlannedRun { warnings, planned: Default::default(), settled: 0, plans: 0 };
    let (input, cfg, index_managers) = (open()?, resolved.clone(), sink.wants_managers());
    let file = blocking(move || {
        let mut ctx = ReadContext::new(&cfg);
        ctx.index_managers = index_managers;
        index_file(input, &ctx)
    })
    .await?;
    progress(&format!("validated the file: {} valid rows ({} MiB of index)", file.valid_rows, file.heap_bytes() >> 20));
    sink.file_indexed(&file);
    let snap = Snapshot::load(client, resolved).await?;
    run.warnings.extend(snap.warnings.iter().cloned());
    progress(&format!(
        "read NERM: {} users, {} {} profiles ({} requests so far)",
        snap.users.len(),
        snap.profiles.len(),
        resolved.profile_type().name,
        client.stats().total_requests()
    ));
    let (to_sink, mut from_planner) = tokio::sync::mpsc::channel(BATCHES_AHEAD);
    let (input, cfg) = (open()?, resolved.clone());
    let planner = blocking(move || plan_rows(input, &cfg, &snap, &file, to_sink));
    let fed = feed(&mut run, sink, &mut from_planner).await;
    // A sink that failed leaves the planner nobody to hand plans to: it stops.
    drop(from_planner);
    let planner_warnings = planner.await;
    fed?;
    run.warnings.extend(planner_warnings?);
    progress(&format!("planned: {} employees to change, {} rows settled", run.plans, run.settled));
    Ok(run)
}

/// The second pass, on a blocking thread: the leavers (with line 0), then a plan for every row
/// of the file, handed to `plans` in batches as they come. Returns the planner's warnings;
/// returns early when nobody takes the plans any more.
fn plan_rows<R: Read + Send + 'static>(
    input: R,
    cfg: &ResolvedConfig,
    snap: &Snapshot,
    file: &FileIndex,
    plans: tokio::sync::mpsc::Sender<Vec<RowPlan>>,
) -> Result<Vec<String>, RunError> {
    let mut batch = Vec::with_capacity(PLANS_PER_BATCH);
    // Hands the batch over; `false` when the receiver is gone.
    let hand_over = |batch: &mut Vec<RowPlan>| {
        let full = std::mem::replace(batch, Vec::with_capacity(PLANS_PER_BATCH));
        full.is_empty() || plans.blocking_send(full).is_ok()
    };
    let ctx = ReadContext::new(cfg);
    let mut planner = Planner::new(cfg, snap, file);
    // The leavers reach the sink before the file is opened again.
    batch.extend(planner.leavers()?.into_iter().map(RowPlan::Change));
    if !hand_over(&mut batch) {
        return Ok(Vec::new());
    }
    let mut reader = EmployeeReader::new(input, &ctx)?.piped().second_pass(&file.logins, &ctx);
    let mut employee = Employee::default();
    loop {
        let item = match reader.read_into(&mut employee) {
            Ok(Some(item)) => item,
            Ok(None) => break,
            Err(e) => {
                // The rows before the error reach the sink, as they would have row by row.
                hand_over(&mut batch);
                return Err(e.into());
            }
        };
        batch.push(planner.plan_row(item.map(|()| &employee)));
        if batch.len() >= PLANS_PER_BATCH && !hand_over(&mut batch) {
            return Ok(Vec::new());
        }
    }
    hand_over(&mut batch);
    Ok(planner.warnings().to_vec())
}

/// Hands the planner's output to `sink` as it comes, and counts it into `run`.
async fn feed<S: PlanSink>(
    run: &mut PlannedRun,
    sink: &mut S,
    from_planner: &mut tokio::sync::mpsc::Receiver<Vec<RowPlan>>,
) -> Result<(), RunError> {
    while let Some(batch) = from_planner.recv().await {
        for plan in batch {
            match settled_row(plan) {
                Ok(row) => {
                    run.settled += 1;
                    sink.settled(row).await?;
                }
                Err(p) => {
                    run.plans += 1;
                    for op in &p.ops {
                        *run.planned.entry(op.kind().to_string()).or_insert(0) += 1;
                    }
                    sink.change(*p).await?;
                }
            }
        }
    }
    Ok(())
}

/// Runs `work` (a pass over a file, local disk) on tokio's blocking threads, so that it holds
/// up none of the runtime's workers (a current-thread runtime has only the one). It starts at
/// once; the future gives its result, and a panic in it carries on in the caller.
pub(crate) fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> impl Future<Output = T> {
    let handle = tokio::task::spawn_blocking(work);
    async move {
        match handle.await {
            Ok(out) => out,
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                // Cancelled before it started: the runtime is shutting down.
                Err(e) => panic!("blocking work did not run: {e}"),
            },
        }
    }
}

/// The report row of an applied (or, in a dry run, planned) employee.
pub fn outcome_row(p: EmployeePlan, error: Option<String>) -> RowReport {
    let outcome = match (&error, p.kind) {
        (Some(_), _) => Outcome::Failed,
        (None, PlanKind::Create) => Outcome::Created,
        (None, PlanKind::Update) => Outcome::Updated,
        (None, PlanKind::Disable) => Outcome::Disabled,
    };
    RowReport {
        line: p.line,
        login: p.login,
        employee_key: p.key,
        outcome,
        changes: p.changes,
        error,
        warnings: p.warnings,
    }
}

/// The CLI's sink: report rows go straight to the report; plans are applied in chunks.
struct ApplySink<'a, J: Write, C: Write> {
    report: &'a mut ReportSink<J, C>,
    /// `None` in a dry run.
    applier: Option<Applier<'a>>,
    chunk_size: usize,
    chunk: Vec<EmployeePlan>,
    /// What is left of plans that waited for a manager from a later chunk.
    waiting: Vec<EmployeePlan>,
    /// Logins that manage someone in the file, and the ids of those created or found so far:
    /// a later chunk needs them, nobody needs the others.
    managers: LoginIndex,
    carried: Ids,
}

impl<J: Write + Send, C: Write + Send> ApplySink<'_, J, C> {
    /// Applies the chunk with the managers' ids known so far. Unless it is the last, a plan
    /// whose manager is still to come waits for the end.
    async fn flush(&mut self, last: bool) -> Result<(), RunError> {
        let plans = std::mem::take(&mut self.chunk);
        let Some(applier) = &self.applier else {
            for p in plans {
                self.report.record(outcome_row(p, None))?;
            }
            return Ok(());
        };
        if plans.is_empty() {
            return Ok(());
        }
        let missing = if last { MissingManager::Fail } else { MissingManager::Wait };
        let mut ids = std::mem::take(&mut self.carried);
        let own = Ids::from_plans(&plans);
        ids.users.extend(own.users);
        ids.profiles.extend(own.profiles);
        // Ids of employees who manage nobody are not needed after this chunk.
        let forget: Vec<(LoginKey, String)> = plans
            .iter()
            .filter(|p| !self.managers.contains(&p.login))
            .map(|p| (LoginKey::of(&p.login), p.key.clone()))
            .collect();
        let (errors, mut ids) = applier.apply_with(&plans, ids, missing).await;
        for (p, err) in plans.into_iter().zip(errors) {
            match err {
                Some(ItemError::Waiting(_)) if !last => self.waiting.push(waiting_rest(p, &ids)),
                err => self.report.record(outcome_row(p, err.map(|e| e.message().to_string())))?,
            }
        }
        for (login, key) in forget {
            ids.users.remove(&login);
            ids.profiles.remove(&key);
        }
        self.carried = ids;
        Ok(())
    }

    /// Applies the last chunk, then what waited: every manager of the file exists by then,
    /// unless its own plan failed.
    async fn finish(&mut self) -> Result<(), RunError> {
        self.flush(self.waiting.is_empty()).await?;
        if !self.waiting.is_empty() {
            self.chunk = std::mem::take(&mut self.waiting);
            self.flush(true).await?;
        }
        Ok(())
    }
}

impl<J: Write + Send, C: Write + Send> PlanSink for ApplySink<'_, J, C> {
    fn wants_managers(&self) -> bool {
        self.applier.is_some()
    }

    fn file_indexed(&mut self, file: &FileIndex) {
        self.managers = file.managers.clone();
    }

    async fn settled(&mut self, row: RowReport) -> Result<(), RunError> {
        self.report.record(row)?;
        Ok(())
    }

    async fn change(&mut self, plan: EmployeePlan) -> Result<(), RunError> {
        self.chunk.push(plan);
        if self.chunk.len() >= self.chunk_size {
            self.flush(false).await?;
        }
        Ok(())
    }
}

/// Plans per apply call in one process. A run that fits applies everything together (managers
/// created in the same call are known by id); a bigger one applies chunk by chunk, carrying the
/// ids of managers from chunk to chunk, and applies what waited for a later chunk at the end.
pub const APPLY_CHUNK: usize = 5_000;

/// How [`run`] goes about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Plan and report, write nothing.
    pub dry_run: bool,
    /// Plans applied together at most (tests use small ones to cover chunked runs).
    pub chunk: usize,
}

impl RunOptions {
    pub fn new(dry_run: bool) -> Self {
        RunOptions { dry_run, chunk: APPLY_CHUNK }
    }
}

/// Runs the whole pipeline in one process, applying plans in chunks of `opts.chunk`. `open` is
/// called twice (validation, planning).
pub async fn run<R, F, J, C>(
    open: F,
    config: &MappingConfig,
    client: &NermClient,
    sink: &mut ReportSink<J, C>,
    opts: RunOptions,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(), RunError>
where
    R: Read + Send + 'static,
    F: Fn() -> io::Result<R>,
    J: Write + Send,
    C: Write + Send,
{
    let started = Instant::now();
    let resolved = resolve(config, client).await?;
    let target = super::apply::Target::from_resolved(&resolved);
    let applier = (!opts.dry_run).then(|| Applier::new(client, &target));
    let mut apply = ApplySink {
        report: sink,
        applier,
        chunk_size: opts.chunk.max(1),
        chunk: Vec::new(),
        waiting: Vec::new(),
        managers: LoginIndex::default(),
        carried: Ids::default(),
    };
    let planned = plan_file(open, &resolved, client, &mut apply, progress).await?;
    apply.finish().await?;
    for w in &planned.warnings {
        sink.warn(w);
    }
    for (kind, n) in &planned.planned {
        sink.plan(kind, *n);
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
