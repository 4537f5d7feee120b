//! Shared helpers for the engine's end-to-end tests: a simulator per test, a NERM client tuned
//! for speed, the example mapping config, an HR export generator, one-call runs of
//! `shared::engine::run` with the report parsed back, and checkers of the simulator's state.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use nerm_sim::{Faults, Running, Seed, SimConfig};
use serde_json::{Value, json};
use shared::config::MappingConfig;
use shared::engine::RunError;
use shared::nerm::{ClientOptions, ClientStats, NermClient, SecretToken, StaticToken, TokenProvider};
use shared::report::{Outcome, ReportSink, RowReport, Summary};

/// The API token every simulator of these tests accepts.
pub const TOKEN: &str = "integration-token";

/// The login of the demo tenant's only user.
pub const ADMIN_LOGIN: &str = "nerm.admin@example.com";

/// The reference HR export header (infra/config/example.toml).
pub const HEADER: &str =
    "employee_id,login,email,first_name,last_name,title,department,manager_login,status,nerm_roles";

// ----- configs ---------------------------------------------------------------------------------

/// Pacing and retries for tests: no client-side throttling to speak of, quick backoff, short
/// timeouts, so a fault costs milliseconds instead of seconds.
pub fn client_options() -> ClientOptions {
    ClientOptions {
        requests_per_window: 10_000,
        window: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        max_retries: 6,
        retry_budget: 1000,
        page_size: 500,
        base_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(500),
        job_timeout: Duration::from_secs(30),
        job_poll_delay: Duration::from_millis(250),
        job_poll_max_delay: Duration::from_secs(1),
    }
}

pub fn client_with_tokens(api_url: &str, tokens: Arc<dyn TokenProvider>) -> NermClient {
    NermClient::new(api_url, tokens, client_options()).expect("a NERM client for the simulator")
}

/// The text of `infra/config/example.toml`.
pub fn example_config_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../infra/config/example.toml");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// The example mapping config, as shipped (upsert mode).
pub fn example_config() -> MappingConfig {
    MappingConfig::from_toml_str(&example_config_text()).expect("the example config loads")
}

/// The example config in full-sync mode (leavers disabled, 10 % threshold).
pub fn full_sync_config() -> MappingConfig {
    let text = example_config_text();
    assert!(text.contains("mode = \"upsert\""), "the example config no longer sets sync.mode = \"upsert\"");
    MappingConfig::from_toml_str(&text.replace("mode = \"upsert\"", "mode = \"full\"")).expect("full-sync config loads")
}

// ----- the simulator ---------------------------------------------------------------------------

/// A simulator (demo tenant, spec checks on, no rate limit, no faults unless patched in) and a
/// plain HTTP client for its `/_sim` hooks.
pub struct Harness {
    pub running: Running,
    http: reqwest::Client,
}

/// One engine run: the summary, the report rows parsed back from JSONL, and the client's own
/// counts (each run gets a fresh client, so the counts are for this run only).
#[derive(Debug)]
pub struct Run {
    pub summary: Summary,
    pub rows: Vec<RowReport>,
    pub client: ClientStats,
}

impl Run {
    /// Rows with this outcome.
    pub fn with_outcome(&self, outcome: Outcome) -> Vec<&RowReport> {
        self.rows.iter().filter(|r| r.outcome == outcome).collect()
    }

    /// Row count per outcome (only outcomes that occur).
    pub fn outcomes(&self) -> BTreeMap<Outcome, usize> {
        let mut m = BTreeMap::new();
        for r in &self.rows {
            *m.entry(r.outcome).or_default() += 1;
        }
        m
    }

    /// The report row of one employee key (exactly one expected).
    #[track_caller]
    pub fn row_of(&self, key: &str) -> &RowReport {
        let found: Vec<&RowReport> = self.rows.iter().filter(|r| r.employee_key == key).collect();
        assert_eq!(found.len(), 1, "expected one report row for {key}, got {found:#?}");
        found[0]
    }
}

