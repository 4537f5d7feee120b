//! Per-row validation of the logical fields (login, e-mails, status), separate from reading so
//! the engine decides which columns play which role.
//!
//! The rules are plain functions (`check_*`) returning a [`RowError`]; [`RowValidator`] runs
//! them all on a row, reports every problem at once and tracks logins across rows for duplicate
//! detection. Checks that need the whole file plus NERM state (who is gone) belong to the
//! planner, which queries the [`LoginIndex`] the validator leaves behind. So does the manager
//! column: a bad manager reference costs the employee only the manager link (a warning, not a
//! rejection), which the planner decides with [`check_login`] and [`check_not_own_manager`].
//!
//! Values are expected trimmed (as `Row::get` returns them). Syntax rules skip empty values:
//! whether a value must be present is [`check_required`]'s job alone.
//!
//! Case-insensitive comparisons (logins, statuses) lowercase character by character with
//! Unicode's simple lowercase mapping (`char::to_lowercase`).

use super::index::LINE_MAX;
pub use super::index::{LoginIndex, LoginIndexFull, SeenLogin};
use super::{RowError, show_value, trim};

/// Longest accepted e-mail address, in characters.
pub const MAX_EMAIL_CHARS: usize = 254;
/// Longest accepted login, in characters.
pub const MAX_LOGIN_CHARS: usize = 255;

/// One logical value of a row and the column it came from (named in errors).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Field<'a> {
    /// Column name as configured.
    pub column: &'a str,
    /// The value, trimmed.
    pub value: &'a str,
}

impl<'a> Field<'a> {
    /// Shorthand constructor.
    pub fn new(column: &'a str, value: &'a str) -> Self {
        Self { column, value }
    }
}

/// The logical fields of one row, as the engine maps them. Absent roles are `None` / empty.
#[derive(Debug, Clone, Copy, Default)]
pub struct RowFields<'a> {
    /// 1-based line where the row starts.
    pub line: u64,
    /// Values that must not be empty (put the login here if it is mandatory).
    pub required: &'a [Field<'a>],
    /// The employee's login: syntax, duplicates within the file.
    pub login: Option<Field<'a>>,
    /// E-mail addresses: syntax.
    pub emails: &'a [Field<'a>],
    /// Status: must be one of the allowed values.
    pub status: Option<Field<'a>>,
    /// The row already passed [`passes_row_rules`] (on the reader's thread): `check` skips
    /// those rules.
    pub prechecked: bool,
}

/// What a valid row yields besides "valid".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked<'s> {
    /// The canonical spelling of the row's status, `None` if it has none.
    pub status: Option<&'s str>,
}

/// Runs every rule on each row and remembers the logins seen.
#[derive(Debug)]
pub struct RowValidator<'s> {
    statuses: &'s StatusSet,
    logins: LoginIndex,
    /// A second pass over a file: the first pass's logins answer "seen before?" (nothing is
    /// recorded again).
    known: Option<&'s LoginIndex>,
    /// The last status value accepted and its canonical spelling: most rows repeat it.
    last_status: Option<(String, Option<&'s str>)>,
    /// A first pass: `check` leaves the login to [`record`](Self::record), which knows whether
    /// the whole row was accepted.
    deferred: bool,
    /// Whether the row `check` saw last has a login to record (non-empty, valid syntax).
    pending_login: bool,
}

impl<'s> RowValidator<'s> {
    /// A validator accepting the statuses in `statuses`.
    pub fn new(statuses: &'s StatusSet) -> Self {
        Self::over(statuses, LoginIndex::new(), None)
    }

    fn over(statuses: &'s StatusSet, logins: LoginIndex, known: Option<&'s LoginIndex>) -> Self {
        Self { statuses, logins, known, last_status: None, deferred: false, pending_login: false }
    }

