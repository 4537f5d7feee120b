//! The only code that speaks HTTP to NERM: envelopes, paging, pacing, retries, token refresh.
//!
//! Pacing: a client-side token bucket set to the NERM limit, plus a shared pause when NERM
//! answers 429 with `Retry-After`. Retries: 429 always (nothing was applied); 5xx, timeouts and
//! resets only for idempotent calls (GET, PATCH, DELETE) — a create that got no clear answer is
//! returned as [`NermError::Ambiguous`] so the caller looks the record up instead of creating
//! it twice (docs/nerm-api.md, "Bulk writes and jobs").

use std::collections::{BTreeMap, HashSet};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota};
use rand::Rng;
use reqwest::{Method, StatusCode, Url};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::NermError;
use super::model::*;
use super::token::{SecretToken, TokenProvider};
use super::write::{BulkAnswer, Collection, Listing, Write, WriteKind};

/// Bulk bodies start at this many records (the limit practitioners report; the spec states none).
pub const BULK_MAX: usize = 100;

/// How the client paces and retries; the engine fills it from the mapping config's `[nerm]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Requests allowed per `window` (NERM/ISC figure: 100 per 10 s).
    pub requests_per_window: u32,
    pub window: Duration,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Retries per call on 429/5xx/transport errors.
    pub max_retries: u32,
    /// Retries allowed across the whole run, so a sick NERM is not hammered.
    pub retry_budget: u32,
    /// Page size for list reads (at most 500: docs/nerm-api.md, "Limits").
    pub page_size: u32,
    /// First backoff step; doubles per attempt, with full jitter, capped at `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
    /// How long to wait for a bulk job to complete.
    pub job_timeout: Duration,
    /// The wait between a bulk call answered with a job and its first `GET /job_status`; it
    /// doubles after each poll that finds the job unfinished, up to `job_poll_max_delay`. A job
    /// never completes within its own answer, so polling at once would only spend the budget.
    pub job_poll_delay: Duration,
    pub job_poll_max_delay: Duration,
}

impl ClientOptions {
    /// The mapping config's `[nerm]` table, everything else at its default.
    pub fn from_mapping(n: &crate::config::NermConfig) -> ClientOptions {
        ClientOptions {
            requests_per_window: n.requests_per_window,
            window: n.window(),
            timeout: n.timeout(),
            max_retries: n.max_retries,
            retry_budget: n.retry_budget,
            page_size: n.page_size,
            ..ClientOptions::default()
        }
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            requests_per_window: 100,
            window: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            max_retries: 6,
            retry_budget: 1000,
            page_size: 500,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            job_timeout: Duration::from_secs(300),
            job_poll_delay: Duration::from_millis(250),
            job_poll_max_delay: Duration::from_secs(5),
        }
    }
}

/// What the client did, for the run report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ClientStats {
    /// `"GET /users"` → requests sent (each attempt counts).
    pub requests: BTreeMap<String, u64>,
    pub rate_limited: u64,
    pub retries: u64,
    pub server_errors: u64,
    pub transport_errors: u64,
    pub token_refreshes: u64,
}

impl ClientStats {
    pub fn total_requests(&self) -> u64 {
        self.requests.values().sum()
    }
    /// What happened after `earlier` was taken (one client serves several messages).
    pub fn since(&self, earlier: &ClientStats) -> ClientStats {
        let mut requests = self.requests.clone();
        for (k, v) in &earlier.requests {
            if let Some(n) = requests.get_mut(k) {
                *n = n.saturating_sub(*v);
            }
        }
        requests.retain(|_, n| *n > 0);
        ClientStats {
            requests,
            rate_limited: self.rate_limited.saturating_sub(earlier.rate_limited),
            retries: self.retries.saturating_sub(earlier.retries),
            server_errors: self.server_errors.saturating_sub(earlier.server_errors),
            transport_errors: self.transport_errors.saturating_sub(earlier.transport_errors),
            token_refreshes: self.token_refreshes.saturating_sub(earlier.token_refreshes),
        }
    }

    /// Requests other than GET.
    pub fn writes(&self) -> u64 {
        self.requests.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, v)| v).sum()
    }
}

/// What one full page of a list said about paging ([`NermClient::page_probe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageProbe {
    /// The page size asked for (the configured one).
    pub asked: u32,
    /// The records the page held.
    pub served: usize,
    /// The page's `_metadata.total`, if the server sent one.
    pub total: Option<u64>,
}

impl PageProbe {
    /// Whether the server served fewer records than asked although it holds more: it clamps
    /// `limit` to a smaller page.
    pub fn clamped(&self) -> bool {
        self.served > 0 && self.served < self.asked as usize && self.total.is_some_and(|t| t > self.served as u64)
    }

    /// The records each page of a full read holds: the served size when the server clamps,
    /// otherwise the asked one.
    pub fn page_size(&self) -> u32 {
        if self.clamped() { u32::try_from(self.served).unwrap_or(self.asked) } else { self.asked }
    }
}

