//! Bulk bodies: per-record application, the size limit, async jobs and `GET /job_status`.

mod common;

use std::time::{Duration, Instant};

use common::{Harness, field_of, items};
use serde_json::{Value, json};

fn user(login: &str) -> Value {
    json!({"type": "NeprofileUser", "name": format!("N {login}"), "email": format!("{login}@example.com"), "login": login})
}

/// Three users, the middle one invalid (no e-mail).
fn two_good_one_bad() -> Value {
    let mut bad = user("bad");
    bad.as_object_mut().unwrap().remove("email");
    json!({"users": [user("good1"), bad, user("good2")]})
}

fn is_job_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[tokio::test]
async fn a_bulk_create_applies_valid_records_and_returns_only_those() {
    let h = Harness::start().await;
    let body = h.post("/users", two_good_one_bad()).await.ok();
    // THEN only the two valid users come back, in input order
    assert_eq!(field_of(&body, "users", "login"), ["good1", "good2"]);
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    // AND only they were created
    assert!(h.stored_user("good1").await.is_some());
    assert!(h.stored_user("good2").await.is_some());
    assert!(h.stored_user("bad").await.is_none());
}

#[tokio::test]
async fn a_bulk_create_sees_its_own_earlier_records() {
    let h = Harness::start().await;
    let body = h.post("/users", json!({"users": [user("twin"), user("TWIN")]})).await.ok();
    assert_eq!(field_of(&body, "users", "login"), ["twin"]);
}

#[tokio::test]
async fn a_bulk_body_above_bulk_max_is_a_400_and_writes_nothing() {
    let h = Harness::start().await;
    let users: Vec<Value> = (0..101).map(|i| user(&format!("bulk{i}"))).collect();
    let r = h.post("/users", json!({ "users": users })).await;
    assert_eq!(r.expect(400), json!({"error": "too many records: 101 given, at most 100 per request"}));
    assert_eq!(items(&h.state().await, "users").len(), 1, "only the seeded admin");
}

#[tokio::test]
async fn a_bulk_body_without_the_plural_wrapper_or_with_no_items_is_a_400() {
    let h = Harness::start().await;
    for body in [json!({"user": [user("x")]}), json!({"users": []}), json!([user("x")])] {
        assert_eq!(
            h.post("/users", body.clone()).await.expect(400),
            json!({"error": "param is missing or the value is empty: users"}),
            "{body}"
        );
    }
}

#[tokio::test]
async fn all_or_nothing_mode_rejects_the_whole_body_for_one_bad_record() {
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"bulk_all_or_nothing": true}})).await;
    let r = h.post("/users", two_good_one_bad()).await;
    assert_eq!(r.expect(400), json!({"error": "The user failed to create", "errors": {"email": "can't be blank"}}));
    assert!(h.stored_user("good1").await.is_none());
    assert!(h.stored_user("good2").await.is_none());
}

#[tokio::test]
async fn in_job_mode_a_bulk_call_answers_a_ticket_and_the_job_completes_when_run() {
    let h = Harness::start().await;
    // GIVEN job mode for the non-profile endpoints, with a delay long enough to look at the queue
    let cfg = h.patch_config(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 600_000}})).await.ok();
    assert_eq!(cfg["behaviour"]["job_mode_other"], "always");

    // WHEN three users (one invalid) are sent
    let ticket = h.post("/users", two_good_one_bad()).await.ok();

    // THEN the answer is the job ticket
    let job_id = ticket["job_status"]["job_id"].as_str().unwrap().to_string();
    assert!(is_job_id(&job_id), "24 hex chars: {job_id}");
    assert_eq!(
        ticket,
        json!({"info": "job has started", "job_status": {"job_id": job_id, "status": "queued"}, "status": 200})
    );
    // AND nothing is written yet, the job is queued
    assert!(h.stored_user("good1").await.is_none());
    let queued = h.get(&format!("/job_status?job_id={job_id}")).await.ok();
    assert_eq!(queued["status"], "queued");
    assert_eq!(queued["job_type"], "import");
    assert!(uuid::Uuid::parse_str(queued["uid"].as_str().unwrap()).is_ok(), "{queued}");

    // WHEN the queue runs
    assert_eq!(h.sim_post("/jobs/run", json!({})).await.ok(), json!({"ran": 1}));

    // THEN the job is complete with one entry per input, naming its record, errors per record
    let done = h.get(&format!("/job_status?job_id={job_id}")).await.ok();
    assert_eq!(done["status"], "complete");
    assert_eq!(done["uid"], queued["uid"]);
    let good1 = h.stored_user("good1").await.expect("applied");
    let good2 = h.stored_user("good2").await.expect("applied");
    assert_eq!(
        job_entries(&done, &["user_id", "login", "errors"]),
        json!([
            {"user_id": good1["id"], "login": "good1", "errors": []},
            {"user_id": null, "login": "bad", "errors": ["email can't be blank"]},
            {"user_id": good2["id"], "login": "good2", "errors": []},
        ])
    );
    assert!(h.stored_user("bad").await.is_none());
    // AND running again finds nothing queued
    assert_eq!(h.sim_post("/jobs/run", json!({})).await.ok(), json!({"ran": 0}));
}

