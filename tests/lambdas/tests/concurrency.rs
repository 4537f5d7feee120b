//! Concurrency through the real handlers (moto + the NERM simulator): two different files
//! dropped at once, worked off by several provisioners at a time; and a provisioner killed in
//! the middle of a batch (its future dropped, as a Lambda timeout or crash would end it), the
//! batch then redelivered by SQS. Each test ends with NERM exactly as the files ask (no
//! duplicate users, profiles or links, none missing) and every row in the reports once.
//! Run through `infra/local/with-moto.sh`:
//!
//! ```sh
//! infra/local/with-moto.sh cargo test -p lambda-tests --test concurrency -- --nocapture
//! ```

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::engine::{assert_nerm_matches, assert_no_strays, employees, to_csv};
use common::*;
use serde_json::json;
use shared::report::{Outcome, RowReport};

/// Outcome counts of report rows.
fn outcomes(rows: &[RowReport]) -> BTreeMap<Outcome, usize> {
    let mut m = BTreeMap::new();
    for r in rows {
        *m.entry(r.outcome).or_default() += 1;
    }
    m
}

#[tokio::test(flavor = "multi_thread")]
async fn two_different_files_dropped_at_once_end_with_every_employee_once_and_both_reports_complete() {
    let started = Instant::now();
    // GIVEN two exports arriving together: each has its own 20 employees, and both have the
    // same 20 others (moved between HR systems), all unknown to NERM
    let stack = Stack::new("twofiles").await;
    let shared_people = employees(20);
    let only_a = renamed(&employees(20), "aa");
    let only_b = renamed(&employees(20), "bb");
    let file_a: Vec<HrRow> = only_a.iter().chain(&shared_people).cloned().collect();
    let file_b: Vec<HrRow> = shared_people.iter().chain(&only_b).cloned().collect();
    // (small messages, so the two runs' parts interleave across the workers)
    let mut cfg = stack.ingest_config();
    cfg.settings.items_per_message = 4;
    let (ingest_a, ingest_b) = (stack.ingest_with(cfg.clone()), stack.ingest_with(cfg));
    let workers = [stack.provisioner(), stack.provisioner(), stack.provisioner()];
    assert!(to_csv(&file_a).starts_with(HEADER), "the reference export");
    let up_a = stack.upload("incoming/hr-system-a.csv", to_csv(&file_a).into_bytes(), None).await;
    let up_b = stack.upload("incoming/hr-system-b.csv", to_csv(&file_b).into_bytes(), None).await;

    // WHEN both S3 events are handled at the same time (two ingest instances: both read NERM
    // before either run wrote anything, so both plan to create the shared 20)
    let (answer_a, answer_b) = tokio::join!(
        stack.deliver(&ingest_a, stack.s3_event(&[&up_a])),
        stack.deliver(&ingest_b, stack.s3_event(&[&up_b]))
    );
    let (run_a, run_b) = (run_of(&answer_a, "started"), run_of(&answer_b, "started"));
    assert_ne!(run_a, run_b);
    assert_eq!(answer_a["records"][0]["outcome"]["messages"], 10, "{answer_a}");
    // ... and three provisioners work the queue at once, up to 2 messages per batch
    let drain = stack.drain_concurrently(&workers, 2).await;

    // THEN nothing failed, and NERM holds the 60 employees exactly once each
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let everyone: Vec<HrRow> = only_a.iter().chain(&shared_people).chain(&only_b).cloned().collect();
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &everyone);
    assert_no_strays(&state, &everyone);

    // AND each run's report has every one of its 40 rows once, none failed
    let settings = stack.settings();
    let rows_a = assert_report_accounts_for(&stack, &settings, &run_a, &file_a).await;
    let rows_b = assert_report_accounts_for(&stack, &settings, &run_b, &file_b).await;
    for (run, rows) in [(&run_a, &rows_a), (&run_b, &rows_b)] {
        assert!(rows.iter().all(|r| r.outcome.is_done()), "{run}: {:?}", outcomes(rows));
    }
    // (both runs planned to create the shared 20; the later one adopted what the other made,
    // and its report still says "created": counted for the note)
    let created_by_both = shared_people
        .iter()
        .filter(|p| {
            let created = |rows: &[RowReport]| {
                rows.iter().any(|r| r.employee_key == p.employee_id && r.outcome == Outcome::Created)
            };
            created(&rows_a) && created(&rows_b)
        })
        .count();
    assert_eq!(stack.notifications().await.len(), 2, "one notification per run");
    assert_eq!(stack.queue_depth(&stack.dlq).await, 0);
    stack.sim.assert_no_spec_violations().await;
    println!(
        "two files at once: rows expected 80 (60 distinct employees), NERM users {}, Employee profiles {}; \
         run A {:?}, run B {:?} ({created_by_both} shared employees reported created by both); \
         {} batches over 3 workers; {:.1} s",
        common::engine::records(&state, "users").len() - 1,
        common::engine::employee_profiles(&state).len(),
        outcomes(&rows_a),
        outcomes(&rows_b),
        drain.batches.len(),
        started.elapsed().as_secs_f64()
    );
}

