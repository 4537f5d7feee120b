//! The shipped artefacts as a user meets them: the real `csv-ingest` and `nerm-provisioner`
//! binaries (built by cargo as for `sam build`, for this machine), started as processes against
//! a local Lambda Runtime API (`lambda_tests::runtime_api`, no Docker), configured by
//! `infra/env.json` pointed at moto and the NERM simulator, and invoked with every event in
//! `infra/events/` byte for byte. Run through `infra/local/with-moto.sh` (`make local-invoke`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use common::engine::{assert_nerm_matches, employees, to_csv, users_with_login, workspace_bin};
use common::*;
use lambda_tests::runtime_api::{Answer, Function, RuntimeApi};
use serde_json::Value;
use shared::pipeline::WorkMessage;
use shared::pipeline::ingest::{decode_s3_key, run_id};

/// Where `infra/env.json` expects moto (`sam local invoke` with moto on its default port).
const ENV_JSON_MOTO: &str = "http://127.0.0.1:5000";
const INVOKE_TIMEOUT: Duration = Duration::from_secs(120);

fn repo_path(path: &str) -> PathBuf {
    PathBuf::from(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR")))
}

/// A shipped event, as bytes.
fn event(name: &str) -> Vec<u8> {
    let path = repo_path(&format!("infra/events/{name}"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn event_json(name: &str) -> Value {
    serde_json::from_slice(&event(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A function's variables from `infra/env.json`, with moto's address where the file has
/// `http://127.0.0.1:5000` (nothing else is changed).
fn variables(function: &str) -> BTreeMap<String, String> {
    let path = repo_path("infra/env.json");
    let text = std::fs::read_to_string(&path).expect("infra/env.json");
    let mut all: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(&text).expect("env.json parses");
    let moto = moto_url();
    let vars = all.remove(function).unwrap_or_else(|| panic!("infra/env.json has no {function}"));
    vars.into_iter().map(|(k, v)| (k, v.replace(ENV_JSON_MOTO, &moto))).collect()
}

/// The text after the last `sep`.
fn last(s: &str, sep: char) -> &str {
    s.rsplit(sep).next().unwrap_or(s)
}

/// A stage with exactly the bucket, queue, topic and secret `infra/env.json` names.
async fn stack_of_env_json(vars: &BTreeMap<String, String>) -> Stack {
    let queue = last(&vars["QUEUE_URL"], '/').to_string();
    let topic = last(&vars["SUMMARY_TOPIC_ARN"], ':').to_string();
    let names = Names {
        bucket: vars["BUCKET_NAME"].clone(),
        dlq: format!("{queue}-dlq"),
        inbox: format!("{topic}-inbox"),
        queue,
        topic,
        secret_id: vars["NERM_SECRET_ID"].clone(),
    };
    let stack = Stack::named(names, Harness::start().await).await;
    assert_eq!(stack.queue.url, vars["QUEUE_URL"], "moto's queue URL is not the one env.json names");
    assert_eq!(stack.topic_arn, vars["SUMMARY_TOPIC_ARN"]);
    stack
}

/// The decoded key and the version of the only record of a shipped S3 event.
fn object_of(name: &str) -> (String, String) {
    let ev = event_json(name);
    let object = &ev["Records"][0]["s3"]["object"];
    let key = decode_s3_key(object["key"].as_str().expect("a key")).expect("the key decodes");
    (key, object["versionId"].as_str().expect("a version id").to_string())
}

/// Invokes a function binary; its answer must be a response (its log is shown otherwise).
async fn invoke(api: &RuntimeApi, function: &mut Function, payload: Vec<u8>) -> Value {
    match api.invoke(function, payload, INVOKE_TIMEOUT).await {
        Ok(Answer::Response(v)) => v,
        Ok(Answer::Error(e)) => panic!("{} failed: {e}\n--- its log:\n{}", function.name, function.log()),
        Err(e) => panic!("{e}\n--- its log:\n{}", function.log()),
    }
}

/// The logins of the employees a shipped SQS batch carries.
fn logins_in_sqs_batch(batch: &Value) -> BTreeSet<String> {
    let records = batch["Records"].as_array().expect("Records");
    let mut logins = BTreeSet::new();
    for r in records {
        let msg = WorkMessage::parse(r["body"].as_str().expect("a body"))
            .unwrap_or_else(|e| panic!("infra/events/sqs-batch.json holds an invalid work message: {e}"));
        logins.extend(msg.items.iter().map(|p| p.login.clone()));
    }
    logins
}

/// Plays the SQS event source mapping with the provisioner binary until the queue is empty:
/// the messages the provisioner reports as failed stay; the rest are deleted.
async fn drain_through(stack: &Stack, api: &RuntimeApi, provisioner: &mut Function) -> usize {
    let mut batches = 0;
    for _ in 0..50 {
        let messages = stack.receive(&stack.queue, 1).await;
        if messages.is_empty() {
            if stack.queue_depth(&stack.queue).await == 0 {
                return batches;
            }
            continue;
        }
        let event = serde_json::to_vec(&sqs_event(&stack.queue, &messages)).expect("the event serialises");
        let answer = invoke(api, provisioner, event).await;
        batches += 1;
        let failed: BTreeSet<&str> = answer["batchItemFailures"]
            .as_array()
            .unwrap_or_else(|| panic!("not a batch response: {answer}"))
            .iter()
            .filter_map(|f| f["itemIdentifier"].as_str())
            .collect();
        for m in &messages {
            if !failed.contains(m.message_id().unwrap_or_default()) {
                stack.delete(&stack.queue, m.receipt_handle().expect("a receipt handle")).await;
            }
        }
    }
    panic!("the work queue was not drained in 50 batches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shipped_events_drive_the_real_binaries_through_the_runtime_api_to_finished_runs() {
    // GIVEN both function binaries, freshly built
    let (ingest_exe, provisioner_exe) =
        tokio::task::spawn_blocking(|| (workspace_bin("csv-ingest"), workspace_bin("nerm-provisioner")))
            .await
            .expect("the build finishes");
    // AND moto and a simulator holding what infra/env.json names
    let ingest_vars = variables("CsvIngestFunction");
    let provisioner_vars = variables("NermProvisionerFunction");
    let stack = stack_of_env_json(&ingest_vars).await;
    // AND the objects the three S3 events announce: an export of 20, the same as a dry run,
    // and 3 other employees under a key with UTF-8 and `&`
    let people = employees(20);
    let others = renamed(&employees(3), "mueller");
    let (key, version) = object_of("s3-put.json");
    let (dry_key, _) = object_of("s3-put-dry-run.json");
    let (encoded_key, encoded_version) = object_of("s3-put-encoded-key.json");
    assert_eq!(encoded_key, "incoming/Müller & Söhne export.csv");
    stack.upload(&key, to_csv(&people), None).await;
    stack.upload(&dry_key, to_csv(&people), None).await;
    stack.upload(&encoded_key, to_csv(&others), None).await;

    // WHEN the csv-ingest binary is invoked with each S3 event
    let ingest_api = RuntimeApi::start().await.expect("a Runtime API");
    let mut ingest =
        Function::start(&ingest_exe, "CsvIngestFunction", &ingest_api, &ingest_vars).expect("csv-ingest starts");
    let started = invoke(&ingest_api, &mut ingest, event("s3-put.json")).await;
    let dry = invoke(&ingest_api, &mut ingest, event("s3-put-dry-run.json")).await;
    let encoded = invoke(&ingest_api, &mut ingest, event("s3-put-encoded-key.json")).await;

    // THEN the upload starts its run (named by bucket, key and version), the dry run is finished
    // by the ingest, and the encoded key starts a run of its own
    let bucket = &stack.bucket;
    let run = run_of(&started, "started");
    assert_eq!(run, run_id(bucket, &key, &version), "{started}");
    let dry_run = run_of(&dry, "finished");
    let encoded_run = run_of(&encoded, "started");
    assert_eq!(encoded_run, run_id(bucket, &encoded_key, &encoded_version), "{encoded}");
    let dry_summary = stack.summary(&dry_run).await.expect("the dry run's summary.json");
    assert!(dry_summary.dry_run && dry_summary.rows_total == 20, "{dry_summary:#?}");

    // WHEN the nerm-provisioner binary is invoked with the shipped SQS batch
    let provisioner_api = RuntimeApi::start().await.expect("a Runtime API");
    let mut provisioner =
        Function::start(&provisioner_exe, "NermProvisionerFunction", &provisioner_api, &provisioner_vars)
            .expect("nerm-provisioner starts");
    let batch = invoke(&provisioner_api, &mut provisioner, event("sqs-batch.json")).await;

    // THEN every message of it is applied: no failure reported, its employees are in NERM
    assert_eq!(batch["batchItemFailures"], serde_json::json!([]), "{batch}\n{}", provisioner.log());
    let sample = logins_in_sqs_batch(&event_json("sqs-batch.json"));
    assert!(sample.len() >= 2, "the shipped batch carries {sample:?}");
    let state = stack.sim.state().await;
    for login in &sample {
        assert_eq!(users_with_login(&state, login).len(), 1, "{login} is not in NERM after the shipped batch");
    }

    // WHEN the work the ingest queued is delivered to the provisioner binary as SQS would
    let batches = drain_through(&stack, &provisioner_api, &mut provisioner).await;
    assert!(batches >= 1);

    // THEN both runs finish: the merged reports appear, NERM holds both files, and each run
    // (the dry run too) was announced on the topic
    let settings = stack.settings();
    assert_report_accounts_for(&stack, &settings, &run, &people).await;
    assert_report_accounts_for(&stack, &settings, &encoded_run, &others).await;
    for r in [&run, &encoded_run] {
        assert!(stack.object(&settings.report_key(r, "report.csv")).await.is_some(), "{r}: no report.csv");
        let summary = stack.summary(r).await.expect("a summary");
        assert_eq!(summary.count_of(shared::report::Outcome::Created), summary.rows_total, "{summary:#?}");
    }
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_nerm_matches(&state, &others);
    let notified = stack.notifications().await;
    assert_eq!(notified.len(), 3, "{notified:#?}");
    assert!(ingest.exited().is_none() && provisioner.exited().is_none(), "a function stopped between invocations");
}
