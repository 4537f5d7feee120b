//! Load and fault realism, switched on at run time with `PATCH /_sim/config`: the token bucket,
//! random 429s, 5xx, dropped connections, slow answers, commit-then-fail, NERM down, latency.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, TOKEN, client_with_timeout, quiet_config};
use nerm_sim::Seed;
use reqwest::Method;
use serde_json::{Value, json};

fn new_user(login: &str) -> Value {
    json!({"user": {"type": "NeprofileUser", "name": "F", "email": format!("{login}@example.com"), "login": login}})
}

#[tokio::test]
async fn the_token_bucket_answers_429_with_retry_after_once_spent() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"rate_limit": {"requests": 5, "per_seconds": 10}}})).await;

    // WHEN six requests arrive at once
    for i in 0..5 {
        assert_eq!(h.get("/roles").await.status, 200, "request {i} is within the burst");
    }
    let r = h.get("/roles").await;

    // THEN the sixth is a 429 with a Retry-After of at least a second and an error body
    assert_eq!(r.status, 429, "{}", r.body);
    let retry_after: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry_after >= 1, "Retry-After {retry_after}");
    assert_eq!(r.body, json!({"error": "Rate limit exceeded, retry later"}));
    // AND the stats count it
    let stats = h.stats().await;
    assert_eq!(stats["rate_limited"], 1);
    assert_eq!(stats["statuses"]["429"], 1);
    assert_eq!(stats["statuses"]["200"], 5);
}

#[tokio::test]
async fn each_token_has_its_own_bucket() {
    let mut cfg = quiet_config();
    cfg.tokens = vec![TOKEN.into(), "other".into()];
    let h = Harness::with(cfg, &Seed::demo()).await;
    h.configure(json!({"faults": {"rate_limit": {"requests": 2, "per_seconds": 60}}})).await;
    for _ in 0..2 {
        h.get("/roles").await.ok();
    }
    assert_eq!(h.get("/roles").await.status, 429);
    let other = h.raw(Method::GET, "/roles", Some("Bearer other"), None).await;
    assert_eq!(other.status, 200, "a second token is not throttled by the first");
}

#[tokio::test]
async fn the_rate_limit_is_off_when_set_to_null() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"rate_limit": {"requests": 1, "per_seconds": 60}}})).await;
    h.get("/roles").await.ok();
    assert_eq!(h.get("/roles").await.status, 429);
    h.configure(json!({"faults": {"rate_limit": null}})).await;
    for _ in 0..5 {
        h.get("/roles").await.ok();
    }
}

#[tokio::test]
async fn a_random_throttle_answers_429_with_the_configured_retry_after() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"throttle_rate": 1.0, "throttle_retry_after_secs": 7, "seed": 1}})).await;
    let r = h.get("/users").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.body, json!({"error": "Rate limit exceeded, retry later"}));
    let stats = h.stats().await;
    assert_eq!(stats["faults"]["throttle"], 1);
    assert_eq!(stats["rate_limited"], 0, "not the token bucket");
}

#[tokio::test]
async fn an_error_fault_answers_5xx_and_writes_nothing() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"error_rate": 1.0, "seed": 7}})).await;

    let r = h.post("/user", new_user("never")).await;

    assert!([500, 502, 503].contains(&r.status), "status {}", r.status);
    assert_eq!(r.body, json!({"error": "Sorry something went wrong"}));
    assert!(h.stored_user("never").await.is_none());
    let stats = h.stats().await;
    assert_eq!(stats["faults"]["error"], 1);
    assert_eq!(stats["writes"], 0);
}

#[tokio::test]
async fn a_dropped_connection_gives_the_client_no_status_and_writes_nothing() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"drop_rate": 1.0, "seed": 7}})).await;

    let r = h.client.post(h.url("/user")).bearer_auth(TOKEN).json(&new_user("dropped")).send().await;

    let err = r.expect_err("no HTTP answer");
    assert!(err.status().is_none(), "{err:?}");
    assert!(!err.is_timeout(), "{err:?}");
    assert!(h.stored_user("dropped").await.is_none());
    assert_eq!(h.stats().await["faults"]["drop"], 1);
}

