//! Profiles (names, attributes, select attributes, no-op PATCH, uniqueness), profile types and
//! attributes.

mod common;

use std::time::Duration;

use common::{Harness, field_of, items};
use serde_json::{Value, json};

const UNKNOWN_ID: &str = "0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e";

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

#[tokio::test]
async fn creating_a_profile_answers_200_and_names_it_from_the_naming_attributes() {
    let h = Harness::start().await;
    let type_id = h.type_id("employee").await;
    // WHEN an Employee is created with a name of its own and first/last name attributes
    let body = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active", "name": "ignored",
                               "attributes": {"first_name": "Ada", "last_name": "Lovelace", "employee_id": "E1"}}}),
        )
        .await
        .ok();
    // THEN the name is "first_name last_name" (the supplied one is ignored)
    let p = &body["profile"];
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(p["name"], "Ada Lovelace");
    assert_eq!(p["profile_type_id"], type_id.as_str());
    assert_eq!(p["status"], "Active");
    assert_eq!(p["attributes"], json!({"first_name": "Ada", "last_name": "Lovelace", "employee_id": "E1"}));
    assert!(p.get("archived").is_none(), "archived is not emitted by default: {p}");
    // AND timestamps are ISO-8601 with milliseconds and an offset
    let created = p["created_at"].as_str().unwrap();
    assert_eq!(created.len(), "2023-11-21T14:23:54.256+00:00".len(), "{created}");
    assert_eq!(&created[19..20], ".");
    assert_eq!(p["created_at"], p["updated_at"]);
    // AND GET shows the same record
    assert_eq!(h.get(&format!("/profiles/{}", id(p))).await.ok(), json!({ "profile": p }));
    // AND a later change of a naming attribute renames it
    let r = h.patch(&format!("/profiles/{}", id(p)), json!({"profile": {"attributes": {"last_name": "King"}}})).await;
    assert_eq!(r.ok()["profile"]["name"], "Ada King");
}

#[tokio::test]
async fn deleting_a_profile_answers_204_with_an_empty_body() {
    let h = Harness::start().await;
    let p = h.create_employee(json!({"first_name": "Gone", "last_name": "Soon"})).await;
    let r = h.delete(&format!("/profiles/{}", id(&p))).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null, "no body");
    assert_eq!(h.get(&format!("/profiles/{}", id(&p))).await.status, 404);
}

#[tokio::test]
async fn an_unknown_or_malformed_profile_id_is_not_found() {
    let h = Harness::start().await;
    let not_found = json!({"error": "The requested Profile was not found"});
    for key in [UNKNOWN_ID, "not-a-uuid"] {
        let path = format!("/profiles/{key}");
        assert_eq!(h.get(&path).await.expect(404), not_found, "GET {path}");
        assert_eq!(h.patch(&path, json!({"profile": {"status": "Active"}})).await.expect(404), not_found);
        assert_eq!(h.delete(&path).await.expect(404), not_found, "DELETE {path}");
    }
}

#[tokio::test]
async fn a_profile_without_type_or_status_reports_both() {
    let h = Harness::start().await;
    let r = h.post("/profile", json!({"profile": {"name": "x"}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create",
               "errors": {"profile_type_id": "can't be blank", "status": "can't be blank"}})
    );
    let r = h.post("/profile", json!({"profile": {"profile_type_id": UNKNOWN_ID, "status": "Active"}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create", "errors": {"profile_type_id": "must exist"}})
    );
    assert!(items(&h.state().await, "profiles").is_empty());
}

#[tokio::test]
async fn a_disabled_profile_status_is_not_included_in_the_list() {
    let h = Harness::start().await;
    let type_id = h.type_id("employee").await;
    // NERM profiles have no "Disabled" status (that is a user status).
    let r = h.post("/profile", json!({"profile": {"profile_type_id": type_id, "status": "Disabled"}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create", "errors": {"status": "is not included in the list"}})
    );
    for status in ["Active", "Inactive", "On Leave", "Terminated"] {
        h.post("/profile", json!({"profile": {"profile_type_id": type_id, "status": status}})).await.ok();
    }
}

#[tokio::test]
async fn an_unknown_attribute_uid_is_rejected() {
    let h = Harness::start().await;
    let type_id = h.type_id("employee").await;
    let r = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active",
                               "attributes": {"first_name": "A", "nickname": "Al"}}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create", "errors": {"nickname": "is not a known attribute"}})
    );
    assert!(items(&h.state().await, "profiles").is_empty(), "a rejected write changes nothing");
}

#[tokio::test]
async fn attribute_values_must_be_strings() {
    let h = Harness::start().await;
    let type_id = h.type_id("employee").await;
    let r = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"employee_id": 42}}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create", "errors": {"employee_id": "must be a string"}})
    );
}

