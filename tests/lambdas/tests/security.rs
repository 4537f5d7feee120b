//! Security through the real handlers (moto + the NERM simulator):
//!
//! - no secret leaks: every log line of a full run (TRACE for every crate, the AWS SDK and the
//!   HTTP stack included), with NERM faults, a rotated token and the 401s it causes, every
//!   object written to S3, every notification and every error is searched for the tokens and
//!   the secret's JSON; the same for an ISC PAT: its client secrets (rotated mid-test) and every
//!   access token the token endpoint issued;
//! - S3 keys never escape the configured prefixes: hostile keys in events are refused or, when
//!   they are legitimate S3 keys, never become paths, and every object the pipeline writes
//!   lands under the report or run-state prefix.
//!
//! Run through `infra/local/with-moto.sh`:
//!
//! ```sh
//! infra/local/with-moto.sh cargo test -p lambda-tests --test security -- --nocapture
//! ```

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use common::engine::{assert_nerm_matches, assert_no_strays, employees, to_csv};
use common::*;
use serde_json::{Value, json};
use shared::pipeline::Settings;
use shared::report::Outcome;

// ----- capturing every log line -----------------------------------------------------------------

/// Everything every `tracing` subscriber writer wrote, process-wide.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
    }
}

/// Installs (once) a global subscriber writing every event of every crate at TRACE, as text
/// and as JSON (the two formats the Lambda runtime's subscriber uses), into one buffer; `log`
/// records (reqwest, hyper's older paths) are forwarded into it too.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        let capture = Capture::default();
        let text = {
            let c = capture.clone();
            tracing_subscriber::fmt::layer().with_ansi(false).with_writer(move || c.clone())
        };
        let json = {
            let c = capture.clone();
            tracing_subscriber::fmt::layer().json().with_writer(move || c.clone())
        };
        tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new("trace"))
            .with(text)
            .with(json)
            .try_init()
            .expect("the capturing subscriber is the only one in this test binary");
        capture
    })
}

/// The ways a secret can be written: as is, JSON-escaped, `Debug`-escaped.
fn spellings(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).expect("a string serialises");
    vec![secret.to_string(), json.trim_matches('"').to_string(), format!("{secret:?}").trim_matches('"').to_string()]
}

/// The first secret (and where) found in `text`, if any.
fn leak_in(text: &str, secrets: &[String]) -> Option<String> {
    secrets.iter().flat_map(|s| spellings(s)).find(|s| text.contains(s.as_str())).map(|s| {
        let at = text.find(s.as_str()).unwrap_or(0);
        let from = text[..at].char_indices().rev().nth(200).map_or(0, |(i, _)| i);
        format!("{s:?} in …{}…", &text[from..(at + s.len() + 100).min(text.len())].replace('\n', "⏎"))
    })
}

/// A token nobody else uses.
fn fresh_token(tag: &str) -> String {
    format!("{tag}-{}", unique("tok")).replace('-', "x")
}

