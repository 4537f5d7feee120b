//! Full sync (`[sync] mode = "full"`): leavers are disabled, never deleted, and the threshold
//! stops a run that would disable too many before anything is written.

mod common;

use std::collections::BTreeMap;

use common::*;
use shared::engine::{RunError, ThresholdError};
use shared::report::Outcome;

/// Imports `people` with the full-sync config and checks it worked.
async fn imported(sim: &Harness, people: &[HrRow]) {
    let run = sim.run(&to_csv(people), &full_sync_config(), false).await;
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, people.len())]), "{:#?}", run.rows);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_sync_leaver_is_disabled_not_deleted() {
    // GIVEN 20 employees imported in full-sync mode
    let sim = Harness::start().await;
    let people = employees(20);
    imported(&sim, &people).await;

    // WHEN the next file leaves out one active employee who manages others
    let leaver_at = people
        .iter()
        .position(|p| {
            p.user_status() == "Active"
                && p.profile_status() == "Active"
                && people.iter().any(|o| o.manager_login.eq_ignore_ascii_case(&p.login))
        })
        .expect("an active manager among 20 generated employees");
    let mut stayers = people.clone();
    let leaver = stayers.remove(leaver_at);
    let reports: Vec<&HrRow> = stayers.iter().filter(|o| o.manager_login.eq_ignore_ascii_case(&leaver.login)).collect();
    assert!(!reports.is_empty());
    let run = sim.run(&to_csv(&stayers), &full_sync_config(), false).await;

    // THEN the leaver gets a report row of its own, line 0, outcome disabled
    assert_eq!(run.rows.len(), 20, "19 input rows plus the leaver");
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Unchanged, 19), (Outcome::Disabled, 1)]));
    let row = run.row_of(&leaver.employee_id);
    assert_eq!(row.outcome, Outcome::Disabled);
    assert_eq!(row.line, 0);
    assert_eq!(row.employee_key, leaver.employee_id);
    assert_eq!(
        row.changes,
        vec![
            "user.status: \"Active\" -> \"Disabled\"".to_string(),
            "profile.status: \"Active\" -> \"Inactive\"".into()
        ]
    );
    assert_eq!(run.summary.count_of(Outcome::Disabled), 1);

    // AND the leaver's user is Disabled and the profile Inactive; both still exist, still linked
    let state = sim.state().await;
    let u = user(&state, &leaver.login);
    let p = profile(&state, &leaver.employee_id);
    assert_eq!(u["status"], "Disabled");
    assert_eq!(p["status"], "Inactive");
    assert_eq!(p["attributes"]["login"].as_str(), Some(leaver.login.as_str()));
    let owner_links = records(&state, "user_profiles")
        .iter()
        .filter(|l| l["user_id"] == u["id"] && l["profile_id"] == p["id"] && l["relationship_type"] == "owner")
        .count();
    assert_eq!(owner_links, 1);
    assert_eq!(records(&state, "users").len(), 21, "nobody deleted: 20 employees and the admin");
    assert_eq!(employee_profiles(&state).len(), 20, "nobody deleted");

    // AND the leaver's reports still point at it (it is disabled, not gone)
    assert_nerm_matches(&state, &stayers);
    for r in reports {
        let mine = records(&state, "user_managers")
            .iter()
            .filter(|m| m["user_id"] == user(&state, &r.login)["id"])
            .map(|m| m["manager_id"].clone())
            .collect::<Vec<_>>();
        assert_eq!(mine, vec![u["id"].clone()], "{}", r.login);
    }
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_threshold_stops_a_mass_disable() {
    // GIVEN 20 employees imported in full-sync mode (threshold 10 %)
    let sim = Harness::start().await;
    let people = employees(20);
    imported(&sim, &people).await;
    let before = tenant_records(&sim.state().await);

    // WHEN a file missing 5 of them (25 %) is synced
    sim.reset_stats().await;
    let result = sim.try_run(&to_csv(&people[..15]), &full_sync_config(), false).await;

    // THEN the run stops with the threshold error, having written nothing
    match result {
        Err(RunError::Threshold(ThresholdError::TooMany { leavers, managed, percent, limit })) => {
            assert_eq!((leavers, managed), (5, 20));
            assert!((percent - 25.0).abs() < 1e-9, "{percent}");
            assert!((limit - 10.0).abs() < 1e-9, "{limit}");
        }
        Err(other) => panic!("expected the threshold error, got {other}"),
        Ok(run) => panic!("expected the threshold error, the run went on: {:?}", run.outcomes()),
    }
    let stats = sim.stats().await;
    assert_eq!(stats["writes"].as_u64(), Some(0));
    assert_eq!(non_get_requests(&stats), BTreeMap::new());
    assert_eq!(tenant_records(&sim.state().await), before);

    // WHEN an empty export (header only) is synced
    sim.reset_stats().await;
    let result = sim.try_run(&format!("{HEADER}\n"), &full_sync_config(), false).await;

    // THEN it never disables anyone either: the run stops before any write
    match result {
        Err(RunError::Threshold(ThresholdError::EmptyFile { managed })) => assert_eq!(managed, 20),
        Err(other) => panic!("expected the empty-file error, got {other}"),
        Ok(run) => panic!("an empty file in full mode went on: {:?}", run.outcomes()),
    }
    let stats = sim.stats().await;
    assert_eq!(stats["writes"].as_u64(), Some(0));
    assert_eq!(non_get_requests(&stats), BTreeMap::new());
    let state = sim.state().await;
    assert_eq!(tenant_records(&state), before);
    assert_nerm_matches(&state, &people);
    sim.assert_no_spec_violations().await;
}
