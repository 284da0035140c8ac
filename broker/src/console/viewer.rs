//! Who is looking: the browser's session cookie, checked against a live
//! sign-in session on every request. Without one, a page sends the browser
//! to renew its session (`/api/v1/auth/refresh/browser`, where the refresh
//! cookie is sent), and from there to the sign-in page.
//!
//! And the pages that sign people in and out: the sign-in page (the
//! configured providers), one-time sign-in links (asked before used, so a
//! link previewer cannot spend one), sign-out, and the language choice.

use askama::Template;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{ACCEPT_LANGUAGE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::csrf::Submitted;
use super::page::{self, see_other, Chrome};
use super::text::Lang;
use crate::api::auth::{cookie, set_session_cookies, REFRESH_COOKIE, SESSION_COOKIE};
use crate::api::AppState;
use crate::domain::session::Session;
use crate::domain::user::User;
use crate::identity::sso::local_return_path;
use crate::service::ServiceError;

/// The cookie holding the person's language choice.
pub const LANG_COOKIE: &str = "jitgate_lang";

/// Where a browser renews its session (the refresh cookie's path).
const RENEW: &str = "/api/v1/auth/refresh/browser";

/// The signed-in person looking at the console.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub user: User,
    pub session: Session,
    pub lang: Lang,
}

impl Viewer {
    /// The token every form of this session carries.
    pub fn csrf(&self) -> &str {
        &self.session.csrf_secret
    }

    /// Whether `sent` is this session's form token (constant time; a
    /// session without one accepts no form).
    pub fn csrf_matches(&self, sent: &str) -> bool {
        let secret = self.csrf().as_bytes();
        !secret.is_empty() && bool::from(secret.ct_eq(sent.as_bytes()))
    }
}

/// The language of a request: the person's choice, else the browser's.
pub fn lang_of(headers: &HeaderMap) -> Lang {
    let chosen = cookie(headers, LANG_COOKIE);
    let accept = headers.get(ACCEPT_LANGUAGE).and_then(|v| v.to_str().ok());
    Lang::negotiate(chosen.as_deref(), accept)
}

/// Where a page without a session goes: renew, then come back.
fn renew(parts: &Parts) -> Response {
    let back = if parts.method == axum::http::Method::GET {
        parts
            .uri
            .path_and_query()
            .map_or("/console/", |p| p.as_str())
            .to_owned()
    } else {
        "/console/".to_owned()
    };
    see_other(&format!("{RENEW}?return_to={}", url_escape(&back)))
}

/// Percent-encodes everything but unreserved characters and `/`.
pub fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let lang = lang_of(&parts.headers);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(renew(parts));
        };
        let client = crate::api::limits::client_of(&parts.extensions);
        if let Some(client) = client {
            if state.limits.may_present_token(client).is_err() {
                let chrome = Chrome::anonymous(lang, lang.texts().error_title, "/console/");
                return Err(page::error(
                    chrome,
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many refused sign-ins from here; wait a minute".into(),
                    "/console/",
                ));
            }
        }
        match state.broker.authenticate_browser(&token).await {
            Ok((user, session)) => {
                // The person's own choice outranks the browser's.
                let lang = user.language.as_deref().and_then(Lang::from_code).unwrap_or(lang);
                Ok(Viewer { user, session, lang })
            }
            Err(ServiceError::Unauthenticated(_)) => {
                if let Some(client) = client {
                    state.limits.token_failed(client);
                }
                Err(renew(parts))
            }
            Err(e) => {
                let e = crate::api::error::ApiError::from(e);
                let chrome = Chrome::anonymous(lang, lang.texts().error_title, "/console/");
                Err(page::error(chrome, e.status, e.body.message, "/console/"))
            }
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ReturnTo {
    pub return_to: Option<String>,
}

/// A console path to come back to, or the console's home.
pub fn console_path(asked: Option<&str>) -> String {
    asked
        .and_then(local_return_path)
        .filter(|p| p.starts_with("/console/"))
        .unwrap_or_else(|| "/console/".to_owned())
}

/// One way to sign in.
#[derive(Debug)]
pub struct ProviderLink {
    pub name: String,
    pub href: String,
}

#[derive(Debug, Template)]
#[template(path = "console/sign_in.html")]
pub struct SignInPage {
    pub chrome: Chrome,
    pub providers: Vec<ProviderLink>,
}

/// `GET /console/sign-in`: the configured providers.
pub async fn sign_in_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ReturnTo>,
) -> Response {
    let lang = lang_of(&headers);
    let back = console_path(q.return_to.as_deref());
    let providers = s
        .broker
        .sso()
        .provider_names()
        .into_iter()
        .map(|name| ProviderLink {
            href: format!(
                "/auth/login?provider={}&return_to={}",
                url_escape(&name),
                url_escape(&back)
            ),
            name,
        })
        .collect();
    page::render(
        StatusCode::OK,
        &SignInPage {
            chrome: Chrome::anonymous(lang, lang.texts().sign_in_title, "/console/sign-in"),
            providers,
        },
    )
}

