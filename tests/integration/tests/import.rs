//! Upsert imports against the simulator: first import, rerun, a single change, rejected rows,
//! dry run.

mod common;

use std::collections::BTreeMap;

use common::*;
use shared::report::Outcome;

#[tokio::test(flavor = "multi_thread")]
async fn a_first_import_creates_users_profiles_and_links() {
    // GIVEN the demo tenant and an HR export of 50 employees
    let sim = Harness::start().await;
    let people = employees(50);

    // WHEN the file is imported
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN every row is reported once, on its own line, as created
    assert_eq!(run.rows.len(), 50);
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 50)]), "{:#?}", run.rows);
    for (i, p) in people.iter().enumerate() {
        let row = run.row_of(&p.employee_id);
        assert_eq!(row.line, i as u64 + 2, "{}", p.login);
        assert_eq!(row.employee_key, p.employee_id);
        assert!(row.changes.iter().any(|c| c == "user created"), "{row:?}");
        assert!(row.changes.iter().any(|c| c == "profile created"), "{row:?}");
        assert_eq!(row.error, None);
    }
    assert_eq!(run.summary.count_of(Outcome::Created), 50);
    assert_eq!(run.summary.exit_code(), 0);
    assert!(!run.summary.dry_run);

    // AND NERM holds exactly the file: users, profiles, owner links, managers, groups
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);

    // AND the work went out in bulk: far fewer requests than employees
    let stats = sim.stats().await;
    let total = run.summary.requests_total;
    assert_eq!(total, run.client.total_requests());
    assert_eq!(stats["total"].as_u64(), Some(total), "the simulator saw every request the client counted");
    println!(
        "first import of 50: {total} requests = {:.2} requests per employee; by endpoint: {:?}",
        total as f64 / 50.0,
        run.summary.requests_by_endpoint
    );
    assert!(total < 25, "{total} requests for 50 employees: {:?}", run.summary.requests_by_endpoint);
    assert_eq!(run.summary.rate_limited, 0);
    assert_eq!(run.summary.retries, 0);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_of_the_same_file_makes_zero_writes() {
    // GIVEN 50 employees already imported
    let sim = Harness::start().await;
    let people = employees(50);
    let csv = to_csv(&people);
    let first = sim.run(&csv, &example_config(), false).await;
    assert_eq!(first.outcomes(), BTreeMap::from([(Outcome::Created, 50)]));
    let before = tenant_records(&sim.state().await);
    sim.reset_stats().await;

    // WHEN the same file is imported again
    let second = sim.run(&csv, &example_config(), false).await;

    // THEN every row is unchanged
    assert_eq!(second.rows.len(), 50);
    assert_eq!(
        second.outcomes(),
        BTreeMap::from([(Outcome::Unchanged, 50)]),
        "{:#?}",
        second.with_outcome(Outcome::Updated)
    );
    assert!(second.rows.iter().all(|r| r.changes.is_empty() && r.error.is_none()));
    assert!(second.summary.planned.is_empty(), "nothing planned: {:?}", second.summary.planned);

    // AND nothing was written: only GETs reached the simulator
    let stats = sim.stats().await;
    assert_eq!(stats["writes"].as_u64(), Some(0), "simulator writes on the rerun");
    assert_eq!(non_get_requests(&stats), BTreeMap::new(), "only GET requests on a rerun");
    assert_eq!(second.client.writes(), 0);
    assert_eq!(stats["total"].as_u64(), Some(second.client.total_requests()));
    println!(
        "rerun of 50: {} requests = {:.2} requests per employee; by endpoint: {:?}",
        second.client.total_requests(),
        second.client.total_requests() as f64 / 50.0,
        second.client.requests
    );

    // AND the tenant is byte-for-byte what it was
    let state = sim.state().await;
    assert_eq!(tenant_records(&state), before);
    assert_nerm_matches(&state, &people);
    sim.assert_no_spec_violations().await;
}

