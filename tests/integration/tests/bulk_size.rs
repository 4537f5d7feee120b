//! Bulk bodies a tenant refuses whole: too large for it, or holding one record it refuses.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use serde_json::json;
use shared::report::Outcome;

#[tokio::test(flavor = "multi_thread")]
async fn a_body_too_large_for_the_tenant_is_halved_and_the_size_that_works_is_kept() {
    // GIVEN a tenant that takes at most 30 records per bulk body
    let sim = Harness::with(json!({"behaviour": {"bulk_max": 30}})).await;
    let people = employees(100);

    // WHEN 100 employees are imported by one client
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN all are created, nothing went one record at a time, and after the first refusals
    // every body was of a size the tenant takes
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 100)]), "{:#?}", run.with_outcome(Outcome::Failed));
    assert_nerm_matches(&sim.state().await, &people);
    let requests = sim.requests().await;
    for single in ["POST /api/user", "POST /api/profile", "POST /api/user_profile", "POST /api/user_manager"] {
        assert_eq!(requests.get(single), None, "{requests:#?}");
    }
    let stats = sim.stats().await;
    let refused = stats["statuses"]["400"].as_u64().unwrap_or(0);
    assert!(refused > 0 && refused <= 3, "only the first body of 100 and its halves were refused: {stats:#}");
    // 100 users in bodies of 25 (after 100 → 50 → 25), and every later kind in bodies of 25.
    assert_eq!(requests["POST /api/profiles"], 4, "{requests:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_bad_record_in_a_refused_body_is_isolated_without_shrinking_later_bodies() {
    // GIVEN a tenant that refuses a whole bulk body for one bad record, and an employee who
    // signs in through SSO after the engine read NERM (so the engine's create of that login
    // is refused: the login is taken)
    let sim = Harness::with(json!({"behaviour": {"bulk_all_or_nothing": true}})).await;
    let people = employees(40);
    let login = people[17].login.clone();
    let signed_in = AtomicBool::new(false);
    let hook = |msg: &str| {
        log_progress(msg);
        if msg.starts_with("read NERM") && !signed_in.swap(true, Ordering::SeqCst) {
            sim.sso_login_now(&login, &["Employees"]);
        }
    };

    // WHEN the 40 employees are imported
    let run = sim.try_run_with(&to_csv(&people), &example_config(), false, &hook).await.expect("the run starts");
    assert!(signed_in.load(Ordering::SeqCst), "the hook ran");

    // THEN every row is done and NERM holds each employee once (the JIT user adopted)
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 40)]), "{:#?}", run.with_outcome(Outcome::Failed));
    assert_nerm_matches(&sim.state().await, &people);
    // AND the refused body was bisected down to the one record, which alone went singly
    let requests = sim.requests().await;
    assert_eq!(requests.get("POST /api/user"), Some(&1), "{requests:#?}");
    let bulk_users = requests["POST /api/users"];
    assert!(bulk_users <= 2 * 6 + 1, "about two bodies per halving of 40: {bulk_users}");
    // AND the bulk size was not lowered: each later kind went in one body
    assert_eq!(requests["POST /api/profiles"], 1, "{requests:#?}");
    assert_eq!(requests["POST /api/user_profiles"], 1, "{requests:#?}");
}
