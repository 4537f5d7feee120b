//! `nerm-sync`: run the import engine from a shell (wiring only).
//!
//! Exit codes: 0 every row done, 2 some rows rejected or failed, 1 the run did not start,
//! 64 a usage error (`EX_USAGE` of sysexits.h; clap's own 2 would read as a partial import).

use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shared::config::MappingConfig;
use shared::nerm::{
    AccessTokens, ClientOptions, NermClient, PatSource, SecretOrigin, SecretToken, StaticToken, TokenProvider,
};
use shared::report::ReportSink;

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
}

#[derive(clap::Args)]
struct Args {
    /// The HR export (CSV).
    #[arg(long)]
    csv: PathBuf,
    /// The mapping config (TOML), e.g. infra/config/example.toml.
    #[arg(long)]
    config: PathBuf,
    /// NERM API base URL, e.g. https://acme.nonemployee.com/api (http only for loopback).
    #[arg(long)]
    nerm_url: String,
    /// Where report.jsonl, report.csv, summary.json and report.html are written.
    #[arg(long)]
    report_dir: PathBuf,
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

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("nerm-sync: {msg}");
    ExitCode::from(1)
}

/// The Bearer tokens of the run: a PAT when `--token-url` is given, else the legacy API key.
fn credentials(args: &Args) -> Result<Arc<dyn TokenProvider>, String> {
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
    let (dry_run, args) = match cli.command {
        Command::Plan(a) => (true, a),
        Command::Apply(a) => (false, a),
    };
    let config_text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => return fail(format!("cannot read the config {}: {e}", args.config.display())),
    };
    let config = match MappingConfig::from_toml_str(&config_text) {
        Ok(c) => c,
        Err(e) => return fail(format!("{}: {e}", args.config.display())),
    };
    let tokens = match credentials(&args) {
        Ok(t) => t,
        Err(e) => return fail(e),
    };
    let opts = ClientOptions::from_mapping(&config.nerm);
    let client = match NermClient::new(&args.nerm_url, tokens, opts) {
        Ok(c) => c,
        Err(e) => return fail(e),
    };
    if let Err(e) = std::fs::create_dir_all(&args.report_dir) {
        return fail(format!("cannot create {}: {e}", args.report_dir.display()));
    }
    let create = |name: &str| File::create(args.report_dir.join(name)).map(BufWriter::new);
    let (jsonl, csv) = match (create("report.jsonl"), create("report.csv")) {
        (Ok(j), Ok(c)) => (j, c),
        (Err(e), _) | (_, Err(e)) => {
            return fail(format!("cannot write the report in {}: {e}", args.report_dir.display()));
        }
    };
    let run_id = format!("cli-{}", std::process::id());
    let mut sink = match ReportSink::new(run_id, dry_run, jsonl, csv, Vec::new()) {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    let csv_path = args.csv.clone();
    let progress = |msg: &str| eprintln!("nerm-sync: {msg}");
    let result = shared::engine::run(
        || File::open(&csv_path),
        &config,
        &client,
        &mut sink,
        shared::engine::run::RunOptions::new(dry_run),
        &progress,
    )
    .await;
    if let Err(e) = result {
        return fail(e);
    }
    let listed = sink.take_listed();
    let summary = match sink.finish() {
        Ok(s) => s,
        Err(e) => return fail(format!("writing the report failed: {e}")),
    };
    if let Err(e) = std::fs::write(args.report_dir.join("summary.json"), summary.to_json_pretty()) {
        return fail(format!("writing summary.json failed: {e}"));
    }
    let page = shared::report_page::render(&summary, &args.csv.display().to_string(), &listed);
    if let Err(e) = page
        .map_err(|e| e.to_string())
        .and_then(|html| std::fs::write(args.report_dir.join("report.html"), html).map_err(|e| e.to_string()))
    {
        return fail(format!("writing report.html failed: {e}"));
    }
    eprintln!("{summary}");
    eprintln!("nerm-sync: report in {}", args.report_dir.display());
    ExitCode::from(summary.exit_code() as u8)
}
