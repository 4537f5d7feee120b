//! Scenarios 3 and 4: NERM traffic against the simulator, in process.
//!
//! 3. Requests per employee (no latency, no rate limit): a first import, an unchanged rerun and
//!    a rerun with 1% changed, each through `shared::engine::run`, broken down by endpoint from
//!    the simulator's `/_sim/stats`.
//! 4. Pacing: the simulator limited to R requests per window with some latency, the client set
//!    to the same R; the accepted request rate as a fraction of R, and the 429s. Two workloads:
//!    the engine's first import (bulk writes, paged reads, job polls) and a plain stream of
//!    single-record writes from 4 concurrent tasks (the client's pacing alone).

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use nerm_sim::{Faults, RateLimit, Running, Seed, SimConfig};
use serde_json::Value;
use shared::config::MappingConfig;
use shared::nerm::model::NewUser;
use shared::nerm::{ClientOptions, ClientStats, NermClient, SecretToken, StaticToken, Write};
use shared::report::{ReportSink, Summary};

use crate::generate::{Variant, hr_string};
use crate::util::{self, Measurement, breakdown, fmt_num, secs};

const TOKEN: &str = "bench-token";

/// A simulator with the demo tenant. Spec checks are off: they cost simulator CPU and do not
/// change what is counted (the integration tests keep them on).
async fn start_sim(faults: Faults) -> Result<Running, String> {
    let config = SimConfig { tokens: vec![TOKEN.into()], spec_check: false, faults, ..SimConfig::default() };
    nerm_sim::start(config, &Seed::demo(), 0).await
}

fn client(sim: &Running, opts: ClientOptions) -> Result<NermClient, String> {
    NermClient::new(&sim.api_url(), Arc::new(StaticToken::new(SecretToken::new(TOKEN))), opts)
        .map_err(|e| e.to_string())
}

/// No client-side pacing to speak of (scenario 3 counts requests, it does not pace them).
fn fast_options() -> ClientOptions {
    ClientOptions { requests_per_window: 100_000, window: Duration::from_secs(1), ..ClientOptions::default() }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("an HTTP client")
}

async fn sim_stats(sim: &Running) -> Result<Value, String> {
    let url = format!("{}/_sim/stats", sim.root_url());
    let resp = http().get(&url).send().await.map_err(|e| format!("GET {url}: {e}"))?;
    resp.json().await.map_err(|e| format!("GET {url}: {e}"))
}

async fn reset_stats(sim: &Running) -> Result<(), String> {
    let url = format!("{}/_sim/stats/reset", sim.root_url());
    http().post(&url).send().await.map_err(|e| format!("POST {url}: {e}"))?;
    Ok(())
}

fn requests_of(stats: &Value) -> BTreeMap<String, u64> {
    stats["requests"]
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0))).collect())
        .unwrap_or_default()
}

/// One engine run over `csv`; the report goes nowhere, the summary comes back.
async fn engine_run(client: &NermClient, csv: &str, config: &MappingConfig) -> Result<Summary, String> {
    let mut sink = ReportSink::new("bench", false, std::io::sink(), std::io::sink(), vec![TOKEN.into()])
        .map_err(|e| e.to_string())?;
    let csv = csv.as_bytes().to_vec();
    let open = || Ok::<_, std::io::Error>(Cursor::new(csv.clone()));
    shared::engine::run(open, config, client, &mut sink, shared::engine::run::RunOptions::new(false), &|_: &str| {})
        .await
        .map_err(|e| e.to_string())?;
    sink.finish().map_err(|e| e.to_string())
}

fn count(summary: &Summary, outcome: &str) -> u64 {
    serde_json::to_value(&summary.counts).ok().and_then(|v| v[outcome].as_u64()).unwrap_or(0)
}

