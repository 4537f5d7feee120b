//! The stage for the handler tests: moto_server (S3, SQS, SNS, Secrets Manager, started by
//! `infra/local/with-moto.sh`, found through `MOTO_URL`) and a NERM simulator per test.
//!
//! Each test gets its own [`Stack`]: a versioned bucket, a work queue with a DLQ (redrive after
//! `maxReceiveCount` = [`MAX_RECEIVE_COUNT`]), an SNS topic with an SQS queue subscribed to it
//! (the notifications the tests read), the NERM secret, a simulator (demo tenant, rate limit
//! off, spec checks on) and a work directory. The handlers are the real ones, built with
//! `Deps::with_sdk` from an SDK config pointed at moto; the tests play Lambda's part: they turn
//! uploads into S3 events, and SQS receives into SQS events, deleting what the provisioner did
//! not report as failed.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

/// The engine tests' simulator harness, HR export generator and NERM state checkers.
#[path = "../../../integration/tests/common/mod.rs"]
pub mod engine;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Value, json};
use shared::pipeline::Settings;
use shared::report::{RowReport, Summary};

#[allow(unused_imports)] // each test binary uses a different subset
pub use engine::{HEADER, Harness, HrRow, TOKEN};

/// The queue's redrive limit, also given to the provisioner (its last attempt).
pub const MAX_RECEIVE_COUNT: u32 = 3;

/// The account moto answers with.
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// Where moto listens; a test run without it fails, never passes silently.
pub fn moto_url() -> String {
    match std::env::var("MOTO_URL").ok().filter(|u| !u.trim().is_empty()) {
        Some(url) => url.trim().trim_end_matches('/').to_string(),
        None => panic!(
            "MOTO_URL is not set: these handler tests need moto_server. Run them through \
             infra/local/with-moto.sh, e.g.\n    infra/local/with-moto.sh cargo test -p lambda-tests"
        ),
    }
}

/// The SDK config every client (the handlers' and the tests') uses: moto's endpoint, one
/// region, static test credentials (S3 path-style is forced by the adapter and by [`Aws`]).
pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "moto-static");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await
}

/// The tests' own AWS clients.
pub struct Aws {
    pub sdk: aws_config::SdkConfig,
    pub s3: aws_sdk_s3::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub sns: aws_sdk_sns::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl Aws {
    pub async fn connect() -> Aws {
        let sdk = sdk_config(&moto_url()).await;
        let s3 = aws_sdk_s3::Client::from_conf(aws_sdk_s3::config::Builder::from(&sdk).force_path_style(true).build());
        Aws {
            s3,
            sqs: aws_sdk_sqs::Client::new(&sdk),
            sns: aws_sdk_sns::Client::new(&sdk),
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
            sdk,
        }
    }
}

/// A name no other test (or earlier run against the same moto) uses: `tag` plus process id,
/// clock and a counter; lower-case, so it also suits S3 bucket names.
pub fn unique(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let t = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() % 1_000_000_000).unwrap_or(0);
    format!("{tag}-{}-{t}-{n}", std::process::id())
}

/// An SQS queue: URL for calls, ARN for policies and events.
#[derive(Debug, Clone)]
pub struct Queue {
    pub url: String,
    pub arn: String,
}

/// An object as uploaded: what its S3 event carries.
#[derive(Debug, Clone)]
pub struct Uploaded {
    pub key: String,
    pub size: i64,
    pub etag: String,
    pub version_id: Option<String>,
}

/// One SQS batch handed to the provisioner.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `(messageId, ApproximateReceiveCount, the body's first 80 characters)` of every record.
    pub received: Vec<(String, u32, String)>,
    /// The ids the handler reported as failed.
    pub failed: Vec<String>,
}

/// What a drain did, batch by batch.
#[derive(Debug, Default)]
pub struct Drain {
    pub batches: Vec<Batch>,
}

