//! The simulator's own answers checked against the vendored OpenAPI document (`spec_check`):
//! a whole import-style session must leave no violation in `/_sim/stats`.

mod common;

use common::Harness;
use serde_json::{Value, json};

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

#[tokio::test]
async fn an_import_style_session_gets_only_answers_the_openapi_document_allows() {
    let h = Harness::start().await;
    h.configure(json!({"spec_check": true})).await;

    // Reads of the catalogue
    for path in [
        "/roles",
        "/system_roles",
        "/profile_types",
        "/profile_types/employee",
        "/ne_attributes",
        "/ne_attributes/first_name",
    ] {
        h.get(path).await.ok();
    }
    // Users, profiles and every kind of link, created, read, patched and deleted
    let u = h.create_user("ann", json!({"group_strings": "Sponsors", "title": "Eng", "locale": "en-GB"})).await;
    let boss = h.create_user("boss", json!({})).await;
    let p = h
        .create_employee(json!({"first_name": "Ann", "last_name": "Lee", "employee_id": "1",
                                     "start_date": "01/15/2020"}))
        .await;
    let q = h.create_employee(json!({"first_name": "Bo", "last_name": "Lee", "manager": p["id"]})).await;
    h.get("/users?metadata=true&limit=1").await.ok();
    h.get(&format!("/users/{}", id(&u))).await.ok();
    h.patch(&format!("/users/{}", id(&u)), json!({"user": {"title": "Lead"}})).await.ok();
    h.get("/profiles?metadata=true").await.ok();
    h.get("/profiles?after_id=&metadata=true&limit=1").await.ok();
    h.get("/profiles?exclude_attributes=true").await.ok();
    h.get(&format!("/profiles/{}", id(&q))).await.ok();
    h.patch(&format!("/profiles/{}", id(&p)), json!({"profile": {"status": "On Leave"}})).await.ok();
    let manager = h.role_id("manager").await;
    let ur = h.post("/user_role", json!({"user_role": {"user_id": u["id"], "role_id": manager}})).await.ok();
    h.get("/user_roles?metadata=true").await.ok();
    h.post(
        "/user_profile",
        json!({"user_profile": {"user_id": u["id"], "profile_id": p["id"], "relationship_type": "owner"}}),
    )
    .await
    .ok();
    h.get("/user_profiles").await.ok();
    let um =
        h.post("/user_manager", json!({"user_manager": {"user_id": u["id"], "manager_id": boss["id"]}})).await.ok();
    h.get("/user_managers").await.ok();
    h.get(&format!("/user_managers/{}", id(&um["user_manager"]))).await.ok();
    h.post(
        "/users",
        json!({"users": [{"type": "NeprofileUser", "name": "X", "email": "x@example.com", "login": "x"}]}),
    )
    .await
    .ok();
    h.post("/profiles", json!({"profiles": [{"profile_type_id": p["profile_type_id"], "status": "Active"}]}))
        .await
        .ok();
    h.patch("/profiles", json!({"profiles": [{"id": p["id"], "status": "Active"}]})).await.ok();
    h.delete(&format!("/user_role/{}", id(&ur["user_role"]))).await.ok();
    h.delete(&format!("/profiles/{}", id(&q))).await.expect(204);
    h.delete(&format!("/users/{}", id(&boss))).await.ok();
    // A bulk job and its status
    h.configure(json!({"behaviour": {"job_mode_other": "always", "job_delay_ms": 600000}})).await;
    let ticket = h
        .post(
            "/users",
            json!({"users": [{"type": "NeprofileUser", "name": "Y", "email": "y@example.com",
                                                     "login": "y"}]}),
        )
        .await
        .ok();
    let job_id = ticket["job_status"]["job_id"].as_str().unwrap();
    h.get(&format!("/job_status?job_id={job_id}")).await.ok();
    h.sim_post("/jobs/run", json!({})).await.ok();
    h.get(&format!("/job_status?job_id={job_id}")).await.ok();
    // Documented error answers
    h.post("/user", json!({"user": {"type": "NeprofileUser", "name": "Z", "email": "z@example.com", "login": "ANN"}}))
        .await
        .expect(400);
    h.get("/users/0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e").await.expect(404);

    let stats = h.stats().await;
    assert!(stats["spec_checked"].as_u64().unwrap() >= 30, "{stats}");
    assert_eq!(stats["spec_violations"], json!([]), "the simulator answered outside the document");
}

#[tokio::test]
async fn a_request_body_the_document_forbids_is_recorded_as_a_violation() {
    let h = Harness::start().await;
    h.configure(json!({"spec_check": true})).await;
    h.post("/user", json!({"user": {"type": "NeprofileUser", "name": "Only a name"}})).await.expect(400);
    let violations = h.stats().await["spec_violations"].clone();
    let text = violations.to_string();
    assert!(text.contains("POST /user request") && text.contains("login"), "{violations}");
}
