//! The two Lambdas end to end: the real `csv_ingest::handler::handle` and
//! `nerm_provisioner::handler::handle`, with S3 and SQS events, against moto_server (S3, SQS,
//! SNS, Secrets Manager) and the NERM simulator. Run through `infra/local/with-moto.sh`:
//!
//! ```sh
//! infra/local/with-moto.sh cargo test -p lambda-tests
//! ```

mod common;

use std::collections::BTreeMap;

use common::engine::{self, assert_nerm_matches, assert_no_strays, employees, to_csv};
use common::*;
use serde_json::json;
use shared::report::Outcome;

/// The example mapping config in full-sync mode (leavers disabled, 10 % threshold).
fn full_sync_toml() -> String {
    let text = csv_ingest::config::PACKAGED_CONFIG;
    assert!(text.contains("mode = \"upsert\""), "the packaged config no longer sets sync.mode = \"upsert\"");
    text.replace("mode = \"upsert\"", "mode = \"full\"")
}

/// Outcome counts of report rows.
fn outcomes(rows: &[shared::report::RowReport]) -> BTreeMap<Outcome, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.outcome).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_csv_provisions_every_employee_and_completes_the_report() {
    // GIVEN 60 employees as HR exports them: managers also on later rows, some manager logins in
    // another letter case than the manager's own row
    let people = employees(60);
    assert!(people.iter().any(|p| !p.manager_login.is_empty() && !people.iter().any(|m| m.login == p.manager_login)));
    a_dropped_csv_is_provisioned_and_reported(&people).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_csv_whose_manager_logins_match_their_rows_provisions_every_employee() {
    // GIVEN the same 60 employees, each manager login spelt exactly as on the manager's own row
    let mut people = employees(60);
    let logins: Vec<String> = people.iter().map(|p| p.login.clone()).collect();
    for p in &mut people {
        if let Some(l) = logins.iter().find(|l| l.eq_ignore_ascii_case(&p.manager_login)) {
            p.manager_login = l.clone();
        }
    }
    a_dropped_csv_is_provisioned_and_reported(&people).await;
}

/// Drops `people` (60, in messages of 25) plus 2 bad rows as "incoming/hr export.csv", lets the
/// provisioner work the queue off, and checks NERM, the report and the notification.
async fn a_dropped_csv_is_provisioned_and_reported(people: &[HrRow]) {
    // GIVEN the employees, a bad row and a row with an unknown manager in the reference export
    let stack = Stack::new("drop").await;
    let mut bad_email = bad_row("E90001", "bad.email@example.com");
    bad_email.email = "bad.email.example.com".into();
    let mut unknown_manager = bad_row("E90002", "orphan@example.com");
    unknown_manager.manager_login = "ghost@example.com".into();
    let csv = csv_with(people, &[(10, bad_email), (41, unknown_manager.clone())]);
    // The unknown manager costs that employee only the manager link.
    let mut imported = people.to_vec();
    imported.push(HrRow { manager_login: String::new(), ..unknown_manager });
    assert!(csv.starts_with(HEADER));
    // (small messages, so that managers and employees are in different parts)
    let mut cfg = stack.ingest_config();
    cfg.settings.items_per_message = 25;
    let (ingest, provisioner) = (stack.ingest_with(cfg), stack.provisioner());

    // WHEN HR drops it as "incoming/hr export.csv" (the event carries "incoming/hr+export.csv")
    let up = stack.upload("incoming/hr export.csv", csv, None).await;
    let event = stack.s3_event(&[&up]);
    assert_eq!(event.records[0].s3.object.key.as_deref(), Some("incoming/hr+export.csv"));
    let answer = stack.deliver(&ingest, event).await;

    // THEN the ingest started one run for the decoded key, fanned out in messages of 25
    let run = run_of(&answer, "started");
    let record = &answer["records"][0];
    assert_eq!(record["key"], "incoming/hr export.csv", "{answer}");
    assert_eq!(record["outcome"]["rows"], 62, "{answer}");
    assert_eq!(record["outcome"]["messages"], 3, "61 employees / 25 per message: {answer}");
    assert_eq!(stack.queue_depth(&stack.queue).await, 3);

    // WHEN the provisioner works the queue off
    let drain = stack.drain(&provisioner).await;

    // THEN nothing failed, and NERM holds the 61 employees exactly once, fully linked
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &imported);
    assert_no_strays(&state, &imported);

    // AND the run's report is complete: summary, 62 JSONL rows, the CSV
    let summary = stack.summary(&run).await.expect("summary.json is written once every row is reported");
    assert_eq!(summary.run_id, run);
    assert!(!summary.dry_run);
    assert_eq!(summary.rows_total, 62);
    assert_eq!(summary.count_of(Outcome::Created), 61, "{summary:#?}");
    assert_eq!(summary.count_of(Outcome::Rejected), 1, "{summary:#?}");
    assert_eq!(summary.rows_with_warnings, 1, "{summary:#?}");
    assert_eq!(summary.count_of(Outcome::Failed), 0, "{summary:#?}");
    assert!(summary.requests_total > 0, "NERM requests are counted: {summary:#?}");
    let rows = stack.report_rows(&run).await;
    assert_eq!(rows.len(), 62);
    assert_eq!(outcomes(&rows), BTreeMap::from([(Outcome::Created, 61), (Outcome::Rejected, 1)]));
    for p in people {
        let mine: Vec<_> = rows.iter().filter(|r| r.employee_key == p.employee_id).collect();
        assert_eq!(mine.len(), 1, "{}: {mine:?}", p.employee_id);
        assert_eq!(mine[0].outcome, Outcome::Created, "{:?}", mine[0]);
    }
    let row = rows.iter().find(|r| r.employee_key == "E90001").expect("a row for E90001");
    assert_eq!((row.outcome, row.line), (Outcome::Rejected, 12), "{row:?}");
    let error = row.error.as_deref().unwrap_or_default();
    assert!(error.contains("column \"email\""), "{error}");
    let row = rows.iter().find(|r| r.employee_key == "E90002").expect("a row for E90002");
    assert_eq!((row.outcome, row.line), (Outcome::Created, 43), "{row:?}");
    assert_eq!(
        row.warnings,
        [
            r#"line 43, column "manager_login": manager "ghost@example.com" is neither in the file nor a NERM user; the employee is imported without this manager link"#
        ]
    );
    let report_csv = stack.text(&format!("reports/{run}/report.csv")).await;
    assert_eq!(report_csv.lines().count(), 63, "header plus 62 rows:\n{report_csv}");

    // AND one notification announced it
    let notes = stack.notifications().await;
    assert_eq!(notes.len(), 1, "{notes:#?}");
    let (subject, message) = &notes[0];
    assert!(subject.contains(&run[..12]) && subject.contains("62 rows"), "{subject}");
    let announced: shared::report::Summary = serde_json::from_str(message).expect("the message is the summary");
    assert_eq!(announced.count_of(Outcome::Created), 61);
    // AND it says where every report file is, and links report.html's page in the S3 console
    let message: serde_json::Value = serde_json::from_str(message).expect("JSON");
    for file in shared::pipeline::REPORT_FILES {
        let uri = format!("s3://{}/reports/{run}/{file}", stack.bucket);
        assert_eq!(message["report_files"][file], uri.as_str(), "{message:#}");
        let key = uri.strip_prefix(&format!("s3://{}/", stack.bucket)).unwrap();
        assert!(stack.object(key).await.is_some(), "{uri} exists");
    }
    let console = message["report_console_url"].as_str().unwrap_or_default();
    assert!(
        console.starts_with(&format!("https://console.aws.amazon.com/s3/object/{}?region=", stack.bucket))
            && console.ends_with(&format!("&prefix=reports%2F{run}%2Freport.html")),
        "{console}"
    );

    // AND the queues are empty, and every NERM call kept to the OpenAPI document
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    assert_eq!(stack.queue_depth(&stack.dlq).await, 0);
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn managers_created_by_other_parts_are_linked_in_one_full_links_wave_without_one_nerm_lookup() {
    // GIVEN 60 new employees, managers anywhere in the file, queued in 6 records messages of 10:
    // most plans' manager is created by another message
    let stack = Stack::new("ids").await;
    let people = employees(60);
    let mut cfg = stack.ingest_config();
    cfg.settings.items_per_message = 10;
    let (answer, _) = stack.drop_csv(&stack.ingest_with(cfg), "incoming/hr.csv", &to_csv(&people)).await;
    let run = run_of(&answer, "started");
    assert_eq!(answer["records"][0]["outcome"]["messages"], 6, "{answer}");
    let settings = stack.settings();
    let queued = stack.take_all(&stack.queue).await;
    // (in the worst order: every message before the parts its managers come from)
    for m in queued.iter().rev() {
        let body = m.body().unwrap_or_default();
        stack.aws.sqs.send_message().queue_url(&stack.queue.url).message_body(body).send().await.expect("send");
    }
    stack.sim.reset_stats().await;

    // WHEN the provisioner works the queue off
    let drain = stack.drain(&stack.provisioner()).await;

    // THEN nothing failed, and NERM holds the 60 employees exactly once, fully linked
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    let rows = assert_report_accounts_for(&stack, &settings, &run, &people).await;
    assert_eq!(outcomes(&rows), BTreeMap::from([(Outcome::Created, 60)]));
    // AND the manager links went out as one links message after the 6 records messages: one
    // bulk call each for the user_manager links and the profiles' manager attribute
    assert_eq!(drain.messages_handled(), 7, "{drain:#?}");
    let requests = engine::requests_of(&stack.sim.stats().await);
    assert_eq!(requests.get("POST /api/user_managers"), Some(&1), "{requests:#?}");
    // ... and not one manager was looked up in NERM: no read of users or their links at all
    let lookups: BTreeMap<&String, &u64> = requests
        .iter()
        .filter(|(k, _)| k.starts_with("GET /api/users") || k.starts_with("GET /api/user_profiles"))
        .collect();
    assert!(lookups.is_empty(), "manager lookups: {lookups:?} of {requests:#?}");
    // AND each records part left its ids object under the run's state prefix
    let ids = stack.keys(&format!("{}{run}/ids/", settings.run_state_prefix)).await;
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert_eq!(stack.queue_depth(&stack.dlq).await, 0);
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_s3_event_delivered_twice_runs_once() {
    // GIVEN a file of 10 employees, taken on once
    let stack = Stack::new("dup").await;
    let people = employees(10);
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());
    let up = stack.upload("incoming/hr.csv", to_csv(&people), None).await;
    let event = stack.s3_event(&[&up]);
    let first = stack.deliver(&ingest, event.clone()).await;
    let run = run_of(&first, "started");
    assert_eq!(stack.queue_depth(&stack.queue).await, 1);
    stack.sim.reset_stats().await;

    // WHEN S3 delivers the same event again
    let second = stack.deliver(&ingest, event).await;

    // THEN it is a duplicate of the same run: nothing queued again, NERM not even read
    assert_eq!(run_of(&second, "duplicate"), run);
    assert_eq!(stack.queue_depth(&stack.queue).await, 1, "the messages were queued once");
    assert_eq!(stack.sim.stats().await["total"], 0, "a duplicate delivery makes no NERM request");

    // AND the one run provisions everybody once
    let drain = stack.drain(&provisioner).await;
    assert_eq!(drain.messages_handled(), 2, "the records message and the links wave: {drain:#?}");
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    let writes = nerm_writes(&stack.sim).await;
    assert_eq!(writes.get("POST /api/users"), Some(&1), "one bulk create of the users: {writes:?}");
    assert_eq!(stack.summary(&run).await.expect("a summary").count_of(Outcome::Created), 10);
    assert_eq!(stack.notifications().await.len(), 1);
    stack.sim.assert_no_spec_violations().await;
}

/// Works the queue off without a failure and checks that NERM holds exactly `people`, each once.
async fn drain_and_check_nerm_holds(stack: &Stack, provisioner: &nerm_provisioner::handler::Deps, people: &[HrRow]) {
    let drain = stack.drain(provisioner).await;
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, people);
    assert_no_strays(&state, people);
}

