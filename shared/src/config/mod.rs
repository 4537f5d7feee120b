//! Mapping config (TOML): how HR columns become NERM users, profiles, roles and links.
//!
//! The key reference is `docs/config.md`; `infra/config/example.toml` is a working example for
//! the reference HR export. Loading is pure (no I/O) and happens in three steps, all before any
//! write to NERM:
//!
//! 1. [`MappingConfig::from_toml_str`]: TOML syntax, schema (unknown keys are rejected) and
//!    semantic checks (enum values, ranges, templates, cross-key consistency). Collects
//!    [`ConfigWarning`]s for legal-but-risky settings.
//! 2. [`MappingConfig::check_columns`]: once the CSV header is known, every column the config
//!    uses must be in it (header names compared normalised, see [`normalize_column`]).
//! 3. [`MappingConfig::resolve`]: against a [`NermCatalog`] read from the tenant (profile types,
//!    attributes, roles) → [`ResolvedConfig`] with ids and the lookups the planner needs.
//!
//! Background on the NERM behaviour this encodes: `docs/nerm-api.md`, sections "Records and
//! their values" (users, roles, profiles, links) and "Roles under SSO".

mod catalog;
mod error;
mod raw;
mod template;
mod values;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

pub use catalog::{
    CatalogAttribute, CatalogProfileType, CatalogRole, NermCatalog, ResolvedAttribute, ResolvedConfig, RoleLookupError,
};
pub use error::{ConfigError, ConfigWarning, Problem, ProblemKind};
pub use template::{BoundPart, BoundTemplate, Segment, Template, TemplateError};
pub use values::{
    Delimiter, Encoding, ProfileStatus, RoleStrategy, RoleType, SelfRelationship, StatusMap, SyncMode, UserStatus,
    UserType, normalize_column,
};

use error::{Problems, known_list};
use values::normalize_value;

/// A validated mapping config. Build it with [`MappingConfig::from_toml_str`]; every field
/// below already passed its checks (column names are normalised, templates parsed).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct MappingConfig {
    pub csv: CsvConfig,
    pub columns: ColumnsConfig,
    pub user: UserConfig,
    pub profile: ProfileConfig,
    pub roles: RolesConfig,
    pub contributors: ContributorsConfig,
    pub managers: ManagersConfig,
    pub sync: SyncConfig,
    pub nerm: NermConfig,
    warnings: Vec<ConfigWarning>,
}

/// `[csv]`: how to read the file.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CsvConfig {
    pub delimiter: Delimiter,
    pub encoding: Encoding,
    pub max_field_bytes: usize,
    pub max_rows: usize,
    pub max_file_bytes: u64,
    /// The header the export is expected to have (normalised); when set, templates and
    /// `[columns]` are checked against it at load time.
    pub headers: Option<Vec<String>>,
}

/// `[columns]`: the columns with a fixed meaning (all names normalised).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ColumnsConfig {
    /// Stable employee key; matched against `profile.key_attribute`.
    pub key: String,
    /// NERM user login (the SSO identity).
    pub login: String,
    /// HR status, mapped through `user.status_map` / `profile.status_map`.
    pub status: String,
    /// The manager's login.
    pub manager: Option<String>,
    /// NERM role names, separated by `roles_separator`.
    pub roles: Option<String>,
    pub roles_separator: char,
}

/// `[user]`: how NERM user fields are built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct UserConfig {
    pub user_type: UserType,
    pub name: Template,
    pub email: Template,
    /// `None` = the sync never sets this field.
    pub title: Option<Template>,
    pub locale: Option<Template>,
    pub sailpoint_identity_id: Option<Template>,
    pub status_map: StatusMap<UserStatus>,
}

/// `[profile]`: how the employee's people profile is built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProfileConfig {
    /// Profile type uid or name, as written.
    pub profile_type: String,
    pub name: Option<Template>,
    /// Attribute uid holding the stable key; its template is exactly `{<columns.key>}`.
    pub key_attribute: String,
    pub status_map: StatusMap<ProfileStatus>,
    /// Attribute uid → template, sorted by uid.
    pub attributes: Vec<AttributeMapping>,
}

