//! `nerm-bench`: the benchmark suite behind `make bench` (`infra/bench.sh` runs each scenario,
//! then `report`). Benchmarks print numbers; they never fail on timings — a command fails only
//! when the work itself goes wrong (a row rejected, a run not completing).
//!
//! ```sh
//! nerm-bench read     --work DIR --results DIR [--rows 1000000] [--runs 5]
//! nerm-bench plan     --work DIR --results DIR [--employees 100000] [--runs 5]
//! nerm-bench requests --results DIR [--employees 10000]
//! nerm-bench pacing   --results DIR [--runs 3] [--stream-runs 1] [--employees 4000] [--writes 330]
//!                     [--client-requests N]
//! nerm-bench coldstart --work DIR --results DIR --bin-dir target/release [--runs 5] [--strace]
//! nerm-bench report   --results DIR --doc BENCHMARKS.md
//! nerm-bench gen      --rows N [--seed S] [--change-every K] > hr.csv
//! ```
//!
//! Scenario 5 (end to end through moto and the real handlers) is `bench-e2e` in `tests/lambdas`;
//! it writes the same result rows, so `report` renders it with the others.

mod coldstart;
mod plan;
mod read;
mod report;
mod requests;

use std::path::PathBuf;
use std::process::ExitCode;

// The generator and the result rows live in the library: scenario 5's runner reuses them.
use bench::{generate, util};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "nerm-bench", about = "Benchmarks of nerm-employee-sync (see BENCHMARKS.md)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Scenario 1: read + validate throughput and peak RSS (one child process per run).
    Read {
        #[arg(long)]
        work: PathBuf,
        #[arg(long)]
        results: PathBuf,
        #[arg(long, default_value_t = 1_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// One measured run of scenario 1 (internal).
    #[command(hide = true)]
    ReadChild {
        #[arg(long)]
        mode: String,
        #[arg(long)]
        file: PathBuf,
    },
    /// Scenario 2: planning time and RSS (one child process per run).
    Plan {
        #[arg(long)]
        work: PathBuf,
        #[arg(long)]
        results: PathBuf,
        #[arg(long, default_value_t = 100_000)]
        employees: usize,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// One measured run of scenario 2 (internal).
    #[command(hide = true)]
    PlanChild {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long)]
        csv: PathBuf,
    },
    /// Scenario 3: NERM requests per employee against the simulator.
    Requests {
        #[arg(long)]
        results: PathBuf,
        #[arg(long, default_value_t = 10_000)]
        employees: usize,
    },
    /// Scenario 4: pacing efficiency against a rate-limited simulator.
    Pacing {
        #[arg(long)]
        results: PathBuf,
        /// Runs of workload A (the engine's first import).
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Runs of workload B (the single-write stream; it varies little between runs).
        #[arg(long, default_value_t = 1)]
        stream_runs: usize,
        /// Employees of the first import (workload A).
        #[arg(long, default_value_t = 4_000)]
        employees: usize,
        /// Single-record writes (workload B).
        #[arg(long, default_value_t = 330)]
        writes: usize,
        /// Pace the client to this many requests per window instead of the simulator's 20
        /// (to try headroom below the limit).
        #[arg(long)]
        client_requests: Option<u32>,
    },
    /// Scenario 6: time from process start to the first Lambda Runtime API poll.
    Coldstart {
        #[arg(long)]
        work: PathBuf,
        #[arg(long)]
        results: PathBuf,
        /// Where the release `csv-ingest` and `nerm-provisioner` binaries are.
        #[arg(long)]
        bin_dir: PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Also list, under strace, every connect() before the first poll.
        #[arg(long)]
        strace: bool,
    },
    /// Rewrites the results section of BENCHMARKS.md from the scenarios' JSON.
    Report {
        #[arg(long)]
        results: PathBuf,
        #[arg(long)]
        doc: PathBuf,
    },
    /// Writes a generated HR export to stdout.
    Gen {
        #[arg(long)]
        rows: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Changes the title of one row in K (a "1% changed" file with 100).
        #[arg(long)]
        change_every: Option<usize>,
    },
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Read { work, results, rows, runs } => {
            util::note_load(&results, "scenario 1 (read)");
            read::run(&work, &results, rows, runs)
        }
        Cmd::ReadChild { mode, file } => read::child(&mode, &file).map(|r| util::emit(&r)),
        Cmd::Plan { work, results, employees, runs } => {
            util::note_load(&results, "scenario 2 (plan)");
            plan::run(&work, &results, employees, runs)
        }
        Cmd::PlanChild { dir, csv } => plan::child(&dir, &csv).map(|r| util::emit(&r)),
        Cmd::Requests { results, employees } => {
            util::note_load(&results, "scenario 3 (requests)");
            runtime().and_then(|rt| rt.block_on(requests::requests(&results, employees)))
        }
        Cmd::Pacing { results, runs, stream_runs, employees, writes, client_requests } => {
            util::note_load(&results, "scenario 4 (pacing)");
            runtime().and_then(|rt| {
                rt.block_on(requests::pacing(&results, runs, stream_runs, employees, writes, client_requests))
            })
        }
        Cmd::Coldstart { work, results, bin_dir, runs, strace } => {
            util::note_load(&results, "scenario 6 (cold start)");
            coldstart::run(&results, &work, &bin_dir, runs, strace)
        }
        Cmd::Report { results, doc } => report::run(&results, &doc),
        Cmd::Gen { rows, seed, change_every } => {
            generate::write_hr(std::io::stdout().lock(), rows, seed, generate::Variant { change_every })
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("nerm-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
