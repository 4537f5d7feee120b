//! What both Lambdas share at the runtime boundary: an invocation error that tells Lambda (and
//! its retries) whether trying again can help. Compiled with the `lambda` feature.

/// An invocation failure.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct HandlerError {
    pub retryable: bool,
    pub message: String,
}

impl HandlerError {
    pub fn retryable(message: impl Into<String>) -> Self {
        HandlerError { retryable: true, message: message.into() }
    }
    pub fn permanent(message: impl Into<String>) -> Self {
        HandlerError { retryable: false, message: message.into() }
    }
}

impl From<HandlerError> for lambda_runtime::Diagnostic {
    fn from(e: HandlerError) -> Self {
        let error_type = if e.retryable { "NermSync.Retryable" } else { "NermSync.Permanent" };
        lambda_runtime::Diagnostic { error_type: error_type.into(), error_message: e.message }
    }
}