/// One `[profile.attributes]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeMapping {
    pub uid: String,
    pub template: Template,
}

/// `[roles]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RolesConfig {
    pub strategy: RoleStrategy,
    /// Role names every user gets, in addition to the roles column.
    pub defaults: Vec<String>,
    /// Remove roles (or groups) that neither the file nor `defaults` grant.
    pub managed: bool,
}

/// `[contributors]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ContributorsConfig {
    pub self_relationship: SelfRelationship,
    /// Logins added as contributors to every synced profile.
    pub extra: Vec<String>,
}

/// `[managers]`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ManagersConfig {
    /// Maintain the NERM `user_manager` link (user → manager's user).
    pub user_manager: bool,
    /// Profile-select attribute uid that receives the manager's profile id.
    pub profile_attribute: Option<String>,
}

/// `[sync]`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SyncConfig {
    pub mode: SyncMode,
    pub leaver_user_status: UserStatus,
    pub leaver_profile_status: ProfileStatus,
    pub max_disable_percent: f64,
    pub allow_mass_disable: bool,
}

/// `[nerm]`: client pacing and retries.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct NermConfig {
    pub requests_per_window: u32,
    pub window_seconds: u32,
    pub concurrency: u32,
    pub page_size: u32,
    pub timeout_seconds: u32,
    pub max_retries: u32,
    /// Total retries allowed in one run, across all requests.
    pub retry_budget: u32,
}

impl NermConfig {
    pub fn window(&self) -> Duration {
        Duration::from_secs(u64::from(self.window_seconds))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_secs(u64::from(self.timeout_seconds))
    }
}

/// A column the config reads, and which key reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnUse<'a> {
    /// Dotted config key, e.g. `columns.login` or `profile.attributes.department`.
    pub field: String,
    /// Normalised column name.
    pub column: &'a str,
    /// True for template placeholders, false for `[columns]` entries.
    pub placeholder: bool,
}

impl MappingConfig {
    /// Parses and validates a mapping config. Pure: no I/O, no NERM calls.
    pub fn from_toml_str(text: &str) -> Result<MappingConfig, ConfigError> {
        let doc = parse_document(text)?;
        let mut problems = Problems::default();
        let mut warnings = Vec::new();
        let config = build(doc, &mut problems, &mut warnings);
        problems.into_result()?;
        let mut config = config.expect("no problems implies a config");
        config.warnings = warnings;
        Ok(config)
    }