impl Harness {
    /// Demo tenant, rate limit off, no faults, spec checks on.
    pub async fn start() -> Harness {
        Harness::with(json!({})).await
    }

    /// As [`Harness::start`], with a JSON merge patch over the config (e.g. behaviour switches).
    pub async fn with(patch: Value) -> Harness {
        let base = SimConfig {
            tokens: vec![TOKEN.into()],
            faults: Faults { rate_limit: None, ..Faults::default() },
            ..SimConfig::default()
        };
        let config = base.merged(&patch).expect("a valid simulator config patch");
        assert!(config.spec_check, "spec checks must stay on");
        let running = nerm_sim::start(config, &Seed::demo(), 0).await.expect("the simulator starts");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client for /_sim");
        Harness { running, http }
    }

    pub fn api_url(&self) -> String {
        self.running.api_url()
    }

    /// A fresh client with the right token.
    pub fn client(&self) -> NermClient {
        client_with_tokens(&self.api_url(), Arc::new(StaticToken::new(SecretToken::new(TOKEN))))
    }

    /// Runs the engine once with a fresh client; panics if the run does not start.
    pub async fn run(&self, csv: &str, config: &MappingConfig, dry_run: bool) -> Run {
        match self.try_run(csv, config, dry_run).await {
            Ok(run) => run,
            Err(e) => panic!("the run did not start: {e}"),
        }
    }

    pub async fn try_run(&self, csv: &str, config: &MappingConfig, dry_run: bool) -> Result<Run, RunError> {
        self.try_run_with(csv, config, dry_run, &log_progress).await
    }

