//! Requests the engine does not need to send: job polls before a job can have run, and role
//! assignments read under a strategy that never plans from them (BENCHMARKS.md findings 3, 4).

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::json;
use shared::config::MappingConfig;
use shared::report::Outcome;

/// The example config with `roles.strategy = "user_role"`.
fn user_role_config() -> MappingConfig {
    let text = example_config_text();
    assert!(text.contains("strategy = \"group_strings\""), "the example config no longer sets the strategy");
    MappingConfig::from_toml_str(&text.replace("strategy = \"group_strings\"", "strategy = \"user_role\""))
        .expect("the user_role config loads")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_that_runs_before_the_first_poll_is_polled_once() {
    // GIVEN every bulk call but profiles answered with a job that runs 50 ms later, shorter
    // than the client's wait before its first poll
    let sim = Harness::with(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 50}})).await;
    assert!(client_options().job_poll_delay.as_millis() > 50);
    let people = employees(50);

    // WHEN 50 employees are imported
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN every row is created and each job was polled exactly once
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 50)]), "{:#?}", run.with_outcome(Outcome::Failed));
    let state = sim.state().await;
    let jobs = records(&state, "jobs");
    assert!(jobs.len() >= 3, "users, user_profiles and user_managers went through jobs: {jobs:#?}");
    let polls = sim.requests().await.get("GET /api/job_status").copied().unwrap_or(0);
    assert_eq!(polls, jobs.len() as u64, "one poll per job");
    assert_nerm_matches(&state, &people);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_rerun_under_group_strings_does_not_read_role_assignments() {
    // GIVEN 30 employees imported with the example config (roles as group_strings)
    let sim = Harness::start().await;
    let people = employees(30);
    let csv = to_csv(&people);
    sim.run(&csv, &example_config(), false).await;
    sim.reset_stats().await;

    // WHEN the same file is imported again
    let run = sim.run(&csv, &example_config(), false).await;

    // THEN nothing changes and only paged reads went out, none of them for role assignments
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Unchanged, 30)]), "{:#?}", run.rows);
    let requests = sim.requests().await;
    assert!(requests.keys().all(|k| k.starts_with("GET ")), "{requests:#?}");
    assert_eq!(requests.get("GET /api/user_roles"), None, "{requests:#?}");
    assert!(requests.contains_key("GET /api/users"), "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unchanged_rerun_under_user_role_reads_role_assignments_and_assigns_nothing_again() {
    // GIVEN 30 employees imported with roles assigned directly (strategy user_role)
    let sim = Harness::start().await;
    let people = employees(30);
    let csv = to_csv(&people);
    let config = user_role_config();
    let first = sim.run(&csv, &config, false).await;
    assert_eq!(first.outcomes(), BTreeMap::from([(Outcome::Created, 30)]), "{:#?}", first.rows);
    assert!(!records(&sim.state().await, "user_roles").is_empty(), "the first import assigned roles");
    sim.reset_stats().await;

    // WHEN the same file is imported again
    let run = sim.run(&csv, &config, false).await;

    // THEN the snapshot read the role assignments, so no role is assigned a second time
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Unchanged, 30)]), "{:#?}", run.rows);
    let requests = sim.requests().await;
    assert!(requests.get("GET /api/user_roles").is_some_and(|&n| n >= 1), "{requests:#?}");
    assert!(requests.keys().all(|k| k.starts_with("GET ")), "{requests:#?}");
}