    /// Legal-but-risky settings found while loading (the run report lists them).
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }

    /// The NERM user status for an HR status value (trimmed, case-insensitive); `None` when the
    /// value is not in `user.status_map`, which is a row error.
    pub fn user_status_for(&self, hr_status: &str) -> Option<UserStatus> {
        self.user.status_map.get(hr_status)
    }

    /// The NERM profile status for an HR status value; `None` when not in `profile.status_map`.
    pub fn profile_status_for(&self, hr_status: &str) -> Option<ProfileStatus> {
        self.profile.status_map.get(hr_status)
    }

    /// Splits a roles-column cell on `columns.roles_separator`, trimming and skipping blanks.
    pub fn split_roles<'c>(&self, cell: &'c str) -> impl Iterator<Item = &'c str> + use<'c> {
        cell.split(self.columns.roles_separator).map(str::trim).filter(|r| !r.is_empty())
    }

    /// Every column the config reads, with the key that reads it.
    pub fn column_uses(&self) -> Vec<ColumnUse<'_>> {
        let mut uses = Vec::new();
        let c = &self.columns;
        uses.push(fixed_use("columns.key", &c.key));
        uses.push(fixed_use("columns.login", &c.login));
        uses.push(fixed_use("columns.status", &c.status));
        if let Some(m) = &c.manager {
            uses.push(fixed_use("columns.manager", m));
        }
        if let Some(r) = &c.roles {
            uses.push(fixed_use("columns.roles", r));
        }
        for (field, template) in self.templates() {
            for column in template.columns() {
                uses.push(ColumnUse { field: field.clone(), column, placeholder: true });
            }
        }
        uses
    }

    /// Checks that every column the config reads is in the CSV header. Header names are
    /// compared normalised ([`normalize_column`]), like the reader does.
    pub fn check_columns(&self, headers: &[&str]) -> Result<(), ConfigError> {
        let normalised: HashSet<String> = headers.iter().map(|h| normalize_column(h)).collect();
        let known = known_list(normalised.iter().map(String::as_str));
        let mut problems = Problems::default();
        let mut reported = HashSet::new();
        for u in self.column_uses() {
            if normalised.contains(u.column) || !reported.insert((u.field.clone(), u.column)) {
                continue;
            }
            if u.placeholder {
                problems.push(
                    u.field,
                    ProblemKind::UnknownPlaceholder,
                    format!("placeholder `{{{}}}` is not a column of the CSV header (header: {known})", u.column),
                );
            } else {
                problems.push(
                    u.field,
                    ProblemKind::UnknownColumn,
                    format!("column `{}` is not in the CSV header (header: {known})", u.column),
                );
            }
        }
        problems.into_result()
    }

    /// Resolves names against the tenant's catalog; see [`ResolvedConfig`].
    pub fn resolve(&self, catalog: &NermCatalog) -> Result<ResolvedConfig, ConfigError> {
        catalog::resolve(self, catalog)
    }

    /// All templates with their dotted keys.
    fn templates(&self) -> Vec<(String, &Template)> {
        let mut out = vec![("user.name".to_owned(), &self.user.name), ("user.email".to_owned(), &self.user.email)];
        for (key, t) in [
            ("user.title", &self.user.title),
            ("user.locale", &self.user.locale),
            ("user.sailpoint_identity_id", &self.user.sailpoint_identity_id),
            ("profile.name", &self.profile.name),
        ] {
            if let Some(t) = t {
                out.push((key.to_owned(), t));
            }
        }
        for a in &self.profile.attributes {
            out.push((format!("profile.attributes.{}", a.uid), &a.template));
        }
        out
    }
}

fn fixed_use<'a>(field: &str, column: &'a str) -> ColumnUse<'a> {
    ColumnUse { field: field.to_owned(), column, placeholder: false }
}

/// TOML text → serde document, mapping errors to [`ConfigError::Syntax`] / [`ConfigError::Key`].
fn parse_document(text: &str) -> Result<raw::Document, ConfigError> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_column(text, s.start)).unwrap_or((1, 1));
        ConfigError::Syntax { line, column, message: e.message().to_owned() }
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = match e.path().to_string() {
            p if p == "." || p.is_empty() => "<root>".to_owned(),
            p => p,
        };
        let inner = e.into_inner();
        let (line, column) = match inner.span() {
            Some(s) => {
                let (l, c) = line_column(text, s.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError::Key { path, line, column, message: inner.message().to_owned() }
    })
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Validates the serde document into a [`MappingConfig`]; `None` when a problem was recorded.
fn build(doc: raw::Document, problems: &mut Problems, warnings: &mut Vec<ConfigWarning>) -> Option<MappingConfig> {
    let csv = build_csv(doc.csv, problems);
    let headers: Option<HashSet<String>> = csv.headers.as_ref().map(|h| h.iter().cloned().collect::<HashSet<_>>());
    let mut ctx = Ctx { problems, headers: headers.as_ref() };

    let columns = build_columns(doc.columns, &mut ctx);
    let user = build_user(doc.user, &mut ctx);
    let profile = build_profile(doc.profile, &columns, &mut ctx);
    let roles = build_roles(doc.roles, &columns, &mut ctx, warnings);
    let contributors = build_contributors(doc.contributors, &mut ctx, warnings);
    let managers = build_managers(doc.managers, &columns, &profile, &mut ctx, warnings);
    let sync = build_sync(doc.sync, &mut ctx, warnings);
    let nerm = build_nerm(doc.nerm, &mut ctx);

    if let (Some(user), Some(profile)) = (&user, &profile) {
        compare_status_maps(&user.status_map, &profile.status_map, warnings);
    }

    Some(MappingConfig {
        csv,
        columns,
        user: user?,
        profile: profile?,
        roles,
        contributors,
        managers,
        sync,
        nerm,
        warnings: Vec::new(),
    })
}

struct Ctx<'a> {
    problems: &'a mut Problems,
    headers: Option<&'a HashSet<String>>,
}

