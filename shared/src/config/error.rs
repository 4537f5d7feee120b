//! Errors and warnings produced while loading, checking and resolving a mapping config.

use std::fmt;

use serde::Serialize;

/// Why a mapping config was rejected. Every variant names the config key it is about.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The text is not valid TOML (bad syntax, duplicate key, ...).
    #[error("mapping config is not valid TOML (line {line}, column {column}): {message}")]
    Syntax { line: usize, column: usize, message: String },
    /// The TOML is well formed but a key does not fit the schema: unknown key, wrong value
    /// type, value outside an enumeration, missing required key.
    #[error("mapping config key `{path}`{}: {message}", fmt_position(*.line, *.column))]
    Key {
        /// Dotted key path, e.g. `profile.status_map.Leave`; `<root>` for the top level.
        path: String,
        line: Option<usize>,
        column: Option<usize>,
        message: String,
    },
    /// Semantic problems found by the pure checks (`from_toml_str`, `check_columns`,
    /// `resolve`). All problems found in one pass are listed, not just the first.
    #[error("{}", fmt_problems(.0))]
    Invalid(Vec<Problem>),
}

impl ConfigError {
    /// The semantic problems (empty for syntax and key errors).
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Invalid(problems) => problems,
            _ => &[],
        }
    }
}

/// One semantic problem: which key, what kind, and a message for humans.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Dotted key path the problem is about, e.g. `user.name` or `profile.attributes.dept`.
    pub key: String,
    pub kind: ProblemKind,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

/// Machine-readable category of a [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProblemKind {
    /// A value is out of its allowed range or otherwise malformed.
    InvalidValue,
    /// A template does not parse (unbalanced brace, empty placeholder).
    TemplateSyntax,
    /// A template placeholder names a column that is not in `csv.headers` / the CSV header.
    UnknownPlaceholder,
    /// A `[columns]` entry names a column that is not in `csv.headers` / the CSV header.
    UnknownColumn,
    /// Two settings contradict each other or one needs another that is missing.
    Inconsistent,
    /// The profile type is not in the NERM catalog (or is ambiguous).
    UnknownProfileType,
    /// A mapped attribute uid is not in the NERM catalog.
    UnknownAttribute,
    /// An attribute exists but has the wrong data type for its use.
    AttributeType,
    /// A role name is not in the NERM catalog (or is ambiguous).
    UnknownRole,
    /// A role exists but cannot be used as configured (no groups, wrong type).
    UnusableRole,
}

/// Something legal but risky; the run report lists these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigWarning {
    /// Dotted key path the warning is about.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.key, self.message)
    }
}

fn fmt_position(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(line), Some(column)) => format!(" (line {line}, column {column})"),
        (Some(line), None) => format!(" (line {line})"),
        _ => String::new(),
    }
}

fn fmt_problems(problems: &[Problem]) -> String {
    match problems {
        [one] => format!("invalid mapping config: {one}"),
        many => {
            let mut out = format!("invalid mapping config ({} problems): ", many.len());
            for (i, p) in many.iter().enumerate() {
                if i > 0 {
                    out.push_str("; ");
                }
                out.push_str(&p.to_string());
            }
            out
        }
    }
}

/// Collects problems during a validation pass.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn push(&mut self, key: impl Into<String>, kind: ProblemKind, message: String) {
        self.0.push(Problem { key: key.into(), kind, message });
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The recorded problems as an error (callers make sure there is at least one).
    pub(crate) fn into_error(self) -> ConfigError {
        ConfigError::Invalid(self.0)
    }

    pub(crate) fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(self.0)) }
    }
}

/// Formats a list of known names for an error message: sorted, deduplicated, backticked and
/// truncated after `MAX_LISTED` entries.
pub(crate) fn known_list<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    const MAX_LISTED: usize = 20;
    let mut names: Vec<&str> = names.into_iter().collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return "none".to_owned();
    }
    let mut out = String::new();
    for (i, name) in names.iter().take(MAX_LISTED).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('`');
        out.push_str(name);
        out.push('`');
    }
    if names.len() > MAX_LISTED {
        out.push_str(&format!(", … ({} more)", names.len() - MAX_LISTED));
    }
    out
}