    /// Like [`new`](Self::new), sizing the login index for about `rows` rows up front (e.g.
    /// estimated from the file size): saves the time and the peak memory of growing it.
    pub fn with_expected_rows(statuses: &'s StatusSet, rows: usize) -> Self {
        Self::over(statuses, LoginIndex::with_capacity(rows, 24), None)
    }

    /// A validator for a second pass over a file whose first pass left `logins`: a row is a
    /// duplicate when its login's first row is another line. Saves rebuilding the index.
    pub fn second_pass(statuses: &'s StatusSet, logins: &'s LoginIndex) -> Self {
        Self::over(statuses, LoginIndex::new(), Some(logins))
    }

    /// Makes this validator a first pass that records each login only once the caller knows
    /// whether the whole row is accepted: `check` then skips duplicates, and
    /// [`record`](Self::record) must follow every `check`.
    pub fn deferring_logins(mut self) -> Self {
        self.deferred = true;
        self
    }

    /// After `check` on a deferring validator: records the row's login (if it had a valid
    /// one) as seen on `line`, accepted with its employee key and its manager's login (`""`:
    /// none) if `accepted` is given. Returns where the login was seen first if it already was:
    /// the row is a duplicate, so rejected.
    pub fn record(
        &mut self,
        login: &str,
        line: u64,
        accepted: Option<(&str, &str)>,
    ) -> Result<Option<SeenLogin>, LoginIndexFull> {
        if !std::mem::take(&mut self.pending_login) {
            return Ok(None);
        }
        match accepted {
            Some((key, manager)) => self.logins.insert_accepted(login, line, key, manager),
            None => self.logins.insert(login, line, false),
        }
    }

    /// Checks one row; on failure returns every problem found (at least one).
    ///
    /// A syntactically valid login is recorded in the index whether or not the row is accepted
    /// (with [`SeenLogin::accepted`] telling which), so a later row with the same login is a
    /// duplicate even if the first was rejected, and the planner can tell "in the file but
    /// rejected" from "not in the file".
    pub fn check(&mut self, row: &RowFields<'_>) -> Result<Checked<'s>, Vec<RowError>> {
        let line = row.line;
        let mut errors = Vec::new();
        let mut note = |result: Result<(), RowError>| result.map_err(|e| errors.push(e)).is_ok();
        let login = if row.prechecked {
            row.login.filter(|login| !login.value.is_empty())
        } else {
            required_login_and_emails(row, &mut note)
        };
        let statuses: &'s StatusSet = self.statuses;
        let mut status = None;
        if let Some(field) = row.status {
            match self.last_status.as_ref().filter(|(value, _)| value == field.value) {
                Some(&(_, canonical)) => status = canonical,
                None => {
                    let checked = statuses.check(line, field);
                    if let Ok(canonical) = checked {
                        self.last_status = Some((field.value.to_owned(), canonical));
                    }
                    note(checked.map(|canonical| status = canonical));
                }
            }
        }
        if self.deferred {
            self.pending_login = login.is_some();
        } else if let Some(login) = login {
            let accepted = errors.is_empty();
            let seen = match self.known {
                Some(known) => Ok(known.get(login.value).filter(|first| first.line != line.min(LINE_MAX))),
                None => self.logins.insert(login.value, line, accepted),
            };
            match seen {
                Ok(None) => {}
                Ok(Some(first)) => errors.push(RowError::new(
                    line,
                    Some(login.column),
                    format!(
                        "login {} already appeared on line {} (logins are compared ignoring case; \
                         only the first occurrence is used)",
                        show_value(login.value),
                        first.line
                    ),
                )),
                Err(full) => errors.push(RowError::new(line, Some(login.column), full.to_string())),
            }
        }
        if errors.is_empty() { Ok(Checked { status }) } else { Err(errors) }
    }

    /// The logins seen so far.
    pub fn logins(&self) -> &LoginIndex {
        &self.logins
    }

    /// Ends validation, keeping the logins seen (for the planner).
    pub fn into_logins(self) -> LoginIndex {
        self.logins
    }
}

/// Whether `row` passes every rule that needs nothing but the row itself: required values,
/// login and e-mail syntax. Those are the rules
/// [`RowValidator::check`] skips for a row marked [`prechecked`](RowFields::prechecked), so a
/// reader thread can run them ahead (statuses and duplicates still need the validator).
pub fn passes_row_rules(row: &RowFields<'_>) -> bool {
    let mut failed = false;
    let mut note = |result: Result<(), RowError>| {
        failed |= result.is_err();
        result.is_ok()
    };
    required_login_and_emails(row, &mut note);
    !failed
}

/// The rules before the status: required values, then the login's and the e-mails' syntax.
/// Returns the login if it is there and valid.
fn required_login_and_emails<'a>(
    row: &RowFields<'a>,
    note: &mut impl FnMut(Result<(), RowError>) -> bool,
) -> Option<Field<'a>> {
    for &field in row.required {
        note(check_required(row.line, field));
    }
    let login = row.login.filter(|login| !login.value.is_empty()).filter(|&login| note(check_login(row.line, login)));
    for &email in row.emails {
        note(check_email(row.line, email));
    }
    login
}

