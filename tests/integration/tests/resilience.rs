//! The engine under NERM's bad days: 429 storms, writes applied but answered with an error,
//! dropped connections and 5xx, a stale token, bulk calls answered with jobs.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use common::*;
use serde_json::{Value, json};
use shared::nerm::token::TokenFuture;
use shared::nerm::{SecretToken, TokenProvider};
use shared::report::Outcome;

#[tokio::test(flavor = "multi_thread")]
async fn a_429_storm_leaves_no_duplicates() {
    // GIVEN a simulator answering 30 % of all calls with 429 (Retry-After: 1 s)
    let sim = Harness::with(json!({"faults": {"throttle_rate": 0.3, "throttle_retry_after_secs": 1, "seed": 7}})).await;
    let people = employees(100);

    // WHEN 100 employees are imported
    let started = Instant::now();
    let run = sim.run(&to_csv(&people), &example_config(), false).await;
    let took = started.elapsed();

    // THEN every row is accounted for and created
    assert_eq!(run.rows.len(), people.len());
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 100)]), "{:#?}", run.with_outcome(Outcome::Failed));

    // AND the 429s were seen and waited out, not turned into failures or duplicates
    let stats = sim.stats().await;
    let throttled = stats["faults"]["throttle"].as_u64().unwrap_or(0);
    assert!(throttled > 0, "the storm sent no 429: {stats}");
    assert_eq!(run.client.rate_limited, throttled, "every 429 sent was seen by the client");
    assert_eq!(run.summary.rate_limited, throttled);
    assert!(run.summary.retries >= throttled);
    println!(
        "429 storm, 100 employees: {} requests, {throttled} × 429, {} retries, {:.1} s",
        run.summary.requests_total,
        run.summary.retries,
        took.as_secs_f64()
    );
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    sim.assert_no_spec_violations().await;
}

/// A faulty import of 100 employees, then clean reruns: nothing duplicated, nothing missing.
async fn faulty_import_then_clean_rerun(label: &str, faults: Value) {
    faulty_import_of_then_clean_rerun(label, faults, employees(100)).await
}

/// `n` employees in the reference shape: blocks of the generated 120 with their ids, logins,
/// e-mails and manager logins prefixed by the block (managers stay within their block; in a
/// last, shorter block a manager beyond its end is dropped).
fn many_employees(n: usize) -> Vec<HrRow> {
    let base = employees(120);
    let position = |login: &str| base.iter().position(|r| r.login.eq_ignore_ascii_case(login));
    (0..n)
        .map(|i| {
            let (block, mut row) = (i / base.len(), base[i % base.len()].clone());
            let block_len = (n - block * base.len()).min(base.len());
            row.employee_id = format!("{}B{block}", row.employee_id);
            row.login = format!("b{block}.{}", row.login);
            row.email = format!("b{block}.{}", row.email);
            row.manager_login = match position(&row.manager_login) {
                Some(m) if m < block_len => format!("b{block}.{}", row.manager_login),
                _ => String::new(),
            };
            row
        })
        .collect()
}

