//! The running simulator: shared state, the middleware that makes it realistic (auth, rate
//! limit, latency, faults, statistics), the `/_sim` inspection routes, and start-up.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::{Behaviour, CommitFailMode, FaultKind, RateLimit, SimConfig};
use crate::error::ApiError;
use crate::seed::Seed;
use crate::spec::Spec;
use crate::tenant::{BulkKind, LoginRequest, Tenant};

/// Counters a test or benchmark reads from `GET /_sim/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// `"GET /api/users"` style keys (route templates) → count of requests that reached auth.
    pub requests: BTreeMap<String, u64>,
    /// Answers by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// 429s sent by the token bucket.
    pub rate_limited: u64,
    /// Faults injected, by kind (`error`, `throttle`, `slow`, `drop`, `commit_then_fail`, `down`).
    pub faults: BTreeMap<String, u64>,
    /// Requests with a missing, unknown or expired token.
    pub unauthorized: u64,
    /// Of those, requests with an issued access token past its expiry.
    pub expired_tokens: u64,
    /// `POST /oauth/token` requests (PAT exchanges), each attempt counted.
    pub token_requests: u64,
    /// Exchanges refused for a wrong client id or secret.
    pub token_refusals: u64,
    /// Non-GET `/api` requests answered 2xx (or committed before a fault).
    pub writes: u64,
    pub total: u64,
    /// Bodies checked against the OpenAPI document (`spec_check`).
    pub spec_checked: u64,
    /// What did not match the document: `"POST /user request: /user/type: ..."` (first 200 kept).
    pub spec_violations: Vec<String>,
}

struct Limiter {
    config: RateLimit,
    limiter: DefaultKeyedRateLimiter<String>,
}

/// A queued bulk job waiting to run.
struct PendingJob {
    job_id: String,
    kind: BulkKind,
    items: Vec<Value>,
}

pub struct Sim {
    tenant: Mutex<Tenant>,
    config: RwLock<SimConfig>,
    stats: Mutex<Stats>,
    limiter: Mutex<Option<Limiter>>,
    rng: Mutex<StdRng>,
    pending_jobs: Mutex<Vec<PendingJob>>,
    spec: OnceLock<Spec>,
    /// Access tokens issued by `POST /oauth/token`.
    pub(crate) issued: crate::oauth::IssuedTokens,
}

impl Sim {
    pub fn new(config: SimConfig, seed: &Seed) -> Result<Arc<Sim>, String> {
        config.validate()?;
        let mut tenant = Tenant::default();
        seed.apply(&mut tenant, &config.behaviour)?;
        let rng = match config.faults.seed {
            Some(s) => StdRng::seed_from_u64(s),
            None => StdRng::from_os_rng(),
        };
        let sim = Sim {
            tenant: Mutex::new(tenant),
            limiter: Mutex::new(None),
            config: RwLock::new(config),
            stats: Mutex::new(Stats::default()),
            rng: Mutex::new(rng),
            pending_jobs: Mutex::new(Vec::new()),
            spec: OnceLock::new(),
            issued: Default::default(),
        };
        sim.rebuild_limiter();
        Ok(Arc::new(sim))
    }