#[tokio::test]
async fn a_dropped_connection_is_counted_as_neither_a_200_nor_an_extra_write() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"drop_rate": 1.0, "seed": 7}})).await;
    let r = h.client.post(h.url("/user")).bearer_auth(TOKEN).json(&new_user("dropped")).send().await;
    assert!(r.is_err());
    let stats = h.stats().await;
    assert_eq!(stats["writes"], 0, "nothing was written: {stats}");
    assert!(stats["statuses"].get("200").is_none(), "no 200 was sent: {stats}");

    // AND a commit-then-reset is one write, not two
    h.configure(json!({"faults": {"drop_rate": 0.0, "commit_then_fail_rate": 1.0, "commit_then_fail_mode": "reset"}}))
        .await;
    h.sim_post("/stats/reset", json!({})).await.ok();
    let r = h.client.post(h.url("/user")).bearer_auth(TOKEN).json(&new_user("phantom")).send().await;
    assert!(r.is_err());
    let stats = h.stats().await;
    assert_eq!(stats["writes"], 1, "one committed write: {stats}");
    assert!(stats["statuses"].get("200").is_none(), "no 200 was sent: {stats}");
}

#[tokio::test]
async fn a_slow_write_times_the_client_out_and_is_applied_afterwards() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"slow_rate": 1.0, "slow_ms": 1500, "seed": 7}})).await;
    let impatient = client_with_timeout(Some(Duration::from_millis(300)));

    // WHEN a POST /user is held longer than the client waits
    let started = Instant::now();
    let r = h.try_send_with(&impatient, Method::POST, "/user", Some(&new_user("slowpoke"))).await;

    // THEN the client sees a timeout
    let err = r.expect_err("the client gives up");
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_millis(1400));
    // AND the server still applies the write once the hold is over (the duplicate-creating case)
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(h.stored_user("slowpoke").await.is_some(), "the write was applied after the timeout");
    assert_eq!(h.stats().await["faults"]["slow"], 1);
}

#[tokio::test]
async fn scripted_faults_hit_the_next_requests_to_their_route_in_order_and_are_used_up() {
    // GIVEN a script: the next POST /user dropped, the one after answered 5xx
    let h = Harness::start().await;
    h.configure(json!({"faults": {"script": [
        {"route": "POST /api/user", "fault": "drop"},
        {"route": "POST /api/user", "fault": "error"}
    ]}}))
    .await;

    // WHEN other routes are called, then POST /user three times
    assert_eq!(h.get("/roles").await.status, 200, "other routes are untouched");
    let first = h.try_send(Method::POST, "/user", Some(&new_user("first"))).await;
    let second = h.post("/user", new_user("second")).await;
    let third = h.post("/user", new_user("third")).await;

    // THEN the script ran in order, before any write, and then the dice took over again
    assert!(first.is_err(), "dropped: {first:?}");
    assert!(second.status >= 500, "{}", second.body);
    assert_eq!(third.status, 200, "{}", third.body);
    assert!(h.stored_user("first").await.is_none() && h.stored_user("second").await.is_none());
    let stats = h.stats().await;
    assert_eq!((stats["faults"]["drop"].as_u64(), stats["faults"]["error"].as_u64()), (Some(1), Some(1)));
    assert_eq!(h.sim(Method::GET, "/config", None).await.ok()["faults"]["script"], json!([]), "used up");
}

#[tokio::test]
async fn a_slow_answer_arrives_after_slow_ms_for_a_patient_client() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"slow_rate": 1.0, "slow_ms": 300, "seed": 7}})).await;
    let started = Instant::now();
    h.post("/user", new_user("patient")).await.ok();
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(h.stored_user("patient").await.is_some());
}