    /// As [`Harness::try_run`], with the engine's progress messages going to `progress` (a hook
    /// to change NERM between the run's stages: "read NERM: ..." comes after the snapshot and
    /// before any write).
    pub async fn try_run_with(
        &self,
        csv: &str,
        config: &MappingConfig,
        dry_run: bool,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Run, RunError> {
        let client = self.client();
        let (summary, rows) = run_once_with(&client, csv, config, dry_run, progress).await?;
        Ok(Run { summary, rows, client: client.stats() })
    }

    /// Signs `login` in through the simulated IdP right now, synchronously (usable inside a
    /// progress hook): NERM creates an unknown user just in time (docs/nerm-api.md, "Roles under SSO").
    pub fn sso_login_now(&self, login: &str, groups: &[&str]) {
        let req: nerm_sim::tenant::LoginRequest =
            serde_json::from_value(json!({ "login": login, "idp_groups": groups })).expect("a login request");
        let behaviour = self.running.sim.behaviour();
        self.running.sim.tenant().simulate_login(&req, &behaviour).expect("the SSO login succeeds");
    }

    async fn get_json(&self, path: &str) -> Value {
        let url = format!("{}{path}", self.running.root_url());
        let resp = self.http.get(&url).send().await.unwrap_or_else(|e| panic!("GET {url}: {e}"));
        assert!(resp.status().is_success(), "GET {url}: {}", resp.status());
        resp.json().await.unwrap_or_else(|e| panic!("GET {url}: {e}"))
    }

    /// The whole tenant (`GET /_sim/state`): canonical values, hidden fields included.
    pub async fn state(&self) -> Value {
        self.get_json("/_sim/state").await
    }

    /// `GET /_sim/stats`.
    pub async fn stats(&self) -> Value {
        self.get_json("/_sim/stats").await
    }

    /// `POST /_sim/stats/reset`: counters start from zero. Spec violations recorded so far are
    /// checked first, so a reset never hides one.
    pub async fn reset_stats(&self) {
        check_spec_violations(&self.stats().await, false);
        let url = format!("{}/_sim/stats/reset", self.running.root_url());
        let resp = self.http.post(&url).send().await.expect("POST /_sim/stats/reset");
        assert!(resp.status().is_success(), "POST /_sim/stats/reset: {}", resp.status());
    }

    /// `PATCH /_sim/config` with a JSON merge patch (faults, behaviour).
    pub async fn configure(&self, patch: Value) {
        let url = format!("{}/_sim/config", self.running.root_url());
        let resp = self.http.patch(&url).json(&patch).send().await.expect("PATCH /_sim/config");
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        assert!(status.is_success(), "PATCH /_sim/config {patch}: {status} {body}");
    }

    /// Every `/api` body the engine sent or got was checked against the OpenAPI document, and
    /// none broke it.
    ///
    pub async fn assert_no_spec_violations(&self) {
        check_spec_violations(&self.stats().await, true);
    }

    /// `requests` of `/_sim/stats` as `"METHOD /api/route" -> count`.
    pub async fn requests(&self) -> BTreeMap<String, u64> {
        requests_of(&self.stats().await)
    }
}

/// Asserts a `/_sim/stats` answer lists no spec violation and, with `need_checks`, that
/// bodies were checked at all.
#[track_caller]
pub fn check_spec_violations(stats: &Value, need_checks: bool) {
    let all: Vec<&str> = stats["spec_violations"]
        .as_array()
        .expect("spec_violations is an array")
        .iter()
        .map(|v| v.as_str().expect("a violation is a string"))
        .collect();
    assert!(all.is_empty(), "spec violations: {all:#?}");
    if need_checks {
        let checked = stats["spec_checked"].as_u64().expect("spec_checked is a number");
        assert!(checked > 0, "no body was spec-checked (is spec_check on?)");
    }
}

/// `requests` of a `/_sim/stats` answer.
pub fn requests_of(stats: &Value) -> BTreeMap<String, u64> {
    stats["requests"]
        .as_object()
        .expect("requests is an object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().expect("a count")))
        .collect()
}

/// Requests other than GET, from a `/_sim/stats` answer.
pub fn non_get_requests(stats: &Value) -> BTreeMap<String, u64> {
    requests_of(stats).into_iter().filter(|(k, _)| !k.starts_with("GET ")).collect()
}

/// The simulator injected every kind of fault `faults` (a `[faults]` patch) turns on: a test
/// through faults must not pass as a plain import because injection stopped working. Rates
/// map to the kinds `/_sim/stats` counts (`error_rate` → `error`, ...), `down: true` to `down`;
/// a `script` entry counts under its `fault`. Returns the counts, for the test's note.
#[track_caller]
pub fn assert_faults_fired(faults: &Value, stats: &Value) -> BTreeMap<String, u64> {
    let injected = |kind: &str| stats["faults"][kind].as_u64().unwrap_or(0);
    // Each scripted fault fires once; a rate fires at least once (on top of the script's, the
    // dice may draw none).
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for step in faults["script"].as_array().into_iter().flatten() {
        *expected.entry(step["fault"].as_str().expect("a scripted fault").to_string()).or_insert(0) += 1;
    }
    for (key, value) in faults.as_object().into_iter().flatten() {
        if let Some(kind) = key.strip_suffix("_rate")
            && value.as_f64().is_some_and(|rate| rate > 0.0)
        {
            expected.entry(kind.to_string()).or_insert(1);
        }
    }
    if faults["down"] == true {
        expected.insert("down".to_string(), 1);
    }
    assert!(!expected.is_empty(), "no fault is configured in {faults}");
    let mut seen = BTreeMap::new();
    for (kind, at_least) in expected {
        let n = injected(&kind);
        assert!(n >= at_least, "{faults} was configured, yet {n} {kind} fault(s) were injected: {}", stats["faults"]);
        seen.insert(kind, n);
    }
    seen
}

/// Progress messages go to stderr (shown for failing tests).
pub fn log_progress(msg: &str) {
    eprintln!("engine: {msg}");
}

/// Runs `shared::engine::run` over `csv` with a report sink writing into memory, then parses
/// the JSON Lines back (and checks the CSV report has as many rows).
pub async fn run_once(
    client: &NermClient,
    csv: &str,
    config: &MappingConfig,
    dry_run: bool,
) -> Result<(Summary, Vec<RowReport>), RunError> {
    run_once_with(client, csv, config, dry_run, &log_progress).await
}

/// [`run_once`] with a progress hook.
pub async fn run_once_with(
    client: &NermClient,
    csv: &str,
    config: &MappingConfig,
    dry_run: bool,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(Summary, Vec<RowReport>), RunError> {
    run_once_chunked(client, csv, config, dry_run, shared::engine::run::APPLY_CHUNK, progress).await
}

/// [`run_once_with`] applying at most `chunk` plans at a time (as a big file is applied).
pub async fn run_once_chunked(
    client: &NermClient,
    csv: &str,
    config: &MappingConfig,
    dry_run: bool,
    chunk: usize,
    progress: &(dyn Fn(&str) + Sync),
) -> Result<(Summary, Vec<RowReport>), RunError> {
    let mut jsonl: Vec<u8> = Vec::new();
    let mut csv_report: Vec<u8> = Vec::new();
    let summary = {
        let mut sink = ReportSink::new("integration", dry_run, &mut jsonl, &mut csv_report, vec![TOKEN.to_string()])
            .expect("a report sink");
        let csv = csv.as_bytes().to_vec();
        let open = || Ok::<_, std::io::Error>(Cursor::new(csv.clone()));
        let opts = shared::engine::run::RunOptions { dry_run, chunk };
        shared::engine::run(open, config, client, &mut sink, opts, progress).await?;
        sink.finish().expect("the report finishes")
    };
    let text = String::from_utf8(jsonl).expect("the JSONL report is UTF-8");
    let rows: Vec<RowReport> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSONL line {l:?}: {e}"))).collect();
    assert_eq!(summary.rows_total, rows.len() as u64, "summary.rows_total vs JSONL rows");
    let csv_rows = csv_record_count(&csv_report);
    assert_eq!(csv_rows, rows.len(), "CSV report rows vs JSONL rows");
    Ok((summary, rows))
}

/// Data records in the CSV report (quoted newlines do not count).
fn csv_record_count(bytes: &[u8]) -> usize {
    let mut records = 0usize;
    let mut in_quotes = false;
    let mut at_start = true;
    for &b in bytes {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' if !in_quotes => {
                records += 1;
                at_start = true;
                continue;
            }
            _ => {}
        }
        at_start = false;
    }
    if !at_start {
        records += 1;
    }
    records.saturating_sub(1) // the header
}

// ----- the HR export ---------------------------------------------------------------------------

/// One row of the reference HR export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HrRow {
    pub employee_id: String,
    pub login: String,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub title: String,
    pub department: String,
    /// Empty for none.
    pub manager_login: String,
    pub status: String,
    /// `;`-separated role names, often empty.
    pub roles: String,
}

