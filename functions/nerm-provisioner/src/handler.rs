//! Handles an SQS batch: each message is one part of a run; failures are reported per message
//! (`ReportBatchItemFailures`), so one bad message never makes SQS redeliver the others.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use shared::aws::Adapters;
/// A failure of the whole invocation (every message of the batch is retried).
pub use shared::lambda::HandlerError;
use shared::nerm::{ClientOptions, NermClient, TokenProvider};
use shared::pipeline::{Pipeline, ProvisionError, WorkMessage, provision};

use crate::config::Config;

pub struct Deps {
    pub cfg: Config,
    pub aws: Adapters,
    /// The NERM client warm invocations share (see [`ClientCache`]).
    pub nerm: ClientCache,
}

/// One NERM client per Lambda instance, kept across warm invocations: its rate limiter then
/// remembers what the previous invocations spent, where a client built per invocation starts
/// every batch with a full burst on top of them (the 429s of BENCHMARKS.md finding 9). A new
/// client is built only when the secret's URL changes.
#[derive(Default)]
pub struct ClientCache(Mutex<Option<(String, Arc<NermClient>)>>);

impl ClientCache {
    /// The client for `url`, built by `make` on first use or after the URL changed.
    pub fn get<E>(&self, url: &str, make: impl FnOnce() -> Result<NermClient, E>) -> Result<Arc<NermClient>, E> {
        let mut cached = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_url, client)) = cached.as_ref()
            && cached_url == url
        {
            return Ok(client.clone());
        }
        let client = Arc::new(make()?);
        *cached = Some((url.to_owned(), client.clone()));
        Ok(client)
    }
}

impl Deps {
    fn pipeline(&self) -> Pipeline<'_, shared::aws::S3Store, shared::aws::SqsQueue, shared::aws::SnsNotifier> {
        Pipeline {
            store: &self.aws.store,
            queue: &self.aws.queue,
            notifier: &self.aws.notifier,
            settings: &self.cfg.settings,
        }
    }

    pub async fn from_config(cfg: Config) -> Result<Deps, String> {
        Deps::with_sdk(cfg, &shared::aws::sdk_config().await)
    }

    /// Builds the clients from an explicit SDK config (tests point it at moto).
    pub fn with_sdk(cfg: Config, sdk: &aws_config::SdkConfig) -> Result<Deps, String> {
        let aws = Adapters::new(sdk, &cfg.bucket, &cfg.queue_url, &cfg.topic_arn, &cfg.secret_id)
            .map_err(|e| e.to_string())?;
        Ok(Deps { cfg, aws, nerm: ClientCache::default() })
    }
}

pub async fn handle(deps: &Deps, event: SqsEvent) -> Result<SqsBatchResponse, HandlerError> {
    // Without an id SQS cannot be told which message failed: fail the whole batch instead, before
    // any of it is applied (its messages come back, and their work would be done twice).
    if let Some(at) = event.records.iter().position(|r| r.message_id.as_deref().is_none_or(str::is_empty)) {
        return Err(HandlerError {
            retryable: true,
            message: format!("SQS record {at} of the batch has no messageId; the batch was not processed"),
        });
    }
    let (url, _) =
        deps.aws.secret.read().await.map_err(|e| HandlerError { retryable: true, message: e.to_string() })?;
    let opts = ClientOptions {
        requests_per_window: deps.cfg.requests_per_10s,
        window: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let tokens: Arc<dyn TokenProvider> = deps.aws.tokens.clone();
    let client = deps
        .nerm
        .get(&url, || NermClient::new(&url, tokens, opts))
        .map_err(|e| HandlerError { retryable: false, message: e.to_string() })?;
    let before = client.stats();
    let pipeline = deps.pipeline();
    let mut failures = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let receives: u32 = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
        let last_attempt = receives >= deps.cfg.max_receive_count;
        let body = record.body.clone().unwrap_or_default();
        let msg = match WorkMessage::parse(&body) {
            Ok(m) => m,
            Err(e) => {
                // Never processable: fail it so the redrive policy moves it to the DLQ.
                tracing::error!(message_id = %id, receives, error = %e, "unusable message");
                failures.push(failure(id));
                continue;
            }
        };
        let (run, part) = (msg.run_id.clone(), msg.part.clone());
        match provision(&pipeline, &client, msg, last_attempt).await {
            Ok(()) => tracing::info!(message_id = %id, run_id = %run, part = %part, "part provisioned"),
            Err(e @ ProvisionError::AllFailed { .. }) => {
                tracing::warn!(message_id = %id, run_id = %run, part = %part, receives, error = %e, "part failed; SQS will retry it");
                failures.push(failure(id));
            }
            Err(e) => {
                tracing::error!(message_id = %id, run_id = %run, part = %part, error = %e, "part could not be recorded");
                failures.push(failure(id));
            }
        }
    }
    let stats = client.stats().since(&before);
    shared::env::emit_metrics(
        "nerm-provisioner",
        &[
            ("NermRequests", stats.total_requests()),
            ("NermThrottled", stats.rate_limited),
            ("NermRetries", stats.retries),
            ("FailedMessages", failures.len() as u64),
        ],
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    Ok(response)
}

fn failure(message_id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = message_id;
    f
}

#[cfg(test)]
mod tests {
    use shared::nerm::{SecretToken, StaticToken};

    use super::*;

    fn make(url: &str) -> impl FnOnce() -> Result<NermClient, shared::nerm::NermError> + '_ {
        move || {
            let tokens: Arc<dyn TokenProvider> = Arc::new(StaticToken::new(SecretToken::new("t")));
            NermClient::new(url, tokens, ClientOptions::default())
        }
    }

    #[test]
    fn warm_invocations_share_one_client_until_the_url_changes() {
        // GIVEN an instance's cache
        let cache = ClientCache::default();
        // WHEN three invocations ask for a client, the third after the secret's URL changed
        let first = cache.get("http://127.0.0.1:1/api", make("http://127.0.0.1:1/api")).unwrap();
        let second = cache.get("http://127.0.0.1:1/api", || -> Result<NermClient, shared::nerm::NermError> {
            panic!("a warm invocation must not build a client")
        });
        let third = cache.get("http://127.0.0.1:2/api", make("http://127.0.0.1:2/api")).unwrap();
        // THEN the first two share the client (and its rate limiter), the third has a new one
        assert!(Arc::ptr_eq(&first, &second.unwrap()));
        assert!(!Arc::ptr_eq(&first, &third));
    }
}
