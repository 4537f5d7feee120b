//! Stage 1, read + validate: CSV rows become [`Employee`]s (the NERM state each row asks for),
//! or rejections naming line, column and what was expected.
//!
//! The stage runs twice over a file: a first pass ([`scan`]) finds file-level errors and every
//! login before anything is written (a manager may appear after the employee), and the second
//! pass feeds the planner with that index in hand.

use std::collections::HashMap;
use std::io::Read;

use super::plan::FileIndex;
use crate::config::{
    BoundTemplate, MappingConfig, ProfileStatus, ResolvedConfig, Template, UserStatus, normalize_column,
};
use crate::input::validate::{Field, RowFields, StatusSet, passes_row_rules};
use crate::input::{
    ColumnSpec, CsvReader, FileError, LoginIndex, PipedRows, ReaderOptions, Row, RowError, RowValidator,
};

/// What one valid row asks NERM to hold. The second pass refills one of these for every row
/// ([`EmployeeReader::read_into`]), so its strings keep their capacity from row to row.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Employee {
    pub line: u64,
    pub login: String,
    /// The stable employee key (matched against the profile key attribute).
    pub key: String,
    pub name: String,
    pub email: String,
    pub title: Option<String>,
    pub locale: Option<String>,
    pub sailpoint_identity_id: Option<String>,
    pub user_status: String,
    pub profile_status: String,
    pub profile_name: Option<String>,
    /// Attribute uid → value, in config order; empty values are left out.
    pub attributes: Vec<(String, String)>,
    /// Role names from the roles column (defaults are added by the planner).
    pub roles: Vec<String>,
    pub manager_login: Option<String>,
}

/// A rejected row: line, login if readable, and every reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub login: String,
    pub key: String,
    pub reasons: Vec<String>,
}

impl Rejection {
    fn from_errors(line: u64, login: &str, key: &str, errors: Vec<RowError>) -> Self {
        Rejection {
            line,
            login: login.to_string(),
            key: key.to_string(),
            reasons: errors.into_iter().map(|e| e.to_string()).collect(),
        }
    }
}

/// Reader options from the mapping config's `[csv]`.
pub fn reader_options(cfg: &MappingConfig) -> ReaderOptions {
    ReaderOptions {
        encoding: match cfg.csv.encoding {
            crate::config::Encoding::Utf8 => crate::input::Encoding::Utf8,
            crate::config::Encoding::Windows1252 => crate::input::Encoding::Windows1252,
        },
        delimiter: cfg.csv.delimiter.byte(),
        max_field_bytes: cfg.csv.max_field_bytes,
        max_rows: cfg.csv.max_rows as u64,
        max_file_bytes: cfg.csv.max_file_bytes,
        ..ReaderOptions::default()
    }
}

/// What reading needs besides the file: the resolved config and the accepted statuses.
pub struct ReadContext<'c> {
    cfg: &'c ResolvedConfig,
    statuses: StatusSet,
    /// Whether the first pass records who manages someone ([`FileIndex::managers`]): only a
    /// run applied in chunks needs it.
    pub index_managers: bool,
}

impl<'c> ReadContext<'c> {
    pub fn new(cfg: &'c ResolvedConfig) -> Self {
        let m = cfg.config();
        let statuses =
            StatusSet::new(m.user.status_map.keys().iter().chain(m.profile.status_map.keys()).map(String::as_str));
        ReadContext { cfg, statuses, index_managers: false }
    }
}

/// Streams employees from one CSV, validating each row.
pub struct EmployeeReader<'c, R> {
    csv: Rows<R>,
    rules: RowRules<'c>,
}

/// Where the rows come from: the CSV reader, or the CSV reader on a thread of its own
/// ([`EmployeeReader::piped`]).
enum Rows<R> {
    Here(Box<CsvReader<R>>),
    Piped(PipedRows),
}

impl<R: Read> Rows<R> {
    #[allow(clippy::type_complexity)]
    fn next_row(&mut self) -> Result<Option<Result<Row<'_>, RowError>>, FileError> {
        match self {
            Rows::Here(csv) => csv.next_row(),
            Rows::Piped(piped) => piped.next_row(),
        }
    }
}

