//! The ingest's settings, from its environment (names as in template.yaml).

use std::path::PathBuf;

use shared::config::MappingConfig;
use shared::env::{number, var, var_opt, var_or};
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

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let settings = Settings::from_env()?;
        Ok(Config {
            bucket: var("BUCKET_NAME")?,
            queue_url: var("QUEUE_URL")?,
            topic_arn: var("SUMMARY_TOPIC_ARN")?,
            secret_id: var("NERM_SECRET_ID")?,
            settings,
            requests_per_10s: number("NERM_REQUESTS_PER_10S", 100)?.max(1),
            config_s3_key: var_opt("CONFIG_S3_KEY"),
            work_dir: PathBuf::from(var_or("WORK_DIR", "/tmp")),
        })
    }

    /// The mapping config: from the bucket when `CONFIG_S3_KEY` is set, else the packaged one.
    pub fn mapping(text: &str, origin: &str) -> Result<MappingConfig, String> {
        MappingConfig::from_toml_str(text).map_err(|e| format!("mapping config {origin}: {e}"))
    }
}
