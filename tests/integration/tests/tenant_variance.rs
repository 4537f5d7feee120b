//! The tenant-variance matrix: the same first import and unchanged rerun under every behaviour
//! the NERM documentation leaves open, one simulator switch at a time and in combinations. A
//! real tenant differs from the simulator's defaults in ways nobody can test here; the engine
//! must not care.
//!
//! Each case ends with NERM holding exactly what the file asks (every user, profile,
//! contributor and manager link once), no failed row, a rerun without a single write, and no
//! more than 2.5× the writes the default tenant takes.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::{Value, json};
use shared::report::Outcome;
use tokio::sync::OnceCell;

/// Employees in the file: enough for several pages and bulk bodies under every setting.
const EMPLOYEES: usize = 300;

/// `n` employees with unique names: managers anywhere in the file (later rows too, in another
/// letter case now and then), roles, several statuses, and a department that is a number for
/// every fourth (so a tenant answering numbers as JSON numbers is exercised).
fn staff(n: usize) -> Vec<HrRow> {
    // Managers form a tree (a cycle would cost its links, by design) but sit anywhere in the
    // file: each row has a place in a ternary tree, shuffled over the file by a permutation.
    assert!(!n.is_multiple_of(7), "7 must be coprime with {n} for the shuffle to be a permutation");
    let place = |i: usize| (i * 7 + 3) % n;
    let mut row_at = vec![0; n];
    for i in 0..n {
        row_at[place(i)] = i;
    }
    (0..n)
        .map(|i| {
            let login = |i: usize| format!("staff{i:04}@example.com");
            let manager = match place(i) {
                _ if i % 9 == 0 => String::new(),
                0 => String::new(),
                p => {
                    let m = row_at[(p - 1) / 3];
                    if i % 5 == 2 { login(m).to_uppercase() } else { login(m) }
                }
            };
            let round = i / (FIRST.len() * LAST.len());
            let last = LAST[(i / FIRST.len()) % LAST.len()];
            HrRow {
                employee_id: format!("S{:05}", 20_000 + i),
                login: login(i),
                email: login(i),
                first_name: FIRST[i % FIRST.len()].to_string(),
                last_name: if round == 0 { last.to_string() } else { format!("{last}-{}", round + 1) },
                title: ["Engineer", "Analyst, \"Ops\"", "Développeuse"][i % 3].to_string(),
                department: if i % 4 == 3 { format!("{}", 4100 + i % 3) } else { "Engineering".into() },
                manager_login: manager,
                status: ["Active", "Active", "Leave", "Active", "Terminated"][i % 5].to_string(),
                roles: ["", "Sponsor", "Manager", "Sponsor;Manager"][i % 4].to_string(),
            }
        })
        .collect()
}

/// What one case measured.
#[derive(Debug, Clone, Copy)]
struct Measured {
    first_requests: u64,
    first_writes: u64,
    rerun_requests: u64,
    /// 429s the simulator sent on purpose (`faults.throttle_rate`).
    throttled: u64,
}

/// Imports the file, checks the tenant, reruns it, and answers the counts.
async fn import_and_rerun(name: &str, sim_config: Value) -> Measured {
    let sim = Harness::with(sim_config.clone()).await;
    let people = staff(EMPLOYEES);
    let csv = to_csv(&people);
    let config = example_config();

    let first = sim.run(&csv, &config, false).await;
    assert_eq!(
        first.outcomes(),
        BTreeMap::from([(Outcome::Created, EMPLOYEES)]),
        "{name}: first import {:#?}",
        first.rows.iter().filter(|r| r.outcome != Outcome::Created).take(5).collect::<Vec<_>>()
    );
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);

    let rerun = sim.run(&csv, &config, false).await;
    assert_eq!(
        rerun.outcomes(),
        BTreeMap::from([(Outcome::Unchanged, EMPLOYEES)]),
        "{name}: rerun {:#?}",
        rerun.rows.iter().filter(|r| r.outcome != Outcome::Unchanged).take(5).collect::<Vec<_>>()
    );
    assert_eq!(rerun.client.writes(), 0, "{name}: the rerun wrote: {:#?}", rerun.client.requests);
    assert_eq!(tenant_records(&sim.state().await), tenant_records(&state), "{name}: the rerun changed NERM");
    let measured = Measured {
        first_requests: first.client.total_requests(),
        first_writes: first.client.writes(),
        rerun_requests: rerun.client.total_requests(),
        throttled: sim.stats().await["faults"]["throttle"].as_u64().unwrap_or(0),
    };
    eprintln!(
        "variance {name}: first import {} requests ({:.3}/employee), {} writes; rerun {} requests ({:.3}/employee); {}",
        measured.first_requests,
        measured.first_requests as f64 / EMPLOYEES as f64,
        measured.first_writes,
        measured.rerun_requests,
        measured.rerun_requests as f64 / EMPLOYEES as f64,
        sim_config
    );
    measured
}