impl Ctx<'_> {
    fn problem(&mut self, key: impl Into<String>, kind: ProblemKind, message: String) {
        self.problems.push(key, kind, message);
    }

    /// Normalises a `[columns]` entry and checks it against `csv.headers`.
    fn column(&mut self, key: &str, name: &str) -> String {
        let column = normalize_column(name);
        if column.is_empty() {
            self.problem(key, ProblemKind::InvalidValue, "must name a column".into());
        } else if let Some(headers) = self.headers
            && !headers.contains(&column)
        {
            let known = known_list(headers.iter().map(String::as_str));
            self.problem(
                key,
                ProblemKind::UnknownColumn,
                format!("column `{column}` is not listed in `csv.headers` (known: {known})"),
            );
        }
        column
    }

    /// Parses a template and checks its placeholders against `csv.headers`.
    fn template(&mut self, key: &str, text: &str) -> Option<Template> {
        let template = match Template::parse(text) {
            Ok(t) => t,
            Err(e) => {
                self.problem(key, ProblemKind::TemplateSyntax, format!("bad template {text:?}: {e}"));
                return None;
            }
        };
        if let Some(headers) = self.headers {
            let mut seen = HashSet::new();
            for column in template.columns() {
                if !headers.contains(column) && seen.insert(column) {
                    let known = known_list(headers.iter().map(String::as_str));
                    self.problem(
                        key,
                        ProblemKind::UnknownPlaceholder,
                        format!("placeholder `{{{column}}}` is not a column listed in `csv.headers` (known: {known})"),
                    );
                }
            }
        }
        Some(template)
    }

    /// A template that must reference at least one column.
    fn row_template(&mut self, key: &str, text: &str) -> Option<Template> {
        let t = self.template(key, text)?;
        if t.is_constant() {
            self.problem(
                key,
                ProblemKind::InvalidValue,
                format!(
                    "template {text:?} uses no column, so every user would get the same value; use a placeholder such as \"{{email}}\""
                ),
            );
        }
        Some(t)
    }

    fn status_map<T: Copy>(&mut self, key: &str, entries: std::collections::BTreeMap<String, T>) -> StatusMap<T> {
        if entries.is_empty() {
            self.problem(key, ProblemKind::InvalidValue, "must map at least one HR status value".into());
        }
        for hr in entries.keys() {
            if hr.trim().is_empty() {
                self.problem(key, ProblemKind::InvalidValue, "an HR status key is blank".into());
            }
        }
        let (map, collisions) = StatusMap::build(entries);
        for c in collisions {
            self.problem(
                key,
                ProblemKind::InvalidValue,
                format!("HR status `{c}` is listed twice (keys are matched case-insensitively)"),
            );
        }
        map
    }
}

