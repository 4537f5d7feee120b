//! Reading settings from the environment (the Lambdas' configuration), with errors that name
//! the variable.

/// A required, non-blank variable.
pub fn var(name: &str) -> Result<String, String> {
    std::env::var(name)
        .map(|v| v.trim().to_string())
        .ok()
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("environment variable {name} is not set"))
}

/// An optional variable; blank counts as unset.
pub fn var_opt(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

pub fn var_or(name: &str, default: &str) -> String {
    var_opt(name).unwrap_or_else(|| default.to_string())
}

/// A whole number, `default` when unset.
pub fn number(name: &str, default: u32) -> Result<u32, String> {
    match var_opt(name) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| format!("environment variable {name} must be a whole number, got {v:?}")),
    }
}

/// Writes a function's CloudWatch metrics (counts, dimension `Function`); see [`crate::metrics`].
pub fn emit_metrics(function: &str, metrics: &[(&str, u64)]) {
    let counts: Vec<_> = metrics.iter().map(|&(name, value)| crate::metrics::Metric::count(name, value)).collect();
    crate::metrics::emit(&[("Function", function)], &counts);
}