/// Everything that judges a row, apart from the CSV reader (so a row borrowed from the reader
/// can be judged while the validator records its login).
struct RowRules<'c> {
    cfg: &'c ResolvedConfig,
    names: Vec<String>,
    templates: Templates,
    key: usize,
    login: usize,
    status: usize,
    manager: Option<usize>,
    roles: Option<usize>,
    email_columns: Vec<usize>,
    validator: RowValidator<'c>,
    /// The row's roles, as named in the catalog (refilled for every row).
    role_names: Vec<&'c str>,
    /// Roles values seen, with their roles (all found in the catalog): exports repeat a few
    /// combinations, so most rows skip the split and the lookups.
    known_roles: Vec<(String, Vec<&'c str>)>,
    /// The last HR status mapped and what it maps to: exports hold a handful of statuses, so
    /// most rows repeat the previous row's.
    last_status: (String, Option<UserStatus>, Option<ProfileStatus>),
}

/// What a valid row maps to besides its own values.
struct Verdict {
    user_status: &'static str,
    profile_status: &'static str,
}

/// The config's templates bound to the reader's column positions.
struct Templates {
    name: BoundTemplate,
    email: BoundTemplate,
    title: Option<BoundTemplate>,
    locale: Option<BoundTemplate>,
    sailpoint_identity_id: Option<BoundTemplate>,
    profile_name: Option<BoundTemplate>,
    /// In the order of `ResolvedConfig::attributes`.
    attributes: Vec<BoundTemplate>,
}

/// How many distinct roles values [`RowRules`] remembers (a file with more looks the rest up).
const KNOWN_ROLES: usize = 16;

/// Most exports have one or two e-mail columns: their fields go on the stack.
const INLINE_EMAILS: usize = 4;

impl<'c, R: Read> EmployeeReader<'c, R> {
    /// Opens the file: decodes, finds the header, checks every configured column is present.
    pub fn new(input: R, ctx: &'c ReadContext<'c>) -> Result<Self, FileError> {
        let cfg = ctx.cfg;
        let m = cfg.config();
        let mut names: Vec<String> = Vec::new();
        for u in m.column_uses() {
            let n = normalize_column(u.column);
            if !names.contains(&n) {
                names.push(n);
            }
        }
        let specs: Vec<ColumnSpec> = names.iter().map(ColumnSpec::required).collect();
        let csv = CsvReader::new(input, &reader_options(m), &specs)?;
        let index: HashMap<String, usize> = names.iter().enumerate().map(|(i, n)| (n.clone(), i)).collect();
        let col = |name: &str| index[&normalize_column(name)];
        let email_columns = m.user.email.columns().filter_map(|c| index.get(c).copied()).collect();
        let bind = |t: &Template| t.bind(|column| index.get(column).copied());
        let templates = Templates {
            name: bind(&m.user.name),
            email: bind(&m.user.email),
            title: m.user.title.as_ref().map(bind),
            locale: m.user.locale.as_ref().map(bind),
            sailpoint_identity_id: m.user.sailpoint_identity_id.as_ref().map(bind),
            profile_name: m.profile.name.as_ref().map(bind),
            attributes: cfg.attributes().iter().map(|a| bind(&a.template)).collect(),
        };
        let rules = RowRules {
            names: specs.iter().map(|s| s.name.clone()).collect(),
            key: col(&m.columns.key),
            login: col(&m.columns.login),
            status: col(&m.columns.status),
            manager: m.columns.manager.as_deref().map(col),
            roles: m.columns.roles.as_deref().map(col),
            email_columns,
            cfg,
            templates,
            validator: RowValidator::new(&ctx.statuses),
            role_names: Vec::new(),
            known_roles: Vec::new(),
            last_status: (String::new(), m.user_status_for(""), m.profile_status_for("")),
        };
        Ok(EmployeeReader { csv: Rows::Here(Box::new(csv)), rules })
    }

    /// Moves the CSV parsing to a thread of its own when there is CPU for it (`cores`):
    /// parsing, and the rules that need only the row ([`passes_row_rules`]), then overlap
    /// with the rest of the judging and with filling the employee (the rows and their order
    /// are the same). The two threads use about 20% more CPU time in all, so on one core this
    /// would only cost.
    pub fn piped(self) -> Self
    where
        R: Send + 'static,
    {
        self.piped_if(cores() >= 1.5)
    }

    /// [`piped`](Self::piped) if `pipe`, whatever the CPU (the rows come out the same).
    pub fn piped_if(self, pipe: bool) -> Self
    where
        R: Send + 'static,
    {
        self.pipe(pipe, true)
    }