fn build_csv(raw: raw::Csv, problems: &mut Problems) -> CsvConfig {
    if raw.max_field_bytes == 0 {
        problems.push("csv.max_field_bytes", ProblemKind::InvalidValue, "must be at least 1".into());
    }
    if raw.max_rows == 0 {
        problems.push("csv.max_rows", ProblemKind::InvalidValue, "must be at least 1".into());
    }
    if raw.max_file_bytes == 0 {
        problems.push("csv.max_file_bytes", ProblemKind::InvalidValue, "must be at least 1".into());
    }
    let headers = raw.headers.map(|list| {
        if list.is_empty() {
            problems.push(
                "csv.headers",
                ProblemKind::InvalidValue,
                "must list at least one column (or be left out)".into(),
            );
        }
        let mut seen = HashSet::new();
        let mut out = Vec::with_capacity(list.len());
        for h in &list {
            let n = normalize_column(h);
            if n.is_empty() {
                problems.push("csv.headers", ProblemKind::InvalidValue, "contains a blank column name".into());
            } else if !seen.insert(n.clone()) {
                problems.push(
                    "csv.headers",
                    ProblemKind::InvalidValue,
                    format!("column `{n}` is listed twice (names are compared normalised)"),
                );
            } else {
                out.push(n);
            }
        }
        out
    });
    CsvConfig {
        delimiter: raw.delimiter,
        encoding: raw.encoding,
        max_field_bytes: raw.max_field_bytes,
        max_rows: raw.max_rows,
        max_file_bytes: raw.max_file_bytes,
        headers,
    }
}

fn build_columns(raw: raw::Columns, ctx: &mut Ctx<'_>) -> ColumnsConfig {
    let key = ctx.column("columns.key", &raw.key);
    let login = ctx.column("columns.login", &raw.login);
    let status = ctx.column("columns.status", &raw.status);
    let manager = raw.manager.map(|m| ctx.column("columns.manager", &m));
    let roles = raw.roles.map(|r| ctx.column("columns.roles", &r));
    if let Some(m) = &manager
        && (*m == login || *m == key)
    {
        ctx.problem(
            "columns.manager",
            ProblemKind::Inconsistent,
            format!(
                "column `{m}` is also the employee's own login/key column; the manager column must hold the manager's login"
            ),
        );
    }
    if let Some(r) = &roles
        && [&key, &login, &status].into_iter().chain(manager.as_ref()).any(|c| c == r)
    {
        ctx.problem(
            "columns.roles",
            ProblemKind::Inconsistent,
            format!("column `{r}` is already used by another `[columns]` entry"),
        );
    }
    if raw.roles_separator.is_control() && raw.roles_separator != '\t' {
        ctx.problem(
            "columns.roles_separator",
            ProblemKind::InvalidValue,
            format!("{:?} is a control character", raw.roles_separator),
        );
    }
    ColumnsConfig { key, login, status, manager, roles, roles_separator: raw.roles_separator }
}

fn build_user(raw: raw::User, ctx: &mut Ctx<'_>) -> Option<UserConfig> {
    let name = ctx.row_template("user.name", &raw.name);
    let email = ctx.row_template("user.email", &raw.email);
    let mut optional = |key: &str, text: Option<String>| -> Result<Option<Template>, ()> {
        match text {
            None => Ok(None),
            Some(t) => ctx.template(key, &t).map(Some).ok_or(()),
        }
    };
    let title = optional("user.title", raw.title);
    let locale = optional("user.locale", raw.locale);
    let sailpoint_identity_id = optional("user.sailpoint_identity_id", raw.sailpoint_identity_id);
    let status_map = ctx.status_map("user.status_map", raw.status_map);
    if raw.user_type == UserType::NeaccessUser {
        // A portal user must be created with the id of its profile, and this tool creates
        // users before their profiles: such a run could only fail row by row.
        ctx.problem(
            "user.type",
            ProblemKind::InvalidValue,
            "\"NeaccessUser\" (collaboration portal users) is not supported: NERM needs a portal user's \
             profile_id when the user is created, and this tool creates users before profiles. \
             Supported: \"NeprofileUser\" (lifecycle / SSO users)"
                .to_string(),
        );
    }
    Some(UserConfig {
        user_type: raw.user_type,
        name: name?,
        email: email?,
        title: title.ok()?,
        locale: locale.ok()?,
        sailpoint_identity_id: sailpoint_identity_id.ok()?,
        status_map,
    })
}