/// First and last names of the generated employees (non-ASCII on purpose).
pub const FIRST: [&str; 10] = ["Ada", "José", "Zoë", "Łukasz", "Søren", "Aiko", "Björn", "Chloé", "Dmitri", "Grace"];
pub const LAST: [&str; 12] = [
    "Lovelace",
    "García",
    "Müller",
    "Nguyễn",
    "O'Brien",
    "Kowalski",
    "Østergaard",
    "Smith",
    "Dubois",
    "Tanaka",
    "Hopper",
    "Černý",
];
const TITLES: [&str; 6] =
    ["Engineer", "Senior Engineer, Platform", "Head of \"Ops\", EMEA", "Développeuse", "Analyst", "VP, Sales, Nordics"];
const DEPARTMENTS: [&str; 4] = ["Engineering", "Sales", "R&D", "Finance"];

/// The login of employee `i` (every 7th is written in mixed case).
fn login_of(i: usize) -> String {
    if i % 7 == 3 { format!("Emp{i:04}@Example.com") } else { format!("emp{i:04}@example.com") }
}

/// `n` employees (at most 120, so names stay unique): managers point anywhere in the file,
/// later rows included, some in a different letter case than the manager's own row; some
/// non-ASCII names, titles with quoted commas and quotes, roles like `Sponsor;Manager`, a few
/// people on leave or terminated. The managers form a tree, as in a real organisation (a
/// manager cycle would cost its members their manager links): in an order that shuffles the
/// rows, each employee's manager is one of the first third before them.
pub fn employees(n: usize) -> Vec<HrRow> {
    assert!(n <= FIRST.len() * LAST.len(), "at most {} generated employees", FIRST.len() * LAST.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| ((i * 7 + 3) % n.max(1), i));
    let mut rank = vec![0; n];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    (0..n)
        .map(|i| {
            let manager = if i % 9 == 0 || rank[i] == 0 {
                String::new()
            } else {
                let m = order[(rank[i] - 1) / 3];
                let login = login_of(m);
                // The HR system is not consistent about case; NERM logins are case-insensitive.
                if i % 5 == 2 { login.to_uppercase() } else { login }
            };
            let status = match i {
                _ if i % 11 == 5 => "Leave",
                _ if i % 17 == 8 => "Terminated",
                _ if i % 13 == 4 => "active",
                _ => "Active",
            };
            let roles = match i % 6 {
                1 => "Sponsor",
                2 => "Manager",
                3 => "Sponsor;Manager",
                4 => " manager ; SPONSOR ",
                _ => "",
            };
            HrRow {
                employee_id: format!("E{:05}", 10_000 + i * 3),
                login: login_of(i),
                email: format!("emp{i:04}@example.com"),
                first_name: FIRST[i % FIRST.len()].to_string(),
                last_name: LAST[(i / FIRST.len()) % LAST.len()].to_string(),
                title: TITLES[i % TITLES.len()].to_string(),
                department: DEPARTMENTS[i % DEPARTMENTS.len()].to_string(),
                manager_login: manager,
                status: status.to_string(),
                roles: roles.to_string(),
            }
        })
        .collect()
}

