//! Malformed S3 and SQS events through the real handlers (moto + the NERM simulator): each is
//! refused with a reason, touches nothing, and is not retried where a retry cannot help.
//!
//! How retries work decides what "not retried" means. csv-ingest is invoked asynchronously by
//! S3: Lambda retries any invocation error (twice), whatever its error type, so a record that
//! can never be processed must end in an `Ok` answer naming why. nerm-provisioner answers per
//! message (`ReportBatchItemFailures`): a reported message is received again until the redrive
//! policy moves it to the DLQ (bounded by `maxReceiveCount`, where an operator sees it); one
//! that is not reported is deleted. `handlers.rs` already proves that unknown-version and
//! garbage messages are received exactly `maxReceiveCount` times and then dead-lettered; this
//! file covers the rest. Run through `infra/local/with-moto.sh`:
//!
//! ```sh
//! infra/local/with-moto.sh cargo test -p lambda-tests --test malformed_events
//! ```

mod common;

use common::engine::{assert_nerm_matches, assert_no_strays, employees, to_csv};
use common::*;
use serde_json::{Value, json};

/// An S3 event of one record built from the AWS-shaped event of `up`, changed by `edit`.
fn edited_event(stack: &Stack, up: &Uploaded, edit: impl FnOnce(&mut Value)) -> aws_lambda_events::event::s3::S3Event {
    let mut v = serde_json::to_value(stack.s3_event(&[up])).expect("an event serialises");
    edit(&mut v["Records"][0]);
    serde_json::from_value(v).expect("the edited event still has the S3 event's shape")
}