fn build_profile(raw: raw::Profile, columns: &ColumnsConfig, ctx: &mut Ctx<'_>) -> Option<ProfileConfig> {
    let profile_type = raw.profile_type.trim().to_owned();
    if profile_type.is_empty() {
        ctx.problem("profile.type", ProblemKind::InvalidValue, "must name a profile type (uid or name)".into());
    }
    let name = match raw.name {
        None => Ok(None),
        Some(t) => ctx.template("profile.name", &t).map(Some).ok_or(()),
    };
    let status_map = ctx.status_map("profile.status_map", raw.status_map);

    let mut attributes = Vec::with_capacity(raw.attributes.len());
    let mut all_parsed = true;
    for (uid, text) in raw.attributes {
        let key = format!("profile.attributes.{uid}");
        if uid.trim().is_empty() || uid.trim() != uid {
            ctx.problem(
                &key,
                ProblemKind::InvalidValue,
                format!("attribute uid {uid:?} is blank or has surrounding spaces"),
            );
        }
        match ctx.template(&key, &text) {
            Some(template) => attributes.push(AttributeMapping { uid, template }),
            None => all_parsed = false,
        }
    }

    let key_attribute = raw.key_attribute.trim().to_owned();
    if key_attribute.is_empty() {
        ctx.problem(
            "profile.key_attribute",
            ProblemKind::InvalidValue,
            "must name the attribute uid that holds the employee key".into(),
        );
    } else if all_parsed {
        let want = format!("{{{}}}", columns.key);
        match attributes.iter().find(|a| a.uid == key_attribute) {
            None => ctx.problem(
                "profile.key_attribute",
                ProblemKind::Inconsistent,
                format!(
                    "attribute `{key_attribute}` is not mapped; add `{key_attribute} = \"{want}\"` to [profile.attributes]"
                ),
            ),
            Some(a) if a.template.single_column() != Some(columns.key.as_str()) => ctx.problem(
                "profile.key_attribute",
                ProblemKind::Inconsistent,
                format!(
                    "attribute `{key_attribute}` must be mapped to exactly \"{want}\" (the `columns.key` column) so rows match profiles, not {:?}",
                    a.template.source()
                ),
            ),
            Some(_) => {}
        }
    }

    Some(ProfileConfig {
        profile_type,
        name: name.ok()?,
        key_attribute,
        status_map,
        attributes: if all_parsed { attributes } else { return None },
    })
}