pub struct NermClient {
    http: reqwest::Client,
    base: Url,
    tokens: Arc<dyn TokenProvider>,
    limiter: DefaultDirectRateLimiter,
    opts: ClientOptions,
    budget: AtomicI64,
    pause_until: Mutex<Option<Instant>>,
    stats: Mutex<ClientStats>,
    /// Warnings about list records that could not be read (skipped, see `readable`).
    unreadable: Mutex<Vec<String>>,
    /// The largest page the server has served (0: none yet), at most `page_size`.
    served_page: AtomicU32,
    /// The largest bulk body NERM is known to take; it shrinks when a bulk body is refused for
    /// its size and stays shrunk for the client's life (a Lambda instance keeps its client).
    bulk_size: AtomicUsize,
    /// Whether NERM has taken a body of the current `bulk_size` (until then, a caller sends one
    /// full body before several at once, so a too-large size costs one refusal, not one per body).
    bulk_size_proven: AtomicBool,
}

/// Checks the base URL: https, or plain http only to a loopback host (tests, the simulator).
pub fn check_base_url(raw: &str) -> Result<Url, NermError> {
    let mut url =
        Url::parse(raw.trim()).map_err(|e| NermError::Setup(format!("NERM base URL {raw:?} is invalid: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if super::auth::is_loopback(&url) => {}
        other => {
            return Err(NermError::Setup(format!(
                "NERM base URL must use https (plain http is allowed only for loopback hosts), got {other}://"
            )));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(NermError::Setup("NERM base URL must not carry credentials".into()));
    }
    if !url.path().ends_with('/') {
        let p = format!("{}/", url.path());
        url.set_path(&p);
    }
    Ok(url)
}

/// One paged read in progress, with the guards that keep paging honest: every page must bring
/// records not seen before, and no read takes more pages than its total allows.
struct PageWalk<'r> {
    route: &'r str,
    /// Records the server has answered so far (duplicates included): the next offset.
    read: u64,
    pages: u64,
    /// The latest `_metadata.total`, if the server sent one.
    total: Option<u64>,
    seen: HashSet<String>,
}

impl<'r> PageWalk<'r> {
    fn new(route: &'r str) -> Self {
        PageWalk { route, read: 0, pages: 0, total: None, seen: HashSet::new() }
    }

    /// Takes one page: drops records already read (offsets can shift when records are added
    /// meanwhile) and fails when a page brings nothing new or paging outruns the total.
    fn take(&mut self, page: Vec<Value>, total: Option<u64>) -> Result<Vec<Value>, NermError> {
        self.pages += 1;
        self.total = total.or(self.total);
        if page.is_empty() {
            return Ok(page);
        }
        self.read += page.len() as u64;
        let before = self.seen.len();
        let fresh: Vec<Value> = page
            .into_iter()
            .filter(|r| match r.get("id").and_then(Value::as_str) {
                Some(id) => self.seen.insert(id.to_string()),
                None => true,
            })
            .collect();
        if fresh.is_empty() && before > 0 {
            return Err(self.stuck(format!("page {} repeated records already read", self.pages)));
        }
        if let Some(t) = self.total
            && self.pages > t + 1
        {
            return Err(self.stuck(format!("{} pages read for a total of {t} records", self.pages)));
        }
        Ok(fresh)
    }

    /// Whether the read is complete after a page of `n` records.
    fn finished(&self, n: usize) -> bool {
        n == 0 || self.total.is_some_and(|t| self.read >= t)
    }

    /// Whether the server's own total says records are still missing.
    fn known_short(&self) -> bool {
        self.total.is_some_and(|t| (self.seen.len() as u64) < t)
    }

    fn stuck(&self, detail: String) -> NermError {
        NermError::Protocol {
            route: format!("GET {}", self.route),
            detail: format!("paging does not advance ({detail}); stopped rather than loop or miss records"),
        }
    }
}

/// One call's request, as sent on every attempt.
#[derive(Clone, Copy)]
struct Outgoing<'a> {
    method: &'a Method,
    path: &'a str,
    query: &'a [(&'a str, String)],
    body: Option<&'a Value>,
    /// `"GET /users"`: errors and statistics.
    label: &'a str,
}

enum Attempt {
    Done(Value),
    Retry { cause: String, wait: Option<Duration> },
    Fail(NermError),
}

