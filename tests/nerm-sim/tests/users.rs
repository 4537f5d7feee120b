//! Users: envelopes, validation bodies, login uniqueness, filters, group-derived roles.

mod common;

use common::{Harness, field_of, items};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn creating_a_user_answers_200_with_the_user_envelope() {
    let h = Harness::start().await;
    // WHEN a user is created with the fields a practitioner sends
    let r = h
        .post(
            "/user",
            json!({"user": {"type": "NeprofileUser", "name": "John.Smith", "email": "john.smith@example.com",
                            "status": "Active", "login": "John.Smith", "title": "Engineer", "locale": "fr-CA",
                            "password": "s3cret", "sailpoint_identity_id": "2c9180835d2e5168015d32f890ca1581"}}),
        )
        .await;
    // THEN it is a 200 (not 201) with the record under the singular key
    let body = r.ok();
    let user = &body["user"];
    assert_eq!(body.as_object().unwrap().len(), 1, "only the `user` key: {body}");
    assert_eq!(user["login"], "John.Smith");
    assert_eq!(user["name"], "John.Smith");
    assert_eq!(user["email"], "john.smith@example.com");
    assert_eq!(user["type"], "NeprofileUser");
    assert_eq!(user["status"], "Active");
    assert_eq!(user["title"], "Engineer");
    assert_eq!(user["locale"], "fr-CA");
    assert_eq!(user["sailpoint_identity_id"], "2c9180835d2e5168015d32f890ca1581");
    assert!(uuid::Uuid::parse_str(user["id"].as_str().unwrap()).is_ok(), "id is a uuid: {user}");
    let uid = user["uid"].as_str().unwrap();
    assert!(uid.len() == 32 && uid.chars().all(|c| c.is_ascii_hexdigit()), "uid is 32 hex: {uid}");
    // AND the password is never returned
    assert!(user.get("password").is_none(), "{user}");
    // AND GET /users/{id} shows the same record
    let id = user["id"].as_str().unwrap();
    assert_eq!(h.get(&format!("/users/{id}")).await.ok(), json!({ "user": user }));
}

#[tokio::test]
async fn a_user_without_a_status_is_active() {
    let h = Harness::start().await;
    let user = h.create_user("nostatus", json!({})).await;
    assert_eq!(user["status"], "Active");
}

#[tokio::test]
async fn deleting_a_user_answers_object_deleted_and_removes_its_roles_profiles_and_managers() {
    let h = Harness::start().await;
    // GIVEN a user with a role, an owned profile, a manager, and who manages someone else
    let user = h.create_user("leaver", json!({"group_strings": "Sponsors"})).await;
    let boss = h.create_user("boss", json!({})).await;
    let report = h.create_user("report", json!({})).await;
    let (uid, bid, rid) = (user["id"].as_str().unwrap(), boss["id"].as_str().unwrap(), report["id"].as_str().unwrap());
    let profile = h.create_employee(json!({"first_name": "Owned", "last_name": "Profile"})).await;
    h.post(
        "/user_profile",
        json!({"user_profile": {"user_id": uid, "profile_id": profile["id"], "relationship_type": "owner"}}),
    )
    .await
    .ok();
    h.post("/user_manager", json!({"user_manager": {"user_id": uid, "manager_id": bid}})).await.ok();
    h.post("/user_manager", json!({"user_manager": {"user_id": rid, "manager_id": uid}})).await.ok();
    assert_eq!(h.role_uids_of(uid).await, ["sponsor"]);

    // WHEN the user is deleted
    let r = h.delete(&format!("/users/{uid}")).await;

    // THEN the answer is the Info body
    assert_eq!(r.ok(), json!({"info": "object deleted"}));
    // AND the user and every link on either side are gone
    assert_eq!(h.get(&format!("/users/{uid}")).await.status, 404);
    let state = h.state().await;
    assert!(!items(&state, "users").iter().any(|u| u["id"] == uid));
    for coll in ["user_roles", "user_profiles"] {
        assert!(!items(&state, coll).iter().any(|x| x["user_id"] == uid), "{coll} still names the user");
    }
    assert!(
        items(&state, "user_managers").iter().all(|x| x["user_id"] != uid && x["manager_id"] != uid),
        "user_managers still name the user: {}",
        state["user_managers"]
    );
    // AND the profile itself survives
    assert_eq!(h.get(&format!("/profiles/{}", profile["id"].as_str().unwrap())).await.status, 200);
}

