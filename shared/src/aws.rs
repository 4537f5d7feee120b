//! AWS adapters behind the [`crate::ports`] traits (S3, SQS, SNS) and the NERM credentials from
//! Secrets Manager. Compiled with the `aws` feature, so the CLI does not carry the SDK.
//!
//! `AWS_ENDPOINT_URL` (honoured by `aws_config`) points every client at moto for local runs.

use std::path::Path;
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use tokio::io::AsyncWriteExt;

use crate::nerm::auth::CredentialsFuture;
use crate::nerm::{AccessTokens, CredentialSource, Credentials, NermError, PatCredentials, SecretToken};
use crate::ports::{Notifier, ObjectInfo, ObjectStore, PortError, WorkQueue};

/// The shared SDK configuration (region, credentials, endpoint override) from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

fn describe<E: std::error::Error + 'static>(e: &aws_sdk_s3::error::SdkError<E>) -> String {
    use aws_sdk_s3::error::DisplayErrorContext;
    DisplayErrorContext(e).to_string().chars().take(500).collect()
}

fn status_of<E>(e: &aws_sdk_s3::error::SdkError<E>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// Every adapter a Lambda needs, built from one SDK config.
pub struct Adapters {
    pub store: S3Store,
    pub queue: SqsQueue,
    pub notifier: SnsNotifier,
    pub secret: std::sync::Arc<NermSecret>,
    /// The NERM Bearer tokens, from the secret: one access token per instance, across invocations.
    pub tokens: std::sync::Arc<AccessTokens>,
}

impl Adapters {
    /// The secret is cached for five minutes (and re-read at once when its credentials are refused).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        queue_url: &str,
        topic_arn: &str,
        secret_id: &str,
    ) -> Result<Adapters, SecretError> {
        let secret = std::sync::Arc::new(NermSecret::new(sdk, secret_id, Duration::from_secs(300)));
        let tokens = AccessTokens::new(secret.clone(), Duration::from_secs(30))
            .map_err(|e| SecretError { secret_id: secret_id.to_string(), problem: e.to_string() })?;
        Ok(Adapters {
            store: S3Store::new(sdk, bucket),
            queue: SqsQueue::new(sdk, queue_url),
            notifier: SnsNotifier::new(sdk, topic_arn),
            secret,
            tokens: std::sync::Arc::new(tokens),
        })
    }
}

/// One S3 bucket.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// For console links; `None` when the SDK config names no region.
    region: Option<String>,
}

impl S3Store {
    pub fn new(config: &aws_config::SdkConfig, bucket: impl Into<String>) -> Self {
        // Path-style addressing works with every endpoint, moto included.
        let s3 = aws_sdk_s3::config::Builder::from(config).force_path_style(true).build();
        let region = config.region().map(|r| r.to_string());
        S3Store { client: aws_sdk_s3::Client::from_conf(s3), bucket: bucket.into(), region }
    }

    fn err<E: std::error::Error + 'static>(
        &self,
        what: &str,
        key: &str,
        e: &aws_sdk_s3::error::SdkError<E>,
    ) -> PortError {
        let retryable = status_of(e).is_none_or(|s| s >= 500 || s == 429);
        PortError::new("s3", format!("{what} s3://{}/{key}: {}", self.bucket, describe(e)), retryable)
    }
}

