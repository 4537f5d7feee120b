//! `nerm-sync`: run the import engine from a shell (wiring only).
//!
//! Exit codes: 0 every row done, 2 some rows rejected or failed, 1 the run did not start,
//! 64 a usage error (`EX_USAGE` of sysexits.h; clap's own 2 would read as a partial import).
//! `check` exits 0 when the mapping can run against the tenant, 1 when it cannot.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shared::config::MappingConfig;
use shared::nerm::{
    AccessTokens, ClientOptions, NermClient, PatSource, SecretOrigin, SecretToken, StaticToken, TokenProvider,
};
use shared::report::{ReportSink, Summary};
use shared::report_page::ListedRows;

#[derive(Parser)]
#[command(name = "nerm-sync", version, about = "Sync an HR employee CSV into SailPoint NERM")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate, snapshot NERM and report what would change; writes nothing to NERM.
    Plan(Args),
    /// Plan, then apply the changes to NERM.
    Apply(Args),
    /// Preflight: do the credentials work, and does the mapping fit this tenant? A few NERM
    /// requests whatever the tenant's size; exit 0 when the mapping can run, 1 when it cannot.
    Check(Connection),
}

#[derive(clap::Args)]
struct Args {
    /// The HR export (CSV).
    #[arg(long)]
    csv: PathBuf,
    /// Where report.jsonl, report.csv, summary.json and report.html are written.
    #[arg(long)]
    report_dir: PathBuf,
    #[command(flatten)]
    connection: Connection,
}

/// The mapping and how to reach NERM: what `check` needs, and what a run needs besides its files.
#[derive(clap::Args)]
struct Connection {
    /// The mapping config (TOML), e.g. infra/config/example.toml.
    #[arg(long)]
    config: PathBuf,
    /// NERM API base URL, e.g. https://acme.nonemployee.com/api (http only for loopback).
    #[arg(long)]
    nerm_url: String,
    /// Read the legacy API key from this file instead of the NERM_TOKEN environment variable.
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Authenticate with an ISC personal access token exchanged at this URL, e.g.
    /// https://acme.api.identitynow.com/oauth/token; the client id comes from NERM_CLIENT_ID,
    /// the secret from NERM_CLIENT_SECRET or --client-secret-file.
    #[arg(long)]
    token_url: Option<String>,
    /// Read the PAT's client secret from this file (re-read if the secret is refused).
    #[arg(long, requires = "token_url")]
    client_secret_file: Option<PathBuf>,
}

/// The command line was wrong (unknown flag, missing argument): nothing was read or written.
const EXIT_USAGE: u8 = 64;

/// Prints clap's message; `--help` and `--version` are not errors and exit 0.
fn usage_error(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() { ExitCode::from(EXIT_USAGE) } else { ExitCode::SUCCESS }
}

fn fail(msg: String) -> ExitCode {
    eprintln!("nerm-sync: {msg}");
    ExitCode::from(1)
}

/// The Bearer tokens of the run: a PAT when `--token-url` is given, else the legacy API key.
fn credentials(args: &Connection) -> Result<Arc<dyn TokenProvider>, String> {
    let env = |name: &str| std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let Some(token_url) = &args.token_url else {
        if env("NERM_CLIENT_ID").is_some() {
            return Err("NERM_CLIENT_ID is set but --token-url is missing (where to exchange the PAT)".into());
        }
        return match &args.token_file {
            Some(path) => Ok(Arc::new(StaticToken::from_file(path).map_err(|e| e.to_string())?)),
            None => match env("NERM_TOKEN") {
                Some(t) => Ok(Arc::new(StaticToken::new(SecretToken::new(t)))),
                None => Err("no credentials: set NERM_TOKEN or pass --token-file (legacy API key), or set \
                     NERM_CLIENT_ID and NERM_CLIENT_SECRET with --token-url (ISC personal access token)"
                    .into()),
            },
        };
    };
    let client_id = env("NERM_CLIENT_ID").ok_or("--token-url needs the PAT's client id in NERM_CLIENT_ID")?;
    let secret = match (&args.client_secret_file, env("NERM_CLIENT_SECRET")) {
        (Some(path), _) => SecretOrigin::File(path.clone()),
        (None, Some(s)) => SecretOrigin::Value(SecretToken::new(s)),
        (None, None) => return Err("--token-url needs NERM_CLIENT_SECRET or --client-secret-file".into()),
    };
    let source = PatSource::new(token_url, &client_id, secret).map_err(|e| e.to_string())?;
    let tokens = AccessTokens::new(Arc::new(source), Duration::from_secs(30)).map_err(|e| e.to_string())?;
    Ok(Arc::new(tokens))
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let done = match cli.command {
        Command::Plan(a) => run(&a, true).await,
        Command::Apply(a) => run(&a, false).await,
        Command::Check(c) => check(&c).await,
    };
    done.unwrap_or_else(fail)
}

