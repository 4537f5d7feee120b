//! Join records: user_roles, user_profiles (owner/contributor), user_managers.

mod common;

use common::{Harness, field_of, items};
use reqwest::Method;
use serde_json::{Value, json};

const UNKNOWN_ID: &str = "0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e";

fn id(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}"))
}

// ----- user roles ---------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_user_role_answers_200_with_the_user_role_envelope() {
    let h = Harness::start().await;
    let user = h.create_user("ann", json!({})).await;
    let sponsor = h.role_id("sponsor").await;

    let body = h.post("/user_role", json!({"user_role": {"user_id": id(&user), "role_id": sponsor}})).await.ok();

    let ur = &body["user_role"];
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(ur["user_id"], user["id"]);
    assert_eq!(ur["role_id"], sponsor.as_str());
    assert_eq!(ur.as_object().unwrap().keys().collect::<Vec<_>>(), ["id", "role_id", "uid", "user_id"]);
    assert_eq!(h.get(&format!("/user_roles/{}", id(ur))).await.ok(), json!({ "user_role": ur }));
    assert_eq!(h.role_uids_of(id(&user)).await, ["sponsor"]);
}

#[tokio::test]
async fn a_duplicate_user_role_is_rejected() {
    let h = Harness::start().await;
    let user = h.create_user("ann", json!({})).await;
    let sponsor = h.role_id("sponsor").await;
    let body = json!({"user_role": {"user_id": id(&user), "role_id": sponsor}});
    h.post("/user_role", body.clone()).await.ok();

    let r = h.post("/user_role", body).await;

    assert_eq!(
        r.expect(400),
        json!({"error": "The user role failed to create", "errors": {"role_id": "has already been taken"}})
    );
    assert_eq!(items(&h.get(&format!("/user_roles?user_id={}", id(&user))).await.ok(), "user_roles").len(), 1);
}

