//! ISC personal access tokens end to end: the engine against a simulator that only accepts
//! short-lived access tokens exchanged at its `POST /oauth/token`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;
use shared::engine::RunError;
use shared::nerm::{AccessTokens, ClientOptions, NermClient, NermError, PatSource, SecretOrigin, SecretToken};
use shared::report::Outcome;

const CLIENT_ID: &str = "pat-client-id";
const SECRET: &str = "pat-secret-s3cr3t-value";
const ROTATED: &str = "pat-rotated-s3cr3t-value";

/// A simulator (demo tenant) accepting the PAT `CLIENT_ID`/`SECRET` with tokens of `lifetime_s`.
async fn pat_sim(lifetime_s: u64) -> Harness {
    Harness::with(json!({"oauth": {"client_id": CLIENT_ID, "client_secret": SECRET, "token_lifetime_s": lifetime_s}}))
        .await
}

fn pat_tokens(sim: &Harness, secret: SecretOrigin) -> Arc<AccessTokens> {
    let source = PatSource::new(&sim.running.token_url(), CLIENT_ID, secret).expect("the PAT flags are valid");
    Arc::new(AccessTokens::new(Arc::new(source), Duration::from_secs(2)).expect("a token provider"))
}

/// A client paced to `per_second` requests per second (burst of as many).
fn paced_client(sim: &Harness, tokens: Arc<AccessTokens>, per_second: u32) -> NermClient {
    let opts = ClientOptions { requests_per_window: per_second, window: Duration::from_secs(1), ..client_options() };
    NermClient::new(&sim.api_url(), tokens, opts).expect("a NERM client")
}

/// `n` employees with unique names: every tenth one manages the nine after it, a quarter are
/// sponsors.
fn staff(n: usize) -> Vec<HrRow> {
    let login = |i: usize| format!("pat{i:05}@example.com");
    (0..n)
        .map(|i| HrRow {
            employee_id: format!("P{i:05}"),
            login: login(i),
            email: login(i),
            first_name: "Pat".into(),
            last_name: format!("Token{i:05}"),
            title: "Engineer".into(),
            department: "Engineering".into(),
            manager_login: if i % 10 == 0 { String::new() } else { login(i / 10 * 10) },
            status: "Active".into(),
            roles: if i % 4 == 1 { "Sponsor".into() } else { String::new() },
        })
        .collect()
}

