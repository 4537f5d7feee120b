//! The ISC tenant's token endpoint, as NERM tenants created after June 2025 require it: a client
//! id and secret (a personal access token) exchanged at `POST /oauth/token` with the client
//! credentials grant, form-encoded, for an access token that `/api` accepts until it expires.
//!
//! Served on the simulator's own address beside `/api` (with its `latency_ms`); on when the config
//! has an `oauth` table (`--client-id`, `--client-secret`, `--token-lifetime-s`). The static
//! `tokens` keep working.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::FormRejection;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::{FaultKind, SimConfig};
use crate::error::ApiError;
use crate::server::{Sim, dropped_connection};

/// The route the scripted faults name to hit the token endpoint.
pub const TOKEN_ROUTE: &str = "POST /oauth/token";

/// The one API client the tenant knows (a PAT); rotate it with `PATCH /_sim/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    /// `expires_in` of every access token issued; ISC's are about 12 minutes.
    #[serde(default = "default_lifetime")]
    pub token_lifetime_s: u64,
}

fn default_lifetime() -> u64 {
    720
}

/// Whom a Bearer token on `/api` belongs to.
pub enum Holder {
    /// A static API token: the token itself keys the rate limit.
    Static(String),
    /// An access token issued to this client id: the client keys the rate limit, so fresh
    /// tokens do not buy a fresh bucket.
    Client(String),
}

impl Holder {
    pub fn rate_key(&self) -> String {
        match self {
            Holder::Static(t) => t.clone(),
            Holder::Client(id) => format!("client:{id}"),
        }
    }
}

/// Why a Bearer token was not accepted.
pub enum Refusal {
    Unknown,
    Expired,
}

struct Grant {
    client_id: String,
    expires: Instant,
}

/// The access tokens issued so far (expired ones are dropped as new ones are issued).
#[derive(Default)]
pub struct IssuedTokens(Mutex<HashMap<String, Grant>>);

impl IssuedTokens {
    fn issue(&self, client_id: &str, life: Duration) -> String {
        let token: String =
            rand::rng().sample_iter(rand::distr::Alphanumeric).take(40).map(char::from).collect::<String>();
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // Expired tokens are kept a while so a late request is told "expired", not "unknown".
        map.retain(|_, g| g.expires + Duration::from_secs(600) > now);
        map.insert(token.clone(), Grant { client_id: client_id.to_string(), expires: now + life });
        token
    }

    /// Forgets every issued token (as deleting the PAT does); answers how many.
    pub fn revoke_all(&self) -> usize {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.len();
        map.clear();
        n
    }

    fn check(&self, token: &str) -> Result<String, Refusal> {
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(token) {
            Some(g) if Instant::now() < g.expires => Ok(g.client_id.clone()),
            Some(_) => Err(Refusal::Expired),
            None => Err(Refusal::Unknown),
        }
    }
}

/// Who holds `token`: a static token from the config, or an unexpired issued one.
pub fn authorize(sim: &Sim, cfg: &SimConfig, token: &str) -> Result<Holder, Refusal> {
    if cfg.tokens.iter().any(|t| t == token) {
        return Ok(Holder::Static(token.to_string()));
    }
    sim.issued.check(token).map(Holder::Client)
}

pub fn routes() -> Router<Arc<Sim>> {
    Router::new().route("/oauth/token", post(token))
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (status, Json(json!({ "error": error, "error_description": description }))).into_response()
}

async fn token(State(sim): State<Arc<Sim>>, form: Result<Form<TokenRequest>, FormRejection>) -> Response {
    sim.bump(|s| s.token_requests += 1);
    let cfg = sim.config();
    let Some(client) = cfg.oauth.clone() else {
        return (StatusCode::NOT_FOUND, Json(json!({ "error": "no OAuth client is configured" }))).into_response();
    };
    if cfg.faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(cfg.faults.latency_ms)).await;
    }
    if let Some(resp) = injected_fault(&sim, &cfg) {
        return resp;
    }
    let Ok(Form(req)) = form else {
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "expected a form-encoded body");
    };
    if req.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "use client_credentials");
    }
    if req.client_id.as_deref() != Some(client.client_id.as_str())
        || req.client_secret.as_deref() != Some(client.client_secret.as_str())
    {
        sim.bump(|s| s.token_refusals += 1);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Bad credentials");
    }
    let access_token = sim.issued.issue(&client.client_id, Duration::from_secs(client.token_lifetime_s));
    let answer = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": client.token_lifetime_s,
        "scope": "sp:scopes:all",
        "jti": uuid::Uuid::new_v4().to_string(),
    });
    Json(answer).into_response()
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "Service Unavailable" }))).into_response()
}

/// The simulator being down, or a scripted fault for [`TOKEN_ROUTE`] (counted in the stats'
/// `faults` as `token_down`, `token_error`, `token_throttle`, `token_drop`).
fn injected_fault(sim: &Sim, cfg: &SimConfig) -> Option<Response> {
    if cfg.faults.down {
        sim.bump_fault("token_down");
        return Some(unavailable());
    }
    let fault = if cfg.faults.script.is_empty() { None } else { sim.scripted_fault(TOKEN_ROUTE) }?;
    let (kind, resp) = match fault {
        FaultKind::Error => ("token_error", unavailable()),
        FaultKind::Throttle => (
            "token_throttle",
            ApiError::TooManyRequests { retry_after_secs: cfg.faults.throttle_retry_after_secs }.into_response(),
        ),
        FaultKind::Drop => ("token_drop", dropped_connection()),
        FaultKind::None | FaultKind::Slow | FaultKind::CommitThenFail => return None,
    };
    sim.bump_fault(kind);
    Some(resp)
}

impl Sim {
    /// Forgets every access token issued (as deleting or rotating a PAT may); answers how many.
    pub fn revoke_tokens(&self) -> usize {
        self.issued.revoke_all()
    }

    /// Every access token issued and not yet revoked (for tests that check none leaked).
    pub fn issued_tokens(&self) -> Vec<String> {
        self.issued.0.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect()
    }
}
