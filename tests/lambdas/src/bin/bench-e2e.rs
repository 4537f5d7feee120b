//! `bench-e2e`: benchmark scenario 5 of issue 6, a first import through the whole local stack.
//!
//! Scenarios 3 and 4 run the engine in process. This one runs what a deployment runs, so the
//! cost of the split over S3 and SQS shows: moto_server for S3, SQS, SNS and Secrets Manager
//! (started by `infra/local/with-moto.sh`, found through `MOTO_URL`), the NERM simulator behind a
//! rate limit, and the real `csv-ingest` and `nerm-provisioner` handlers fed as Lambda feeds
//! them. It lives here, not in `nerm-bench`, because it needs moto and the handlers; it writes
//! the same result rows (`bench::util::Measurement`), so `nerm-bench report` renders it too.
//!
//! ```sh
//! cargo build --release -p lambda-tests --bin bench-e2e
//! infra/local/with-moto.sh target/release/bench-e2e --results DIR [--employees 2000] [--runs 3]
//! ```
//!
//! Each run gets a fresh simulator (demo tenant) and fresh bucket, queues, topic and secret. The
//! clock starts when the S3 event is handed to the ingest and stops when `summary.json` exists.
//! The provisioners start with the ingest, as the event source would, and each of them is an
//! instance of its own (its own client and pace, `NERM_REQUESTS_PER_10S / workers`), all under
//! the one NERM limit. A run fails, whatever its timing, unless every row ends `created`.

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use bench::generate::{Variant, hr_string};
use bench::util::{self, Measurement, breakdown, fmt_num};
use clap::Parser;
use common::{Batch, Harness, Stack, err, futures_join_all};
use serde_json::{Value, json};
use shared::pipeline::Settings;
use shared::report::Outcome;

const KEY: &str = "incoming/hr-export.csv";
/// The generator's seed for this scenario (3 and 4 use their own).
const SEED: u64 = 5;
/// template.yaml: the work queue's visibility timeout. A slow batch is never handed to a second
/// worker while the first still works on it.
const VISIBILITY_TIMEOUT: &str = "1800";

#[derive(Parser)]
#[command(
    name = "bench-e2e",
    about = "Benchmark scenario 5: a first import through moto, the simulator and the real handlers"
)]
struct Cli {
    /// Where the scenario's JSON goes (read by `nerm-bench report`).
    #[arg(long)]
    results: PathBuf,
    #[arg(long, default_value_t = 2_000)]
    employees: usize,
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// NERM's limit in the simulator, `REQUESTS/SECONDS` (a token bucket with a burst of
    /// REQUESTS). The deployment's `NermRequestsPer10s` is set to the same rate.
    #[arg(long, default_value = "100/10")]
    nerm_limit: String,
    /// Latency the simulator adds to every request.
    #[arg(long, default_value_t = 20)]
    latency_ms: u64,
    /// Concurrent provisioners (`ProvisionerMaxConcurrency`, 4 in template.yaml).
    #[arg(long, default_value_t = 4)]
    workers: u32,
    /// Messages per provisioner invocation (the event source's `BatchSize`, 1 in template.yaml).
    #[arg(long, default_value_t = 1)]
    batch_size: i32,
    /// A run that has not finished after this long fails.
    #[arg(long, default_value_t = 1_800)]
    timeout_secs: u64,
}

/// NERM's limit: `requests` per `seconds`, refilled continuously.
#[derive(Debug, Clone, Copy)]
struct Limit {
    requests: u32,
    seconds: u32,
}

impl Limit {
    fn parse(text: &str) -> Result<Limit, String> {
        let bad = || format!("--nerm-limit {text:?}: expected REQUESTS/SECONDS, e.g. 100/10");
        let (r, s) = text.split_once('/').ok_or_else(bad)?;
        let (requests, seconds) = (r.trim().parse().map_err(|_| bad())?, s.trim().parse().map_err(|_| bad())?);
        if requests == 0 || seconds == 0 {
            return Err(bad());
        }
        Ok(Limit { requests, seconds })
    }

    /// R, in requests per second.
    fn rate(self) -> f64 {
        f64::from(self.requests) / f64::from(self.seconds)
    }

    /// The deployment's `NermRequestsPer10s` for the same rate.
    fn per_10s(self) -> u32 {
        (self.requests * 10 / self.seconds).max(1)
    }
}

