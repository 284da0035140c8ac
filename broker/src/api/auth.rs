//! Sign-in: `/auth/login` and `/auth/oidc/callback` for browsers, and
//! `/api/v1/auth/*` for the CLI (login, code exchange, refresh, logout);
//! `/api/v1/admin/sessions` for admins.
//!
//! A browser's session is two cookies: `jitgate_session` (the short-lived
//! API token; HttpOnly, SameSite=Lax) and `jitgate_refresh` (only sent to
//! the refresh endpoint; SameSite=Strict).

use axum::extract::{Query, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use jitgate_shared::v1::api::{
    DeviceLoginBody, DevicePoll, DevicePollBody, DeviceStarted, LoginBody, LoginStarted, RefreshBody,
    SessionView, SsoProviderView, TokenExchangeBody, TokenSet,
};
use jitgate_shared::v1::ErrorBody;
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{Body, Caller, OptionalBody, Params, PathParam};
use super::AppState;
use crate::domain::session::LoginClient;
use crate::service::sign_in::Finished;

pub const SESSION_COOKIE: &str = "jitgate_session";
pub const REFRESH_COOKIE: &str = "jitgate_refresh";
pub const REFRESH_PATH: &str = "/api/v1/auth/refresh";

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = LoginStarted), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No sign-in provider has that name"),
        (status = 409, body = ErrorBody, description = "No sign-in provider is configured"),
        (status = 503, body = ErrorBody)))]
pub async fn login(
    State(s): State<AppState>,
    Body(body): Body<LoginBody>,
) -> Result<Json<LoginStarted>, ApiError> {
    let (authorization_url, provider) = s
        .broker
        .start_login(
            body.email.as_deref(),
            body.provider.as_deref(),
            LoginClient::Cli {
                redirect_uri: body.redirect_uri,
                code_challenge: body.code_challenge,
            },
        )
        .await?;
    Ok(Json(LoginStarted {
        authorization_url,
        provider,
    }))
}

#[utoipa::path(post, path = "/api/v1/auth/device", tag = "auth", request_body = Option<DeviceLoginBody>,
    responses((status = 200, body = DeviceStarted), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "No sign-in provider has that name"),
        (status = 409, body = ErrorBody, description = "No sign-in provider is configured"),
        (status = 503, body = ErrorBody)))]
pub async fn device(
    State(s): State<AppState>,
    OptionalBody(body): OptionalBody<DeviceLoginBody>,
) -> Result<Json<DeviceStarted>, ApiError> {
    Ok(Json(
        s.broker
            .start_device_login(body.email.as_deref(), body.provider.as_deref())
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/auth/device/token", tag = "auth", request_body = DevicePollBody,
    responses((status = 200, body = DevicePoll), (status = 401, body = ErrorBody)))]
pub async fn device_token(
    State(s): State<AppState>,
    Body(body): Body<DevicePollBody>,
) -> Result<Json<DevicePoll>, ApiError> {
    Ok(Json(s.broker.poll_device_login(&body.handle)?))
}

#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth", request_body = TokenExchangeBody,
    responses((status = 200, body = TokenSet), (status = 401, body = ErrorBody)))]
pub async fn token(
    State(s): State<AppState>,
    Body(body): Body<TokenExchangeBody>,
) -> Result<Json<TokenSet>, ApiError> {
    Ok(Json(
        s.broker
            .exchange_login(&body.state, &body.code, &body.code_verifier)
            .await?,
    ))
}