fn build_roles(
    raw: raw::Roles,
    columns: &ColumnsConfig,
    ctx: &mut Ctx<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> RolesConfig {
    let mut seen = HashSet::new();
    let mut defaults = Vec::with_capacity(raw.defaults.len());
    for name in raw.defaults {
        let name = name.trim().to_owned();
        if name.is_empty() {
            ctx.problem("roles.defaults", ProblemKind::InvalidValue, "contains a blank role name".into());
        } else if !seen.insert(normalize_value(&name)) {
            ctx.problem(
                "roles.defaults",
                ProblemKind::InvalidValue,
                format!("role `{name}` is listed twice (names are matched case-insensitively)"),
            );
        } else {
            defaults.push(name);
        }
    }
    if raw.strategy == RoleStrategy::UserRole {
        warnings.push(ConfigWarning {
            key: "roles.strategy".into(),
            message: "`user_role` assigns roles directly; in NERM's default SSO mode the IdP groups overwrite those roles at every login and at the daily refresh (see docs/nerm-api.md, section Roles under SSO). Use it only when the tenant manages roles through ISC entitlements or users never log in through an IdP".into(),
        });
    }
    if defaults.is_empty() && columns.roles.is_none() {
        warnings.push(ConfigWarning {
            key: "roles".into(),
            message: if raw.managed {
                "no `roles.defaults` and no `columns.roles`, and `managed = true`: the sync removes every role, and a NERM user without a role cannot sign in (see docs/nerm-api.md, section Roles under SSO)".into()
            } else {
                "no `roles.defaults` and no `columns.roles`: the sync grants no role; a NERM user without a role cannot sign in until the IdP grants one (see docs/nerm-api.md, section Roles under SSO)".into()
            },
        });
    }
    RolesConfig { strategy: raw.strategy, defaults, managed: raw.managed }
}

fn build_contributors(
    raw: raw::Contributors,
    ctx: &mut Ctx<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> ContributorsConfig {
    let mut seen = HashSet::new();
    let mut extra = Vec::with_capacity(raw.extra.len());
    for login in raw.extra {
        let login = login.trim().to_owned();
        if login.is_empty() {
            ctx.problem("contributors.extra", ProblemKind::InvalidValue, "contains a blank login".into());
        } else if !seen.insert(normalize_value(&login)) {
            ctx.problem(
                "contributors.extra",
                ProblemKind::InvalidValue,
                format!("login `{login}` is listed twice (logins are compared case-insensitively)"),
            );
        } else {
            extra.push(login);
        }
    }
    if raw.self_relationship == SelfRelationship::None && extra.is_empty() {
        warnings.push(ConfigWarning {
            key: "contributors".into(),
            message: "`self = \"none\"` and no `extra` contributors: the sync gives no user edit rights on the profiles (a profile has at most one owner; see docs/nerm-api.md)".into(),
        });
    }
    ContributorsConfig { self_relationship: raw.self_relationship, extra }
}

fn build_managers(
    raw: raw::Managers,
    columns: &ColumnsConfig,
    profile: &Option<ProfileConfig>,
    ctx: &mut Ctx<'_>,
    warnings: &mut Vec<ConfigWarning>,
) -> ManagersConfig {
    let has_column = columns.manager.is_some();
    if raw.user_manager == Some(true) && !has_column {
        ctx.problem(
            "managers.user_manager",
            ProblemKind::Inconsistent,
            "needs `columns.manager` (the column holding the manager's login)".into(),
        );
    }
    let profile_attribute = raw.profile_attribute.map(|a| a.trim().to_owned());
    if let Some(attr) = &profile_attribute {
        if attr.is_empty() {
            ctx.problem(
                "managers.profile_attribute",
                ProblemKind::InvalidValue,
                "must name a profile-select attribute uid (or be left out)".into(),
            );
        }
        if !has_column {
            ctx.problem(
                "managers.profile_attribute",
                ProblemKind::Inconsistent,
                "needs `columns.manager` (the column holding the manager's login)".into(),
            );
        }
        if let Some(p) = profile
            && p.attributes.iter().any(|a| &a.uid == attr)
        {
            ctx.problem(
                "managers.profile_attribute",
                ProblemKind::Inconsistent,
                format!(
                    "attribute `{attr}` is also mapped in [profile.attributes]; the sync writes the manager's profile id into it, remove the template"
                ),
            );
        }
    }
    let user_manager = raw.user_manager.unwrap_or(has_column);
    if has_column && !user_manager && profile_attribute.is_none() {
        warnings.push(ConfigWarning {
            key: "columns.manager".into(),
            message:
                "the manager column is set but neither `managers.user_manager` nor `managers.profile_attribute` uses it"
                    .into(),
        });
    }
    ManagersConfig { user_manager, profile_attribute }
}

fn build_sync(raw: raw::Sync, ctx: &mut Ctx<'_>, warnings: &mut Vec<ConfigWarning>) -> SyncConfig {
    if !(raw.max_disable_percent.is_finite() && (0.0..=100.0).contains(&raw.max_disable_percent)) {
        ctx.problem(
            "sync.max_disable_percent",
            ProblemKind::InvalidValue,
            format!("must be a percentage between 0 and 100, got {}", raw.max_disable_percent),
        );
    }
    if raw.allow_mass_disable {
        warnings.push(ConfigWarning {
            key: "sync.allow_mass_disable".into(),
            message: format!(
                "the {}% disable limit is overridden: a bad or truncated file can disable many users in one run",
                raw.max_disable_percent
            ),
        });
    }
    if raw.mode == SyncMode::Full {
        if raw.leaver_user_status == UserStatus::Active {
            warnings.push(ConfigWarning {
                key: "sync.leaver_user_status".into(),
                message: "leavers keep an `Active` NERM user in `full` mode".into(),
            });
        }
        if raw.leaver_profile_status == ProfileStatus::Active {
            warnings.push(ConfigWarning {
                key: "sync.leaver_profile_status".into(),
                message: "leavers keep an `Active` profile in `full` mode".into(),
            });
        }
    }
    SyncConfig {
        mode: raw.mode,
        leaver_user_status: raw.leaver_user_status,
        leaver_profile_status: raw.leaver_profile_status,
        max_disable_percent: raw.max_disable_percent,
        allow_mass_disable: raw.allow_mass_disable,
    }
}

fn build_nerm(raw: raw::Nerm, ctx: &mut Ctx<'_>) -> NermConfig {
    let mut range = |key: &str, value: u32, min: u32, max: u32| {
        if !(min..=max).contains(&value) {
            ctx.problem(key, ProblemKind::InvalidValue, format!("must be between {min} and {max}, got {value}"));
        }
    };
    range("nerm.requests_per_window", raw.requests_per_window, 1, 10_000);
    range("nerm.window_seconds", raw.window_seconds, 1, 3_600);
    range("nerm.concurrency", raw.concurrency, 1, 64);
    range("nerm.page_size", raw.page_size, 1, 500);
    range("nerm.timeout_seconds", raw.timeout_seconds, 1, 900);
    range("nerm.max_retries", raw.max_retries, 0, 20);
    range("nerm.retry_budget", raw.retry_budget, 0, 1_000_000);
    NermConfig {
        requests_per_window: raw.requests_per_window,
        window_seconds: raw.window_seconds,
        concurrency: raw.concurrency,
        page_size: raw.page_size,
        timeout_seconds: raw.timeout_seconds,
        max_retries: raw.max_retries,
        retry_budget: raw.retry_budget,
    }
}

/// Warns about HR statuses mapped for users but not profiles, or the other way round: such
/// rows would fail on one side only.
fn compare_status_maps(
    user: &StatusMap<UserStatus>,
    profile: &StatusMap<ProfileStatus>,
    warnings: &mut Vec<ConfigWarning>,
) {
    let u: HashSet<&str> = user.normalized_keys().collect();
    let p: HashSet<&str> = profile.normalized_keys().collect();
    let mut only_user: Vec<&str> = u.difference(&p).copied().collect();
    let mut only_profile: Vec<&str> = p.difference(&u).copied().collect();
    only_user.sort_unstable();
    only_profile.sort_unstable();
    if !only_user.is_empty() {
        warnings.push(ConfigWarning {
            key: "profile.status_map".into(),
            message: format!(
                "HR statuses mapped in `user.status_map` but not here (such rows fail on the profile): {}",
                known_list(only_user)
            ),
        });
    }
    if !only_profile.is_empty() {
        warnings.push(ConfigWarning {
            key: "user.status_map".into(),
            message: format!(
                "HR statuses mapped in `profile.status_map` but not here (such rows fail on the user): {}",
                known_list(only_profile)
            ),
        });
    }
}

/// Case-insensitive index from normalised names to positions; names that collide map to
/// `None` (ambiguous).
/// Normalised name → position, `None` when two names normalise alike. Looked up per row (role
/// names), so hashed with foldhash rather than SipHash.
pub(crate) type NameIndex = HashMap<String, Option<usize>, foldhash::fast::RandomState>;

pub(crate) fn index_names<'a>(names: impl IntoIterator<Item = &'a str>) -> NameIndex {
    let mut index = NameIndex::default();
    for (i, name) in names.into_iter().enumerate() {
        index.entry(normalize_value(name)).and_modify(|slot| *slot = None).or_insert(Some(i));
    }
    index
}