/// What one run measured.
struct RunResult {
    /// From the S3 event to `summary.json`.
    wall: f64,
    /// The ingest handler's own time.
    ingest: f64,
    /// `/api` requests the simulator served (not 429) and refused with a 429.
    accepted: u64,
    rejected_429: u64,
    /// Per `METHOD /route`, 429s included.
    requests: BTreeMap<String, u64>,
    /// What the run's summary says of itself.
    summary_ms: u64,
    client_retries: u64,
    /// SQS messages the ingest queued, and what the provisioners handled.
    queued: u64,
    handled: u64,
    /// Messages the provisioners queued (the links wave).
    links_wave: u64,
    /// Requests served for a rerun of a file with 1% of the rows changed, and its wall time.
    rerun_accepted: u64,
    rerun_wall: f64,
    redelivered: u64,
    invocations: u64,
    failures: u64,
}

/// The state the ingest and the provisioners of one run share (all on one task).
struct RunState<'a> {
    stack: &'a Stack,
    summary_key: String,
    t0: Instant,
    timeout: Duration,
    batch_size: i32,
    ingest_done: Cell<bool>,
    busy: Cell<usize>,
    done_at: Cell<Option<Duration>>,
    error: RefCell<Option<String>>,
    batches: RefCell<Vec<Batch>>,
}