impl NermClient {
    pub fn new(base_url: &str, tokens: Arc<dyn TokenProvider>, opts: ClientOptions) -> Result<Self, NermError> {
        let base = check_base_url(base_url)?;
        if opts.requests_per_window == 0 || opts.window.is_zero() || opts.page_size == 0 {
            return Err(NermError::Setup("rate limit and page size must be positive".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("nerm-employee-sync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| NermError::Setup(format!("cannot build the HTTP client: {e}")))?;
        let burst = NonZeroU32::new(opts.requests_per_window).expect("checked above");
        let quota = Quota::with_period(opts.window / opts.requests_per_window)
            .ok_or_else(|| NermError::Setup("rate limit period too small".into()))?
            .allow_burst(burst);
        Ok(NermClient {
            http,
            base,
            tokens,
            limiter: DefaultDirectRateLimiter::direct(quota),
            budget: AtomicI64::new(i64::from(opts.retry_budget)),
            opts,
            pause_until: Mutex::new(None),
            stats: Mutex::new(ClientStats::default()),
            unreadable: Mutex::new(Vec::new()),
            served_page: AtomicU32::new(0),
            bulk_size: AtomicUsize::new(BULK_MAX),
            bulk_size_proven: AtomicBool::new(false),
        })
    }

    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    /// How many records a bulk body may hold: [`BULK_MAX`] until NERM refused a body for its size.
    pub fn bulk_size(&self) -> usize {
        self.bulk_size.load(Ordering::Relaxed)
    }

    /// Whether NERM has taken a full body of the current [`bulk_size`](Self::bulk_size).
    pub fn bulk_size_proven(&self) -> bool {
        self.bulk_size_proven.load(Ordering::Relaxed)
    }

    /// Keeps later bulk bodies at `size` records or fewer (never below one).
    pub fn shrink_bulk_size(&self, size: usize) {
        let before = self.bulk_size.fetch_min(size.max(1), Ordering::Relaxed);
        if size < before {
            tracing::info!(
                from = before,
                to = size.max(1),
                "NERM refused a bulk body for its size; sending smaller ones"
            );
        }
    }

    pub fn stats(&self) -> ClientStats {
        self.stats.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Starts a new run on a client kept across runs: its request statistics, retry budget and
    /// unreadable-record warnings start afresh (they are per run), while what it learned of the
    /// tenant (rate limiter state, pause, page and bulk sizes) is kept.
    pub fn begin_run(&self) {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner()) = ClientStats::default();
        self.budget.store(i64::from(self.opts.retry_budget), Ordering::SeqCst);
        self.unreadable.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn bump(&self, f: impl FnOnce(&mut ClientStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.opts.base_backoff.saturating_mul(1u32 << attempt.min(16)).min(self.opts.max_backoff);
        let ms = rand::rng().random_range(0..=cap.as_millis().max(1) as u64);
        Duration::from_millis(ms)
    }

    async fn wait_turn(&self) {
        loop {
            let pause = *self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
            match pause {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t.into()).await,
                _ => break,
            }
        }
        self.limiter.until_ready().await;
    }

    /// One API call with pacing, retries and token refreshes on 401.
    /// `route` is the path template used in errors and statistics, e.g. `/users/{id}`.
    async fn call(
        &self,
        method: Method,
        path: &str,
        route: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> Result<Value, NermError> {
        let label = format!("{method} {route}");
        let outgoing = Outgoing { method: &method, path, query, body, label: &label };
        let mut refusals = 0u32;
        let mut attempt: u32 = 0;
        loop {
            self.wait_turn().await;
            let outcome = match self.tokens.token().await {
                Ok(token) => self.send(&outgoing, &token, &mut refusals).await?,
                // The token endpoint's 429/5xx: retried like NERM's own, inside the same budget.
                Err(NermError::TokenUnavailable { cause, retry_after, .. }) => {
                    Attempt::Retry { cause: format!("no access token: {cause}"), wait: retry_after }
                }
                Err(e) => return Err(e),
            };
            match outcome {
                Attempt::Done(v) => return Ok(v),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry { cause, wait } => {
                    attempt += 1;
                    if attempt > self.opts.max_retries || self.budget.fetch_sub(1, Ordering::SeqCst) <= 0 {
                        return Err(NermError::GaveUp { route: label, attempts: attempt, cause });
                    }
                    self.bump(|s| s.retries += 1);
                    let wait = wait.unwrap_or_else(|| self.backoff(attempt));
                    tracing::debug!(route = %label, attempt, wait_ms = wait.as_millis() as u64, %cause, "retrying NERM call");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Sends one attempt of a call with `token`, and reads the answer.
    async fn send(&self, out: &Outgoing<'_>, token: &SecretToken, refusals: &mut u32) -> Result<Attempt, NermError> {
        let Outgoing { method, path, query, body, label } = *out;
        let idempotent = *method != Method::POST;
        let mut url = self.base.join(path.trim_start_matches('/')).map_err(|e| NermError::Setup(e.to_string()))?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(token.expose())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        self.bump(|s| *s.requests.entry(label.to_string()).or_default() += 1);
        Ok(match req.send().await {
            Ok(resp) if resp.status() == StatusCode::UNAUTHORIZED => self.unauthorized(label, token, refusals),
            Ok(resp) => self.read(resp, label, idempotent).await,
            Err(e) => {
                self.bump(|s| s.transport_errors += 1);
                let cause = describe_transport(&e);
                // A connection never made means nothing was sent: safe to retry any call.
                if idempotent || e.is_connect() {
                    Attempt::Retry { cause, wait: None }
                } else {
                    Attempt::Fail(NermError::Ambiguous { route: label.to_string(), cause, timed_out: e.is_timeout() })
                }
            }
        })
    }

    /// A 401: the token is refreshed at once; a second 401 re-reads the credentials (they may
    /// have rotated); a third fails the call.
    fn unauthorized(&self, label: &str, token: &SecretToken, refusals: &mut u32) -> Attempt {
        *refusals += 1;
        if *refusals > 2 {
            return Attempt::Fail(NermError::Unauthorized { route: label.to_string() });
        }
        self.bump(|s| s.token_refreshes += 1);
        self.tokens.refused(token, *refusals == 2);
        Attempt::Retry { cause: "401, token refreshed".into(), wait: Some(Duration::ZERO) }
    }

    async fn read(&self, resp: reqwest::Response, label: &str, idempotent: bool) -> Attempt {
        let status = resp.status();
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.bump(|s| s.rate_limited += 1);
            let wait = retry_after(resp.headers()).map(|d| d + self.backoff(0) / 4);
            if let Some(w) = wait {
                let until = Instant::now() + w;
                let mut p = self.pause_until.lock().unwrap_or_else(|e| e.into_inner());
                if p.is_none_or(|t| t < until) {
                    *p = Some(until);
                }
            }
            return Attempt::Retry { cause: "429 Too Many Requests".into(), wait };
        }
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                self.bump(|s| s.transport_errors += 1);
                let cause = format!("response body lost: {}", describe_transport(&e));
                return if idempotent {
                    Attempt::Retry { cause, wait: None }
                } else {
                    Attempt::Fail(NermError::Ambiguous { route: label.to_string(), cause, timed_out: e.is_timeout() })
                };
            }
        };
        if status.is_server_error() {
            self.bump(|s| s.server_errors += 1);
            let cause = format!("{} {}", status.as_u16(), error_message(&bytes));
            return if idempotent {
                Attempt::Retry { cause, wait: None }
            } else {
                Attempt::Fail(NermError::Ambiguous { route: label.to_string(), cause, timed_out: false })
            };
        }
        if status.is_success() {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Attempt::Done(Value::Null);
            }
            return match serde_json::from_slice(&bytes) {
                Ok(v) => Attempt::Done(v),
                Err(e) => Attempt::Fail(NermError::Protocol {
                    route: label.to_string(),
                    detail: format!("invalid JSON: {e}"),
                }),
            };
        }
        if status == StatusCode::NOT_FOUND {
            return Attempt::Fail(NermError::NotFound { route: label.to_string() });
        }
        let (message, fields) = error_body(&bytes);
        Attempt::Fail(NermError::Rejected { route: label.to_string(), status: status.as_u16(), message, fields })
    }

    // ----- generic envelope helpers --------------------------------------------------------

    fn unwrap<T: DeserializeOwned>(v: Value, key: &str, route: &str) -> Result<T, NermError> {
        let inner = match v {
            Value::Object(mut m) => m.remove(key),
            _ => None,
        }
        .ok_or_else(|| NermError::Protocol { route: route.to_string(), detail: format!("no {key:?} in the answer") })?;
        serde_json::from_value(inner)
            .map_err(|e| NermError::Protocol { route: route.to_string(), detail: format!("{key}: {e}") })
    }

    /// How many records a listing holds (`_metadata.total` of a one-record page).
    pub async fn count(&self, listing: &Listing) -> Result<u64, NermError> {
        let route = listing.collection.route();
        let mut q = listing.filters.clone();
        q.push(("limit", "1".into()));
        q.push(("metadata", "true".into()));
        let v = self.call(Method::GET, route, route, &q, None).await?;
        v.get("_metadata").and_then(|m| m.get("total")).and_then(Value::as_u64).ok_or_else(|| NermError::Protocol {
            route: format!("GET {route}"),
            detail: "no _metadata.total in the answer".into(),
        })
    }

    /// One page of a listing at the configured page size, read only for what it says about
    /// paging: how many records the server served, and its `_metadata.total`. Profiles are
    /// asked for as their keyset read asks, with a blank first `after_id`.
    pub async fn page_probe(&self, listing: &Listing) -> Result<PageProbe, NermError> {
        let (route, plural) = (listing.collection.route(), listing.collection.name());
        let mut q = listing.filters.clone();
        if listing.collection == Collection::Profiles {
            q.push(("after_id", String::new()));
        }
        q.push(("limit", self.opts.page_size.to_string()));
        q.push(("metadata", "true".into()));
        let v = self.call(Method::GET, route, route, &q, None).await?;
        let total = v.get("_metadata").and_then(|m| m.get("total")).and_then(Value::as_u64);
        let served = Self::records(v, plural, route)?.len();
        self.note_page_size(served);
        Ok(PageProbe { asked: self.opts.page_size, served, total })
    }

    /// Every record of a list endpoint, read with offset paging. The server may clamp `limit`
    /// to a smaller page than asked for, so paging goes on until `_metadata.total` records have
    /// been read (or a page comes back empty), and each offset is what was actually read. The
    /// first page carries no `offset` at all: the docs call 0 the first page while the spec
    /// says `minimum: 1`, and leaving it out satisfies both.
    async fn list_all<T: DeserializeOwned>(
        &self,
        route: &str,
        plural: &str,
        filters: &[(&str, String)],
    ) -> Result<Vec<T>, NermError> {
        let mut walk = PageWalk::new(route);
        let mut out = Vec::new();
        loop {
            let mut q: Vec<(&str, String)> = filters.to_vec();
            q.push(("limit", self.opts.page_size.to_string()));
            if walk.read > 0 {
                q.push(("offset", walk.read.to_string()));
            }
            q.push(("metadata", "true".into()));
            let v = self.call(Method::GET, route, route, &q, None).await?;
            let total = v.get("_metadata").and_then(|m| m.get("total")).and_then(Value::as_u64);
            let page = Self::records(v, plural, route)?;
            let n = page.len();
            self.note_page_size(n);
            let fresh = walk.take(page, total)?;
            out.extend(self.readable(fresh, route));
            if walk.finished(n) {
                return Ok(out);
            }
        }
    }

    /// All profiles of one type by keyset paging: the next page starts after the
    /// `_metadata.after_id` the server names (the last id read when it names none). Paging ends
    /// on an empty page, a null `after_id`, or once `_metadata.total` profiles are read — never
    /// on a short page, as the server may clamp `limit`. A 400 after the first page is the
    /// legacy end-of-data answer only when nothing is known to be missing.
    pub async fn list_profiles_of_type(&self, profile_type_id: &str) -> Result<Vec<Profile>, NermError> {
        let mut walk = PageWalk::new("/profiles");
        let mut out: Vec<Profile> = Vec::new();
        let mut after = String::new();
        loop {
            let q = vec![
                ("profile_type_id", profile_type_id.to_string()),
                ("limit", self.opts.page_size.to_string()),
                ("metadata", "true".to_string()),
                ("after_id", after.clone()),
            ];
            let v = match self.call(Method::GET, "/profiles", "/profiles", &q, None).await {
                Ok(v) => v,
                Err(NermError::Rejected { status: 400, .. }) if walk.pages > 0 && !walk.known_short() => {
                    return Ok(out);
                }
                Err(e) => return Err(e),
            };
            let meta = v.get("_metadata");
            let total = meta.and_then(|m| m.get("total")).and_then(Value::as_u64);
            let next = match meta.and_then(|m| m.get("after_id")) {
                Some(Value::String(id)) => Some(Some(id.clone())),
                Some(Value::Null) => Some(None),
                _ => None,
            };
            let page = Self::records(v, "profiles", "/profiles")?;
            let n = page.len();
            self.note_page_size(n);
            let last = page.last().and_then(|p| p.get("id")).and_then(Value::as_str).map(String::from);
            let fresh = walk.take(page, total)?;
            out.extend(self.readable(fresh, "/profiles"));
            let Some(next) = next.unwrap_or(last) else { return Ok(out) };
            if walk.finished(n) {
                return Ok(out);
            }
            if next == after {
                return Err(walk.stuck(format!("after_id {next} was answered with itself as the next after_id")));
            }
            after = next;
        }
    }

    /// The list under `plural` in a page, as raw records (each is read on its own, see
    /// [`NermClient::readable`]).
    fn records(v: Value, plural: &str, route: &str) -> Result<Vec<Value>, NermError> {
        Self::unwrap(v, plural, route)
    }

    /// The records that read as `T`; one that does not is skipped and remembered as a warning
    /// for the run's summary ([`NermClient::take_unreadable`]), so one odd record does not stop
    /// a run.
    fn readable<T: DeserializeOwned>(&self, records: Vec<Value>, route: &str) -> Vec<T> {
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let id = r.get("id").map(|v| v.to_string()).unwrap_or_else(|| "without an id".into());
            match serde_json::from_value(r) {
                Ok(t) => out.push(t),
                Err(e) => {
                    let warning = format!("skipped a record of GET {route} ({id}) that could not be read: {e}");
                    tracing::warn!("{warning}");
                    self.unreadable.lock().unwrap_or_else(|e| e.into_inner()).push(warning);
                }
            }
        }
        out
    }

    /// The warnings about records skipped since the last call (see [`NermClient::readable`]).
    pub fn take_unreadable(&self) -> Vec<String> {
        std::mem::take(&mut *self.unreadable.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Remembers a page larger than any seen so far, up to the asked size: the page size the
    /// server really serves, for estimates of how many pages a scan costs.
    fn note_page_size(&self, n: usize) {
        let n = u32::try_from(n).unwrap_or(u32::MAX).min(self.opts.page_size);
        self.served_page.fetch_max(n, Ordering::Relaxed);
    }

    /// The page size reads really get: the configured one until a page showed the server
    /// clamps it.
    pub fn page_size(&self) -> u32 {
        match self.served_page.load(Ordering::Relaxed) {
            0 => self.opts.page_size,
            n => n,
        }
    }

    // ----- reads ---------------------------------------------------------------------------

    pub async fn users(&self) -> Result<Vec<User>, NermError> {
        self.list_all("/users", "users", &[]).await
    }

    /// The idempotency lookup: 0 rows absent, 1 the match (docs/nerm-api.md, "Endpoints used").
    pub async fn user_by_login(&self, login: &str) -> Result<Option<User>, NermError> {
        let q = [("login", login.to_string())];
        let v = self.call(Method::GET, "/users", "/users", &q, None).await?;
        let users: Vec<User> = self.readable(Self::records(v, "users", "/users")?, "/users");
        // The filter may be exact or not; logins are compared as everywhere else (`crate::login`).
        let wanted = crate::login::LoginKey::of(login);
        Ok(users.into_iter().find(|u| crate::login::LoginKey::of(&u.login) == wanted))
    }

    pub async fn roles(&self) -> Result<Vec<Role>, NermError> {
        self.list_all("/roles", "roles", &[]).await
    }

    /// The roles of one type. `GET /roles` does not say a role's type, but filters on it
    /// (docs/nerm-api.md, "Records and their values").
    pub async fn roles_of_type(&self, kind: RoleKind) -> Result<Vec<Role>, NermError> {
        let name = match kind {
            RoleKind::Lifecycle => "NeprofileRole",
            RoleKind::Portal => "NeaccessRole",
        };
        self.list_all("/roles", "roles", &[("type", name.into())]).await
    }

    pub async fn profile_types(&self) -> Result<Vec<ProfileType>, NermError> {
        self.list_all("/profile_types", "profile_types", &[]).await
    }

    pub async fn attributes(&self) -> Result<Vec<Attribute>, NermError> {
        self.list_all("/ne_attributes", "ne_attributes", &[]).await
    }

    pub async fn user_roles(&self) -> Result<Vec<UserRole>, NermError> {
        self.list_all("/user_roles", "user_roles", &[]).await
    }

    pub async fn user_profiles(&self) -> Result<Vec<UserProfile>, NermError> {
        self.list_all("/user_profiles", "user_profiles", &[]).await
    }

    pub async fn user_managers(&self) -> Result<Vec<UserManager>, NermError> {
        self.list_all("/user_managers", "user_managers", &[]).await
    }

    // ----- single writes -------------------------------------------------------------------

    pub async fn delete_user_role(&self, id: &str) -> Result<(), NermError> {
        match self.call(Method::DELETE, &format!("/user_role/{id}"), "/user_role/{id}", &[], None).await {
            // Already gone (e.g. a retried delete that had been applied): the goal is met.
            Ok(_) | Err(NermError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    pub async fn user_profiles_of(&self, profile_id: &str) -> Result<Vec<UserProfile>, NermError> {
        self.list_all("/user_profiles", "user_profiles", &[("profile_id", profile_id.to_string())]).await
    }

    pub async fn patch_user_manager(&self, id: &str, manager_id: &str) -> Result<UserManager, NermError> {
        let body = json!({ "user_manager": { "manager_id": manager_id } });
        let v =
            self.call(Method::PATCH, &format!("/user_managers/{id}"), "/user_managers/{id}", &[], Some(&body)).await?;
        Self::unwrap(v, "user_manager", "/user_managers/{id}")
    }

    pub async fn user_managers_of(&self, user_id: &str) -> Result<Vec<UserManager>, NermError> {
        self.list_all("/user_managers", "user_managers", &[("user_id", user_id.to_string())]).await
    }

    pub async fn user_roles_of(&self, user_id: &str) -> Result<Vec<UserRole>, NermError> {
        self.list_all("/user_roles", "user_roles", &[("user_id", user_id.to_string())]).await
    }

    /// One record written on its own: a create is `POST /user` (and so on), a patch
    /// `PATCH /users/{id}`, each with `{singular: record}`. Answers the written record's id; a
    /// patch that changed nothing may be answered without the record ("200 – No Change" in
    /// some shape), which is success all the same, with no id to read.
    pub async fn write_one(&self, write: &Write) -> Result<Option<String>, NermError> {
        let collection = write.kind().collection();
        let singular = collection.singular();
        let body = json!({ singular: write.single_body() });
        let v = match write.patched_id() {
            Some(id) => {
                let (route, path) = (format!("{}/{{id}}", collection.route()), format!("{}/{id}", collection.route()));
                self.call(Method::PATCH, &path, &route, &[], Some(&body)).await?
            }
            None => {
                self.call(Method::POST, collection.single_route(), collection.single_route(), &[], Some(&body)).await?
            }
        };
        Ok(v.get(singular).and_then(|r| r.get("id")).and_then(Value::as_str).map(String::from))
    }

    /// A bulk POST (creates) or PATCH (patches) of writes of one `kind`; answers the records
    /// that name themselves, or a job id (docs/nerm-api.md, "Bulk writes and jobs"). A bulk
    /// create is not idempotent: on `Ambiguous` the caller looks its records up.
    /// `key_attribute` is the profiles' unique attribute, which names an answered profile.
    pub async fn write_bulk(
        &self,
        kind: WriteKind,
        writes: &[&Write],
        key_attribute: &str,
    ) -> Result<BulkAnswer, NermError> {
        let (route, plural) = (kind.collection().route(), kind.collection().name());
        let method = if kind.is_patch() { Method::PATCH } else { Method::POST };
        let records: Vec<Value> = writes.iter().map(|w| w.bulk_body()).collect();
        let v = self.call(method, route, route, &[], Some(&json!({ plural: records }))).await?;
        if writes.len() >= self.bulk_size() {
            self.bulk_size_proven.store(true, Ordering::Relaxed);
        }
        if let Some(job_id) = v.get("job_status").and_then(|j| j.get("job_id")).and_then(Value::as_str) {
            return Ok(BulkAnswer::Job(job_id.to_string()));
        }
        let records = v.get(plural).and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        Ok(BulkAnswer::records(kind, records, key_attribute))
    }

    /// Polls `GET /job_status` until the job has ended or `job_timeout` passes, waiting
    /// `job_poll_delay` before the first poll and backing off between polls. A status that is
    /// neither `complete` nor one that means "still working" ends the wait at once.
    pub async fn wait_job(&self, job_id: &str) -> Result<JobOutcome, NermError> {
        let deadline = Instant::now() + self.opts.job_timeout;
        let mut waits = job_poll_waits(self.opts.job_poll_delay, self.opts.job_poll_max_delay);
        loop {
            tokio::time::sleep(waits.next().unwrap_or(self.opts.job_poll_max_delay)).await;
            let v =
                self.call(Method::GET, "/job_status", "/job_status", &[("job_id", job_id.to_string())], None).await?;
            let status: JobStatus = serde_json::from_value(v)
                .map_err(|e| NermError::Protocol { route: "GET /job_status".into(), detail: e.to_string() })?;
            if status.is_complete() {
                return Ok(JobOutcome::Complete(status));
            }
            if !status.is_working() {
                tracing::warn!(job_id, status = %status.status, "bulk job ended without completing");
                return Ok(JobOutcome::Ended(status));
            }
            if Instant::now() >= deadline {
                return Ok(JobOutcome::StillRunning(status));
            }
        }
    }
}

/// The waits before each job poll: `first`, then doubling up to `max` (at least `first`, and
/// at least 10 ms). A zero `first` polls at once, then every `max`.
fn job_poll_waits(first: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    let max = max.max(first).max(Duration::from_millis(10));
    std::iter::successors(Some(first), move |&w| Some(if w.is_zero() { max } else { (w * 2).min(max) }))
}

/// `Retry-After` as seconds or as an HTTP date (RFC 9110 allows both); a date in the past
/// means no wait. Capped at ten minutes.
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let raw = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match raw.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Duration::from_secs_f64(s.min(600.0)),
        Ok(_) => return None,
        Err(_) => {
            let at = httpdate::parse_http_date(raw).ok()?;
            at.duration_since(std::time::SystemTime::now()).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(Duration::from_secs(600)))
}

fn describe_transport(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "connection closed while reading the answer".into()
    } else {
        "connection closed without an answer".into()
    }
}

fn error_message(bytes: &[u8]) -> String {
    error_body(bytes).0
}

/// `{"error": msg, "errors": {field: msg | [msg]}}` → (msg, fields) (docs/nerm-api.md, "Base URL and envelopes").
fn error_body(bytes: &[u8]) -> (String, BTreeMap<String, String>) {
    let Ok(v) = serde_json::from_slice::<Value>(bytes) else {
        return ("(no JSON error body)".into(), BTreeMap::new());
    };
    let message = v.get("error").and_then(Value::as_str).unwrap_or("(no error message)").chars().take(300).collect();
    let mut fields = BTreeMap::new();
    if let Some(errs) = v.get("errors").and_then(Value::as_object) {
        for (k, msg) in errs {
            let text = match msg {
                Value::String(s) => s.clone(),
                Value::Array(a) => a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "),
                other => other.to_string(),
            };
            fields.insert(k.clone(), text.chars().take(200).collect());
        }
    }
    (message, fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_is_refused_except_for_loopback() {
        assert!(check_base_url("https://acme.nonemployee.com/api").is_ok());
        assert!(check_base_url("http://127.0.0.1:4010/api").is_ok());
        assert!(check_base_url("http://localhost:4010/api").is_ok());
        assert!(check_base_url("http://[::1]:4010/api").is_ok());
        let err = check_base_url("http://acme.nonemployee.com/api").unwrap_err().to_string();
        assert!(err.contains("https"), "{err}");
        assert!(check_base_url("ftp://127.0.0.1/api").is_err());
        assert!(check_base_url("https://user:pw@acme.nonemployee.com/api").is_err());
    }

    #[test]
    fn the_base_url_gets_a_trailing_slash_so_paths_join_under_api() {
        let u = check_base_url("https://acme.nonemployee.com/api").unwrap();
        assert_eq!(u.join("users").unwrap().as_str(), "https://acme.nonemployee.com/api/users");
    }

    #[test]
    fn validation_errors_are_read_as_strings_or_arrays() {
        let (msg, fields) =
            error_body(br#"{"error":"The user failed to create","errors":{"login":"has already been taken","email":["is invalid","x"]}}"#);
        assert_eq!(msg, "The user failed to create");
        assert_eq!(fields["login"], "has already been taken");
        assert_eq!(fields["email"], "is invalid, x");
        let e = NermError::Rejected { route: "POST /user".into(), status: 400, message: msg, fields };
        assert!(e.is_already_taken("login"));
        assert!(!e.is_already_taken("email"));
    }

    #[test]
    fn job_polls_wait_the_first_delay_then_double_up_to_the_cap() {
        let ms = Duration::from_millis;
        let waits: Vec<Duration> = job_poll_waits(ms(250), ms(5000)).take(7).collect();
        assert_eq!(waits, [ms(250), ms(500), ms(1000), ms(2000), ms(4000), ms(5000), ms(5000)]);
        let defaults = ClientOptions::default();
        assert_eq!(job_poll_waits(defaults.job_poll_delay, defaults.job_poll_max_delay).next(), Some(ms(250)));
    }

    #[test]
    fn job_polls_never_spin_when_the_delays_are_zero_or_inverted() {
        let ms = Duration::from_millis;
        assert_eq!(job_poll_waits(ms(0), ms(100)).take(3).collect::<Vec<_>>(), [ms(0), ms(100), ms(100)]);
        assert_eq!(job_poll_waits(ms(300), ms(100)).take(2).collect::<Vec<_>>(), [ms(300), ms(300)]);
        assert_eq!(job_poll_waits(ms(0), ms(0)).take(2).collect::<Vec<_>>(), [ms(0), ms(10)]);
    }

    fn ids(ids: &[&str]) -> Vec<Value> {
        ids.iter().map(|id| json!({ "id": id })).collect()
    }

    #[test]
    fn paging_goes_on_past_a_short_page_until_the_total_is_read() {
        let mut walk = PageWalk::new("/users");
        assert_eq!(walk.take(ids(&["a", "b"]), Some(5)).unwrap().len(), 2);
        assert!(!walk.finished(2), "a page shorter than asked is not the end while the total is not read");
        walk.take(ids(&["c", "d"]), Some(5)).unwrap();
        assert!(!walk.finished(2));
        walk.take(ids(&["e"]), Some(5)).unwrap();
        assert!(walk.finished(1));
        assert_eq!(walk.read, 5);
    }

    #[test]
    fn paging_without_a_total_ends_only_on_an_empty_page() {
        let mut walk = PageWalk::new("/users");
        walk.take(ids(&["a"]), None).unwrap();
        assert!(!walk.finished(1));
        walk.take(Vec::new(), None).unwrap();
        assert!(walk.finished(0));
    }

    #[test]
    fn a_page_that_repeats_what_was_read_stops_the_read_with_an_error() {
        let mut walk = PageWalk::new("/users");
        walk.take(ids(&["a", "b"]), Some(10)).unwrap();
        let err = walk.take(ids(&["a", "b"]), Some(10)).unwrap_err().to_string();
        assert!(err.contains("GET /users") && err.contains("does not advance"), "{err}");
    }

    #[test]
    fn a_page_overlapping_the_last_keeps_only_the_new_records() {
        let mut walk = PageWalk::new("/users");
        walk.take(ids(&["a", "b"]), Some(3)).unwrap();
        let fresh = walk.take(ids(&["b", "c"]), Some(3)).unwrap();
        assert_eq!(fresh, ids(&["c"]));
    }

    #[test]
    fn more_pages_than_the_total_allows_stop_the_read_with_an_error() {
        let mut walk = PageWalk::new("/users");
        let mut result = Ok(Vec::new());
        for (i, id) in ["a", "b", "c", "d"].iter().enumerate() {
            result = walk.take(ids(&[id]), Some(1));
            if result.is_err() {
                assert_eq!(i, 2, "the third page is one more than a total of 1 allows");
                break;
            }
        }
        assert!(result.is_err());
    }

    #[test]
    fn retry_after_accepts_seconds_and_ignores_garbage() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert(reqwest::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn retry_after_as_an_http_date_waits_until_that_time_and_a_past_date_not_at_all() {
        let mut h = reqwest::header::HeaderMap::new();
        let later = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(5));
        h.insert(reqwest::header::RETRY_AFTER, later.parse().unwrap());
        let wait = retry_after(&h).expect("a date is understood");
        assert!(wait > Duration::from_secs(3) && wait <= Duration::from_secs(5), "{wait:?}");
        h.insert(reqwest::header::RETRY_AFTER, "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
    }
}
