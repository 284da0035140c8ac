//! The frame every page shares (title, navigation, language), rendering,
//! redirects after a form, and error pages.

use askama::Template;
use axum::http::header::LOCATION;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use jitgate_shared::v1::api::Role;

use super::text::{Lang, Texts};
use super::viewer::Viewer;
use crate::api::error::ApiError;
use crate::service::ServiceError;

/// Which page family a page belongs to (the navigation marks it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Here {
    Home,
    Catalogue,
    Inbox,
    Admin,
    Other,
}

impl Here {
    pub fn as_str(self) -> &'static str {
        match self {
            Here::Home => "home",
            Here::Catalogue => "catalogue",
            Here::Inbox => "inbox",
            Here::Admin => "admin",
            Here::Other => "",
        }
    }
}

/// What every page shows around its content.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub lang: Lang,
    pub t: &'static Texts,
    pub title: String,
    pub nav: Option<Nav>,
    /// Topics whose changes refresh the page live (space-separated;
    /// empty: none).
    pub live: &'static str,
    /// This page's path, for the language chooser to come back to.
    pub path: String,
    /// The session's form token (empty before signing in).
    pub csrf: String,
    pub languages: Vec<(&'static str, &'static str, bool)>,
}

/// The signed-in person's navigation.
#[derive(Debug, Clone)]
pub struct Nav {
    /// [`Here::as_str`] of the page.
    pub here: &'static str,
    pub name: String,
    pub user: String,
    pub csrf: String,
    pub approver: bool,
    pub admin: bool,
}

impl Chrome {
    /// A page for nobody signed in yet.
    pub fn anonymous(lang: Lang, title: &str, path: &str) -> Self {
        Self {
            lang,
            t: lang.texts(),
            title: title.to_owned(),
            nav: None,
            live: "",
            path: path.to_owned(),
            csrf: String::new(),
            languages: Lang::ALL
                .iter()
                .map(|l| (l.code(), l.name(), *l == lang))
                .collect(),
        }
    }

    /// A page of `viewer`'s.
    pub fn of(viewer: &Viewer, here: Here, title: &str, path: &str) -> Self {
        Self {
            nav: Some(Nav {
                here: here.as_str(),
                name: viewer.user.display_name.clone(),
                user: viewer.user.id.to_string(),
                csrf: viewer.csrf().to_owned(),
                approver: viewer.user.has_role(Role::Approver),
                admin: crate::service::admin::is_privileged(&viewer.user),
            }),
            csrf: viewer.csrf().to_owned(),
            ..Self::anonymous(viewer.lang, title, path)
        }
    }

    /// Refreshed live when `topics` change.
    pub fn live(mut self, topics: &'static str) -> Self {
        self.live = topics;
        self
    }
}

/// Renders a page (a template that cannot render is a bug: logged, and a
/// plain 500 for the person).
pub fn render(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be shown; see the broker log",
            )
                .into_response()
        }
    }
}

/// After a form: see the result at `to` (303, so a reload does not post
/// again).
pub fn see_other(to: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        response.headers_mut().insert(LOCATION, v);
    }
    response
}

#[derive(Debug, Template)]
#[template(path = "console/error.html")]
pub struct ErrorPage {
    pub chrome: Chrome,
    pub message: String,
    pub back: String,
}

/// An error page saying what went wrong, in the viewer's language around
/// the service's own message (which names the input and the fix).
pub fn error(chrome: Chrome, status: StatusCode, message: String, back: &str) -> Response {
    let chrome = Chrome {
        title: chrome.t.error_title.to_owned(),
        live: "",
        ..chrome
    };
    render(
        status,
        &ErrorPage {
            chrome,
            message,
            back: back.to_owned(),
        },
    )
}

/// A service error as a page.
pub fn service_error(viewer: &Viewer, e: ServiceError, back: &str) -> Response {
    let e = ApiError::from(e);
    let chrome = Chrome::of(viewer, Here::Other, "", back);
    let message = if e.status == StatusCode::NOT_FOUND {
        chrome.t.not_found.to_owned()
    } else {
        e.body.message
    };
    error(chrome, e.status, message, back)
}

/// `GET /`: the console.
pub async fn to_console() -> Response {
    see_other("/console/")
}

/// Any other console path.
pub async fn not_found(headers: axum::http::HeaderMap) -> Response {
    let lang = super::viewer::lang_of(&headers);
    let chrome = Chrome::anonymous(lang, lang.texts().error_title, "/console/");
    let message = chrome.t.not_found.to_owned();
    error(chrome, StatusCode::NOT_FOUND, message, "/console/")
}
