//! The `nerm-sync` binary as a user runs it: a separate process, its exit code and its stderr.
//! Exit codes (README): 0 every row done, 2 some rows rejected or failed, 1 the run did not
//! start, 64 a usage error — a script must be able to tell a typo from a partial import.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::*;
use serde_json::Value;

/// A scratch directory holding the HR file and the report directory of one test; removed when
/// the test ends, pass or fail.
struct Scratch(tempfile::TempDir);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = tempfile::Builder::new().prefix(&format!("nerm-sync-cli-{tag}-")).tempdir();
        Scratch(dir.expect("a scratch directory"))
    }
    fn path(&self) -> &Path {
        self.0.path()
    }
    fn csv(&self, text: &str) -> PathBuf {
        let path = self.path().join("hr.csv");
        std::fs::write(&path, text).expect("the HR file is written");
        path
    }
    fn report_dir(&self) -> PathBuf {
        self.path().join("report")
    }
}

fn example_config_path() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/config/example.toml").to_string()
}

/// Runs `nerm-sync ARGS` with `NERM_TOKEN=token` (off the async workers, so an in-process
/// simulator keeps answering) and returns its output.
async fn nerm_sync(args: Vec<String>, token: Option<&str>) -> Output {
    let exe = tokio::task::spawn_blocking(|| workspace_bin("nerm-sync")).await.expect("the build finishes");
    let token = token.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(&args).env_remove("NERM_TOKEN");
        if let Some(t) = token {
            cmd.env("NERM_TOKEN", t);
        }
        cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    })
    .await
    .expect("the process is waited for")
}