/// The value must not be empty (or whitespace only).
pub fn check_required(line: u64, field: Field<'_>) -> Result<(), RowError> {
    if trim(field.value).is_empty() {
        Err(RowError::new(line, Some(field.column), "a value is required but the field is empty"))
    } else {
        Ok(())
    }
}

/// Pragmatic e-mail syntax: one `@`, something before it, a dotted domain after it, no
/// whitespace or control characters, at most [`MAX_EMAIL_CHARS`]. Empty passes.
pub fn check_email(line: u64, field: Field<'_>) -> Result<(), RowError> {
    match email_problem(field.value) {
        Some(reason) => Err(RowError::new(line, Some(field.column), reason)),
        None => Ok(()),
    }
}

/// The common case of [`email_problem`] in one pass: a valid ASCII address. `false` means
/// "look closer", not "invalid".
fn plainly_valid_ascii_email(value: &str) -> bool {
    let bytes = value.as_bytes();
    // Printable ASCII, no space: checked without an early exit, which the compiler may
    // vectorise.
    let printable = bytes.iter().fold(true, |ok, &b| ok & (b.wrapping_sub(b'!') < 0x7F - b'!'));
    if bytes.len() > MAX_EMAIL_CHARS || !printable {
        return false;
    }
    let Some(at) = bytes.iter().position(|&b| b == b'@') else { return false };
    let domain = &bytes[at + 1..];
    // No second `@`; dots, none first, last or doubled.
    let (mut prev, mut dotted) = (b'@', false);
    for &b in domain {
        match b {
            b'@' => return false,
            b'.' if prev == b'.' || prev == b'@' => return false,
            b'.' => dotted = true,
            _ => {}
        }
        prev = b;
    }
    at > 0 && dotted && prev != b'.'
}

fn email_problem(value: &str) -> Option<String> {
    if value.is_empty() || plainly_valid_ascii_email(value) {
        return None;
    }
    email_problem_in_detail(value)
}

fn email_problem_in_detail(value: &str) -> Option<String> {
    const EXPECTED: &str = "expected name@domain";
    let ascii = value.is_ascii();
    let chars = if ascii { value.len() } else { value.chars().count() };
    if chars > MAX_EMAIL_CHARS {
        return Some(format!("e-mail address is {chars} characters long (at most {MAX_EMAIL_CHARS} allowed)"));
    }
    let Some((local, domain)) = value.split_once('@') else {
        return Some(format!("{} is not an e-mail address ({EXPECTED})", show_value(value)));
    };
    let why = if domain.contains('@') {
        "it contains more than one \"@\"".to_owned()
    } else if let Some(c) = find_space_or_control(value, ascii) {
        if c.is_whitespace() { "it contains whitespace" } else { "it contains a control character" }.to_owned()
    } else if local.is_empty() {
        "nothing before the \"@\"".to_owned()
    } else if domain.is_empty() {
        "nothing after the \"@\"".to_owned()
    } else if !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
        format!("the domain {} is not dotted like example.com", show_value(domain))
    } else {
        return None;
    };
    Some(format!("{} is not an e-mail address ({why}; {EXPECTED})", show_value(value)))
}

