//! The v2.0 token endpoint for the client-credentials grant
//! (`POST /{tenant}/oauth2/v2.0/token`), answering as Entra does: a bearer
//! token with `expires_in` and `ext_expires_in`, or an OAuth error body
//! with its AADSTS code (`invalid_client` 7000215 for a wrong secret,
//! `unauthorized_client` 700016 for an unknown app, `invalid_request`
//! 90002 for an unknown tenant). Clients prove themselves with a secret or
//! with a client assertion (`client_assertion_type` jwt-bearer), as
//! workload identity federation does.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{uuid_like, Shared};

const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The form of a client-credentials token request.
#[derive(Debug, Deserialize)]
pub(super) struct TokenForm {
    grant_type: String,
    client_id: String,
    client_secret: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: String,
}

/// An OAuth 2.0 error as the identity platform writes it.
fn oauth_error(status: StatusCode, error: &str, code: u32, description: &str) -> Response {
    let trace = uuid_like();
    (
        status,
        Json(json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {description} Trace ID: {trace} Correlation ID: {trace} Timestamp: 2026-01-01 00:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-01-01 00:00:00Z",
            "trace_id": trace,
            "correlation_id": trace,
        })),
    )
        .into_response()
}

pub(super) async fn token(
    State(s): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    Form(form): Form<TokenForm>,
) -> Response {
    s.token_requests.fetch_add(1, Ordering::Relaxed);
    if form.grant_type != "client_credentials" {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
        );
    }
    if !form.scope.ends_with("/.default") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    if !s.apps.iter().any(|a| a.tenant == tenant) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            90002,
            &format!("Tenant '{tenant}' not found."),
        );
    }
    let Some(app) = s
        .apps
        .iter()
        .find(|a| a.tenant == tenant && a.client_id == form.client_id)
    else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{}' was not found in the directory '{tenant}'.",
                form.client_id
            ),
        );
    };
    match (&form.client_secret, &form.client_assertion) {
        (Some(secret), None) if *secret == app.secret => {}
        (Some(_), None) => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app.",
            )
        }
        (None, Some(assertion)) if form.client_assertion_type.as_deref() == Some(JWT_BEARER) => {
            if let Err((code, description)) = app.check_assertion(assertion, &s.url_for_audience(&tenant)) {
                return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", code, &description);
            }
        }
        _ => {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        }
    }
    let lifetime = s.switch(|sw| sw.token_lifetime);
    let token = s.issue_token(lifetime);
    Json(json!({
        "token_type": "Bearer",
        "expires_in": lifetime.as_secs(),
        "ext_expires_in": lifetime.as_secs(),
        "access_token": token,
    }))
    .into_response()
}

/// The query of an App Service managed identity token request.
#[derive(Debug, Deserialize)]
pub(super) struct ManagedIdentityQuery {
    #[serde(rename = "api-version")]
    api_version: String,
    resource: String,
    client_id: Option<String>,
}

/// `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...[&client_id=...]`
/// with the `X-IDENTITY-HEADER` secret, as App Service documents it.
pub(super) async fn managed_identity(
    State(s): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    axum::extract::Query(q): axum::extract::Query<ManagedIdentityQuery>,
) -> Response {
    s.token_requests.fetch_add(1, Ordering::Relaxed);
    let Some(identity) = s.managed_identity.lock().unwrap().clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bad = |status: StatusCode, message: &str| {
        (
            status,
            Json(json!({ "statusCode": status.as_u16(), "message": message })),
        )
            .into_response()
    };
    if headers.get("x-identity-header").and_then(|v| v.to_str().ok()) != Some(identity.header.as_str()) {
        return bad(StatusCode::UNAUTHORIZED, "Missing or invalid X-IDENTITY-HEADER.");
    }
    if q.api_version != "2019-08-01" {
        return bad(StatusCode::BAD_REQUEST, "Unsupported api-version.");
    }
    let wanted_ok = match &q.client_id {
        Some(id) => identity.user_assigned && *id == identity.client_id,
        None => !identity.user_assigned,
    };
    if !wanted_ok {
        return bad(
            StatusCode::BAD_REQUEST,
            "No Managed Identity found for specified ClientId/ResourceId/PrincipalId.",
        );
    }
    let lifetime = s.switch(|sw| sw.token_lifetime);
    let token = s.issue_token(lifetime);
    let expires_on = chrono::Utc::now().timestamp() + lifetime.as_secs() as i64;
    Json(json!({
        "access_token": token,
        "expires_on": expires_on.to_string(),
        "resource": q.resource,
        "token_type": "Bearer",
        "client_id": identity.client_id,
    }))
    .into_response()
}
