//! The ingest's settings, from its environment (names as in template.yaml).

use std::path::PathBuf;

use shared::config::MappingConfig;
use shared::pipeline::Settings;

/// The mapping config packaged with the function (replace the file, or set `CONFIG_S3_KEY`).
pub const PACKAGED_CONFIG: &str = include_str!("../../../infra/config/example.toml");

#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub queue_url: String,
    pub topic_arn: String,
    pub secret_id: String,
    pub settings: Settings,
    /// NERM requests per 10 s for the whole deployment; the ingest's reads use all of it.
    pub requests_per_10s: u32,
    /// A mapping config in the bucket instead of the packaged one.
    pub config_s3_key: Option<String>,
    pub work_dir: PathBuf,
}

fn var(name: &str) -> Result<String, String> {
    std::env::var(name)
        .map(|v| v.trim().to_string())
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("environment variable {name} is not set"))
}

fn var_or(name: &str, default: &str) -> String {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

pub fn number(name: &str, default: u32) -> Result<u32, String> {
    var_or(name, &default.to_string())
        .parse()
        .map_err(|_| format!("environment variable {name} must be a whole number"))
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let settings = Settings {
            input_prefix: var_or("INPUT_PREFIX", "incoming/"),
            report_prefix: var_or("REPORT_PREFIX", "reports/"),
            run_state_prefix: var_or("RUN_STATE_PREFIX", "runs/"),
            items_per_message: number("ITEMS_PER_MESSAGE", 25)? as usize,
            ..Settings::default()
        };
        Ok(Config {
            bucket: var("BUCKET_NAME")?,
            queue_url: var("QUEUE_URL")?,
            topic_arn: var("SUMMARY_TOPIC_ARN")?,
            secret_id: var("NERM_SECRET_ID")?,
            settings,
            requests_per_10s: number("NERM_REQUESTS_PER_10S", 100)?.max(1),
            config_s3_key: std::env::var("CONFIG_S3_KEY").ok().filter(|k| !k.trim().is_empty()),
            work_dir: PathBuf::from(var_or("WORK_DIR", "/tmp")),
        })
    }

    /// The mapping config: from the bucket when `CONFIG_S3_KEY` is set, else the packaged one.
    pub fn mapping(text: &str, origin: &str) -> Result<MappingConfig, String> {
        MappingConfig::from_toml_str(text).map_err(|e| format!("mapping config {origin}: {e}"))
    }
}
