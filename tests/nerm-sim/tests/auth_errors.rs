//! Authentication (docs/nerm-api.md, "Authentication") and the routing-level errors.

mod common;

use common::{Harness, TOKEN, quiet_config};
use nerm_sim::Seed;
use reqwest::Method;
use serde_json::json;

const UNAUTHORIZED: &str = r#"{"error":"Unauthorized: a valid API token is required"}"#;

fn unauthorized() -> serde_json::Value {
    serde_json::from_str(UNAUTHORIZED).unwrap()
}

#[tokio::test]
async fn a_request_without_a_token_is_a_401() {
    let h = Harness::start().await;
    let r = h.raw(Method::GET, "/users", None, None).await;
    assert_eq!(r.expect(401), unauthorized());
    assert_eq!(h.stats().await["unauthorized"], 1);
}

#[tokio::test]
async fn a_request_with_a_wrong_token_is_a_401_and_writes_nothing() {
    let h = Harness::start().await;
    for auth in ["Bearer wrong", "Token token=wrong", "Basic dDp0", "Bearer ", "t"] {
        let r = h.raw(Method::GET, "/users", Some(auth), None).await;
        assert_eq!(r.expect(401), unauthorized(), "{auth:?}");
    }
    let body = r#"{"user": {"type": "NeprofileUser", "name": "X", "email": "x@example.com", "login": "x"}}"#;
    assert_eq!(h.raw(Method::POST, "/user", Some("Bearer nope"), Some(body)).await.status, 401);
    assert!(h.stored_user("x").await.is_none());
}

#[tokio::test]
async fn both_the_bearer_and_the_legacy_token_forms_are_accepted() {
    let h = Harness::start().await;
    for auth in [
        format!("Bearer {TOKEN}"),
        format!("Token token={TOKEN}"),
        format!("Token token=\"{TOKEN}\""),
        format!("  Bearer   {TOKEN}  "),
    ] {
        let r = h.raw(Method::GET, "/users", Some(&auth), None).await;
        assert_eq!(r.status, 200, "{auth:?}: {}", r.body);
    }
}

#[tokio::test]
async fn every_configured_token_is_accepted() {
    let mut cfg = quiet_config();
    cfg.tokens = vec!["first".into(), "second".into()];
    let h = Harness::with(cfg, &Seed::demo()).await;
    assert_eq!(h.raw(Method::GET, "/roles", Some("Bearer first"), None).await.status, 200);
    assert_eq!(h.raw(Method::GET, "/roles", Some("Token token=second"), None).await.status, 200);
    assert_eq!(h.raw(Method::GET, "/roles", Some("Bearer third"), None).await.status, 401);
}

#[tokio::test]
async fn tokens_can_be_rotated_at_run_time() {
    let h = Harness::start().await;
    h.configure(json!({"tokens": ["rotated"]})).await;
    assert_eq!(h.get("/roles").await.status, 401, "the old token no longer works");
    assert_eq!(h.raw(Method::GET, "/roles", Some("Bearer rotated"), None).await.status, 200);
}

#[tokio::test]
async fn an_unknown_path_is_a_404_with_an_error_body() {
    let h = Harness::start().await;
    let r = h.get("/no_such_resource").await;
    assert_eq!(r.expect(404), json!({"error": "The requested resource was not found"}));
    // there is no /v1 segment (docs/nerm-api.md, "Base URL and envelopes")
    assert_eq!(h.get("/v1/users").await.status, 404);
}

#[tokio::test]
async fn an_undocumented_method_on_a_known_path_is_a_405() {
    let h = Harness::start().await;
    // no DELETE for roles (archive instead) and no PUT anywhere
    assert_eq!(h.send(Method::DELETE, "/roles/0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e", None).await.status, 405);
    assert_eq!(h.send(Method::PUT, "/users", Some(&json!({"users": []}))).await.status, 405);
    // create-one is singular: POST /profile, not POST /profiles/{id}
    assert_eq!(h.send(Method::POST, "/profiles/0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e", None).await.status, 405);
}
