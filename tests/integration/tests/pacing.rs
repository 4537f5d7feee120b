//! Pacing against the simulator's rate limit (a token bucket per API token, as NERM's): the
//! client's own pace keeps the accepted rate within the limit, with at most 1 % of requests
//! answered 429, for one client alone and for a deployment's fleet (two provisioners and the
//! ingest) sharing one token, each paced to its share of the limit.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use shared::nerm::{ClientOptions, NermClient, SecretToken, StaticToken};

/// `n` single-record lookups (`GET /users?login=`) from `in_flight` concurrent tasks.
async fn lookups(client: Arc<NermClient>, n: usize, in_flight: usize) {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..in_flight {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if i >= n {
                    return;
                }
                let login = format!("pace{i}@example.com");
                if let Err(e) = client.user_by_login(&login).await {
                    panic!("lookup {i} failed: {e}");
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a lookup task");
    }
}

/// A client paced to `per_window` requests per `window`, retrying 429s as in production.
fn paced_client(sim: &Harness, per_window: u32, window: Duration) -> Arc<NermClient> {
    let opts = ClientOptions { requests_per_window: per_window, window, ..client_options() };
    let tokens = Arc::new(StaticToken::new(SecretToken::new(TOKEN)));
    Arc::new(NermClient::new(&sim.api_url(), tokens, opts).expect("a client"))
}

/// Checks the simulator's counts after `elapsed` of traffic against a limit of `requests` per
/// `per_seconds` (a bucket that starts full): at most 1 % 429s, and the accepted requests
/// within `requests + rate × elapsed`, while the limit was what held them back (the run took
/// at least the time the limit demands). Returns `(accepted, 429s)`.
fn assert_paced(stats: &Value, requests: u64, per_seconds: u64, elapsed: Duration) -> (u64, u64) {
    let total = stats["total"].as_u64().expect("total");
    let throttled = stats["rate_limited"].as_u64().expect("rate_limited");
    let accepted = total - throttled;
    let rate = requests as f64 / per_seconds as f64;
    let allowed = requests as f64 + rate * elapsed.as_secs_f64();
    println!(
        "{accepted} accepted and {throttled} × 429 in {:.2} s under {requests}/{per_seconds}s: \
         {:.1}% of the allowed {allowed:.0}",
        elapsed.as_secs_f64(),
        100.0 * accepted as f64 / allowed
    );
    assert!(throttled * 100 <= total, "{throttled} of {total} requests were answered 429 (more than 1 %)");
    assert!(accepted as f64 <= allowed, "{accepted} accepted in {elapsed:?}, above the limit's {allowed:.0}");
    let least = (accepted.saturating_sub(requests)) as f64 / rate;
    assert!(
        elapsed.as_secs_f64() >= 0.95 * least,
        "{accepted} requests in {elapsed:?}: the limit cannot have held them (at least {least:.1} s)"
    );
    (accepted, throttled)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_paced_to_the_limit_stays_within_it_with_at_most_1_percent_429s() {
    // GIVEN NERM limiting the token to 80 requests per 2 s, and a client paced to the same
    let sim = Harness::with(json!({"faults": {"rate_limit": {"requests": 80, "per_seconds": 2}}})).await;
    let client = paced_client(&sim, 80, Duration::from_secs(2));

    // WHEN 400 lookups are made, 2 at a time
    let started = Instant::now();
    lookups(client.clone(), 400, 2).await;
    let elapsed = started.elapsed();

    // THEN the accepted rate stayed within the limit, and at most 1 % were refused
    let stats = sim.stats().await;
    let (accepted, throttled) = assert_paced(&stats, 80, 2, elapsed);
    assert_eq!(accepted, 400, "each lookup answered once: {stats}");
    assert_eq!(client.stats().rate_limited, throttled, "the client saw every 429 sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_provisioners_sharing_one_token_stay_within_the_deployment_limit() {
    // GIVEN a deployment limited to 60 requests per 10 s (the simulator's bucket for the one
    // token), with 3 provisioners, each paced to its share (`NERM_REQUESTS_PER_10S /
    // PROVISIONER_MAX_CONCURRENCY`, as nerm-provisioner computes it)
    let share = 60 / 3;
    let sim = Harness::with(json!({"faults": {"rate_limit": {"requests": 60, "per_seconds": 10}}})).await;
    let window = Duration::from_secs(10);
    let (first, second, third) =
        (paced_client(&sim, share, window), paced_client(&sim, share, window), paced_client(&sim, share, window));

    // WHEN all three work at once: 50 lookups each, one at a time
    let started = Instant::now();
    tokio::join!(lookups(first.clone(), 50, 1), lookups(second, 50, 1), lookups(third, 50, 1));
    let elapsed = started.elapsed();

    // THEN together they stayed within the deployment's limit with at most 1 % 429s
    let stats = sim.stats().await;
    let (accepted, _) = assert_paced(&stats, 60, 10, elapsed);
    assert_eq!(accepted, 150, "each lookup answered once: {stats}");
    // AND each did its share of the work
    assert_eq!(first.stats().total_requests() - first.stats().rate_limited, 50);
}