fn find_space_or_control(value: &str, ascii: bool) -> Option<char> {
    if ascii {
        value.bytes().find(|b| b.is_ascii_whitespace() || b.is_ascii_control()).map(char::from)
    } else {
        value.chars().find(|c| c.is_whitespace() || c.is_control())
    }
}

/// Login syntax: at most [`MAX_LOGIN_CHARS`] characters, each a Unicode letter or digit or one
/// of `@ . _ - +` (so no whitespace or control characters). Empty passes.
pub fn check_login(line: u64, field: Field<'_>) -> Result<(), RowError> {
    match login_problem(field.value) {
        Some(reason) => Err(RowError::new(line, Some(field.column), reason)),
        None => Ok(()),
    }
}

/// The ASCII bytes a login may contain, as a table (the check runs on two logins per row).
const LOGIN_ASCII: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || matches!(c, b'@' | b'.' | b'_' | b'-' | b'+');
        b += 1;
    }
    table
};

fn login_problem(value: &str) -> Option<String> {
    const EXPECTED: &str = "expected letters, digits and @ . _ - +";
    if value.len() <= MAX_LOGIN_CHARS && value.bytes().all(|b| LOGIN_ASCII[usize::from(b)]) {
        return None; // the common case, decided without decoding characters
    }
    let chars = value.chars().count();
    if chars > MAX_LOGIN_CHARS {
        return Some(format!("login is {chars} characters long (at most {MAX_LOGIN_CHARS} allowed)"));
    }
    let bad = value.chars().find(|&c| !(c.is_alphanumeric() || matches!(c, '@' | '.' | '_' | '-' | '+')))?;
    let what = if bad.is_whitespace() {
        "whitespace".to_owned()
    } else if bad.is_control() {
        "a control character".to_owned()
    } else {
        format!("{bad:?}")
    };
    Some(format!("{} is not a valid login (it contains {what}; {EXPECTED})", show_value(value)))
}

/// The manager's login must not be the employee's own (compared ignoring case). The error
/// names the manager column.
pub fn check_not_own_manager(line: u64, login: Field<'_>, manager: Field<'_>) -> Result<(), RowError> {
    if !login.value.is_empty() && same_ignoring_case(login.value, manager.value) {
        Err(RowError::new(
            line,
            Some(manager.column),
            format!("{} is the employee's own login (nobody can be their own manager)", show_value(manager.value)),
        ))
    } else {
        Ok(())
    }
}

/// Case-insensitive equality (Unicode simple lowercase, ASCII fast path).
pub fn same_ignoring_case(a: &str, b: &str) -> bool {
    // Equal but for ASCII case means equal lower-cased. Otherwise only non-ASCII text, whose
    // lower case may differ in length, needs a closer look.
    a.eq_ignore_ascii_case(b)
        || (!(a.is_ascii() && b.is_ascii())
            && a.chars().flat_map(char::to_lowercase).eq(b.chars().flat_map(char::to_lowercase)))
}

/// The allowed status values, in their canonical spelling; matching ignores case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusSet {
    allowed: Vec<String>,
}

impl StatusSet {
    /// The set of `allowed` values (trimmed), e.g. `["Active", "Inactive", "On Leave"]`. A value
    /// given twice (the user and the profile status maps share keys) is kept once, first spelling first.
    pub fn new<I, S>(allowed: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut set: Vec<String> = Vec::new();
        for value in allowed {
            let value = value.into().trim().to_owned();
            if !set.iter().any(|known| same_ignoring_case(known, &value)) {
                set.push(value);
            }
        }
        Self { allowed: set }
    }

