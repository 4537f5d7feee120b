//! The SSO hooks (docs/nerm-api.md, "Roles under SSO"): logins and the daily refresh rewrite role assignments
//! in the default mode, leave them alone in ISC-entitlement mode, and never touch profile or
//! manager links.

mod common;

use common::{Harness, items};
use serde_json::{Value, json};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

async fn login(h: &Harness, body: Value) -> common::Reply {
    h.sim_post("/sso/login", body).await
}

/// A user holding Sponsor through a direct `POST /user_role` only.
async fn direct_sponsor(h: &Harness, login: &str) -> Value {
    let u = h.create_user(login, json!({})).await;
    let sponsor = h.role_id("sponsor").await;
    h.post("/user_role", json!({"user_role": {"user_id": u["id"], "role_id": sponsor}})).await.ok();
    assert_eq!(h.role_uids_of(&id(&u)).await, ["sponsor"]);
    u
}

#[tokio::test]
async fn an_idp_login_replaces_api_assigned_roles_with_the_roles_of_the_idp_groups() {
    let h = Harness::start().await;
    let u = direct_sponsor(&h, "ann").await;

    // WHEN the IdP says the user is only in "Employees"
    let r = login(&h, json!({"login": "ann", "idp_groups": ["Employees"]})).await.ok();

    // THEN the direct Sponsor assignment is gone and Employee is held
    assert_eq!(h.role_uids_of(&id(&u)).await, ["employee"]);
    // AND group_strings follows the assertion, last_login is set
    assert_eq!(r["user"]["group_strings"], "Employees");
    assert!(r["user"]["last_login"].is_string(), "{r}");
    assert_eq!(h.get(&format!("/users/{}", id(&u))).await.ok()["user"], r["user"]);
}

#[tokio::test]
async fn a_login_whose_groups_match_no_role_is_refused_and_changes_nothing() {
    let h = Harness::start().await;
    let u = h.create_user("ann", json!({"group_strings": "Sponsors"})).await;
    let before = h.state().await;

    let r = login(&h, json!({"login": "ann", "idp_groups": ["Nobody"]})).await;

    assert_eq!(r.expect(403), json!({"error": "login refused: no role matches the groups [\"Nobody\"]"}));
    let after = h.state().await;
    assert_eq!(after["users"], before["users"], "no last_login, no group_strings change");
    assert_eq!(after["user_roles"], before["user_roles"]);
    assert_eq!(h.role_uids_of(&id(&u)).await, ["sponsor"]);
}

#[tokio::test]
async fn a_login_for_an_unknown_login_creates_the_user_just_in_time() {
    let h = Harness::start().await;
    let r = login(
        &h,
        json!({"login": "jit.user", "idp_groups": ["Sponsors"], "name": "Jit User", "email": "jit@example.com"}),
    )
    .await
    .ok();
    let user = &r["user"];
    assert_eq!(user["login"], "jit.user");
    assert_eq!(user["name"], "Jit User");
    assert_eq!(user["email"], "jit@example.com");
    assert_eq!(user["type"], "NeprofileUser");
    assert_eq!(user["group_strings"], "Sponsors");
    assert_eq!(h.role_uids_of(&id(user)).await, ["sponsor"]);
    assert_eq!(h.get("/users?login=jit.user").await.ok()["users"][0], *user);
}

#[tokio::test]
async fn a_just_in_time_login_works_for_an_email_shaped_login_without_an_email_claim() {
    let h = Harness::start().await;
    // Logins are usually e-mail addresses (the seeded admin's is).
    let r = login(&h, json!({"login": "new.hire@example.com", "idp_groups": ["Employees"]})).await;
    let user = r.ok()["user"].clone();
    assert_eq!(user["login"], "new.hire@example.com");
    assert_eq!(h.role_uids_of(&id(&user)).await, ["employee"]);
}

#[tokio::test]
async fn a_refused_just_in_time_login_creates_no_user() {
    let h = Harness::start().await;
    let r = login(&h, json!({"login": "stranger", "idp_groups": ["Nobody"]})).await;
    assert_eq!(r.status, 403);
    assert!(h.stored_user("stranger").await.is_none());
}

#[tokio::test]
async fn in_isc_entitlement_mode_logins_and_the_daily_refresh_leave_roles_alone() {
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"isc_entitlement_mode": true}})).await;
    let u = direct_sponsor(&h, "ann").await;

    // WHEN the user logs in with other groups
    let r = login(&h, json!({"login": "ann", "idp_groups": ["Employees"]})).await.ok();
    // THEN the login succeeds and the roles are untouched
    assert!(r["user"]["last_login"].is_string());
    assert!(r["user"].get("group_strings").is_none(), "{r}");
    assert_eq!(h.role_uids_of(&id(&u)).await, ["sponsor"]);

    // AND the daily refresh removes nothing
    let refreshed = h.sim_post("/sso/daily_refresh", json!({})).await.ok();
    assert_eq!(refreshed, json!({"removed_role_assignments": 0}));
    assert_eq!(h.role_uids_of(&id(&u)).await, ["sponsor"]);
}

