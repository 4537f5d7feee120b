//! Handles an S3 event: every record whose key is an input CSV becomes (at most) one run.

use std::sync::{Arc, Mutex};

use aws_lambda_events::event::s3::{S3Event, S3EventRecord};
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
    /// The mapping and NERM client warm invocations share (see [`InstanceCache`]).
    cache: InstanceCache,
}

/// What one Lambda instance keeps across warm invocations: the parsed mapping config, and the
/// NERM client built for it. Like the provisioner's, a kept client's rate limiter remembers
/// what earlier runs spent, where a client per record would start each with a full burst on
/// top of them. The mapping's text is still read on every record (a changed config in the
/// bucket takes effect at once); it is parsed, and the client rebuilt, only when that text,
/// the secret's URL or the ingest's pace (see `Deps::pace_per_10s`) changed.
#[derive(Default)]
struct InstanceCache(Mutex<Option<Cached>>);

struct Cached {
    text: String,
    mapping: Arc<MappingConfig>,
    url: String,
    pace: u32,
    client: Arc<NermClient>,
}

impl InstanceCache {
    /// The mapping parsed from `text`, reused while the text is the same.
    fn mapping(
        &self,
        text: &str,
        parse: impl FnOnce() -> Result<MappingConfig, HandlerError>,
    ) -> Result<Arc<MappingConfig>, HandlerError> {
        if let Some(c) = self.lock().as_ref().filter(|c| c.text == text) {
            return Ok(c.mapping.clone());
        }
        Ok(Arc::new(parse()?))
    }