/// The mapping config and a NERM client with the run's credentials; nothing is sent yet.
fn connect(c: &Connection) -> Result<(MappingConfig, NermClient), String> {
    let text = std::fs::read_to_string(&c.config)
        .map_err(|e| format!("cannot read the config {}: {e}", c.config.display()))?;
    let config = MappingConfig::from_toml_str(&text).map_err(|e| format!("{}: {e}", c.config.display()))?;
    let tokens = credentials(c)?;
    let client =
        NermClient::new(&c.nerm_url, tokens, ClientOptions::from_mapping(&config.nerm)).map_err(|e| e.to_string())?;
    Ok((config, client))
}

/// `plan` / `apply`: the engine's run, its report written into the report directory.
async fn run(args: &Args, dry_run: bool) -> Result<ExitCode, String> {
    let (config, client) = connect(&args.connection)?;
    let dir = &args.report_dir;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let create = |name: &str| File::create(dir.join(name)).map(BufWriter::new);
    let (jsonl, csv) = create("report.jsonl")
        .and_then(|j| Ok((j, create("report.csv")?)))
        .map_err(|e| format!("cannot write the report in {}: {e}", dir.display()))?;
    let run_id = format!("cli-{}", std::process::id());
    let mut sink = ReportSink::new(run_id, dry_run, jsonl, csv, Vec::new()).map_err(|e| e.to_string())?;
    let progress = |msg: &str| eprintln!("nerm-sync: {msg}");
    let options = shared::engine::run::RunOptions::new(dry_run);
    shared::engine::run(|| File::open(&args.csv), &config, &client, &mut sink, options, &progress)
        .await
        .map_err(|e| e.to_string())?;
    let listed = sink.take_listed();
    let summary = sink.finish().map_err(|e| format!("writing the report failed: {e}"))?;
    write_summary_and_page(dir, &summary, &args.csv.display().to_string(), &listed)?;
    eprintln!("{summary}");
    eprintln!("nerm-sync: report in {}", dir.display());
    Ok(ExitCode::from(summary.exit_code() as u8))
}

/// `summary.json` and `report.html` beside the rows already streamed out.
fn write_summary_and_page(dir: &Path, summary: &Summary, source: &str, listed: &ListedRows) -> Result<(), String> {
    std::fs::write(dir.join("summary.json"), summary.to_json_pretty())
        .map_err(|e| format!("writing summary.json failed: {e}"))?;
    let html = shared::report_page::render(summary, source, listed).map_err(|e| format!("report.html: {e}"))?;
    std::fs::write(dir.join("report.html"), html).map_err(|e| format!("writing report.html failed: {e}"))
}

/// `check`: the preflight's verdict per item on stdout; exit 0 when the mapping can run.
async fn check(c: &Connection) -> Result<ExitCode, String> {
    let (config, client) = connect(c)?;
    let report = shared::engine::check::preflight(&config, &client).await;
    println!("{report}");
    eprintln!("nerm-sync: {} NERM requests", client.stats().total_requests());
    Ok(if report.can_run() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