#[tokio::test]
async fn the_daily_refresh_drops_a_group_role_the_idp_directory_does_not_back() {
    let h = Harness::start().await;
    // GIVEN a user created through the API with group_strings "Sponsors" (docs/nerm-api.md, "Roles under SSO")
    let dropped = h.create_user("api.sponsor", json!({"group_strings": "Sponsors"})).await;
    // AND one whose IdP directory entry has the group (login case does not matter)
    let kept = h.create_user("Backed.Sponsor", json!({"group_strings": "Sponsors"})).await;
    h.sim_post("/idp/groups", json!({"login": "backed.sponsor", "groups": ["Sponsors"]})).await.ok();

    // WHEN the daily refresh runs
    let r = h.sim_post("/sso/daily_refresh", json!({})).await.ok();

    // THEN the unbacked Sponsor role is gone, the backed one stays
    assert!(r["removed_role_assignments"].as_u64().unwrap() >= 1, "{r}");
    assert!(h.role_uids_of(&id(&dropped)).await.is_empty());
    assert_eq!(h.role_uids_of(&id(&kept)).await, ["sponsor"]);
    // AND group_strings itself is not rewritten
    assert_eq!(h.get(&format!("/users/{}", id(&dropped))).await.ok()["user"]["group_strings"], "Sponsors");
}

#[tokio::test]
async fn the_daily_refresh_keeps_what_the_last_login_asserted() {
    let h = Harness::start().await;
    h.create_user("ann", json!({})).await;
    let r = login(&h, json!({"login": "ann", "idp_groups": ["Sponsors", "Employees"]})).await.ok();
    h.sim_post("/sso/daily_refresh", json!({})).await.ok();
    assert_eq!(h.role_uids_of(&id(&r["user"])).await, ["employee", "sponsor"]);
}

#[tokio::test]
async fn the_daily_refresh_follows_the_idp_directory_after_a_login() {
    let h = Harness::start().await;
    // GIVEN a user who logged in as a sponsor and employee
    h.create_user("ann", json!({})).await;
    let r = login(&h, json!({"login": "ann", "idp_groups": ["Sponsors", "Employees"]})).await.ok();
    // AND who was later removed from the Sponsors group in the IdP
    h.sim_post("/idp/groups", json!({"login": "ann", "groups": ["Employees"]})).await.ok();

    // WHEN the daily refresh runs
    h.sim_post("/sso/daily_refresh", json!({})).await.ok();

    // THEN Sponsor is no longer backed and goes (docs/nerm-api.md, "Roles under SSO")
    assert_eq!(h.role_uids_of(&id(&r["user"])).await, ["employee"]);
}

#[tokio::test]
async fn an_isc_local_login_of_an_org_admin_gets_exactly_the_administrator_role() {
    let h = Harness::start().await;
    let u = direct_sponsor(&h, "admin.person").await;
    h.patch(&format!("/users/{}", id(&u)), json!({"user": {"group_strings": "Managers"}})).await.ok();
    assert_eq!(h.role_uids_of(&id(&u)).await, ["manager", "sponsor"]);

    let r =
        login(&h, json!({"login": "admin.person", "via": "isc_local", "isc_user_levels": ["ORG_ADMIN", "CERT_ADMIN"]}))
            .await
            .ok();

    assert_eq!(h.role_uids_of(&id(&u)).await, ["administrator"]);
    assert!(r["user"]["last_login"].is_string());
    assert_eq!(r["user"]["group_strings"], "Managers", "an ISC-local login asserts no IdP groups");
}

#[tokio::test]
async fn an_isc_local_login_keeps_direct_roles_only_when_configured() {
    let h = Harness::start().await;
    h.configure(json!({"behaviour": {"isc_local_keeps_roles": true}})).await;
    let u = direct_sponsor(&h, "local.user").await;
    login(&h, json!({"login": "local.user", "via": "isc_local", "isc_user_levels": ["CERT_ADMIN"]})).await.ok();
    assert_eq!(h.role_uids_of(&id(&u)).await, ["sponsor"]);

    // Without the switch, levels that match no role refuse the login
    h.configure(json!({"behaviour": {"isc_local_keeps_roles": false}})).await;
    let r = login(&h, json!({"login": "local.user", "via": "isc_local", "isc_user_levels": ["CERT_ADMIN"]})).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(h.role_uids_of(&id(&u)).await, ["sponsor"]);
}

#[tokio::test]
async fn logins_and_the_daily_refresh_never_touch_user_profiles_or_user_managers() {
    let h = Harness::start().await;
    // GIVEN a user who owns a profile, contributes to another, and has a manager
    let u = direct_sponsor(&h, "linked").await;
    let boss = h.create_user("boss", json!({})).await;
    let p1 = h.create_employee(json!({"first_name": "P", "last_name": "One"})).await;
    let p2 = h.create_employee(json!({"first_name": "P", "last_name": "Two"})).await;
    for (p, rel) in [(&p1, "owner"), (&p2, "contributor")] {
        h.post(
            "/user_profile",
            json!({"user_profile": {"user_id": u["id"], "profile_id": p["id"], "relationship_type": rel}}),
        )
        .await
        .ok();
    }
    h.post("/user_manager", json!({"user_manager": {"user_id": u["id"], "manager_id": boss["id"]}})).await.ok();
    let before = h.state().await;

    // WHEN the user logs in with other groups, then the refresh runs (the IdP backs nothing)
    login(&h, json!({"login": "linked", "idp_groups": ["Employees"]})).await.ok();
    h.sim_post("/idp/groups", json!({"login": "linked", "groups": []})).await.ok();
    h.sim_post("/sso/daily_refresh", json!({})).await.ok();
    login(&h, json!({"login": "linked", "via": "isc_local", "isc_user_levels": ["ORG_ADMIN"]})).await.ok();

    // THEN the links are exactly as before
    let after = h.state().await;
    assert_eq!(after["user_profiles"], before["user_profiles"]);
    assert_eq!(after["user_managers"], before["user_managers"]);
    assert_eq!(items(&after, "user_profiles").len(), 2);
}
