//! REST API v1. Handlers are thin: extract, call a service, map the error.
//!
//! - [`error`]: service errors to JSON error bodies and status codes.
//! - [`extract`]: bearer authentication and JSON/query extractors whose
//!   rejections name the bad field.
//! - [`requests`], [`grants`], [`admin`], [`agents`]: the resource handlers.
//! - [`scim`]: the SCIM 2.0 server under `/scim/v2` (its own errors).
//! - [`auth`]: sign-in (browser and CLI), refresh, sessions.
//! - [`integrations`]: what chat platforms call (Slack interactions).
//! - [`limits`]: per-client quotas on sign-ins and refused tokens.
//! - [`ops`]: health, readiness, metrics.
//! - [`openapi`]: the OpenAPI 3.1 document, generated from the handlers.

pub mod admin;
pub mod agents;
pub mod auth;
pub mod error;
pub mod extract;
pub mod grants;
pub mod headers;
pub mod integrations;
pub mod limits;
pub mod openapi;
pub mod ops;
pub mod requests;
pub mod scim;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::trace::TraceLayer;

use crate::service::Broker;

/// Largest request body accepted by default.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct AppState {
    pub broker: Broker,
    /// False until start-up finished (store open, policies loaded).
    pub ready: Arc<AtomicBool>,
    pub limits: Arc<limits::ClientLimits>,
}

pub fn router(state: AppState, max_body: usize) -> Router {
    let v1 = Router::new()
        .route("/openapi.json", get(openapi::document))
        .route("/whoami", get(requests::whoami))
        .route("/requests", post(requests::create).get(requests::list))
        .route("/requests/{id}", get(requests::show))
        .route("/ids/{id}", get(requests::identify))
        .route("/requests/{id}/approve", post(requests::approve))
        .route("/requests/{id}/deny", post(requests::deny))
        .route("/requests/{id}/cancel", post(requests::cancel))
        .route("/grants", get(grants::list))
        .route("/grants/{id}", get(grants::show))
        .route("/grants/{id}/revoke", post(grants::revoke))
        .route("/grants/{id}/extend", post(grants::extend))
        .route("/admin/configurations", get(admin::list_configurations))
        .route("/admin/configurations/{id}", put(admin::put_configuration))
        .route("/admin/resources", get(admin::list_resources))
        .route("/admin/resources/{id}", put(admin::put_resource))
        .route("/admin/users", get(admin::list_users))
        .route("/admin/users/{id}", put(admin::put_user))
        .route("/admin/users/{id}/tokens", post(admin::issue_token))
        .route("/admin/users/{id}/sign-in-link", post(admin::issue_sign_in_link))
        .route("/catalogue", get(requests::catalogue))
        .route("/inbox", get(requests::inbox))
        .route("/admin/users/{id}/disable", post(admin::disable_user))
        .route("/admin/tokens", get(admin::list_tokens))
        .route("/admin/tokens/{id}", axum::routing::delete(admin::revoke_token))
        .route("/admin/policies", get(admin::policy_status))
        .route("/admin/policies/reload", post(admin::reload_policies))
        .route("/admin/outbox/{configuration}", get(admin::outbox))
        .route(
            "/admin/revokes/{command}/force-close",
            post(admin::force_close_revoke),
        )
        .route("/admin/explain", get(admin::explain))
        .route("/admin/audit", get(admin::audit_log))
        .route("/admin/audit/export", get(admin::audit_export))
        .route("/admin/audit/chain", get(admin::audit_chain))
        .route("/admin/notifications", get(admin::notifications))
        .route(
            "/admin/scim/connections",
            post(admin::create_scim_connection).get(admin::list_scim_connections),
        )
        .route(
            "/admin/scim/connections/{name}",
            axum::routing::delete(admin::delete_scim_connection),
        )
        .route("/admin/join-tokens", post(agents::create_join_token))
        .route("/admin/agents", get(agents::list))
        .route("/admin/agents/{id}/revoke", post(agents::revoke))
        .route("/admin/agents/{id}/approve", post(agents::approve))
        .route("/agents/enroll", post(agents::enroll))
        .merge(
            Router::new()
                .route("/auth/login", post(auth::login))
                .route("/auth/token", post(auth::token))
                .route("/auth/device", post(auth::device))
                .route("/auth/device/token", post(auth::device_token))
                .route("/auth/refresh", post(auth::refresh))
                .route("/auth/refresh/browser", get(auth::refresh_browser))
                .route("/auth/logout", post(auth::logout))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    limits::sign_in_quota,
                )),
        )
        .route("/admin/sessions", get(auth::sessions))
        .route("/admin/sso", get(auth::sso_providers))
        .route("/admin/sessions/{id}/revoke", post(auth::revoke_session));
    Router::new()
        .nest("/api/v1", v1)
        .nest("/scim/v2", scim::router())
        .merge(
            Router::new()
                .route("/auth/login", get(auth::web_login))
                .route("/auth/oidc/callback", get(auth::callback))
                .route("/auth/saml/{name}/metadata", get(auth::saml_metadata))
                .route("/auth/saml/{name}/acs", post(auth::saml_acs))
                .route("/auth/signed-in", get(auth::signed_in))
                .route_layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    limits::sign_in_quota,
                )),
        )
        .merge(crate::console::router(state.clone()))
        .route(
            "/integrations/slack/interactions",
            post(integrations::slack_interactions),
        )
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(error::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            headers::every_response,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::count_requests,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

#[cfg(test)]
mod tests;
