//! AWS adapters behind the [`crate::ports`] traits (S3, SQS, SNS) and the NERM credentials from
//! Secrets Manager. Compiled with the `aws` feature, so the CLI does not carry the SDK.
//!
//! `AWS_ENDPOINT_URL` (honoured by `aws_config`) points every client at moto for local runs.

use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_secretsmanager_caching::SecretsManagerCachingClient;
use tokio::io::AsyncWriteExt;

use crate::nerm::{NermError, SecretToken, TokenProvider};
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
}

impl Adapters {
    /// The secret is cached for five minutes (and re-read at once after a 401).
    pub fn new(
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        queue_url: &str,
        topic_arn: &str,
        secret_id: &str,
    ) -> Result<Adapters, SecretError> {
        Ok(Adapters {
            store: S3Store::new(sdk, bucket),
            queue: SqsQueue::new(sdk, queue_url),
            notifier: SnsNotifier::new(sdk, topic_arn),
            secret: std::sync::Arc::new(NermSecret::new(sdk, secret_id, Duration::from_secs(300))?),
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

impl WorkQueue for SqsQueue {
    async fn send(&self, bodies: Vec<String>, delay_seconds: u32) -> Result<(), PortError> {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        for chunk in bodies.chunks(10) {
            let entries: Vec<SendMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("m{i}"))
                        .message_body(b)
                        .delay_seconds(delay_seconds.min(900) as i32)
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

/// The NERM base URL and token, from one Secrets Manager secret holding
/// `{"base_url": "https://…/api", "token": "…"}`; cached with a TTL, re-read after a 401.
pub struct NermSecret {
    cache: SecretsManagerCachingClient,
    secret_id: String,
    refresh: AtomicBool,
    base_url: RwLock<Option<String>>,
}

/// A problem with the secret; the message names the secret and the key, never a value.
#[derive(Debug, thiserror::Error)]
#[error("secret {secret_id}: {problem}")]
pub struct SecretError {
    pub secret_id: String,
    pub problem: String,
}

impl NermSecret {
    pub fn new(
        config: &aws_config::SdkConfig,
        secret_id: impl Into<String>,
        ttl: Duration,
    ) -> Result<Self, SecretError> {
        let secret_id = secret_id.into();
        let builder = aws_sdk_secretsmanager::config::Builder::from(config);
        let client = aws_sdk_secretsmanager::Client::from_conf(builder.build());
        let cache =
            SecretsManagerCachingClient::new(client, NonZeroUsize::new(4).expect("non-zero"), ttl, true).map_err(
                |e| SecretError { secret_id: secret_id.clone(), problem: format!("cannot build the cache: {e}") },
            )?;
        Ok(NermSecret { cache, secret_id, refresh: AtomicBool::new(false), base_url: RwLock::new(None) })
    }

    /// Reads (or re-reads, after [`TokenProvider::invalidate`]) and parses the secret.
    pub async fn read(&self) -> Result<(String, SecretToken), SecretError> {
        let refresh = self.refresh.swap(false, Ordering::SeqCst);
        let fail = |problem: String| SecretError { secret_id: self.secret_id.clone(), problem };
        let text = {
            let out = self.cache.get_secret_value(&self.secret_id, None, None, refresh).await;
            // Only the error's kind is kept: SDK errors never carry the value, but be strict.
            match out {
                Ok(v) => v
                    .secret_string
                    .ok_or_else(|| "it has no SecretString (binary secrets are not supported)".to_string()),
                Err(e) => Err(format!("cannot be read: {}", e.to_string().chars().take(300).collect::<String>())),
            }
        }
        .map_err(fail)?;
        let (url, token) = parse_secret(&text).map_err(fail)?;
        *self.base_url.write().unwrap_or_else(|e| e.into_inner()) = Some(url.clone());
        Ok((url, token))
    }
}

/// `{"base_url", "token"}` → values; errors name the missing key, never the content.
pub fn parse_secret(text: &str) -> Result<(String, SecretToken), String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| "its value is not a JSON object (expected {\"base_url\", \"token\"})".to_string())?;
    let field = |k: &str| -> Result<String, String> {
        match v.get(k) {
            Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_string()),
            Some(_) => Err(format!("key \"{k}\" must be a non-empty string")),
            None => Err(format!("key \"{k}\" is missing (expected {{\"base_url\", \"token\"}})")),
        }
    };
    if !v.is_object() {
        return Err("its value is not a JSON object (expected {\"base_url\", \"token\"})".into());
    }
    Ok((field("base_url")?, SecretToken::new(field("token")?)))
}

impl TokenProvider for NermSecret {
    fn token(&self) -> crate::nerm::token::TokenFuture<'_> {
        Box::pin(async move { self.read().await.map(|(_, t)| t).map_err(|e| NermError::Setup(e.to_string())) })
    }
    fn invalidate(&self) {
        self.refresh.store(true, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_missing_its_token_names_the_key_and_not_the_value() {
        let err =
            parse_secret(r#"{"base_url": "https://acme.nonemployee.com/api", "tokn": "s3cr3t-value"}"#).unwrap_err();
        assert!(err.contains("\"token\" is missing"), "{err}");
        assert!(!err.contains("s3cr3t"));
        let err = parse_secret("s3cr3t-value").unwrap_err();
        assert!(err.contains("not a JSON object") && !err.contains("s3cr3t"), "{err}");
        let (url, token) = parse_secret(r#"{"base_url": " https://x/api ", "token": "t0k3n"}"#).unwrap();
        assert_eq!((url.as_str(), token.expose()), ("https://x/api", "t0k3n"));
    }
}
