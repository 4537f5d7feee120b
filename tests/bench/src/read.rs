//! Scenario 1: read + validate throughput of a big export, each measured run in its own
//! process so its peak RSS (`VmHWM`) is its own.
//!
//! Modes, from the floor up:
//! * `baseline`: the process doing nothing (what every RSS figure starts from);
//! * `csv-raw`: the `csv` crate reading `ByteRecord`s, no decoding, no validation (the floor);
//! * `csv-reader`: `shared::input::CsvReader` (UTF-8 check, limits, the 10 wanted columns);
//! * `employee-reader`: `shared::engine::EmployeeReader` (the above plus row validation and the
//!   `Employee` each row refills: the second pass of a run), piped as a run pipes it;
//! * `index-file`: `shared::engine::index_file` (the first pass: validation plus the file
//!   index the planner needs: logins, keys).
//!
//! The last two read the CSV on a second thread when the machine has two cores
//! (`EmployeeReader::piped`), as a run does. Each run also records its CPU time over all
//! threads, so what a pass costs one core stays visible next to its wall-clock rate.

use std::fs::File;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shared::engine::{Employee, EmployeeReader, ReadContext, index_file};
use shared::input::{ColumnSpec, CsvReader, ReaderOptions};

use crate::util::{self, Measurement, mib, proc_status_kb, secs};

pub const MODES: [&str; 5] = ["baseline", "csv-raw", "csv-reader", "employee-reader", "index-file"];

#[derive(Debug, Serialize, Deserialize)]
pub struct ChildResult {
    pub mode: String,
    pub secs: f64,
    pub rows: u64,
    /// Rows the engine rejected (expected 0: the generated file is valid).
    pub rejected: u64,
    pub vm_hwm_kb: u64,
    /// CPU time of the run, every thread's (user + system).
    #[serde(default)]
    pub cpu_secs: f64,
}

/// One measured run (the child side).
pub fn child(mode: &str, file: &Path) -> Result<ChildResult, String> {
    let open = || File::open(file).map_err(|e| format!("cannot open {}: {e}", file.display()));
    let cpu = util::cpu_secs();
    let t = Instant::now();
    let (rows, rejected) = match mode {
        "baseline" => (0, 0),
        "csv-raw" => {
            let mut rdr = csv::ReaderBuilder::new().buffer_capacity(1 << 16).from_reader(open()?);
            let mut record = csv::ByteRecord::new();
            let (mut rows, mut bytes) = (0u64, 0usize);
            while rdr.read_byte_record(&mut record).map_err(|e| e.to_string())? {
                rows += 1;
                bytes += record.as_slice().len();
            }
            std::hint::black_box(bytes);
            (rows, 0)
        }
        "csv-reader" => {
            let columns: Vec<ColumnSpec> =
                crate::generate::HEADER.split(',').map(ColumnSpec::required).collect::<Vec<_>>();
            let mut rdr = CsvReader::new(open()?, &ReaderOptions::default(), &columns).map_err(|e| e.to_string())?;
            let (mut rows, mut rejected, mut bytes) = (0u64, 0u64, 0usize);
            while let Some(row) = rdr.next_row().map_err(|e| e.to_string())? {
                match row {
                    Ok(row) => {
                        rows += 1;
                        bytes += (0..row.len()).map(|i| row.get(i).len()).sum::<usize>();
                    }
                    Err(_) => rejected += 1,
                }
            }
            std::hint::black_box(bytes);
            (rows + rejected, rejected)
        }
        "employee-reader" => {
            let resolved = util::resolved_config();
            let ctx = ReadContext::new(&resolved);
            let mut rdr = EmployeeReader::new(open()?, &ctx).map_err(|e| e.to_string())?.piped();
            let (mut rows, mut rejected) = (0u64, 0u64);
            let mut employee = Employee::default();
            while let Some(item) = rdr.read_into(&mut employee).map_err(|e| e.to_string())? {
                rows += 1;
                if item.is_err() {
                    rejected += 1;
                }
                std::hint::black_box(item.map(|()| &employee).ok());
            }
            (rows, rejected)
        }
        "index-file" => {
            let resolved = util::resolved_config();
            let ctx = ReadContext::new(&resolved);
            let index = index_file(open()?, &ctx).map_err(|e| e.to_string())?;
            let rows = index.logins.len() as u64;
            (rows, rows - index.valid_rows)
        }
        other => return Err(format!("unknown read mode {other:?} (one of {MODES:?})")),
    };
    let secs = secs(t);
    let cpu_secs = util::cpu_secs() - cpu;
    Ok(ChildResult { mode: mode.into(), secs, rows, rejected, vm_hwm_kb: proc_status_kb("VmHWM"), cpu_secs })
}

