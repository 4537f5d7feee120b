//! Handles an S3 event: every record whose key is an input CSV becomes (at most) one run.

use std::sync::Arc;

use aws_lambda_events::event::s3::S3Event;
use serde_json::{Value, json};
use shared::aws::Adapters;
use shared::config::MappingConfig;
pub use shared::lambda::HandlerError;
use shared::nerm::{ClientOptions, NermClient, TokenProvider};
use shared::pipeline::ingest::Upload;
use shared::pipeline::ingest::decode_s3_key;
use shared::pipeline::{IngestOutcome, Pipeline, ingest};
use shared::ports::{ObjectStore, WorkQueue};

use crate::config::{Config, PACKAGED_CONFIG};

pub struct Deps {
    pub cfg: Config,
    pub aws: Adapters,
}

impl Deps {
    pub async fn from_config(cfg: Config) -> Result<Deps, String> {
        Deps::with_sdk(cfg, &shared::aws::sdk_config().await)
    }

    /// Builds the clients from an explicit SDK config (tests point it at moto).
    pub fn with_sdk(cfg: Config, sdk: &aws_config::SdkConfig) -> Result<Deps, String> {
        let aws = Adapters::new(sdk, &cfg.bucket, &cfg.queue_url, &cfg.topic_arn, &cfg.secret_id)
            .map_err(|e| e.to_string())?;
        Ok(Deps { cfg, aws })
    }

    async fn mapping(&self) -> Result<MappingConfig, HandlerError> {
        match &self.cfg.config_s3_key {
            None => Config::mapping(PACKAGED_CONFIG, "(packaged)")
                .map_err(|m| HandlerError { retryable: false, message: m }),
            Some(key) => {
                let bytes = self
                    .aws
                    .store
                    .get(key)
                    .await
                    .map_err(|e| HandlerError { retryable: e.retryable, message: e.to_string() })?
                    .ok_or_else(|| HandlerError {
                        retryable: false,
                        message: format!("mapping config s3://{}/{key} does not exist", self.cfg.bucket),
                    })?;
                let text = String::from_utf8(bytes).map_err(|_| HandlerError {
                    retryable: false,
                    message: format!("mapping config {key} is not UTF-8"),
                })?;
                Config::mapping(&text, key).map_err(|m| HandlerError { retryable: false, message: m })
            }
        }
    }

    /// The whole limit while no run is being provisioned (an empty work queue), else the share
    /// that leaves the rest to the provisioners. SQS's counts are approximate: a run that starts
    /// meanwhile gets 429s (honoured with `Retry-After`) for the length of this snapshot.
    async fn pace_per_10s(&self) -> u32 {
        let backlog = self.aws.queue.backlog().await;
        if let Err(e) = &backlog {
            tracing::warn!(error = %e, "could not read the work queue's backlog; pacing to the ingest's share");
        }
        self.cfg.pace_per_10s(backlog.ok())
    }

    async fn client(&self, mapping: &MappingConfig) -> Result<NermClient, HandlerError> {
        let (url, _) =
            self.aws.secret.read().await.map_err(|e| HandlerError { retryable: false, message: e.to_string() })?;
        let n = &mapping.nerm;
        let mut opts = ClientOptions::from_mapping(n);
        // The deployment's limit wins over the mapping config's, whichever is lower.
        let per_10s = self.pace_per_10s().await;
        opts.requests_per_window = n.requests_per_window.min(per_10s * n.window().as_secs().max(1) as u32 / 10).max(1);
        let tokens: Arc<dyn TokenProvider> = self.aws.tokens.clone();
        NermClient::new(&url, tokens, opts).map_err(|e| HandlerError { retryable: false, message: e.to_string() })
    }
}

/// [`handle_invocation`] as a new invocation (a fresh request id).
pub async fn handle(deps: &Deps, event: S3Event) -> Result<Value, HandlerError> {
    handle_invocation(deps, event, &format!("local-{:016x}", rand::random::<u64>())).await
}

