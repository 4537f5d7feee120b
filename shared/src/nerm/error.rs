//! What can go wrong talking to NERM, split by what the caller should do about it.

use std::collections::BTreeMap;

/// A failed NERM call. Messages never contain the token or request bodies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum NermError {
    /// NERM rejected the request (400 and friends): retrying the same call cannot help.
    #[error("NERM rejected {route}: {status} {message}{}", fmt_fields(.fields))]
    Rejected { route: String, status: u16, message: String, fields: BTreeMap<String, String> },
    /// The record does not exist (404).
    #[error("NERM has no such record at {route}")]
    NotFound { route: String },
    /// The token was refused even after one refresh.
    #[error("NERM refused the API token for {route} (401), also after refreshing it")]
    Unauthorized { route: String },
    /// A write may or may not have been applied (timeout, reset, 5xx after sending).
    /// The caller must look the record up before trying again. `timed_out`: the client stopped
    /// waiting, so NERM may still be working on the request and apply it later.
    #[error("NERM did not confirm {route} ({cause}); the write may or may not have been applied")]
    Ambiguous { route: String, cause: String, timed_out: bool },
    /// Retries for this call or the run's retry budget ran out on 429/5xx/transport errors.
    #[error("giving up on {route} after {attempts} attempts: {cause}")]
    GaveUp { route: String, attempts: u32, cause: String },
    /// The answer was not the JSON shape the API documents.
    #[error("unexpected answer from {route}: {detail}")]
    Protocol { route: String, detail: String },
    /// The ISC token endpoint refused the PAT's client id and secret (400/401/403), also after
    /// reading them afresh: a run-level error, never retried. `status: None` when the same
    /// credentials had already been refused earlier in the run.
    #[error("the token URL {token_url} refused the client id and secret{}; check the personal access token", fmt_status(.status))]
    CredentialsRefused { token_url: String, status: Option<u16> },
    /// The ISC token endpoint could not issue a token right now (429, 5xx, no answer): the
    /// client retries the NERM call within its retry budget.
    #[error("no access token from {token_url}: {cause}")]
    TokenUnavailable { token_url: String, cause: String, retry_after: Option<std::time::Duration> },
    /// Configuration or token-provider failure before any request was sent.
    #[error("{0}")]
    Setup(String),
}

fn fmt_status(status: &Option<u16>) -> String {
    status.map(|s| format!(" ({s})")).unwrap_or_default()
}

fn fmt_fields(fields: &BTreeMap<String, String>) -> String {
    if fields.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = fields.iter().map(|(k, v)| format!("{k} {v}")).collect();
    format!(" ({})", parts.join("; "))
}

impl NermError {
    /// Whether the same call might succeed later (for SQS retry decisions).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            NermError::Ambiguous { .. }
                | NermError::GaveUp { .. }
                | NermError::Unauthorized { .. }
                | NermError::TokenUnavailable { .. }
        )
    }

    /// A 400 whose field errors say the value is already taken (e.g. a login).
    pub fn is_already_taken(&self, field: &str) -> bool {
        matches!(self, NermError::Rejected { fields, .. }
            if fields.get(field).is_some_and(|m| super::model::says_already_taken(m)))
    }
}
