//! `local-invoke`: `sam local invoke` without Docker. Runs a function's real binary (as built by
//! `cargo build -p csv-ingest -p nerm-provisioner`) against a local Lambda Runtime API, with the
//! function's variables from a SAM `env.json`, invokes it with an event file as it is, prints
//! the function's answer on stdout (its logs on stderr) and exits 0 if it answered, 1 if it
//! failed.
//!
//! ```sh
//! cargo build -p csv-ingest -p nerm-provisioner -p lambda-tests --bin local-invoke
//! target/debug/local-invoke CsvIngestFunction infra/events/s3-put.json --env-vars infra/env.json
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use lambda_tests::runtime_api::{Answer, Function, RuntimeApi};

#[derive(Parser)]
#[command(name = "local-invoke", about = "Invoke a function binary with an event through a local Lambda Runtime API")]
struct Cli {
    /// The function's logical id in template.yaml: CsvIngestFunction or NermProvisionerFunction.
    function: String,
    /// The event (JSON), passed to the function byte for byte, e.g. infra/events/s3-put.json.
    event: PathBuf,
    /// SAM's per-function variables file (the same as `sam local invoke --env-vars`).
    #[arg(long, default_value = "infra/env.json")]
    env_vars: PathBuf,
    /// The function binary; by default the one cargo built next to this program.
    #[arg(long)]
    bin: Option<PathBuf>,
    /// How long the invocation may take (the template's timeouts are 900 s and 300 s).
    #[arg(long, default_value_t = 900)]
    timeout_seconds: u64,
}

/// The binary of each function (template.yaml's `BuildProperties.Binary`).
fn binary_of(function: &str) -> Result<&'static str, String> {
    match function {
        "CsvIngestFunction" => Ok("csv-ingest"),
        "NermProvisionerFunction" => Ok("nerm-provisioner"),
        other => Err(format!("unknown function {other:?}: CsvIngestFunction or NermProvisionerFunction")),
    }
}

/// The function's variables from a SAM env.json (`{"Function": {"NAME": "value"}}`).
fn variables_of(path: &PathBuf, function: &str) -> Result<BTreeMap<String, String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let all: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    all.get(function).cloned().ok_or_else(|| format!("{} has no variables for {function}", path.display()))
}

async fn invoke(cli: &Cli) -> Result<Answer, String> {
    let exe = match &cli.bin {
        Some(path) => path.clone(),
        None => {
            let me = std::env::current_exe().map_err(|e| e.to_string())?;
            me.with_file_name(binary_of(&cli.function)?)
        }
    };
    if !exe.is_file() {
        return Err(format!(
            "{} does not exist: build it first (cargo build -p {})",
            exe.display(),
            binary_of(&cli.function)?
        ));
    }
    let variables = variables_of(&cli.env_vars, &cli.function)?;
    let event = std::fs::read(&cli.event).map_err(|e| format!("cannot read {}: {e}", cli.event.display()))?;
    let api = RuntimeApi::start().await.map_err(|e| format!("cannot start the Runtime API: {e}"))?;
    let mut function = Function::start(&exe, &cli.function, &api, &variables)
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let answer = api.invoke(&mut function, event, Duration::from_secs(cli.timeout_seconds)).await;
    eprint!("{}", function.log());
    answer
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match invoke(&cli).await {
        Ok(Answer::Response(v)) => {
            println!("{v}");
            ExitCode::SUCCESS
        }
        Ok(Answer::Error(v)) => {
            println!("{v}");
            eprintln!("local-invoke: {} failed", cli.function);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("local-invoke: {e}");
            ExitCode::FAILURE
        }
    }
}
