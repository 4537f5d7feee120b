//! The preflight (`nerm-sync check`): does this mapping fit this tenant? Answered in a dozen NERM
//! requests or fewer whatever the tenant's size — the catalog (profile types, attributes, roles),
//! a one-record count of each list a run reads, and one full page of the largest — with the same
//! wording a run would use, since it resolves the mapping exactly as a run does. It never writes,
//! so the bulk limit is only described, not probed.

use std::fmt;

use crate::config::{ConfigError, MappingConfig, NermCatalog, Problem, ResolvedConfig, RoleStrategy};
use crate::nerm::{Collection, Listing, NermClient, NermError, PageProbe};

use super::Snapshot;

/// One line of the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Ok,
    /// The mapping can run, but something deserves a look (e.g. SSO overwriting roles).
    Warn,
    /// The mapping cannot run as it is.
    Fail,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Verdict::Ok => "ok",
            Verdict::Warn => "warn",
            Verdict::Fail => "FAIL",
        })
    }
}

/// What was checked (a config key, or `credentials`, `tenant`) and what was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CheckItem {
    pub item: String,
    pub verdict: Verdict,
    pub detail: String,
}

/// Every item checked, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckReport {
    pub items: Vec<CheckItem>,
    /// The requests a plan (a full snapshot with its catalog) is predicted to make, when the
    /// mapping resolved and every list could be counted.
    pub snapshot_requests: Option<u64>,
}

impl CheckReport {
    /// Whether a run with this mapping can start (no item failed).
    pub fn can_run(&self) -> bool {
        self.items.iter().all(|i| i.verdict != Verdict::Fail)
    }

    fn push(&mut self, item: impl Into<String>, verdict: Verdict, detail: impl Into<String>) {
        self.items.push(CheckItem { item: item.into(), verdict, detail: detail.into() });
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for i in &self.items {
            writeln!(f, "{:>4}  {}: {}", i.verdict, i.item, i.detail)?;
        }
        let verdict = if self.can_run() { "the mapping can run" } else { "the mapping cannot run" };
        write!(f, "verdict: {verdict}")
    }
}

/// Checks the credentials, the mapping against the tenant's catalog, and what reading and
/// writing this tenant costs.
pub async fn preflight(config: &MappingConfig, client: &NermClient) -> CheckReport {
    let mut report = CheckReport::default();
    let before = client.stats();
    let catalog = match Snapshot::catalog(client).await {
        Ok(c) => c,
        Err(e) => {
            report.push(failed_item(&e), Verdict::Fail, e.to_string());
            return report;
        }
    };
    let catalog_requests = client.stats().since(&before).total_requests();
    report.push("credentials", Verdict::Ok, "NERM accepted them (the catalog was read)");
    // A mapping that does not resolve cannot plan, so only the users are counted and paged.
    let (lists, catalog_requests) = match config.resolve(&catalog) {
        Ok(resolved) => {
            add_resolved(&mut report, &resolved);
            (snapshot_lists(&resolved), Some(catalog_requests))
        }
        Err(e) => {
            add_problems(&mut report, config, &catalog, &e);
            (vec![Listing::all(Collection::Users)], None)
        }
    };
    add_reading_costs(&mut report, client, &lists, catalog_requests).await;
    add_bulk_size(&mut report, client);
    report
}

/// Which item a failed catalog read is about: refused credentials, or NERM itself.
fn failed_item(e: &NermError) -> &'static str {
    match e {
        NermError::Unauthorized { .. } | NermError::Setup(_) => "credentials",
        _ => "tenant",
    }
}

/// A mapping that resolved: each item it uses, with what it resolved to, then its warnings.
fn add_resolved(report: &mut CheckReport, resolved: &ResolvedConfig) {
    let t = resolved.profile_type();
    report.push("profile.type", Verdict::Ok, format!("`{}` exists (id {})", t.name, t.id));
    for a in resolved.attributes() {
        report.push(format!("profile.attributes.{}", a.uid), Verdict::Ok, format!("`{}` attribute", a.data_type));
    }
    if let Some(m) = resolved.manager_attribute() {
        report.push("managers.profile_attribute", Verdict::Ok, format!("`{}` selects employee profiles", m.uid));
    }
    for name in &resolved.config().roles.defaults {
        report.push(format!("roles.defaults.{name}"), Verdict::Ok, "the role exists");
    }
    for w in resolved.warnings() {
        report.push(w.key.clone(), Verdict::Warn, w.message.clone());
    }
}