    /// The client for the mapping of `text`, `url` and `pace` (requests per 10 s), built by
    /// `make` unless the one kept was built for all three.
    fn client(
        &self,
        (text, url, pace): (&str, &str, u32),
        mapping: &Arc<MappingConfig>,
        make: impl FnOnce() -> Result<NermClient, HandlerError>,
    ) -> Result<Arc<NermClient>, HandlerError> {
        let mut cached = self.lock();
        if let Some(c) = cached.as_ref().filter(|c| c.text == text && c.url == url && c.pace == pace) {
            return Ok(c.client.clone());
        }
        let client = Arc::new(make()?);
        *cached = Some(Cached {
            text: text.to_owned(),
            mapping: mapping.clone(),
            url: url.to_owned(),
            pace,
            client: client.clone(),
        });
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Cached>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Deps {
    pub async fn from_config(cfg: Config) -> Result<Deps, String> {
        Deps::with_sdk(cfg, &shared::aws::sdk_config().await)
    }

    /// Builds the clients from an explicit SDK config (tests point it at moto).
    pub fn with_sdk(cfg: Config, sdk: &aws_config::SdkConfig) -> Result<Deps, String> {
        let aws = Adapters::new(sdk, &cfg.bucket, &cfg.queue_url, &cfg.topic_arn, &cfg.secret_id)
            .map_err(|e| e.to_string())?;
        Ok(Deps { cfg, aws, cache: InstanceCache::default() })
    }

    /// The mapping config and its NERM client for one run (kept per instance, see
    /// [`InstanceCache`]), the client's per-run counters reset.
    async fn mapping_and_client(&self) -> Result<(Arc<MappingConfig>, Arc<NermClient>), HandlerError> {
        let (text, origin) = self.mapping_text().await?;
        let mapping = self.cache.mapping(&text, || {
            Config::mapping(&text, &origin).map_err(|m| HandlerError { retryable: false, message: m })
        })?;
        let (url, _) =
            self.aws.secret.read().await.map_err(|e| HandlerError { retryable: false, message: e.to_string() })?;
        let pace = self.pace_per_10s().await;
        let client = self.cache.client((&text, &url, pace), &mapping, || self.client(&mapping, &url, pace))?;
        client.begin_run();
        Ok((mapping, client))
    }

    /// The mapping config's text and where it came from: the bucket when `CONFIG_S3_KEY` is
    /// set, else the packaged one.
    async fn mapping_text(&self) -> Result<(String, String), HandlerError> {
        let Some(key) = &self.cfg.config_s3_key else {
            return Ok((PACKAGED_CONFIG.to_owned(), "(packaged)".to_owned()));
        };
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
        let text = String::from_utf8(bytes)
            .map_err(|_| HandlerError { retryable: false, message: format!("mapping config {key} is not UTF-8") })?;
        Ok((text, key.clone()))
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

    fn client(&self, mapping: &MappingConfig, url: &str, per_10s: u32) -> Result<NermClient, HandlerError> {
        let n = &mapping.nerm;
        let mut opts = ClientOptions::from_mapping(n);
        // The deployment's limit wins over the mapping config's, whichever is lower.
        opts.requests_per_window = n.requests_per_window.min(per_10s * n.window().as_secs().max(1) as u32 / 10).max(1);
        let tokens: Arc<dyn TokenProvider> = self.aws.tokens.clone();
        NermClient::new(url, tokens, opts).map_err(|e| HandlerError { retryable: false, message: e.to_string() })
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
        match screen(deps, &record) {
            Err(outcome) => outcomes.push(outcome),
            Ok(upload) => match take_on(deps, &upload, request_id).await? {
                Ok(outcome) => outcomes.push(outcome),
                Err(retryable) => {
                    retry.get_or_insert(retryable);
                }
            },
        }
    }
    match retry {
        Some(message) => Err(HandlerError { retryable: true, message }),
        None => Ok(json!({ "records": outcomes })),
    }
}

/// An uploaded input file of this deployment's bucket: a run to take on.
struct Screened {
    bucket: String,
    key: String,
    /// The object's version id, else its ETag, else the event's sequencer.
    version: String,
}

/// Whether a record is an upload of an input file to take on; if not, its outcome (ignored or
/// rejected, and why).
fn screen(deps: &Deps, record: &S3EventRecord) -> Result<Screened, Value> {
    let bucket = record.s3.bucket.name.clone().unwrap_or_default();
    let Some(raw_key) = record.s3.object.key.clone() else {
        tracing::warn!(%bucket, "an S3 record without an object key was rejected");
        return Err(json!({ "key": null, "outcome": "rejected", "reason": "the S3 record has no object key" }));
    };
    if bucket != deps.cfg.bucket {
        tracing::warn!(%bucket, "a record for another bucket was ignored");
        return Err(json!({ "key": raw_key, "outcome": "ignored", "reason": "another bucket" }));
    }
    // Only uploads start a run (the stack subscribes to ObjectCreated only; anything else is
    // a misrouted event, and a removed object cannot be read anyway).
    if let Some(name) = record.event_name.as_deref().filter(|n| !n.starts_with("ObjectCreated:")) {
        tracing::warn!(key = %raw_key, event = %name, "not an upload; ignored");
        return Err(json!({ "key": raw_key, "outcome": { "ignored": format!("{name} is not an upload") } }));
    }
    let key = decode_s3_key(&raw_key).map_err(|e| {
        tracing::error!(error = %e, "undecodable key");
        json!({ "key": raw_key, "outcome": "rejected", "reason": e })
    })?;
    let object = &record.s3.object;
    let version = object
        .version_id
        .clone()
        .filter(|v| !v.is_empty() && v != "null")
        .or_else(|| object.e_tag.clone())
        .or_else(|| object.sequencer.clone())
        .unwrap_or_default();
    if let Err(why) = shared::pipeline::ingest::accepts(&deps.cfg.settings, &key) {
        tracing::info!(key = %key, reason = %why, "not an input file; ignored");
        return Err(json!({ "key": key, "outcome": { "ignored": why } }));
    }
    Ok(Screened { bucket, key, version })
}

/// Runs the ingest of one upload: its outcome, or (inner `Err`) why the event must be retried.
async fn take_on(deps: &Deps, upload: &Screened, request_id: &str) -> Result<Result<Value, String>, HandlerError> {
    let (mapping, client) = deps.mapping_and_client().await?;
    let Screened { bucket, key, version } = upload;
    let pipeline = Pipeline {
        store: &deps.aws.store,
        queue: &deps.aws.queue,
        notifier: &deps.aws.notifier,
        settings: &deps.cfg.settings,
    };
    let upload = Upload { bucket, key, version_or_etag: version, invocation: request_id };
    let result = ingest(&pipeline, &client, &mapping, upload, &deps.cfg.work_dir).await;
    emit_metrics(&client.stats(), &result);
    Ok(match result {
        Ok(o) => {
            tracing::info!(key = %key, outcome = ?o, "ingest done");
            Ok(json!({ "key": key, "outcome": describe(&o) }))
        }
        Err(e) if e.is_retryable() => {
            tracing::error!(key = %key, error = %e, "ingest failed; the event will be retried");
            Err(e.to_string())
        }
        Err(e) => {
            tracing::error!(key = %key, error = %e, "ingest rejected the file");
            Ok(json!({ "key": key, "outcome": "rejected", "reason": e.to_string() }))
        }
    })
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

#[cfg(test)]
mod tests {
    use shared::nerm::{SecretToken, StaticToken};

    use super::*;

    fn parsed(text: &str) -> Result<MappingConfig, HandlerError> {
        Config::mapping(text, "(test)").map_err(|m| HandlerError { retryable: false, message: m })
    }

    fn client_for(url: &str, built: &mut u32) -> Result<NermClient, HandlerError> {
        *built += 1;
        let tokens: Arc<dyn TokenProvider> = Arc::new(StaticToken::new(SecretToken::new("t")));
        NermClient::new(url, tokens, ClientOptions::default())
            .map_err(|e| HandlerError { retryable: false, message: e.to_string() })
    }

    #[test]
    fn a_warm_instance_reuses_its_mapping_and_client_until_the_mapping_or_the_url_changes() {
        let cache = InstanceCache::default();
        let mut built = 0;
        let one = |cache: &InstanceCache, text: &str, url: &str, built: &mut u32| {
            let mapping = cache.mapping(text, || parsed(text)).expect("a mapping");
            let client = cache.client((text, url, 100), &mapping, || client_for(url, built)).expect("a client");
            (mapping, client)
        };
        // GIVEN a first run on the instance
        let (m1, c1) = one(&cache, PACKAGED_CONFIG, "http://127.0.0.1:1", &mut built);
        // WHEN the next run has the same mapping text and URL
        let (m2, c2) = one(&cache, PACKAGED_CONFIG, "http://127.0.0.1:1", &mut built);
        // THEN it gets the same mapping and client (one client built)
        assert!(Arc::ptr_eq(&m1, &m2) && Arc::ptr_eq(&c1, &c2));
        assert_eq!(built, 1);
        // WHEN the secret's URL changes THEN a new client is built
        let (_, c3) = one(&cache, PACKAGED_CONFIG, "http://127.0.0.1:2", &mut built);
        assert!(!Arc::ptr_eq(&c1, &c3));
        assert_eq!(built, 2);
        // WHEN the mapping's text changes THEN it is parsed again and a new client built
        let edited = format!("{PACKAGED_CONFIG}\n# edited\n");
        let (m4, c4) = one(&cache, &edited, "http://127.0.0.1:2", &mut built);
        assert!(!Arc::ptr_eq(&m1, &m4) && !Arc::ptr_eq(&c3, &c4));
        assert_eq!(built, 3);
        // WHEN the ingest's pace changes (a run is being provisioned now) THEN a new client
        let url = "http://127.0.0.1:2";
        let slower = cache.client((&edited, url, 20), &m4, || client_for(url, &mut built)).expect("a client");
        assert!(!Arc::ptr_eq(&c4, &slower));
        assert_eq!(built, 4);
    }
}
