//! One NERM identity per employee: the stable key follows a renamed employee to their one
//! user, and a bad manager reference costs the manager link, never the employee.

mod common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;
use shared::report::Outcome;

/// Imports `people` with `config` and checks every row was created.
async fn imported(sim: &Harness, people: &[HrRow], config: &shared::config::MappingConfig) {
    let run = sim.run(&to_csv(people), config, false).await;
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, people.len())]), "{:#?}", run.rows);
}

/// A row with no manager and no roles.
fn plain_row(key: &str, login: &str) -> HrRow {
    HrRow {
        employee_id: key.into(),
        login: login.into(),
        email: login.to_lowercase(),
        first_name: "Pat".into(),
        last_name: format!("Row{key}"),
        title: "Tester".into(),
        department: "QA".into(),
        manager_login: String::new(),
        status: "Active".into(),
        roles: String::new(),
    }
}

/// `row` as NERM must hold it when its manager link was left out.
fn without_manager(row: &HrRow) -> HrRow {
    HrRow { manager_login: String::new(), ..row.clone() }
}

fn id_of(v: &Value) -> &str {
    v["id"].as_str().unwrap_or_default()
}

/// The one warning of a report row.
#[track_caller]
fn only_warning(run: &Run, key: &str) -> String {
    let row = run.row_of(key);
    assert_eq!(row.warnings.len(), 1, "{row:#?}");
    row.warnings[0].clone()
}