fn stat(stats: &serde_json::Value, key: &str) -> u64 {
    stats[key].as_u64().unwrap_or_else(|| panic!("/_sim/stats has no {key}: {stats}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paced_import_that_outlives_several_tokens_renews_them_ahead_of_expiry_and_creates_every_row() {
    // GIVEN 4-second access tokens and a client paced to 5 requests per second
    let sim = pat_sim(4).await;
    let tokens = pat_tokens(&sim, SecretOrigin::Value(SecretToken::new(SECRET)));
    let client = paced_client(&sim, tokens.clone(), 5);
    let people = staff(1000);

    // WHEN 1,000 employees are imported
    let started = Instant::now();
    let (summary, rows) = run_once(&client, &to_csv(&people), &example_config(), false).await.expect("the run starts");
    let elapsed = started.elapsed().as_secs_f64();

    // THEN every row is created, none failed, and NERM holds exactly the file
    assert_eq!(summary.count_of(Outcome::Created), 1000, "{:#?}", rows.iter().find(|r| r.outcome != Outcome::Created));
    assert_eq!(summary.count_of(Outcome::Failed), 0);
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    // AND the run outlived several tokens, each renewed before it expired (no 401 at all), at
    // about one exchange per half lifetime
    let stats = sim.stats().await;
    let exchanges = stat(&stats, "token_requests");
    eprintln!(
        "{elapsed:.1} s, {exchanges} exchanges, {} NERM requests for 1000 employees",
        client.stats().total_requests()
    );
    assert!(elapsed > 12.0, "the run must outlive three 4 s tokens; it took {elapsed:.1} s");
    assert_eq!(stat(&stats, "unauthorized"), 0, "an expired token was sent");
    assert_eq!(exchanges, tokens.exchanges(), "the simulator saw every exchange the client made");
    let (fewest, most) = ((elapsed / 4.0).floor() as u64, (elapsed / 2.0).ceil() as u64 + 1);
    assert!(
        (fewest..=most).contains(&exchanges),
        "{exchanges} exchanges in {elapsed:.1} s, expected {fewest}..={most}"
    );
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_client_secret_stops_the_run_before_any_write_and_never_shows_the_secret() {
    // GIVEN a PAT whose client secret the token endpoint refuses
    let sim = pat_sim(60).await;
    let wrong = "wrong-s3cr3t-do-not-print";
    let tokens = pat_tokens(&sim, SecretOrigin::Value(SecretToken::new(wrong)));
    let client = paced_client(&sim, tokens.clone(), 1000);

    // WHEN an import is attempted
    let err = run_once(&client, &to_csv(&staff(20)), &example_config(), false).await.expect_err("the run must stop");

    // THEN it is the run-level "credentials refused" error naming the token URL, not the secret
    assert!(matches!(&err, RunError::Nerm(NermError::CredentialsRefused { status: Some(401), .. })), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(shown.contains(&sim.running.token_url()), "{shown}");
    assert!(!shown.contains(wrong) && !shown.contains(SECRET), "{shown}");
    // AND nothing reached NERM, and the token endpoint was not hammered
    let stats = sim.stats().await;
    assert_eq!(stat(&stats, "writes"), 0);
    assert_eq!(stat(&stats, "total"), 0, "no /api request without a token");
    assert_eq!(stat(&stats, "token_refusals"), stat(&stats, "token_requests"));
    assert!(stat(&stats, "token_requests") <= 2, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_endpoint_failing_for_a_while_then_recovering_lets_the_run_complete() {
    // GIVEN a token endpoint answering 503, 429 and a dropped connection before it recovers
    let sim = pat_sim(60).await;
    let route = nerm_sim::oauth::TOKEN_ROUTE;
    let script: Vec<_> = ["error", "error", "throttle", "drop", "error"]
        .iter()
        .map(|fault| json!({ "route": route, "fault": fault }))
        .collect();
    sim.configure(json!({"faults": {"script": script, "throttle_retry_after_secs": 1}})).await;
    let tokens = pat_tokens(&sim, SecretOrigin::Value(SecretToken::new(SECRET)));
    let client = paced_client(&sim, tokens, 1000);
    let people = employees(40);

    // WHEN 40 employees are imported
    let (summary, _) = run_once(&client, &to_csv(&people), &example_config(), false).await.expect("the run starts");

    // THEN every fault fired, the client retried through them, and every row is created
    let stats = sim.stats().await;
    assert_eq!(stats["faults"], json!({"token_error": 3, "token_throttle": 1, "token_drop": 1}), "{stats}");
    assert_eq!(stat(&stats, "token_requests"), 6, "five failures, then one token for the whole run");
    assert!(client.stats().retries >= 5, "{:?}", client.stats());
    assert_eq!(summary.count_of(Outcome::Failed), 0);
    assert_eq!(summary.count_of(Outcome::Created), 40);
    assert_nerm_matches(&sim.state().await, &people);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_secret_rotated_mid_run_is_read_afresh_and_the_run_completes() {
    // GIVEN the client secret in a file, as `--client-secret-file` reads it
    let sim = pat_sim(60).await;
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let tokens = pat_tokens(&sim, SecretOrigin::File(secret_file.clone()));
    let client = paced_client(&sim, tokens.clone(), 1000);
    let people = employees(40);

    // WHEN, after NERM was read and before any write, the secret is rotated: the file holds the
    // new one, the tenant refuses the old one and revokes the tokens it issued
    let rotate = |msg: &str| {
        log_progress(msg);
        if msg.starts_with("read NERM") {
            std::fs::write(&secret_file, ROTATED).unwrap();
            let next = sim.running.sim.config().merged(&json!({"oauth": {"client_secret": ROTATED}})).unwrap();
            sim.running.sim.set_config(next).unwrap();
            let revoke = sim.running.sim.revoke_tokens();
            assert_eq!(revoke, 1, "the run's one token was revoked");
        }
    };
    let (summary, _) =
        run_once_with(&client, &to_csv(&people), &example_config(), false, &rotate).await.expect("the run starts");

    // THEN the 401 dropped the revoked token, the file was read again for the next exchange,
    // and the run went on with the new secret (the old one was never sent again)
    let stats = sim.stats().await;
    assert_eq!(stat(&stats, "unauthorized"), 1, "{stats}");
    assert_eq!(stat(&stats, "token_refusals"), 0, "{stats}");
    assert_eq!(stat(&stats, "token_requests"), 2, "the first token, then one with the new secret");
    assert_eq!(summary.count_of(Outcome::Failed), 0);
    assert_eq!(summary.count_of(Outcome::Created), 40);
    assert_nerm_matches(&sim.state().await, &people);
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_requests_without_a_token_wait_for_one_exchange_instead_of_each_starting_one() {
    // GIVEN a slow token endpoint (every answer held 300 ms) and a client with no token yet
    let sim = pat_sim(60).await;
    sim.configure(json!({"faults": {"latency_ms": 300}})).await;
    let tokens = pat_tokens(&sim, SecretOrigin::Value(SecretToken::new(SECRET)));
    let client = Arc::new(paced_client(&sim, tokens.clone(), 1000));

    // WHEN twenty requests start at once
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let client = Arc::clone(&client);
        calls.spawn(async move { client.roles().await.map(|r| r.len()) });
    }
    let answers: Vec<_> = calls.join_all().await;

    // THEN all went through with the one token a single exchange gave
    assert!(answers.iter().all(|a| a.as_ref().is_ok_and(|n| *n > 0)), "{answers:?}");
    assert_eq!(tokens.exchanges(), 1);
    let stats = sim.stats().await;
    assert_eq!(stat(&stats, "token_requests"), 1, "{stats}");
    assert_eq!(requests_of(&stats).get("GET /api/roles"), Some(&20));
}