    /// Pipes the CSV reader if `pipe`, with the row-only rules on its thread if `precheck`.
    fn pipe(self, pipe: bool, precheck: bool) -> Self
    where
        R: Send + 'static,
    {
        match self.csv {
            Rows::Here(csv) if pipe => {
                let piped =
                    if precheck { PipedRows::spawn_with(*csv, self.rules.precheck()) } else { PipedRows::spawn(*csv) };
                EmployeeReader { csv: Rows::Piped(piped), rules: self.rules }
            }
            csv => EmployeeReader { csv, rules: self.rules },
        }
    }

    /// The next row: `Ok(None)` at the end; `Err` for a file-level problem (stop the run).
    pub fn next_employee(&mut self) -> Result<Option<Result<Employee, Rejection>>, FileError> {
        let mut employee = Employee::default();
        Ok(self.read_into(&mut employee)?.map(|row| row.map(|()| employee)))
    }

    /// [`next_employee`](Self::next_employee) into a caller's employee: a valid row replaces
    /// all of `employee`, reusing its strings (the second pass then allocates almost nothing
    /// per row); a rejected row leaves it as it was.
    pub fn read_into(&mut self, employee: &mut Employee) -> Result<Option<Result<(), Rejection>>, FileError> {
        let row = match self.csv.next_row()? {
            None => return Ok(None),
            Some(Err(e)) => return Ok(Some(Err(Rejection::from_errors(e.line, "", "", vec![e])))),
            Some(Ok(row)) => row,
        };
        let rules = &mut self.rules;
        Ok(Some(match rules.judge(&row) {
            Ok(verdict) => {
                rules.fill(&row, &verdict, employee);
                Ok(())
            }
            Err(errors) => Err(Rejection::from_errors(row.line(), row.get(rules.login), row.get(rules.key), errors)),
        }))
    }

    /// The first pass over the rest of the file: judges every row as
    /// [`next_employee`](Self::next_employee) would, without building the employees, and
    /// indexes logins and keys (and managers, if `index_managers`).
    fn index_rows(mut self, index_managers: bool) -> Result<FileIndex, FileError> {
        let mut index = FileIndex::default();
        self.rules.validator = self.rules.validator.deferring_logins();
        let full = |_| FileError::TooLarge { limit: u64::from(u32::MAX) };
        while let Some(row) = self.csv.next_row()? {
            // A row the reader rejected (field count, length) has no key or login to index.
            let Ok(row) = row else { continue };
            let rules = &mut self.rules;
            let (line, login, key) = (row.line(), row.get(rules.login), row.get(rules.key));
            let valid = rules.judge(&row).is_ok();
            let manager = rules.manager.map_or("", |i| row.get(i));
            // A login seen before makes the row a duplicate: rejected, as the second pass says.
            let first = rules.validator.record(login, line, valid.then_some((key, manager))).map_err(full)?;
            if !valid || first.is_some() {
                index.add_rejected_key(key, line).map_err(full)?;
                continue;
            }
            index.add_accepted_key(key, line).map_err(full)?;
            if index_managers && !manager.is_empty() {
                index.managers.insert(manager, line, true).map_err(full)?;
            }
        }
        index.logins = self.rules.validator.into_logins();
        if self.rules.manager.is_some() {
            index.in_manager_cycles = index.logins.logins_in_manager_cycles();
        }
        Ok(index)
    }

    /// Makes this a second pass over a file whose first pass ([`index_file`]) left `logins`:
    /// duplicates are found there instead of in a new index.
    pub fn second_pass(mut self, logins: &'c LoginIndex, ctx: &'c ReadContext<'c>) -> Self {
        self.rules.validator = RowValidator::second_pass(&ctx.statuses, logins);
        self
    }
}

impl<'c> RowRules<'c> {
    /// The rules that need only the row ([`passes_row_rules`]), for the reader's thread: the
    /// same fields as [`judge`](Self::judge) checks (column names matter only in errors).
    fn precheck(&self) -> impl FnMut(&Row<'_>) -> bool + Send + 'static {
        let (key, login, status) = (self.key, self.login, self.status);
        let email_columns = self.email_columns.clone();
        move |row: &Row<'_>| {
            let field = |i: usize| Field::new("", row.get(i));
            let required = [field(key), field(login), field(status)];
            let mut inline = [Field::default(); INLINE_EMAILS];
            let mut n = 0;
            for &i in &email_columns {
                if row.get(i).is_empty() {
                    continue;
                }
                if n == INLINE_EMAILS {
                    return false; // more e-mails than fit here: the consumer checks the row
                }
                inline[n] = field(i);
                n += 1;
            }
            passes_row_rules(&RowFields {
                line: row.line(),
                required: &required,
                login: Some(field(login)),
                emails: &inline[..n],
                status: None,
                prechecked: false,
            })
        }
    }