    /// The canonical spelling of `value`, if allowed.
    pub fn canonical(&self, value: &str) -> Option<&str> {
        let value = trim(value);
        self.allowed.iter().find(|a| same_ignoring_case(a, value)).map(String::as_str)
    }

    /// Checks a status field: `Ok(None)` if empty, `Ok(Some(canonical))` if allowed.
    pub fn check(&self, line: u64, field: Field<'_>) -> Result<Option<&str>, RowError> {
        if field.value.is_empty() {
            return Ok(None);
        }
        match self.canonical(field.value) {
            Some(canonical) => Ok(Some(canonical)),
            None if self.allowed.is_empty() => Err(RowError::new(
                line,
                Some(field.column),
                format!("{} is not an allowed status (no status values are configured)", show_value(field.value)),
            )),
            None => Err(RowError::new(
                line,
                Some(field.column),
                format!(
                    "{} is not an allowed status (expected one of: {}; case does not matter)",
                    show_value(field.value),
                    self.allowed.join(", ")
                ),
            )),
        }
    }

    /// The allowed values.
    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: u64 = 17;

    #[test]
    fn a_status_listed_by_both_status_maps_is_offered_once_in_the_error() {
        let set = StatusSet::new(["Active", "Leave", " active", "LEAVE", "Terminated"]);
        assert_eq!(set.allowed(), ["Active", "Leave", "Terminated"]);
        assert_eq!(set.canonical("leave"), Some("Leave"));
    }

    fn err_text(result: Result<(), RowError>) -> String {
        result.expect_err("should be rejected").to_string()
    }

    fn email(value: &str) -> Result<(), RowError> {
        check_email(LINE, Field::new("email", value))
    }

    fn login(value: &str) -> Result<(), RowError> {
        check_login(LINE, Field::new("login", value))
    }

    fn statuses() -> StatusSet {
        StatusSet::new(["Active", "Inactive", "On Leave"])
    }

    // ---- required -------------------------------------------------------------------------

    #[test]
    fn an_empty_required_value_is_rejected_naming_the_column() {
        for value in ["", "  "] {
            assert_eq!(
                err_text(check_required(LINE, Field::new("last name", value))),
                r#"line 17, column "last name": a value is required but the field is empty"#
            );
        }
        assert!(check_required(LINE, Field::new("last name", "Smith")).is_ok());
    }

    // ---- e-mail ---------------------------------------------------------------------------

    #[test]
    fn plausible_email_addresses_are_accepted() {
        for value in ["bob@example.com", "o'brien+hr@mail.example.co.uk", "zoë@bücher.de", ""] {
            assert!(email(value).is_ok(), "{value:?}");
        }
        let longest = format!("{}@example.com", "a".repeat(MAX_EMAIL_CHARS - 12));
        assert_eq!(longest.chars().count(), MAX_EMAIL_CHARS);
        assert!(email(&longest).is_ok());
    }

    #[test]
    fn an_email_without_at_sign_is_rejected_as_in_the_issue() {
        assert_eq!(
            err_text(email("bob at example")),
            r#"line 17, column "email": "bob at example" is not an e-mail address (expected name@domain)"#
        );
    }

