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
    /// Seconds, for `Retry-After` (429, 503).
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

    /// The same error, telling the client to try again after `seconds`.
    pub fn retry_after(self, seconds: u64) -> Self {
        Self {
            retry_after: Some(seconds),
            ..self
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

/// `Retry-After` of a 503 for something the broker needs that is out of
/// reach (a sign-in provider, its own keys): long enough not to hammer it.
const UNAVAILABLE_RETRY_SECONDS: u64 = 5;

/// `Retry-After` of a 503 for a store with no connection free: a queue
/// that drains in well under a second.
const STORE_BUSY_RETRY_SECONDS: u64 = 1;

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
            )
            .retry_after(UNAVAILABLE_RETRY_SECONDS),
            ServiceError::Store(e) if e.is_conflict() => Self::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("{e}; try again"),
                None,
            ),
            ServiceError::Store(e) if e.is_busy() => {
                tracing::warn!(error = %e, "store busy; answered 503");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::Unavailable,
                    format!("{e}; try again"),
                    None,
                )
                .retry_after(STORE_BUSY_RETRY_SECONDS)
            }
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

#[cfg(test)]
mod tests {
    use axum::response::IntoResponse;

    use super::*;
    use crate::store::StoreError;

    #[test]
    fn a_busy_store_is_a_503_to_try_again_and_a_broken_one_a_500() {
        let busy =
            ApiError::from(ServiceError::Store(StoreError::Busy("no connection".into()))).into_response();
        assert_eq!(busy.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(busy.headers()["retry-after"], "1");
        let broken = ApiError::from(ServiceError::Store(StoreError::Schema("old".into()))).into_response();
        assert_eq!(broken.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!broken.headers().contains_key("retry-after"));
    }

    #[test]
    fn whatever_is_out_of_reach_is_a_503_that_says_when_to_try_again() {
        let out = ApiError::from(ServiceError::Unavailable("provider down".into())).into_response();
        assert_eq!(out.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(out.headers()["retry-after"], "5");
    }
}
