//! The tenant variants the NERM documentation allows, each a `[behaviour]` switch that is off
//! by default: undeclared fields, attribute values of other JSON types, no-change PATCH
//! answers, `Retry-After` as an HTTP date, and `offset=0` refused.

mod common;

use common::{Harness, items};
use serde_json::{Value, json};

#[tokio::test]
async fn by_default_answers_carry_only_declared_fields_and_string_attributes() {
    let h = Harness::start().await;
    let p = h.create_employee(json!({"employee_id": "4100", "first_name": "Ann"})).await;
    assert!(p.get("x_extra").is_none(), "{p}");
    assert_eq!(p["attributes"]["employee_id"], "4100");
    assert!(p["attributes"].get("manager").is_none(), "{p}");
    let page = h.get("/users?metadata=true").await.ok();
    assert!(page.get("x_request_id").is_none() && page["_metadata"].get("x_cursor").is_none(), "{page}");
}

#[tokio::test]
async fn with_extra_fields_every_answer_and_record_carries_undeclared_fields() {
    // GIVEN a tenant that adds fields the spec does not declare
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"extra_fields": true}})).await;

    // WHEN a list with metadata and a single record are read
    let page = h.get("/users?metadata=true").await.ok();
    let user = items(&page, "users")[0].clone();
    let one = h.get(&format!("/users/{}", user["id"].as_str().unwrap())).await.ok();

    // THEN the answer, its metadata and each record carry extra fields
    assert!(page["x_request_id"].is_string(), "{page}");
    assert!(page["_metadata"].as_object().unwrap().contains_key("x_cursor"), "{page}");
    assert!(user["x_extra"].is_object(), "{user}");
    assert!(one["user"]["x_extra"].is_object() && one["x_request_id"].is_string(), "{one}");
}

#[tokio::test]
async fn with_odd_attribute_values_profiles_hold_numbers_nulls_lists_and_objects() {
    // GIVEN a tenant whose attribute values are not all strings
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"odd_attribute_values": true}})).await;

    // WHEN a profile with a numeric value is created and read
    let p = h.create_employee(json!({"employee_id": "4100", "first_name": "Ann", "department": "0042"})).await;
    let attrs = &h.get(&format!("/profiles/{}", p["id"].as_str().unwrap())).await.ok()["profile"]["attributes"];

    // THEN whole numbers are numbers (not a leading-zero code), unset attributes null, extras of each type
    assert_eq!(attrs["employee_id"], json!(4100));
    assert_eq!(attrs["department"], json!("0042"));
    assert_eq!(attrs["first_name"], json!("Ann"));
    assert_eq!(attrs["manager"], Value::Null);
    assert!(attrs.as_object().unwrap().contains_key("manager"), "{attrs}");
    assert_eq!(attrs["x_skills"], json!(["rust", "sql"]));
    assert!(attrs["x_address"].is_object() && attrs["x_remote"].is_boolean() && attrs["x_badge_count"].is_number());
}

#[tokio::test]
async fn no_change_patches_are_answered_in_the_configured_shape_and_changes_as_usual() {
    let h = Harness::start().await;
    let u = h.create_user("quiet", json!({"title": "Same"})).await;
    let path = format!("/users/{}", u["id"].as_str().unwrap());
    // GIVEN the default shape: the record comes back even when nothing changed
    let same = h.patch(&path, json!({"user": {"title": "Same"}})).await.ok();
    assert_eq!(same["user"]["id"], u["id"]);

    for (shape, want) in [("info", json!({"info": "No Change"})), ("empty", json!({}))] {
        // GIVEN a tenant answering an unchanged PATCH in this shape
        h.configure(json!({"behaviour": {"no_change_answer": shape}})).await;
        // WHEN nothing changes, THEN that shape; a bulk PATCH leaves the unchanged record out
        assert_eq!(h.patch(&path, json!({"user": {"title": "Same"}})).await.ok(), want, "{shape}");
        let bulk = h.patch("/users", json!({"users": [{"id": u["id"], "title": "Same"}]})).await.ok();
        assert_eq!(bulk, want, "{shape}: bulk");
    }
    // AND a real change is answered with the record
    let changed = h.patch(&path, json!({"user": {"title": "New"}})).await.ok();
    assert_eq!(changed["user"]["title"], "New");
    let bulk = h.patch("/users", json!({"users": [{"id": u["id"], "title": "Newer"}]})).await.ok();
    assert_eq!(items(&bulk, "users").len(), 1, "{bulk}");
}

#[tokio::test]
async fn with_retry_after_http_date_a_429_names_a_time_instead_of_seconds() {
    let h = Harness::start().await;
    h.configure(json!({
        "behaviour": {"retry_after_http_date": true},
        "faults": {"throttle_rate": 1.0, "throttle_retry_after_secs": 30, "seed": 1}
    }))
    .await;
    let r = h.get("/users").await;
    assert_eq!(r.status, 429);
    let at = httpdate::parse_http_date(r.header("retry-after").expect("a Retry-After header")).expect("an HTTP date");
    let ahead = at.duration_since(std::time::SystemTime::now()).expect("in the future");
    assert!(ahead.as_secs() >= 28 && ahead.as_secs() <= 30, "{ahead:?}");
}

#[tokio::test]
async fn with_offset_minimum_one_offset_zero_is_refused_and_no_offset_is_the_first_page() {
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"offset_minimum_one": true}})).await;
    let refused = h.get("/users?offset=0&limit=10").await.expect(400);
    assert_eq!(refused, json!({"error": "offset must be greater than or equal to 1"}));
    let first = h.get("/users?limit=10&metadata=true").await.ok();
    assert_eq!(first["_metadata"]["offset"], 0);
    assert_eq!(h.get("/users?offset=1&limit=10").await.status, 200);
}
