//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, agents, auth, grants, requests};

#[derive(OpenApi)]
#[openapi(
    info(title = "jitgate broker API", description = "Just-in-time privileged access: requests, approvals, grants, administration."),
    paths(
        requests::whoami, requests::create, requests::list, requests::show, requests::identify,
        requests::approve, requests::deny, requests::cancel, requests::catalogue, requests::inbox,
        grants::list, grants::show, grants::revoke, grants::extend,
        admin::list_configurations, admin::put_configuration, admin::list_resources, admin::put_resource,
        admin::list_users, admin::put_user, admin::issue_token, admin::issue_sign_in_link, admin::disable_user, admin::list_tokens, admin::revoke_token, admin::policy_status, admin::reload_policies,
        admin::outbox, admin::force_close_revoke, admin::explain, admin::audit_log, admin::audit_export, admin::audit_chain, admin::notifications,
        admin::create_scim_connection, admin::list_scim_connections, admin::delete_scim_connection,
        auth::login, auth::token, auth::device, auth::device_token, auth::refresh, auth::logout, auth::sessions, auth::revoke_session, auth::sso_providers,
        agents::create_join_token, agents::enroll, agents::list, agents::revoke, agents::approve,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "requests", description = "Ask for, review and cancel elevation"),
        (name = "grants", description = "Approved windows: read, end early, extend"),
        (name = "admin", description = "Configurations, resources, users, policies"),
        (name = "people", description = "Who am I"),
        (name = "agents", description = "Join tokens and gateway agent enrollment"),
        (name = "auth", description = "Sign-in through identity providers, refresh, sign-out"),
    )
)]
#[derive(Debug)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