impl ObjectStore for S3Store {
    async fn download(&self, key: &str, path: &Path) -> Result<ObjectInfo, PortError> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("get", key, &e))?;
        let info = ObjectInfo {
            version_id: out.version_id().map(String::from),
            etag: out.e_tag().map(String::from),
            size: out.content_length().unwrap_or(0).max(0) as u64,
        };
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(|e| PortError::new("local disk", format!("{}: {e}", path.display()), false))?;
        let mut body = out.body;
        while let Some(chunk) = body
            .try_next()
            .await
            .map_err(|e| PortError::new("s3", format!("reading s3://{}/{key}: {e}", self.bucket), true))?
        {
            file.write_all(&chunk).await.map_err(|e| PortError::new("local disk", e.to_string(), false))?;
        }
        file.flush().await.map_err(|e| PortError::new("local disk", e.to_string(), false))?;
        Ok(info)
    }

    async fn upload(&self, key: &str, path: &Path, content_type: &str) -> Result<(), PortError> {
        let body = ByteStream::from_path(path)
            .await
            .map_err(|e| PortError::new("local disk", format!("{}: {e}", path.display()), false))?;
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(body)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("put", key, &e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
        match self.client.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => {
                let bytes = out
                    .body
                    .collect()
                    .await
                    .map_err(|e| PortError::new("s3", format!("reading s3://{}/{key}: {e}", self.bucket), true))?;
                Ok(Some(bytes.into_bytes().to_vec()))
            }
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) || status_of(&e) == Some(404) => {
                Ok(None)
            }
            Err(e) => Err(self.err("get", key, &e)),
        }
    }

    async fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<(), PortError> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("put", key, &e))
    }

    async fn put_if_absent(&self, key: &str, body: Vec<u8>, content_type: &str) -> Result<bool, PortError> {
        // S3 conditional write: fails with 412 when the key exists (or 409 on a concurrent write).
        match self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .if_none_match("*")
            .content_type(content_type)
            .body(ByteStream::from(body))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if matches!(status_of(&e), Some(412) | Some(409)) => Ok(false),
            Err(e) => Err(self.err("conditional put", key, &e)),
        }
    }

    async fn delete(&self, key: &str) -> Result<(), PortError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| self.err("delete", key, &e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError> {
        let mut keys = Vec::new();
        let mut pages = self.client.list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err("list", prefix, &e))?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(String::from)));
        }
        Ok(keys)
    }

    async fn tags(&self, key: &str) -> Result<Vec<(String, String)>, PortError> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err("get tags of", key, &e))?;
        Ok(out.tag_set().iter().map(|t| (t.key().to_string(), t.value().to_string())).collect())
    }

    fn uri(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn console_url(&self, key: &str) -> Option<String> {
        let region = self.region.as_deref()?;
        let mut url = url::Url::parse("https://console.aws.amazon.com/s3/object/").ok()?;
        url.path_segments_mut().ok()?.pop_if_empty().push(&self.bucket);
        url.query_pairs_mut().append_pair("region", region).append_pair("prefix", key);
        Some(url.into())
    }
}

/// The work queue.
#[derive(Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(config: &aws_config::SdkConfig, url: impl Into<String>) -> Self {
        SqsQueue { client: aws_sdk_sqs::Client::new(config), url: url.into() }
    }
}

/// SQS takes at most 10 messages and 256 KiB of bodies per `SendMessageBatch`.
const SQS_BATCH_MESSAGES: usize = 10;
const SQS_BATCH_BYTES: usize = 256 * 1024;

/// Splits bodies into runs that fit one `SendMessageBatch` each (a body is never split).
fn sqs_batches(bodies: &[String]) -> Vec<&[String]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, b) in bodies.iter().enumerate() {
        if i > start && (i - start == SQS_BATCH_MESSAGES || bytes + b.len() > SQS_BATCH_BYTES) {
            out.push(&bodies[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += b.len();
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

impl WorkQueue for SqsQueue {
    async fn send(&self, bodies: Vec<String>) -> Result<(), PortError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        for chunk in sqs_batches(&bodies) {
            let entries: Vec<SendMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(b)
                        .build()
                        .expect("id and body are set")
                })
                .collect();
            let out =
                self.client.send_message_batch().queue_url(&self.url).set_entries(Some(entries)).send().await.map_err(
                    |e| {
                        let s = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                        PortError::new("sqs", format!("send to {}: {s}", self.url), true)
                    },
                )?;
            if let Some(f) = out.failed().first() {
                return Err(PortError::new(
                    "sqs",
                    format!(
                        "{} of {} messages refused: {}",
                        out.failed().len(),
                        chunk.len(),
                        f.message().unwrap_or(f.code())
                    ),
                    !f.sender_fault(),
                ));
            }
        }
        Ok(())
    }

    async fn backlog(&self) -> Result<u64, PortError> {
        use aws_sdk_sqs::types::QueueAttributeName as A;
        let names = [
            A::ApproximateNumberOfMessages,
            A::ApproximateNumberOfMessagesNotVisible,
            A::ApproximateNumberOfMessagesDelayed,
        ];
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&self.url)
            .set_attribute_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| {
                let s = aws_sdk_sqs::error::DisplayErrorContext(&e).to_string();
                PortError::new("sqs", format!("attributes of {}: {s}", self.url), true)
            })?;
        let count = |n: &A| out.attributes().and_then(|a| a.get(n)).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(names.iter().map(count).sum())
    }
}

/// Run summaries go to an SNS topic.
#[derive(Clone)]
pub struct SnsNotifier {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsNotifier {
    pub fn new(config: &aws_config::SdkConfig, topic_arn: impl Into<String>) -> Self {
        SnsNotifier { client: aws_sdk_sns::Client::new(config), topic_arn: topic_arn.into() }
    }
}

impl Notifier for SnsNotifier {
    async fn publish(&self, subject: &str, message: &str) -> Result<(), PortError> {
        // SNS subjects: at most 100 printable ASCII characters.
        let subject: String = subject.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(100).collect();
        self.client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(subject)
            .message(message)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| {
                let s = aws_sdk_sns::error::DisplayErrorContext(&e).to_string();
                PortError::new("sns", format!("publish to {}: {s}", self.topic_arn), true)
            })
    }
}

