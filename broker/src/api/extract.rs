//! Extractors whose rejections are JSON errors naming the bad field.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use jitgate_shared::v1::ErrorCode;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::AppState;
use crate::domain::user::User;

/// The authenticated caller, from `Authorization: Bearer <token>`, or a
/// browser's `jitgate_session` cookie. A cookie only authenticates reads,
/// and writes whose `Origin` is the broker's own (no cross-site requests
/// made with someone's cookie).
#[derive(Debug)]
pub struct Caller(pub User);

fn unauthenticated(message: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthenticated,
        message,
        None,
    )
}

/// The bearer token of a request, or its session cookie.
pub fn presented_token(headers: &axum::http::HeaderMap) -> Option<String> {
    match headers.get(axum::http::header::AUTHORIZATION) {
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(|t| t.trim().to_owned()),
        None => super::auth::cookie(headers, super::auth::SESSION_COOKIE),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = match parts.headers.get(axum::http::header::AUTHORIZATION) {
            Some(header) => {
                let header = header
                    .to_str()
                    .map_err(|_| unauthenticated("the Authorization header must be `Bearer <token>`"))?;
                header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
                    .ok_or_else(|| unauthenticated("the Authorization header must be `Bearer <token>`"))?
                    .trim()
                    .to_owned()
            }
            None => {
                let token = super::auth::cookie(&parts.headers, super::auth::SESSION_COOKIE)
                    .ok_or_else(|| unauthenticated("missing `Authorization: Bearer <token>` header"))?;
                let safe = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
                if !safe {
                    let origin = parts
                        .headers
                        .get(axum::http::header::ORIGIN)
                        .and_then(|v| v.to_str().ok());
                    let own = state.broker.settings().public_url.trim_end_matches('/');
                    if origin != Some(own) {
                        return Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            ErrorCode::Forbidden,
                            "a session cookie authenticates writes only from the broker's own origin",
                            None,
                        ));
                    }
                }
                token
            }
        };
        let client = super::limits::client_of(&parts.extensions);
        super::limits::presenting_token(&state.limits, client, state.broker.authenticate(&token))
            .await
            .map(Caller)
    }
}

/// A JSON body; unknown fields, wrong types and oversized bodies are refused.
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Body(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(rejection: JsonRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the broker accepts",
            None,
        );
    }
    let text = rejection.body_text();
    let detail = text
        .split_once("target type: ")
        .map(|(_, d)| d)
        .or_else(|| text.split_once("JSON body: ").map(|(_, d)| d))
        .unwrap_or(&text)
        .to_owned();
    let status = match rejection {
        JsonRejection::MissingJsonContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, ErrorCode::InvalidInput, detail.clone(), field_of(&detail))
}

/// The field a serde error is about: a leading `path: ` or an unknown field.
fn field_of(detail: &str) -> Option<String> {
    if let Some(rest) = detail.split("unknown field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    if let Some(rest) = detail.split("missing field `").nth(1) {
        return rest.split('`').next().map(str::to_owned);
    }
    let (head, _) = detail.split_once(": ")?;
    (!head.contains(' ') && head != ".").then(|| head.to_owned())
}

/// A JSON body that may be left out entirely (for `approve`, `revoke`, ...);
/// an empty body means the defaults, and a body that is there must be
/// JSON as `Body`'s is (415 otherwise: the document lists it).
#[derive(Debug)]
pub struct OptionalBody<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let said_json = is_json(req.headers());
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::PayloadTooLarge,
                    "the request body is larger than the broker accepts",
                    None,
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidInput,
                    r.body_text(),
                    None,
                )
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        if !said_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorCode::InvalidInput,
                "a request body must be sent as `Content-Type: application/json`",
                None,
            ));
        }
        serde_json::from_slice(&bytes).map(OptionalBody).map_err(|e| {
            let detail = e.to_string();
            ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::InvalidInput,
                detail.clone(),
                field_of(&detail),
            )
        })
    }
}

/// Whether the request says its body is JSON (`application/json`, or a
/// `+json` type), as axum's `Json` asks.
fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<mime::Mime>().ok())
        .is_some_and(|m| {
            m.type_() == "application" && (m.subtype() == "json" || m.suffix().is_some_and(|s| s == "json"))
        })
}

/// Query parameters; unknown or malformed ones are refused.
#[derive(Debug)]
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Params(v)),
            Err(rejection) => {
                let text = match &rejection {
                    QueryRejection::FailedToDeserializeQueryString(e) => e.body_text(),
                    other => other.body_text(),
                };
                let detail = text
                    .split_once("query string: ")
                    .map_or(text.clone(), |(_, d)| d.to_owned());
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidInput,
                    detail.clone(),
                    field_of(&detail),
                ))
            }
        }
    }
}

/// A path parameter; a malformed one (bad percent-escapes, invalid UTF-8) is
/// refused with a JSON error naming it.
#[derive(Debug)]
pub struct PathParam<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(PathParam(v)),
            Err(rejection) => {
                let text = rejection.body_text();
                let field = text.split('`').nth(1).map(str::to_owned);
                Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    ErrorCode::InvalidInput,
                    text,
                    field,
                ))
            }
        }
    }
}

/// Parses a path id, naming it when it is malformed.
pub fn path_id<T: std::str::FromStr>(name: &str, raw: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    raw.parse::<T>()
        .map_err(|e| ApiError::invalid(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn fields_are_found_in_serde_messages() {
        assert_eq!(
            field_of("unknown field `durration`, expected one of `resource`").as_deref(),
            Some("durration")
        );
        assert_eq!(
            field_of("duration_seconds: invalid type: string \"x\", expected u64 at line 1 column 9")
                .as_deref(),
            Some("duration_seconds")
        );
        assert_eq!(
            field_of("missing field `resource` at line 1").as_deref(),
            Some("resource")
        );
        assert_eq!(field_of("expected value at line 1 column 1"), None);
    }
}