impl Drain {
    /// Every failure report, in order.
    pub fn failures(&self) -> Vec<&str> {
        self.batches.iter().flat_map(|b| b.failed.iter().map(String::as_str)).collect()
    }
    /// Receive counts seen per message id.
    pub fn receive_counts(&self) -> HashMap<&str, Vec<u32>> {
        let mut m: HashMap<&str, Vec<u32>> = HashMap::new();
        for b in &self.batches {
            for (id, n, _) in &b.received {
                m.entry(id.as_str()).or_default().push(*n);
            }
        }
        m
    }
    pub fn messages_handled(&self) -> usize {
        self.batches.iter().map(|b| b.received.len()).sum()
    }
}

/// What a [`Stack`]'s resources are called.
pub struct Names {
    pub bucket: String,
    pub queue: String,
    pub dlq: String,
    pub topic: String,
    /// An SQS queue subscribed to the topic.
    pub inbox: String,
    pub secret_id: String,
}

/// Everything one test needs, all of it its own.
pub struct Stack {
    pub sim: Harness,
    pub aws: Aws,
    pub bucket: String,
    pub queue: Queue,
    pub dlq: Queue,
    pub topic_arn: String,
    /// Subscribed to the topic: where the run notifications can be read.
    pub inbox: Queue,
    pub secret_id: String,
    pub work_dir: PathBuf,
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.work_dir);
    }
}

impl Stack {
    /// A fresh stage; `tag` (a few lower-case letters) names its resources.
    pub async fn new(tag: &str) -> Stack {
        moto_url(); // before anything starts: without moto the test fails right here
        Stack::with_sim(tag, Harness::start().await).await
    }

    pub async fn with_sim(tag: &str, sim: Harness) -> Stack {
        let name = unique(&format!("lt-{tag}"));
        let names = Names {
            queue: format!("{name}-work"),
            dlq: format!("{name}-dlq"),
            topic: format!("{name}-runs"),
            inbox: format!("{name}-inbox"),
            secret_id: format!("{name}/nerm"),
            bucket: name,
        };
        Stack::named(names, sim).await
    }

    /// A stage whose resources have the given names (e.g. those `infra/env.json` points at).
    pub async fn named(names: Names, sim: Harness) -> Stack {
        let aws = Aws::connect().await;
        let name = names.bucket;
        aws.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {}", err(&e)));
        // Versioned, as in the stack: a new upload of the same key is a new version (a new run).
        aws.s3
            .put_bucket_versioning()
            .bucket(&name)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("versioning on {name}: {}", err(&e)));

        let dlq = create_queue(&aws, &names.dlq, &[]).await;
        let redrive = json!({ "deadLetterTargetArn": dlq.arn, "maxReceiveCount": MAX_RECEIVE_COUNT }).to_string();
        let queue = create_queue(
            &aws,
            &names.queue,
            &[(QueueAttributeName::RedrivePolicy, redrive), (QueueAttributeName::VisibilityTimeout, "60".into())],
        )
        .await;

        let topic_arn = aws
            .sns
            .create_topic()
            .name(&names.topic)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create topic: {}", err(&e)))
            .topic_arn()
            .expect("a topic ARN")
            .to_string();
        let inbox = create_queue(&aws, &names.inbox, &[]).await;
        aws.sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(&inbox.arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("subscribe the inbox: {}", err(&e)));

        let secret_id = names.secret_id;
        aws.secrets
            .create_secret()
            .name(&secret_id)
            .secret_string(secret_json(&sim.api_url(), TOKEN))
            .send()
            .await
            .unwrap_or_else(|e| panic!("create secret: {}", err(&e)));

