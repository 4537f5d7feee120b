//! The ingest's settings, from its environment (names as in template.yaml).

use std::path::PathBuf;

use shared::config::MappingConfig;
use shared::env::{Env, EnvError};
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
    /// This ingest's share of the NERM limit ([`Env::nerm_share_per_10s`]): its snapshot may
    /// run while provisioners apply another run.
    pub requests_per_10s: u32,
    /// The deployment's whole limit: the ingest's pace while no run is being provisioned (the
    /// work queue is empty), so that a rerun's snapshot is not held to a share nobody else uses.
    pub limit_per_10s: u32,
    /// A mapping config in the bucket instead of the packaged one.
    pub config_s3_key: Option<String>,
    /// Where the uploaded file is downloaded to (Lambda's `/tmp`).
    pub work_dir: PathBuf,
}

impl Config {
    pub fn from_env() -> Result<Config, EnvError> {
        Config::from_vars(&Env::process())
    }

    pub fn from_vars(env: &Env) -> Result<Config, EnvError> {
        let settings = Settings::from_vars(env)?;
        Ok(Config {
            bucket: env.var("BUCKET_NAME")?,
            queue_url: env.var("QUEUE_URL")?,
            topic_arn: env.var("SUMMARY_TOPIC_ARN")?,
            secret_id: env.var("NERM_SECRET_ID")?,
            settings,
            requests_per_10s: env.nerm_share_per_10s()?,
            limit_per_10s: env.number("NERM_REQUESTS_PER_10S", 100)?.max(1),
            config_s3_key: env.var_opt("CONFIG_S3_KEY"),
            work_dir: PathBuf::from(env.var_or("WORK_DIR", "/tmp")),
        })
    }

    /// The ingest's pace for a work queue holding `backlog` messages (`None`: unknown): the whole
    /// limit when nothing is being provisioned, else its share.
    pub fn pace_per_10s(&self, backlog: Option<u64>) -> u32 {
        match backlog {
            Some(0) => self.limit_per_10s,
            _ => self.requests_per_10s,
        }
    }

    /// The mapping config: from the bucket when `CONFIG_S3_KEY` is set, else the packaged one.
    pub fn mapping(text: &str, origin: &str) -> Result<MappingConfig, String> {
        MappingConfig::from_toml_str(text).map_err(|e| format!("mapping config {origin}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn required() -> HashMap<&'static str, &'static str> {
        HashMap::from([
            ("BUCKET_NAME", "hr-bucket"),
            ("QUEUE_URL", "https://sqs.eu-west-1.amazonaws.com/123456789012/work"),
            ("SUMMARY_TOPIC_ARN", "arn:aws:sns:eu-west-1:123456789012:runs"),
            ("NERM_SECRET_ID", "nerm/secret"),
        ])
    }

    fn config(vars: &HashMap<&str, &str>) -> Result<Config, EnvError> {
        Config::from_vars(&Env::from_fn(|name| vars.get(name).map(|v| v.to_string())))
    }

    #[test]
    fn only_the_resource_names_are_required_and_the_rest_take_the_template_defaults() {
        let cfg = config(&required()).expect("a config");
        assert_eq!(cfg.bucket, "hr-bucket");
        assert_eq!(cfg.settings, Settings::default());
        assert_eq!(cfg.work_dir, PathBuf::from("/tmp"));
        assert_eq!(cfg.config_s3_key, None);
        // 100 requests per 10 s over 4 provisioners and 1 ingest, while a run is provisioned.
        assert_eq!(cfg.requests_per_10s, 20);
    }

    #[test]
    fn each_missing_or_blank_required_variable_is_named_in_the_error() {
        for name in ["BUCKET_NAME", "QUEUE_URL", "SUMMARY_TOPIC_ARN", "NERM_SECRET_ID"] {
            let mut vars = required();
            vars.remove(name);
            let missing = config(&vars).unwrap_err();
            assert_eq!(missing, EnvError::Missing { name: name.to_string() });
            assert_eq!(missing.to_string(), format!("environment variable {name} is not set"));
            vars.insert(name, "  ");
            assert_eq!(config(&vars).unwrap_err().to_string(), format!("environment variable {name} is not set"));
        }
    }

    #[test]
    fn a_malformed_number_is_an_error_naming_the_variable_and_the_value() {
        for name in
            ["NERM_REQUESTS_PER_10S", "PROVISIONER_MAX_CONCURRENCY", "INGEST_RESERVED_CONCURRENCY", "ITEMS_PER_MESSAGE"]
        {
            let mut vars = required();
            vars.insert(name, "10/s");
            assert_eq!(
                config(&vars).unwrap_err().to_string(),
                format!("environment variable {name} must be a whole number, got \"10/s\""),
            );
        }
    }

    #[test]
    fn the_ingest_paces_to_its_share_of_the_deployment_limit() {
        let mut vars = required();
        vars.extend([("NERM_REQUESTS_PER_10S", "250"), ("PROVISIONER_MAX_CONCURRENCY", "4")]);
        assert_eq!(config(&vars).unwrap().requests_per_10s, 50);
        vars.insert("NERM_REQUESTS_PER_10S", "3");
        assert_eq!(config(&vars).unwrap().requests_per_10s, 1, "never zero");
    }

    #[test]
    fn the_ingest_takes_the_whole_limit_only_while_no_run_is_being_provisioned() {
        let mut vars = required();
        vars.extend([("NERM_REQUESTS_PER_10S", "100"), ("PROVISIONER_MAX_CONCURRENCY", "4")]);
        let cfg = config(&vars).unwrap();
        assert_eq!(cfg.pace_per_10s(Some(0)), 100, "an empty work queue: nobody else calls NERM");
        assert_eq!(cfg.pace_per_10s(Some(3)), 20, "a run is being provisioned: the ingest's share");
        assert_eq!(cfg.pace_per_10s(None), 20, "unknown: the share");
    }

    #[test]
    fn set_variables_override_the_defaults() {
        let mut vars = required();
        vars.extend([
            ("INPUT_PREFIX", "hr/in/"),
            ("ITEMS_PER_MESSAGE", "10"),
            ("WORK_DIR", "/mnt/scratch"),
            ("CONFIG_S3_KEY", "config/mapping.toml"),
        ]);
        let cfg = config(&vars).unwrap();
        assert_eq!(cfg.settings.input_prefix, "hr/in/");
        assert_eq!(cfg.settings.items_per_message, 10);
        assert_eq!(cfg.work_dir, PathBuf::from("/mnt/scratch"));
        assert_eq!(cfg.config_s3_key.as_deref(), Some("config/mapping.toml"));
    }
}
