//! How many requests per second the simulator sustains on this machine (a benchmark: it prints
//! numbers, it asserts nothing). Run: `cargo run --release -p nerm-sim --example throughput`.
//!
//! Starts a simulator in-process (no rate limit, no faults, spec checking on and off), then for
//! a fixed time drives it over loopback HTTP with C concurrent clients doing a realistic mix:
//! `GET /users?login=` lookups, paged `GET /profiles` reads and `POST /user` creates.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nerm_sim::{Faults, Seed, SimConfig};

const SECONDS: u64 = 5;
const CLIENTS: usize = 16;

async fn run(spec_check: bool) -> (f64, u64) {
    let cfg = SimConfig {
        tokens: vec!["bench".into()],
        spec_check,
        faults: Faults { rate_limit: None, ..Faults::default() },
        ..SimConfig::default()
    };
    let sim = nerm_sim::start(cfg, &Seed::demo(), 0).await.expect("sim starts");
    let api = sim.api_url();
    let http = reqwest::Client::new();
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(SECONDS);
    let mut tasks = Vec::new();
    for c in 0..CLIENTS {
        let (http, api, done, errors) = (http.clone(), api.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let req = match i % 4 {
                    0 => http.post(format!("{api}/user")).json(&serde_json::json!({"user": {
                        "name": "Bench User", "email": "b@example.com", "type": "NeprofileUser",
                        "login": format!("bench-{c}-{i}")}})),
                    1 => http.get(format!("{api}/profiles?limit=100&metadata=true")),
                    _ => http.get(format!("{api}/users?login=bench-{c}-{}", i.saturating_sub(1))),
                };
                match req.bearer_auth("bench").send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let n = done.load(Ordering::Relaxed);
    sim.stop().await;
    (n as f64 / SECONDS as f64, errors.load(Ordering::Relaxed))
}

#[tokio::main]
async fn main() {
    println!(
        "nerm-sim throughput: {CLIENTS} concurrent clients, {SECONDS} s each, mix 50% login lookups / 25% profile pages / 25% creates"
    );
    for spec_check in [false, true] {
        let (rps, errors) = run(spec_check).await;
        println!("spec_check={spec_check:<5}  {rps:>8.0} requests/s  ({errors} errors)");
    }
}
