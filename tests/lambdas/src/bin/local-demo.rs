//! `local-demo`: the product's main job on one machine, no AWS account and no Docker.
//!
//! moto_server stands in for S3, SQS, SNS and Secrets Manager (started by
//! `infra/local/with-moto.sh`, found through `MOTO_URL`), the NERM simulator for NERM, and the
//! real `csv-ingest` and `nerm-provisioner` handlers run in this process, fed the events AWS
//! would send: the S3 notification for the upload, then SQS batches until the queue is empty.
//!
//! It drops a generated HR export (300 employees, managers, roles, three bad rows), prints the
//! run summary and where the report is, then drops the same file again and shows that nothing
//! changes. Run it with `make demo`.

#[path = "../../tests/common/mod.rs"]
#[allow(unused_imports)]
mod common;

use std::path::PathBuf;

use common::{Stack, nerm_writes, run_of};

const EMPLOYEES: usize = 300;
const KEY: &str = "incoming/hr export.csv";

/// Drops the file, drains the queue, copies the report into `out/<run>/`; returns the summary and
/// where the local copy is.
async fn drop_and_run(stack: &Stack, csv: &str, out: &std::path::Path) -> (shared::report::Summary, PathBuf) {
    let ingest = stack.ingest();
    let (answer, _) = stack.drop_csv(&ingest, KEY, csv).await;
    // A run with nothing to apply is finished by the ingest itself.
    let outcome = &answer["records"][0]["outcome"];
    let run = if outcome.get("finished").is_some() { run_of(&answer, "finished") } else { run_of(&answer, "started") };
    let drained = stack.drain(&stack.provisioner()).await;
    let summary = stack.summary(&run).await.expect("the run completed: summary.json exists");
    let dir = out.join(&run);
    std::fs::create_dir_all(&dir).expect("a local report directory");
    for name in shared::pipeline::REPORT_FILES {
        let key = stack.settings().report_key(&run, name);
        std::fs::write(dir.join(name), stack.text(&key).await).expect("the report copied locally");
    }
    println!("{summary}");
    println!(
        "  SQS messages handled by nerm-provisioner: {}; report: s3://{}/{} (copied to {})",
        drained.messages_handled(),
        stack.bucket,
        stack.settings().report_key(&run, ""),
        dir.display()
    );
    (summary, dir)
}

#[tokio::main]
async fn main() {
    let out = PathBuf::from(std::env::var("DEMO_REPORT_DIR").unwrap_or_else(|_| "target/demo-report".into()));
    println!("== local stack: moto at {}, NERM simulator starting", common::moto_url());
    // NERM tenants created after June 2025 take only ISC personal access tokens: the demo uses one.
    let (client_id, client_secret) = ("demo-pat-client", "demo-pat-secret");
    let sim = common::Harness::with(serde_json::json!({
        "oauth": { "client_id": client_id, "client_secret": client_secret }
    }))
    .await;
    let stack = Stack::with_sim("demo", sim).await;
    stack.put_pat_secret(client_id, client_secret).await;
    println!(
        "== bucket {}, work queue + DLQ, SNS topic, secret {} (ISC PAT, token URL {}) -> NERM simulator {}",
        stack.bucket,
        stack.secret_id,
        stack.sim.running.token_url(),
        stack.sim.api_url()
    );
    // The same generator the README shows: managers anywhere in the file, non-ASCII names,
    // quoted commas, a few roles, and three rows that must be rejected.
    let generator = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/local/gen_hr.py");
    let output = std::process::Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()))
        .args([generator, "--rows", &EMPLOYEES.to_string(), "--bad", "3", "--seed", "7"])
        .output()
        .expect("python3 runs infra/local/gen_hr.py");
    assert!(output.status.success(), "gen_hr.py failed: {}", String::from_utf8_lossy(&output.stderr));
    let csv = String::from_utf8(output.stdout).expect("the generator writes UTF-8");
    println!("\n== 1. HR drops {KEY:?}: {EMPLOYEES} employees and 3 bad rows");
    let (first, first_dir) = drop_and_run(&stack, &csv, &out).await;
    let stats = stack.sim.stats().await;
    println!(
        "  NERM now holds {} users; simulator spec violations: {}",
        stack.sim.state().await["users"].as_array().map_or(0, Vec::len),
        stats["spec_violations"].as_array().map_or(0, Vec::len)
    );
    stack.sim.reset_stats().await;
    // The same file through the CLI's engine (`nerm-sync apply`), against a fresh tenant.
    let fresh = common::Harness::start().await;
    let quiet = |_: &str| {};
    let (cli, _) =
        common::engine::run_once_with(&fresh.client(), &csv, &common::engine::example_config(), false, &quiet)
            .await
            .expect("the CLI's engine applies the file");
    let (lambdas, by_cli) = (first.requests_total, cli.requests_total);
    println!(
        "  the same file through `nerm-sync apply` against a fresh tenant: {by_cli} NERM requests \
         (the Lambdas: {lambdas}, {:.2}x)",
        lambdas as f64 / by_cli.max(1) as f64
    );

    println!("\n== 2. HR drops the same file again (a new S3 version, so a new run)");
    let (second, second_dir) = drop_and_run(&stack, &csv, &out).await;
    let writes = nerm_writes(&stack.sim).await;
    println!("  NERM writes in the second run: {} ({writes:?})", writes.values().sum::<u64>());

    let created = first.count_of(shared::report::Outcome::Created);
    let unchanged = second.count_of(shared::report::Outcome::Unchanged);
    let ok = created == EMPLOYEES as u64 && unchanged == EMPLOYEES as u64 && writes.is_empty();
    println!(
        "\n== {}: first run created {created}, second run left {unchanged} unchanged with {} NERM writes",
        if ok { "OK" } else { "UNEXPECTED" },
        writes.values().sum::<u64>()
    );
    let page = |dir: &std::path::Path| std::path::absolute(dir.join("report.html")).unwrap_or(dir.join("report.html"));
    println!(
        "== open the reports in a browser:\n   {}\n   {}",
        page(&first_dir).display(),
        page(&second_dir).display()
    );
    if !ok {
        std::process::exit(1);
    }
}