/// A faulty import of `people`, then clean reruns: nothing duplicated, nothing missing.
async fn faulty_import_of_then_clean_rerun(label: &str, faults: Value, people: Vec<HrRow>) {
    // GIVEN a simulator with `faults`
    let sim = Harness::with(json!({ "faults": faults.clone() })).await;
    let csv = to_csv(&people);

    // WHEN the employees are imported through the faults
    let started = Instant::now();
    let faulty = sim.run(&csv, &example_config(), false).await;
    let took = started.elapsed();

    // THEN every row is accounted for, none rejected, and nothing is stored twice
    assert_eq!(faulty.rows.len(), people.len());
    assert_eq!(faulty.with_outcome(Outcome::Rejected).len(), 0, "{:#?}", faulty.with_outcome(Outcome::Rejected));
    let stats = sim.stats().await;
    assert_faults_fired(&faults, &stats);
    let state = sim.state().await;
    assert_nerm_matches(&state, &[]); // tenant-wide duplicate checks only
    println!(
        "{label}: faulty run of {} in {:.1} s: {:?}; faults injected {}; {} requests, {} retries; sim writes {}",
        people.len(),
        took.as_secs_f64(),
        faulty.outcomes(),
        stats["faults"],
        faulty.summary.requests_total,
        faulty.summary.retries,
        stats["writes"]
    );
    let mut errors: BTreeMap<&str, usize> = BTreeMap::new();
    for r in faulty.with_outcome(Outcome::Failed) {
        *errors.entry(r.error.as_deref().unwrap_or("")).or_default() += 1;
    }
    for (error, n) in &errors {
        println!("{label}:   {n} failed: {error}");
    }

    // WHEN the faults stop and the same file is imported again
    sim.reset_stats().await; // checks the spec violations so far, then keeps the list short
    sim.configure(json!({"faults": {
        "commit_then_fail_rate": 0.0, "drop_rate": 0.0, "error_rate": 0.0, "throttle_rate": 0.0, "slow_rate": 0.0
    }}))
    .await;
    let second = sim.run(&csv, &example_config(), false).await;

    // THEN rows done the first time are unchanged, failed ones are completed, none fails
    println!("{label}: clean rerun: {:?}", second.outcomes());
    assert_eq!(second.rows.len(), people.len());
    for r in &faulty.rows {
        let again = second.row_of(&r.employee_key);
        if r.outcome.is_done() {
            assert_eq!(again.outcome, Outcome::Unchanged, "{label}: done in the faulty run, yet {again:?}");
        } else {
            assert!(
                matches!(again.outcome, Outcome::Created | Outcome::Updated | Outcome::Unchanged),
                "{label}: not completed by the rerun: {again:?}"
            );
        }
    }

    // AND a further run has nothing left to do
    if second.rows.iter().any(|r| r.outcome != Outcome::Unchanged) {
        let third = sim.run(&csv, &example_config(), false).await;
        assert_eq!(third.outcomes(), BTreeMap::from([(Outcome::Unchanged, people.len())]), "{label}: third run");
    }

    // AND NERM holds exactly the file, with no duplicates
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn commit_then_fail_faults_leave_no_duplicates_and_no_missing_rows() {
    // GIVEN/WHEN/THEN: see faulty_import_then_clean_rerun — 20 % of writes applied, then
    // answered with a 500 or a reset; a few seeds, so different writes lose their answer
    for seed in [11, 3, 14] {
        let faults = json!({"commit_then_fail_rate": 0.2, "seed": seed});
        faulty_import_then_clean_rerun(&format!("commit_then_fail 0.2 seed {seed}"), faults).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_import_of_2000_through_every_fault_at_once_ends_exact() {
    // GIVEN/WHEN/THEN: see faulty_import_of_then_clean_rerun — issue 7's mix: 5 % 5xx, 5 % 429
    // with Retry-After, 2 % slow past the client's 2 s timeout, 2 % dropped connections, and
    // 5 % of writes applied but answered with an error (issue 7 said 2 %; the import makes about
    // 100 writes, and requests arrive concurrently, so the seed does not fix which ones are hit:
    // at 2 %, about 1 run in 8 drew no such fault and the check that every fault fired failed)
    let faults = json!({
        "error_rate": 0.05, "throttle_rate": 0.05, "throttle_retry_after_secs": 1, "slow_rate": 0.02,
        "slow_ms": 2_500, "drop_rate": 0.02, "commit_then_fail_rate": 0.05, "seed": 7
    });
    faulty_import_of_then_clean_rerun("issue 7 mix, 2,000 employees", faults, many_employees(2_000)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropped_connections_and_5xx_leave_no_duplicates_and_no_missing_rows() {
    // GIVEN/WHEN/THEN: see faulty_import_then_clean_rerun — 5 % of calls dropped without an
    // answer and 5 % answered 5xx, before NERM processes them; an import of 100 makes about 20
    // calls, so the dice may draw neither: the first bulk create of users is answered 5xx and
    // the first of profiles dropped in any case
    for seed in [13, 5, 7] {
        let faults = json!({"drop_rate": 0.05, "error_rate": 0.05, "seed": seed, "script": [
            {"route": "POST /api/users", "fault": "error"},
            {"route": "POST /api/profiles", "fault": "drop"}
        ]});
        faulty_import_then_clean_rerun(&format!("drop 0.05 + error 0.05 seed {seed}"), faults).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn one_lost_answer_to_a_bulk_user_job_does_not_fail_the_whole_chunk() {
    // GIVEN a simulator whose first write (seed 7: the bulk POST /users, answered with a job
    // since it has 100 items) is applied and then answered with a 500 or a reset
    let sim = Harness::with(json!({"faults": {"commit_then_fail_rate": 0.2, "seed": 7}})).await;
    let people = employees(100);

    // WHEN 100 employees are imported
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN the lost answer costs lookups, not rows: every employee is created
    let stats = sim.stats().await;
    assert!(stats["faults"]["commit_then_fail"].as_u64() >= Some(1), "{}", stats["faults"]);
    assert_eq!(
        run.outcomes(),
        BTreeMap::from([(Outcome::Created, 100)]),
        "{:?}",
        run.with_outcome(Outcome::Failed).first()
    );
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    sim.assert_no_spec_violations().await;
}

/// 114 employees, exactly 100 of them with a manager: one full bulk call of links.
fn employees_with_100_managers() -> Vec<HrRow> {
    let mut people = employees(114);
    if let Some(last) = people.iter_mut().rev().find(|p| !p.manager_login.is_empty()) {
        last.manager_login.clear();
    }
    people
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_link_job_that_lands_after_its_try_timed_out_is_confirmed_by_looking_not_written_again() {
    // GIVEN 114 employees, 100 of them with a manager: one bulk POST /user_managers of 100,
    // which NERM answers with a job that runs a second later; the first two tries of it are
    // dropped before NERM sees them, the third is held past the client's 2 s timeout and then
    // processed — its job applies the links after the engine's first look for them
    let sim = Harness::with(json!({
        "behaviour": {"job_delay_ms": 1_000},
        "faults": {"slow_ms": 2_300, "script": [
            {"route": "POST /api/user_managers", "fault": "drop"},
            {"route": "POST /api/user_managers", "fault": "drop"},
            {"route": "POST /api/user_managers", "fault": "slow"}
        ]}
    }))
    .await;
    let people = employees_with_100_managers();
    assert_eq!(people.iter().filter(|p| !p.manager_login.is_empty()).count(), 100);

    // WHEN they are imported
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN the links the third try made are found: every employee is created, none failed
    assert_eq!(
        run.outcomes(),
        BTreeMap::from([(Outcome::Created, 114)]),
        "{:?}",
        run.with_outcome(Outcome::Failed).first()
    );
    // AND confirmed by looking, not by writing them a fourth time
    let stats = sim.stats().await;
    assert_eq!(stats["faults"]["drop"].as_u64(), Some(2), "{}", stats["faults"]);
    assert_eq!(stats["faults"]["slow"].as_u64(), Some(1), "{}", stats["faults"]);
    let requests = requests_of(&stats);
    assert_eq!(requests.get("POST /api/user_managers"), Some(&3), "{requests:?}");
    assert_eq!(requests.get("POST /api/user_manager"), None, "{requests:?}");
    // AND looked for with a count and a paged scan each time, not one GET per link
    let lookups = requests.get("GET /api/user_managers").copied().unwrap_or(0);
    assert!(lookups <= 12, "{lookups} GET /user_managers for 4 looks at 100 links");
    println!("late manager-link job: {} requests: {requests:?}", run.summary.requests_total);
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manager_link_chunk_whose_first_three_tries_never_reached_nerm_is_written_by_a_fourth() {
    // GIVEN 114 employees, 100 of them with a manager (one bulk POST /user_managers of 100), and
    // NERM failing the first three tries of that call before processing them: a 5xx, a dropped
    // connection, a 5xx — nothing is written, and each look for the links rightly finds none
    let sim = Harness::with(json!({"faults": {"script": [
        {"route": "POST /api/user_managers", "fault": "error"},
        {"route": "POST /api/user_managers", "fault": "drop"},
        {"route": "POST /api/user_managers", "fault": "error"}
    ]}}))
    .await;
    let people = employees_with_100_managers();

    // WHEN they are imported with the client's usual 6 retries
    assert_eq!(client_options().max_retries, 6);
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN the chunk is retried after each empty look, as any call is retried, and its fourth
    // try writes it: every employee is created, none failed
    assert_eq!(
        run.outcomes(),
        BTreeMap::from([(Outcome::Created, 114)]),
        "{:?}",
        run.with_outcome(Outcome::Failed).first()
    );
    let stats = sim.stats().await;
    assert_eq!(requests_of(&stats).get("POST /api/user_managers"), Some(&4), "{}", stats["requests"]);
    let fired =
        assert_faults_fired(&json!({"script": [{"fault": "error"}, {"fault": "drop"}, {"fault": "error"}]}), &stats);
    assert_eq!(fired, BTreeMap::from([("drop".to_string(), 1), ("error".to_string(), 2)]), "{}", stats["faults"]);
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    sim.assert_no_spec_violations().await;
}

/// An employee of the file signs in through SSO after the engine read NERM and before it
/// writes: NERM creates the user just in time, so the engine's create finds the login taken.
/// It must adopt that user (one user, linked to the new profile), not fail the row or make a
/// second one; a rerun then brings the user's fields in line with the file.
async fn a_user_created_meanwhile_is_adopted(sim: Harness, people: Vec<HrRow>, late: usize) {
    let login = people[late].login.clone();
    let signed_in = AtomicBool::new(false);
    let hook = |msg: &str| {
        log_progress(msg);
        if msg.starts_with("read NERM") && !signed_in.swap(true, Ordering::SeqCst) {
            sim.sso_login_now(&login, &["Employees"]);
        }
    };
    let run = sim.try_run_with(&to_csv(&people), &example_config(), false, &hook).await.expect("the run starts");
    assert!(signed_in.load(Ordering::SeqCst), "the hook ran");

    // THEN the row is not failed, and the JIT user is the one and only user of that login
    let row = run.row_of(&people[late].employee_id);
    assert_eq!(row.outcome, Outcome::Created, "{row:?}");
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, people.len())]));
    let state = sim.state().await;
    let u = user(&state, &login);
    let p = profile(&state, &people[late].employee_id);
    let owner = records(&state, "user_profiles")
        .iter()
        .filter(|l| l["profile_id"] == p["id"] && l["relationship_type"] == "owner")
        .map(|l| l["user_id"].clone())
        .collect::<Vec<_>>();
    assert_eq!(owner, vec![u["id"].clone()], "the new profile is owned by the adopted user");
    assert_nerm_matches(&state, &[]);

    // AND a rerun leaves NERM exactly as the file says
    let again = sim.run(&to_csv(&people), &example_config(), false).await;
    assert_eq!(again.with_outcome(Outcome::Failed).len(), 0);
    let adopted = again.row_of(&people[late].employee_id);
    println!("adopted {login}: the rerun says {} {:?}", adopted.outcome, adopted.changes);
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_created_by_sso_during_the_run_is_adopted_not_duplicated() {
    // GIVEN 20 employees, one of whom (lower-case login) signs in via SSO mid-run
    let people = employees(20);
    assert_eq!(people[5].login, people[5].login.to_lowercase());
    // WHEN/THEN: see a_user_created_meanwhile_is_adopted
    a_user_created_meanwhile_is_adopted(Harness::start().await, people, 5).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_adopted_during_the_run_matches_the_file_when_the_run_ends() {
    // GIVEN 20 employees, one of whom signs in via SSO after the engine read NERM
    let sim = Harness::start().await;
    let people = employees(20);
    let login = people[5].login.clone();
    let signed_in = AtomicBool::new(false);
    let hook = |msg: &str| {
        log_progress(msg);
        if msg.starts_with("read NERM") && !signed_in.swap(true, Ordering::SeqCst) {
            sim.sso_login_now(&login, &["Employees"]);
        }
    };

    // WHEN the file is imported once
    let run = sim.try_run_with(&to_csv(&people), &example_config(), false, &hook).await.expect("the run starts");

    // THEN the row reports done, so NERM must already hold what the file says for it
    assert_eq!(run.row_of(&people[5].employee_id).outcome, Outcome::Created);
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_with_a_mixed_case_login_created_by_sso_during_the_run_is_adopted() {
    // GIVEN 20 employees, one of whom (mixed-case login) signs in via SSO mid-run
    let people = employees(20);
    assert_eq!(people[3].login, "Emp0003@Example.com");
    // WHEN/THEN: see a_user_created_meanwhile_is_adopted
    a_user_created_meanwhile_is_adopted(Harness::start().await, people, 3).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_created_by_sso_during_the_run_is_adopted_when_the_bulk_call_is_a_job() {
    // GIVEN every bulk call but profiles answered with a job, and one employee signing in mid-run
    let sim = Harness::with(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 50}})).await;
    let people = employees(20);
    // WHEN/THEN: see a_user_created_meanwhile_is_adopted
    a_user_created_meanwhile_is_adopted(sim, people, 5).await;
}

/// Hands out a stale token until it is refused, then the right one.
struct StaleThenFresh {
    fresh: AtomicBool,
    invalidations: AtomicUsize,
}

impl TokenProvider for StaleThenFresh {
    fn token(&self) -> TokenFuture<'_> {
        let t = if self.fresh.load(Ordering::SeqCst) { TOKEN } else { "stale-token" };
        Box::pin(async move { Ok(SecretToken::new(t)) })
    }
    fn refused(&self, _token: &SecretToken, _again: bool) {
        self.invalidations.fetch_add(1, Ordering::SeqCst);
        self.fresh.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_refreshes_the_token_once() {
    // GIVEN a token provider whose cached token NERM no longer accepts
    let sim = Harness::start().await;
    let tokens = Arc::new(StaleThenFresh { fresh: AtomicBool::new(false), invalidations: AtomicUsize::new(0) });
    let client = client_with_tokens(&sim.api_url(), tokens.clone());
    let people = employees(10);

    // WHEN 10 employees are imported
    let (summary, rows) = run_once(&client, &to_csv(&people), &example_config(), false).await.expect("the run starts");

    // THEN the first 401 refreshed the token once and the run went through
    assert_eq!(client.stats().token_refreshes, 1);
    assert_eq!(tokens.invalidations.load(Ordering::SeqCst), 1);
    assert_eq!(sim.stats().await["unauthorized"].as_u64(), Some(1));
    assert_eq!(rows.len(), 10);
    assert!(rows.iter().all(|r| r.outcome == Outcome::Created), "{rows:#?}");
    assert_eq!(summary.count_of(Outcome::Created), 10);
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_job_mode_bulk_answers_are_handled() {
    // GIVEN a simulator answering every bulk call but profiles with a job ticket
    let sim = Harness::with(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 50}})).await;
    let people = employees(50);

    // WHEN 50 employees are imported
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN the engine polled the jobs and every row is created
    let stats = sim.stats().await;
    let polls = requests_of(&stats).get("GET /api/job_status").copied().unwrap_or(0);
    assert!(polls >= 3, "users, user_profiles and user_managers went through jobs: {polls} polls");
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 50)]), "{:#?}", run.with_outcome(Outcome::Failed));
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    let writes = non_get_requests(&stats);
    let bulk_posts: u64 = ["POST /api/users", "POST /api/user_profiles", "POST /api/user_managers"]
        .iter()
        .map(|k| writes.get(*k).copied().unwrap_or(0))
        .sum();
    let jobs = records(&state, "jobs");
    assert_eq!(jobs.len() as u64, bulk_posts, "one job per bulk call");
    assert!(jobs.iter().all(|j| j["complete"] == true), "every job ran");
    sim.assert_no_spec_violations().await;
}