    #[test]
    fn each_broken_email_is_rejected_with_its_reason() {
        let cases = [
            ("a@b@example.com", "it contains more than one \"@\""),
            ("bob smith@example.com", "it contains whitespace"),
            ("bob\u{7}@example.com", "it contains a control character"),
            ("@example.com", "nothing before the \"@\""),
            ("bob@", "nothing after the \"@\""),
            ("bob@example", "the domain \"example\" is not dotted like example.com"),
            ("bob@.example.com", "is not dotted"),
            ("bob@example.com.", "is not dotted"),
            ("bob@example..com", "is not dotted"),
        ];
        for (value, reason) in cases {
            let text = err_text(email(value));
            assert!(text.contains(reason), "{value:?}: {text}");
            assert!(text.ends_with("expected name@domain)"), "{value:?}: {text}");
            assert!(text.starts_with(r#"line 17, column "email": "#), "{text}");
        }
    }

    #[test]
    fn the_one_pass_email_check_agrees_with_the_detailed_rules() {
        // GIVEN every string of up to 6 characters over an alphabet of the bytes that matter
        let alphabet = ['a', '@', '.', ' ', '\u{7}', 'é', '-', '\u{7f}'];
        let mut values = vec![String::new()];
        let mut checked = 0;
        for _ in 0..6 {
            values = values.iter().flat_map(|v| alphabet.iter().map(move |c| format!("{v}{c}"))).collect();
            for v in &values {
                // THEN the fast path accepts exactly what the detailed rules accept (non-ASCII
                // is always left to them)
                let detailed = email_problem_in_detail(v).is_none();
                assert_eq!(plainly_valid_ascii_email(v), detailed && v.is_ascii(), "{v:?}");
                checked += 1;
            }
        }
        assert!(checked > 250_000);
        let longest = format!("{}@example.com", "a".repeat(MAX_EMAIL_CHARS - 12));
        assert!(plainly_valid_ascii_email(&longest));
        assert!(!plainly_valid_ascii_email(&format!("a{longest}")));
    }

    #[test]
    fn an_email_longer_than_254_characters_is_rejected() {
        let value = format!("{}@example.com", "a".repeat(MAX_EMAIL_CHARS - 11));
        assert_eq!(
            err_text(email(&value)),
            r#"line 17, column "email": e-mail address is 255 characters long (at most 254 allowed)"#
        );
    }

    // ---- status ---------------------------------------------------------------------------

    #[test]
    fn a_status_matches_ignoring_case_and_returns_the_canonical_value() {
        let set = statuses();
        assert_eq!(set.check(LINE, Field::new("status", "on leave")).unwrap(), Some("On Leave"));
        assert_eq!(set.check(LINE, Field::new("status", "ACTIVE")).unwrap(), Some("Active"));
        assert_eq!(set.check(LINE, Field::new("status", "")).unwrap(), None);
        assert_eq!(set.canonical(" inactive "), Some("Inactive"));
        assert_eq!(set.allowed().len(), 3);
    }

    #[test]
    fn an_unknown_status_is_rejected_listing_the_allowed_values() {
        let err = statuses().check(LINE, Field::new("status", "Actve")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"line 17, column "status": "Actve" is not an allowed status (expected one of: Active, Inactive, On Leave; case does not matter)"#
        );
        let err = StatusSet::default().check(LINE, Field::new("status", "Active")).unwrap_err();
        assert!(err.reason.contains("no status values are configured"), "{err}");
    }

    // ---- login ----------------------------------------------------------------------------

    #[test]
    fn logins_of_letters_digits_and_allowed_punctuation_are_accepted() {
        for value in ["bob", "Bob.Smith+it@corp.example", "zoë_ünal-1", "山田太郎", "x123", ""] {
            assert!(login(value).is_ok(), "{value:?}");
        }
        assert!(login(&"é".repeat(MAX_LOGIN_CHARS)).is_ok(), "the limit counts characters, not bytes");
    }

    #[test]
    fn a_login_with_whitespace_is_rejected() {
        assert_eq!(
            err_text(login("bob smith")),
            r#"line 17, column "login": "bob smith" is not a valid login (it contains whitespace; expected letters, digits and @ . _ - +)"#
        );
    }

    #[test]
    fn a_login_with_a_control_or_other_character_is_rejected() {
        assert!(err_text(login("bob\u{0}")).contains("it contains a control character"));
        assert!(err_text(login("bob!")).contains("it contains '!'"));
        assert!(err_text(login("a/b")).contains("it contains '/'"));
    }

    #[test]
    fn a_login_longer_than_255_characters_is_rejected() {
        assert_eq!(
            err_text(login(&"a".repeat(256))),
            r#"line 17, column "login": login is 256 characters long (at most 255 allowed)"#
        );
    }

    // ---- the validator ----------------------------------------------------------------------

    fn fields<'a>(line: u64, login: &'a str) -> RowFields<'a> {
        RowFields { line, login: Some(Field::new("login", login)), ..Default::default() }
    }