#[tokio::test]
async fn a_date_attribute_must_use_the_attributes_date_format() {
    let h = Harness::start().await;
    let type_id = h.type_id("employee").await;
    // start_date is mm/dd/yyyy in the demo tenant
    for bad in ["2020-01-15", "15/01/2020", "02/30/2021"] {
        let r = h
            .post(
                "/profile",
                json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"start_date": bad}}}),
            )
            .await;
        assert_eq!(
            r.expect(400),
            json!({"error": "The profile failed to create", "errors": {"start_date": "must be a date in mm/dd/yyyy format"}}),
            "{bad}"
        );
    }
    let ok = h.create_employee(json!({"start_date": "01/15/2020"})).await;
    assert_eq!(ok["attributes"]["start_date"], "01/15/2020");
}

#[tokio::test]
async fn a_profile_select_pointing_at_no_profile_is_rejected() {
    let h = Harness::start().await;
    let type_id = h.type_id("employee").await;
    let r = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"manager": UNKNOWN_ID}}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create",
               "errors": {"manager": format!("references {UNKNOWN_ID} which does not exist")}})
    );
    // A name instead of an id is not accepted either
    let r = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"manager": "Grace Hopper"}}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.body["errors"]["manager"].as_str().unwrap().starts_with("must be ids"), "{}", r.body);
}

#[tokio::test]
async fn a_profile_select_is_written_as_an_id_and_read_as_the_profiles_name() {
    let h = Harness::start().await;
    // GIVEN a manager profile
    let boss = h.create_employee(json!({"first_name": "Grace", "last_name": "Hopper", "employee_id": "B1"})).await;
    // WHEN an employee points at it by id
    let emp = h.create_employee(json!({"first_name": "Ada", "last_name": "L", "manager": boss["id"]})).await;
    // THEN reads show the manager's name, while the stored value is the id
    assert_eq!(emp["attributes"]["manager"], "Grace Hopper");
    assert_eq!(
        h.get(&format!("/profiles/{}", id(&emp))).await.ok()["profile"]["attributes"]["manager"],
        "Grace Hopper"
    );
    let stored = items(&h.state().await, "profiles").iter().find(|p| p["id"] == emp["id"]).unwrap().clone();
    assert_eq!(stored["attributes"]["manager"], boss["id"]);
    // AND renaming the manager changes how the reference reads
    h.patch(&format!("/profiles/{}", id(&boss)), json!({"profile": {"attributes": {"last_name": "Brewster"}}}))
        .await
        .ok();
    assert_eq!(
        h.get(&format!("/profiles/{}", id(&emp))).await.ok()["profile"]["attributes"]["manager"],
        "Grace Brewster"
    );
}

