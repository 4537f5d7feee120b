//! What every scenario shares: result rows, medians, peak RSS, child processes, the mapping
//! config and catalog the engine runs with.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use shared::config::{
    CatalogAttribute, CatalogProfileType, CatalogRole, MappingConfig, NermCatalog, ResolvedConfig, RoleType,
};

/// The mapping config the product ships for the reference export.
pub const EXAMPLE_CONFIG: &str = include_str!("../../../infra/config/example.toml");

/// One line of the results table.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    /// Scenario number and name, e.g. `1. read + validate (1,000,000 rows)`.
    pub scenario: String,
    /// What was measured, e.g. `EmployeeReader: rows/s`.
    pub what: String,
    /// The median (or the single value when `runs` is 1).
    pub value: f64,
    pub unit: String,
    /// Smallest and largest value over the runs (equal for one run).
    pub min: f64,
    pub max: f64,
    pub runs: usize,
    /// The target, if it sets one (e.g. `>= 1,000,000`), else empty.
    pub target: String,
    /// `meets`, `misses` or empty (no target).
    pub verdict: String,
    pub note: String,
}

impl Measurement {
    /// A measurement over several runs (median, min, max).
    pub fn over(scenario: &str, what: &str, unit: &str, values: &[f64]) -> Self {
        let (min, max) = min_max(values);
        Measurement {
            scenario: scenario.into(),
            what: what.into(),
            value: median(values),
            unit: unit.into(),
            min,
            max,
            runs: values.len(),
            target: String::new(),
            verdict: String::new(),
            note: String::new(),
        }
    }

    /// A single (deterministic) figure.
    pub fn one(scenario: &str, what: &str, unit: &str, value: f64) -> Self {
        Self::over(scenario, what, unit, &[value])
    }

    /// Sets the target and whether the median meets it (`at_least`: higher is better).
    pub fn target(mut self, text: &str, bound: f64, at_least: bool) -> Self {
        self.target = text.into();
        let ok = if at_least { self.value >= bound } else { self.value <= bound };
        self.verdict = if ok { "meets" } else { "misses" }.into();
        self
    }

    pub fn note(mut self, text: impl Into<String>) -> Self {
        self.note = text.into();
        self
    }

    /// `value unit (min–max, n runs)` for the console.
    pub fn describe(&self) -> String {
        let spread = if self.runs > 1 {
            format!(" (min {} – max {}, median of {})", fmt_num(self.min), fmt_num(self.max), self.runs)
        } else {
            String::new()
        };
        let target = if self.target.is_empty() {
            String::new()
        } else {
            format!("  [target {}: {}]", self.target, self.verdict)
        };
        format!("{:<58} {:>14} {}{spread}{target}", self.what, fmt_num(self.value), self.unit)
    }
}

/// Writes a scenario's measurements as JSON (for `nerm-bench report`) and prints them.
pub fn save(results: &Path, name: &str, rows: &[Measurement]) -> Result<(), String> {
    std::fs::create_dir_all(results).map_err(|e| format!("cannot create {}: {e}", results.display()))?;
    let path = results.join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(rows).map_err(|e| e.to_string())?;
    std::fs::write(&path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    for r in rows {
        println!("  {}", r.describe());
    }
    Ok(())
}

/// Requests per route from `/_sim/stats`, largest first, without the `/api` prefix:
/// `"POST /users 100, GET /users 21, ..."`.
pub fn breakdown(requests: &std::collections::BTreeMap<String, u64>) -> String {
    let mut v: Vec<(&String, &u64)> = requests.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    v.iter().map(|(k, n)| format!("{} {n}", k.replace("/api", ""))).collect::<Vec<_>>().join(", ")
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn min_max(values: &[f64]) -> (f64, f64) {
    values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// A number for humans: thousands separators, at most 3 significant decimals.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let decimals = match v.abs() {
        a if a == a.trunc() && a < 1e15 => 0,
        a if a >= 1000.0 => 0,
        a if a >= 100.0 => 1,
        a if a >= 10.0 => 2,
        _ => 3,
    };
    let text = format!("{v:.decimals$}");
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

/// A `kB` field of `/proc/self/status` (`VmHWM`: peak resident set, `VmRSS`: current).
pub fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time used by this process so far, all threads, user plus system (`/proc/self/stat`,
/// in clock ticks of 1/100 s: `USER_HZ` is 100 on Linux's x86-64 and arm64).
pub fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces, so split after its `)`).
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of the line; the first field after the name is 3.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// Runs this binary again with `args` and parses the JSON it prints last on stdout: each
/// measured run gets a fresh process, so its peak RSS is its own.
pub fn run_child<T: for<'de> Deserialize<'de>>(args: &[&str]) -> Result<T, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let out = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot start the child {args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!("the child {args:?} failed: {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or_default();
    serde_json::from_str(last).map_err(|e| format!("the child {args:?} printed {last:?}: {e}"))
}

/// Prints a child's result as its last stdout line.
pub fn emit<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).expect("a result serialises"));
}

