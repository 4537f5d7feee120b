//! Turns the scenarios' JSON into the results section of BENCHMARKS.md (between the markers)
//! and prints the same tables.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use crate::util::{Measurement, fmt_num};

pub const START: &str = "<!-- bench:results:start -->";
pub const END: &str = "<!-- bench:results:end -->";

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name").map(|r| r.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_else(|| "unknown".into())
}

fn mem_total() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("MemTotal:").map(|r| r.trim().to_string())))
        .and_then(|kb| kb.trim_end_matches(" kB").parse::<f64>().ok())
        .map_or_else(|| "unknown".into(), |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
}

/// Read-only git queries (`--no-optional-locks`: not even the index stat cache is refreshed).
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("--no-optional-locks").args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn date_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The results section (markers included).
pub fn section(results: &Path) -> Result<String, String> {
    let mut files: Vec<_> = std::fs::read_dir(results)
        .map_err(|e| format!("cannot read {}: {e}", results.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut rows: Vec<Measurement> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).map_err(|e| e.to_string())?;
        let mut part: Vec<Measurement> = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", f.display()))?;
        rows.append(&mut part);
    }
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    let dirty = git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string(results.join("loadavg.txt")).unwrap_or_default();
    let commands = std::fs::read_to_string(results.join("commands.txt")).unwrap_or_default();
    let timings = std::fs::read_to_string(results.join("timings.txt")).unwrap_or_default();

    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "{START}");
    let _ = writeln!(
        w,
        "<!-- Everything between these markers is rewritten by infra/bench.sh; edit the rest freely. -->\n"
    );
    let _ = writeln!(w, "## Results\n");
    let _ = writeln!(w, "- **Date**: {}", date_utc());
    let _ = writeln!(
        w,
        "- **Commit**: `{commit}`{}",
        if dirty { " plus uncommitted changes in the working tree (other work in progress)" } else { "" }
    );
    let _ = writeln!(w, "- **Machine**: {cores} cores (`nproc`), CPU `{}`, {} memory", cpu_model(), mem_total());
    let _ = writeln!(
        w,
        "- **Shared machine**: other builds and tests ran on these 2 cores at the same time, so timings are \
         indicative; every timing is the median of the stated runs, with min–max. Load average (1/5/15 min) \
         when each scenario started:"
    );
    for l in load.lines().filter(|l| !l.trim().is_empty()) {
        let _ = writeln!(w, "  - {l}");
    }
    let _ = writeln!(w);
    let mut scenario = "";
    for r in &rows {
        if r.scenario != scenario {
            scenario = &r.scenario;
            let _ = writeln!(w, "\n### {}\n", r.scenario);
            let _ = writeln!(w, "| measurement | median | unit | min – max | runs | target | verdict | notes |");
            let _ = writeln!(w, "|---|---:|---|---|---:|---|---|---|");
        }
        let spread = if r.runs > 1 { format!("{} – {}", fmt_num(r.min), fmt_num(r.max)) } else { String::new() };
        let verdict = match r.verdict.as_str() {
            "meets" => "✅ meets",
            "misses" => "❌ misses",
            _ => "",
        };
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            cell(&r.what),
            fmt_num(r.value),
            cell(&r.unit),
            spread,
            r.runs,
            cell(&r.target),
            verdict,
            cell(&r.note)
        );
    }
    let _ = writeln!(w, "\n### Exact commands\n");
    let _ = writeln!(w, "```sh");
    let _ = write!(w, "{commands}");
    let _ = writeln!(w, "```");
    if !timings.trim().is_empty() {
        let _ =
            writeln!(w, "\nWall time of each step of this run (seconds; the build is near 0 when nothing changed):\n");
        for l in timings.lines().filter(|l| !l.trim().is_empty()) {
            let _ = writeln!(w, "- `{}`", l.trim());
        }
    }
    let _ = writeln!(w, "{END}");
    Ok(out)
}

/// Replaces the results section of `doc` (or appends one) and prints it.
pub fn run(results: &Path, doc: &Path) -> Result<(), String> {
    let section = section(results)?;
    let current = std::fs::read_to_string(doc).unwrap_or_default();
    let next = match (current.find(START), current.find(END)) {
        (Some(a), Some(b)) if a < b => format!("{}{}{}", &current[..a], section.trim_end(), &current[b + END.len()..]),
        _ => format!("{}\n{section}", current.trim_end()),
    };
    let tmp = doc.with_extension("md.tmp");
    std::fs::write(&tmp, next).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, doc).map_err(|e| format!("cannot replace {}: {e}", doc.display()))?;
    println!("{section}");
    println!("(results section of {} rewritten)", doc.display());
    Ok(())
}
