//! The JSON error body every API error uses.

use serde::{Deserialize, Serialize};

/// Stable, machine-readable error codes. Messages may change; codes do not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body or a parameter is malformed or names something unknown.
    InvalidInput,
    /// No or bad credentials.
    Unauthenticated,
    /// Authenticated, but not allowed.
    Forbidden,
    NotFound,
    /// The request conflicts with the current state (already decided, ...).
    Conflict,
    /// The body is larger than the broker accepts.
    PayloadTooLarge,
    /// The broker failed; the message says where.
    Internal,
    /// The broker is not ready to serve (store not open, ...).
    Unavailable,
    /// This client is over a quota (sign-ins, refused tokens); the
    /// `Retry-After` header says when to try again.
    TooManyRequests,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// The field or parameter at fault, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
