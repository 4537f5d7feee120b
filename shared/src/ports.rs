//! Ports: what the pipeline needs from the outside world (object storage, a work queue, a
//! notifier), as small traits. The AWS adapters (`aws` feature) implement them over S3, SQS and
//! SNS; tests use the in-memory fakes in [`memory`].

use std::future::Future;

/// A failure of an outside service, with whether trying again may help.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service}: {message}")]
pub struct PortError {
    pub service: &'static str,
    pub message: String,
    pub retryable: bool,
}

impl PortError {
    pub fn new(service: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        PortError { service, message: message.into(), retryable }
    }
}

/// What a stored object is, for the run id (bucket, key, version or ETag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectInfo {
    pub version_id: Option<String>,
    pub etag: Option<String>,
    pub size: u64,
}

/// One bucket, addressed by key.
pub trait ObjectStore: Send + Sync {
    /// Streams an object into a local file (never whole into memory).
    fn download(&self, key: &str, path: &std::path::Path)
    -> impl Future<Output = Result<ObjectInfo, PortError>> + Send;
    /// An object's bytes, `None` when it does not exist (small objects only: config, markers).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, PortError>> + Send;
    fn put(&self, key: &str, body: Vec<u8>, content_type: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Streams a local file into an object (reports too big to hold in memory).
    fn upload(
        &self,
        key: &str,
        path: &std::path::Path,
        content_type: &str,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Writes only if the key does not exist yet; `false` when it already did.
    fn put_if_absent(
        &self,
        key: &str,
        body: Vec<u8>,
        content_type: &str,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Keys under a prefix.
    fn list(&self, prefix: &str) -> impl Future<Output = Result<Vec<String>, PortError>> + Send;
    /// An object's tags.
    fn tags(&self, key: &str) -> impl Future<Output = Result<Vec<(String, String)>, PortError>> + Send;
    /// Where an operator finds the object (`s3://bucket/key` for S3), for notifications.
    fn uri(&self, key: &str) -> String;
    /// The object's page in a web console, when the store has one.
    fn console_url(&self, key: &str) -> Option<String>;
}

/// The queue that carries work from the ingest to the provisioners.
pub trait WorkQueue: Send + Sync {
    /// Sends messages (the adapter batches them).
    fn send(&self, bodies: Vec<String>) -> impl Future<Output = Result<(), PortError>> + Send;
    /// Messages waiting or being worked on (approximate, as SQS counts them).
    fn backlog(&self) -> impl Future<Output = Result<u64, PortError>> + Send;
}

/// Where run summaries are announced.
pub trait Notifier: Send + Sync {
    fn publish(&self, subject: &str, message: &str) -> impl Future<Output = Result<(), PortError>> + Send;
}

/// In-memory fakes for unit tests of the pipeline.
pub mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    pub struct MemoryStore {
        pub objects: Mutex<BTreeMap<String, Vec<u8>>>,
        pub tags: Mutex<BTreeMap<String, Vec<(String, String)>>>,
    }

    impl MemoryStore {
        pub fn insert(&self, key: &str, body: impl Into<Vec<u8>>) {
            self.objects.lock().unwrap().insert(key.to_string(), body.into());
        }
        pub fn text(&self, key: &str) -> Option<String> {
            self.objects.lock().unwrap().get(key).map(|b| String::from_utf8_lossy(b).into_owned())
        }
    }

    impl ObjectStore for MemoryStore {
        fn uri(&self, key: &str) -> String {
            format!("memory:///{key}")
        }
        fn console_url(&self, _: &str) -> Option<String> {
            None
        }
        async fn download(&self, key: &str, path: &std::path::Path) -> Result<ObjectInfo, PortError> {
            let body = self.objects.lock().unwrap().get(key).cloned();
            let body = body.ok_or_else(|| PortError::new("memory", format!("no object {key}"), false))?;
            tokio::fs::write(path, &body).await.map_err(|e| PortError::new("memory", e.to_string(), false))?;
            Ok(ObjectInfo { version_id: None, etag: Some(format!("{:x}", body.len())), size: body.len() as u64 })
        }
        async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, PortError> {
            Ok(self.objects.lock().unwrap().get(key).cloned())
        }
        async fn put(&self, key: &str, body: Vec<u8>, _: &str) -> Result<(), PortError> {
            self.objects.lock().unwrap().insert(key.to_string(), body);
            Ok(())
        }
        async fn upload(&self, key: &str, path: &std::path::Path, _: &str) -> Result<(), PortError> {
            let body = tokio::fs::read(path).await.map_err(|e| PortError::new("memory", e.to_string(), false))?;
            self.objects.lock().unwrap().insert(key.to_string(), body);
            Ok(())
        }
        async fn put_if_absent(&self, key: &str, body: Vec<u8>, _: &str) -> Result<bool, PortError> {
            let mut o = self.objects.lock().unwrap();
            if o.contains_key(key) {
                return Ok(false);
            }
            o.insert(key.to_string(), body);
            Ok(true)
        }
        async fn delete(&self, key: &str) -> Result<(), PortError> {
            self.objects.lock().unwrap().remove(key);
            Ok(())
        }
        async fn list(&self, prefix: &str) -> Result<Vec<String>, PortError> {
            Ok(self.objects.lock().unwrap().keys().filter(|k| k.starts_with(prefix)).cloned().collect())
        }
        async fn tags(&self, key: &str) -> Result<Vec<(String, String)>, PortError> {
            Ok(self.tags.lock().unwrap().get(key).cloned().unwrap_or_default())
        }
    }

    #[derive(Default)]
    pub struct MemoryQueue {
        pub sent: Mutex<Vec<String>>,
    }

    impl WorkQueue for MemoryQueue {
        async fn send(&self, bodies: Vec<String>) -> Result<(), PortError> {
            self.sent.lock().unwrap().extend(bodies);
            Ok(())
        }
        async fn backlog(&self) -> Result<u64, PortError> {
            Ok(self.sent.lock().unwrap().len() as u64)
        }
    }

    #[derive(Default)]
    pub struct MemoryNotifier {
        pub published: Mutex<Vec<(String, String)>>,
    }

    impl Notifier for MemoryNotifier {
        async fn publish(&self, subject: &str, message: &str) -> Result<(), PortError> {
            self.published.lock().unwrap().push((subject.to_string(), message.to_string()));
            Ok(())
        }
    }
}