/// Generates the file, runs every mode `runs` times (baseline once) and records the medians.
pub fn run(work: &Path, results: &Path, rows: usize, runs: usize) -> Result<(), String> {
    let file = work.join(format!("hr-{rows}.csv"));
    let t = Instant::now();
    let out = File::create(&file).map_err(|e| format!("cannot create {}: {e}", file.display()))?;
    crate::generate::write_hr(out, rows, 1, Default::default()).map_err(|e| e.to_string())?;
    let size = std::fs::metadata(&file).map_err(|e| e.to_string())?.len();
    println!(
        "scenario 1: generated {} rows, {:.1} MB in {:.1}s ({})",
        util::fmt_num(rows as f64),
        size as f64 / 1e6,
        secs(t),
        file.display()
    );
    let scenario = format!("1. read + validate, {} rows ({:.0} MB)", util::fmt_num(rows as f64), size as f64 / 1e6);
    let path = file.to_str().ok_or("the work directory is not UTF-8")?;
    let mut all: Vec<(String, Vec<ChildResult>)> = Vec::new();
    for mode in MODES {
        let n = if mode == "baseline" { 1 } else { runs };
        let mut got = Vec::new();
        for _ in 0..n {
            let r: ChildResult = util::run_child(&["read-child", "--mode", mode, "--file", path])?;
            if mode != "baseline" && r.rows != rows as u64 {
                return Err(format!("{mode} read {} rows, expected {rows}", r.rows));
            }
            if r.rejected > 0 {
                return Err(format!("{mode} rejected {} rows of a valid file", r.rejected));
            }
            got.push(r);
        }
        all.push((mode.to_string(), got));
    }
    let by = |mode: &str| all.iter().find(|(m, _)| m == mode).map(|(_, r)| r.as_slice()).unwrap_or_default();
    let rate = |mode: &str| -> Vec<f64> { by(mode).iter().map(|r| rows as f64 / r.secs).collect() };
    let mbps = |mode: &str| -> Vec<f64> { by(mode).iter().map(|r| size as f64 / 1e6 / r.secs).collect() };
    let rss = |mode: &str| -> Vec<f64> { by(mode).iter().map(|r| mib(r.vm_hwm_kb)).collect() };
    // Rows per second of CPU time, all threads: what the pass costs one core.
    let per_cpu = |mode: &str| -> Vec<f64> { by(mode).iter().map(|r| rows as f64 / r.cpu_secs.max(1e-9)).collect() };
    let s = scenario.as_str();
    let mut m = vec![
        Measurement::over(s, "csv crate, ByteRecord (floor): rows/s", "rows/s", &rate("csv-raw")),
        Measurement::over(s, "csv crate, ByteRecord (floor): MB/s", "MB/s", &mbps("csv-raw")),
        Measurement::over(s, "csv crate, ByteRecord (floor): peak RSS", "MiB", &rss("csv-raw")),
        Measurement::over(s, "input::CsvReader (no validation): rows/s", "rows/s", &rate("csv-reader")),
        Measurement::over(s, "input::CsvReader (no validation): peak RSS", "MiB", &rss("csv-reader")),
        Measurement::over(s, "EmployeeReader (read + validate, 2nd pass): rows/s", "rows/s", &rate("employee-reader"))
            .target(">= 1,000,000", 1e6, true),
        Measurement::over(s, "EmployeeReader (read + validate, 2nd pass): MB/s", "MB/s", &mbps("employee-reader")),
        Measurement::over(
            s,
            "EmployeeReader (read + validate, 2nd pass): rows per CPU second",
            "rows/s",
            &per_cpu("employee-reader"),
        ),
        Measurement::over(s, "EmployeeReader (read + validate, 2nd pass): peak RSS", "MiB", &rss("employee-reader"))
            .target("< 128", 128.0, false),
        Measurement::over(s, "index_file (validate + file index, 1st pass): rows/s", "rows/s", &rate("index-file"))
            .target(">= 1,000,000", 1e6, true),
        Measurement::over(s, "index_file (validate + file index, 1st pass): MB/s", "MB/s", &mbps("index-file")),
        Measurement::over(
            s,
            "index_file (validate + file index, 1st pass): rows per CPU second",
            "rows/s",
            &per_cpu("index-file"),
        ),
        Measurement::over(s, "index_file (validate + file index, 1st pass): peak RSS", "MiB", &rss("index-file"))
            .target("< 128", 128.0, false),
        Measurement::one(s, "process baseline (no reading): peak RSS", "MiB", rss("baseline")[0]),
    ];
    // time(ours) / time(csv crate), from the median times: how much our layer costs over the floor.
    let raw_secs = util::median(&by("csv-raw").iter().map(|r| r.secs).collect::<Vec<_>>());
    for (mode, label) in [("employee-reader", "EmployeeReader"), ("index-file", "index_file")] {
        let ratios: Vec<f64> = by(mode).iter().map(|r| r.secs / raw_secs).collect();
        m.push(Measurement::over(s, &format!("{label} time / csv crate time"), "×", &ratios));
    }
    util::save(results, "1-read", &m)?;
    std::fs::remove_file(&file).ok();
    Ok(())
}
