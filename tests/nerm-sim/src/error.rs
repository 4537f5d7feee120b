//! The error bodies NERM answers with (docs/nerm-api.md, "Base URL and envelopes" "Errors"), as one type every handler returns.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An API failure, rendered exactly as NERM renders it.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// 400 `{"error": msg}`: bad JSON, missing wrapper, bad parameters.
    BadRequest(String),
    /// 400 `{"error": msg, "errors": {field: message}}`: a model validation failure.
    Validation { error: String, errors: Map<String, Value> },
    /// 404 `{"error": "The requested <Type> was not found"}` (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    NotFound(&'static str),
    /// 401 `{"error": ...}` (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    Unauthorized,
    /// 429 with `Retry-After` seconds (docs/nerm-api.md, "Open questions, and the simulator switch for each").
    TooManyRequests { retry_after_secs: u64 },
    /// 500 `{"error": "Sorry something went wrong"}`.
    Internal,
}

impl ApiError {
    pub fn bad_request(msg: impl Into<String>) -> Self {
        ApiError::BadRequest(msg.into())
    }

    /// A validation failure on one record; `action` is "create" or "update".
    pub fn invalid(object: &str, action: &str, errors: Map<String, Value>) -> Self {
        ApiError::Validation { error: format!("The {object} failed to {action}"), errors }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> Value {
        match self {
            ApiError::BadRequest(msg) => json!({ "error": msg }),
            ApiError::Validation { error, errors } => json!({ "error": error, "errors": errors }),
            ApiError::NotFound(kind) => {
                json!({ "error": format!("The requested {kind} was not found") })
            }
            ApiError::Unauthorized => {
                json!({ "error": "Unauthorized: a valid API token is required" })
            }
            ApiError::TooManyRequests { .. } => {
                json!({ "error": "Rate limit exceeded, retry later" })
            }
            ApiError::Internal => json!({ "error": "Sorry something went wrong" }),
        }
    }

    /// The per-record error strings used in bulk job results.
    pub fn messages(&self) -> Vec<String> {
        match self {
            ApiError::Validation { errors, .. } => {
                errors.iter().map(|(k, v)| format!("{k} {}", v.as_str().unwrap_or_default())).collect()
            }
            other => vec![other.body()["error"].as_str().unwrap_or_default().to_string()],
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status(), axum::Json(self.body())).into_response();
        if let ApiError::TooManyRequests { retry_after_secs } = self {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        resp
    }
}

/// Collects field errors the way Rails models do, then turns them into one [`ApiError`].
#[derive(Default)]
pub struct FieldErrors(Map<String, Value>);

impl FieldErrors {
    pub fn add(&mut self, field: &str, msg: &str) {
        self.0.entry(field.to_string()).or_insert_with(|| Value::String(msg.to_string()));
    }
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn into_result(self, object: &str, action: &str) -> Result<(), ApiError> {
        if self.0.is_empty() { Ok(()) } else { Err(ApiError::invalid(object, action, self.0)) }
    }
}