/// Nothing was started: no run state, no report, nothing queued, NERM not called.
async fn assert_nothing_started(stack: &Stack) {
    assert!(stack.keys("runs/").await.is_empty(), "{:?}", stack.keys("runs/").await);
    assert!(stack.keys("reports/").await.is_empty(), "{:?}", stack.keys("reports/").await);
    assert_eq!(stack.queue_depth(&stack.queue).await, 0, "nothing queued");
    assert_eq!(stack.sim.stats().await["total"], 0, "NERM was not called");
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_records_with_undecodable_keys_are_rejected_naming_the_bad_escape_and_not_retried() {
    // GIVEN an uploaded file, and events for it whose keys are not valid form encoding
    let stack = Stack::new("badkey").await;
    let ingest = stack.ingest();
    let csv = to_csv(&employees(3));
    assert!(csv.starts_with(HEADER), "the reference export");
    let up = stack.upload("incoming/hr.csv", csv, None).await;
    for (raw, what) in [
        ("incoming/hr%zz.csv", "bad escape %zz at byte 11"),
        ("incoming/hr%2", "'%' at byte 11 is not followed by two hex digits"),
        ("incoming/%ff%fe.csv", "does not decode to UTF-8"),
    ] {
        let event = edited_event(&stack, &up, |r| r["s3"]["object"]["key"] = json!(raw));

        // WHEN the event reaches csv-ingest
        let answer = csv_ingest::handler::handle(&ingest, event).await;

        // THEN the invocation succeeds (Lambda would retry an error), the record is rejected
        // naming the key and what is wrong with it
        let answer = answer.unwrap_or_else(|e| panic!("{raw}: an error would be retried by Lambda: {e:?}"));
        let record = &answer["records"][0];
        assert_eq!((record["key"].as_str(), record["outcome"].as_str()), (Some(raw), Some("rejected")), "{answer}");
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(&format!("{raw:?}")) && reason.contains(what), "{raw}: {reason}");
    }
    // AND nothing ran
    assert_nothing_started(&stack).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_records_without_a_key_or_for_another_bucket_are_answered_and_start_nothing() {
    // GIVEN one event with four records: no object key, no bucket name, another bucket, and a
    // removal (not an upload) of an input file
    let stack = Stack::new("oddrec").await;
    let ingest = stack.ingest();
    let up = stack.upload("incoming/hr.csv", to_csv(&employees(3)), None).await;
    let mut v = serde_json::to_value(stack.s3_event(&[&up, &up, &up, &up])).expect("an event");
    v["Records"][0]["s3"]["object"].as_object_mut().expect("an object").remove("key");
    v["Records"][1]["s3"]["bucket"].as_object_mut().expect("a bucket").remove("name");
    v["Records"][2]["s3"]["bucket"]["name"] = json!("someone-elses-bucket");
    v["Records"][3]["eventName"] = json!("ObjectRemoved:Delete");
    let event = serde_json::from_value(v).expect("an S3 event");

    // WHEN it reaches csv-ingest
    let answer = csv_ingest::handler::handle(&ingest, event).await.expect("no invocation error");

    // THEN every record is answered, each with why it was not taken on
    let records = answer["records"].as_array().expect("records");
    assert_eq!(records.len(), 4, "one answer per record: {answer}");
    assert_eq!(records[0]["outcome"], "rejected", "{answer}");
    assert!(records[0]["reason"].as_str().unwrap_or_default().contains("no object key"), "{answer}");
    for r in &records[1..3] {
        assert_eq!(r["outcome"], "ignored", "{answer}");
        assert_eq!(r["reason"], "another bucket", "{answer}");
    }
    let removal = records[3]["outcome"]["ignored"].as_str().unwrap_or_default();
    assert!(removal.contains("ObjectRemoved:Delete") && removal.contains("not an upload"), "{answer}");
    // AND nothing ran
    assert_nothing_started(&stack).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_event_for_an_object_that_does_not_exist_is_rejected_not_retried() {
    // GIVEN events for input keys with no object behind them: deleted after the upload, or
    // forged (a key longer than S3 allows)
    let stack = Stack::new("gone").await;
    let ingest = stack.ingest();
    let up = stack.upload("incoming/gone.csv", to_csv(&employees(3)), None).await;
    stack.aws.s3.delete_object().bucket(&stack.bucket).key(&up.key).send().await.expect("delete");
    let long = format!("incoming/{}.csv", "k".repeat(2_000));
    for key in ["incoming/gone.csv", long.as_str()] {
        let event = edited_event(&stack, &up, |r| r["s3"]["object"]["key"] = json!(key));

        // WHEN the event reaches csv-ingest
        let answer = csv_ingest::handler::handle(&ingest, event).await;

        // THEN the record is rejected with the storage error (a retry finds the same nothing),
        // not failed for Lambda to retry
        let short: String = key.chars().take(40).collect();
        let answer = answer.unwrap_or_else(|e| panic!("{short}: would be retried: {e:?}"));
        let record = &answer["records"][0];
        assert_eq!(record["outcome"], "rejected", "{answer}");
        let reason = record["reason"].as_str().unwrap_or_default();
        assert!(reason.contains(&format!("s3://{}/{key}", stack.bucket)), "{reason}");
    }
    // AND no run was left behind (a later upload of the same key starts normally)
    assert!(stack.keys("runs/").await.is_empty(), "{:?}", stack.keys("runs/").await);
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_s3_event_without_records_is_an_empty_answer() {
    let stack = Stack::new("norec").await;
    let event = serde_json::from_value(json!({ "Records": [] })).expect("an empty S3 event");
    let answer = csv_ingest::handler::handle(&stack.ingest(), event).await.expect("no error");
    assert_eq!(answer, json!({ "records": [] }));
    assert_nothing_started(&stack).await;
}

/// Sends `bodies` to the work queue and receives them all in one batch.
async fn one_batch(stack: &Stack, bodies: &[String]) -> Vec<aws_sdk_sqs::types::Message> {
    for body in bodies {
        stack.aws.sqs.send_message().queue_url(&stack.queue.url).message_body(body).send().await.expect("send");
    }
    let mut got = Vec::new();
    for _ in 0..10 {
        got.extend(stack.receive(&stack.queue, 1).await);
        if got.len() == bodies.len() {
            return got;
        }
    }
    panic!("received {} of {} messages", got.len(), bodies.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_batch_only_the_unusable_messages_are_reported_failed_and_the_good_one_is_applied_once() {
    // GIVEN a real work message of 4 employees (planned by the ingest) in one batch with four
    // unusable ones: a version 1 message without its target, one with an empty run id, one of
    // version "1" (a string), and an empty body
    let stack = Stack::new("mixed").await;
    let people = employees(4);
    let (answer, _) = stack.drop_csv(&stack.ingest(), "incoming/hr.csv", &to_csv(&people)).await;
    let run = run_of(&answer, "started");
    let good = stack.take_all(&stack.queue).await;
    assert_eq!(good.len(), 1);
    let good = good[0].body().expect("a body").to_string();
    let mut parsed: Value = serde_json::from_str(&good).expect("the good message is JSON");
    let no_target = {
        let mut v = parsed.clone();
        v.as_object_mut().expect("an object").remove("target");
        v.to_string()
    };
    let no_run = {
        let mut v = parsed.clone();
        v["run_id"] = json!(" ");
        v.to_string()
    };
    parsed["version"] = json!("1");
    let string_version = parsed.to_string();
    let bad = [no_target, no_run, string_version, String::new()];
    let mut bodies = vec![good.clone()];
    bodies.extend(bad.iter().cloned());
    let provisioner = stack.provisioner();

    // WHEN the provisioner gets them in one batch
    let batch = one_batch(&stack, &bodies).await;
    let response = nerm_provisioner::handler::handle(&provisioner, sqs_event(&stack.queue, &batch))
        .await
        .expect("a per-message answer, not a failed invocation");

    // THEN exactly the four unusable messages are reported, by id
    let id_of = |body: &str| {
        batch.iter().find(|m| m.body().unwrap_or_default() == body).and_then(|m| m.message_id()).expect("sent")
    };
    let mut failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    let mut want: Vec<&str> = bad.iter().map(|b| id_of(b)).collect();
    failed.sort();
    want.sort();
    assert_eq!(failed, want);

    // AND the good one was applied: once the links wave it queued is worked off, NERM holds the
    // 4 employees once and the run is complete
    // (the unusable ones are still invisible: their visibility timeout has not run out)
    let links = stack.take_all(&stack.queue).await;
    assert_eq!(links.len(), 1, "the links wave");
    let done = stack.provision_batch(&provisioner, &links).await;
    assert!(done.failed.is_empty(), "{done:?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    let summary = stack.summary(&run).await.expect("the run completed");
    assert_eq!(summary.count_of(shared::report::Outcome::Created), 4, "{summary:#?}");

    // WHEN Lambda deletes what was not reported and SQS redelivers the rest until the DLQ
    for m in &batch {
        let id = m.message_id().unwrap_or_default();
        if failed.contains(&id) {
            stack.release(&stack.queue, std::slice::from_ref(m)).await;
        } else {
            stack.delete(&stack.queue, m.receipt_handle().expect("a receipt handle")).await;
        }
    }
    stack.sim.reset_stats().await; // (checks the spec violations so far)
    let drain = stack.drain(&provisioner).await;

    // THEN the good message never came back, each bad one was received until the redrive limit
    // and then dead-lettered, body intact; and nothing more was written to NERM
    let counts = drain.receive_counts();
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.values().all(|seen| seen == &(2..=MAX_RECEIVE_COUNT).collect::<Vec<_>>()), "{counts:?}");
    let mut dead: Vec<String> =
        stack.take_all(&stack.dlq).await.iter().map(|m| m.body().unwrap_or_default().to_string()).collect();
    dead.sort();
    let mut bad_sorted = bad.to_vec();
    bad_sorted.sort();
    assert_eq!(dead, bad_sorted);
    assert!(nerm_writes(&stack.sim).await.is_empty(), "no NERM write after the good message");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_with_a_record_without_message_id_fails_before_any_message_is_applied() {
    // GIVEN a real work message and, after it in the same batch, a record without a messageId
    // (SQS cannot be told which message failed, so the whole batch must be retried)
    let stack = Stack::new("noid").await;
    let people = employees(3);
    stack.drop_csv(&stack.ingest(), "incoming/hr.csv", &to_csv(&people)).await;
    let batch = stack.receive(&stack.queue, 1).await;
    assert_eq!(batch.len(), 1);
    let mut v = serde_json::to_value(sqs_event(&stack.queue, &batch)).expect("an SQS event");
    let mut orphan = v["Records"][0].clone();
    orphan.as_object_mut().expect("a record").remove("messageId");
    v["Records"].as_array_mut().expect("records").push(orphan);
    let event = serde_json::from_value(v).expect("an SQS event");
    stack.sim.reset_stats().await;

    // WHEN the provisioner gets the batch
    let err = nerm_provisioner::handler::handle(&stack.provisioner(), event).await.expect_err("the batch fails");

    // THEN it fails as a whole, retryable, saying why, before applying the good message
    // (whose work would otherwise be done twice)
    assert!(err.retryable, "{err:?}");
    assert!(err.message.contains("messageId"), "{err:?}");
    assert_eq!(stack.sim.stats().await["total"], 0, "no NERM call before the batch was refused");
    let parts: Vec<String> = stack.keys("reports/").await.into_iter().filter(|k| k.contains("/parts/")).collect();
    assert!(parts.iter().all(|k| k.contains(".ingest")), "no part but the ingest's written: {parts:?}");
}
