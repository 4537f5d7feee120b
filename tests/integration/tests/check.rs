//! The preflight (`shared::engine::check::preflight`, `nerm-sync check`) against the simulator:
//! a handful of requests, a verdict per item, and the wording a run would use.

mod common;

use std::sync::Arc;

use common::{Harness, client_with_tokens, employees, example_config, example_config_text, to_csv};
use serde_json::json;
use shared::config::MappingConfig;
use shared::engine::check::{Verdict, preflight};
use shared::nerm::{SecretToken, StaticToken};

fn verdict_of<'a>(report: &'a shared::engine::check::CheckReport, item: &str) -> &'a shared::engine::check::CheckItem {
    report.items.iter().find(|i| i.item == item).unwrap_or_else(|| panic!("no item {item}:\n{report}"))
}

#[tokio::test]
async fn the_example_mapping_passes_on_the_demo_tenant_in_a_handful_of_requests() {
    // GIVEN the demo tenant and the shipped mapping
    let sim = Harness::start().await;
    let client = sim.client();

    // WHEN the preflight runs
    let report = preflight(&example_config(), &client).await;

    // THEN every item is fine and the mapping can run
    assert!(report.can_run(), "{report}");
    assert_eq!(verdict_of(&report, "credentials").verdict, Verdict::Ok);
    assert_eq!(verdict_of(&report, "profile.type").verdict, Verdict::Ok);
    assert!(verdict_of(&report, "profile.attributes.employee_id").detail.contains("attribute"), "{report}");
    assert!(verdict_of(&report, "tenant").detail.ends_with("users in NERM"), "{report}");
    // AND the demo tenant's lists fit a page each, which says nothing about a larger page
    assert!(verdict_of(&report, "nerm.page_size").detail.contains("fits one page of the 500 asked"), "{report}");
    // AND it cost at most 20 requests, none of them a write
    let stats = client.stats();
    assert!(stats.total_requests() <= 20, "{:?}", stats.requests);
    assert_eq!(stats.writes(), 0, "{:?}", stats.requests);
}

#[tokio::test]
async fn an_unknown_profile_type_fails_with_the_words_a_run_would_use() {
    // GIVEN a mapping naming a profile type the tenant does not have
    let sim = Harness::start().await;
    let text = example_config_text();
    let config = MappingConfig::from_toml_str(&text.replacen("type = \"employee\"", "type = \"staff\"", 1))
        .expect("the changed config loads");

    // WHEN the preflight runs
    let report = preflight(&config, &sim.client()).await;

    // THEN the mapping cannot run, and the item says why exactly as a run's error does
    assert!(!report.can_run(), "{report}");
    let item = verdict_of(&report, "profile.type");
    assert_eq!(item.verdict, Verdict::Fail);
    let run_error = shared::engine::run::resolve(&config, &sim.client()).await.expect_err("a run cannot resolve it");
    assert!(run_error.to_string().contains(&item.detail), "run: {run_error}\ncheck: {}", item.detail);
    assert!(report.to_string().ends_with("verdict: the mapping cannot run"), "{report}");
}

#[tokio::test]
async fn refused_credentials_fail_the_credentials_item_and_nothing_else_is_asked() {
    // GIVEN a token the tenant does not accept
    let sim = Harness::start().await;
    let client = client_with_tokens(&sim.api_url(), Arc::new(StaticToken::new(SecretToken::new("not-the-token"))));

    // WHEN the preflight runs
    let report = preflight(&example_config(), &client).await;

    // THEN the credentials item fails, says 401, and is the only item
    assert!(!report.can_run());
    assert_eq!(report.items.len(), 1, "{report}");
    let item = verdict_of(&report, "credentials");
    assert_eq!(item.verdict, Verdict::Fail);
    assert!(item.detail.contains("401"), "{}", item.detail);
    assert!(!report.to_string().contains("not-the-token"), "the token never prints");
}

#[tokio::test]
async fn a_tenant_serving_smaller_pages_than_asked_is_reported_and_a_plans_requests_are_predicted() {
    // GIVEN a tenant that serves at most 25 records a page, holding 120 imported employees
    let sim = Harness::with(json!({"behaviour": {"page_max": 25}})).await;
    let csv = to_csv(&employees(120));
    let config = example_config();
    sim.run(&csv, &config, false).await;

    // WHEN the preflight runs with a client asking for pages of 500
    let client = sim.client();
    let report = preflight(&config, &client).await;

    // THEN it reports the page size NERM really serves
    assert!(report.can_run(), "{report}");
    let page = verdict_of(&report, "nerm.page_size");
    assert_eq!(page.verdict, Verdict::Ok);
    assert!(page.detail.starts_with("NERM serves 25 records a page where 500 were asked"), "{report}");
    // AND it stays within 20 requests, none of them a write, whatever the tenant's size
    let stats = client.stats();
    assert!(stats.total_requests() <= 20, "{:?}", stats.requests);
    assert_eq!(stats.writes(), 0, "{:?}", stats.requests);
    // AND the requests it predicts for a plan are the ones a plan then makes
    let predicted = report.snapshot_requests.expect("a predicted request count");
    assert!(
        verdict_of(&report, "snapshot").detail.contains(&format!("reads NERM in {predicted} requests")),
        "{report}"
    );
    let plan = sim.run(&csv, &config, true).await;
    assert_eq!(predicted, plan.client.total_requests(), "check:\n{report}\nplan: {:?}", plan.client.requests);
    assert!(predicted > 20, "120 employees in pages of 25 take more pages than the check itself spends");
}

#[tokio::test]
async fn the_bulk_limit_is_described_not_probed() {
    // GIVEN a tenant that takes at most 30 records a bulk body
    let sim = Harness::with(json!({"behaviour": {"bulk_max": 30}})).await;
    let client = sim.client();

    // WHEN the preflight runs
    let report = preflight(&example_config(), &client).await;

    // THEN it says where bulk writes start and that the limit is learnt on the first write
    let bulk = verdict_of(&report, "bulk size");
    assert_eq!(bulk.verdict, Verdict::Ok);
    assert!(bulk.detail.starts_with("writes start at 100 records a body"), "{}", bulk.detail);
    assert!(bulk.detail.contains("learnt on the first bulk write"), "{}", bulk.detail);
    // AND nothing was written to find out
    assert_eq!(client.stats().writes(), 0, "{:?}", client.stats().requests);
}
