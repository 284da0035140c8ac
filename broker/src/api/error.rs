//! Every error leaves as JSON with a stable code and a message naming the
//! bad input.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use jitgate_shared::v1::{ErrorBody, ErrorCode};

use crate::service::ServiceError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Seconds, for `Retry-After` (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: ErrorCode,
        message: impl Into<String>,
        field: Option<String>,
    ) -> Self {
        Self {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
                field,
            },
            retry_after: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::InvalidInput,
            message,
            Some(field.to_owned()),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(seconds),
            );
        }
        response
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let message = e.to_string();
        match e {
            ServiceError::Unauthenticated(_) => Self::new(
                StatusCode::UNAUTHORIZED,
                ErrorCode::Unauthenticated,
                message,
                None,
            ),
            ServiceError::Forbidden(_) => {
                Self::new(StatusCode::FORBIDDEN, ErrorCode::Forbidden, message, None)
            }
            ServiceError::NotFound { .. } => {
                Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message, None)
            }
            ServiceError::Invalid { field, .. } => Self::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidInput,
                message,
                field.map(str::to_owned),
            ),
            ServiceError::Conflict(_) => Self::new(StatusCode::CONFLICT, ErrorCode::Conflict, message, None),
            ServiceError::Unavailable(_) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Unavailable,
                message,
                None,
            ),
            ServiceError::Store(e) if e.is_conflict() => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("{e}; try again"),
                None,
            ),
            ServiceError::Store(e) => {
                tracing::error!(error = %e, "store failure");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    "the broker could not read or write its store; see the broker log",
                    None,
                )
            }
        }
    }
}

pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        format!("no such endpoint: {}", uri.path()),
        None,
    )
}