    #[test]
    fn a_valid_row_passes_and_yields_the_canonical_status() {
        let set = statuses();
        let mut validator = RowValidator::new(&set);
        let required = [Field::new("login", "bob"), Field::new("last name", "Smith")];
        let emails = [Field::new("email", "bob@example.com")];
        let row = RowFields {
            line: 2,
            required: &required,
            login: Some(Field::new("login", "bob")),
            emails: &emails,
            status: Some(Field::new("status", "active")),
            prechecked: false,
        };
        assert_eq!(validator.check(&row), Ok(Checked { status: Some("Active") }));
        assert_eq!(validator.logins().get("BOB"), Some(SeenLogin { line: 2, accepted: true }));
    }

    #[test]
    fn a_duplicate_login_is_rejected_naming_the_first_line_ignoring_case() {
        let set = statuses();
        let mut validator = RowValidator::with_expected_rows(&set, 10);
        assert!(validator.check(&fields(5, "Bob.Smith")).is_ok());
        assert!(validator.check(&fields(6, "ann")).is_ok());
        let errors = validator.check(&fields(9, "bob.smith")).unwrap_err();
        assert_eq!(
            errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                r#"line 9, column "login": login "bob.smith" already appeared on line 5 (logins are compared ignoring case; only the first occurrence is used)"#
            ]
        );
        // Unicode case folding too, and the third occurrence still names the first line.
        assert!(validator.check(&fields(10, "ZOË")).is_ok());
        assert!(validator.check(&fields(11, "zoë")).unwrap_err()[0].reason.contains("line 10"));
        assert!(validator.check(&fields(12, "BOB.SMITH")).unwrap_err()[0].reason.contains("line 5"));
    }

    #[test]
    fn a_repeated_status_is_still_checked_row_by_row() {
        let set = statuses();
        let mut validator = RowValidator::new(&set);
        let row = |line, status| RowFields { line, status: Some(Field::new("status", status)), ..Default::default() };
        assert_eq!(validator.check(&row(2, "active")), Ok(Checked { status: Some("Active") }));
        assert_eq!(validator.check(&row(3, "active")), Ok(Checked { status: Some("Active") }));
        assert!(validator.check(&row(4, "gone")).is_err());
        assert!(validator.check(&row(5, "gone")).is_err(), "a rejected value is never remembered");
        assert_eq!(validator.check(&row(6, "ON LEAVE")), Ok(Checked { status: Some("On Leave") }));
        assert_eq!(validator.check(&row(7, "")), Ok(Checked { status: None }));
    }

    #[test]
    fn a_login_from_a_rejected_row_still_counts_for_duplicates() {
        let set = statuses();
        let mut validator = RowValidator::new(&set);
        let emails = [Field::new("email", "not-an-email")];
        let first = RowFields { emails: &emails, ..fields(3, "bob") };
        assert!(validator.check(&first).is_err());
        assert_eq!(validator.logins().get("bob"), Some(SeenLogin { line: 3, accepted: false }));
        let errors = validator.check(&fields(4, "bob")).unwrap_err();
        assert!(errors[0].reason.contains("already appeared on line 3"), "{errors:?}");
    }

    #[test]
    fn an_invalid_or_empty_login_is_not_indexed() {
        let set = statuses();
        let mut validator = RowValidator::new(&set);
        assert!(validator.check(&fields(2, "bob smith")).is_err());
        assert!(validator.check(&fields(3, "")).is_ok(), "login presence is check_required's job");
        assert!(validator.into_logins().is_empty());
    }

    #[test]
    fn being_ones_own_manager_is_found_ignoring_case_naming_the_manager_column() {
        let err = check_not_own_manager(8, Field::new("login", "bob"), Field::new("manager", "BOB")).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"line 8, column "manager": "BOB" is the employee's own login (nobody can be their own manager)"#
        );
        assert!(check_not_own_manager(1, Field::new("l", "Zoë"), Field::new("m", "ZOË")).is_err());
        assert!(check_not_own_manager(1, Field::new("l", "zoe"), Field::new("m", "zoë")).is_ok());
    }

    #[test]
    fn every_problem_of_a_row_is_reported_at_once() {
        let set = statuses();
        let mut validator = RowValidator::new(&set);
        let required = [Field::new("last name", "")];
        let emails = [Field::new("email", "bob at example")];
        let row = RowFields {
            line: 7,
            required: &required,
            login: Some(Field::new("login", "bob")),
            emails: &emails,
            status: Some(Field::new("status", "gone")),
            prechecked: false,
        };
        let columns: Vec<_> =
            validator.check(&row).unwrap_err().into_iter().map(|e| (e.line, e.column.unwrap())).collect();
        assert_eq!(columns, [(7, "last name".into()), (7, "email".into()), (7, "status".into())]);
    }

    #[test]
    fn a_second_pass_finds_the_same_duplicates_from_the_first_pass_index() {
        // GIVEN a first pass that saw "bob" on line 2 and again on line 5
        let set = statuses();
        let row = |line, login| RowFields {
            line,
            required: &[],
            login: Some(Field::new("login", login)),
            emails: &[],
            status: None,
            prechecked: false,
        };
        let mut first = RowValidator::new(&set);
        assert!(first.check(&row(2, "bob")).is_ok());
        assert!(first.check(&row(5, "BOB")).is_err());
        let logins = first.into_logins();

        // WHEN the file is read again with that index
        let mut second = RowValidator::second_pass(&set, &logins);

        // THEN line 2 is still the first occurrence and line 5 the duplicate, and nothing new is
        // recorded
        assert!(second.check(&row(2, "bob")).is_ok());
        let err = second.check(&row(5, "BOB")).unwrap_err();
        assert!(err[0].to_string().contains("already appeared on line 2"), "{err:?}");
        assert!(second.logins().is_empty());
    }

    proptest::proptest! {
        /// A row marked prechecked when [`passes_row_rules`] says so is judged exactly as an
        /// unmarked one: same errors, same status, same logins recorded.
        #[test]
        fn a_prechecked_row_is_judged_as_an_unchecked_one(
            key in "[a-z ]{0,2}",
            login in "(bob|Bob|b b|é|)",
            email in "(a@b\\.c|a@b|@b\\.c| |)",
            status in "(active|gone|)",
            line in 2u64..5,
        ) {
            let set = statuses();
            let required = [Field::new("key", &key), Field::new("login", &login), Field::new("status", &status)];
            let emails: Vec<Field<'_>> =
                [Field::new("email", email.as_str())].into_iter().filter(|f| !f.value.is_empty()).collect();
            let row = RowFields {
                line,
                required: &required,
                login: Some(Field::new("login", &login)),
                emails: &emails,
                status: Some(Field::new("status", &status)),
                prechecked: false,
            };
            let prechecked = RowFields { prechecked: passes_row_rules(&row), ..row };
            let (mut plain, mut fast) = (RowValidator::new(&set), RowValidator::new(&set));
            // A login seen on line 1 makes duplicates possible.
            for v in [&mut plain, &mut fast] {
                v.logins.insert("bob", 1, true).unwrap();
            }
            proptest::prop_assert_eq!(plain.check(&row), fast.check(&prechecked));
            proptest::prop_assert_eq!(plain.logins().get(&login), fast.logins().get(&login));
        }
    }
}
