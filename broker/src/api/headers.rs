//! The headers every response of the broker carries, whatever answers it
//! (API, SCIM, sign-in, console, operations, errors): no MIME sniffing, no
//! referrer, HSTS when people reach the broker over https, and on any HTML
//! the console's Content Security Policy, no framing and no caching unless
//! the page says otherwise. The console adds its own on top
//! (`console::security`).

use axum::extract::{Request, State};
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use crate::console::security::CONTENT_SECURITY_POLICY_VALUE;

/// A year, as browsers' HSTS preload lists ask.
const HSTS: &str = "max-age=31536000";

pub async fn every_response(State(s): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let https = s.broker.settings().public_url.starts_with("https://");
    let h = response.headers_mut();
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.entry(REFERRER_POLICY)
        .or_insert(HeaderValue::from_static("no-referrer"));
    if https {
        h.insert(STRICT_TRANSPORT_SECURITY, HeaderValue::from_static(HSTS));
    }
    let html = h
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_start().get(..9))
        .is_some_and(|v| v.eq_ignore_ascii_case("text/html"));
    if html {
        h.entry(CONTENT_SECURITY_POLICY)
            .or_insert(HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE));
        h.entry(X_FRAME_OPTIONS)
            .or_insert(HeaderValue::from_static("DENY"));
        h.entry(CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    response
}
