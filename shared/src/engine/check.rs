//! The preflight (`nerm-sync check`): does this mapping fit this tenant? Answered in a handful of
//! NERM requests whatever the tenant's size — the catalog (profile types, attributes, roles) and
//! one page of one record each for users and profiles — with the same wording a run would use,
//! since it resolves the mapping exactly as a run does.

use std::fmt;

use crate::config::{ConfigError, MappingConfig, NermCatalog, Problem, ResolvedConfig};
use crate::nerm::{NermClient, NermError};

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

/// Checks the credentials, the mapping against the tenant's catalog, and the tenant's size.
pub async fn preflight(config: &MappingConfig, client: &NermClient) -> CheckReport {
    let mut report = CheckReport::default();
    let catalog = match Snapshot::catalog(client).await {
        Ok(c) => c,
        Err(e) => {
            report.push(failed_item(&e), Verdict::Fail, e.to_string());
            return report;
        }
    };
    report.push("credentials", Verdict::Ok, "NERM accepted them (the catalog was read)");
    match config.resolve(&catalog) {
        Ok(resolved) => add_resolved(&mut report, &resolved),
        Err(e) => add_problems(&mut report, config, &catalog, &e),
    }
    add_tenant_size(&mut report, client).await;
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

/// How many users NERM holds: one record's page, with the total in its metadata.
async fn add_tenant_size(report: &mut CheckReport, client: &NermClient) {
    match client.count("/users", &[]).await {
        Ok(n) => report.push("tenant", Verdict::Ok, format!("{n} users in NERM")),
        Err(e) => report.push("tenant", Verdict::Fail, e.to_string()),
    }
}