impl<'a> RunState<'a> {
    fn new(stack: &'a Stack, summary_key: String, cli: &Cli) -> RunState<'a> {
        RunState {
            stack,
            summary_key,
            t0: Instant::now(),
            timeout: Duration::from_secs(cli.timeout_secs),
            batch_size: cli.batch_size,
            ingest_done: Cell::new(false),
            busy: Cell::new(0),
            done_at: Cell::new(None),
            error: RefCell::new(None),
            batches: RefCell::new(Vec::new()),
        }
    }

    /// Hands the S3 event to the ingest while the workers work the queue, until the run has its
    /// summary: the ingest's answer, its own time, and the wall time.
    async fn run(
        &self,
        ingest: &csv_ingest::handler::Deps,
        workers: &[nerm_provisioner::handler::Deps],
        event: aws_lambda_events::event::s3::S3Event,
    ) -> Result<(Value, f64, f64), String> {
        let timed_ingest = async {
            let answer = self.ingest(ingest, event).await;
            (answer, util::secs(self.t0))
        };
        let ((answer, ingest_secs), ()) =
            tokio::join!(timed_ingest, futures_join_all(workers.iter().map(|deps| self.worker(deps))));
        if let Some(e) = self.error.borrow_mut().take() {
            return Err(e);
        }
        let wall = self.done_at.get().expect("the run stopped with a summary").as_secs_f64();
        Ok((answer, ingest_secs, wall))
    }

    fn stopped(&self) -> bool {
        self.done_at.get().is_some() || self.error.borrow().is_some()
    }

    fn fail(&self, why: String) {
        self.error.borrow_mut().get_or_insert(why);
    }

    /// Stops the clock once `summary.json` exists.
    async fn check_summary(&self) {
        if self.done_at.get().is_none() && self.stack.object(&self.summary_key).await.is_some() {
            self.done_at.set(Some(self.t0.elapsed()));
        }
    }

    /// One provisioner instance: receives up to a batch, hands it to the handler, deletes what
    /// it did not report as failed (as the event source does), until the run has its summary.
    async fn worker(&self, deps: &nerm_provisioner::handler::Deps) {
        while !self.stopped() {
            if self.t0.elapsed() > self.timeout {
                self.fail(format!("the run did not finish within {} s", self.timeout.as_secs()));
                return;
            }
            let messages = self.stack.receive_up_to(&self.stack.queue, self.batch_size, 1).await;
            if messages.is_empty() {
                // (a message another worker holds counts in the depth; `busy` covers its batch)
                if self.ingest_done.get()
                    && self.busy.get() == 0
                    && self.stack.queue_depth(&self.stack.queue).await == 0
                {
                    self.check_summary().await;
                    if self.done_at.get().is_none() {
                        self.fail("the work queue is empty but the run has no summary.json".into());
                    }
                }
                continue;
            }
            self.busy.set(self.busy.get() + 1);
            let batch = self.stack.provision_batch(deps, &messages).await;
            self.busy.set(self.busy.get() - 1);
            self.batches.borrow_mut().push(batch);
            self.check_summary().await;
        }
    }

    /// The S3 event reaching csv-ingest; the ingest's answer.
    async fn ingest(&self, deps: &csv_ingest::handler::Deps, event: aws_lambda_events::event::s3::S3Event) -> Value {
        let answer = match csv_ingest::handler::handle(deps, event).await {
            Ok(answer) => answer,
            Err(e) => {
                self.fail(format!("csv-ingest failed: {e:?}"));
                Value::Null
            }
        };
        self.ingest_done.set(true);
        self.check_summary().await;
        answer
    }
}

async fn one_run(cli: &Cli, limit: Limit, csv: &str) -> Result<RunResult, String> {
    let sim = Harness::with(json!({ "faults": {
        "rate_limit": { "requests": limit.requests, "per_seconds": limit.seconds },
        "latency_ms": cli.latency_ms,
    }}))
    .await;
    let stack = Stack::with_sim("bench", sim).await;
    stack
        .aws
        .sqs
        .set_queue_attributes()
        .queue_url(&stack.queue.url)
        .attributes(QueueAttributeName::VisibilityTimeout, VISIBILITY_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("set the work queue's visibility timeout: {}", err(&e)))?;

    // The deployment's settings and pace (template.yaml defaults, unless the flags say otherwise).
    let settings = Settings::default();
    // Each instance's share of the limit, as the functions compute it from their environment.
    let share = shared::env::Env::from_fn(|name| match name {
        "NERM_REQUESTS_PER_10S" => Some(limit.per_10s().to_string()),
        "PROVISIONER_MAX_CONCURRENCY" => Some(cli.workers.to_string()),
        _ => None,
    })
    .nerm_share_per_10s()
    .map_err(|e| e.to_string())?;
    let ingest = stack.ingest_with(csv_ingest::config::Config {
        settings: settings.clone(),
        requests_per_10s: share,
        limit_per_10s: limit.per_10s(),
        ..stack.ingest_config()
    });
    let provisioner = nerm_provisioner::config::Config {
        settings: settings.clone(),
        // (the provisioners share the whole limit, see nerm_provisioner::config)
        requests_per_10s: (limit.per_10s() / cli.workers).max(1),
        ..stack.provisioner_config()
    };
    let workers: Vec<nerm_provisioner::handler::Deps> = (0..cli.workers)
        .map(|_| nerm_provisioner::handler::Deps::with_sdk(provisioner.clone(), &stack.aws.sdk))
        .collect::<Result<_, _>>()?;

    let up = stack.upload(KEY, csv.as_bytes().to_vec(), None).await;
    let version = up.version_id.clone().unwrap_or_else(|| up.etag.clone());
    let run = shared::pipeline::ingest::run_id(&stack.bucket, KEY, &version);
    let event = stack.s3_event(&[&up]);
    let state = RunState::new(&stack, settings.report_key(&run, "summary.json"), cli);
    let (answer, ingest_secs, wall) = state.run(&ingest, &workers, event).await?;

    // The work must be right: one run, every row created, nothing left over.
    let outcome = &answer["records"][0]["outcome"];
    if outcome["started"].as_str() != Some(run.as_str()) {
        return Err(format!("the ingest did not start run {run}: {answer}"));
    }
    let queued = outcome["messages"].as_u64().unwrap_or(0);
    let summary = stack.summary(&run).await.ok_or("summary.json vanished")?;
    let employees = cli.employees as u64;
    if summary.rows_total != employees || summary.count_of(Outcome::Created) != employees {
        return Err(format!("expected {employees} rows, all created; the summary counts {:?}", summary.counts));
    }
    let rows = stack.report_rows(&run).await;
    let not_created: Vec<_> = rows.iter().filter(|r| r.outcome != Outcome::Created).take(5).collect();
    if rows.len() as u64 != employees || !not_created.is_empty() {
        return Err(format!("report.jsonl has {} rows; some not created: {not_created:?}", rows.len()));
    }
    let dead = stack.queue_depth(&stack.dlq).await;
    if dead > 0 {
        return Err(format!("{dead} messages went to the DLQ"));
    }
    let stats = stack.sim.stats().await;
    common::engine::check_spec_violations(&stats, true);

    let batches = state.batches.into_inner();
    let (rerun_accepted, rerun_wall) = rerun_changed(cli, &stack, &ingest, &workers).await?;
    let received: Vec<&(String, u32, String)> = batches.iter().flat_map(|b| b.received.iter()).collect();
    let distinct: HashSet<&str> = received.iter().map(|(id, _, _)| id.as_str()).collect();
    let rejected_429 = stats["rate_limited"].as_u64().unwrap_or(0);
    Ok(RunResult {
        wall,
        ingest: ingest_secs,
        accepted: stats["total"].as_u64().unwrap_or(0).saturating_sub(rejected_429),
        rejected_429,
        requests: common::engine::requests_of(&stats),
        summary_ms: summary.duration_ms,
        client_retries: summary.retries,
        queued,
        handled: received.len() as u64,
        links_wave: (distinct.len() as u64).saturating_sub(queued),
        redelivered: (received.len() - distinct.len()) as u64,
        invocations: batches.len() as u64,
        failures: batches.iter().map(|b| b.failed.len() as u64).sum(),
        rerun_accepted,
        rerun_wall,
    })
}

/// Drops a new version of the file with 1% of the rows changed (a title each) and works it off
/// as the first import was; answers the requests served and the wall time.
async fn rerun_changed(
    cli: &Cli,
    stack: &Stack,
    ingest: &csv_ingest::handler::Deps,
    workers: &[nerm_provisioner::handler::Deps],
) -> Result<(u64, f64), String> {
    stack.sim.reset_stats().await;
    let csv = hr_string(cli.employees, SEED, Variant { change_every: Some(100) });
    let up = stack.upload(KEY, csv.into_bytes(), None).await;
    let version = up.version_id.clone().unwrap_or_else(|| up.etag.clone());
    let run = shared::pipeline::ingest::run_id(&stack.bucket, KEY, &version);
    let state = RunState::new(stack, Settings::default().report_key(&run, "summary.json"), cli);
    let (_, _, wall) = state.run(ingest, workers, stack.s3_event(&[&up])).await?;
    let summary = stack.summary(&run).await.ok_or("the rerun's summary.json vanished")?;
    let changed = (cli.employees / 100) as u64;
    if summary.count_of(Outcome::Updated) != changed || summary.count_of(Outcome::Failed) != 0 {
        return Err(format!("the rerun should update {changed} rows; the summary counts {:?}", summary.counts));
    }
    let stats = stack.sim.stats().await;
    let served = stats["total"].as_u64().unwrap_or(0).saturating_sub(stats["rate_limited"].as_u64().unwrap_or(0));
    Ok((served, wall))
}

async fn scenario(cli: &Cli) -> Result<(), String> {
    let limit = Limit::parse(&cli.nerm_limit)?;
    if cli.runs == 0 || cli.employees == 0 || cli.workers == 0 || !(1..=10).contains(&cli.batch_size) {
        return Err("--runs, --employees and --workers must be positive, --batch-size 1 to 10".into());
    }
    util::note_load(&cli.results, "scenario 5 (end to end)");
    println!("== scenario 5: moto at {}", common::moto_url());
    let csv = hr_string(cli.employees, SEED, Variant::default());
    let (r, burst) = (limit.rate(), f64::from(limit.requests));
    let mut got: Vec<RunResult> = Vec::new();
    for i in 0..cli.runs {
        let p = one_run(cli, limit, &csv).await.map_err(|e| format!("run {}: {e}", i + 1))?;
        println!(
            "scenario 5: run {}: {:.1}s wall (ingest {:.1}s), {} requests served, {} 429s, floor {:.1}s, \
             {} messages queued, {} handled ({} links wave, {} redeliveries) in {} invocations; \
             rerun with 1% changed: {} requests, {:.1}s",
            i + 1,
            p.wall,
            p.ingest,
            p.accepted,
            p.rejected_429,
            (p.accepted as f64 - burst).max(0.0) / r,
            p.queued,
            p.handled,
            p.links_wave,
            p.redelivered,
            p.invocations,
            p.rerun_accepted,
            p.rerun_wall
        );
        got.push(p);
    }

    let scenario = format!(
        "5. end to end through the local stack: {} employees, first import (moto + simulator at \
         R = {} req / {} s, {} ms latency; {} provisioners of {} messages per batch, each paced to \
         {} req / 10 s)",
        fmt_num(cli.employees as f64),
        limit.requests,
        limit.seconds,
        cli.latency_ms,
        cli.workers,
        cli.batch_size,
        (limit.per_10s() / cli.workers).max(1),
    );
    let s = scenario.as_str();
    let per_run = |f: &dyn Fn(&RunResult) -> f64| -> Vec<f64> { got.iter().map(f).collect() };
    let list = |f: &dyn Fn(&RunResult) -> u64| got.iter().map(|p| f(p).to_string()).collect::<Vec<_>>().join(", ");
    let floor = |p: &RunResult| (p.accepted as f64 - burst).max(0.0) / r;
    // The run in the middle by wall time: its endpoints are shown.
    let mut order: Vec<&RunResult> = got.iter().collect();
    order.sort_by(|a, b| a.wall.total_cmp(&b.wall));
    let middle = order[order.len() / 2];
    let employees = cli.employees as f64;
    let m = vec![
        Measurement::over(s, "wall time, S3 event to summary.json", "s", &per_run(&|p| p.wall)).note(format!(
            "of which the ingest handler {} s (median); the summary's own duration_ms per run: {}",
            fmt_num(util::median(&per_run(&|p| p.ingest))),
            list(&|p| p.summary_ms)
        )),
        Measurement::over(s, "NERM requests served (not 429)", "requests", &per_run(&|p| p.accepted as f64)).note(
            format!(
                "{} per employee; the median run: {}",
                fmt_num(util::median(&per_run(&|p| p.accepted as f64)) / employees),
                breakdown(&middle.requests)
            ),
        ),
        Measurement::over(
            s,
            "NERM requests, rerun with 1% changed",
            "requests",
            &per_run(&|p| p.rerun_accepted as f64),
        )
        .note(format!(
            "{} per employee; a new version of the file, a title changed in 1 row of 100; wall times: {}",
            fmt_num(util::median(&per_run(&|p| p.rerun_accepted as f64)) / employees),
            got.iter().map(|p| format!("{:.1} s", p.rerun_wall)).collect::<Vec<_>>().join(", ")
        )),
        Measurement::over(s, "429s", "429s", &per_run(&|p| p.rejected_429 as f64)).note(format!(
            "{} % of the requests sent (median); 429s per run: {}; client retries per run: {}",
            fmt_num(util::median(&per_run(&|p| p.rejected_429 as f64 * 100.0 / (p.accepted + p.rejected_429) as f64))),
            list(&|p| p.rejected_429),
            list(&|p| p.client_retries)
        )),
        Measurement::over(s, "floor (requests − burst) / R", "s", &per_run(&floor))
            .note(format!("burst {burst}, R = {r} req/s; served requests only")),
        Measurement::over(s, "wall time / floor", "×", &per_run(&|p| p.wall / floor(p))),
        Measurement::over(s, "accepted req/s as % of R", "%", &per_run(&|p| p.accepted as f64 / p.wall / r * 100.0))
            .note("the initial burst counts too"),
        Measurement::over(s, "SQS messages handled by the provisioners", "messages", &per_run(&|p| p.handled as f64))
            .note(format!(
                "queued by the ingest per run: {}; the links wave: {}; redelivered: {}; \
                 failures reported: {}; provisioner invocations: {}",
                list(&|p| p.queued),
                list(&|p| p.links_wave),
                list(&|p| p.redelivered),
                list(&|p| p.failures),
                list(&|p| p.invocations)
            )),
        Measurement::over(s, "rows created", "rows", &per_run(&|_| employees)).note(
            "checked in every run: summary.json and report.jsonl, every row created; DLQ empty; no spec violation",
        ),
    ];
    util::save(&cli.results, &format!("5-e2e-{:06}", cli.employees), &m)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match scenario(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-e2e: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Limit;

    #[test]
    fn a_limit_reads_as_requests_per_seconds_and_gives_the_deployment_the_same_rate() {
        let l = Limit::parse("100/10").expect("a limit");
        assert_eq!((l.requests, l.seconds, l.rate(), l.per_10s()), (100, 10, 10.0, 100));
        let l = Limit::parse(" 20 / 2 ").expect("a limit");
        assert_eq!((l.rate(), l.per_10s()), (10.0, 100));
    }

    #[test]
    fn a_limit_without_a_window_or_with_a_zero_is_refused() {
        for bad in ["100", "100/", "/10", "0/10", "100/0", "ten/10"] {
            assert!(Limit::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