/// Scenario 3.
pub async fn requests(results: &Path, employees: usize) -> Result<(), String> {
    let sim = start_sim(Faults { rate_limit: None, ..Faults::default() }).await?;
    let config = util::bench_config();
    let base = hr_string(employees, 3, Variant::default());
    let changed = hr_string(employees, 3, Variant { change_every: Some(100) });
    let scenario =
        format!("3. NERM requests, {} employees (simulator: no latency, no limit)", fmt_num(employees as f64));
    let s = scenario.as_str();
    let mut m = Vec::new();
    for (label, csv, expect) in [
        ("first import", &base, ("created", employees as u64)),
        ("unchanged rerun", &base, ("unchanged", employees as u64)),
        ("rerun, 1% changed", &changed, ("updated", (employees / 100) as u64)),
    ] {
        reset_stats(&sim).await?;
        let client = client(&sim, fast_options())?;
        let t = Instant::now();
        let summary = engine_run(&client, csv, &config).await?;
        let wall = secs(t);
        let stats = sim_stats(&sim).await?;
        let requests = requests_of(&stats);
        let total: u64 = requests.values().sum();
        let writes: u64 = requests.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, n)| n).sum();
        let got = count(&summary, expect.0);
        if got != expect.1 || count(&summary, "failed") > 0 || count(&summary, "rejected") > 0 {
            return Err(format!("{label}: expected {} {}, got counts {:?}", expect.1, expect.0, summary.counts));
        }
        let ClientStats { rate_limited, retries, .. } = client.stats();
        println!("scenario 3: {label}: {total} requests ({writes} writes) in {wall:.1}s; {}", breakdown(&requests));
        let mut row = Measurement::one(s, &format!("{label}: requests"), "requests", total as f64).note(format!(
            "{writes} writes, {rate_limited} 429s, {retries} retries; {} {}; {:.1} s wall. {}",
            fmt_num(expect.1 as f64),
            expect.0,
            wall,
            breakdown(&requests)
        ));
        if label == "unchanged rerun" {
            // Paged reads only: no write, no single-record route, and users and profiles read
            // in pages of 500, not looked up one by one.
            let users = employees as u64 + 1; // plus the demo admin
            let paged =
                |route: &str, records: u64| requests.get(route).copied().unwrap_or(0) <= records.div_ceil(500) + 1;
            let only_pages = writes == 0
                && !requests.keys().any(|k| k.contains('{'))
                && paged("GET /api/users", users)
                && paged("GET /api/profiles", employees as u64);
            row = row.target("paged reads only", 0.0, true);
            row.verdict = if only_pages { "meets" } else { "misses" }.into();
        }
        m.push(row);
        m.push(Measurement::one(
            s,
            &format!("{label}: requests per employee"),
            "req/employee",
            total as f64 / employees as f64,
        ));
    }
    util::save(results, "3-requests", &m)?;
    sim.stop().await;
    Ok(())
}

/// What one pacing run achieved.
struct Paced {
    wall: f64,
    /// Requests the simulator served (not 429).
    accepted: u64,
    rejected_429: u64,
    client_retries: u64,
    /// `GET /job_status` polls among the requests.
    polls: u64,
}

impl Paced {
    fn rate(&self) -> f64 {
        self.accepted as f64 / self.wall
    }
}

async fn paced_sim(limit: RateLimit, latency_ms: u64) -> Result<Running, String> {
    start_sim(Faults { rate_limit: Some(limit), latency_ms, ..Faults::default() }).await
}

/// The client paced to `requests` per the limit's window.
fn paced_options(limit: RateLimit, requests: u32) -> ClientOptions {
    ClientOptions {
        requests_per_window: requests,
        window: Duration::from_secs(limit.per_seconds),
        ..ClientOptions::default()
    }
}

async fn finish_paced(sim: Running, client: &NermClient, wall: f64) -> Result<Paced, String> {
    let stats = sim_stats(&sim).await?;
    sim.stop().await;
    let total = stats["total"].as_u64().unwrap_or(0);
    let rejected_429 = stats["rate_limited"].as_u64().unwrap_or(0);
    let polls = requests_of(&stats).get("GET /api/job_status").copied().unwrap_or(0);
    Ok(Paced { wall, accepted: total - rejected_429, rejected_429, client_retries: client.stats().retries, polls })
}

/// Workload A: a first import through the engine.
async fn paced_import(
    limit: RateLimit,
    client_requests: u32,
    latency_ms: u64,
    employees: usize,
) -> Result<Paced, String> {
    let sim = paced_sim(limit, latency_ms).await?;
    let client = client(&sim, paced_options(limit, client_requests))?;
    let csv = hr_string(employees, 4, Variant::default());
    let t = Instant::now();
    let summary = engine_run(&client, &csv, &util::bench_config()).await?;
    let wall = secs(t);
    if count(&summary, "created") != employees as u64 {
        return Err(format!("paced import: counts {:?}", summary.counts));
    }
    finish_paced(sim, &client, wall).await
}