#[tokio::test]
async fn a_queued_job_runs_by_itself_after_job_delay_ms() {
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 100}})).await;
    let ticket = h.post("/users", json!({"users": [user("later")]})).await.ok();
    let job_id = ticket["job_status"]["job_id"].as_str().unwrap().to_string();

    let started = Instant::now();
    let status = loop {
        let s = h.get(&format!("/job_status?job_id={job_id}")).await.ok();
        if s["status"] == "complete" || started.elapsed() > Duration::from_secs(5) {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    };
    assert_eq!(status["status"], "complete", "{status} (nobody called /_sim/jobs/run)");
    assert!(h.stored_user("later").await.is_some());
}

#[tokio::test]
async fn the_default_threshold_makes_a_body_of_100_a_job() {
    let h = Harness::start().await;
    let users: Vec<Value> = (0..100).map(|i| user(&format!("t{i}"))).collect();
    let r = h.post("/users", json!({ "users": users })).await.ok();
    assert_eq!(
        r["info"], "job has started",
        "threshold:100 is the default for users (docs/nerm-api.md, open questions)"
    );
    let r = h.post("/users", json!({"users": [user("small")]})).await.ok();
    assert_eq!(field_of(&r, "users", "login"), ["small"]);
}

#[tokio::test]
async fn an_unknown_or_missing_job_id_is_a_400() {
    let h = Harness::start().await;
    assert_eq!(
        h.get("/job_status?job_id=0123456789abcdef01234567").await.expect(400),
        json!({"error": "job 0123456789abcdef01234567 was not found"})
    );
    assert_eq!(
        h.get("/job_status").await.expect(400),
        json!({"error": "param is missing or the value is empty: job_id"})
    );
}

#[tokio::test]
async fn profiles_stay_synchronous_in_job_mode_other() {
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 600_000}})).await;
    let type_id = h.type_id("employee").await;
    let r = h.post("/profiles", json!({"profiles": [{"profile_type_id": type_id, "status": "Active"}]})).await.ok();
    assert_eq!(items(&r, "profiles").len(), 1, "{r}");
}

#[tokio::test]
async fn a_bulk_patch_of_profiles_updates_the_items_with_a_known_id() {
    let h = Harness::start().await;
    let a = h.create_employee(json!({"first_name": "Al", "last_name": "A"})).await;
    let b = h.create_employee(json!({"first_name": "Bo", "last_name": "B"})).await;

    // WHEN two known ids, one unknown id and one item without id are PATCHed
    let body = h
        .patch(
            "/profiles",
            json!({"profiles": [
                {"id": a["id"], "status": "Inactive"},
                {"id": "0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e", "status": "Inactive"},
                {"status": "Inactive"},
                {"id": b["id"], "attributes": {"last_name": "Bee"}},
            ]}),
        )
        .await
        .ok();

    // THEN the two known ones come back changed, the others are skipped
    let out = items(&body, "profiles");
    assert_eq!(out.len(), 2, "{body}");
    assert_eq!(out[0]["id"], a["id"]);
    assert_eq!(out[0]["status"], "Inactive");
    assert_eq!(out[1]["name"], "Bo Bee");
    let statuses = field_of(&h.get("/profiles").await.ok(), "profiles", "status");
    assert_eq!(statuses, ["Inactive", "Active"]);
}

#[tokio::test]
async fn a_bulk_job_reports_the_ids_it_could_not_patch() {
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 600_000}})).await;
    let u = h.create_user("patched", json!({})).await;
    let ticket = h
        .patch(
            "/users",
            json!({"users": [{"id": u["id"], "title": "Boss"}, {"id": "0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e", "title": "X"}]}),
        )
        .await
        .ok();
    let job_id = ticket["job_status"]["job_id"].as_str().unwrap();
    h.sim_post("/jobs/run", json!({})).await.ok();
    let done = h.get(&format!("/job_status?job_id={job_id}")).await.ok();
    assert_eq!(
        job_entries(&done, &["user_id", "errors"]),
        json!([
            {"user_id": u["id"], "errors": []},
            {"user_id": "0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e", "errors": ["The requested User was not found"]},
        ])
    );
    assert_eq!(h.stored_user("patched").await.unwrap()["title"], "Boss");
}

#[tokio::test]
async fn with_job_data_spec_only_a_job_lists_its_entries_in_reverse_with_only_the_spec_keys() {
    // GIVEN jobs whose entries carry only the keys the spec documents
    let h = Harness::start().await;
    h.configure(
        json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 600_000, "job_data_spec_only": true}}),
    )
    .await;

    // WHEN three users (one invalid) are sent and the job runs
    let ticket = h.post("/users", two_good_one_bad()).await.ok();
    let job_id = ticket["job_status"]["job_id"].as_str().unwrap().to_string();
    h.sim_post("/jobs/run", json!({})).await.ok();

    // THEN the entries come last-first, naming records only by user_id
    let done = h.get(&format!("/job_status?job_id={job_id}")).await.ok();
    let good1 = h.stored_user("good1").await.expect("applied");
    let good2 = h.stored_user("good2").await.expect("applied");
    assert_eq!(
        done["job_data"],
        json!([
            {"user_id": good2["id"], "errors": []},
            {"errors": ["email can't be blank"]},
            {"user_id": good1["id"], "errors": []},
        ])
    );
}

/// The job's entries with only `keys` (absent ones as null).
fn job_entries(done: &Value, keys: &[&str]) -> Value {
    let entries = done["job_data"].as_array().expect("job_data is a list");
    Value::Array(
        entries.iter().map(|e| Value::Object(keys.iter().map(|k| (k.to_string(), e[*k].clone())).collect())).collect(),
    )
}
