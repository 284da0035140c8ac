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
    // Named only as a path parameter, so not collected from the bodies.
    components(schemas(jitgate_shared::v1::AgentId)),
    modifiers(&BearerAuth, &CommonResponses),
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

/// The refusals any operation may give, added to each one they apply to,
/// so the document lists every status a client can meet: 401 where a
/// bearer token is needed and none valid came, 429 past a client's quota
/// (refused tokens, sign-ins: see `limits`), 403 under `/api/v1/admin/`
/// to whoever is not an administrator (or an auditor, for what auditors
/// read), 404 where a path names something that does not exist (not for
/// PUT, which creates it), 400 for malformed parameters or bodies, 413 for
/// bodies past the limit, 415 for a required JSON body sent as something
/// else. An operation's own description of a status stands.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::Operation;
        use utoipa::openapi::{ContentBuilder, Ref, Required, ResponseBuilder};

        let add = |op: &mut Operation, status: &str, description: &str| {
            let error = ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build();
            op.responses
                .responses
                .entry(status.to_owned())
                .or_insert_with(|| {
                    ResponseBuilder::new()
                        .description(description)
                        .content("application/json", error)
                        .build()
                        .into()
                });
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let admin = path.starts_with("/api/v1/admin/");
            let names_one = path.contains('{');
            let operations = [
                (&mut item.get, names_one),
                (&mut item.put, false),
                (&mut item.post, names_one),
                (&mut item.delete, names_one),
                (&mut item.patch, names_one),
            ];
            for (op, may_be_missing) in operations {
                let Some(op) = op else { continue };
                let secured = op.security.as_ref().is_some_and(|s| !s.is_empty());
                // None: no body; Some(required).
                let body = op
                    .request_body
                    .as_ref()
                    .map(|b| matches!(b.required, Some(Required::True)));
                let params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                if secured {
                    add(op, "401", "No valid bearer token or session");
                }
                if secured && admin {
                    add(op, "403", "The caller's roles do not allow this");
                }
                if may_be_missing {
                    add(op, "404", "No such thing as the path names");
                }
                add(
                    op,
                    "429",
                    "Too many requests from this client: try again after `Retry-After`",
                );
                if body.is_some() || params {
                    add(
                        op,
                        "400",
                        "Malformed parameters or body; `field` names the bad one",
                    );
                }
                if let Some(required) = body {
                    add(op, "413", "The body is larger than the broker accepts");
                    if required {
                        add(op, "415", "The body must be `application/json`");
                    }
                }
            }
        }
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