/// Workload B: `n` single-record `POST /user` calls, 4 in flight.
async fn paced_stream(limit: RateLimit, client_requests: u32, latency_ms: u64, n: usize) -> Result<Paced, String> {
    let sim = paced_sim(limit, latency_ms).await?;
    let client = client(&sim, paced_options(limit, client_requests))?;
    let t = Instant::now();
    let failures = futures::stream::iter(0..n)
        .map(|i| {
            let client = &client;
            async move {
                let user = Write::CreateUser(NewUser {
                    name: format!("Pace {i}"),
                    email: format!("pace{i}@example.com"),
                    kind: "NeprofileUser".into(),
                    login: format!("pace{i}@example.com"),
                    status: Some("Active".into()),
                    ..NewUser::default()
                });
                client.write_one(&user).await.is_err()
            }
        })
        .buffer_unordered(4)
        .filter(|failed| std::future::ready(*failed))
        .count()
        .await;
    let wall = secs(t);
    if failures > 0 {
        return Err(format!("paced stream: {failures} of {n} writes failed"));
    }
    finish_paced(sim, &client, wall).await
}

/// Scenario 4. `client_requests` (default: the simulator's) paces the client below the limit.
pub async fn pacing(
    results: &Path,
    runs: usize,
    stream_runs: usize,
    employees: usize,
    writes: usize,
    client_requests: Option<u32>,
) -> Result<(), String> {
    let limit = RateLimit { requests: 20, per_seconds: 2 };
    let latency_ms = 20;
    let client_requests = client_requests.unwrap_or(limit.requests);
    let r = f64::from(limit.requests) / limit.per_seconds as f64;
    let burst = f64::from(client_requests.min(limit.requests));
    let client_note = if client_requests == limit.requests {
        String::from("client at the same R")
    } else {
        format!("client at {client_requests} req / {} s", limit.per_seconds)
    };
    let scenario = format!(
        "4. pacing: simulator at R = {} req / {} s ({r} req/s, burst {}), {latency_ms} ms latency, {client_note}",
        limit.requests, limit.per_seconds, limit.requests
    );
    let s = scenario.as_str();
    let mut m = Vec::new();
    let workloads: [(&str, usize); 2] =
        [("A: engine first import", employees), ("B: single POST /user stream", writes)];
    for (label, size) in workloads {
        let mut got = Vec::new();
        let n = if label.starts_with('A') { runs } else { stream_runs };
        for run in 0..n {
            let p = if label.starts_with('A') {
                paced_import(limit, client_requests, latency_ms, size).await?
            } else {
                paced_stream(limit, client_requests, latency_ms, size).await?
            };
            println!(
                "scenario 4: {label} run {}: {} accepted ({} job polls) in {:.1}s = {:.2} req/s, {} 429s",
                run + 1,
                p.accepted,
                p.polls,
                p.wall,
                p.rate(),
                p.rejected_429
            );
            got.push(p);
        }
        let what = if label.starts_with('A') {
            format!("{label} of {} employees", fmt_num(size as f64))
        } else {
            format!("{label} of {} writes, 4 in flight", fmt_num(size as f64))
        };
        let per_run = |f: &dyn Fn(&Paced) -> f64| -> Vec<f64> { got.iter().map(f).collect() };
        let accepted = per_run(&|p| p.accepted as f64);
        let floor = per_run(&|p| (p.accepted as f64 - burst).max(0.0) / r);
        let polls = per_run(&|p| p.polls as f64);
        let list = |f: &dyn Fn(&Paced) -> u64| got.iter().map(|p| f(p).to_string()).collect::<Vec<_>>().join(", ");
        m.push(Measurement::over(s, &format!("{what}: wall time"), "s", &per_run(&|p| p.wall)).note(format!(
            "{} requests served (median), {} of them job polls; floor (requests − burst) / R = {:.1} s",
            fmt_num(util::median(&accepted)),
            fmt_num(util::median(&polls)),
            util::median(&floor)
        )));
        m.push(
            Measurement::over(
                s,
                &format!("{what}: accepted req/s as % of R"),
                "%",
                &per_run(&|p| p.rate() / r * 100.0),
            )
            .target(">= 90", 90.0, true)
            .note("the initial burst counts too"),
        );
        // The ideal client sends its burst at once, then R per second: burst + R·t requests.
        m.push(Measurement::over(
            s,
            &format!("{what}: accepted as % of ideal (burst + R·t)"),
            "%",
            &per_run(&|p| p.accepted as f64 / (burst + r * p.wall) * 100.0),
        ));
        m.push(
            Measurement::over(
                s,
                &format!("{what}: 429s as % of requests"),
                "%",
                &per_run(&|p| p.rejected_429 as f64 * 100.0 / (p.accepted + p.rejected_429) as f64),
            )
            .target("near zero (<= 1)", 1.0, false)
            .note(format!(
                "429s per run: {}; client retries per run: {}",
                list(&|p| p.rejected_429),
                list(&|p| p.client_retries)
            )),
        );
    }
    util::save(results, "4-pacing", &m)?;
    Ok(())
}