#[tokio::test(flavor = "multi_thread")]
async fn lambdas_retry_of_a_killed_ingest_takes_the_run_over_but_another_delivery_does_not() {
    // GIVEN an uploaded file whose ingest was killed after claiming the run (its marker names
    // the invocation; no manifest was written)
    let stack = Stack::new("killedingest").await;
    let people = employees(10);
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());
    let up = stack.upload("incoming/hr.csv", to_csv(&people), None).await;
    let version = up.version_id.clone().filter(|v| !v.is_empty() && v != "null").unwrap_or(up.etag.clone());
    let run = shared::pipeline::ingest::run_id(&stack.bucket, &up.key, &version);
    let marker = json!({ "run_id": run, "started_at": shared::report::rfc3339(shared::report::now()), "invocation": "req-killed" });
    stack.upload(&stack.settings().marker_key(&run), marker.to_string(), None).await;

    // WHEN S3 delivers the event again in another invocation
    let other = csv_ingest::handler::handle_invocation(&ingest, stack.s3_event(&[&up]), "req-other")
        .await
        .expect("no invocation error");

    // THEN that is a duplicate: nothing queued
    assert_eq!(run_of(&other, "duplicate"), run);
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);

    // WHEN Lambda retries the killed invocation (same request id)
    let retry = csv_ingest::handler::handle_invocation(&ingest, stack.s3_event(&[&up]), "req-killed")
        .await
        .expect("no invocation error");

    // THEN the retry takes the run on and everybody is provisioned once
    assert_eq!(run_of(&retry, "started"), run);
    drain_and_check_nerm_holds(&stack, &provisioner, &people).await;
    assert_eq!(stack.summary(&run).await.expect("a summary").count_of(Outcome::Created), 10);
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_ingest_whose_first_attempt_queued_work_reports_each_row_once() {
    // GIVEN an ingest attempt that queued 5 messages of 8 employees and died before writing
    // its manifest, and a provisioner that already worked 2 of those messages
    let stack = Stack::new("requeued").await;
    let people = employees(40);
    let mut cfg = stack.ingest_config();
    cfg.settings.items_per_message = 8;
    let ingest = stack.ingest_with(cfg);
    let provisioner = stack.provisioner();
    let up = stack.upload("incoming/hr.csv", to_csv(&people), None).await;
    let first = csv_ingest::handler::handle_invocation(&ingest, stack.s3_event(&[&up]), "req-died")
        .await
        .expect("no invocation error");
    let run = run_of(&first, "started");
    let settings = stack.settings();
    stack.aws.s3.delete_object().bucket(&stack.bucket).key(settings.manifest_key(&run)).send().await.expect("delete");
    let early = stack.receive_up_to(&stack.queue, 2, 1).await;
    assert_eq!(early.len(), 2, "two of the first attempt's messages");
    let worked = stack.provision_batch(&provisioner, &early).await;
    assert!(worked.failed.is_empty(), "{worked:?}");
    assert!(stack.summary(&run).await.is_none(), "no manifest, no summary");

    // WHEN Lambda retries the invocation, and the provisioners work off both attempts' messages
    let retry = csv_ingest::handler::handle_invocation(&ingest, stack.s3_event(&[&up]), "req-died")
        .await
        .expect("no invocation error");
    assert_eq!(run_of(&retry, "started"), run);

    // THEN NERM holds every employee once, and the report has every row once: the retry's
    // outcomes, not the first attempt's as well
    drain_and_check_nerm_holds(&stack, &provisioner, &people).await;
    let rows = assert_report_accounts_for(&stack, &settings, &run, &people).await;
    assert!(rows.iter().all(|r| r.outcome.is_done()), "{rows:#?}");
    let summary = stack.summary(&run).await.expect("a summary");
    assert_eq!(summary.counts.values().sum::<u64>(), 40, "{summary:#?}");
    // (the retry planned against what the first attempt's two messages did: 16 employees were
    // there, some still without their manager link)
    assert_eq!(summary.count_of(Outcome::Created), 24, "{summary:#?}");
    assert_eq!(stack.notifications().await.len(), 1, "announced once");
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_poisoned_message_goes_to_the_dlq() {
    // GIVEN a message of an unknown version and a garbage one on the work queue
    let stack = Stack::new("poison").await;
    let provisioner = stack.provisioner();
    let future = json!({ "version": 9, "run_id": "r-9", "part": "m00000", "target": {}, "items": [] }).to_string();
    let garbage = "<<not json at all>>".to_string();
    for body in [&future, &garbage] {
        stack.aws.sqs.send_message().queue_url(&stack.queue.url).message_body(body).send().await.expect("send");
    }

    // WHEN the provisioner works the queue
    let drain = stack.drain(&provisioner).await;

    // THEN every receive reports both as batch item failures, by their real ids
    assert!(!drain.batches.is_empty());
    for batch in &drain.batches {
        let mut got = batch.failed.clone();
        let mut want: Vec<String> = batch.received.iter().map(|(id, _, _)| id.clone()).collect();
        got.sort();
        want.sort();
        assert_eq!(got, want, "every poisoned message is reported failed: {batch:?}");
        assert!(got.iter().all(|id| !id.is_empty()));
    }
    // AND each was received exactly maxReceiveCount times
    let counts = drain.receive_counts();
    assert_eq!(counts.len(), 2, "{counts:?}");
    for (id, seen) in &counts {
        assert_eq!(seen, &(1..=MAX_RECEIVE_COUNT).collect::<Vec<_>>(), "{id}");
    }

    // AND then SQS moved both to the DLQ, bodies intact; nothing touched NERM
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    let mut dead: Vec<String> =
        stack.take_all(&stack.dlq).await.iter().map(|m| m.body().unwrap_or_default().to_string()).collect();
    dead.sort();
    let mut want = vec![future, garbage];
    want.sort();
    assert_eq!(dead, want);
    assert_eq!(stack.sim.stats().await["total"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn nerm_down_marks_rows_failed_and_redrive_completes() {
    // GIVEN a run of 4 employees planned while NERM was up, then NERM goes down
    let stack = Stack::new("down").await;
    let people = employees(4);
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());
    let (answer, _) = stack.drop_csv(&ingest, "incoming/hr.csv", &to_csv(&people)).await;
    let run = run_of(&answer, "started");
    stack.sim.configure(json!({ "faults": { "down": true } })).await;

    // WHEN the provisioner works the queue while NERM answers 503 to everything
    let drain = stack.drain(&provisioner).await;
    common::engine::assert_faults_fired(&json!({ "down": true }), &stack.sim.stats().await);

    // THEN it reports the message failed on every receive, the last one included
    let counts = drain.receive_counts();
    assert_eq!(counts.len(), 1, "{drain:#?}");
    assert_eq!(counts.values().next().unwrap(), &(1..=MAX_RECEIVE_COUNT).collect::<Vec<_>>(), "{drain:#?}");
    assert_eq!(drain.failures().len(), MAX_RECEIVE_COUNT as usize, "{drain:#?}");

    // AND on the last receive the rows were reported failed, so the run's summary exists
    let summary = stack.summary(&run).await.expect("the run completes with failed rows");
    assert_eq!(summary.count_of(Outcome::Failed), 4, "{summary:#?}");
    let notes = stack.notifications().await;
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].0.contains("4 failed"), "{notes:?}");

    // AND the message is in the DLQ
    let dead = stack.take_all(&stack.dlq).await;
    assert_eq!(dead.len(), 1, "the message went to the DLQ");

    // WHEN NERM is back and the operator moves the DLQ messages back to the work queue
    stack.sim.configure(json!({ "faults": { "down": false } })).await;
    for m in &dead {
        let body = m.body().expect("a body");
        stack.aws.sqs.send_message().queue_url(&stack.queue.url).message_body(body).send().await.expect("redrive");
    }
    let drain = stack.drain(&provisioner).await;

    // THEN the rows end created, NERM is complete, and the merged report was rewritten
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    let summary = stack.summary(&run).await.expect("a summary");
    assert_eq!(summary.count_of(Outcome::Created), 4, "{summary:#?}");
    assert_eq!(summary.count_of(Outcome::Failed), 0, "{summary:#?}");
    let rows = stack.report_rows(&run).await;
    assert_eq!(outcomes(&rows), BTreeMap::from([(Outcome::Created, 4)]), "{rows:#?}");
    assert_eq!(stack.queue_depth(&stack.dlq).await, 0);
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_picked_up_after_a_401() {
    // GIVEN warm Lambdas that ran once with the token in the secret (now cached)
    let stack = Stack::new("rotate").await;
    let (ingest, provisioner) = (stack.ingest(), stack.provisioner());
    let first = employees(6);
    let (answer, _) = stack.drop_csv(&ingest, "incoming/first.csv", &to_csv(&first)).await;
    let first_run = run_of(&answer, "started");
    assert!(stack.drain(&provisioner).await.failures().is_empty());
    assert_nerm_matches(&stack.sim.state().await, &first);

    // WHEN the token is rotated: NERM accepts only the new one, and the secret holds it
    let rotated = "rotated-token-7f3a9c";
    stack.sim.configure(json!({ "tokens": [rotated] })).await;
    stack.rotate_secret(rotated).await;
    stack.sim.reset_stats().await;
    // ... and the next file arrives: 6 more employees, the first 6 with new managers
    let everyone = employees(12);
    let (answer, _) = stack.drop_csv(&ingest, "incoming/second.csv", &to_csv(&everyone)).await;

    // THEN the ingest's first call got a 401, it re-read the secret, and the run started
    let run = run_of(&answer, "started");
    let after_ingest = stack.sim.stats().await["unauthorized"].as_u64().unwrap_or(0);
    assert!(after_ingest >= 1, "the cached old token was refused once");

    // AND the provisioner (its own cache) does the same and applies everything
    let drain = stack.drain(&provisioner).await;
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let stats = stack.sim.stats().await;
    let unauthorized = stats["unauthorized"].as_u64().unwrap_or(0);
    assert!(unauthorized > after_ingest, "the provisioner's cached token was refused too: {stats}");
    assert!(unauthorized <= 2 * 4, "one refresh per client, not a 401 loop: {stats}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &everyone);
    assert_no_strays(&state, &everyone);
    let summary = stack.summary(&run).await.expect("a summary");
    assert_eq!(summary.count_of(Outcome::Failed), 0, "{summary:#?}");
    assert_eq!(summary.count_of(Outcome::Created), 6, "{summary:#?}");

    // AND no token ever reaches a report
    for r in [&first_run, &run] {
        for name in ["summary.json", "report.jsonl", "report.csv"] {
            let text = stack.text(&format!("reports/{r}/{name}")).await;
            assert!(!text.contains(TOKEN) && !text.contains(rotated), "a token in {r}/{name}");
        }
    }
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ingest_ignores_keys_outside_the_input_prefix_and_its_own_reports() {
    // GIVEN a report the pipeline wrote and a non-CSV file under the input prefix
    let stack = Stack::new("ignore").await;
    let ingest = stack.ingest();
    let report = stack.upload("reports/x/report.csv", "line,login\n", None).await;
    let notes = stack.upload("incoming/notes.txt", "remember the milk\n", None).await;

    // WHEN their events reach the ingest (one event, two records)
    let answer = stack.deliver(&ingest, stack.s3_event(&[&report, &notes])).await;

    // THEN both are ignored with a reason
    let records = answer["records"].as_array().expect("records");
    assert_eq!(records.len(), 2, "{answer}");
    for (r, key) in records.iter().zip(["reports/x/report.csv", "incoming/notes.txt"]) {
        assert_eq!(r["key"], key, "{answer}");
        assert!(r["outcome"]["ignored"].is_string(), "{answer}");
    }
    // AND nothing was queued, no run was recorded, NERM was not called, nobody was notified
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    assert!(stack.keys("runs/").await.is_empty());
    assert_eq!(stack.keys("reports/").await, vec!["reports/x/report.csv".to_string()]);
    assert_eq!(stack.sim.stats().await["total"], 0);
    assert!(stack.notifications().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_prefix_writes_a_plan_report_and_nothing_to_nerm() {
    // GIVEN a file of 8 employees dropped under the dry-run prefix
    let stack = Stack::new("dry").await;
    let ingest = stack.ingest();
    let people = employees(8);

    // WHEN the ingest takes it on
    let (answer, _) = stack.drop_csv(&ingest, "incoming/dry-run/hr.csv", &to_csv(&people)).await;

    // THEN the run finished at once, as a dry run with the planned operations
    let run = run_of(&answer, "finished");
    let summary = stack.summary(&run).await.expect("a dry run's summary is written by the ingest");
    assert!(summary.dry_run, "{summary:#?}");
    assert_eq!(summary.rows_total, 8, "{summary:#?}");
    assert!(summary.planned.values().sum::<u64>() > 0, "the plan is in the summary: {summary:#?}");
    assert_eq!(stack.report_rows(&run).await.len(), 8);
    assert_eq!(stack.notifications().await.len(), 1);

    // AND nothing was queued or written to NERM
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    let stats = stack.sim.stats().await;
    assert_eq!(stats["writes"], 0, "{stats}");
    assert!(engine::non_get_requests(&stats).is_empty(), "{stats}");
    let state = stack.sim.state().await;
    assert!(engine::employee_profiles(&state).is_empty());
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_big_dry_run_is_written_in_parts_and_merged_in_line_order() {
    // GIVEN a dry run of 23,456 new employees (more than two report parts of 10,000 rows)
    let stack = Stack::new("bigdry").await;
    let ingest = stack.ingest();
    let rows = 23_456usize;
    let mut csv =
        String::from("employee_id,login,email,first_name,last_name,title,department,manager_login,status,nerm_roles\n");
    for i in 0..rows {
        let manager = if i % 10 == 0 { String::new() } else { format!("big{:05}@example.com", (i * 7919) % rows) };
        let manager = if manager == format!("big{i:05}@example.com") { String::new() } else { manager };
        csv.push_str(&format!(
            "B{i:05},big{i:05}@example.com,big{i:05}@example.com,Ann,Lee,Engineer,R&D,{manager},Active,\n"
        ));
    }

    // WHEN the ingest takes it on
    let (answer, _) = stack.drop_csv(&ingest, "incoming/dry-run/big.csv", &csv).await;

    // THEN the ingest wrote its rows in parts of at most 10,000 rows
    let run = run_of(&answer, "finished");
    let parts = stack.keys(&format!("reports/{run}/parts/")).await;
    let mut sizes: Vec<u64> = parts
        .iter()
        .map(|k| {
            k.trim_end_matches(".jsonl").rsplit_once('-').expect("a part name ends in its row count").1.parse().unwrap()
        })
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [3_456, 10_000, 10_000], "{parts:?}");

    // AND the merged report has every row once, in line order, each a planned creation
    let report = stack.report_rows(&run).await;
    assert_eq!(report.len(), rows);
    let lines: Vec<u64> = report.iter().map(|r| r.line).collect();
    assert_eq!(lines, (2..rows as u64 + 2).collect::<Vec<_>>());
    assert!(report.iter().all(|r| r.outcome == Outcome::Created && r.error.is_none()));
    let csv_report = stack.text(&format!("reports/{run}/report.csv")).await;
    assert_eq!(csv_report.lines().count(), rows + 1, "the CSV report has a header and every row");
    let summary = stack.summary(&run).await.expect("the summary");
    assert_eq!(summary.rows_total, rows as u64);
    assert_eq!(summary.count_of(Outcome::Created), rows as u64);
    assert_eq!(stack.queue_depth(&stack.queue).await, 0, "a dry run queues nothing");
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_sync_threshold_breach_is_quarantined() {
    // GIVEN NERM holding 20 employees (imported by an earlier upsert run)
    let stack = Stack::new("full").await;
    let provisioner = stack.provisioner();
    let twenty = employees(20);
    let (answer, _) = stack.drop_csv(&stack.ingest(), "incoming/seed.csv", &to_csv(&twenty)).await;
    run_of(&answer, "started");
    assert!(stack.drain(&provisioner).await.failures().is_empty());
    assert_nerm_matches(&stack.sim.state().await, &twenty);
    assert_eq!(stack.notifications().await.len(), 1, "the seeding run's notification");
    // ... and a deployment whose mapping config (from the bucket) asks for a full sync
    stack.upload("config/full-sync.toml", full_sync_toml(), None).await;
    let mut cfg = stack.ingest_config();
    cfg.config_s3_key = Some("config/full-sync.toml".into());
    let full = stack.ingest_with(cfg);
    stack.sim.reset_stats().await;

    // WHEN a file with only 10 of them arrives (10 leavers: 50 % > the 10 % threshold)
    let ten = twenty[..10].to_vec();
    let (answer, _) = stack.drop_csv(&full, "incoming/hr.csv", &to_csv(&ten)).await;

    // THEN the run is quarantined, saying how to override it; nothing queued or written
    let run = run_of(&answer, "quarantined");
    let reason = answer["records"][0]["outcome"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("nerm-sync-override=allow-mass-disable"), "{reason}");
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    assert!(nerm_writes(&stack.sim).await.is_empty());
    let summary = stack.summary(&run).await.expect("a quarantined run's summary");
    assert!(summary.warnings.iter().any(|w| w.contains("quarantined")), "{summary:#?}");
    let notes = stack.notifications().await;
    assert_eq!(notes.len(), 1, "{notes:#?}");
    assert!(notes[0].0.contains(&run[..12]), "{notes:?}");

    // WHEN the operator uploads the file again with the override tag (a new version)
    let up = stack.upload("incoming/hr.csv", to_csv(&ten), Some("nerm-sync-override=allow-mass-disable")).await;
    let answer = stack.deliver(&full, stack.s3_event(&[&up])).await;

    // THEN a new run proceeds and disables the 10 leavers (never deletes them)
    let second = run_of(&answer, "started");
    assert_ne!(second, run, "a new object version is a new run");
    let drain = stack.drain(&provisioner).await;
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let summary = stack.summary(&second).await.expect("a summary");
    assert_eq!(summary.rows_total, 20, "{summary:#?}");
    assert_eq!(summary.count_of(Outcome::Disabled), 10, "{summary:#?}");
    assert!(
        summary.warnings.iter().any(|w| w.contains("nerm-sync-override=allow-mass-disable")),
        "the summary says the threshold was lifted: {summary:#?}"
    );
    assert_eq!(summary.count_of(Outcome::Failed), 0, "{summary:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &ten);
    for leaver in &twenty[10..] {
        assert_eq!(engine::user(&state, &leaver.login)["status"], "Disabled", "{}", leaver.login);
        assert_eq!(engine::profile(&state, &leaver.employee_id)["status"], "Inactive", "{}", leaver.employee_id);
    }
    assert_eq!(engine::employee_profiles(&state).len(), 20, "nobody deleted");
    assert_eq!(stack.notifications().await.len(), 1);
    stack.sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_work_queues_backlog_counts_waiting_and_in_flight_messages() {
    use shared::ports::WorkQueue;
    // GIVEN the ingest's view of an empty work queue (it then paces to the whole limit)
    let stack = Stack::new("backlog").await;
    let ingest = stack.ingest();
    assert_eq!(ingest.aws.queue.backlog().await.expect("the queue's attributes"), 0);
    // WHEN a run queues its records message, and a provisioner takes it (in flight)
    let (answer, _) = stack.drop_csv(&ingest, "incoming/hr.csv", &to_csv(&employees(5))).await;
    run_of(&answer, "started");
    let waiting = ingest.aws.queue.backlog().await.expect("the queue's attributes");
    let taken = stack.receive_up_to(&stack.queue, 10, 1).await;
    let in_flight = ingest.aws.queue.backlog().await.expect("the queue's attributes");
    // THEN both count: a run is being provisioned, and the ingest keeps to its share
    assert_eq!((waiting, taken.len(), in_flight), (1, 1, 1));
}