/// The default tenant's counts, measured once for every case to compare with.
async fn default_tenant() -> Measured {
    static DEFAULT: OnceCell<Measured> = OnceCell::const_new();
    *DEFAULT.get_or_init(|| import_and_rerun("default", json!({}))).await
}

/// Runs one case and holds its writes to 2.5× the default tenant's.
async fn case(name: &str, behaviour: Value) {
    let throttles = behaviour.pointer("/faults/throttle_rate").is_some();
    let sim_config = match behaviour.get("faults") {
        Some(_) => behaviour,
        None => json!({ "behaviour": behaviour }),
    };
    let measured = import_and_rerun(name, sim_config).await;
    if throttles {
        assert!(measured.throttled > 0, "{name}: no 429 was sent, so Retry-After was never read");
    }
    let default = default_tenant().await;
    assert!(
        measured.first_writes * 2 <= default.first_writes * 5,
        "{name}: {} writes against the default tenant's {}",
        measured.first_writes,
        default.first_writes
    );
}

/// One test per case, so the harness runs them side by side.
macro_rules! cases {
    ($($name:ident => $behaviour:expr;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            case(stringify!($name), $behaviour).await;
        }
    )*};
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_tenant_imports_and_reruns_without_a_write() {
    let m = default_tenant().await;
    assert!(m.first_writes > 0 && m.rerun_requests > 0, "{m:?}");
}

cases! {
    a_tenant_that_serves_pages_of_100 => json!({"page_max": 100});
    a_tenant_that_serves_pages_of_50 => json!({"page_max": 50});
    a_tenant_that_takes_bulk_bodies_of_50 => json!({"bulk_max": 50});
    a_tenant_that_refuses_a_whole_bulk_body_for_one_bad_record => json!({"bulk_all_or_nothing": true});
    a_tenant_that_answers_every_bulk_call_with_a_job => json!({"job_mode_other": "always", "job_delay_ms": 20});
    a_tenant_whose_jobs_name_records_only_by_the_spec_keys_in_another_order =>
        json!({"job_data_spec_only": true, "job_mode_other": "always", "job_delay_ms": 20});
    a_tenant_whose_jobs_end_as_failed_after_applying_their_items =>
        json!({"job_end_status": "failed", "job_mode_other": "always", "job_delay_ms": 20});
    a_tenant_that_answers_undeclared_fields => json!({"extra_fields": true});
    a_tenant_whose_attributes_hold_numbers_nulls_lists_and_objects => json!({"odd_attribute_values": true});
    a_tenant_that_answers_no_change_patches_with_info => json!({"no_change_answer": "info"});
    a_tenant_that_answers_no_change_patches_with_an_empty_object => json!({"no_change_answer": "empty"});
    a_tenant_that_refuses_offset_zero => json!({"offset_minimum_one": true});
    a_tenant_that_ends_after_id_paging_with_the_legacy_400 => json!({"after_id_legacy_400": true});
    a_tenant_that_throttles_with_retry_after_as_an_http_date => json!({
        "behaviour": {"retry_after_http_date": true},
        "faults": {"throttle_rate": 0.1, "throttle_retry_after_secs": 1, "seed": 16}
    });
    a_tenant_with_small_pages_small_bulk_bodies_and_odd_answers => json!({
        "page_max": 50, "bulk_max": 50, "extra_fields": true, "odd_attribute_values": true
    });
    a_tenant_with_spec_only_jobs_quiet_patches_and_offsets_from_one => json!({
        "job_data_spec_only": true, "job_mode_other": "always", "job_delay_ms": 20,
        "no_change_answer": "info", "offset_minimum_one": true, "page_max": 100
    });
    a_tenant_with_every_variant_at_once => json!({
        "behaviour": {
            "page_max": 50, "bulk_max": 50, "bulk_all_or_nothing": true, "after_id_legacy_400": true,
            "job_data_spec_only": true, "job_mode_other": "always", "job_delay_ms": 20,
            "extra_fields": true, "odd_attribute_values": true, "no_change_answer": "empty",
            "retry_after_http_date": true, "offset_minimum_one": true
        },
        "faults": {"throttle_rate": 0.03, "throttle_retry_after_secs": 1, "seed": 7}
    });
}