/// The NERM base URL and credentials, from one Secrets Manager secret holding either
/// `{"base_url", "token"}` (a legacy API key) or `{"base_url", "token_url", "client_id",
/// "client_secret"}` (an ISC personal access token); cached with a TTL, read afresh on demand.
///
/// The cache is one entry behind an async lock (so concurrent readers wait for one read). A crate
/// for it (`aws_secretsmanager_caching`) turned on every default feature of the SDK and
/// `aws-config`, which linked a second, legacy TLS and HTTP stack into the Lambdas.
pub struct NermSecret {
    client: aws_sdk_secretsmanager::Client,
    secret_id: String,
    ttl: Duration,
    cached: tokio::sync::Mutex<Option<CachedSecret>>,
}

/// The last `SecretString` read and when. No `Debug`: it holds the secret.
struct CachedSecret {
    read_at: Instant,
    text: String,
}

/// A problem with the secret; the message names the secret and the key, never a value.
#[derive(Debug, thiserror::Error)]
#[error("secret {secret_id}: {problem}")]
pub struct SecretError {
    pub secret_id: String,
    pub problem: String,
}

impl NermSecret {
    pub fn new(config: &aws_config::SdkConfig, secret_id: impl Into<String>, ttl: Duration) -> Self {
        let builder = aws_sdk_secretsmanager::config::Builder::from(config);
        let client = aws_sdk_secretsmanager::Client::from_conf(builder.build());
        NermSecret { client, secret_id: secret_id.into(), ttl, cached: tokio::sync::Mutex::new(None) }
    }

    /// Reads (from the cache) and parses the secret.
    pub async fn read(&self) -> Result<(String, Credentials), SecretError> {
        self.fetch(false).await
    }

    /// Reads the secret, bypassing the cache when `fresh`, and parses it.
    pub async fn fetch(&self, fresh: bool) -> Result<(String, Credentials), SecretError> {
        let fail = |problem: String| SecretError { secret_id: self.secret_id.clone(), problem };
        let mut cached = self.cached.lock().await;
        let valid = cached.as_ref().filter(|c| !fresh && c.read_at.elapsed() < self.ttl);
        let text = match valid {
            Some(c) => c.text.clone(),
            None => {
                let text = self.read_secret_string().await.map_err(fail)?;
                *cached = Some(CachedSecret { read_at: Instant::now(), text: text.clone() });
                text
            }
        };
        drop(cached);
        parse_secret(&text).map_err(fail)
    }

    /// One `GetSecretValue` call: the `SecretString`, or what went wrong (never the value).
    async fn read_secret_string(&self) -> Result<String, String> {
        let out = self.client.get_secret_value().secret_id(&self.secret_id).send().await;
        match out {
            Ok(v) => {
                v.secret_string.ok_or_else(|| "it has no SecretString (binary secrets are not supported)".to_string())
            }
            Err(e) => {
                let e = aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string();
                Err(format!("cannot be read: {}", e.chars().take(300).collect::<String>()))
            }
        }
    }
}

const API_KEY_SHAPE: [&str; 2] = ["base_url", "token"];
const PAT_SHAPE: [&str; 4] = ["base_url", "token_url", "client_id", "client_secret"];
const SHAPES: &str =
    "expected {\"base_url\", \"token\"} or {\"base_url\", \"token_url\", \"client_id\", \"client_secret\"}";

/// The secret's JSON → base URL and credentials. Errors name missing or unexpected keys, never
/// a value.
pub fn parse_secret(text: &str) -> Result<(String, Credentials), String> {
    let not_object = || format!("its value is not a JSON object ({SHAPES})");
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| not_object())?;
    let obj = v.as_object().ok_or_else(not_object)?;
    let is_pat = obj.keys().any(|k| PAT_SHAPE[1..].contains(&k.as_str()));
    let shape: &[&str] = if is_pat { &PAT_SHAPE } else { &API_KEY_SHAPE };
    check_keys(obj, shape)?;
    let field = |k: &str| -> Result<String, String> {
        match obj.get(k) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            _ => Err(format!("key \"{k}\" must be a non-empty string")),
        }
    };
    let base_url = field("base_url")?;
    if !is_pat {
        return Ok((base_url, Credentials::ApiKey(SecretToken::new(field("token")?))));
    }
    let secret = SecretToken::new(field("client_secret")?);
    let pat = PatCredentials::new(&field("token_url")?, &field("client_id")?, secret)
        .map_err(|e| format!("key \"token_url\": {e}"))?;
    Ok((base_url, Credentials::Pat(pat)))
}

