//! The preflight (`shared::engine::check::preflight`, `nerm-sync check`) against the simulator:
//! a handful of requests, a verdict per item, and the wording a run would use.

mod common;

use std::sync::Arc;

use common::{Harness, client_with_tokens, example_config, example_config_text};
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
