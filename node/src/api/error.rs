//! API errors: the one place where failures become HTTP statuses.
//!
//! Every error is a JSON body `{"error": {"code": "...", "message": "..."}}` with a 4xx/5xx
//! status — never a 200.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ringkv_api::v1::{ErrorBody, ErrorDetail};
use serde::{Deserialize, Serialize};

/// An error a client sees, named for what the caller should do.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
pub enum ApiError {
    /// Malformed request: fix it and do not retry as is (400).
    #[error("{message}")]
    BadRequest { code: String, message: String },
    /// Key, value or body over a configured limit (413).
    #[error("{message}")]
    TooLarge { code: String, message: String },
    /// The key does not exist or has expired (404).
    #[error("{message}")]
    NotFound { message: String },
    /// A compare-and-swap precondition failed (409): re-read and retry with the current
    /// revision.
    #[error("{message}")]
    Conflict { message: String, current_revision: u64 },
    /// No credentials, or ones naming no principal (401 with `WWW-Authenticate`): send a
    /// valid `Authorization: Bearer` token.
    #[error("{message}")]
    Unauthorized { message: String },
    /// The principal may not do this: its role, databases or key prefixes do not allow
    /// it (403). Nothing was applied; retrying with the same credentials will not help.
    #[error("{message}")]
    Forbidden { message: String },
    /// Content type this route does not take (415).
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// No shard leader within the deadline, or none this node can reach: retry later
    /// (503 with Retry-After). A write surely did not apply.
    #[error("{message}")]
    Unavailable { message: String },
    /// As `Unavailable`, but a write was proposed (or sent to a leader that did not
    /// answer) and may still apply: read before retrying a non-idempotent write (503).
    #[error("{message}")]
    OutcomeUnknown { message: String },
    /// The shard leader's disk is nearly full: the write was refused before it was
    /// proposed and surely did not apply. Retry later (507 with Retry-After).
    #[error("{message}")]
    InsufficientStorage { message: String },
    /// A bug or a storage failure (500).
    #[error("{message}")]
    Internal { message: String },
}

impl ApiError {
    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError::BadRequest { code: code.to_string(), message: message.into() }
    }
    pub fn too_large(code: &str, message: impl Into<String>) -> Self {
        ApiError::TooLarge { code: code.to_string(), message: message.into() }
    }
    pub fn internal(message: impl std::fmt::Display) -> Self {
        ApiError::Internal { message: message.to_string() }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Unavailable { .. } | ApiError::OutcomeUnknown { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::InsufficientStorage { .. } => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The machine-readable code in the body; a bounded set, also used as a metric label.
    pub fn code(&self) -> &str {
        match self {
            ApiError::BadRequest { code, .. } | ApiError::TooLarge { code, .. } => code,
            ApiError::NotFound { .. } => "not_found",
            ApiError::Conflict { .. } => "revision_mismatch",
            ApiError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ApiError::Unauthorized { .. } => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::OutcomeUnknown { .. } => "outcome_unknown",
            ApiError::InsufficientStorage { .. } => "insufficient_storage",
            ApiError::Internal { .. } => "internal",
        }
    }
}

/// The router's errors as the client sees them.
impl From<crate::router::RouteError> for ApiError {
    fn from(e: crate::router::RouteError) -> Self {
        use crate::router::RouteError;
        match e {
            RouteError::Unavailable(message) => ApiError::Unavailable { message },
            RouteError::OutcomeUnknown(message) => ApiError::OutcomeUnknown { message },
            RouteError::InsufficientStorage(message) => ApiError::InsufficientStorage { message },
            RouteError::Conflict { current, .. } => {
                ApiError::Conflict { message: e.to_string(), current_revision: current }
            }
            RouteError::Internal(message) => ApiError::Internal { message },
        }
    }
}

/// The JSON body of an error.
pub fn error_body(code: &str, message: &str) -> serde_json::Value {
    let detail = ErrorDetail { code: code.to_owned(), message: message.to_owned(), current_revision: None };
    serde_json::to_value(ErrorBody { error: detail }).unwrap_or_default()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let current_revision = match &self {
            ApiError::Conflict { current_revision, .. } => Some(*current_revision),
            _ => None,
        };
        let error = ErrorDetail { code: self.code().to_owned(), message: self.to_string(), current_revision };
        let mut resp = (status, axum::Json(ErrorBody { error })).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"ringkv\""));
        }
        if status == StatusCode::INSUFFICIENT_STORAGE {
            // Space comes back when an operator or compaction frees it: not within a second.
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            // The body may be left unread: say so, so a keep-alive client does not send its
            // next request on a connection the server is about to close.
            resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}