/// Seconds since `t`.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// Notes the load average when a scenario starts (the machine is shared): a line of
/// `loadavg.txt` in the results directory, which `nerm-bench report` lists.
pub fn note_load(results: &Path, scenario: &str) {
    let _ = std::fs::create_dir_all(results);
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(results.join("loadavg.txt")) {
        let _ = writeln!(f, "{scenario}: {}", loadavg());
    }
}

/// The 1-, 5- and 15-minute load averages (other builds share this machine).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The example mapping config with the file limits raised for big benchmark files
/// (`max_rows` 2,000,000, `max_file_bytes` 2 GiB); everything else as shipped.
pub fn bench_config() -> MappingConfig {
    let mut m = MappingConfig::from_toml_str(EXAMPLE_CONFIG).expect("the example config loads");
    m.csv.max_rows = 2_000_000;
    m.csv.max_file_bytes = 2 * 1024 * 1024 * 1024;
    m
}

/// The demo tenant's catalog (what `Snapshot::catalog` reads from the simulator's demo seed).
pub fn demo_catalog() -> NermCatalog {
    const EMPLOYEE: &str = "7b0e6a57-0000-4000-8000-000000000001";
    const CONTRACTOR: &str = "7b0e6a57-0000-4000-8000-000000000002";
    let attr = |n: u32, uid: &str, label: &str, select: bool| CatalogAttribute {
        id: format!("7b0e6a57-0000-4000-8000-1000000000{n:02}"),
        uid: uid.into(),
        label: label.into(),
        data_type: if select { "profile select" } else { "text field" }.into(),
        profile_type_id: select.then(|| EMPLOYEE.to_string()),
    };
    let role = |n: u32, uid: &str, name: &str, groups: &[&str], kind: RoleType| CatalogRole {
        id: format!("7b0e6a57-0000-4000-8000-2000000000{n:02}"),
        uid: uid.into(),
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        role_type: Some(kind),
    };
    let ptype =
        |id: &str, uid: &str, name: &str| CatalogProfileType { id: id.into(), uid: uid.into(), name: name.into() };
    NermCatalog {
        profile_types: vec![ptype(EMPLOYEE, "employee", "Employee"), ptype(CONTRACTOR, "contractor", "Contractor")],
        attributes: vec![
            attr(1, "employee_id", "Employee ID", false),
            attr(2, "first_name", "First Name", false),
            attr(3, "last_name", "Last Name", false),
            attr(4, "email", "Email", false),
            attr(5, "job_title", "Job Title", false),
            attr(6, "department", "Department", false),
            attr(7, "login", "Login", false),
            attr(8, "manager", "Manager", true),
            attr(9, "sponsor", "Sponsor", true),
            attr(10, "company", "Company", false),
        ],
        roles: vec![
            role(1, "sponsor", "Sponsor", &["Sponsors"], RoleType::NeprofileRole),
            role(2, "manager", "Manager", &["Managers"], RoleType::NeprofileRole),
            role(3, "administrator", "Administrator", &["NERM_Admins", "ORG_ADMIN"], RoleType::NeprofileRole),
            role(4, "employee", "Employee", &["Employees"], RoleType::NeprofileRole),
            role(5, "vendor_portal", "Vendor Portal", &["Vendors"], RoleType::NeaccessRole),
        ],
    }
}

/// [`bench_config`] resolved against [`demo_catalog`].
pub fn resolved_config() -> ResolvedConfig {
    bench_config().resolve(&demo_catalog()).expect("the example config resolves against the demo catalog")
}
