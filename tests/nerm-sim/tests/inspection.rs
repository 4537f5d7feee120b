//! The `/_sim` hooks: state, reset, seed, stats and config.

mod common;

use common::{Harness, items};
use reqwest::Method;
use serde_json::{Value, json};

#[tokio::test]
async fn the_state_shows_what_was_written_including_hidden_fields() {
    let h = Harness::start().await;
    let u = h.create_user("seen", json!({"password": "hunter2", "group_strings": "Sponsors"})).await;
    let sponsor = h.role_id("sponsor").await;
    let p = h.create_employee(json!({"first_name": "St", "last_name": "Ate"})).await;

    let state = h.state().await;

    let stored = items(&state, "users").iter().find(|x| x["id"] == u["id"]).expect("user in state").clone();
    assert_eq!(stored["password"], "hunter2", "hidden fields are visible for assertions");
    assert_eq!(stored["group_strings"], "Sponsors");
    let links: Vec<&Value> = items(&state, "user_roles").iter().filter(|r| r["user_id"] == u["id"]).collect();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["role_id"], sponsor.as_str());
    assert_eq!(links[0]["sources"], json!(["group"]));
    assert!(items(&state, "profiles").iter().any(|x| x["id"] == p["id"] && x["name"] == "St Ate"));
    for key in ["roles", "profile_types", "ne_attributes", "user_profiles", "user_managers", "jobs"] {
        assert!(state[key].is_array(), "{key} in state");
    }
}

#[tokio::test]
async fn reset_with_empty_leaves_nothing_and_plain_reset_restores_the_demo_tenant() {
    let h = Harness::start().await;
    h.create_user("temp", json!({})).await;
    h.create_employee(json!({"first_name": "Tem", "last_name": "P"})).await;
    h.get("/users").await.ok();

    // WHEN reset with {"empty": true}
    assert_eq!(h.sim_post("/reset", json!({"empty": true})).await.ok(), json!({"reset": true, "empty": true}));

    // THEN every collection is empty, through the API as well
    let state = h.state().await;
    for key in [
        "users",
        "roles",
        "user_roles",
        "profile_types",
        "ne_attributes",
        "profiles",
        "user_profiles",
        "user_managers",
        "jobs",
    ] {
        assert_eq!(items(&state, key).len(), 0, "{key}");
    }
    assert_eq!(h.get("/profile_types").await.ok(), json!({"profile_types": []}));
    // AND the stats were reset too (only the GET just above is counted)
    assert_eq!(h.stats().await["total"], 1);

    // WHEN reset without a body
    let r = h.sim(Method::POST, "/reset", None).await.ok();
    assert_eq!(r, json!({"reset": true, "empty": false}));
    let state = h.state().await;
    assert_eq!(items(&state, "profile_types").len(), 2);
    assert_eq!(items(&state, "roles").len(), 5);
    assert_eq!(items(&state, "users").len(), 1);
    assert!(h.stored_user("temp").await.is_none());
}

#[tokio::test]
async fn seeding_adds_a_role_a_type_and_an_attribute() {
    let h = Harness::empty().await;
    let r = h
        .sim_post(
            "/seed",
            json!({
                "roles": [{"name": "Auditor", "uid": "auditor", "groups": ["Auditors"]}],
                "profile_types": [{"name": "Vendor", "uid": "vendor", "category": "organization", "naming": ["vendor_name"]}],
                "ne_attributes": [{"uid": "vendor_name", "label": "Vendor Name"}],
                "profiles": [{"profile_type": "vendor", "status": "Active", "attributes": {"vendor_name": "ACME"}}],
            }),
        )
        .await;
    assert_eq!(r.ok(), json!({"seeded": true}));

    assert_eq!(h.get("/roles").await.ok()["roles"][0]["name"], "Auditor");
    let pt = h.get("/profile_types/vendor").await.ok()["profile_type"].clone();
    assert_eq!(pt["category"], "organization");
    assert_eq!(h.get("/ne_attributes/vendor_name").await.ok()["ne_attribute"]["label"], "Vendor Name");
    assert_eq!(h.get("/profiles").await.ok()["profiles"][0]["name"], "ACME");
    // AND the new role is granted by group_strings
    let u = h.create_user("aud", json!({"group_strings": "Auditors"})).await;
    assert_eq!(h.role_uids_of(u["id"].as_str().unwrap()).await, ["auditor"]);
    // AND seeding the same uids again is harmless
    h.sim_post("/seed", json!({"roles": [{"name": "Auditor", "uid": "auditor"}]})).await.ok();
    assert_eq!(items(&h.get("/roles").await.ok(), "roles").len(), 1);
}