    pub fn tenant(&self) -> MutexGuard<'_, Tenant> {
        self.tenant.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn config(&self) -> SimConfig {
        self.config.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn behaviour(&self) -> Behaviour {
        self.config.read().unwrap_or_else(|e| e.into_inner()).behaviour.clone()
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn bump(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    pub(crate) fn bump_fault(&self, kind: &str) {
        self.bump(|s| *s.faults.entry(kind.to_string()).or_default() += 1);
    }

    /// Replaces the config (validated) and resets the token bucket if its figures changed.
    pub fn set_config(&self, next: SimConfig) -> Result<(), String> {
        next.validate()?;
        let seed_changed = {
            let mut cfg = self.config.write().unwrap_or_else(|e| e.into_inner());
            let changed = cfg.faults.seed != next.faults.seed;
            *cfg = next;
            changed
        };
        if seed_changed && let Some(s) = self.config().faults.seed {
            *self.rng.lock().unwrap_or_else(|e| e.into_inner()) = StdRng::seed_from_u64(s);
        }
        self.rebuild_limiter();
        Ok(())
    }

    fn rebuild_limiter(&self) {
        let wanted = self.config().faults.rate_limit;
        let mut slot = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().map(|l| l.config) == wanted {
            return;
        }
        *slot = wanted.map(|rl| {
            let burst = NonZeroU32::new(rl.requests).expect("validated > 0");
            let period = Duration::from_secs(rl.per_seconds) / rl.requests;
            let quota = Quota::with_period(period).expect("non-zero period").allow_burst(burst);
            Limiter { config: rl, limiter: DefaultKeyedRateLimiter::keyed(quota) }
        });
    }

    /// `Some(retry_after_secs)` when `token` has spent its bucket.
    fn rate_limited(&self, token: &str) -> Option<u64> {
        let slot = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        let l = slot.as_ref()?;
        match l.limiter.check_key(&token.to_string()) {
            Ok(()) => None,
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                Some(wait.as_secs_f64().ceil().max(1.0) as u64)
            }
        }
    }

    /// Takes the first scripted fault for `route` out of the config.
    pub(crate) fn scripted_fault(&self, route: &str) -> Option<FaultKind> {
        let mut cfg = self.config.write().unwrap_or_else(|e| e.into_inner());
        let at = cfg.faults.script.iter().position(|s| s.route == route)?;
        Some(cfg.faults.script.remove(at).fault)
    }

    fn roll(&self, p: f64) -> bool {
        p > 0.0 && self.rng.lock().unwrap_or_else(|e| e.into_inner()).random_bool(p.min(1.0))
    }

    fn jitter(&self, max: u64) -> u64 {
        if max == 0 { 0 } else { self.rng.lock().unwrap_or_else(|e| e.into_inner()).random_range(0..=max) }
    }

    /// Queues a bulk body as a job and schedules it (docs/nerm-api.md, "Bulk writes and jobs").
    pub fn queue_job(self: &Arc<Self>, kind: BulkKind, items: Vec<Value>) -> String {
        let job_id = self.tenant().queue_job();
        self.pending_jobs.lock().unwrap_or_else(|e| e.into_inner()).push(PendingJob {
            job_id: job_id.clone(),
            kind,
            items,
        });
        let delay = self.behaviour().job_delay_ms;
        let sim = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            sim.run_jobs();
        });
        job_id
    }

    /// Runs every queued job now; returns how many ran.
    pub fn run_jobs(&self) -> usize {
        let jobs: Vec<PendingJob> = std::mem::take(&mut *self.pending_jobs.lock().unwrap_or_else(|e| e.into_inner()));
        let b = self.behaviour();
        let mut tenant = self.tenant();
        for job in &jobs {
            tenant.complete_job(&job.job_id, job.kind, &job.items, &b);
        }
        jobs.len()
    }

    /// Empties the tenant (and queued jobs), then applies `seed`.
    pub fn reset(&self, seed: &Seed) -> Result<(), String> {
        let mut fresh = Tenant::default();
        seed.apply(&mut fresh, &self.behaviour())?;
        self.pending_jobs.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.tenant() = fresh;
        Ok(())
    }
}

/// The token in `Authorization: Bearer <t>` or `Authorization: Token token=<t>` (docs/nerm-api.md, "Authentication").
pub fn bearer_token(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    // The scheme name is case-insensitive (RFC 9110 §11.1).
    let (scheme, rest) = raw.split_once(' ')?;
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim()
    } else if scheme.eq_ignore_ascii_case("token") {
        rest.trim().strip_prefix("token=")?.trim().trim_matches('"')
    } else {
        return None;
    };
    (!token.is_empty()).then(|| token.to_string())
}

/// Marks a [`dropped_connection`] so the statistics do not count it as an answer.
#[derive(Clone, Copy)]
struct Dropped;

/// A response whose body fails at once: hyper closes the connection without sending a byte.
pub(crate) fn dropped_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "simulated drop"))
    });
    let mut resp = Response::new(Body::from_stream(stream));
    resp.extensions_mut().insert(Dropped);
    resp
}

fn server_error(sim: &Sim) -> Response {
    let code = match sim.jitter(2) {
        0 => StatusCode::INTERNAL_SERVER_ERROR,
        1 => StatusCode::BAD_GATEWAY,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(json!({ "error": "Sorry something went wrong" }))).into_response()
}