fn apply_args(csv: &Path, api_url: &str, report_dir: &Path) -> Vec<String> {
    vec![
        "apply".into(),
        "--csv".into(),
        csv.display().to_string(),
        "--config".into(),
        example_config_path(),
        "--nerm-url".into(),
        api_url.into(),
        "--report-dir".into(),
        report_dir.display().to_string(),
    ]
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn summary_json(report_dir: &Path) -> Value {
    let path = report_dir.join("summary.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).expect("summary.json is JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_where_every_row_is_done_exits_0_with_the_summary_on_stderr() {
    // GIVEN the demo tenant and a clean HR file of 12 employees
    let sim = Harness::start().await;
    let scratch = Scratch::new("ok");
    let csv = scratch.csv(&to_csv(&employees(12)));

    // WHEN nerm-sync applies it
    let out = nerm_sync(apply_args(&csv, &sim.api_url(), &scratch.report_dir()), Some(TOKEN)).await;

    // THEN it exits 0, says where the report is, and the report counts 12 created rows
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{err}");
    assert!(err.contains("12 created"), "stderr:\n{err}");
    assert!(err.contains(&format!("nerm-sync: report in {}", scratch.report_dir().display())), "stderr:\n{err}");
    assert_eq!(summary_json(&scratch.report_dir())["rows_total"], 12);
    assert!(scratch.report_dir().join("report.csv").is_file());
    let page = std::fs::read_to_string(scratch.report_dir().join("report.html")).expect("report.html is written");
    assert!(page.starts_with("<!DOCTYPE html>") && page.contains("created: <b>12</b>"), "{page}");
    assert_nerm_matches(&sim.state().await, &employees(12));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_with_a_rejected_row_exits_2_and_imports_the_rest() {
    // GIVEN a file of 5 good rows and one with a malformed e-mail address
    let sim = Harness::start().await;
    let scratch = Scratch::new("partial");
    let mut rows = employees(5);
    let mut bad = rows[4].clone();
    bad.employee_id = "E99999".into();
    bad.login = "bad.email@example.com".into();
    bad.email = "bad.email.example.com".into();
    bad.manager_login = String::new();
    rows.push(bad);
    let csv = scratch.csv(&to_csv(&rows));

    // WHEN nerm-sync applies it
    let out = nerm_sync(apply_args(&csv, &sim.api_url(), &scratch.report_dir()), Some(TOKEN)).await;

    // THEN it exits 2 (a partial import, not a usage error), with 5 created and 1 rejected
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "stderr:\n{err}");
    assert!(err.contains("5 created") && err.contains("1 rejected"), "stderr:\n{err}");
    let summary = summary_json(&scratch.report_dir());
    assert_eq!(summary["rows_total"], 6, "{summary:#}");
    assert_nerm_matches(&sim.state().await, &rows[..5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_that_cannot_start_exits_1_and_writes_nothing_to_nerm() {
    let sim = Harness::start().await;
    let scratch = Scratch::new("nostart");
    let csv = scratch.csv(&to_csv(&employees(3)));

    // GIVEN a config path that does not exist, WHEN nerm-sync runs, THEN it exits 1 naming the file
    let mut args = apply_args(&csv, &sim.api_url(), &scratch.report_dir());
    let missing = scratch.path().join("no-such-config.toml");
    args[4] = missing.display().to_string();
    let out = nerm_sync(args, Some(TOKEN)).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(err.contains(&format!("nerm-sync: cannot read the config {}", missing.display())), "stderr:\n{err}");

    // GIVEN a token NERM refuses, WHEN nerm-sync runs, THEN it exits 1 and NERM got no write
    let out = nerm_sync(apply_args(&csv, &sim.api_url(), &scratch.report_dir()), Some("not-the-token")).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{err}");
    assert!(err.contains("nerm-sync: "), "stderr:\n{err}");
    assert!(!err.contains("not-the-token"), "the token reached stderr:\n{err}");
    assert!(!scratch.report_dir().join("summary.json").exists(), "a run that did not start wrote a summary");
    let stats = sim.stats().await;
    assert!(non_get_requests(&stats).is_empty(), "NERM got writes: {stats:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_usage_error_exits_64_naming_the_problem_while_help_and_version_exit_0() {
    let sim = Harness::start().await;
    let scratch = Scratch::new("usage");
    let csv = scratch.csv(&to_csv(&employees(3)));

    // GIVEN an unknown flag, a missing required flag, no subcommand, an unknown subcommand
    let mut unknown_flag = apply_args(&csv, &sim.api_url(), &scratch.report_dir());
    unknown_flag.push("--dryrun".into());
    let mut missing_csv = apply_args(&csv, &sim.api_url(), &scratch.report_dir());
    missing_csv.drain(1..3);
    let cases: [(Vec<String>, &str); 4] = [
        (unknown_flag, "unexpected argument '--dryrun'"),
        (missing_csv, "--csv <CSV>"),
        (vec![], "Usage: nerm-sync"),
        (vec!["sync".into()], "unrecognized subcommand 'sync'"),
    ];
    for (args, message) in cases {
        // WHEN nerm-sync runs with them
        let out = nerm_sync(args.clone(), Some(TOKEN)).await;
        // THEN it exits 64 (not 2, a partial import) and stderr names the problem
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(64), "{args:?}: stderr:\n{err}");
        assert!(err.contains(message), "{args:?}: expected {message:?} in stderr:\n{err}");
    }
    // AND nothing reached NERM or the report directory
    assert_eq!(sim.stats().await["total"], 0);
    assert!(!scratch.report_dir().exists());

    // GIVEN --help or --version THEN it prints them on stdout and exits 0
    for (flag, expected) in [("--help", "Usage: nerm-sync"), ("--version", "nerm-sync ")] {
        let out = nerm_sync(vec![flag.into()], None).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{flag}: stderr:\n{}", stderr(&out));
        assert!(stdout.contains(expected), "{flag}: stdout:\n{stdout}");
    }
}

fn check_args(config: &str, api_url: &str) -> Vec<String> {
    ["check", "--config", config, "--nerm-url", api_url].map(String::from).to_vec()
}

/// The request count `check` prints on stderr.
fn requests_of(err: &str) -> u64 {
    let line = err.lines().find(|l| l.ends_with(" NERM requests")).unwrap_or_else(|| panic!("no count:\n{err}"));
    line.trim_start_matches("nerm-sync: ").trim_end_matches(" NERM requests").parse().expect("a number")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_passes_the_example_mapping_on_the_demo_tenant_in_at_most_20_requests() {
    // GIVEN the demo tenant and the shipped mapping
    let sim = Harness::start().await;

    // WHEN nerm-sync check runs
    let out = nerm_sync(check_args(&example_config_path(), &sim.api_url()), Some(TOKEN)).await;

    // THEN it exits 0 with a verdict per item, in at most 20 requests and no write
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{err}");
    assert!(stdout.contains("ok  credentials:") && stdout.contains("ok  profile.type:"), "{stdout}");
    // AND the paging, the predicted cost of a plan and the bulk size get a line each
    for item in ["ok  nerm.page_size:", "ok  snapshot: a plan", "ok  bulk size:"] {
        assert!(stdout.contains(item), "{item}: {stdout}");
    }
    assert!(stdout.trim_end().ends_with("verdict: the mapping can run"), "{stdout}");
    assert!(requests_of(&err) <= 20, "{err}");
    assert!(non_get_requests(&sim.stats().await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_exits_1_for_an_unknown_profile_type_saying_which() {
    // GIVEN a mapping naming a profile type the tenant does not have
    let sim = Harness::start().await;
    let scratch = Scratch::new("check");
    let config = scratch.path().join("staff.toml");
    let text = std::fs::read_to_string(example_config_path()).expect("the example config");
    std::fs::write(&config, text.replacen("type = \"employee\"", "type = \"staff\"", 1)).expect("written");

    // WHEN nerm-sync check runs
    let out = nerm_sync(check_args(&config.display().to_string(), &sim.api_url()), Some(TOKEN)).await;

    // THEN it exits 1, and the failed item names the profile type and the known ones
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "stdout:\n{stdout}\nstderr:\n{}", stderr(&out));
    let failed = stdout.lines().find(|l| l.contains("FAIL  profile.type:")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(failed.contains("`staff` does not exist") && failed.contains("employee (Employee)"), "{failed}");
    assert!(stdout.trim_end().ends_with("verdict: the mapping cannot run"), "{stdout}");
}