/// A mapping that did not resolve: every problem a run would stop on, then the items that are fine.
fn add_problems(report: &mut CheckReport, config: &MappingConfig, catalog: &NermCatalog, e: &ConfigError) {
    let problems: &[Problem] = e.problems();
    if problems.is_empty() {
        report.push("mapping", Verdict::Fail, e.to_string());
        return;
    }
    for p in problems {
        report.push(p.key.clone(), Verdict::Fail, p.message.clone());
    }
    let failed = |key: &str| problems.iter().any(|p| p.key == key);
    for a in &config.profile.attributes {
        let key = format!("profile.attributes.{}", a.uid);
        if !failed(&key) {
            let found = catalog.attributes.iter().find(|c| c.uid == a.uid);
            report.push(key, Verdict::Ok, found.map_or("exists".into(), |c| format!("`{}` attribute", c.data_type)));
        }
    }
    for w in config.warnings() {
        report.push(w.key.clone(), Verdict::Warn, w.message.clone());
    }
}

/// The lists `Snapshot::load` reads for this mapping, in its order.
fn snapshot_lists(resolved: &ResolvedConfig) -> Vec<Listing> {
    let mut lists = vec![Listing::all(Collection::Users), Listing::profiles_of_type(&resolved.profile_type().id)];
    if resolved.config().roles.strategy == RoleStrategy::UserRole {
        lists.push(Listing::all(Collection::UserRoles));
    }
    lists.push(Listing::all(Collection::UserProfiles));
    lists.push(Listing::all(Collection::UserManagers));
    lists
}

/// The tenant's size, the page size NERM really serves, and (given what the catalog cost) what a
/// full snapshot — a plan, or a run before its first write — costs in requests: a one-record
/// count of each list, then one full page of the largest, where a server that serves smaller
/// pages than asked shows it.
async fn add_reading_costs(report: &mut CheckReport, client: &NermClient, lists: &[Listing], catalog: Option<u64>) {
    let mut totals = Vec::with_capacity(lists.len());
    for list in lists {
        match client.count(list).await {
            Ok(n) => totals.push(n),
            Err(e) => {
                report.push("tenant", Verdict::Fail, e.to_string());
                return;
            }
        }
    }
    report.push("tenant", Verdict::Ok, format!("{} users in NERM", totals[0]));
    let largest = (0..lists.len()).max_by_key(|&i| totals[i]).unwrap_or(0);
    let list = &lists[largest];
    let page = match client.page_probe(list).await {
        Ok(p) => p,
        Err(e) => {
            report.push("nerm.page_size", Verdict::Fail, e.to_string());
            return;
        }
    };
    report.push("nerm.page_size", Verdict::Ok, describe_page(&page, list.collection.route()));
    let Some(catalog) = catalog else { return };
    let per_page = u64::from(page.page_size());
    let pages: Vec<u64> = totals.iter().map(|&t| pages_for(t, per_page)).collect();
    report.snapshot_requests = Some(catalog + pages.iter().sum::<u64>());
    report.push("snapshot", Verdict::Ok, describe_snapshot(lists, &totals, &pages, catalog, per_page));
}

/// Requests a full read of `total` records takes at `per_page` records a page (an empty list
/// still costs its one page).
fn pages_for(total: u64, per_page: u64) -> u64 {
    total.div_ceil(per_page.max(1)).max(1)
}

/// What one full page says about the page size.
fn describe_page(page: &PageProbe, route: &str) -> String {
    if page.clamped() {
        format!(
            "NERM serves {} records a page where {} were asked (GET {route}); reads follow `_metadata.total`, \
             so nothing is missed, in more pages",
            page.served, page.asked
        )
    } else if page.served < page.asked as usize {
        format!(
            "the largest list (GET {route}, {}) fits one page of the {} asked; a larger one would show \
             whether NERM serves full pages",
            counted(page.served as u64, "record"),
            page.asked
        )
    } else {
        format!("NERM serves pages of {} records as asked (GET {route})", page.asked)
    }
}

/// `1 page`, `3 pages`.
fn counted(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The snapshot's predicted cost, list by list.
fn describe_snapshot(lists: &[Listing], totals: &[u64], pages: &[u64], catalog: u64, per_page: u64) -> String {
    let all: u64 = catalog + pages.iter().sum::<u64>();
    let each: Vec<String> = lists
        .iter()
        .zip(totals.iter().zip(pages))
        .map(|(l, (&t, &p))| format!("{} {} in {}", l.collection.name(), counted(t, "record"), counted(p, "page")))
        .collect();
    format!(
        "a plan (or a run before its first write) reads NERM in {all} requests: the catalog in {catalog}, \
         then {} (pages of {per_page})",
        each.join(", ")
    )
}

/// Bulk writes: the size they start at, and how the tenant's own limit is learnt. `check` never
/// writes, so it cannot probe the limit.
fn add_bulk_size(report: &mut CheckReport, client: &NermClient) {
    report.push(
        "bulk size",
        Verdict::Ok,
        format!(
            "writes start at {} records a body; the tenant's limit is learnt on the first bulk write, not here: \
             a body NERM refuses with a 400 costs one request and goes again as two halves, and the size \
             that works is kept for the rest of the run",
            client.bulk_size()
        ),
    );
}
