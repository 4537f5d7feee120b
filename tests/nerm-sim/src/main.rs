//! `nerm-sim`: run the NERM simulator on 127.0.0.1 and print the URL it listens on.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use nerm_sim::{RateLimit, Seed, SimConfig};

#[derive(Parser, Debug)]
#[command(name = "nerm-sim", version, about = "A stateful SailPoint NERM API simulator (loopback only)")]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The API token clients must send (`Bearer <t>` or `Token token=<t>`); repeatable.
    #[arg(long = "token", env = "NERM_SIM_TOKEN", required_unless_present = "client_id")]
    tokens: Vec<String>,
    /// Serve `POST /oauth/token` and accept this PAT client id (with --client-secret).
    #[arg(long, requires = "client_secret")]
    client_id: Option<String>,
    /// The PAT client secret `POST /oauth/token` accepts.
    #[arg(long, env = "NERM_SIM_CLIENT_SECRET", hide_env_values = true, requires = "client_id")]
    client_secret: Option<String>,
    /// `expires_in` of the access tokens issued, in seconds.
    #[arg(long, default_value_t = 720)]
    token_lifetime_s: u64,
    /// A TOML file with `[behaviour]` and `[faults]` tables (see the README); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Start with no data instead of the demo tenant.
    #[arg(long)]
    empty: bool,
    /// Token bucket as REQUESTS/SECONDS (default 100/10); `off` disables it.
    #[arg(long)]
    rate_limit: Option<String>,
    /// Fixed latency added to every request, in milliseconds.
    #[arg(long)]
    latency_ms: Option<u64>,
    /// Probability (0..1) of a 5xx before processing.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Probability of a random 429.
    #[arg(long)]
    throttle_rate: Option<f64>,
    /// Probability of a response held for --slow-ms.
    #[arg(long)]
    slow_rate: Option<f64>,
    #[arg(long)]
    slow_ms: Option<u64>,
    /// Probability of a dropped connection.
    #[arg(long)]
    drop_rate: Option<f64>,
    /// Probability that a write is applied and then answered with a 500 or a reset.
    #[arg(long)]
    commit_then_fail_rate: Option<f64>,
    /// Seed for the fault dice (reproducible runs).
    #[arg(long)]
    fault_seed: Option<u64>,
}

fn build_config(args: &Args) -> Result<SimConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            toml::from_str::<SimConfig>(&text).map_err(|e| format!("{}: {e}", path.display()))?
        }
        None => SimConfig::default(),
    };
    cfg.tokens = args.tokens.clone();
    if let (Some(client_id), Some(client_secret)) = (&args.client_id, &args.client_secret) {
        let token_lifetime_s = args.token_lifetime_s;
        cfg.oauth = Some(nerm_sim::OAuthClient {
            client_id: client_id.clone(),
            client_secret: client_secret.clone(),
            token_lifetime_s,
        });
    }
    let f = &mut cfg.faults;
    if let Some(rl) = &args.rate_limit {
        f.rate_limit = parse_rate_limit(rl)?;
    }
    f.latency_ms = args.latency_ms.unwrap_or(f.latency_ms);
    f.error_rate = args.error_rate.unwrap_or(f.error_rate);
    f.throttle_rate = args.throttle_rate.unwrap_or(f.throttle_rate);
    f.slow_rate = args.slow_rate.unwrap_or(f.slow_rate);
    f.slow_ms = args.slow_ms.unwrap_or(f.slow_ms);
    f.drop_rate = args.drop_rate.unwrap_or(f.drop_rate);
    f.commit_then_fail_rate = args.commit_then_fail_rate.unwrap_or(f.commit_then_fail_rate);
    f.seed = args.fault_seed.or(f.seed);
    cfg.validate()?;
    Ok(cfg)
}

fn parse_rate_limit(s: &str) -> Result<Option<RateLimit>, String> {
    if s == "off" {
        return Ok(None);
    }
    let (r, p) = s.split_once('/').ok_or_else(|| format!("--rate-limit must be REQUESTS/SECONDS or off, got {s:?}"))?;
    let requests = r.trim().parse().map_err(|_| format!("--rate-limit: bad request count {r:?}"))?;
    let per_seconds = p.trim().parse().map_err(|_| format!("--rate-limit: bad seconds {p:?}"))?;
    Ok(Some(RateLimit { requests, per_seconds }))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let cfg = match build_config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("nerm-sim: {e}");
            return ExitCode::from(1);
        }
    };
    let seed = if args.empty { Seed::default() } else { Seed::demo() };
    let running = match nerm_sim::start(cfg, &seed, args.port).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("nerm-sim: {e}");
            return ExitCode::from(1);
        }
    };
    println!("nerm-sim listening on {}", running.api_url());
    if running.sim.config().oauth.is_some() {
        println!("nerm-sim token URL {}", running.token_url());
    }
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    ExitCode::SUCCESS
}