/// The title lives on two records with the example config: the user's `title` and the
/// profile's `job_title` attribute (`job_title = "{title}"`). So the minimum is one write per
/// record: one bulk PATCH of users and one of profiles, each with the one changed record.
#[tokio::test(flavor = "multi_thread")]
async fn a_changed_title_makes_exactly_one_user_write_and_one_profile_write() {
    // GIVEN 50 employees already imported
    let sim = Harness::start().await;
    let mut people = employees(50);
    sim.run(&to_csv(&people), &example_config(), false).await;
    let before = sim.state().await;
    sim.reset_stats().await;

    // WHEN one employee's title changes in the file
    let changed = 10;
    let old_title = people[changed].title.clone();
    people[changed].title = "Principal Analyst, Risk".into();
    let run = sim.run(&to_csv(&people), &example_config(), false).await;

    // THEN only that row is updated, and its changes name the title on both records
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Updated, 1), (Outcome::Unchanged, 49)]));
    let row = run.row_of(&people[changed].employee_id);
    assert_eq!(row.outcome, Outcome::Updated);
    assert_eq!(row.line, changed as u64 + 2);
    let want_user = format!("user.title: {old_title:?} -> \"Principal Analyst, Risk\"");
    let want_profile = format!("profile.job_title: {old_title:?} -> \"Principal Analyst, Risk\"");
    assert_eq!(row.changes, vec![want_user, want_profile]);

    // AND exactly two writes went out: one bulk PATCH of users, one of profiles
    let stats = sim.stats().await;
    assert_eq!(
        non_get_requests(&stats),
        BTreeMap::from([("PATCH /api/profiles".to_string(), 1), ("PATCH /api/users".to_string(), 1)])
    );
    assert_eq!(stats["writes"].as_u64(), Some(2));

    // AND no other user or profile was touched
    let after = sim.state().await;
    let login = people[changed].login.to_lowercase();
    let key = people[changed].employee_id.as_str();
    let others = |state: &serde_json::Value| -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
        let users = records(state, "users")
            .iter()
            .filter(|u| u["login"].as_str().unwrap_or("").to_lowercase() != login)
            .cloned()
            .collect();
        let profiles = records(state, "profiles")
            .iter()
            .filter(|p| p["attributes"]["employee_id"].as_str() != Some(key))
            .cloned()
            .collect();
        (users, profiles)
    };
    assert_eq!(others(&after), others(&before));
    assert_eq!(user(&after, &login)["title"], "Principal Analyst, Risk");
    assert_eq!(profile(&after, key)["attributes"]["job_title"], "Principal Analyst, Risk");
    assert_nerm_matches(&after, &people);
    sim.assert_no_spec_violations().await;
}