// ----- bad manager references ------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_manager_and_a_self_manager_cost_the_link_not_the_employee() {
    // GIVEN six good employees, one whose manager is nowhere and one who manages themselves
    let sim = Harness::start().await;
    let good = employees(6);
    let mut orphan = plain_row("E90001", "orphan@example.com");
    orphan.manager_login = "ghost@example.com".into();
    let mut own = plain_row("E90002", "self.boss@example.com");
    own.manager_login = "Self.Boss@Example.com".into();
    let mut rows = good.clone();
    rows.insert(2, orphan.clone());
    rows.push(own.clone());

    // WHEN the file is imported
    let run = sim.run(&to_csv(&rows), &example_config(), false).await;

    // THEN every row is created; the two bad references are warnings naming line and column
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 8)]), "{:#?}", run.rows);
    let orphan_warning = only_warning(&run, "E90001");
    assert!(orphan_warning.starts_with("line 4, column \"manager_login\": "), "{orphan_warning}");
    assert!(orphan_warning.contains("\"ghost@example.com\" is neither in the file nor a NERM user"));
    let own_warning = only_warning(&run, "E90002");
    assert!(own_warning.starts_with("line 9, column \"manager_login\": "), "{own_warning}");
    assert!(own_warning.contains("is the employee's own login"), "{own_warning}");
    for g in &good {
        assert!(run.row_of(&g.employee_id).warnings.is_empty(), "{}", g.login);
    }
    // AND the summary counts them, and warnings alone keep the exit code at 0
    assert_eq!(run.summary.rows_with_warnings, 2);
    assert_eq!(run.summary.exit_code(), 0);

    // AND NERM holds both employees, able to sign in, with no manager link at all
    let state = sim.state().await;
    let expected: Vec<HrRow> =
        rows.iter().map(|r| if r.employee_id.starts_with("E9") { without_manager(r) } else { r.clone() }).collect();
    assert_nerm_matches(&state, &expected);
    assert_no_strays(&state, &expected);
    assert_eq!(user(&state, &orphan.login)["status"], "Active");
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_employee_whose_manager_row_was_rejected_is_created_without_the_link() {
    // GIVEN a manager whose row names an unknown role (rejected) and who is not in NERM, and
    // an employee reporting to them
    let sim = Harness::start().await;
    let mut boss = plain_row("E91001", "astro.boss@example.com");
    boss.roles = "Astronaut".into();
    let mut report = plain_row("E91002", "crew@example.com");
    report.manager_login = "Astro.Boss@example.com".into();

    // WHEN the file is imported
    let run = sim.run(&to_csv(&[boss.clone(), report.clone()]), &example_config(), false).await;

    // THEN the manager is rejected, the employee created with a warning naming the manager's line
    assert_eq!(run.row_of("E91001").outcome, Outcome::Rejected);
    assert_eq!(run.row_of("E91002").outcome, Outcome::Created);
    let warning = only_warning(&run, "E91002");
    assert!(
        warning.starts_with(
            "line 3, column \"manager_login\": manager \"Astro.Boss@example.com\" is on line 2, which was rejected"
        ),
        "{warning}"
    );
    assert_eq!(run.summary.exit_code(), 2, "the rejected row still counts");
    let state = sim.state().await;
    assert_nerm_matches(&state, &[without_manager(&report)]);
    assert_no_strays(&state, &[report]);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_new_employees_naming_each_other_as_manager_are_created_without_either_link() {
    // GIVEN ann managed by bob and bob managed by ann, and cid reporting to ann
    let sim = Harness::start().await;
    let mut ann = plain_row("E92001", "ann.cycle@example.com");
    let mut bob = plain_row("E92002", "bob.cycle@example.com");
    let mut cid = plain_row("E92003", "cid.cycle@example.com");
    ann.manager_login = bob.login.clone();
    bob.manager_login = "ANN.CYCLE@example.com".into();
    cid.manager_login = ann.login.clone();
    let rows = vec![ann.clone(), bob.clone(), cid.clone()];

    // WHEN the file is imported
    let run = sim.run(&to_csv(&rows), &example_config(), false).await;

    // THEN all three are created; ann and bob carry the cycle warning, cid none
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 3)]), "{:#?}", run.rows);
    for (key, line) in [("E92001", 2), ("E92002", 3)] {
        let warning = only_warning(&run, key);
        assert!(warning.starts_with(&format!("line {line}, column \"manager_login\": ")), "{warning}");
        assert!(warning.contains("form a cycle"), "{warning}");
    }
    assert!(run.row_of("E92003").warnings.is_empty());
    assert_eq!(run.summary.rows_with_warnings, 2);

    // AND NERM holds no link between ann and bob, and cid's link to ann
    let state = sim.state().await;
    assert_nerm_matches(&state, &[without_manager(&ann), without_manager(&bob), cid.clone()]);
    assert_no_strays(&state, &rows);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_manager_keeps_the_link_nerm_has_and_a_manager_who_turns_up_later_is_linked_then() {
    // GIVEN bea reporting to ann, both imported, and cid whose manager dan is not known yet
    let sim = Harness::start().await;
    let ann = plain_row("E93001", "ann.lead@example.com");
    let mut bea = plain_row("E93002", "bea.report@example.com");
    bea.manager_login = ann.login.clone();
    let mut cid = plain_row("E93003", "cid.early@example.com");
    cid.manager_login = "dan.late@example.com".into();
    let first = sim.run(&to_csv(&[ann.clone(), bea.clone(), cid.clone()]), &example_config(), false).await;
    assert_eq!(first.outcomes(), BTreeMap::from([(Outcome::Created, 3)]));
    assert!(only_warning(&first, "E93003").contains("neither in the file nor a NERM user"));
    let links_before = sim.state().await["user_managers"].clone();

    // WHEN the next file names a manager nobody knows for bea
    let mut bea_ghost = bea.clone();
    bea_ghost.manager_login = "ghost@example.com".into();
    sim.reset_stats().await;
    let second = sim.run(&to_csv(&[ann.clone(), bea_ghost, cid.clone()]), &example_config(), false).await;

    // THEN bea is unchanged with a warning, and her link to ann is left as it was
    assert_eq!(second.outcomes(), BTreeMap::from([(Outcome::Unchanged, 3)]), "{:#?}", second.rows);
    assert!(only_warning(&second, "E93002").contains("\"ghost@example.com\" is neither in the file nor a NERM user"));
    assert_eq!(non_get_requests(&sim.stats().await), BTreeMap::new(), "no write at all");
    assert_eq!(sim.state().await["user_managers"], links_before);

    // WHEN a later file brings cid's manager dan
    let dan = plain_row("E93004", "dan.late@example.com");
    let rows = vec![ann, bea, cid, dan];
    let third = sim.run(&to_csv(&rows), &example_config(), false).await;

    // THEN dan is created and cid's manager link is set now, without a warning
    assert_eq!(third.row_of("E93004").outcome, Outcome::Created);
    assert_eq!(third.row_of("E93003").outcome, Outcome::Updated, "{:#?}", third.rows);
    assert!(third.rows.iter().all(|r| r.warnings.is_empty()), "{:#?}", third.rows);
    let state = sim.state().await;
    assert_nerm_matches(&state, &rows);
    assert_no_strays(&state, &rows);
    sim.assert_no_spec_violations().await;
}

// ----- renames ---------------------------------------------------------------------------------

/// An employee of `people` who manages nobody, and one who manages someone.
fn pick(people: &[HrRow], manages: bool) -> usize {
    people
        .iter()
        .position(|p| {
            p.user_status() == "Active"
                && manages == people.iter().any(|o| o.manager_login.eq_ignore_ascii_case(&p.login))
        })
        .expect("a suitable employee among the generated ones")
}

/// `people` with employee `at` renamed to `new_login`, and the reports' manager column with it.
fn renamed(people: &[HrRow], at: usize, new_login: &str) -> Vec<HrRow> {
    let old = people[at].login.clone();
    let mut out = people.to_vec();
    for p in &mut out {
        if p.manager_login.eq_ignore_ascii_case(&old) {
            p.manager_login = new_login.into();
        }
    }
    out[at].login = new_login.into();
    out
}

