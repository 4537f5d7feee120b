//! Bulk jobs that do not end as documented: a status other than `complete` is acted on at once,
//! and a job still running at the client's deadline is settled by lookup, never posted again.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use shared::nerm::{ClientOptions, NermClient, SecretToken, StaticToken};
use shared::report::Outcome;

fn client(sim: &Harness, opts: ClientOptions) -> NermClient {
    NermClient::new(&sim.api_url(), Arc::new(StaticToken::new(SecretToken::new(TOKEN))), opts).expect("a client")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_ends_as_failed_is_acted_on_at_once_and_its_records_found_by_lookup() {
    // GIVEN a tenant whose bulk jobs apply their items but end with the status "failed", and a
    // client that would wait a minute for a job to complete
    let sim = Harness::with(
        json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 20, "job_end_status": "failed"}}),
    )
    .await;
    let nerm = client(&sim, ClientOptions { job_timeout: Duration::from_secs(60), ..client_options() });
    let people = employees(40);

    // WHEN 40 employees are imported
    let started = Instant::now();
    let (summary, rows) = run_once(&nerm, &to_csv(&people), &example_config(), false).await.expect("the run starts");

    // THEN no job was waited on, every record was found by lookup, and NERM holds each once
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let failed: Vec<_> = rows.iter().filter(|r| r.outcome != Outcome::Created).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    assert_eq!(summary.rows_total, 40);
    let state = sim.state().await;
    assert!(!records(&state, "jobs").is_empty(), "the writes went through jobs");
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_still_running_at_the_deadline_is_not_posted_again_and_the_next_run_settles_its_rows() {
    // GIVEN a tenant whose jobs do not run until told to, and a client that waits one second
    let sim = Harness::with(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 600_000}})).await;
    let opts = ClientOptions {
        job_timeout: Duration::from_secs(1),
        job_poll_delay: Duration::from_millis(100),
        job_poll_max_delay: Duration::from_millis(200),
        timeout: Duration::from_secs(1),
        ..client_options()
    };
    let people = employees(20);
    let csv = to_csv(&people);

    // WHEN 20 employees are imported
    let (_, rows) = run_once(&client(&sim, opts), &csv, &example_config(), false).await.expect("the run starts");

    // THEN the rows fail saying the job may still land, and the users were posted once only
    assert_eq!(rows.len(), 20);
    for r in &rows {
        assert_eq!(r.outcome, Outcome::Failed, "{r:#?}");
        assert!(r.error.as_deref().is_some_and(|e| e.contains("not written again")), "{r:#?}");
    }
    assert_eq!(sim.requests().await.get("POST /api/users").copied(), Some(1), "one bulk create, no second one");

    // WHEN the job finally runs and the file is imported again with jobs answered at once
    assert_eq!(sim.running.sim.run_jobs(), 1);
    sim.configure(json!({"behaviour": {"job_mode_other": "never"}})).await;
    let again = sim.run(&csv, &example_config(), false).await;

    // THEN every row is done, and NERM holds each employee exactly once
    assert!(again.with_outcome(Outcome::Failed).is_empty(), "{:#?}", again.with_outcome(Outcome::Failed));
    let outcomes: BTreeMap<Outcome, usize> = again.outcomes();
    assert_eq!(outcomes.values().sum::<usize>(), 20, "{outcomes:?}");
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
}
