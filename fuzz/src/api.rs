//! The REST API's bodies and query strings, through the extractors its
//! handlers use (`Body`, `OptionalBody`, `Params`, axum's `Query` and
//! `Form` for sign-in), errors rendered as the client would get them.
//!
//! The first byte of an input picks the type; the rest is the body or the
//! query string.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use futures_util::FutureExt;
use jitgate_broker::api::admin::{AuditParams, ExplainQuery, OutboxQuery, TokenQuery};
use jitgate_broker::api::auth::{Callback, SamlPost, SessionQuery, WebLogin};
use jitgate_broker::api::extract::{Body, OptionalBody, Params};
use jitgate_broker::api::grants::ListGrants;
use jitgate_broker::api::requests::ListRequests;
use jitgate_broker::console::viewer::{console_path, ReturnTo};
use jitgate_broker::identity::sso::local_return_path;
use jitgate_shared::v1::api::{
    Configuration, CreateJoinTokenBody, CreateRequestBody, DeviceLoginBody, DevicePollBody, EnrollBody,
    ExtendBody, ForceCloseBody, LoginBody, Resource, ReviewBody, RevokeBody, ScimConnectionBody,
    TokenExchangeBody, UserBody,
};
use serde::de::DeserializeOwned;

/// A JSON body of each type the API takes.
pub fn api_body(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 15 {
        0 => json::<CreateRequestBody>(body),
        1 => optional::<ReviewBody>(body),
        2 => optional::<RevokeBody>(body),
        3 => json::<ExtendBody>(body),
        4 => json::<ForceCloseBody>(body),
        5 => json::<UserBody>(body),
        6 => json::<Configuration>(body),
        7 => json::<Resource>(body),
        8 => json::<ScimConnectionBody>(body),
        9 => json::<CreateJoinTokenBody>(body),
        10 => json::<EnrollBody>(body),
        11 => json::<LoginBody>(body),
        12 => optional::<DeviceLoginBody>(body),
        13 => json::<DevicePollBody>(body),
        _ => json::<TokenExchangeBody>(body),
    }
}

/// A query string of each type the API and sign-in take (the OIDC
/// callback's parameters among them), and the SAML ACS's form.
pub fn api_query(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(query) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 12 {
        0 => {
            if let Some(p) = params::<AuditParams>(query) {
                let _ = p.filter();
            }
        }
        1 => drop(params::<ListRequests>(query)),
        2 => drop(params::<ListGrants>(query)),
        3 => drop(params::<OutboxQuery>(query)),
        4 => drop(params::<TokenQuery>(query)),
        5 => drop(params::<SessionQuery>(query)),
        6 => drop(params::<ExplainQuery>(query)),
        7 => drop(plain_query::<Callback>(query)),
        8 => {
            if let Some(login) = plain_query::<WebLogin>(query) {
                if let Some(to) = login.return_to.as_deref() {
                    let _ = local_return_path(to);
                }
            }
        }
        9 => {
            if let Some(r) = plain_query::<ReturnTo>(query) {
                let path = console_path(r.return_to.as_deref());
                assert!(
                    path.starts_with('/') && !path.starts_with("//") && !path.contains('\\'),
                    "return_to `{:?}` sends the console to `{path}`",
                    r.return_to
                );
            }
        }
        _ => saml_post(rest),
    }
}

fn request(method: &str, uri: &str, content_type: &str, body: &[u8]) -> Option<Request> {
    Request::builder()
        .method(method)
        .uri(uri)
        .header(CONTENT_TYPE, content_type)
        .body(axum::body::Body::from(body.to_vec()))
        .ok()
}

/// Runs an extractor; with the whole body in memory it is ready at once.
fn ready<T>(future: impl std::future::Future<Output = T>) -> T {
    future
        .now_or_never()
        .expect("an extractor over an in-memory request is ready at once")
}

fn json<T: DeserializeOwned>(body: &[u8]) {
    let Some(req) = request("POST", "/api/v1/fuzz", "application/json", body) else {
        return;
    };
    if let Err(e) = ready(Body::<T>::from_request(req, &())) {
        let _ = e.into_response();
    }
}

fn optional<T: DeserializeOwned + Default>(body: &[u8]) {
    let Some(req) = request("POST", "/api/v1/fuzz", "application/json", body) else {
        return;
    };
    if let Err(e) = ready(OptionalBody::<T>::from_request(req, &())) {
        let _ = e.into_response();
    }
}

fn params<T: DeserializeOwned>(query: &str) -> Option<T> {
    let req = request("GET", &format!("/api/v1/fuzz?{query}"), "text/plain", b"")?;
    let (mut parts, _) = req.into_parts();
    match ready(Params::<T>::from_request_parts(&mut parts, &())) {
        Ok(Params(v)) => Some(v),
        Err(e) => {
            let _ = e.into_response();
            None
        }
    }
}

fn plain_query<T: DeserializeOwned>(query: &str) -> Option<T> {
    let req = request("GET", &format!("/auth/fuzz?{query}"), "text/plain", b"")?;
    let (mut parts, _) = req.into_parts();
    ready(axum::extract::Query::<T>::from_request_parts(&mut parts, &()))
        .ok()
        .map(|q| q.0)
}

fn saml_post(body: &[u8]) {
    let Some(req) = request(
        "POST",
        "/auth/saml/corp/acs",
        "application/x-www-form-urlencoded",
        body,
    ) else {
        return;
    };
    if let Ok(axum::extract::Form(post)) = ready(axum::extract::Form::<SamlPost>::from_request(req, &())) {
        crate::saml_response(post.saml_response.as_bytes());
    }
}
