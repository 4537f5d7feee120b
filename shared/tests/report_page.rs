//! report.html as an operator's browser reads it: parsed with an HTML parser, never matched as text.

use scraper::{Html, Selector};
use shared::report::{Outcome, RowReport, Summary};
use shared::report_page::{ListedRows, MAX_LISTED_ROWS, render};
use time::macros::datetime;

fn row(line: u64, login: &str, outcome: Outcome, error: Option<&str>, changes: &[&str]) -> RowReport {
    RowReport {
        line,
        login: login.into(),
        employee_key: format!("E{line:05}"),
        outcome,
        changes: changes.iter().map(|c| c.to_string()).collect(),
        error: error.map(String::from),
        warnings: vec![],
    }
}

fn summary_of(rows: &[RowReport], dry_run: bool) -> (Summary, ListedRows) {
    let mut summary = Summary::new("run-0123456789abcdef", datetime!(2026-12-07 10:00 UTC), dry_run);
    let mut listed = ListedRows::default();
    for r in rows {
        summary.count_row(r);
        listed.note(r);
    }
    summary.finished_at = Some(datetime!(2026-12-07 10:01:05 UTC));
    summary.duration_ms = 65_000;
    summary.requests_by_endpoint = [("GET /users".to_string(), 3), ("POST /users".to_string(), 2)].into();
    summary.requests_total = 5;
    summary.rate_limited = 1;
    (summary, listed)
}

fn select<'a>(page: &'a Html, css: &str) -> Vec<scraper::ElementRef<'a>> {
    page.select(&Selector::parse(css).expect("a valid selector")).collect()
}

fn text(e: &scraper::ElementRef<'_>) -> String {
    e.text().collect::<String>()
}

#[test]
fn a_hostile_hr_value_shows_as_text_and_the_page_has_no_script_or_external_asset() {
    // GIVEN a rejected row whose login and error carry markup
    let hostile = "<script>alert(1)</script>";
    let rows = [
        row(2, "ann", Outcome::Created, None, &["user created"]),
        row(3, hostile, Outcome::Rejected, Some("line 3, column \"email\": <img src=x onerror=alert(2)>"), &[]),
    ];
    let (summary, listed) = summary_of(&rows, false);

    // WHEN the page is rendered
    let html = render(&summary, "s3://hr/incoming/<b>staff</b>.csv", &listed).expect("renders");
    let page = Html::parse_document(&html);

    // THEN nothing runs and nothing is loaded from elsewhere
    assert!(select(&page, "script").is_empty(), "no script element:\n{html}");
    assert!(select(&page, "img, link, iframe, object, embed").is_empty(), "no external asset");
    assert!(select(&page, "[src], [href]").is_empty(), "no reference to another document");
    // AND the values read back exactly as HR wrote them
    let cells: Vec<String> = select(&page, "#problems tbody tr td").iter().map(text).collect();
    assert_eq!(cells[1], hostile, "{cells:?}");
    assert_eq!(cells[4], "line 3, column \"email\": <img src=x onerror=alert(2)>");
    let run = text(&select(&page, "#run")[0]);
    assert!(run.contains("s3://hr/incoming/<b>staff</b>.csv"), "{run}");
    assert!(select(&page, "#run b").is_empty(), "the file name's markup is not markup");
}