fn bad_row(key: &str, login: &str) -> HrRow {
    HrRow {
        employee_id: key.into(),
        login: login.into(),
        email: login.to_lowercase(),
        first_name: "Bad".into(),
        last_name: format!("Row{key}"),
        title: "Tester".into(),
        department: "QA".into(),
        manager_login: String::new(),
        status: "Active".into(),
        roles: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn rejected_rows_are_reported_and_the_rest_go_on() {
    // GIVEN a file of 10 good rows with 3 bad ones mixed in, and 2 whose manager reference is bad
    let sim = Harness::start().await;
    let good = employees(10);
    let mut bad_email = bad_row("E90001", "bad.email@example.com");
    bad_email.email = "bad.email.example.com".into();
    let duplicate = bad_row("E90002", &good[2].login.to_uppercase());
    let mut own_manager = bad_row("E90003", "self.boss@example.com");
    own_manager.manager_login = "Self.Boss@Example.com".into();
    let mut unknown_manager = bad_row("E90004", "orphan@example.com");
    unknown_manager.manager_login = "ghost@example.com".into();
    let mut unknown_role = bad_row("E90005", "astro@example.com");
    unknown_role.roles = "Sponsor;Astronaut".into();

    let mut rows: Vec<HrRow> = good[..5].to_vec();
    rows.extend([bad_email, duplicate, own_manager]);
    rows.extend(good[5..].iter().cloned());
    rows.extend([unknown_manager, unknown_role]);
    let line_of = |key: &str| rows.iter().position(|r| r.employee_id == key).unwrap() as u64 + 2;
    let expected: [(&str, &str, &str); 3] = [
        ("E90001", "email", "\"bad.email.example.com\" is not an e-mail address"),
        ("E90002", "login", &format!("already appeared on line {}", line_of(&good[2].employee_id))),
        ("E90005", "nerm_roles", "Astronaut"),
    ];

    // WHEN it is imported
    let run = sim.run(&to_csv(&rows), &example_config(), false).await;

    // THEN each bad row is rejected with a message naming its line and column (the bad manager
    // references are warnings on created rows, see tests/identity.rs)
    assert_eq!(run.rows.len(), 15);
    for (key, column, what) in expected {
        let line = line_of(key);
        let row = run.rows.iter().find(|r| r.employee_key == key).unwrap_or_else(|| panic!("no report row for {key}"));
        assert_eq!(row.outcome, Outcome::Rejected, "{row:?}");
        assert_eq!(row.line, line, "{row:?}");
        let error = row.error.as_deref().unwrap_or_else(|| panic!("{key}: no error"));
        assert!(error.contains(&format!("line {line}")), "{key}: {error}");
        assert!(error.contains(&format!("column {column:?}")), "{key}: {error}");
        assert!(error.contains(what), "{key}: {error}");
    }

    // AND the good rows were created as if the bad ones were not there
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 12), (Outcome::Rejected, 3)]));
    assert_eq!(run.summary.rows_with_warnings, 2);
    for g in &good {
        assert_eq!(run.row_of(&g.employee_id).outcome, Outcome::Created, "{}", g.login);
    }
    assert_eq!(run.summary.exit_code(), 2);
    let state = sim.state().await;
    let mut imported = good.clone();
    for key in ["E90003", "E90004"] {
        let row = rows.iter().find(|r| r.employee_id == key).expect("the row");
        imported.push(HrRow { manager_login: String::new(), ..row.clone() });
    }
    assert_nerm_matches(&state, &imported);
    assert_no_strays(&state, &imported);
    for key in ["E90001", "E90002", "E90005"] {
        assert!(profiles_with_key(&state, key).is_empty(), "a rejected row got a profile: {key}");
    }
    // the duplicate login did not overwrite the first row's user
    assert_eq!(user(&state, &good[2].login)["name"], good[2].name());
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_writes_nothing() {
    // GIVEN the demo tenant and 50 employees
    let sim = Harness::start().await;
    let people = employees(50);
    let before = tenant_records(&sim.state().await);

    // WHEN the file is planned but not applied
    let run = sim.run(&to_csv(&people), &example_config(), true).await;

    // THEN nothing was written
    let stats = sim.stats().await;
    assert_eq!(stats["writes"].as_u64(), Some(0));
    assert_eq!(non_get_requests(&stats), BTreeMap::new());
    assert_eq!(run.client.writes(), 0);
    assert_eq!(tenant_records(&sim.state().await), before);

    // AND the report shows what would happen, row by row
    assert!(run.summary.dry_run);
    assert_eq!(run.rows.len(), 50);
    assert_eq!(run.outcomes(), BTreeMap::from([(Outcome::Created, 50)]));
    assert!(run.rows.iter().all(|r| r.error.is_none() && r.changes.iter().any(|c| c == "user created")));

    // AND the planned operations are counted
    let with_manager = people.iter().filter(|p| !p.manager_login.is_empty()).count() as u64;
    assert_eq!(with_manager, 43);
    let planned: BTreeMap<&str, u64> = run.summary.planned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(
        planned,
        BTreeMap::from([
            ("create_profile", 50),
            ("create_user", 50),
            ("link_self", 50),
            ("set_profile_manager", with_manager),
            ("set_user_manager", with_manager),
        ])
    );
    println!("dry run of 50: {} requests (all GET), planned {:?}", run.client.total_requests(), run.summary.planned);
    sim.assert_no_spec_violations().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_applied_in_chunks_links_managers_from_other_chunks_and_reruns_with_zero_writes() {
    // GIVEN the demo tenant and 120 employees whose managers are spread over the whole file
    let sim = Harness::start().await;
    let people = employees(120);
    let csv = to_csv(&people);

    // WHEN the file is applied 17 plans at a time (as a file too big for one go is)
    let client = sim.client();
    let (summary, rows) =
        run_once_chunked(&client, &csv, &example_config(), false, 17, &log_progress).await.expect("the run starts");

    // THEN every row is created, none failed or waits, and NERM holds exactly the file,
    // manager links included (many point into a later chunk)
    let outcomes: BTreeMap<Outcome, usize> = rows.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.outcome).or_default() += 1;
        m
    });
    assert_eq!(
        outcomes,
        BTreeMap::from([(Outcome::Created, 120)]),
        "{:#?}",
        rows.iter().filter(|r| r.error.is_some()).collect::<Vec<_>>()
    );
    assert_eq!(summary.rows_total, 120);
    let state = sim.state().await;
    assert_nerm_matches(&state, &people);
    assert_no_strays(&state, &people);
    println!(
        "120 employees in chunks of 17: {} requests ({:.2} per employee); by endpoint: {:?}",
        summary.requests_total,
        summary.requests_total as f64 / 120.0,
        summary.requests_by_endpoint
    );

    // AND a rerun in chunks writes nothing
    sim.reset_stats().await;
    let (_, again) = run_once_chunked(&sim.client(), &csv, &example_config(), false, 17, &log_progress)
        .await
        .expect("the run starts");
    assert!(
        again.iter().all(|r| r.outcome == Outcome::Unchanged),
        "{:#?}",
        again.iter().filter(|r| r.outcome != Outcome::Unchanged).collect::<Vec<_>>()
    );
    assert_eq!(non_get_requests(&sim.stats().await), BTreeMap::new(), "a rerun only reads");
    sim.assert_no_spec_violations().await;
}