fn check_keys(obj: &serde_json::Map<String, serde_json::Value>, shape: &[&str]) -> Result<(), String> {
    let quote = |ks: Vec<&str>| ks.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(", ");
    let missing: Vec<&str> = shape.iter().copied().filter(|k| !obj.contains_key(*k)).collect();
    let unexpected: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !shape.contains(k)).collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing key(s) {}", quote(missing)));
    }
    if !unexpected.is_empty() {
        problems.push(format!("unexpected key(s) {}", quote(unexpected)));
    }
    if problems.is_empty() { Ok(()) } else { Err(format!("{} ({SHAPES})", problems.join("; "))) }
}

impl CredentialSource for NermSecret {
    fn credentials(&self, fresh: bool) -> CredentialsFuture<'_> {
        Box::pin(async move { self.fetch(fresh).await.map(|(_, c)| c).map_err(|e| NermError::Setup(e.to_string())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqs_batches_hold_at_most_ten_messages_and_256_kib() {
        // GIVEN 25 small bodies, then 3 of 100 KiB and 2 of 200 KiB
        let mut bodies: Vec<String> = (0..25).map(|i| format!("m{i}")).collect();
        bodies.extend((0..3).map(|_| "x".repeat(100 * 1024)));
        bodies.extend((0..2).map(|_| "y".repeat(200 * 1024)));
        // WHEN they are split for SendMessageBatch
        let sizes: Vec<usize> = sqs_batches(&bodies).iter().map(|b| b.len()).collect();
        // THEN by ten, then as many big ones as fit in 256 KiB, every body once and in order
        assert_eq!(sizes, [10, 10, 5 + 2, 1, 1, 1]);
        assert!(
            sqs_batches(&bodies)
                .iter()
                .all(|b| b.len() == 1 || b.iter().map(String::len).sum::<usize>() <= SQS_BATCH_BYTES)
        );
        assert_eq!(sqs_batches(&bodies).concat(), bodies);
        assert!(sqs_batches(&[]).is_empty());
    }

    #[test]
    fn a_secret_missing_its_token_names_the_key_and_not_the_value() {
        let err =
            parse_secret(r#"{"base_url": "https://acme.nonemployee.com/api", "tokn": "s3cr3t-value"}"#).unwrap_err();
        assert!(err.contains("missing key(s) \"token\"") && err.contains("unexpected key(s) \"tokn\""), "{err}");
        assert!(!err.contains("s3cr3t"));
        let err = parse_secret("s3cr3t-value").unwrap_err();
        assert!(err.contains("not a JSON object") && !err.contains("s3cr3t"), "{err}");
        let (url, creds) = parse_secret(r#"{"base_url": " https://x/api ", "token": "t0k3n"}"#).unwrap();
        assert_eq!(url, "https://x/api");
        assert_eq!(creds, Credentials::ApiKey(SecretToken::new("t0k3n")));
    }

    #[test]
    fn a_pat_secret_gives_the_token_url_client_id_and_secret() {
        let text = r#"{"base_url": "https://acme.nonemployee.com/api", "token_url": "https://acme.api.identitynow.com/oauth/token",
                       "client_id": "cid", "client_secret": "s3cr3t-value"}"#;
        let (_, creds) = parse_secret(text).unwrap();
        let Credentials::Pat(pat) = creds else { panic!("a PAT secret read as {creds:?}") };
        assert_eq!(pat.token_url.as_str(), "https://acme.api.identitynow.com/oauth/token");
        assert_eq!((pat.client_id.as_str(), pat.client_secret.expose()), ("cid", "s3cr3t-value"));
    }

    #[test]
    fn a_pat_secret_with_a_missing_or_extra_key_names_them_and_not_the_values() {
        let text = r#"{"base_url": "https://x/api", "token_url": "https://x/oauth/token", "client_secret": "s3cr3t-value", "token": "t0k3n-value"}"#;
        let err = parse_secret(text).unwrap_err();
        assert!(err.contains("missing key(s) \"client_id\""), "{err}");
        assert!(err.contains("unexpected key(s) \"token\""), "{err}");
        assert!(!err.contains("s3cr3t") && !err.contains("t0k3n"), "{err}");
    }

    #[test]
    fn a_pat_secret_with_a_plain_http_token_url_is_refused_without_echoing_it() {
        let text = r#"{"base_url": "https://x/api", "token_url": "http://x.example/oauth/token?s3cr3t",
                       "client_id": "cid", "client_secret": "s3cr3t-value"}"#;
        let err = parse_secret(text).unwrap_err();
        assert!(err.contains("\"token_url\"") && err.contains("https") && !err.contains("s3cr3t"), "{err}");
    }
}