#[test]
fn the_page_shows_the_counts_requests_and_problem_rows_of_the_run() {
    // GIVEN a run with each kind of outcome and a warning
    let rows = [
        row(2, "ann", Outcome::Created, None, &[]),
        row(3, "bob", Outcome::Created, None, &[]),
        row(4, "cy", Outcome::Unchanged, None, &[]),
        row(5, "dee", Outcome::Failed, Some("NERM answered 500"), &[]),
        row(6, "ed", Outcome::Rejected, Some("column \"email\": not an e-mail address"), &[]),
    ];
    let mut warned = row(7, "fay", Outcome::Updated, None, &["user.title: 'Dev' -> 'Lead'"]);
    warned
        .warnings
        .push("line 7, column \"manager_login\": manager \"ghost\" is neither in the file nor a NERM user".into());
    let rows: Vec<RowReport> = rows.into_iter().chain([warned]).collect();
    let (mut summary, listed) = summary_of(&rows, false);
    summary.warnings.push("2 roles are granted by SSO groups".into());

    // WHEN the page is rendered
    let page = Html::parse_document(&render(&summary, "hr.csv", &listed).expect("renders"));

    // THEN each outcome has its count, and the bar has one segment per outcome that occurred
    let count = |o: &str| text(&select(&page, &format!("#counts li[data-outcome={o}] b"))[0]);
    assert_eq!(
        (count("created"), count("unchanged"), count("failed"), count("rejected")),
        ("2".into(), "1".into(), "1".into(), "1".into())
    );
    assert_eq!(count("updated"), "1");
    assert_eq!(text(&select(&page, "#rows-total")[0]), "6");
    let segments: Vec<_> =
        select(&page, ".bar span").iter().map(|s| s.value().attr("class").unwrap().to_string()).collect();
    assert_eq!(segments, ["created", "updated", "unchanged", "rejected", "failed"]);
    // AND the requests by endpoint, the warning, and the two problem rows in file order
    let endpoints: Vec<String> = select(&page, "#requests tbody tr").iter().map(text).collect();
    assert_eq!(endpoints, ["GET /users3", "POST /users2"]);
    assert_eq!(text(&select(&page, "#warnings li")[0]), "2 roles are granted by SSO groups");
    let lines: Vec<String> = select(&page, "#problems tbody tr td:first-child").iter().map(text).collect();
    assert_eq!(lines, ["5", "6"]);
    // AND the row done with a warning, with its warning
    let warned: Vec<String> = select(&page, "#warned tbody tr td").iter().map(text).collect();
    assert_eq!(warned[0], "7");
    assert!(warned[3].contains("manager \"ghost\""), "{warned:?}");
    assert_eq!(text(&select(&page, "#rows-warned")[0]), "1");
    // AND when it ran, in RFC 3339 as summary.json has it
    let meta: Vec<String> = select(&page, "p.meta").iter().map(text).collect();
    assert!(meta.contains(&"Started 2026-12-07T10:00:00Z, finished 2026-12-07T10:01:05Z (65.0 s)".into()), "{meta:?}");
    // AND a real run lists no planned changes
    assert!(select(&page, "#changes, #dry-run").is_empty());
}

#[test]
fn a_dry_run_page_says_so_and_lists_the_planned_changes() {
    let rows = [
        row(2, "ann", Outcome::Created, None, &["user created", "role Sponsor assigned"]),
        row(3, "bob", Outcome::Unchanged, None, &[]),
    ];
    let (mut summary, listed) = summary_of(&rows, true);
    summary.planned.insert("create_user".into(), 1);

    let page = Html::parse_document(&render(&summary, "hr.csv", &listed).expect("renders"));

    assert_eq!(select(&page, "#dry-run").len(), 1);
    let changes: Vec<String> = select(&page, "#changes tbody tr td:last-child").iter().map(text).collect();
    assert_eq!(changes, ["user created\nrole Sponsor assigned"]);
    let planned: Vec<String> = select(&page, "#planned tbody tr").iter().map(text).collect();
    assert_eq!(planned, ["create_user1"]);
    assert_eq!(select(&page, "#no-problems").len(), 1);
}

#[test]
fn a_page_for_a_hundred_thousand_rows_stays_small_and_says_how_many_rows_it_leaves_out() {
    // GIVEN 100,000 rows, 2,500 of them rejected with a long reason
    let reason = "column \"manager_login\": no row and no NERM user has this login ".repeat(4);
    let rows: Vec<RowReport> = (0..100_000u64)
        .map(|i| {
            if i % 40 == 0 {
                row(i + 2, &format!("user{i}"), Outcome::Rejected, Some(&reason), &[])
            } else {
                row(i + 2, &format!("user{i}"), Outcome::Created, None, &["user created"])
            }
        })
        .collect();
    let (summary, listed) = summary_of(&rows, false);

    // WHEN the page is rendered
    let html = render(&summary, "hr.csv", &listed).expect("renders");

    // THEN it lists the first thousand problems and counts the rest
    let page = Html::parse_document(&html);
    assert_eq!(select(&page, "#problems tbody tr").len(), MAX_LISTED_ROWS);
    let more = text(&select(&page, "#more-problems")[0]);
    assert!(more.starts_with("1500 more rejected or failed rows"), "{more}");
    // AND its size is bounded by the listed rows, not by the file
    assert!(html.len() < 600 * 1024, "{} bytes", html.len());
}