#[tokio::test]
async fn a_user_role_already_held_through_group_strings_counts_as_a_duplicate() {
    let h = Harness::start().await;
    let user = h.create_user("ann", json!({"group_strings": "Sponsors"})).await;
    let sponsor = h.role_id("sponsor").await;
    let r = h.post("/user_role", json!({"user_role": {"user_id": id(&user), "role_id": sponsor}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user role failed to create", "errors": {"role_id": "has already been taken"}})
    );
}

#[tokio::test]
async fn a_user_role_naming_missing_records_reports_each_field() {
    let h = Harness::start().await;
    let r = h.post("/user_role", json!({"user_role": {"user_id": UNKNOWN_ID, "role_id": "nope"}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user role failed to create", "errors": {"user_id": "must exist", "role_id": "is invalid"}})
    );
    let r = h.post("/user_role", json!({"user_role": {"user_id": null}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user role failed to create",
               "errors": {"user_id": "can't be blank", "role_id": "can't be blank"}})
    );
}

#[tokio::test]
async fn a_lifecycle_role_cannot_be_given_to_a_portal_user() {
    let h = Harness::start().await;
    let profile = h.create_employee(json!({"first_name": "Por", "last_name": "Tal"})).await;
    let portal = h.create_user("portal", json!({"type": "NeaccessUser", "profile_id": profile["id"]})).await;
    let sponsor = h.role_id("sponsor").await;
    let r = h.post("/user_role", json!({"user_role": {"user_id": id(&portal), "role_id": sponsor}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user role failed to create",
               "errors": {"role_id": "is not permitted for this type of user"}})
    );
    let vendor = h.role_id("vendor_portal").await;
    h.post("/user_role", json!({"user_role": {"user_id": id(&portal), "role_id": vendor}})).await.ok();
}

#[tokio::test]
async fn deleting_a_user_role_answers_an_empty_object() {
    let h = Harness::start().await;
    let user = h.create_user("ann", json!({})).await;
    let sponsor = h.role_id("sponsor").await;
    let ur = h.post("/user_role", json!({"user_role": {"user_id": id(&user), "role_id": sponsor}})).await.ok();
    let ur_id = ur["user_role"]["id"].as_str().unwrap();

    // WHEN it is deleted through the singular path
    let r = h.delete(&format!("/user_role/{ur_id}")).await;

    // THEN the answer is `{}` and the assignment is gone
    assert_eq!(r.ok(), json!({}));
    assert!(h.role_uids_of(id(&user)).await.is_empty());
    assert_eq!(
        h.delete(&format!("/user_role/{ur_id}")).await.expect(404),
        json!({"error": "The requested UserRole was not found"})
    );
    // AND the plural path has no DELETE
    assert_eq!(h.delete(&format!("/user_roles/{ur_id}")).await.status, 405);
}

#[tokio::test]
async fn user_roles_can_be_filtered_by_user_id_and_role_id() {
    let h = Harness::start().await;
    let ann = h.create_user("ann", json!({"group_strings": "Sponsors,Managers"})).await;
    let bob = h.create_user("bob", json!({"group_strings": "Sponsors"})).await;
    let sponsor = h.role_id("sponsor").await;

    let anns = h.get(&format!("/user_roles?user_id={}", id(&ann))).await.ok();
    assert_eq!(items(&anns, "user_roles").len(), 2);
    assert!(items(&anns, "user_roles").iter().all(|r| r["user_id"] == ann["id"]));

    let sponsors = h.get(&format!("/user_roles?role_id={sponsor}")).await.ok();
    let mut holders = field_of(&sponsors, "user_roles", "user_id");
    holders.sort();
    let mut expected = vec![id(&ann).to_string(), id(&bob).to_string()];
    expected.sort();
    assert_eq!(holders, expected);

    // AND an upper-case uuid matches too, a non-uuid matches nothing
    let upper = h.get(&format!("/user_roles?user_id={}", id(&bob).to_uppercase())).await.ok();
    assert_eq!(items(&upper, "user_roles").len(), 1);
    assert!(items(&h.get("/user_roles?user_id=bob").await.ok(), "user_roles").is_empty());
}

// ----- user profiles ------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_user_profile_answers_200_with_the_user_profile_envelope() {
    let h = Harness::start().await;
    let user = h.create_user("owner", json!({})).await;
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;

    let body = h
        .post(
            "/user_profile",
            json!({"user_profile": {"user_id": id(&user), "profile_id": id(&profile), "relationship_type": "owner"}}),
        )
        .await
        .ok();

    let up = &body["user_profile"];
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(up["user_id"], user["id"]);
    assert_eq!(up["profile_id"], profile["id"]);
    assert_eq!(up["relationship_type"], "owner");
    assert_eq!(h.get(&format!("/user_profiles/{}", id(up))).await.ok(), json!({ "user_profile": up }));
}

#[tokio::test]
async fn a_user_profile_needs_a_known_relationship_type() {
    let h = Harness::start().await;
    let user = h.create_user("owner", json!({})).await;
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;
    let r = h
        .post(
            "/user_profile",
            json!({"user_profile": {"user_id": id(&user), "profile_id": id(&profile), "relationship_type": "boss"}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user profile failed to create", "errors": {"relationship_type": "is not included in the list"}})
    );
}

#[tokio::test]
async fn a_second_owner_on_a_profile_is_rejected() {
    let h = Harness::start().await;
    let first = h.create_user("first", json!({})).await;
    let second = h.create_user("second", json!({})).await;
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;
    let link = |u: &Value| json!({"user_profile": {"user_id": u["id"], "profile_id": profile["id"], "relationship_type": "owner"}});
    h.post("/user_profile", link(&first)).await.ok();

    let r = h.post("/user_profile", link(&second)).await;

    assert_eq!(
        r.expect(400),
        json!({"error": "The user profile failed to create",
               "errors": {"relationship_type": "owner has already been taken for this profile"}})
    );
    let owners = h.get(&format!("/user_profiles?profile_id={}&relationship_type=owner", id(&profile))).await.ok();
    assert_eq!(field_of(&owners, "user_profiles", "user_id"), [id(&first)]);
}

#[tokio::test]
async fn with_owner_replaces_a_second_owner_replaces_the_first() {
    let h = Harness::start().await;
    // GIVEN the behaviour switch
    let cfg = h.patch_config(json!({"behaviour": {"owner_replaces": true}})).await.ok();
    assert_eq!(cfg["behaviour"]["owner_replaces"], true);
    let first = h.create_user("first", json!({})).await;
    let second = h.create_user("second", json!({})).await;
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;
    let link = |u: &Value| json!({"user_profile": {"user_id": u["id"], "profile_id": profile["id"], "relationship_type": "owner"}});
    h.post("/user_profile", link(&first)).await.ok();

    // WHEN a second owner is added
    let r = h.post("/user_profile", link(&second)).await.ok();

    // THEN it is the only owner
    assert_eq!(r["user_profile"]["user_id"], second["id"]);
    let owners = h.get(&format!("/user_profiles?profile_id={}&relationship_type=owner", id(&profile))).await.ok();
    assert_eq!(field_of(&owners, "user_profiles", "user_id"), [id(&second)]);
}

#[tokio::test]
async fn a_profile_can_have_many_contributors_but_not_the_same_one_twice() {
    let h = Harness::start().await;
    let a = h.create_user("a", json!({})).await;
    let b = h.create_user("b", json!({})).await;
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;
    let link = |u: &Value| json!({"user_profile": {"user_id": u["id"], "profile_id": profile["id"], "relationship_type": "contributor"}});
    h.post("/user_profile", link(&a)).await.ok();
    h.post("/user_profile", link(&b)).await.ok();
    let r = h.post("/user_profile", link(&a)).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user profile failed to create", "errors": {"user_id": "has already been taken"}})
    );
    let list = h.get(&format!("/user_profiles?profile_id={}&relationship_type=contributor", id(&profile))).await.ok();
    assert_eq!(field_of(&list, "user_profiles", "user_id"), [id(&a), id(&b)]);
}

#[tokio::test]
async fn user_profiles_can_be_filtered_by_profile_and_relationship_type() {
    let h = Harness::start().await;
    let owner = h.create_user("owner", json!({})).await;
    let helper = h.create_user("helper", json!({})).await;
    let p1 = h.create_employee(json!({"first_name": "One", "last_name": "P"})).await;
    let p2 = h.create_employee(json!({"first_name": "Two", "last_name": "P"})).await;
    for (u, p, rel) in [(&owner, &p1, "owner"), (&helper, &p1, "contributor"), (&owner, &p2, "owner")] {
        h.post(
            "/user_profile",
            json!({"user_profile": {"user_id": u["id"], "profile_id": p["id"], "relationship_type": rel}}),
        )
        .await
        .ok();
    }
    let get = async |q: String| field_of(&h.get(&format!("/user_profiles?{q}")).await.ok(), "user_profiles", "user_id");
    assert_eq!(get(format!("profile_id={}&relationship_type=contributor", id(&p1))).await, [id(&helper)]);
    assert_eq!(get(format!("profile_id={}&relationship_type=owner", id(&p1))).await, [id(&owner)]);
    assert_eq!(get(format!("profile_id={}", id(&p2))).await, [id(&owner)]);
    assert_eq!(get(format!("user_id={}", id(&owner))).await.len(), 2);
    assert_eq!(get("relationship_type=contributor".into()).await, [id(&helper)]);
}

#[tokio::test]
async fn deleting_a_user_profile_answers_an_empty_object() {
    let h = Harness::start().await;
    let user = h.create_user("c", json!({})).await;
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;
    let up = h
        .post(
            "/user_profile",
            json!({"user_profile": {"user_id": user["id"], "profile_id": profile["id"], "relationship_type": "contributor"}}),
        )
        .await
        .ok();
    let up_id = up["user_profile"]["id"].as_str().unwrap();
    assert_eq!(h.delete(&format!("/user_profile/{up_id}")).await.ok(), json!({}));
    assert_eq!(
        h.get(&format!("/user_profiles/{up_id}")).await.expect(404),
        json!({"error": "The requested UserProfile was not found"})
    );
}

#[tokio::test]
async fn deleting_a_profile_removes_its_user_profiles() {
    let h = Harness::start().await;
    let user = h.create_user("c", json!({})).await;
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;
    h.post(
        "/user_profile",
        json!({"user_profile": {"user_id": user["id"], "profile_id": profile["id"], "relationship_type": "owner"}}),
    )
    .await
    .ok();
    h.delete(&format!("/profiles/{}", id(&profile))).await.expect(204);
    assert!(items(&h.state().await, "user_profiles").is_empty());
    assert_eq!(h.get(&format!("/users/{}", id(&user))).await.status, 200, "the user survives");
}

// ----- user managers ------------------------------------------------------------------------

#[tokio::test]
async fn creating_a_user_manager_answers_200_with_the_user_manager_envelope() {
    let h = Harness::start().await;
    let user = h.create_user("worker", json!({})).await;
    let boss = h.create_user("boss", json!({})).await;

    let body =
        h.post("/user_manager", json!({"user_manager": {"user_id": id(&user), "manager_id": id(&boss)}})).await.ok();

    let um = &body["user_manager"];
    assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
    assert_eq!(um["user_id"], user["id"]);
    assert_eq!(um["manager_id"], boss["id"]);
    assert_eq!(h.get(&format!("/user_managers/{}", id(um))).await.ok(), json!({ "user_manager": um }));
}

#[tokio::test]
async fn a_duplicate_user_manager_is_rejected_and_a_manager_must_be_a_user() {
    let h = Harness::start().await;
    let user = h.create_user("worker", json!({})).await;
    let boss = h.create_user("boss", json!({})).await;
    let body = json!({"user_manager": {"user_id": id(&user), "manager_id": id(&boss)}});
    h.post("/user_manager", body.clone()).await.ok();
    assert_eq!(
        h.post("/user_manager", body).await.expect(400),
        json!({"error": "The user manager failed to create", "errors": {"manager_id": "has already been taken"}})
    );
    // A profile id is not a user id.
    let profile = h.create_employee(json!({"first_name": "Pro", "last_name": "File"})).await;
    let r = h.post("/user_manager", json!({"user_manager": {"user_id": id(&user), "manager_id": id(&profile)}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user manager failed to create", "errors": {"manager_id": "must exist"}})
    );
}

#[tokio::test]
async fn user_managers_can_be_filtered_by_user_id_and_re_pointed_with_patch() {
    let h = Harness::start().await;
    let ann = h.create_user("ann", json!({})).await;
    let bob = h.create_user("bob", json!({})).await;
    let old_boss = h.create_user("old.boss", json!({})).await;
    let new_boss = h.create_user("new.boss", json!({})).await;
    let link =
        h.post("/user_manager", json!({"user_manager": {"user_id": id(&ann), "manager_id": id(&old_boss)}})).await.ok()
            ["user_manager"]
            .clone();
    h.post("/user_manager", json!({"user_manager": {"user_id": id(&bob), "manager_id": id(&old_boss)}})).await.ok();

    let anns = h.get(&format!("/user_managers?user_id={}", id(&ann))).await.ok();
    assert_eq!(field_of(&anns, "user_managers", "id"), [id(&link)]);

    // WHEN the link is re-pointed (there is no DELETE for user managers)
    let r =
        h.patch(&format!("/user_managers/{}", id(&link)), json!({"user_manager": {"manager_id": id(&new_boss)}})).await;
    assert_eq!(r.ok()["user_manager"]["manager_id"], new_boss["id"]);
    let anns = h.get(&format!("/user_managers?user_id={}", id(&ann))).await.ok();
    assert_eq!(field_of(&anns, "user_managers", "manager_id"), [id(&new_boss)]);
    let olds = h.get(&format!("/user_managers?manager_id={}", id(&old_boss))).await.ok();
    assert_eq!(field_of(&olds, "user_managers", "user_id"), [id(&bob)]);
    assert_eq!(h.send(Method::DELETE, &format!("/user_managers/{}", id(&link)), None).await.status, 405);
}

#[tokio::test]
async fn an_unknown_or_malformed_user_manager_id_is_not_found() {
    let h = Harness::start().await;
    let not_found = json!({"error": "The requested UserManager was not found"});
    for key in [UNKNOWN_ID, "42"] {
        assert_eq!(h.get(&format!("/user_managers/{key}")).await.expect(404), not_found);
        let r = h.patch(&format!("/user_managers/{key}"), json!({"user_manager": {"manager_id": UNKNOWN_ID}})).await;
        assert_eq!(r.expect(404), not_found);
    }
}