/// When to kill the provisioner in the middle of its batch.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// After NERM committed this many writes (bulk calls) of the batch.
    Writes(u64),
    /// Once the first part of the report was written (one message done, the batch not).
    FirstPart,
    /// Once the last records part queued the links wave (new messages appeared).
    LinksQueued,
}

/// Drops 40 employees (messages of 8), hands all 5 messages to one provisioner as one batch,
/// drops its future at `kill`, lets SQS redeliver the batch, drains, and checks NERM and the
/// report. Returns a line for the note.
async fn killed_mid_batch(tag: &str, kill: KillAt) -> String {
    let started = Instant::now();
    // GIVEN 40 employees (managers anywhere in the file) planned into 5 messages, and a NERM
    // answering each call after 15 ms (so a batch takes a while)
    let stack = Stack::new(tag).await;
    let people = employees(40);
    let mut cfg = stack.ingest_config();
    cfg.settings.items_per_message = 8;
    let (answer, _) = stack.drop_csv(&stack.ingest_with(cfg), "incoming/hr.csv", &to_csv(&people)).await;
    let run = run_of(&answer, "started");
    assert_eq!(answer["records"][0]["outcome"]["messages"], 5, "{answer}");
    stack.sim.configure(json!({ "faults": { "latency_ms": 15 } })).await;
    stack.sim.reset_stats().await;
    let mut batch = Vec::new();
    while batch.len() < 5 {
        let got = stack.receive_up_to(&stack.queue, 10, 1).await;
        assert!(!got.is_empty(), "the 5 messages are visible");
        batch.extend(got);
    }
    let settings = stack.settings();
    let parts_prefix = settings.parts_prefix(&run);

    // WHEN a provisioner works the batch and is killed part-way
    let provisioner = stack.provisioner();
    let handler = nerm_provisioner::handler::handle(&provisioner, sqs_event(&stack.queue, &batch));
    let watch = async {
        loop {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let reached = match kill {
                KillAt::Writes(n) => stack.sim.stats().await["writes"].as_u64().unwrap_or(0) >= n,
                // (the ingest's own part, of the rows it settled, is there from the start)
                KillAt::FirstPart => stack.keys(&parts_prefix).await.iter().any(|k| !k.contains(".ingest")),
                KillAt::LinksQueued => stack.queue_depth(&stack.queue).await > batch.len() as u64,
            };
            if reached {
                return;
            }
        }
    };
    let killed = tokio::select! {
        biased;
        () = watch => true,
        result = handler => {
            // The links wave is the batch's last step: a batch that ended just after it is the
            // same as one killed there (its messages were not deleted either).
            assert!(matches!(kill, KillAt::LinksQueued), "the batch finished before the kill point {kill:?}: {result:?}");
            assert!(stack.queue_depth(&stack.queue).await > batch.len() as u64, "the links wave was queued");
            true
        }
    };
    assert!(killed);
    let writes_at_kill = stack.sim.stats().await["writes"].as_u64().unwrap_or(0);
    // ... its messages were never deleted: their visibility timeout runs out, SQS redelivers
    stack.release(&stack.queue, &batch).await;
    stack.sim.configure(json!({ "faults": { "latency_ms": 0 } })).await;
    let drain = stack.drain(&provisioner).await;

    // THEN nothing failed, NERM holds every employee exactly once, fully linked
    if !drain.failures().is_empty() {
        // (the rows failed on their last receive are in the report: show why)
        for r in stack.report_rows(&run).await.iter().filter(|r| r.outcome == Outcome::Failed) {
            println!("failed row: {r:?}");
        }
    }
    assert!(drain.failures().is_empty(), "{drain:#?}");
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    // AND the report has every row once, each done
    let rows = assert_report_accounts_for(&stack, &settings, &run, &people).await;
    assert!(rows.iter().all(|r| r.outcome.is_done()), "{:?}: {:#?}", kill, rows);
    assert_eq!(stack.notifications().await.len(), 1, "announced once");
    assert_eq!(stack.queue_depth(&stack.queue).await, 0);
    assert_eq!(stack.queue_depth(&stack.dlq).await, 0);
    stack.sim.assert_no_spec_violations().await;
    let redelivered = drain.receive_counts().values().filter(|v| v.iter().any(|n| *n > 1)).count();
    format!(
        "killed at {kill:?} ({writes_at_kill} writes committed): rows expected 40, users {}, profiles {}, \
         outcomes {:?}, {redelivered} messages redelivered; {:.1} s",
        common::engine::records(&state, "users").len() - 1,
        common::engine::employee_profiles(&state).len(),
        outcomes(&rows),
        started.elapsed().as_secs_f64()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provisioner_killed_after_its_first_nerm_write_leaves_nothing_duplicated_or_lost_after_redelivery() {
    println!("{}", killed_mid_batch("kill1", KillAt::Writes(1)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provisioner_killed_in_the_middle_of_its_writes_leaves_nothing_duplicated_or_lost_after_redelivery() {
    println!("{}", killed_mid_batch("kill5", KillAt::Writes(5)).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provisioner_killed_after_one_message_of_its_batch_was_reported_leaves_no_row_twice() {
    println!("{}", killed_mid_batch("killpart", KillAt::FirstPart).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_provisioner_killed_after_queueing_the_links_wave_leaves_no_row_twice() {
    println!("{}", killed_mid_batch("killwave", KillAt::LinksQueued).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_of_both_waves_delivered_twice_report_each_row_once() {
    // GIVEN 40 employees in 5 records messages of 8, managers anywhere in the file
    let stack = Stack::new("dup").await;
    let people = employees(40);
    let mut cfg = stack.ingest_config();
    cfg.settings.items_per_message = 8;
    let (answer, _) = stack.drop_csv(&stack.ingest_with(cfg), "incoming/hr.csv", &to_csv(&people)).await;
    let run = run_of(&answer, "started");
    let records = stack.take_all(&stack.queue).await;
    assert_eq!(records.len(), 5);
    let provisioner = stack.provisioner();

    // WHEN every records message is worked, then delivered once more (a standard queue delivers
    // at least once) ...
    let first = stack.provision_batch(&provisioner, &records).await;
    assert!(first.failed.is_empty(), "{first:?}");
    let links = stack.take_all(&stack.queue).await;
    assert!(!links.is_empty(), "the last records part queued the links wave");
    let again = stack.provision_batch(&provisioner, &records).await;
    assert!(again.failed.is_empty(), "{again:?}");
    assert_eq!(stack.queue_depth(&stack.queue).await, 0, "the links wave is queued once");
    // ... and so is every message of the links wave
    for batch in [&links, &links] {
        let done = stack.provision_batch(&provisioner, batch).await;
        assert!(done.failed.is_empty(), "{done:?}");
    }

    // THEN NERM holds every employee once, and the report has every row once, counted once
    let state = stack.sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    let rows = assert_report_accounts_for(&stack, &stack.settings(), &run, &people).await;
    let summary = stack.summary(&run).await.expect("a summary");
    assert_eq!(summary.counts.values().sum::<u64>(), 40, "{summary:#?}");
    assert!(rows.iter().all(|r| r.outcome.is_done()), "{rows:#?}");
    assert_eq!(stack.notifications().await.len(), 1, "announced once");
}