#[derive(Debug, Template)]
#[template(path = "console/link.html")]
pub struct LinkPage {
    pub chrome: Chrome,
    pub name: String,
    pub user: String,
    pub action: String,
}

fn link_refused(lang: Lang) -> Response {
    let chrome = Chrome::anonymous(lang, lang.texts().link_title, "/console/sign-in");
    let message = chrome.t.link_invalid.to_owned();
    page::error(chrome, StatusCode::UNAUTHORIZED, message, "/console/sign-in")
}

/// `GET /console/link/{secret}`: whose link this is, and a button to use it.
pub async fn link_page(
    State(s): State<AppState>,
    headers: HeaderMap,
    Path(secret): Path<String>,
) -> Response {
    let lang = lang_of(&headers);
    match s.broker.sign_in_link_user(&secret).await {
        Ok(user) => page::render(
            StatusCode::OK,
            &LinkPage {
                chrome: Chrome::anonymous(lang, lang.texts().link_title, "/console/sign-in"),
                name: user.display_name,
                user: user.id.to_string(),
                action: format!("{}{secret}", crate::service::sign_in::LINK_PATH),
            },
        ),
        Err(_) => link_refused(lang),
    }
}

/// `POST /console/link/{secret}`: spends the link; the session arrives as
/// cookies. (The link's secret is the proof; there is no session yet to
/// bind a form token to.)
pub async fn use_link(State(s): State<AppState>, headers: HeaderMap, Path(secret): Path<String>) -> Response {
    let lang = lang_of(&headers);
    match s.broker.redeem_sign_in_link(&secret).await {
        Ok(tokens) => {
            let mut response = see_other("/console/");
            set_session_cookies(&s, &mut response, &tokens);
            response
        }
        Err(e) => {
            tracing::info!(error = %e, "sign-in link refused");
            link_refused(lang)
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct Nothing {}

/// `POST /console/sign-out`: ends the session at the broker.
pub async fn sign_out(State(s): State<AppState>, headers: HeaderMap, form: Submitted<Nothing>) -> Response {
    let token = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    if let Err(e) = s.broker.logout(&form.viewer.user, &token).await {
        return page::service_error(&form.viewer, e, "/console/");
    }
    let mut response = see_other("/console/sign-in");
    clear_session_cookies(&mut response);
    response
}

pub fn clear_session_cookies(response: &mut Response) {
    for (name, path) in [
        (SESSION_COOKIE, "/"),
        (REFRESH_COOKIE, crate::api::auth::REFRESH_PATH),
    ] {
        if let Ok(v) = HeaderValue::from_str(&format!("{name}=; Path={path}; Max-Age=0")) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct LanguageChoice {
    pub lang: String,
    pub return_to: Option<String>,
}

/// `GET /console/language?lang=ja`: remembers the choice in this browser's
/// cookie (a preference only: nothing else changes, so a plain link may
/// set it). Pages before signing in offer this.
pub async fn choose_language(Query(q): Query<LanguageChoice>) -> Response {
    remember_language(&q)
}

/// `POST /console/language`: the signed-in person's choice, kept with
/// their account (every browser they sign in from speaks it) and in the
/// cookie.
pub async fn save_language(State(s): State<AppState>, form: Submitted<LanguageChoice>) -> Response {
    let Submitted { viewer, form } = form;
    let Some(lang) = Lang::from_code(&form.lang) else {
        return remember_language(&form);
    };
    match s.broker.set_language(&viewer.user, Some(lang.code())).await {
        Ok(()) => remember_language(&form),
        Err(e) => page::service_error(&viewer, e, &console_path(form.return_to.as_deref())),
    }
}

fn remember_language(q: &LanguageChoice) -> Response {
    let back = console_path(q.return_to.as_deref());
    let mut response = see_other(&back);
    if let Some(lang) = Lang::from_code(&q.lang) {
        let c = format!(
            "{LANG_COOKIE}={}; Path=/; Max-Age=31536000; SameSite=Lax",
            lang.code()
        );
        if let Ok(v) = HeaderValue::from_str(&c) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_come_back_to() {
        assert_eq!(console_path(Some("/console/inbox?x=1")), "/console/inbox?x=1");
        for bad in [
            "https://evil.example/console/",
            "//evil.example/",
            "/api/v1/grants",
            "/console",
            "\\\\x",
        ] {
            assert_eq!(console_path(Some(bad)), "/console/", "{bad}");
        }
        assert_eq!(console_path(None), "/console/");
    }

    #[test]
    fn escaping_keeps_paths_readable() {
        assert_eq!(
            url_escape("/console/requests/new?resource=a b&x"),
            "/console/requests/new%3Fresource%3Da%20b%26x"
        );
    }
}
