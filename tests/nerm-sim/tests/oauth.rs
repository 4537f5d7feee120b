//! The ISC token endpoint: `POST /oauth/token` exchanges a PAT's client id and secret
//! (client credentials grant, form-encoded) for access tokens `/api` accepts until they expire.

mod common;

use std::time::Duration;

use common::{Harness, quiet_config};
use nerm_sim::{OAuthClient, Seed};
use reqwest::Method;
use serde_json::{Value, json};

const CLIENT_ID: &str = "sim-pat-client";
const SECRET: &str = "sim-pat-s3cr3t";

async fn pat_harness(lifetime_s: u64) -> Harness {
    let mut cfg = quiet_config();
    cfg.oauth =
        Some(OAuthClient { client_id: CLIENT_ID.into(), client_secret: SECRET.into(), token_lifetime_s: lifetime_s });
    Harness::with(cfg, &Seed::demo()).await
}

/// `POST /oauth/token` with `form`: (status, body).
async fn exchange(h: &Harness, form: &[(&str, &str)]) -> (u16, Value) {
    let resp = h.client.post(format!("{}/oauth/token", h.root)).form(form).send().await.expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

fn client_credentials(secret: &str) -> [(&'static str, &str); 3] {
    [("grant_type", "client_credentials"), ("client_id", CLIENT_ID), ("client_secret", secret)]
}

#[tokio::test]
async fn the_right_client_credentials_get_an_access_token_shaped_as_isc_answers() {
    let h = pat_harness(720).await;
    let (status, body) = exchange(&h, &client_credentials(SECRET)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 720);
    let token = body["access_token"].as_str().expect("an access token");
    assert!(token.len() >= 32, "{token}");
    let r = h.raw(Method::GET, "/roles", Some(&format!("Bearer {token}")), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(h.stats().await["token_requests"], 1);
}

#[tokio::test]
async fn a_wrong_secret_or_grant_is_refused_and_counted() {
    let h = pat_harness(720).await;
    let (status, body) = exchange(&h, &client_credentials("wrong")).await;
    assert_eq!((status, &body["error"]), (401, &json!("invalid_client")), "{body}");
    let (status, body) = exchange(&h, &[("grant_type", "password"), ("client_id", CLIENT_ID)]).await;
    assert_eq!((status, &body["error"]), (400, &json!("unsupported_grant_type")), "{body}");
    let resp = h
        .client
        .post(format!("{}/oauth/token", h.root))
        .json(&json!({"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a JSON body is not form-encoded");
    let stats = h.stats().await;
    assert_eq!((stats["token_requests"].as_u64(), stats["token_refusals"].as_u64()), (Some(3), Some(1)), "{stats}");
}

#[tokio::test]
async fn an_access_token_is_refused_once_it_expires_and_the_static_token_keeps_working() {
    let h = pat_harness(1).await;
    let (_, body) = exchange(&h, &client_credentials(SECRET)).await;
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
    assert_eq!(h.raw(Method::GET, "/roles", Some(&auth), None).await.status, 200);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(h.raw(Method::GET, "/roles", Some(&auth), None).await.status, 401);
    assert_eq!(h.get("/roles").await.status, 200, "--token still works beside the PAT");
    let stats = h.stats().await;
    assert_eq!((stats["unauthorized"].as_u64(), stats["expired_tokens"].as_u64()), (Some(1), Some(1)), "{stats}");
}

#[tokio::test]
async fn a_rotated_secret_refuses_the_old_one_and_revoking_drops_issued_tokens() {
    let h = pat_harness(720).await;
    let (_, body) = exchange(&h, &client_credentials(SECRET)).await;
    let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
    h.configure(json!({"oauth": {"client_secret": "rotated"}})).await;
    assert_eq!(exchange(&h, &client_credentials(SECRET)).await.0, 401);
    assert_eq!(exchange(&h, &client_credentials("rotated")).await.0, 200);
    assert_eq!(h.raw(Method::GET, "/roles", Some(&auth), None).await.status, 200, "issued tokens live on");
    assert_eq!(h.sim_post("/oauth/revoke", json!({})).await.ok()["revoked"], 2);
    assert_eq!(h.raw(Method::GET, "/roles", Some(&auth), None).await.status, 401);
}

#[tokio::test]
async fn the_config_never_shows_the_client_secret() {
    let h = pat_harness(720).await;
    let cfg = h.sim(Method::GET, "/config", None).await.ok();
    assert_eq!(cfg["oauth"]["client_id"], CLIENT_ID);
    assert!(!cfg.to_string().contains(SECRET), "{cfg}");
}

#[tokio::test]
async fn scripted_faults_make_the_token_endpoint_fail_then_recover() {
    let h = pat_harness(720).await;
    let route = nerm_sim::oauth::TOKEN_ROUTE;
    h.configure(
        json!({"faults": {"script": [{"route": route, "fault": "error"}, {"route": route, "fault": "throttle"}]}}),
    )
    .await;
    assert_eq!(exchange(&h, &client_credentials(SECRET)).await.0, 503);
    assert_eq!(exchange(&h, &client_credentials(SECRET)).await.0, 429);
    assert_eq!(exchange(&h, &client_credentials(SECRET)).await.0, 200);
    assert_eq!(h.stats().await["faults"], json!({"token_error": 1, "token_throttle": 1}));
}

#[tokio::test]
async fn issued_tokens_share_their_clients_rate_limit() {
    let mut cfg = quiet_config();
    cfg.oauth = Some(OAuthClient { client_id: CLIENT_ID.into(), client_secret: SECRET.into(), token_lifetime_s: 60 });
    cfg.faults.rate_limit = Some(nerm_sim::RateLimit { requests: 2, per_seconds: 60 });
    let h = Harness::with(cfg, &Seed::demo()).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let (_, body) = exchange(&h, &client_credentials(SECRET)).await;
        let auth = format!("Bearer {}", body["access_token"].as_str().unwrap());
        statuses.push(h.raw(Method::GET, "/roles", Some(&auth), None).await.status);
    }
    assert_eq!(statuses, [200, 200, 429], "a fresh token does not buy a fresh bucket");
}