        let work_dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&work_dir).expect("a work directory");
        Stack { sim, aws, bucket: name, queue, dlq, topic_arn, inbox, secret_id, work_dir }
    }

    // ----- the handlers' configuration -----------------------------------------------------------

    /// The deployment's settings.
    pub fn settings(&self) -> Settings {
        Settings::default()
    }

    pub fn ingest_config(&self) -> csv_ingest::config::Config {
        csv_ingest::config::Config {
            bucket: self.bucket.clone(),
            queue_url: self.queue.url.clone(),
            topic_arn: self.topic_arn.clone(),
            secret_id: self.secret_id.clone(),
            settings: self.settings(),
            requests_per_10s: 10_000,
            limit_per_10s: 10_000,
            config_s3_key: None,
            work_dir: self.work_dir.clone(),
        }
    }

    pub fn ingest(&self) -> csv_ingest::handler::Deps {
        self.ingest_with(self.ingest_config())
    }

    pub fn ingest_with(&self, cfg: csv_ingest::config::Config) -> csv_ingest::handler::Deps {
        csv_ingest::handler::Deps::with_sdk(cfg, &self.aws.sdk).expect("the ingest's dependencies")
    }

    pub fn provisioner_config(&self) -> nerm_provisioner::config::Config {
        nerm_provisioner::config::Config {
            bucket: self.bucket.clone(),
            queue_url: self.queue.url.clone(),
            topic_arn: self.topic_arn.clone(),
            secret_id: self.secret_id.clone(),
            settings: self.settings(),
            requests_per_10s: 10_000,
            max_receive_count: MAX_RECEIVE_COUNT,
        }
    }

    pub fn provisioner(&self) -> nerm_provisioner::handler::Deps {
        nerm_provisioner::handler::Deps::with_sdk(self.provisioner_config(), &self.aws.sdk)
            .expect("the provisioner's dependencies")
    }

    // ----- S3 ------------------------------------------------------------------------------------

    /// Uploads an object (optionally with a tag set, `k=v&k2=v2`).
    pub async fn upload(&self, key: &str, body: impl Into<Vec<u8>>, tagging: Option<&str>) -> Uploaded {
        let body = body.into();
        let size = body.len() as i64;
        let out = self
            .aws
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(body.into())
            .set_tagging(tagging.map(String::from))
            .send()
            .await
            .unwrap_or_else(|e| panic!("upload {key}: {}", err(&e)));
        Uploaded {
            key: key.to_string(),
            size,
            etag: out.e_tag().unwrap_or_default().trim_matches('"').to_string(),
            version_id: out.version_id().map(String::from),
        }
    }

    /// An object's bytes, `None` if it does not exist.
    pub async fn object(&self, key: &str) -> Option<Vec<u8>> {
        match self.aws.s3.get_object().bucket(&self.bucket).key(key).send().await {
            Ok(out) => Some(out.body.collect().await.expect("the object's body").into_bytes().to_vec()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => None,
            Err(e) => panic!("get {key}: {}", err(&e)),
        }
    }

    /// An object as text (it must exist).
    pub async fn text(&self, key: &str) -> String {
        let bytes = self.object(key).await.unwrap_or_else(|| panic!("s3://{}/{key} does not exist", self.bucket));
        String::from_utf8(bytes).unwrap_or_else(|_| panic!("{key} is not UTF-8"))
    }

    /// Keys under a prefix.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let out = self
            .aws
            .s3
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .send()
            .await
            .unwrap_or_else(|e| panic!("list {prefix}: {}", err(&e)));
        out.contents().iter().filter_map(|o| o.key().map(String::from)).collect()
    }

    /// The run's `summary.json`, if written.
    pub async fn summary(&self, run: &str) -> Option<Summary> {
        let key = self.settings().report_key(run, "summary.json");
        let bytes = self.object(&key).await?;
        Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{key}: {e}")))
    }

    /// The run's merged `report.jsonl`, parsed.
    pub async fn report_rows(&self, run: &str) -> Vec<RowReport> {
        let key = self.settings().report_key(run, "report.jsonl");
        self.text(&key)
            .await
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: bad line {l:?}: {e}")))
            .collect()
    }

    // ----- events and handlers -------------------------------------------------------------------

    /// An S3 ObjectCreated:Put event as AWS delivers it, one record per object.
    pub fn s3_event(&self, objects: &[&Uploaded]) -> S3Event {
        s3_event(&self.bucket, objects)
    }

    /// Lambda invoking csv-ingest with an event; the handler must not fail.
    pub async fn deliver(&self, deps: &csv_ingest::handler::Deps, event: S3Event) -> Value {
        csv_ingest::handler::handle(deps, event).await.unwrap_or_else(|e| panic!("csv-ingest failed: {e:?}"))
    }

    /// Uploads `csv` to `key` and delivers its event: the handler's answer for it and the object.
    pub async fn drop_csv(&self, deps: &csv_ingest::handler::Deps, key: &str, csv: &str) -> (Value, Uploaded) {
        let up = self.upload(key, csv.as_bytes().to_vec(), None).await;
        let answer = self.deliver(deps, self.s3_event(&[&up])).await;
        (answer, up)
    }

    /// Receives one batch (up to 10) from a queue, with the system attributes Lambda passes on.
    pub async fn receive(&self, queue: &Queue, wait_seconds: i32) -> Vec<aws_sdk_sqs::types::Message> {
        self.receive_up_to(queue, 10, wait_seconds).await
    }

    /// Plays the SQS event source mapping (with `ReportBatchItemFailures`) until the work queue
    /// is empty: receive a batch, hand it to the provisioner, delete what it did not report as
    /// failed, and let the failed ones be received again at once (standing in for the visibility
    /// timeout). Messages past the redrive limit are moved to the DLQ by SQS (moto does it on
    /// receive). Bounded in rounds and time.
    pub async fn drain(&self, deps: &nerm_provisioner::handler::Deps) -> Drain {
        let started = Instant::now();
        let mut log = Drain::default();
        for _ in 0..200 {
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "the work queue was not drained within 300 s: {log:#?}"
            );
            let messages = self.receive(&self.queue, 1).await;
            if messages.is_empty() {
                if self.queue_depth(&self.queue).await == 0 {
                    return log;
                }
                continue;
            }
            log.batches.push(self.provision_batch(deps, &messages).await);
        }
        panic!("the work queue was not drained in 200 rounds: {log:#?}");
    }

    pub async fn delete(&self, queue: &Queue, receipt_handle: &str) {
        self.aws
            .sqs
            .delete_message()
            .queue_url(&queue.url)
            .receipt_handle(receipt_handle)
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete from {}: {}", queue.url, err(&e)));
    }

    /// Messages in a queue: visible, in flight and delayed.
    pub async fn queue_depth(&self, queue: &Queue) -> u64 {
        let out = self
            .aws
            .sqs
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .unwrap_or_else(|e| panic!("attributes of {}: {}", queue.url, err(&e)));
        out.attributes().map(|a| a.values().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0)
    }

    /// Takes every message out of a queue (receive and delete until empty): the bodies.
    pub async fn take_all(&self, queue: &Queue) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        for _ in 0..100 {
            let batch = self.receive(queue, 0).await;
            if batch.is_empty() {
                break;
            }
            for m in &batch {
                self.delete(queue, m.receipt_handle().expect("a receipt handle")).await;
            }
            all.extend(batch);
        }
        all
    }

    /// The run notifications published so far: `(subject, message)` from the SNS envelopes.
    pub async fn notifications(&self) -> Vec<(String, String)> {
        self.take_all(&self.inbox)
            .await
            .iter()
            .map(|m| {
                let envelope: Value = serde_json::from_str(m.body().unwrap_or_default())
                    .unwrap_or_else(|e| panic!("an SNS envelope: {e}: {:?}", m.body()));
                (
                    envelope["Subject"].as_str().unwrap_or_default().to_string(),
                    envelope["Message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Rotates the NERM token in the secret (`put_secret_value`, a new AWSCURRENT version).
    pub async fn rotate_secret(&self, token: &str) {
        self.aws
            .secrets
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(secret_json(&self.sim.api_url(), token))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put_secret_value: {}", err(&e)));
    }

    /// Puts an ISC PAT into the secret (a new AWSCURRENT version): the simulator's token URL,
    /// `client_id` and `client_secret`.
    pub async fn put_pat_secret(&self, client_id: &str, client_secret: &str) {
        let text = pat_secret_json(&self.sim.api_url(), &self.sim.running.token_url(), client_id, client_secret);
        self.aws
            .secrets
            .put_secret_value()
            .secret_id(&self.secret_id)
            .secret_string(text)
            .send()
            .await
            .unwrap_or_else(|e| panic!("put_secret_value: {}", err(&e)));
    }
}

pub fn pat_secret_json(api_url: &str, token_url: &str, client_id: &str, client_secret: &str) -> String {
    json!({ "base_url": api_url, "token_url": token_url, "client_id": client_id, "client_secret": client_secret })
        .to_string()
}

pub fn secret_json(api_url: &str, token: &str) -> String {
    json!({ "base_url": api_url, "token": token }).to_string()
}

async fn create_queue(aws: &Aws, name: &str, attributes: &[(QueueAttributeName, String)]) -> Queue {
    let mut req = aws.sqs.create_queue().queue_name(name);
    for (k, v) in attributes {
        req = req.attributes(k.clone(), v);
    }
    let url = req
        .send()
        .await
        .unwrap_or_else(|e| panic!("create queue {name}: {}", err(&e)))
        .queue_url()
        .expect("a queue URL")
        .to_string();
    let arn = aws
        .sqs
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap_or_else(|e| panic!("ARN of {name}: {}", err(&e)))
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn).cloned())
        .unwrap_or_else(|| format!("arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"));
    Queue { url, arn }
}

/// A key as S3 event notifications carry it: form-encoded (`+` for a space, `%XX` for other
/// reserved bytes), `/` kept.
pub fn encode_s3_key(key: &str) -> String {
    let mut out = String::new();
    for b in key.bytes() {
        match b {
            b' ' => out.push('+'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b'*' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// An S3 event in the shape AWS sends (see `infra/events/s3-put.json`), deserialised like the
/// runtime does.
pub fn s3_event(bucket: &str, objects: &[&Uploaded]) -> S3Event {
    let records: Vec<Value> = objects
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let mut object = json!({
                "key": encode_s3_key(&o.key),
                "size": o.size,
                "eTag": o.etag,
                "sequencer": format!("0067261A3E5F2C7B{i:02X}"),
            });
            if let Some(v) = &o.version_id {
                object["versionId"] = json!(v);
            }
            json!({
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": REGION,
                "eventTime": "2026-11-02T07:14:32.512Z",
                "eventName": "ObjectCreated:Put",
                "userIdentity": { "principalId": "AWS:AROA3XFRBF23KQZJL5N7M:hr-export-job" },
                "requestParameters": { "sourceIPAddress": "203.0.113.24" },
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD2bHx8LFCmXhkB7pzN3bTqAlmJ4pYk5S"
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "csv-ingest",
                    "bucket": {
                        "name": bucket,
                        "ownerIdentity": { "principalId": "A3NL1KOZZKEXAMPLE" },
                        "arn": format!("arn:aws:s3:::{bucket}")
                    },
                    "object": object
                }
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an AWS-shaped S3 event parses")
}

/// The SQS event Lambda builds from received messages (see `infra/events/sqs-batch.json`).
pub fn sqs_event(queue: &Queue, messages: &[aws_sdk_sqs::types::Message]) -> SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| a.iter().map(|(k, v)| (k.as_str().to_string(), json!(v))).collect())
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue.arn,
                "awsRegion": REGION
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).expect("an AWS-shaped SQS event parses")
}

/// The run id of the only record in a csv-ingest answer whose outcome is `kind`
/// (`started`, `finished`, `duplicate`, `quarantined`).
#[track_caller]
pub fn run_of(answer: &Value, kind: &str) -> String {
    let records = answer["records"].as_array().unwrap_or_else(|| panic!("no records in {answer}"));
    assert_eq!(records.len(), 1, "one record expected: {answer}");
    records[0]["outcome"][kind].as_str().unwrap_or_else(|| panic!("outcome is not {kind:?}: {answer}")).to_string()
}

/// An SDK error with its cause chain.
pub fn err<E: std::error::Error + 'static>(e: &E) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(c) = source {
        s.push_str(&format!(": {c}"));
        source = c.source();
    }
    s
}

/// The HR export: `rows` with `bad` inserted at their positions (0-based row index).
pub fn csv_with(rows: &[HrRow], bad: &[(usize, HrRow)]) -> String {
    let mut all: Vec<HrRow> = rows.to_vec();
    for (at, row) in bad {
        all.insert(*at, row.clone());
    }
    engine::to_csv(&all)
}

/// A row the ingest must reject (its e-mail is not an address, or its manager unknown).
pub fn bad_row(key: &str, login: &str) -> HrRow {
    HrRow {
        employee_id: key.into(),
        login: login.into(),
        email: login.into(),
        first_name: "Bad".into(),
        last_name: "Row".into(),
        title: "Engineer".into(),
        department: "R&D".into(),
        manager_login: String::new(),
        status: "Active".into(),
        roles: String::new(),
    }
}

/// Non-GET `/api` requests the simulator answered, by route.
pub async fn nerm_writes(sim: &Harness) -> std::collections::BTreeMap<String, u64> {
    engine::non_get_requests(&sim.stats().await)
}

// ----- added for the hardening tests (security, concurrency, malformed events) --------------------

impl Stack {
    /// Receives up to `max` messages (1..=10) from a queue, with the system attributes.
    pub async fn receive_up_to(&self, queue: &Queue, max: i32, wait_seconds: i32) -> Vec<aws_sdk_sqs::types::Message> {
        self.aws
            .sqs
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(max.clamp(1, 10))
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap_or_else(|e| panic!("receive from {}: {}", queue.url, err(&e)))
            .messages()
            .to_vec()
    }

    /// Makes received messages visible again at once (their visibility timeout ran out).
    pub async fn release(&self, queue: &Queue, messages: &[aws_sdk_sqs::types::Message]) {
        for m in messages {
            self.aws
                .sqs
                .change_message_visibility()
                .queue_url(&queue.url)
                .receipt_handle(m.receipt_handle().expect("a receipt handle"))
                .visibility_timeout(0)
                .send()
                .await
                .unwrap_or_else(|e| panic!("make {:?} visible again: {}", m.message_id(), err(&e)));
        }
    }

    /// Every key in the bucket.
    pub async fn all_keys(&self) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self.aws.s3.list_objects_v2().bucket(&self.bucket).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.unwrap_or_else(|e| panic!("list {}: {}", self.bucket, err(&e)));
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(String::from)));
        }
        keys
    }

    /// As [`Stack::drain`], with several provisioners working the queue at once (one Lambda
    /// instance each), each receiving at most `batch_size` messages at a time: batches of
    /// different runs and parts interleave. Ends when the queue is empty and no worker is busy.
    pub async fn drain_concurrently(&self, workers: &[nerm_provisioner::handler::Deps], batch_size: i32) -> Drain {
        let busy = std::sync::atomic::AtomicUsize::new(0);
        let log = std::sync::Mutex::new(Drain::default());
        let started = Instant::now();
        futures_join_all(workers.iter().map(|deps| self.drain_worker(deps, batch_size, &busy, &log, started))).await;
        log.into_inner().expect("the drain log")
    }

    /// Hands received messages to the provisioner as SQS would, then deletes what succeeded and
    /// makes the reported failures visible again (checking every failure names a message of the
    /// batch).
    pub async fn provision_batch(
        &self,
        deps: &nerm_provisioner::handler::Deps,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> Batch {
        let event = sqs_event(&self.queue, messages);
        let received: Vec<(String, u32, String)> = event
            .records
            .iter()
            .map(|r| {
                let n = r.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(0);
                let preview = r.body.as_deref().unwrap_or_default().chars().take(80).collect();
                (r.message_id.clone().unwrap_or_default(), n, preview)
            })
            .collect();
        let response: SqsBatchResponse = nerm_provisioner::handler::handle(deps, event)
            .await
            .unwrap_or_else(|e| panic!("nerm-provisioner failed the whole batch: {e:?}"));
        let failed: Vec<String> = response.batch_item_failures.iter().map(|f| f.item_identifier.clone()).collect();
        for id in &failed {
            assert!(!id.is_empty(), "a batch item failure without an id: {response:?}");
            assert!(received.iter().any(|(r, _, _)| r == id), "a failure for a message not in the batch: {id}");
        }
        for m in messages {
            let id = m.message_id().unwrap_or_default();
            if failed.iter().any(|f| f == id) {
                self.release(&self.queue, std::slice::from_ref(m)).await;
            } else {
                self.delete(&self.queue, m.receipt_handle().expect("a receipt handle")).await;
            }
        }
        Batch { received, failed }
    }

    /// One provisioner of [`Stack::drain_concurrently`].
    async fn drain_worker(
        &self,
        deps: &nerm_provisioner::handler::Deps,
        batch_size: i32,
        busy: &std::sync::atomic::AtomicUsize,
        log: &std::sync::Mutex<Drain>,
        started: Instant,
    ) {
        loop {
            assert!(started.elapsed() < Duration::from_secs(300), "not drained within 300 s");
            let messages = self.receive_up_to(&self.queue, batch_size, 1).await;
            if messages.is_empty() {
                // (messages another worker holds count in the depth as in flight; `busy` covers
                // the moment between its deletes and its batch being logged)
                if busy.load(Ordering::SeqCst) == 0 && self.queue_depth(&self.queue).await == 0 {
                    return;
                }
                continue;
            }
            busy.fetch_add(1, Ordering::SeqCst);
            let batch = self.provision_batch(deps, &messages).await;
            log.lock().expect("the drain log").batches.push(batch);
            busy.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Runs futures concurrently on the current task until all are done.
pub async fn futures_join_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    let mut pending: Vec<std::pin::Pin<Box<F>>> = futures.map(Box::pin).collect();
    std::future::poll_fn(move |cx| {
        pending.retain_mut(|f| f.as_mut().poll(cx).is_pending());
        if pending.is_empty() { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await
}

/// `rows` with their employee ids, logins, e-mails and manager logins renamed by `tag` (`E1…`
/// becomes `{TAG}1…`, `emp…@` becomes `{tag}…@`): a disjoint, self-contained set of employees.
pub fn renamed(rows: &[HrRow], tag: &str) -> Vec<HrRow> {
    let login = |l: &str| {
        l.replacen("emp", tag, 1).replacen("Emp", &tag.to_uppercase(), 1).replacen("EMP", &tag.to_uppercase(), 1)
    };
    rows.iter()
        .map(|r| HrRow {
            employee_id: r.employee_id.replacen('E', &tag.to_uppercase(), 1),
            login: login(&r.login),
            email: login(&r.email),
            manager_login: login(&r.manager_login),
            ..r.clone()
        })
        .collect()
}

/// The run's report accounts for every row of `file` exactly once, on its line (header on
/// line 1, one line per row), and agrees with `summary.json`: the rows, for more checks.
pub async fn assert_report_accounts_for(
    stack: &Stack,
    settings: &Settings,
    run: &str,
    file: &[HrRow],
) -> Vec<RowReport> {
    let key = settings.report_key(run, "report.jsonl");
    let rows: Vec<RowReport> = stack
        .text(&key)
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{key}: bad line {l:?}: {e}")))
        .collect();
    assert_eq!(rows.len(), file.len(), "{key}: one row per input row: {rows:#?}");
    for (i, want) in file.iter().enumerate() {
        let line = i as u64 + 2;
        let at: Vec<&RowReport> = rows.iter().filter(|r| r.line == line).collect();
        assert_eq!(at.len(), 1, "{key}: line {line} ({}) reported {} times: {at:#?}", want.employee_id, at.len());
        assert_eq!(
            (at[0].employee_key.as_str(), at[0].login.as_str()),
            (want.employee_id.as_str(), want.login.as_str())
        );
    }
    let summary: Summary = serde_json::from_slice(
        &stack.object(&settings.report_key(run, "summary.json")).await.unwrap_or_else(|| panic!("{run}: no summary")),
    )
    .expect("summary.json parses");
    assert_eq!(summary.rows_total, file.len() as u64, "{summary:#?}");
    rows
}