#[tokio::test]
async fn a_profile_select_only_accepts_profiles_of_its_type_and_one_id_unless_multiple() {
    let h = Harness::start().await;
    let contractor_type = h.type_id("contractor").await;
    let contractor = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": contractor_type, "status": "Active",
                               "attributes": {"first_name": "Con", "last_name": "Tractor"}}}),
        )
        .await
        .ok()["profile"]
        .clone();
    let type_id = h.type_id("employee").await;
    // manager selects Employee profiles only
    let r = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"manager": contractor["id"]}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["errors"]["manager"].is_string(), "{}", r.body);
    // and takes one id
    let a = h.create_employee(json!({"first_name": "A", "last_name": "A"})).await;
    let b = h.create_employee(json!({"first_name": "B", "last_name": "B"})).await;
    let both = format!("{}, {}", id(&a), id(&b));
    let r = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"manager": both}}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create", "errors": {"manager": "does not allow multiple selections"}})
    );
}

#[tokio::test]
async fn a_patch_without_changes_keeps_updated_at() {
    let h = Harness::start().await;
    let p = h.create_employee(json!({"first_name": "Still", "last_name": "Life", "employee_id": "S1"})).await;
    tokio::time::sleep(Duration::from_millis(30)).await;

    // WHEN the same values are PATCHed
    let r = h
        .patch(
            &format!("/profiles/{}", id(&p)),
            json!({"profile": {"status": "Active", "attributes": {"first_name": "Still", "employee_id": "S1"}}}),
        )
        .await;

    // THEN the answer is the unchanged record, same updated_at
    assert_eq!(r.ok(), json!({ "profile": p }));
    assert_eq!(h.get(&format!("/profiles/{}", id(&p))).await.ok()["profile"]["updated_at"], p["updated_at"]);

    // AND a real change moves updated_at
    let r = h.patch(&format!("/profiles/{}", id(&p)), json!({"profile": {"status": "On Leave"}})).await.ok();
    assert_ne!(r["profile"]["updated_at"], p["updated_at"]);
    assert_eq!(r["profile"]["created_at"], p["created_at"]);
}

#[tokio::test]
async fn a_patch_merges_attributes_and_an_empty_string_or_null_clears_one() {
    let h = Harness::start().await;
    let p = h
        .create_employee(json!({"first_name": "Mia", "last_name": "Merge", "department": "R&D", "job_title": "Dev",
                                "company": "ACME"}))
        .await;
    // WHEN one key changes, one is set to "" and one to null
    let r = h
        .patch(
            &format!("/profiles/{}", id(&p)),
            json!({"profile": {"attributes": {"department": "Ops", "job_title": "", "company": null}}}),
        )
        .await
        .ok();
    // THEN the others are kept and the blanked ones are gone
    assert_eq!(r["profile"]["attributes"], json!({"first_name": "Mia", "last_name": "Merge", "department": "Ops"}));
}

#[tokio::test]
async fn a_unique_attribute_is_enforced_within_the_profile_type_only() {
    let h = Harness::start().await;
    let first = h.create_employee(json!({"first_name": "One", "employee_id": "E-100"})).await;
    let type_id = h.type_id("employee").await;

    // WHEN a second Employee takes the same employee_id
    let r = h
        .post(
            "/profile",
            json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"employee_id": "E-100"}}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to create", "errors": {"employee_id": "has already been taken"}})
    );
    // AND when another Employee is PATCHed to it
    let second = h.create_employee(json!({"first_name": "Two", "employee_id": "E-200"})).await;
    let r = h
        .patch(&format!("/profiles/{}", id(&second)), json!({"profile": {"attributes": {"employee_id": "E-100"}}}))
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The profile failed to update", "errors": {"employee_id": "has already been taken"}})
    );
    // BUT the holder may re-send its own value, and a Contractor may use it
    h.patch(&format!("/profiles/{}", id(&first)), json!({"profile": {"attributes": {"employee_id": "E-100"}}}))
        .await
        .ok();
    let contractor_type = h.type_id("contractor").await;
    h.post(
        "/profile",
        json!({"profile": {"profile_type_id": contractor_type, "status": "Active", "attributes": {"employee_id": "E-100"}}}),
    )
    .await
    .ok();
}