/// Auth, rate limit, latency and faults for every `/api` route, then statistics.
///
/// The work runs in its own task: a client that gives up (timeout, reset) must not cancel a
/// write half-way, as a real server finishes it anyway.
async fn realism(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let route =
        req.extensions().get::<MatchedPath>().map_or_else(|| req.uri().path().to_string(), |m| m.as_str().to_string());
    let key = format!("{} {}", req.method(), route);
    let is_write = req.method() != Method::GET;
    let task = tokio::spawn(async move {
        let resp = realism_inner(&sim, req, next, &key, is_write).await;
        let status = resp.status().as_u16();
        let dropped = resp.extensions().get::<Dropped>().is_some();
        sim.bump(|s| {
            s.total += 1;
            *s.requests.entry(key).or_default() += 1;
            if !dropped {
                *s.statuses.entry(status).or_default() += 1;
                if is_write && resp.status().is_success() {
                    s.writes += 1;
                }
            }
        });
        resp
    });
    task.await.unwrap_or_else(|_| ApiError::Internal.into_response())
}

async fn realism_inner(sim: &Arc<Sim>, req: Request, next: Next, route: &str, is_write: bool) -> Response {
    let cfg = sim.config();
    let f = &cfg.faults;
    let delay = f.latency_ms + sim.jitter(f.latency_jitter_ms);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if f.down {
        sim.bump_fault("down");
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "Service Unavailable" }))).into_response();
    }
    let holder = match bearer_token(req.headers()).map(|t| crate::oauth::authorize(sim, &cfg, &t)) {
        Some(Ok(holder)) => holder,
        refused => {
            let expired = matches!(refused, Some(Err(crate::oauth::Refusal::Expired)));
            sim.bump(|s| {
                s.unauthorized += 1;
                s.expired_tokens += u64::from(expired);
            });
            return ApiError::Unauthorized.into_response();
        }
    };
    if let Some(retry_after_secs) = sim.rate_limited(&holder.rate_key()) {
        sim.bump(|s| s.rate_limited += 1);
        return too_many_requests(retry_after_secs, &cfg.behaviour);
    }
    // A scripted fault replaces the dice for this request.
    let forced = if f.script.is_empty() { None } else { sim.scripted_fault(route) };
    let hit = |kind: FaultKind, p: f64| forced.map_or_else(|| sim.roll(p), |k| k == kind);
    if hit(FaultKind::Throttle, f.throttle_rate) {
        sim.bump_fault("throttle");
        return too_many_requests(f.throttle_retry_after_secs, &cfg.behaviour);
    }
    if hit(FaultKind::Error, f.error_rate) {
        sim.bump_fault("error");
        return server_error(sim);
    }
    if hit(FaultKind::Drop, f.drop_rate) {
        sim.bump_fault("drop");
        return dropped_connection();
    }
    if hit(FaultKind::Slow, f.slow_rate) {
        sim.bump_fault("slow");
        tokio::time::sleep(Duration::from_millis(f.slow_ms)).await;
    }
    let commit_then_fail = is_write && hit(FaultKind::CommitThenFail, f.commit_then_fail_rate);
    let resp = next.run(req).await;
    if commit_then_fail && resp.status().is_success() {
        sim.bump_fault("commit_then_fail");
        sim.bump(|s| s.writes += 1);
        let reset = match f.commit_then_fail_mode {
            CommitFailMode::Error500 => false,
            CommitFailMode::Reset => true,
            CommitFailMode::Either => sim.roll(0.5),
        };
        return if reset { dropped_connection() } else { ApiError::Internal.into_response() };
    }
    resp
}

/// A 429 whose `Retry-After` is seconds, or an HTTP date that many seconds ahead
/// (`retry_after_http_date`).
fn too_many_requests(retry_after_secs: u64, b: &Behaviour) -> Response {
    let mut resp = ApiError::TooManyRequests { retry_after_secs }.into_response();
    if b.retry_after_http_date {
        let at = std::time::SystemTime::now() + Duration::from_secs(retry_after_secs);
        if let Ok(v) = header::HeaderValue::from_str(&httpdate::fmt_http_date(at)) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    resp
}

/// The `extra_fields` variant: every JSON answer of `/api` gains fields the spec does not
/// declare — at the top, in `_metadata`, and in every record (listed or single). It runs
/// outside the spec check, which so judges the answer as the simulator made it.
async fn variance(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    if !sim.behaviour().extra_fields || !resp.status().is_success() {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 256 * 1024 * 1024).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(Value::Object(mut top)) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    let extra = || json!({ "source": "tenant variant", "n": 1 });
    for (key, v) in top.iter_mut() {
        match v {
            Value::Object(m) if key == "_metadata" => {
                m.insert("x_cursor".into(), Value::Null);
            }
            Value::Object(m) => {
                m.insert("x_extra".into(), extra());
            }
            Value::Array(items) => {
                for m in items.iter_mut().filter_map(Value::as_object_mut) {
                    m.insert("x_extra".into(), extra());
                }
            }
            _ => {}
        }
    }
    top.insert("x_request_id".into(), json!(uuid::Uuid::new_v4().to_string()));
    let out = serde_json::to_vec(&Value::Object(top)).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(out))
}