fn csv_field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) || s.starts_with(' ') || s.ends_with(' ') {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

impl HrRow {
    pub fn csv_line(&self) -> String {
        [
            &self.employee_id,
            &self.login,
            &self.email,
            &self.first_name,
            &self.last_name,
            &self.title,
            &self.department,
            &self.manager_login,
            &self.status,
            &self.roles,
        ]
        .iter()
        .map(|f| csv_field(f))
        .collect::<Vec<_>>()
        .join(",")
    }

    pub fn name(&self) -> String {
        format!("{} {}", self.first_name, self.last_name)
    }

    /// The NERM user status `[user.status_map]` gives this row.
    pub fn user_status(&self) -> &'static str {
        match self.status.trim().to_lowercase().as_str() {
            "active" | "leave" => "Active",
            "disabled" | "terminated" => "Disabled",
            other => panic!("no user status for HR status {other:?}"),
        }
    }

    /// The NERM profile status `[profile.status_map]` gives this row.
    pub fn profile_status(&self) -> &'static str {
        match self.status.trim().to_lowercase().as_str() {
            "active" => "Active",
            "leave" => "On Leave",
            "disabled" => "Inactive",
            "terminated" => "Terminated",
            other => panic!("no profile status for HR status {other:?}"),
        }
    }

    /// The directory groups the user must hold: the default role's plus the row's roles'.
    pub fn groups(&self) -> Vec<&'static str> {
        let mut groups = vec!["Employees"];
        for role in self.roles.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let g = match role.to_lowercase().as_str() {
                "sponsor" => "Sponsors",
                "manager" => "Managers",
                "employee" => "Employees",
                "administrator" => "NERM_Admins",
                other => panic!("the generator knows no role {other:?}"),
            };
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        groups
    }
}

