//! ISC personal access tokens through the real handlers (moto + the NERM simulator): the secret
//! holds `{"base_url", "token_url", "client_id", "client_secret"}` and NERM accepts only the
//! access tokens its `POST /oauth/token` issues.
//!
//! Run through `infra/local/with-moto.sh`:
//!
//! ```sh
//! infra/local/with-moto.sh cargo test -p lambda-tests --test pat
//! ```

mod common;

use common::engine::{assert_nerm_matches, assert_no_strays, employees, to_csv};
use common::*;
use serde_json::{Value, json};
use shared::report::Outcome;

const CLIENT_ID: &str = "lambda-pat-client";
const SECRET: &str = "lambda-pat-s3cr3t-value";

/// A stage whose simulator issues tokens of `lifetime_s` for `CLIENT_ID`/`SECRET`, and whose
/// secret holds the PAT with `secret_in_store` as the client secret.
async fn pat_stack(tag: &str, lifetime_s: u64, secret_in_store: &str) -> Stack {
    moto_url();
    let sim = Harness::with(json!({
        "oauth": { "client_id": CLIENT_ID, "client_secret": SECRET, "token_lifetime_s": lifetime_s }
    }))
    .await;
    let stack = Stack::with_sim(tag, sim).await;
    stack.put_pat_secret(CLIENT_ID, secret_in_store).await;
    stack
}

fn stat(stats: &Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("/_sim/stats has no {key}: {stats}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pat_import_through_both_handlers_uses_one_access_token_per_instance_across_invocations() {
    // GIVEN a PAT in the secret and warm Lambdas (one instance of each)
    let stack = pat_stack("pat", 600, SECRET).await;
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());

    // WHEN two files are imported one after the other, each in several SQS batches
    let first = employees(30);
    let (answer, _) = stack.drop_csv(&ingest, "incoming/first.csv", &to_csv(&first)).await;
    let first_run = run_of(&answer, "started");
    let first_drain = stack.drain(&provisioner).await;
    let everyone = employees(60);
    let (answer, _) = stack.drop_csv(&ingest, "incoming/second.csv", &to_csv(&everyone)).await;
    let run = run_of(&answer, "started");
    let drain = stack.drain(&provisioner).await;

    // THEN every employee is in NERM, nothing failed
    assert!(first_drain.failures().is_empty() && drain.failures().is_empty(), "{drain:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &everyone);
    assert_no_strays(&state, &everyone);
    for r in [&first_run, &run] {
        let summary = stack.summary(r).await.expect("a summary");
        assert_eq!(summary.count_of(Outcome::Failed), 0, "{summary:#?}");
    }
    // AND each instance exchanged the PAT once, keeping its token across its invocations
    let stats = stack.sim.stats().await;
    let batches = first_drain.batches.len() + drain.batches.len();
    assert!(batches >= 4, "several provisioner invocations: {batches}");
    assert_eq!(stat(&stats, "token_requests"), 2, "one exchange per Lambda instance: {stats}");
    assert_eq!(stat(&stats, "unauthorized"), 0, "{stats}");
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_rejects_the_file_permanently_with_zero_writes_and_no_secret_in_the_answer() {
    // GIVEN a secret whose client secret the token endpoint refuses
    let wrong = "wrong-lambda-s3cr3t-value";
    let stack = pat_stack("patwrong", 600, wrong).await;
    let ingest = stack.ingest();

    // WHEN a file arrives
    let csv = to_csv(&employees(10));
    assert!(csv.starts_with(HEADER), "the reference export");
    let up = stack.upload("incoming/hr.csv", csv.into_bytes(), None).await;
    let answer = csv_ingest::handler::handle(&ingest, stack.s3_event(&[&up])).await;

    // THEN the handler answers (no Lambda retry) with the file rejected: credentials refused
    let answer = answer.expect("a refused PAT is not retried by Lambda");
    let outcome = &answer["records"][0];
    assert_eq!(outcome["outcome"], "rejected", "{answer}");
    let reason = outcome["reason"].as_str().expect("a reason");
    assert!(reason.contains("refused the client id and secret"), "{reason}");
    assert!(reason.contains(&stack.sim.running.token_url()), "{reason}");
    assert!(!answer.to_string().contains(wrong), "the secret in the answer: {answer}");
    // AND nothing was written to NERM, nothing queued, and the token endpoint was asked once or
    // twice (the secret read afresh once), not in a loop
    let stats = stack.sim.stats().await;
    assert_eq!(stat(&stats, "writes"), 0, "{stats}");
    assert_eq!(stat(&stats, "total"), 0, "no /api request without a token: {stats}");
    assert!((1..=2).contains(&stat(&stats, "token_requests")), "{stats}");
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    for (subject, message) in stack.notifications().await {
        assert!(!subject.contains(wrong) && !message.contains(wrong), "the secret in a notification");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_secret_rotated_between_runs_is_read_from_secrets_manager_after_the_old_one_is_refused() {
    // GIVEN warm Lambdas holding an access token and the secret in their caches
    let stack = pat_stack("patrot", 600, SECRET).await;
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());
    let first = employees(10);
    let (answer, _) = stack.drop_csv(&ingest, "incoming/first.csv", &to_csv(&first)).await;
    run_of(&answer, "started");
    assert!(stack.drain(&provisioner).await.failures().is_empty());

    // WHEN the PAT's secret is rotated: the tenant refuses the old one and revokes its tokens,
    // and Secrets Manager holds the new one
    let rotated = "lambda-rotated-s3cr3t-value";
    stack.sim.configure(json!({ "oauth": { "client_secret": rotated } })).await;
    assert_eq!(stack.sim.running.sim.revoke_tokens(), 2, "both instances' tokens");
    stack.put_pat_secret(CLIENT_ID, rotated).await;
    stack.sim.reset_stats().await;
    let everyone = employees(30);
    let (answer, _) = stack.drop_csv(&ingest, "incoming/second.csv", &to_csv(&everyone)).await;
    let run = run_of(&answer, "started");
    let drain = stack.drain(&provisioner).await;

    // THEN each instance met a 401, was refused with its cached secret, read the secret afresh
    // and went on: every employee is in NERM
    let stats = stack.sim.stats().await;
    assert_eq!(stat(&stats, "unauthorized"), 2, "one 401 per instance: {stats}");
    assert_eq!(stat(&stats, "token_refusals"), 2, "the cached old secret, once per instance: {stats}");
    assert_eq!(stat(&stats, "token_requests"), 4, "{stats}");
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let summary = stack.summary(&run).await.expect("a summary");
    assert_eq!(summary.count_of(Outcome::Failed), 0, "{summary:#?}");
    assert_eq!(summary.count_of(Outcome::Created), 20, "{summary:#?}");
    assert_nerm_matches(&stack.sim.state().await, &everyone);
}