/// The most spec violations kept in the stats (the count goes on).
const MAX_VIOLATIONS: usize = 200;

/// Checks the request and response bodies of every `/api` call against the OpenAPI document.
async fn spec_check(State(sim): State<Arc<Sim>>, req: Request, next: Next) -> Response {
    if !sim.config.read().unwrap_or_else(|e| e.into_inner()).spec_check {
        return next.run(req).await;
    }
    let spec = sim.spec.get_or_init(|| Spec::with_strictness(true)).clone();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let Some(template) = spec.route(&method, &path).map(str::to_string) else {
        return next.run(req).await;
    };
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024 * 1024).await else {
        return ApiError::bad_request("request body unreadable").into_response();
    };
    let mut problems = Vec::new();
    // Malformed JSON is the client's own test of the 400 path, not a shape to check.
    if let Ok(v) = body_json(&bytes)
        && let Err(errs) = spec.validate_request(&method, &template, &v)
    {
        problems.extend(errs.into_iter().map(|e| format!("{method} {template} request: {e}")));
    }
    let resp = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let (parts, body) = resp.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 256 * 1024 * 1024).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let status = parts.status.as_u16();
    let documented = spec.documented_statuses(&method, &template).iter().any(|s| s == &status.to_string());
    // Error statuses the document omits (401, 404, 429, ...) follow docs/nerm-api.md's assumptions instead.
    if documented || parts.status.is_success() {
        match body_json(&bytes) {
            Ok(v) => {
                if let Err(errs) = spec.validate_response(&method, &template, status, &v) {
                    problems.extend(errs.into_iter().map(|e| format!("{method} {template} {status} response: {e}")));
                }
            }
            Err(e) => problems.push(format!("{method} {template} {status} response is not JSON: {e}")),
        }
    }
    sim.bump(|s| {
        s.spec_checked += 1;
        for p in problems {
            if s.spec_violations.len() < MAX_VIOLATIONS {
                s.spec_violations.push(p);
            }
        }
    });
    Response::from_parts(parts, Body::from(bytes))
}

fn body_json(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) { Ok(Value::Null) } else { serde_json::from_slice(bytes) }
}

// ----- /_sim: inspection and test hooks (not part of NERM) ----------------------------------

fn admin_routes() -> Router<Arc<Sim>> {
    Router::new()
        .route("/health", get(|| async { Json(json!({ "ok": true })) }))
        .route("/state", get(dump_state))
        .route("/reset", post(reset))
        .route("/seed", post(seed))
        .route("/stats", get(get_stats))
        .route("/stats/reset", post(reset_stats))
        .route("/config", get(get_config).patch(patch_config))
        .route("/sso/login", post(sso_login))
        .route("/sso/daily_refresh", post(daily_refresh))
        .route("/idp/groups", post(set_idp_groups))
        .route("/jobs/run", post(run_jobs))
        .route("/oauth/revoke", post(revoke_tokens))
}

/// Forgets every access token issued (as deleting or rotating a PAT may): the next `/api`
/// request with one is answered 401.
async fn revoke_tokens(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({ "revoked": sim.revoke_tokens() }))
}

type AdminResult = Result<Json<Value>, (StatusCode, Json<Value>)>;

fn admin_err(msg: impl std::fmt::Display) -> (StatusCode, Json<Value>) {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg.to_string() })))
}

/// The full state, with hidden fields (passwords, role sources) visible for assertions.
async fn dump_state(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(serde_json::to_value(&*sim.tenant()).unwrap_or(Value::Null))
}

#[derive(serde::Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct ResetBody {
    /// `true`: start from nothing instead of the demo tenant.
    empty: bool,
}