/// The file: header, then one line per row (CRLF-free, trailing newline).
pub fn to_csv(rows: &[HrRow]) -> String {
    let mut out = String::from(HEADER);
    out.push('\n');
    for r in rows {
        out.push_str(&r.csv_line());
        out.push('\n');
    }
    out
}

// ----- reading the simulator's state -----------------------------------------------------------

pub fn records<'a>(state: &'a Value, coll: &str) -> &'a [Value] {
    state[coll].as_array().map(Vec::as_slice).unwrap_or_else(|| panic!("state has no {coll} array"))
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The id of the demo tenant's "Employee" profile type.
pub fn employee_type_id(state: &Value) -> &str {
    let t = records(state, "profile_types").iter().find(|t| s(t, "uid") == "employee").expect("an Employee type");
    s(t, "id")
}

/// Users whose login matches case-insensitively.
pub fn users_with_login<'a>(state: &'a Value, login: &str) -> Vec<&'a Value> {
    let key = login.trim().to_lowercase();
    records(state, "users").iter().filter(|u| s(u, "login").trim().to_lowercase() == key).collect()
}

/// Employee profiles whose `employee_id` attribute is `key`.
pub fn profiles_with_key<'a>(state: &'a Value, key: &str) -> Vec<&'a Value> {
    let type_id = employee_type_id(state);
    records(state, "profiles")
        .iter()
        .filter(|p| s(p, "profile_type_id") == type_id && p["attributes"]["employee_id"].as_str() == Some(key))
        .collect()
}

/// Employee profiles in the tenant.
pub fn employee_profiles(state: &Value) -> Vec<&Value> {
    let type_id = employee_type_id(state);
    records(state, "profiles").iter().filter(|p| s(p, "profile_type_id") == type_id).collect()
}

/// The one user with this login (panics otherwise).
#[track_caller]
pub fn user<'a>(state: &'a Value, login: &str) -> &'a Value {
    let found = users_with_login(state, login);
    assert_eq!(found.len(), 1, "expected exactly one user {login}, got {found:#?}");
    found[0]
}

/// The one Employee profile with this key (panics otherwise).
#[track_caller]
pub fn profile<'a>(state: &'a Value, key: &str) -> &'a Value {
    let found = profiles_with_key(state, key);
    assert_eq!(found.len(), 1, "expected exactly one profile {key}, got {found:#?}");
    found[0]
}