#[tokio::test]
async fn a_body_without_the_user_wrapper_is_rejected_with_the_strong_params_message() {
    let h = Harness::start().await;
    let r =
        h.post("/user", json!({"name": "A", "email": "a@example.com", "type": "NeprofileUser", "login": "a"})).await;
    assert_eq!(r.expect(400), json!({"error": "param is missing or the value is empty: user"}));
}

#[tokio::test]
async fn an_empty_user_wrapper_is_rejected_like_a_missing_one() {
    let h = Harness::start().await;
    let r = h.post("/user", json!({"user": {}})).await;
    assert_eq!(r.expect(400), json!({"error": "param is missing or the value is empty: user"}));
}

#[tokio::test]
async fn invalid_json_is_rejected_with_the_json_syntax_message() {
    let h = Harness::start().await;
    let r = h.raw(Method::POST, "/user", Some("Bearer t"), Some(r#"{"user": {"name": "A",}"#)).await;
    assert_eq!(r.expect(400), json!({"error": "There was an issue with your JSON syntax"}));
    assert_eq!(items(&h.state().await, "users").len(), 1, "only the seeded admin");
}

#[tokio::test]
async fn blank_required_fields_are_each_reported_as_cant_be_blank() {
    let h = Harness::start().await;
    // WHEN a user is sent with only a type and a blank name
    let r = h.post("/user", json!({"user": {"type": "NeprofileUser", "name": "   "}})).await;
    // THEN every missing or blank required field is named
    assert_eq!(
        r.expect(400),
        json!({"error": "The user failed to create",
               "errors": {"name": "can't be blank", "email": "can't be blank", "login": "can't be blank"}})
    );
}

#[tokio::test]
async fn a_user_status_outside_the_enum_is_not_included_in_the_list() {
    let h = Harness::start().await;
    let r = h
        .post(
            "/user",
            json!({"user": {"type": "NeprofileUser", "name": "B", "email": "b@example.com", "login": "b", "status": "Bogus"}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user failed to create", "errors": {"status": "is not included in the list"}})
    );
    assert!(h.stored_user("b").await.is_none(), "a rejected write changes nothing");
}

#[tokio::test]
async fn a_user_type_outside_the_enum_is_not_included_in_the_list() {
    let h = Harness::start().await;
    let r =
        h.post("/user", json!({"user": {"type": "Robot", "name": "B", "email": "b@example.com", "login": "b"}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user failed to create", "errors": {"type": "is not included in the list"}})
    );
}

#[tokio::test]
async fn a_duplicate_login_differing_only_in_case_is_rejected() {
    let h = Harness::start().await;
    h.create_user("Jane.Doe", json!({})).await;
    let r = h
        .post(
            "/user",
            json!({"user": {"type": "NeprofileUser", "name": "J", "email": "j@example.com", "login": "jane.DOE"}}),
        )
        .await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user failed to create", "errors": {"login": "has already been taken"}})
    );
    assert_eq!(items(&h.get("/users?email=j@example.com").await.ok(), "users").len(), 0);
}

#[tokio::test]
async fn a_duplicate_login_differing_only_by_surrounding_spaces_is_rejected() {
    let h = Harness::start().await;
    // GIVEN a user created with spaces around its login: it is stored trimmed
    let first = h.create_user("  spaced  ", json!({"email": "spaced@example.com"})).await;
    assert_eq!(first["login"], "spaced");
    // WHEN the same login is sent without the spaces (and with others)
    for login in ["spaced", " SPACED\t"] {
        let r = h
            .post(
                "/user",
                json!({"user": {"type": "NeprofileUser", "name": "S", "email": "s@example.com", "login": login}}),
            )
            .await;
        // THEN it is taken
        assert_eq!(
            r.expect(400),
            json!({"error": "The user failed to create", "errors": {"login": "has already been taken"}}),
            "login {login:?}"
        );
    }
}

#[tokio::test]
async fn patching_a_user_to_a_taken_login_is_rejected_and_changes_nothing() {
    let h = Harness::start().await;
    h.create_user("taken", json!({})).await;
    let other = h.create_user("other", json!({})).await;
    let id = other["id"].as_str().unwrap();
    let r = h.patch(&format!("/users/{id}"), json!({"user": {"login": "TAKEN", "title": "New"}})).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user failed to update", "errors": {"login": "has already been taken"}})
    );
    assert_eq!(h.get(&format!("/users/{id}")).await.ok()["user"], other);
}

#[tokio::test]
async fn a_user_may_change_the_case_of_its_own_login() {
    let h = Harness::start().await;
    let u = h.create_user("casey", json!({})).await;
    let id = u["id"].as_str().unwrap();
    let r = h.patch(&format!("/users/{id}"), json!({"user": {"login": "Casey"}})).await.ok();
    assert_eq!(r["user"]["login"], "Casey");
    assert_eq!(field_of(&h.get("/users?login=Casey").await.ok(), "users", "id"), [id]);
}

#[tokio::test]
async fn email_is_not_unique() {
    let h = Harness::start().await;
    h.create_user("one", json!({"email": "shared@example.com"})).await;
    h.create_user("two", json!({"email": "shared@example.com"})).await;
    let list = h.get("/users?email=shared@example.com").await.ok();
    assert_eq!(field_of(&list, "users", "login"), ["one", "two"]);
}

#[tokio::test]
async fn an_unknown_or_malformed_user_id_is_not_found() {
    let h = Harness::start().await;
    let not_found = json!({"error": "The requested User was not found"});
    for id in ["0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e", "not-a-uuid"] {
        let path = format!("/users/{id}");
        assert_eq!(h.get(&path).await.expect(404), not_found, "GET {path}");
        assert_eq!(h.patch(&path, json!({"user": {"title": "x"}})).await.expect(404), not_found, "PATCH {path}");
        assert_eq!(h.delete(&path).await.expect(404), not_found, "DELETE {path}");
    }
}

#[tokio::test]
async fn users_can_be_filtered_by_login_email_status_and_type() {
    let h = Harness::start().await;
    // GIVEN (besides the seeded admin) an active, a disabled and a portal user
    h.create_user("alice", json!({"email": "alice@example.com"})).await;
    h.create_user("bob", json!({"status": "Disabled", "email": "bob@example.com"})).await;
    let profile = h.create_employee(json!({"first_name": "Carol", "last_name": "Portal"})).await;
    h.create_user("carol", json!({"type": "NeaccessUser", "profile_id": profile["id"], "status": "Pending"})).await;

    let logins = async |path: &str| field_of(&h.get(path).await.ok(), "users", "login");
    // THEN each filter is an exact match
    assert_eq!(logins("/users?login=alice").await, ["alice"]);
    assert_eq!(
        logins("/users?login=ALICE").await,
        Vec::<String>::new(),
        "case-sensitive (docs/nerm-api.md, open questions)"
    );
    assert_eq!(logins("/users?email=bob@example.com").await, ["bob"]);
    assert_eq!(logins("/users?email=bob").await, Vec::<String>::new(), "no partial match");
    assert_eq!(logins("/users?user_status=Disabled").await, ["bob"]);
    assert_eq!(logins("/users?status=Disabled").await, ["bob"], "the pre-2025 name still works");
    assert_eq!(logins("/users?user_status=Pending").await, ["carol"]);
    assert_eq!(logins("/users?type=NeaccessUser").await, ["carol"]);
    assert_eq!(logins("/users?type=NeprofileUser&user_status=Active").await, ["nerm.admin@example.com", "alice"]);
    // AND unknown parameters are ignored
    assert_eq!(logins("/users?colour=blue").await.len(), 4);
}

#[tokio::test]
async fn group_strings_grant_the_roles_whose_directory_groups_match() {
    let h = Harness::start().await;
    // WHEN a user is created with "Sponsors" (and a blank entry) in group_strings
    let u = h.create_user("sponsor.user", json!({"group_strings": "Sponsors, ,"})).await;
    // THEN it holds the Sponsor role, visible through GET /user_roles
    let id = u["id"].as_str().unwrap();
    assert_eq!(h.role_uids_of(id).await, ["sponsor"]);
    assert_eq!(u["group_strings"], "Sponsors, ,");
    // AND matching is case-sensitive
    let v = h.create_user("lower.user", json!({"group_strings": "sponsors"})).await;
    assert!(h.role_uids_of(v["id"].as_str().unwrap()).await.is_empty());
}

#[tokio::test]
async fn patching_group_strings_recomputes_the_group_roles_and_keeps_direct_ones() {
    let h = Harness::start().await;
    // GIVEN a sponsor who also holds Employee directly
    let u = h.create_user("mover", json!({"group_strings": "Sponsors"})).await;
    let id = u["id"].as_str().unwrap();
    let employee = h.role_id("employee").await;
    h.post("/user_role", json!({"user_role": {"user_id": id, "role_id": employee}})).await.ok();
    assert_eq!(h.role_uids_of(id).await, ["employee", "sponsor"]);

    // WHEN group_strings changes to Managers
    let r = h.patch(&format!("/users/{id}"), json!({"user": {"group_strings": "Managers"}})).await.ok();

    // THEN Sponsor goes, Manager comes, the direct Employee stays
    assert_eq!(r["user"]["group_strings"], "Managers");
    assert_eq!(h.role_uids_of(id).await, ["employee", "manager"]);

    // AND clearing group_strings keeps only the direct role
    h.patch(&format!("/users/{id}"), json!({"user": {"group_strings": ""}})).await.ok();
    assert_eq!(h.role_uids_of(id).await, ["employee"]);
    assert!(h.get(&format!("/users/{id}")).await.ok()["user"].get("group_strings").is_none());
}

#[tokio::test]
async fn a_patch_without_changes_keeps_the_user_and_its_roles_untouched() {
    let h = Harness::start().await;
    let u = h.create_user("steady", json!({"group_strings": "Sponsors", "title": "Lead"})).await;
    let id = u["id"].as_str().unwrap();
    let before = h.state().await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;

    // WHEN the same values are PATCHed
    let r = h
        .patch(
            &format!("/users/{id}"),
            json!({"user": {"name": u["name"], "title": "Lead", "group_strings": "Sponsors"}}),
        )
        .await;

    // THEN the answer is the normal envelope with the unchanged record
    assert_eq!(r.ok(), json!({ "user": u }));
    // AND nothing was written: same updated_at, same role assignment records
    let after = h.state().await;
    assert_eq!(after["users"], before["users"]);
    assert_eq!(after["user_roles"], before["user_roles"]);
}

#[tokio::test]
async fn a_patch_is_partial() {
    let h = Harness::start().await;
    let u = h.create_user("partial", json!({"title": "Old", "locale": "en-GB"})).await;
    let id = u["id"].as_str().unwrap();
    let r = h.patch(&format!("/users/{id}"), json!({"user": {"title": "New"}})).await.ok();
    let mut expected = u.clone();
    expected["title"] = json!("New");
    assert_eq!(r["user"], expected);
    let stored = h.stored_user("partial").await.unwrap();
    assert_ne!(stored["updated_at"], json!(null));
}

#[tokio::test]
async fn a_portal_user_needs_the_id_of_an_existing_profile() {
    let h = Harness::start().await;
    let base = json!({"type": "NeaccessUser", "name": "Portal", "email": "portal@example.com", "login": "portal"});

    // WHEN no profile_id is given
    let r = h.post("/user", json!({ "user": base })).await;
    assert_eq!(
        r.expect(400),
        json!({"error": "The user failed to create", "errors": {"profile_id": "can't be blank"}})
    );
    // WHEN it names no profile
    let mut missing = base.clone();
    missing["profile_id"] = json!("0b7c1a52-8a39-4b4e-9d0e-1f2a3b4c5d6e");
    let r = h.post("/user", json!({ "user": missing })).await;
    assert_eq!(r.expect(400), json!({"error": "The user failed to create", "errors": {"profile_id": "must exist"}}));

    // WHEN it names an existing profile, THEN the user is created and profile_id is not echoed
    let profile = h.create_employee(json!({"first_name": "Por", "last_name": "Tal"})).await;
    let mut good = base.clone();
    good["profile_id"] = profile["id"].clone();
    good["group_strings"] = json!("Vendors,Sponsors");
    let user = h.post("/user", json!({ "user": good })).await.ok()["user"].clone();
    assert_eq!(user["type"], "NeaccessUser");
    assert!(user.get("profile_id").is_none(), "{user}");
    assert_eq!(h.stored_user("portal").await.unwrap()["profile_id"], profile["id"]);
    // AND only collaboration roles come from its groups (Sponsor is a lifecycle role)
    assert_eq!(h.role_uids_of(user["id"].as_str().unwrap()).await, ["vendor_portal"]);
}

#[tokio::test]
async fn a_malformed_email_is_invalid() {
    let h = Harness::start().await;
    let r = h
        .post("/user", json!({"user": {"type": "NeprofileUser", "name": "E", "email": "not-an-email", "login": "e"}}))
        .await;
    assert_eq!(r.expect(400), json!({"error": "The user failed to create", "errors": {"email": "is invalid"}}));
}