/// Takes on every record; a retryable failure fails the invocation (Lambda retries the event,
/// and the run's marker makes the records already taken on no-ops). `request_id` is the Lambda
/// request id, the same on Lambda's own retries of this invocation.
pub async fn handle_invocation(deps: &Deps, event: S3Event, request_id: &str) -> Result<Value, HandlerError> {
    let mut outcomes = Vec::new();
    let mut retry: Option<String> = None;
    for record in event.records {
        let bucket = record.s3.bucket.name.clone().unwrap_or_default();
        let Some(raw_key) = record.s3.object.key.clone() else {
            tracing::warn!(%bucket, "an S3 record without an object key was rejected");
            outcomes.push(json!({ "key": null, "outcome": "rejected", "reason": "the S3 record has no object key" }));
            continue;
        };
        if bucket != deps.cfg.bucket {
            tracing::warn!(%bucket, "a record for another bucket was ignored");
            outcomes.push(json!({ "key": raw_key, "outcome": "ignored", "reason": "another bucket" }));
            continue;
        }
        // Only uploads start a run (the stack subscribes to ObjectCreated only; anything else is
        // a misrouted event, and a removed object cannot be read anyway).
        if let Some(name) = record.event_name.as_deref().filter(|n| !n.starts_with("ObjectCreated:")) {
            tracing::warn!(key = %raw_key, event = %name, "not an upload; ignored");
            outcomes.push(json!({ "key": raw_key, "outcome": { "ignored": format!("{name} is not an upload") } }));
            continue;
        }
        let key = match decode_s3_key(&raw_key) {
            Ok(k) => k,
            Err(e) => {
                tracing::error!(error = %e, "undecodable key");
                outcomes.push(json!({ "key": raw_key, "outcome": "rejected", "reason": e }));
                continue;
            }
        };
        let version = record
            .s3
            .object
            .version_id
            .clone()
            .filter(|v| !v.is_empty() && v != "null")
            .or_else(|| record.s3.object.e_tag.clone())
            .or_else(|| record.s3.object.sequencer.clone())
            .unwrap_or_default();
        if let Err(why) = shared::pipeline::ingest::accepts(&deps.cfg.settings, &key) {
            tracing::info!(key = %key, reason = %why, "not an input file; ignored");
            outcomes.push(json!({ "key": key, "outcome": { "ignored": why } }));
            continue;
        }
        let mapping = deps.mapping().await?;
        let client = deps.client(&mapping).await?;
        let pipeline = Pipeline {
            store: &deps.aws.store,
            queue: &deps.aws.queue,
            notifier: &deps.aws.notifier,
            settings: &deps.cfg.settings,
        };
        let upload = Upload { bucket: &bucket, key: &key, version_or_etag: &version, invocation: request_id };
        let result = ingest(&pipeline, &client, &mapping, upload, &deps.cfg.work_dir).await;
        let stats = client.stats();
        emit_metrics(&stats, &result);
        match result {
            Ok(o) => {
                tracing::info!(key = %key, outcome = ?o, "ingest done");
                outcomes.push(json!({ "key": key, "outcome": describe(&o) }));
            }
            Err(e) if e.is_retryable() => {
                tracing::error!(key = %key, error = %e, "ingest failed; the event will be retried");
                retry.get_or_insert(e.to_string());
            }
            Err(e) => {
                tracing::error!(key = %key, error = %e, "ingest rejected the file");
                outcomes.push(json!({ "key": key, "outcome": "rejected", "reason": e.to_string() }));
            }
        }
    }
    match retry {
        Some(message) => Err(HandlerError { retryable: true, message }),
        None => Ok(json!({ "records": outcomes })),
    }
}

fn describe(o: &IngestOutcome) -> Value {
    match o {
        IngestOutcome::Ignored(why) => json!({ "ignored": why }),
        IngestOutcome::Duplicate { run_id } => json!({ "duplicate": run_id }),
        IngestOutcome::Started { run_id, messages, rows } => {
            json!({ "started": run_id, "messages": messages, "rows": rows })
        }
        IngestOutcome::Finished { run_id, rows } => json!({ "finished": run_id, "rows": rows }),
        IngestOutcome::Quarantined { run_id, reason } => json!({ "quarantined": run_id, "reason": reason }),
    }
}

/// Rows and NERM requests of the run, as CloudWatch metrics.
fn emit_metrics(stats: &shared::nerm::ClientStats, result: &Result<IngestOutcome, shared::pipeline::IngestError>) {
    let rows = match result {
        Ok(IngestOutcome::Started { rows, .. } | IngestOutcome::Finished { rows, .. }) => *rows,
        _ => 0,
    };
    shared::env::emit_metrics(
        "csv-ingest",
        &[("RowsIngested", rows), ("NermRequests", stats.total_requests()), ("NermThrottled", stats.rate_limited)],
    );
}