/// The refresh token from the body, or from the browser's cookie.
#[utoipa::path(post, path = "/api/v1/auth/refresh", tag = "auth", request_body = Option<RefreshBody>,
    responses((status = 200, body = TokenSet), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn refresh(
    State(s): State<AppState>,
    headers: HeaderMap,
    OptionalBody(body): OptionalBody<Option<RefreshBody>>,
) -> Result<Response, ApiError> {
    let from_cookie = body.is_none();
    let token = match body {
        Some(b) => b.refresh_token,
        None => cookie(&headers, REFRESH_COOKIE).ok_or_else(|| {
            ApiError::invalid(
                "refresh_token",
                "give `refresh_token` in the body (or the browser's cookie)",
            )
        })?,
    };
    let tokens = s.broker.refresh_session(&token).await?;
    let mut response = Json(&tokens).into_response();
    if from_cookie {
        set_session_cookies(&s, &mut response, &tokens);
    }
    Ok(response)
}

#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204),
        (status = 400, body = ErrorBody, description = "The token belongs to no sign-in session (an admin issued it)"),
        (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn logout(
    State(s): State<AppState>,
    headers: HeaderMap,
    Caller(user): Caller,
) -> Result<Response, ApiError> {
    let token = super::extract::presented_token(&headers).unwrap_or_default();
    s.broker.logout(&user, &token).await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    for name in [SESSION_COOKIE, REFRESH_COOKIE] {
        let path = if name == REFRESH_COOKIE { REFRESH_PATH } else { "/" };
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path={path}; Max-Age=0")) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SessionQuery {
    /// Only this user's sessions.
    pub user: Option<String>,
    /// Ended and expired sessions too.
    #[serde(default)]
    pub all: bool,
}

#[utoipa::path(get, path = "/api/v1/admin/sessions", tag = "admin", params(SessionQuery),
    responses((status = 200, body = Vec<SessionView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn sessions(
    State(s): State<AppState>,
    Caller(user): Caller,
    Params(q): Params<SessionQuery>,
) -> Result<Json<Vec<SessionView>>, ApiError> {
    Ok(Json(
        s.broker.list_sessions(&user, q.user.as_deref(), q.all).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/admin/sso", tag = "admin",
    responses((status = 200, body = Vec<SsoProviderView>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn sso_providers(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<SsoProviderView>>, ApiError> {
    Ok(Json(s.broker.list_sso_providers(&user)?))
}

#[utoipa::path(post, path = "/api/v1/admin/sessions/{id}/revoke", tag = "admin",
    params(("id" = String, Path, description = "Session id")),
    responses((status = 200, body = SessionView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_session(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<SessionView>, ApiError> {
    Ok(Json(s.broker.revoke_session(&user, &id).await?))
}

#[derive(Debug, Deserialize)]
pub struct WebLogin {
    pub email: Option<String>,
    pub provider: Option<String>,
    /// A path on this broker to go to when signed in.
    pub return_to: Option<String>,
}

/// `GET /auth/login`: a browser starts signing in.
pub async fn web_login(State(s): State<AppState>, Query(q): Query<WebLogin>) -> Result<Response, ApiError> {
    let asked = q.return_to.as_deref().unwrap_or("/auth/signed-in");
    let return_to = crate::identity::sso::local_return_path(asked).ok_or_else(|| {
        ApiError::invalid("return_to", "must be a path on this broker, like /auth/signed-in")
    })?;
    let (url, _) = s
        .broker
        .start_login(
            q.email.as_deref(),
            q.provider.as_deref(),
            LoginClient::Web { return_to },
        )
        .await?;
    Ok(redirect(&url))
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    pub state: Option<String>,
    pub code: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// RFC 9207 issuer identification; checked through the state's provider.
    pub iss: Option<String>,
}

/// `GET /auth/oidc/callback`: the provider sends the browser back.
pub async fn callback(State(s): State<AppState>, Query(q): Query<Callback>) -> Response {
    let Some(state) = q.state.as_deref() else {
        return page(
            StatusCode::BAD_REQUEST,
            "Sign-in failed: the provider's answer has no state.",
        );
    };
    let error = q.error.as_deref().map(|e| (e, q.error_description.as_deref()));
    let finished = s.broker.finish_login(state, q.code.as_deref(), error).await;
    landing(&s, finished)
}

/// `GET /auth/saml/{name}/metadata`: the SP metadata to give the IdP.
pub async fn saml_metadata(
    State(s): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, ApiError> {
    let xml = s.broker.saml_metadata(&name).await?;
    let mut response = (StatusCode::OK, xml).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/samlmetadata+xml"),
    );
    Ok(response)
}

#[derive(Debug, Deserialize)]
pub struct SamlPost {
    #[serde(rename = "SAMLResponse")]
    pub saml_response: String,
    #[serde(rename = "RelayState")]
    pub relay_state: Option<String>,
}

/// `POST /auth/saml/{name}/acs`: the IdP posts the browser's response here.
pub async fn saml_acs(
    State(s): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
    axum::extract::Form(form): axum::extract::Form<SamlPost>,
) -> Response {
    let finished = s
        .broker
        .finish_saml(&name, &form.saml_response, form.relay_state.as_deref())
        .await;
    landing(&s, finished)
}

/// Where a browser goes when a sign-in finished: the CLI's loopback
/// listener, or a page of ours with the session cookies; a page saying why
/// when it was refused.
fn landing(s: &AppState, finished: Result<Finished, crate::service::ServiceError>) -> Response {
    match finished {
        Ok(Finished::Cli { redirect: to }) => redirect(&to),
        Ok(Finished::Web { tokens, return_to }) => {
            let mut response = redirect(&return_to);
            set_session_cookies(s, &mut response, &tokens);
            response
        }
        Err(e) => {
            let e = ApiError::from(e);
            page(e.status, &format!("Sign-in failed: {}", e.body.message))
        }
    }
}

/// `GET /api/v1/auth/refresh/browser?return_to=/console/...`: a console
/// page found no live session cookie. Renews the session with the refresh
/// cookie (sent only under the refresh path) and goes back; without one,
/// or when it is refused, on to the sign-in page. Not part of the JSON API.
pub async fn refresh_browser(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<crate::console::viewer::ReturnTo>,
) -> Response {
    let back = crate::console::viewer::console_path(q.return_to.as_deref());
    if let Some(token) = cookie(&headers, REFRESH_COOKIE) {
        match s.broker.refresh_session(&token).await {
            Ok(tokens) => {
                let mut response = redirect(&back);
                set_session_cookies(&s, &mut response, &tokens);
                return response;
            }
            Err(e) => tracing::info!(error = %e, "browser session not renewed"),
        }
    }
    let sign_in = format!(
        "/console/sign-in?return_to={}",
        crate::console::viewer::url_escape(&back)
    );
    let mut response = redirect(&sign_in);
    crate::console::viewer::clear_session_cookies(&mut response);
    response
}

/// `GET /auth/signed-in`: where a browser lands by default.
pub async fn signed_in(Caller(user): Caller) -> Response {
    page(
        StatusCode::OK,
        &format!(
            "Signed in to jitgate as {} ({}). You can close this window.",
            user.display_name, user.id
        ),
    )
}

fn redirect(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A plain-text page for a person in a browser.
fn page(status: StatusCode, text: &str) -> Response {
    let mut response = (status, format!("{text}\n")).into_response();
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn set_session_cookies(s: &AppState, response: &mut Response, tokens: &TokenSet) {
    let now = s.broker.clock().now();
    let secure = if s.broker.settings().public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let access_age = (tokens.expires_at - now).num_seconds().max(0);
    let refresh_age = (tokens.session_expires_at - now).num_seconds().max(0);
    let cookies = [
        format!(
            "{SESSION_COOKIE}={}; HttpOnly; SameSite=Lax; Path=/; Max-Age={access_age}{secure}",
            tokens.access_token
        ),
        format!(
            "{REFRESH_COOKIE}={}; HttpOnly; SameSite=Strict; Path={REFRESH_PATH}; Max-Age={refresh_age}{secure}",
            tokens.refresh_token
        ),
    ];
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}