/// Delivers an S3 event as Lambda does (an error is retried, twice at most); every error
/// message is collected.
async fn deliver_retrying(
    stack: &Stack,
    deps: &csv_ingest::handler::Deps,
    up: &Uploaded,
    errors: &mut Vec<String>,
) -> Value {
    for _ in 0..3 {
        match csv_ingest::handler::handle(deps, stack.s3_event(&[up])).await {
            Ok(answer) => return answer,
            Err(e) => errors.push(format!("{e:?} / {e}")),
        }
    }
    panic!("csv-ingest failed three times: {errors:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_token_or_secret_json_appears_in_logs_reports_notifications_or_errors_of_a_faulty_run_with_a_rotation() {
    // GIVEN every log line of this process captured at TRACE, warm Lambdas that ran once with
    // the first token (now in their caches), and 16 KiB of NERM traffic so far
    let logs = capture();
    tracing::info!("security test: capture on");
    let stack = Stack::new("leak").await;
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());
    let warm = employees(5);
    let (answer, _) = stack.drop_csv(&ingest, "incoming/warm-up.csv", &to_csv(&warm)).await;
    run_of(&answer, "started");
    assert!(stack.drain(&provisioner).await.failures().is_empty());
    let mut tokens = vec![TOKEN.to_string()];
    let mut secrets = vec![secret_json(&stack.sim.api_url(), TOKEN)];
    let mut errors: Vec<String> = Vec::new();

    // WHEN the token is rotated (NERM accepts only the new one) and NERM turns faulty: 5xx,
    // 429s, dropped connections, writes applied but answered with an error
    let second = fresh_token("second");
    stack.sim.configure(json!({ "tokens": [second] })).await;
    stack.rotate_secret(&second).await;
    tokens.push(second.clone());
    secrets.push(secret_json(&stack.sim.api_url(), &second));
    stack
        .sim
        .configure(json!({ "faults": {
            "error_rate": 0.15, "throttle_rate": 0.1, "throttle_retry_after_secs": 1,
            "drop_rate": 0.03, "commit_then_fail_rate": 0.05, "seed": 11
        } }))
        .await;
    // ... and an export of 30 employees (2 of them bad) arrives: the ingest's cached token is
    // refused, it re-reads the secret
    let people = employees(30);
    let mut bad = bad_row("E99001", "bad.one@example.com");
    bad.email = "bad.one.example.com".into();
    let csv = csv_with(&people, &[(3, bad)]);
    assert!(csv.starts_with(HEADER), "the reference export");
    let up = stack.upload("incoming/hr.csv", csv.into_bytes(), None).await;
    let answer = deliver_retrying(&stack, &ingest, &up, &mut errors).await;
    let run = run_of(&answer, "started");
    // ... and the token is rotated once more before the provisioner (cache: the first token) runs
    let third = fresh_token("third");
    stack.sim.configure(json!({ "tokens": [third] })).await;
    stack.rotate_secret(&third).await;
    tokens.push(third.clone());
    secrets.push(secret_json(&stack.sim.api_url(), &third));
    let drain = stack.drain(&provisioner).await;
    // (rows that failed on their last receive went to the DLQ: read them too)
    let dead: Vec<String> =
        stack.take_all(&stack.dlq).await.iter().map(|m| m.body().unwrap_or_default().to_string()).collect();

    // THEN the run went through the refusals and the faults
    let stats = stack.sim.stats().await;
    assert!(stats["unauthorized"].as_u64().unwrap_or(0) >= 2, "both Lambdas met a 401: {stats}");
    let faults: u64 = stats["faults"].as_object().map(|f| f.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
    assert!(faults > 0, "faults were injected: {stats}");
    let summary = stack.summary(&run).await.expect("the run completed");
    assert_eq!(summary.rows_total, 31, "{summary:#?}");
    println!(
        "leak test: {} NERM requests, {} × 401, faults {}, outcomes {:?}, {} batches, {} dead-lettered, {} errors",
        stats["total"],
        stats["unauthorized"],
        stats["faults"],
        summary.counts.iter().filter(|(_, n)| **n > 0).collect::<Vec<_>>(),
        drain.batches.len(),
        dead.len(),
        errors.len()
    );

    // AND the capture caught the run, at every level (so a leak would have been seen)
    let text = logs.text();
    for line in ["security test: capture on", "ingest done", "part provisioned", "retrying NERM call"] {
        assert!(text.contains(line), "the capture lacks {line:?} ({} bytes captured)", text.len());
    }
    assert!(text.contains("TRACE") && text.contains("DEBUG"), "TRACE and DEBUG lines were captured");
    println!("captured {} bytes, {} lines of logs", text.len(), text.lines().count());

    // AND no token or secret is in any of it
    let mut all: Vec<String> = tokens.clone();
    all.extend(secrets.iter().cloned());
    assert_eq!(leak_in(&text, &all), None, "a secret in the logs");
    for key in stack.all_keys().await {
        let body = String::from_utf8_lossy(&stack.object(&key).await.unwrap_or_default()).into_owned();
        assert_eq!(leak_in(&body, &all), None, "a secret in s3://{}/{key}", stack.bucket);
    }
    for (subject, message) in stack.notifications().await {
        assert_eq!(leak_in(&format!("{subject}\n{message}"), &all), None, "a secret in a notification");
    }
    for body in &dead {
        assert_eq!(leak_in(body, &all), None, "a secret in a dead-lettered message");
    }
    for e in &errors {
        assert_eq!(leak_in(e, &all), None, "a secret in a handler error");
    }
    let report_errors: Vec<String> =
        stack.report_rows(&run).await.into_iter().filter_map(|r| r.error).collect::<Vec<_>>();
    assert!(!report_errors.is_empty(), "the bad row's error is in the report");
    assert_eq!(leak_in(&report_errors.join("\n"), &all), None, "a secret in a report error");
    // (the canary: the check itself finds a token where there is one)
    assert!(leak_in(&format!("Bearer {third}"), &all).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_client_secret_or_access_token_appears_in_logs_reports_notifications_or_errors_of_a_pat_run_with_a_rotation()
{
    // GIVEN every log line captured, a simulator issuing 3-second access tokens for an ISC PAT,
    // the PAT in the secret, and warm Lambdas that ran once with it
    let logs = capture();
    tracing::info!("security test (PAT): capture on");
    let (client_id, first_secret) = ("leak-pat-client", fresh_token("patfirst"));
    let sim = Harness::with(json!({
        "oauth": { "client_id": client_id, "client_secret": first_secret, "token_lifetime_s": 3 }
    }))
    .await;
    let stack = Stack::with_sim("leakpat", sim).await;
    stack.put_pat_secret(client_id, &first_secret).await;
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());
    let (answer, _) = stack.drop_csv(&ingest, "incoming/warm-up.csv", &to_csv(&employees(5))).await;
    run_of(&answer, "started");
    assert!(stack.drain(&provisioner).await.failures().is_empty());
    let mut access_tokens = stack.sim.running.sim.issued_tokens();
    let mut errors: Vec<String> = Vec::new();

    // WHEN the client secret is rotated (the old one refused, its tokens revoked), the token
    // endpoint and NERM turn faulty, and an export of 30 employees (one bad) arrives
    let second_secret = fresh_token("patsecond");
    stack.sim.configure(json!({ "oauth": { "client_secret": second_secret } })).await;
    access_tokens.extend(stack.sim.running.sim.issued_tokens());
    stack.sim.running.sim.revoke_tokens();
    stack.put_pat_secret(client_id, &second_secret).await;
    let token_faults: Vec<Value> = ["error", "throttle", "drop"]
        .iter()
        .map(|f| json!({ "route": nerm_sim::oauth::TOKEN_ROUTE, "fault": f }))
        .collect();
    stack
        .sim
        .configure(json!({ "faults": {
            "error_rate": 0.1, "throttle_rate": 0.05, "throttle_retry_after_secs": 1, "seed": 7,
            "script": token_faults
        } }))
        .await;
    let people = employees(30);
    let mut bad = bad_row("E99002", "bad.two@example.com");
    bad.email = "bad.two.example.com".into();
    let up = stack.upload("incoming/hr.csv", csv_with(&people, &[(4, bad)]).into_bytes(), None).await;
    let answer = deliver_retrying(&stack, &ingest, &up, &mut errors).await;
    let run = run_of(&answer, "started");
    let drain = stack.drain(&provisioner).await;
    let dead: Vec<String> =
        stack.take_all(&stack.dlq).await.iter().map(|m| m.body().unwrap_or_default().to_string()).collect();
    access_tokens.extend(stack.sim.running.sim.issued_tokens());

    // THEN the run went through the rotation, the token endpoint's faults and the renewals
    let stats = stack.sim.stats().await;
    assert!(stats["token_refusals"].as_u64().unwrap_or(0) >= 1, "the old secret was refused: {stats}");
    assert_eq!(stats["faults"]["token_error"], 1, "{stats}");
    let summary = stack.summary(&run).await.expect("the run completed");
    assert_eq!(summary.rows_total, 31, "{summary:#?}");
    assert!(access_tokens.len() >= 3, "tokens were issued before and after the rotation: {}", access_tokens.len());
    println!(
        "PAT leak test: {} exchanges, {} batches, {} errors",
        stats["token_requests"],
        drain.batches.len(),
        errors.len()
    );

    // AND no client secret, access token or secret JSON is anywhere
    let mut all: Vec<String> = vec![first_secret.clone(), second_secret.clone()];
    all.extend(access_tokens.iter().cloned());
    let text = logs.text();
    assert!(text.contains("security test (PAT): capture on") && text.contains("part provisioned"));
    assert_eq!(leak_in(&text, &all), None, "a secret in the logs");
    for key in stack.all_keys().await {
        let body = String::from_utf8_lossy(&stack.object(&key).await.unwrap_or_default()).into_owned();
        assert_eq!(leak_in(&body, &all), None, "a secret in s3://{}/{key}", stack.bucket);
    }
    for (subject, message) in stack.notifications().await {
        assert_eq!(leak_in(&format!("{subject}\n{message}"), &all), None, "a secret in a notification");
    }
    for body in dead.iter().chain(&errors) {
        assert_eq!(leak_in(body, &all), None, "a secret in a dead-lettered message or handler error");
    }
    let report_errors: Vec<String> = stack.report_rows(&run).await.into_iter().filter_map(|r| r.error).collect();
    assert_eq!(leak_in(&report_errors.join("\n"), &all), None, "a secret in a report error");
    assert!(leak_in(&format!("Bearer {}", access_tokens[0]), &all).is_some(), "the canary");
}

// ----- S3 keys never escape the configured prefixes ---------------------------------------------

/// Custom prefixes, nested, so "outside" has many meanings.
fn hr_settings() -> Settings {
    Settings {
        input_prefix: "hr/in/".into(),
        report_prefix: "hr/out/reports/".into(),
        run_state_prefix: "hr/state/".into(),
        items_per_message: 25,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_keys_from_events_never_lead_outside_the_configured_prefixes() {
    // GIVEN a deployment with input hr/in/, reports hr/out/reports/, run state hr/state/
    let stack = Stack::new("keys").await;
    let settings = hr_settings();
    let mut cfg = stack.ingest_config();
    cfg.settings = settings.clone();
    let ingest = stack.ingest_with(cfg);
    let mut pcfg = stack.provisioner_config();
    pcfg.settings = settings.clone();
    let provisioner =
        nerm_provisioner::handler::Deps::with_sdk(pcfg, &stack.aws.sdk).expect("the provisioner's dependencies");
    let people = employees(4);
    let csv = to_csv(&people);
    let template = stack.upload("hr/in/template.csv", csv.clone().into_bytes(), None).await;

    // WHEN events arrive whose keys climb out of the input prefix, hide '..' in escapes, look
    // absolute, or are longer than S3 allows (forged: no such object)
    let refused = [
        ("hr/in/../out/reports/x.csv", "'..' segment"),
        ("hr/in/%2e%2e/x.csv", "'..' segment"),
        ("hr/in/%2E%2E%2Fout%2Freports%2Fx.csv", "'..' segment"),
        ("hr/in/dry-run/..%2F..%2Fstate%2Fx.csv", "'..' segment"),
        ("/hr/in/x.csv", "outside the input prefix"),
        ("hr%2Fout%2Freports%2Fx.csv", "outside the input prefix"),
        ("hr/in/x.csv%00.txt", "not a .csv file"),
    ];
    let long = format!("hr/in/{}.csv", "a".repeat(4_000));
    let mut event = serde_json::to_value(stack.s3_event(&[&template])).expect("an event");
    let record = event["Records"][0].clone();
    let mut records = Vec::new();
    for (raw, _) in refused.iter().chain([&(long.as_str(), "")]) {
        let mut r = record.clone();
        r["s3"]["object"]["key"] = json!(raw);
        records.push(r);
    }
    event["Records"] = Value::Array(records);
    let before = stack.all_keys().await;
    let answer = csv_ingest::handler::handle(&ingest, serde_json::from_value(event).expect("an S3 event"))
        .await
        .unwrap_or_else(|e| panic!("hostile keys must not fail the invocation (Lambda retries): {e:?}"));

    // THEN each is refused with its reason, and nothing at all was written or queued
    let answers = answer["records"].as_array().expect("records");
    assert_eq!(answers.len(), refused.len() + 1, "{answer}");
    for ((raw, why), a) in refused.iter().zip(answers) {
        let reason = a["outcome"]["ignored"].as_str().unwrap_or_default();
        assert!(reason.contains(why), "{raw}: {a}");
    }
    assert_eq!(answers[refused.len()]["outcome"], "rejected", "the forged long key: {answer}");
    assert_eq!(stack.all_keys().await, before, "nothing written for refused keys");
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    assert_eq!(stack.sim.stats().await["total"], 0, "NERM not called");

    // WHEN legitimate but odd keys under the input prefix are uploaded and delivered: percent
    // signs, backslashes, a '.' segment, spaces and quotes, the longest key S3 allows
    let odd = [
        "hr/in/%2e%2e/x.csv".to_string(),
        "hr/in/..\\out\\reports\\x.csv".to_string(),
        "hr/in/./x.csv".to_string(),
        "hr/in/a \"b\" 'c' & d.csv".to_string(),
        format!("hr/in/{}.csv", "L".repeat(1024 - "hr/in/.csv".len())),
    ];
    let mut runs = Vec::new();
    for (i, key) in odd.iter().enumerate() {
        // (each file a different version: changed title of the first employee)
        let mut rows = people.clone();
        rows[0].title = format!("Title {i}");
        let up = stack.upload(key, to_csv(&rows).into_bytes(), None).await;
        let answer = stack.deliver(&ingest, stack.s3_event(&[&up])).await;
        let record = &answer["records"][0];
        assert_eq!(record["key"].as_str(), Some(key.as_str()), "the key decodes to itself: {answer}");
        let outcome = &record["outcome"];
        let run = outcome["started"].as_str().or(outcome["finished"].as_str());
        runs.push(run.unwrap_or_else(|| panic!("{key}: {answer}")).to_string());
        let drain = stack.drain(&provisioner).await;
        assert!(drain.failures().is_empty(), "{drain:#?}");
        // AND the key never became a local path: the work directory is empty again
        let left: Vec<_> = std::fs::read_dir(&stack.work_dir).expect("the work dir").collect();
        assert!(left.is_empty(), "{key}: files left in the work directory: {left:?}");
    }

    // THEN every object the pipeline wrote is under the report or run-state prefix, named by
    // a run id, never by the key
    let uploads: Vec<&str> = odd.iter().map(String::as_str).chain([template.key.as_str()]).collect();
    let written: Vec<String> = stack.all_keys().await.into_iter().filter(|k| !uploads.contains(&k.as_str())).collect();
    assert!(!written.is_empty());
    for key in &written {
        let rest = key
            .strip_prefix(&settings.report_prefix)
            .or_else(|| key.strip_prefix(&settings.run_state_prefix))
            .unwrap_or_else(|| panic!("{key} was written outside hr/out/reports/ and hr/state/"));
        let run = rest.split('/').next().unwrap_or_default();
        assert!(runs.iter().any(|r| r == run), "{key}: not under a run id");
        assert!(!key.contains(".."), "{key}");
    }
    assert!(stack.keys("reports/").await.is_empty() && stack.keys("runs/").await.is_empty(), "default prefixes unused");
    // AND the runs did their work: NERM holds the employees once, with the last title
    let state = stack.sim.state().await;
    let mut last = people.clone();
    last[0].title = format!("Title {}", odd.len() - 1);
    assert_nerm_matches(&state, &last);
    assert_no_strays(&state, &last);
    let report = stack.text(&settings.report_key(&runs[runs.len() - 1], "report.jsonl")).await;
    assert_eq!(report.lines().count(), 4);
    let rows: Vec<shared::report::RowReport> =
        report.lines().map(|l| serde_json::from_str(l).expect("a row")).collect();
    assert!(rows.iter().all(|r| r.outcome.is_done() && r.outcome != Outcome::Failed), "{rows:#?}");
}
