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

/// Writes CloudWatch metrics in Embedded Metric Format: one JSON line on stdout, which Lambda's
/// log pipeline turns into metrics (namespace `NermEmployeeSync`, dimension `Function`).
/// Outside Lambda (tests, the local demo) the line goes to the debug log instead.
pub fn emit_metrics(function: &str, metrics: &[(&str, u64)]) {
    let mut line = serde_json::json!({
        "_aws": {
            "Timestamp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            "CloudWatchMetrics": [{
                "Namespace": "NermEmployeeSync",
                "Dimensions": [["Function"]],
                "Metrics": metrics.iter().map(|(name, _)| serde_json::json!({ "Name": name, "Unit": "Count" })).collect::<Vec<_>>(),
            }]
        },
        "Function": function,
    });
    for (name, value) in metrics {
        line[*name] = serde_json::json!(value);
    }
    if var_opt("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        println!("{line}");
    } else {
        tracing::debug!(metrics = %line, "metrics");
    }
}