/// Checks that NERM holds exactly what `rows` ask for, and no duplicate of it:
/// per row one user (login compared case-insensitively) with the row's name, email, title,
/// status and groups ("Employees" plus the row's roles' groups); one Employee profile with
/// the row's key, attributes and status; one owner link between them; where a manager is
/// given one user_manager to the manager's user and the profile's `manager` attribute holding
/// the manager's profile id (the state dump shows canonical ids), and none otherwise. Across
/// the tenant: no two users share a login, no two Employee profiles a key, no profile has two
/// owners, no link is stored twice, no user has two manager links.
#[track_caller]
pub fn assert_nerm_matches(state: &Value, rows: &[HrRow]) {
    let mut problems: Vec<String> = Vec::new();
    let type_id = employee_type_id(state).to_string();
    let links = records(state, "user_profiles");
    let managers = records(state, "user_managers");

    // --- tenant-wide duplicates ----------------------------------------------------------------
    let mut by_login: HashMap<String, usize> = HashMap::new();
    for u in records(state, "users") {
        *by_login.entry(s(u, "login").trim().to_lowercase()).or_default() += 1;
    }
    problems.extend(by_login.iter().filter(|(_, n)| **n > 1).map(|(l, n)| format!("{n} users share login {l}")));
    let mut by_key: HashMap<&str, usize> = HashMap::new();
    for p in employee_profiles(state) {
        if let Some(k) = p["attributes"]["employee_id"].as_str() {
            *by_key.entry(k).or_default() += 1;
        }
    }
    problems.extend(by_key.iter().filter(|(_, n)| **n > 1).map(|(k, n)| format!("{n} profiles share key {k}")));
    let mut owners: HashMap<&str, usize> = HashMap::new();
    let mut link_keys: HashMap<(&str, &str, &str), usize> = HashMap::new();
    for l in links {
        if s(l, "relationship_type") == "owner" {
            *owners.entry(s(l, "profile_id")).or_default() += 1;
        }
        *link_keys.entry((s(l, "user_id"), s(l, "profile_id"), s(l, "relationship_type"))).or_default() += 1;
    }
    problems.extend(owners.iter().filter(|(_, n)| **n > 1).map(|(p, n)| format!("profile {p} has {n} owners")));
    problems.extend(link_keys.iter().filter(|(_, n)| **n > 1).map(|(k, n)| format!("user_profile {k:?} stored {n}×")));
    let mut managers_of: HashMap<&str, usize> = HashMap::new();
    for m in managers {
        *managers_of.entry(s(m, "user_id")).or_default() += 1;
    }
    problems
        .extend(managers_of.iter().filter(|(_, n)| **n > 1).map(|(u, n)| format!("user {u} has {n} user_managers")));

    // --- per row -----------------------------------------------------------------------------
    let profile_owned_by = |user_id: &str| -> Vec<&Value> {
        links
            .iter()
            .filter(|l| s(l, "user_id") == user_id && s(l, "relationship_type") == "owner")
            .filter_map(|l| {
                records(state, "profiles")
                    .iter()
                    .find(|p| s(p, "id") == s(l, "profile_id") && s(p, "profile_type_id") == type_id)
            })
            .collect()
    };
    for r in rows {
        let who = format!("{} ({})", r.login, r.employee_id);
        let users = users_with_login(state, &r.login);
        if users.len() != 1 {
            problems.push(format!("{who}: {} users with this login", users.len()));
            continue;
        }
        let u = users[0];
        let uid = s(u, "id");
        for (field, want) in [
            ("name", r.name()),
            ("email", r.email.clone()),
            ("title", r.title.clone()),
            ("status", r.user_status().to_string()),
            ("type", "NeprofileUser".to_string()),
        ] {
            if s(u, field) != want {
                problems.push(format!("{who}: user.{field} is {:?}, want {want:?}", u[field]));
            }
        }
        let groups: Vec<&str> = s(u, "group_strings").split(',').map(str::trim).filter(|g| !g.is_empty()).collect();
        for g in r.groups() {
            match groups.iter().filter(|x| **x == g).count() {
                1 => {}
                n => problems.push(format!("{who}: group {g} appears {n}× in group_strings {groups:?}")),
            }
        }
        let profiles = profiles_with_key(state, &r.employee_id);
        if profiles.len() != 1 {
            problems.push(format!("{who}: {} Employee profiles with this key", profiles.len()));
            continue;
        }
        let p = profiles[0];
        let pid = s(p, "id");
        if s(p, "status") != r.profile_status() {
            problems.push(format!("{who}: profile.status is {:?}, want {:?}", p["status"], r.profile_status()));
        }
        if s(p, "name") != r.name() {
            problems.push(format!("{who}: profile.name is {:?}, want {:?}", p["name"], r.name()));
        }
        for (attr, want) in [
            ("employee_id", &r.employee_id),
            ("first_name", &r.first_name),
            ("last_name", &r.last_name),
            ("email", &r.email),
            ("job_title", &r.title),
            ("department", &r.department),
            ("login", &r.login),
        ] {
            if p["attributes"][attr].as_str() != Some(want.as_str()) {
                problems.push(format!("{who}: profile.{attr} is {:?}, want {want:?}", p["attributes"][attr]));
            }
        }
        let own = links
            .iter()
            .filter(|l| s(l, "user_id") == uid && s(l, "profile_id") == pid && s(l, "relationship_type") == "owner")
            .count();
        if own != 1 {
            problems.push(format!("{who}: {own} owner links between the user and the profile"));
        }
        let mine: Vec<&Value> = managers.iter().filter(|m| s(m, "user_id") == uid).collect();
        if r.manager_login.is_empty() {
            if !mine.is_empty() {
                problems.push(format!("{who}: has no manager in the file but {} user_managers", mine.len()));
            }
            if !p["attributes"]["manager"].is_null() {
                problems.push(format!("{who}: has no manager but profile.manager is {}", p["attributes"]["manager"]));
            }
            continue;
        }
        let boss = users_with_login(state, &r.manager_login);
        if boss.len() != 1 {
            problems.push(format!("{who}: {} users for manager {}", boss.len(), r.manager_login));
            continue;
        }
        let boss_id = s(boss[0], "id");
        if mine.len() != 1 || s(mine[0], "manager_id") != boss_id {
            problems.push(format!("{who}: user_managers {mine:?}, want exactly one to {boss_id}"));
        }
        let boss_profiles = profile_owned_by(boss_id);
        match boss_profiles.as_slice() {
            [bp] => {
                if p["attributes"]["manager"].as_str() != Some(s(bp, "id")) {
                    problems.push(format!(
                        "{who}: profile.manager is {}, want the manager's profile id {}",
                        p["attributes"]["manager"],
                        s(bp, "id")
                    ));
                }
            }
            other => problems.push(format!("{who}: manager {} owns {} profiles", r.manager_login, other.len())),
        }
    }
    assert!(
        problems.is_empty(),
        "NERM does not match the file ({} problems):\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The tenant holds nothing but `rows` (plus the demo admin): no stray users or profiles.
#[track_caller]
pub fn assert_no_strays(state: &Value, rows: &[HrRow]) {
    let users = records(state, "users");
    let strays: Vec<&str> = users
        .iter()
        .map(|u| s(u, "login"))
        .filter(|l| !l.eq_ignore_ascii_case(ADMIN_LOGIN) && !rows.iter().any(|r| r.login.eq_ignore_ascii_case(l)))
        .collect();
    assert!(strays.is_empty(), "users not in the file: {strays:?}");
    assert_eq!(users.len(), rows.len() + 1, "users: the file's plus the demo admin");
    assert_eq!(employee_profiles(state).len(), rows.len(), "Employee profiles: one per row");
}

/// The records a run may change, for before/after comparisons.
pub fn tenant_records(state: &Value) -> Value {
    json!({
        "users": state["users"],
        "user_roles": state["user_roles"],
        "profiles": state["profiles"],
        "user_profiles": state["user_profiles"],
        "user_managers": state["user_managers"],
    })
}

// ----- the workspace's binaries ----------------------------------------------------------------

/// The path of binary `name` of this workspace, freshly built by the cargo running the tests
/// (`cargo build --workspace --bins`, the same features as `make build`, so it is usually up to
/// date already). Integration tests get `CARGO_BIN_EXE_*` only for their own package's binaries;
/// this gives a test the exact binary a user runs, never a stale one. Built once per test binary.
pub fn workspace_bin(name: &str) -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<BTreeMap<String, std::path::PathBuf>> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(build_workspace_bins);
    match built.get(name) {
        Some(path) => path.clone(),
        None => panic!("no binary {name:?} in the workspace; built: {:?}", built.keys()),
    }
}

fn build_workspace_bins() -> BTreeMap<String, std::path::PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let out = std::process::Command::new(&cargo)
        .args(["build", "--quiet", "--workspace", "--bins", "--message-format=json"])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(out.status.success(), "cargo build --workspace --bins failed: {}", out.status);
    let mut bins = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<Value>(line) else { continue };
        if let (Some("compiler-artifact"), Some(exe)) = (msg["reason"].as_str(), msg["executable"].as_str()) {
            bins.insert(msg["target"]["name"].as_str().unwrap_or_default().to_string(), exe.into());
        }
    }
    bins
}