#[tokio::test]
async fn commit_then_fail_as_500_answers_500_but_the_user_exists() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"commit_then_fail_rate": 1.0, "commit_then_fail_mode": "error500", "seed": 3}}))
        .await;

    let r = h.post("/user", new_user("ghost")).await;

    assert!(r.status >= 500, "status {}", r.status);
    assert_eq!(r.body, json!({"error": "Sorry something went wrong"}));
    // The write happened: a client retrying the POST would create a duplicate (or get "taken").
    assert!(h.stored_user("ghost").await.is_some());
    let retry = h.post("/user", new_user("ghost")).await;
    assert_eq!(
        retry.expect(400),
        json!({"error": "The user failed to create", "errors": {"login": "has already been taken"}}),
        "a failed write is not turned into a 5xx"
    );
}

#[tokio::test]
async fn commit_then_fail_as_500_always_answers_exactly_500() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"commit_then_fail_rate": 1.0, "commit_then_fail_mode": "error500", "seed": 3}}))
        .await;
    let mut statuses = Vec::new();
    for i in 0..10 {
        statuses.push(h.post("/user", new_user(&format!("ghost{i}"))).await.status);
    }
    assert_eq!(statuses, [500; 10], "CommitFailMode::Error500: \"the answer is a 500\"");
}

#[tokio::test]
async fn commit_then_fail_does_not_turn_a_rejected_write_into_a_failure() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"commit_then_fail_rate": 1.0, "commit_then_fail_mode": "error500", "seed": 3}}))
        .await;
    let r = h.post("/user", json!({"user": {"type": "NeprofileUser"}})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    // and reads are never affected
    assert_eq!(h.get("/roles").await.status, 200);
}

#[tokio::test]
async fn commit_then_fail_as_reset_drops_the_connection_but_the_user_exists() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"commit_then_fail_rate": 1.0, "commit_then_fail_mode": "reset", "seed": 3}})).await;

    let r = h.client.post(h.url("/user")).bearer_auth(TOKEN).json(&new_user("phantom")).send().await;

    let err = r.expect_err("no HTTP answer");
    assert!(err.status().is_none(), "{err:?}");
    assert!(h.stored_user("phantom").await.is_some());
    assert_eq!(h.stats().await["faults"]["commit_then_fail"], 1);
}

#[tokio::test]
async fn when_nerm_is_down_every_api_call_is_a_503() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"down": true}})).await;
    for path in ["/users", "/profiles", "/roles"] {
        let r = h.get(path).await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.body, json!({"error": "Service Unavailable"}));
    }
    let r = h.post("/user", new_user("downer")).await;
    assert_eq!(r.status, 503);
    assert!(h.stored_user("downer").await.is_none());
    assert_eq!(h.stats().await["faults"]["down"], 4);
    // AND the /_sim hooks still answer, so the test can bring it back
    h.configure(json!({"faults": {"down": false}})).await;
    assert_eq!(h.get("/users").await.status, 200);
}

#[tokio::test]
async fn latency_delays_every_api_request() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"latency_ms": 200}})).await;
    for path in ["/users", "/roles"] {
        let started = Instant::now();
        h.get(path).await.ok();
        assert!(started.elapsed() >= Duration::from_millis(200), "{path} took {:?}", started.elapsed());
    }
    // the /_sim routes are not delayed by design, but no upper bound is asserted here
}

#[tokio::test]
async fn the_same_fault_seed_replays_the_same_faults() {
    let h = Harness::start().await;
    let run = async || {
        let mut out = Vec::new();
        for _ in 0..20 {
            out.push(h.get("/roles").await.status);
        }
        out
    };
    h.configure(json!({"faults": {"error_rate": 0.5, "seed": 42}})).await;
    let first = run().await;
    h.configure(json!({"faults": {"seed": 43}})).await;
    h.configure(json!({"faults": {"seed": 42}})).await;
    let second = run().await;
    assert_eq!(first, second);
    assert!(first.contains(&200) && first.iter().any(|s| *s >= 500), "a mix at 0.5: {first:?}");
}

#[tokio::test]
async fn a_fault_probability_above_one_is_refused() {
    let h = Harness::start().await;
    let r = h.patch_config(json!({"faults": {"drop_rate": 2.0}})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].as_str().unwrap().contains("drop_rate"), "{}", r.body);
    assert_eq!(h.sim(Method::GET, "/config", None).await.ok()["faults"]["drop_rate"], 0.0);
}