    /// Every rule on one row: syntax, duplicates (a first pass records the login afterwards,
    /// see [`RowValidator::record`]), statuses, roles (kept
    /// in `role_names`), and a user name and email that render non-empty. All problems at once,
    /// except that the templates are checked only on an otherwise valid row.
    fn judge(&mut self, row: &Row<'_>) -> Result<Verdict, Vec<RowError>> {
        let line = row.line();
        let hr_status = row.get(self.status);
        let mut errors = self.field_errors(row);
        let (user_status, profile_status) = self.statuses_for(hr_status);
        let m = self.cfg.config();
        if !hr_status.is_empty() && errors.iter().all(|e| e.column.as_deref() != Some(m.columns.status.as_str())) {
            if user_status.is_none() {
                errors.push(RowError::new(
                    line,
                    Some(&m.columns.status),
                    format!("status {hr_status:?} has no NERM user status in [user.status_map]"),
                ));
            }
            if profile_status.is_none() {
                errors.push(RowError::new(
                    line,
                    Some(&m.columns.status),
                    format!("status {hr_status:?} has no NERM profile status in [profile.status_map]"),
                ));
            }
        }
        self.look_up_roles(row, &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        self.check_templates(row)?;
        Ok(Verdict {
            user_status: user_status.map(|s| s.as_str()).unwrap_or_default(),
            profile_status: profile_status.map(|s| s.as_str()).unwrap_or_default(),
        })
    }

    /// The validator's rules on the row's key, login, status and email columns.
    fn field_errors(&mut self, row: &Row<'_>) -> Vec<RowError> {
        let m = self.cfg.config();
        let (login, hr_status) = (row.get(self.login), row.get(self.status));
        let required = [
            Field::new(&m.columns.key, row.get(self.key)),
            Field::new(&m.columns.login, login),
            Field::new(&m.columns.status, hr_status),
        ];
        let email_fields = self
            .email_columns
            .iter()
            .map(|&i| Field::new(self.names[i].as_str(), row.get(i)))
            .filter(|f| !f.value.is_empty());
        let mut inline = [Field::default(); INLINE_EMAILS];
        let spilled: Vec<Field<'_>>;
        let emails: &[Field<'_>] = if self.email_columns.len() <= INLINE_EMAILS {
            let mut n = 0;
            for f in email_fields {
                inline[n] = f;
                n += 1;
            }
            &inline[..n]
        } else {
            spilled = email_fields.collect();
            &spilled
        };
        let fields = RowFields {
            line: row.line(),
            required: &required,
            login: Some(Field::new(&m.columns.login, login)),
            emails,
            status: Some(Field::new(&m.columns.status, hr_status)),
            prechecked: row.prechecked(),
        };
        self.validator.check(&fields).err().unwrap_or_default()
    }

    /// The NERM user and profile statuses for an HR status (the last one is remembered: files
    /// are mostly one status).
    fn statuses_for(&mut self, hr_status: &str) -> (Option<UserStatus>, Option<ProfileStatus>) {
        if self.last_status.0 != hr_status {
            let m = self.cfg.config();
            set(&mut self.last_status.0, hr_status);
            (self.last_status.1, self.last_status.2) = (m.user_status_for(hr_status), m.profile_status_for(hr_status));
        }
        (self.last_status.1, self.last_status.2)
    }

    /// Resolves the row's roles into `role_names` (each unknown one is an error); a cell seen
    /// before is not looked up again.
    fn look_up_roles(&mut self, row: &Row<'_>, errors: &mut Vec<RowError>) {
        self.role_names.clear();
        let Some(value) = self.roles.map(|i| row.get(i)).filter(|v| !v.is_empty()) else { return };
        if let Some((_, names)) = self.known_roles.iter().find(|(known, _)| known == value) {
            self.role_names.extend_from_slice(names);
            return;
        }
        let (cfg, m) = (self.cfg, self.cfg.config());
        let mut found = true;
        for name in m.split_roles(value) {
            match cfg.lookup_role(name) {
                Ok(r) => self.role_names.push(&r.name),
                Err(e) => {
                    found = false;
                    errors.push(RowError::new(row.line(), m.columns.roles.as_deref(), e.to_string()));
                }
            }
        }
        if found && self.known_roles.len() < KNOWN_ROLES {
            self.known_roles.push((value.to_owned(), self.role_names.clone()));
        }
    }

    /// The user's name and email, which NERM requires, must not render empty.
    fn check_templates(&self, row: &Row<'_>) -> Result<(), Vec<RowError>> {
        let value = |i: usize| row.get(i);
        let mut errors = Vec::new();
        if self.templates.name.renders_empty(value) {
            errors.push(RowError::new(row.line(), None, "the user name template renders empty (NERM requires a name)"));
        }
        if self.templates.email.renders_empty(value) {
            errors.push(RowError::new(
                row.line(),
                None,
                "the user email template renders empty (NERM requires an email)",
            ));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Refills `e` with what a row judged valid asks for.
    fn fill(&mut self, row: &Row<'_>, verdict: &Verdict, e: &mut Employee) {
        let t = &self.templates;
        let value = |i: usize| row.get(i);
        let render = |t: &BoundTemplate, out: &mut String| t.render_trimmed_into(value, out);
        e.line = row.line();
        set(&mut e.login, row.get(self.login));
        set(&mut e.key, row.get(self.key));
        render(&t.name, &mut e.name);
        render(&t.email, &mut e.email);
        let optional = |t: &Option<BoundTemplate>, out: &mut Option<String>| match t {
            Some(t) => {
                let s = out.get_or_insert_default();
                render(t, s);
                if s.is_empty() {
                    *out = None;
                }
            }
            None => *out = None,
        };
        optional(&t.title, &mut e.title);
        optional(&t.locale, &mut e.locale);
        optional(&t.sailpoint_identity_id, &mut e.sailpoint_identity_id);
        optional(&t.profile_name, &mut e.profile_name);
        set(&mut e.user_status, verdict.user_status);
        set(&mut e.profile_status, verdict.profile_status);
        // Slot `n` is refilled in place; a blank value leaves it for the next attribute.
        let mut n = 0;
        for (a, template) in self.cfg.attributes().iter().zip(&t.attributes) {
            if n == e.attributes.len() {
                e.attributes.push(Default::default());
            }
            let (uid, v) = &mut e.attributes[n];
            render(template, v);
            if !v.is_empty() {
                set(uid, &a.uid);
                n += 1;
            }
        }
        e.attributes.truncate(n);
        e.roles.truncate(self.role_names.len());
        for (i, name) in self.role_names.iter().enumerate() {
            match e.roles.get_mut(i) {
                Some(role) => set(role, name),
                None => e.roles.push(name.to_string()),
            }
        }
        match self.manager.map(|i| row.get(i)).filter(|m| !m.is_empty()) {
            Some(m) => set(e.manager_login.get_or_insert_default(), m),
            None => e.manager_login = None,
        }
    }
}

/// The CPU this process can use, in cores. In Lambda that is the function's share, which
/// grows with its memory (one vCPU at 1,769 MB), though the machine shows more cores;
/// elsewhere, the cores the process may run on.
fn cores() -> f64 {
    const MB_PER_LAMBDA_VCPU: f64 = 1769.0;
    match crate::env::var_opt("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").and_then(|mb| mb.parse::<f64>().ok()) {
        Some(mb) => mb / MB_PER_LAMBDA_VCPU,
        None => std::thread::available_parallelism().map_or(1, usize::from) as f64,
    }
}

/// Replaces `s` with `value`, keeping its capacity.
fn set(s: &mut String, value: &str) {
    s.clear();
    s.push_str(value);
}

/// The first pass: every row validated and file-level errors found before any write; logins
/// and keys indexed for the planner.
pub fn index_file<R: Read + Send + 'static>(input: R, ctx: &ReadContext<'_>) -> Result<FileIndex, FileError> {
    // Piped without the row-only rules: this pass does less per row than the second, so moving
    // those rules onto the reader's thread would make it the slower of the two (BENCHMARKS.md).
    EmployeeReader::new(input, ctx)?.pipe(cores() >= 1.5, false).index_rows(ctx.index_managers)
}