/// Checks a rename run: the renamed row updated with the login change, the rest unchanged,
/// and NERM holding one user per employee, the renamed one under the same id.
async fn check_renamed(sim: &Harness, run: &Run, before: &Value, people: &[HrRow], after: &[HrRow], at: usize) {
    let (old, new) = (&people[at].login, &after[at].login);
    let row = run.row_of(&after[at].employee_id);
    assert_eq!(row.outcome, Outcome::Updated, "{row:#?}");
    assert_eq!(row.changes[0], format!("login {old} → {new}"), "{row:#?}");
    let others: BTreeMap<Outcome, usize> =
        run.rows.iter().filter(|r| r.employee_key != after[at].employee_id).fold(BTreeMap::new(), |mut m, r| {
            *m.entry(r.outcome).or_default() += 1;
            m
        });
    assert_eq!(others, BTreeMap::from([(Outcome::Unchanged, people.len() - 1)]), "{:#?}", run.rows);
    let state = sim.state().await;
    assert!(users_with_login(&state, old).is_empty(), "the old login is gone");
    assert_eq!(id_of(user(&state, new)), id_of(user(before, old)), "the same user, renamed");
    assert_nerm_matches(&state, after);
    assert_no_strays(&state, after);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_employee_keeps_their_one_user_under_the_new_login() {
    // GIVEN 12 employees imported
    let sim = Harness::start().await;
    let people = employees(12);
    imported(&sim, &people, &example_config()).await;
    let before = sim.state().await;

    // WHEN one of them comes back under a new login, same employee id
    let at = pick(&people, false);
    let after = renamed(&people, at, "renamed.person@example.com");
    let run = sim.run(&to_csv(&after), &example_config(), false).await;

    // THEN their user is renamed, not doubled
    check_renamed(&sim, &run, &before, &people, &after, at).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rename_under_full_sync_disables_nobody() {
    // GIVEN 12 employees imported in full-sync mode
    let sim = Harness::start().await;
    let people = employees(12);
    imported(&sim, &people, &full_sync_config()).await;
    let before = sim.state().await;

    // WHEN one of them is renamed
    let at = pick(&people, false);
    let after = renamed(&people, at, "renamed.full@example.com");
    let run = sim.run(&to_csv(&after), &full_sync_config(), false).await;

    // THEN the old login is no leaver: nothing is disabled
    assert_eq!(run.summary.count_of(Outcome::Disabled), 0, "{:#?}", run.rows);
    assert_eq!(run.rows.len(), people.len());
    check_renamed(&sim, &run, &before, &people, &after, at).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_renamed_manager_keeps_the_links_of_their_reports() {
    // GIVEN 12 employees imported, one of whom manages others
    let sim = Harness::start().await;
    let people = employees(12);
    imported(&sim, &people, &example_config()).await;
    let before = sim.state().await;

    // WHEN the manager is renamed (and the reports' manager column follows)
    let at = pick(&people, true);
    let after = renamed(&people, at, "renamed.manager@example.com");
    let reports: Vec<&HrRow> = after.iter().filter(|p| p.manager_login == after[at].login).collect();
    assert!(!reports.is_empty());
    let run = sim.run(&to_csv(&after), &example_config(), false).await;

    // THEN the reports are unchanged and still linked to the same (renamed) user and profile
    for r in &reports {
        assert_eq!(run.row_of(&r.employee_id).outcome, Outcome::Unchanged, "{}", r.login);
    }
    assert_eq!(sim.state().await["user_managers"], before["user_managers"]);
    check_renamed(&sim, &run, &before, &people, &after, at).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rename_to_a_login_another_user_holds_is_rejected_and_writes_nothing() {
    // GIVEN 6 employees imported, and a user created by SSO under the login one of them wants
    let sim = Harness::start().await;
    let people = employees(6);
    imported(&sim, &people, &example_config()).await;
    let taken = "taken.login@example.com";
    sim.sso_login_now(taken, &["Employees"]);
    let before = sim.state().await;

    // WHEN the file renames that employee to the taken login
    let at = pick(&people, false);
    let after = renamed(&people, at, taken);
    sim.reset_stats().await;
    let run = sim.run(&to_csv(&after), &example_config(), false).await;

    // THEN the row is rejected naming both logins, and NERM is exactly as before
    let row = run.row_of(&people[at].employee_id);
    assert_eq!(row.outcome, Outcome::Rejected, "{row:#?}");
    let error = row.error.as_deref().unwrap_or_default();
    assert!(error.contains(&format!("{:?}", people[at].login)), "{error}");
    assert!(error.contains(&format!("{taken:?}")), "{error}");
    assert!(error.contains(&format!("line {}, column \"login\"", at + 2)), "{error}");
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Unchanged, 5), (Outcome::Rejected, 1)]));
    assert_eq!(non_get_requests(&sim.stats().await), BTreeMap::new(), "no write at all");
    assert_eq!(tenant_records(&sim.state().await), tenant_records(&before));
    sim.assert_no_spec_violations().await;
}