async fn reset(State(sim): State<Arc<Sim>>, body: Option<Json<ResetBody>>) -> AdminResult {
    let empty = body.is_some_and(|b| b.0.empty);
    let seed = if empty { Seed::default() } else { Seed::demo() };
    sim.reset(&seed).map_err(admin_err)?;
    sim.bump(|s| *s = Stats::default());
    Ok(Json(json!({ "reset": true, "empty": empty })))
}

async fn seed(State(sim): State<Arc<Sim>>, Json(seed): Json<Seed>) -> AdminResult {
    let b = sim.behaviour();
    seed.apply(&mut sim.tenant(), &b).map_err(admin_err)?;
    Ok(Json(json!({ "seeded": true })))
}

async fn get_stats(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(serde_json::to_value(sim.stats()).unwrap_or(Value::Null))
}

async fn reset_stats(State(sim): State<Arc<Sim>>) -> Json<Value> {
    sim.bump(|s| *s = Stats::default());
    Json(json!({ "reset": true }))
}

async fn get_config(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let mut v = serde_json::to_value(sim.config()).unwrap_or(Value::Null);
    // Tokens are credentials: report how many, never which.
    v["tokens"] = json!(sim.config().tokens.len());
    if let Some(client) = v.get_mut("oauth").and_then(Value::as_object_mut) {
        client.insert("client_secret".into(), json!("***"));
    }
    Json(v)
}

async fn patch_config(State(sim): State<Arc<Sim>>, Json(patch): Json<Value>) -> AdminResult {
    let next = sim.config().merged(&patch).map_err(admin_err)?;
    sim.set_config(next).map_err(admin_err)?;
    Ok(get_config(State(sim)).await)
}

async fn sso_login(State(sim): State<Arc<Sim>>, Json(req): Json<LoginRequest>) -> AdminResult {
    let b = sim.behaviour();
    let user =
        sim.tenant().simulate_login(&req, &b).map_err(|e| (StatusCode::FORBIDDEN, Json(json!({ "error": e }))))?;
    Ok(Json(json!({ "user": user })))
}

async fn daily_refresh(State(sim): State<Arc<Sim>>) -> Json<Value> {
    let b = sim.behaviour();
    let removed = sim.tenant().daily_refresh(&b);
    Json(json!({ "removed_role_assignments": removed }))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct IdpGroups {
    login: String,
    groups: Vec<String>,
}

async fn set_idp_groups(State(sim): State<Arc<Sim>>, Json(body): Json<IdpGroups>) -> Json<Value> {
    sim.tenant().idp_directory.insert(crate::tenant::login_key(&body.login), body.groups);
    Json(json!({ "ok": true }))
}

async fn run_jobs(State(sim): State<Arc<Sim>>) -> Json<Value> {
    Json(json!({ "ran": sim.run_jobs() }))
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "The requested resource was not found" }))).into_response()
}

/// The whole HTTP surface: `/api/...` (NERM) and `/_sim/...` (test hooks).
pub fn router(sim: Arc<Sim>) -> Router {
    let api = crate::api::routes()
        .route_layer(middleware::from_fn_with_state(Arc::clone(&sim), spec_check))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&sim), variance))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&sim), realism));
    Router::new()
        .nest("/api", api)
        .nest("/_sim", admin_routes())
        .merge(crate::oauth::routes())
        .fallback(not_found)
        .with_state(sim)
}

/// A simulator listening on 127.0.0.1; dropping it (or [`Running::stop`]) shuts it down.
pub struct Running {
    pub addr: SocketAddr,
    pub sim: Arc<Sim>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// The NERM base URL, e.g. `http://127.0.0.1:4010/api`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }
    /// The ISC token URL for PAT exchanges, e.g. `http://127.0.0.1:4010/oauth/token`.
    pub fn token_url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }
    /// The server root, e.g. `http://127.0.0.1:4010`.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Starts a simulator on `127.0.0.1:port` (0 = a free port).
pub async fn start(config: SimConfig, seed: &Seed, port: u16) -> Result<Running, String> {
    let sim = Sim::new(config, seed)?;
    let listener =
        TcpListener::bind(("127.0.0.1", port)).await.map_err(|e| format!("cannot listen on port {port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (tx, rx) = oneshot::channel::<()>();
    let app = router(Arc::clone(&sim));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    Ok(Running { addr, sim, shutdown: Some(tx), task: Some(task) })
}