#[tokio::test]
async fn profiles_can_be_filtered_by_type_status_and_name() {
    let h = Harness::start().await;
    let contractor_type = h.type_id("contractor").await;
    h.create_employee(json!({"first_name": "Emp", "last_name": "One"})).await;
    let p2 = h.create_employee(json!({"first_name": "Emp", "last_name": "Two"})).await;
    h.patch(&format!("/profiles/{}", id(&p2)), json!({"profile": {"status": "Terminated"}})).await.ok();
    h.post(
        "/profile",
        json!({"profile": {"profile_type_id": contractor_type, "status": "Active",
                           "attributes": {"first_name": "Con", "last_name": "One"}}}),
    )
    .await
    .ok();
    let names = async |q: String| field_of(&h.get(&format!("/profiles?{q}")).await.ok(), "profiles", "name");
    assert_eq!(names(format!("profile_type_id={contractor_type}")).await, ["Con One"]);
    assert_eq!(names("status=Terminated".into()).await, ["Emp Two"]);
    assert_eq!(names("name=Emp%20One".into()).await, ["Emp One"]);
    assert_eq!(names(String::new()).await, ["Emp One", "Emp Two", "Con One"]);
}

#[tokio::test]
async fn an_owner_select_attribute_materialises_a_user_profile_and_reads_as_name_and_email() {
    let h = Harness::start().await;
    // GIVEN an owner-select attribute
    h.sim_post("/seed", json!({"ne_attributes": [{"uid": "owner", "label": "Owner", "data_type": "owner select"}]}))
        .await
        .ok();
    let user = h.create_user("own", json!({"name": "Olive Owner", "email": "olive@example.com"})).await;
    // WHEN a profile names the user in it
    let p = h.create_employee(json!({"first_name": "Owned", "owner": user["id"]})).await;
    // THEN it reads as "Name (email)"
    assert_eq!(p["attributes"]["owner"], "Olive Owner (olive@example.com)");
    // AND the matching owner link exists, carrying the attribute
    let attr = h.get("/ne_attributes/owner").await.ok()["ne_attribute"].clone();
    let links = h.get(&format!("/user_profiles?profile_id={}", id(&p))).await.ok();
    let link = &items(&links, "user_profiles")[0];
    assert_eq!(link["user_id"], user["id"]);
    assert_eq!(link["relationship_type"], "owner");
    assert_eq!(link["ne_attribute_id"], attr["id"]);
    // AND clearing the attribute removes the link
    h.patch(&format!("/profiles/{}", id(&p)), json!({"profile": {"attributes": {"owner": ""}}})).await.ok();
    assert!(items(&h.get(&format!("/user_profiles?profile_id={}", id(&p))).await.ok(), "user_profiles").is_empty());
}

#[tokio::test]
async fn profile_types_are_found_by_name_uid_and_id_and_archived_ones_are_hidden_by_default() {
    let h = Harness::start().await;
    h.sim_post("/seed", json!({"profile_types": [{"name": "Old", "uid": "old", "archived": true}]})).await.ok();

    let names = async |q: &str| field_of(&h.get(&format!("/profile_types{q}")).await.ok(), "profile_types", "name");
    // THEN the default list hides the archived type
    assert_eq!(names("").await, ["Employee", "Contractor"]);
    assert_eq!(names("?archived=true").await, ["Old"]);
    assert_eq!(names("?name=Contractor").await, ["Contractor"]);
    assert_eq!(names("?name=contractor").await, Vec::<String>::new());

    // AND /profile_types/{uid} and /profile_types/{id} give the same record
    let by_uid = h.get("/profile_types/employee").await.ok();
    let pt = &by_uid["profile_type"];
    assert_eq!(pt["name"], "Employee");
    assert_eq!(pt["category"], "employee");
    assert_eq!(h.get(&format!("/profile_types/{}", id(pt))).await.ok(), by_uid);
    // AND its namings are first_name then last_name
    let first = h.get("/ne_attributes/first_name").await.ok()["ne_attribute"]["id"].clone();
    let last = h.get("/ne_attributes/last_name").await.ok()["ne_attribute"]["id"].clone();
    let namings = pt["profile_type_namings"].as_array().unwrap();
    assert_eq!(namings.iter().map(|n| n["ne_attribute_id"].clone()).collect::<Vec<_>>(), [first, last]);
    // AND unknown keys are 404
    assert_eq!(
        h.get("/profile_types/nope").await.expect(404),
        json!({"error": "The requested ProfileType was not found"})
    );
    assert_eq!(h.get(&format!("/profile_types/{UNKNOWN_ID}")).await.status, 404);
}

