//! The provisioner's settings, from its environment (names as in template.yaml).

use shared::env::{number, var};
use shared::pipeline::Settings;

#[derive(Debug, Clone)]
pub struct Config {
    pub bucket: String,
    pub queue_url: String,
    pub topic_arn: String,
    pub secret_id: String,
    pub settings: Settings,
    /// This worker's share of the NERM limit: the deployment's requests per 10 s divided by the
    /// number of workers SQS may run at once (the event source's maximum concurrency).
    pub requests_per_10s: u32,
    /// The queue's redrive limit: on that receive, failures are reported before the DLQ.
    pub max_receive_count: u32,
}

impl Config {
    pub fn from_env() -> Result<Config, String> {
        let settings = Settings::from_env()?;
        let total = number("NERM_REQUESTS_PER_10S", 100)?.max(1);
        let workers = number("PROVISIONER_MAX_CONCURRENCY", 2)?.max(1);
        Ok(Config {
            bucket: var("BUCKET_NAME")?,
            queue_url: var("QUEUE_URL")?,
            topic_arn: var("SUMMARY_TOPIC_ARN")?,
            secret_id: var("NERM_SECRET_ID")?,
            settings,
            requests_per_10s: (total / workers).max(1),
            max_receive_count: number("MAX_RECEIVE_COUNT", 5)?.max(1),
        })
    }
}
