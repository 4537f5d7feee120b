//! The provisioner's settings, from its environment (names as in template.yaml).

use shared::env::{Env, EnvError};
use shared::pipeline::Settings;

#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub queue_url: String,
    pub topic_arn: String,
    pub secret_id: String,
    pub settings: Settings,
    /// This worker's share of the NERM limit: the deployment's requests per 10 s divided by the
    /// event source's maximum concurrency, so the provisioners together use all of it. Nothing
    /// is set aside for the ingest: its reads come before its own run's messages exist, so they
    /// only ever overlap another run's provisioning, for the length of a snapshot, and NERM's
    /// 429s (with `Retry-After`, which the client honours) pace that overlap.
    pub requests_per_10s: u32,
    /// The queue's redrive limit: on that receive, failures are reported before the DLQ.
    pub max_receive_count: u32,
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
            requests_per_10s: share_per_10s(env)?,
            max_receive_count: env.number("MAX_RECEIVE_COUNT", 5)?.max(1),
        })
    }
}

/// See [`Config::requests_per_10s`].
fn share_per_10s(env: &Env) -> Result<u32, EnvError> {
    let total = env.number("NERM_REQUESTS_PER_10S", 100)?.max(1);
    let provisioners = env.number("PROVISIONER_MAX_CONCURRENCY", 4)?.max(1);
    Ok((total / provisioners).max(1))
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
        assert_eq!(cfg.queue_url, "https://sqs.eu-west-1.amazonaws.com/123456789012/work");
        assert_eq!(cfg.settings, Settings::default());
        assert_eq!(cfg.max_receive_count, 5);
        assert_eq!(cfg.requests_per_10s, 25);
    }

    #[test]
    fn each_missing_or_blank_required_variable_is_named_in_the_error() {
        for name in ["BUCKET_NAME", "QUEUE_URL", "SUMMARY_TOPIC_ARN", "NERM_SECRET_ID"] {
            let mut vars = required();
            vars.remove(name);
            let missing = config(&vars).unwrap_err();
            assert_eq!(missing, EnvError::Missing { name: name.to_string() });
            assert_eq!(missing.to_string(), format!("environment variable {name} is not set"));
            vars.insert(name, "");
            assert_eq!(config(&vars).unwrap_err().to_string(), format!("environment variable {name} is not set"));
        }
    }

    #[test]
    fn a_malformed_number_is_an_error_naming_the_variable_and_the_value() {
        for name in ["NERM_REQUESTS_PER_10S", "PROVISIONER_MAX_CONCURRENCY", "MAX_RECEIVE_COUNT", "ITEMS_PER_MESSAGE"] {
            let mut vars = required();
            vars.insert(name, "-1");
            assert_eq!(
                config(&vars).unwrap_err().to_string(),
                format!("environment variable {name} must be a whole number, got \"-1\""),
            );
        }
    }

    #[test]
    fn the_workers_together_pace_to_the_whole_limit() {
        let mut vars = required();
        vars.extend([("NERM_REQUESTS_PER_10S", "100"), ("PROVISIONER_MAX_CONCURRENCY", "4")]);
        assert_eq!(config(&vars).unwrap().requests_per_10s, 25);
        vars.insert("NERM_REQUESTS_PER_10S", "3");
        assert_eq!(config(&vars).unwrap().requests_per_10s, 1, "never zero");
    }
}