#[tokio::test]
async fn a_bad_seed_is_a_400_naming_the_problem() {
    let h = Harness::empty().await;
    let r = h.sim_post("/seed", json!({"ne_attributes": [{"uid": "x", "label": "X", "data_type": "hologram"}]})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].as_str().unwrap().contains("hologram"), "{}", r.body);
    let r = h.sim_post("/seed", json!({"rolez": []})).await;
    assert!(r.status >= 400, "unknown seed keys are refused: {}", r.status);
}

#[tokio::test]
async fn stats_count_requests_by_method_and_route_template() {
    let h = Harness::start().await;
    let u = h.create_user("counted", json!({})).await;
    let id = u["id"].as_str().unwrap();
    h.get("/users").await.ok();
    h.get("/users?login=counted").await.ok();
    h.get(&format!("/users/{id}")).await.ok();
    h.patch(&format!("/users/{id}"), json!({"user": {"title": "T"}})).await.ok();
    h.raw(Method::GET, "/users", None, None).await;
    h.post("/user", json!({"nope": {}})).await.expect(400);

    let stats = h.stats().await;

    assert_eq!(
        stats["requests"],
        json!({"POST /api/user": 2, "GET /api/users": 3, "GET /api/users/{id}": 1, "PATCH /api/users/{id}": 1})
    );
    assert_eq!(stats["statuses"], json!({"200": 5, "400": 1, "401": 1}));
    assert_eq!(stats["unauthorized"], 1);
    assert_eq!(stats["writes"], 2, "the 2xx POST and PATCH");
    assert_eq!(stats["total"], 7);
    assert_eq!(stats["rate_limited"], 0);
    assert_eq!(stats["faults"], json!({}));

    // AND /_sim/stats/reset zeroes them
    h.sim_post("/stats/reset", json!({})).await.ok();
    let stats = h.stats().await;
    assert_eq!(stats["total"], 0);
    assert_eq!(stats["requests"], json!({}));
}

#[tokio::test]
async fn stats_count_faults_by_kind() {
    let h = Harness::start().await;
    h.configure(json!({"faults": {"error_rate": 1.0, "seed": 5}})).await;
    h.get("/users").await;
    h.get("/roles").await;
    h.configure(json!({"faults": {"error_rate": 0.0, "down": true}})).await;
    h.get("/users").await;
    let stats = h.stats().await;
    assert_eq!(stats["faults"], json!({"error": 2, "down": 1}));
}

#[tokio::test]
async fn the_config_never_shows_token_values() {
    let h = Harness::start().await;
    let secret = "s3cr3t-token-value";
    // WHEN tokens are set at run time
    let patched = h.patch_config(json!({"tokens": [secret, "another-secret"]})).await.ok();
    // THEN neither the PATCH answer nor GET /_sim/config shows them, only how many there are
    let got = h.sim(Method::GET, "/config", None).await.ok();
    for cfg in [&patched, &got] {
        assert_eq!(cfg["tokens"], 2);
        let text = cfg.to_string();
        assert!(!text.contains(secret) && !text.contains("another-secret"), "{text}");
    }
    assert_eq!(got["behaviour"]["page_max"], 500);
    assert_eq!(got["faults"]["rate_limit"], Value::Null);
}

#[tokio::test]
async fn a_config_patch_with_an_unknown_knob_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let r = h.patch_config(json!({"behaviour": {"page_max": 10, "made_up": true}})).await;
    assert_eq!(r.status, 400);
    assert!(r.body["error"].as_str().unwrap().contains("made_up"), "{}", r.body);
    assert_eq!(h.sim(Method::GET, "/config", None).await.ok()["behaviour"]["page_max"], 500);
}

#[tokio::test]
async fn the_health_check_answers_without_a_token() {
    let h = Harness::start().await;
    assert_eq!(h.sim(Method::GET, "/health", None).await.ok(), json!({"ok": true}));
}