#[tokio::test]
async fn attributes_can_be_filtered_by_label_and_found_by_uid_or_id() {
    let h = Harness::start().await;
    let list = h.get("/ne_attributes?label=Start%20Date").await.ok();
    let attrs = items(&list, "ne_attributes");
    assert_eq!(attrs.len(), 1);
    let a = &attrs[0];
    assert_eq!(a["uid"], "start_date");
    assert_eq!(a["data_type"], "date");
    assert_eq!(a["type"], "DateAttribute");
    assert_eq!(a["date_format"], "mm/dd/yyyy");
    assert_eq!(h.get("/ne_attributes/start_date").await.ok(), json!({"ne_attribute": a}));
    assert_eq!(h.get(&format!("/ne_attributes/{}", id(a))).await.ok(), json!({"ne_attribute": a}));
    let selects = h.get("/ne_attributes?data_type=profile%20select").await.ok();
    assert_eq!(field_of(&selects, "ne_attributes", "uid"), ["manager", "sponsor"]);
    assert_eq!(
        h.get("/ne_attributes/nope").await.expect(404),
        json!({"error": "The requested Attribute was not found"})
    );
}

/// Seeds a "Visitor" type whose duplicate-detection attributes are first and last name, and
/// turns the enforcement on; returns the type id.
async fn visitor_type_with_dup_protection(h: &Harness) -> String {
    h.sim_post(
        "/seed",
        json!({"profile_types": [{"name": "Visitor", "uid": "visitor", "category": "non-employee",
                                  "naming": ["first_name", "last_name"], "dup_attributes": ["first_name", "last_name"]}]}),
    )
    .await
    .ok();
    h.configure(json!({"behaviour": {"enforce_dup_protection": true}})).await;
    h.type_id("visitor").await
}

#[tokio::test]
async fn with_dup_protection_on_a_profile_equal_in_all_dup_attributes_is_rejected() {
    let h = Harness::start().await;
    let type_id = visitor_type_with_dup_protection(&h).await;
    let visitor = |first: &str, last: &str| json!({"profile": {"profile_type_id": type_id, "status": "Active", "attributes": {"first_name": first, "last_name": last}}});
    h.post("/profile", visitor("Ann", "Lee")).await.ok();
    h.post("/profile", visitor("Ann", "Other")).await.ok();
    assert_eq!(
        h.post("/profile", visitor("Ann", "Lee")).await.expect(400),
        json!({"error": "The profile failed to create",
               "errors": {"base": "a profile with the same duplicate-detection attributes already exists"}})
    );
    // AND with the switch off (the default) the API does not enforce it (docs/nerm-api.md, "Open questions, and the simulator switch for each")
    h.configure(json!({"behaviour": {"enforce_dup_protection": false}})).await;
    h.post("/profile", visitor("Ann", "Lee")).await.ok();
}

#[tokio::test]
async fn with_dup_protection_on_profiles_without_the_dup_attributes_are_not_duplicates() {
    let h = Harness::start().await;
    let type_id = visitor_type_with_dup_protection(&h).await;
    let blank = json!({"profile": {"profile_type_id": type_id, "status": "Active"}});
    h.post("/profile", blank.clone()).await.ok();
    // Nothing to compare: an empty value matches nothing (as `unique` attributes already behave)
    h.post("/profile", blank).await.ok();
}
