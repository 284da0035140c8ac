//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{admin, agents, auth, grants, requests};

#[derive(OpenApi)]
#[openapi(
    info(title = "jitgate broker API", description = "Just-in-time privileged access: requests, approvals, grants, administration. Every 503 says when to try again (`Retry-After`); any operation may answer one while the store is overloaded (no PostgreSQL connection came free in time)."),
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
/// bodies past the limit, 415 for a body sent as something other than JSON
/// (where a body may be left out, an empty one is not refused). An
/// operation's own description of a status stands.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::Operation;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};

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
                let body = op.request_body.is_some();
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
                if body || params {
                    add(
                        op,
                        "400",
                        "Malformed parameters or body; `field` names the bad one",
                    );
                }
                if body {
                    add(op, "413", "The body is larger than the broker accepts");
                    add(op, "415", "The body must be `application/json`");
                }
            }
        }
    }
}

/// One link (OpenAPI 3.1 §4.8.20): from an operation's success to another
/// operation, with one parameter of it taken from the response.
struct LinkSpec {
    from: (&'static str, &'static str),
    name: &'static str,
    to: (&'static str, &'static str),
    parameter: &'static str,
    /// A runtime expression: where in the response the value is.
    value: &'static str,
}

const fn link(
    from: (&'static str, &'static str),
    name: &'static str,
    to: (&'static str, &'static str),
    parameter: &'static str,
    value: &'static str,
) -> LinkSpec {
    LinkSpec {
        from,
        name,
        to,
        parameter,
        value,
    }
}

const REQUEST: (&str, &str) = ("get", "/api/v1/requests/{id}");
const GRANT: (&str, &str) = ("get", "/api/v1/grants/{id}");
const USER: (&str, &str) = ("put", "/api/v1/admin/users/{id}");

/// What a client can do next with what an operation answered: from a
/// request made (or listed) to reading, approving, denying and cancelling
/// it; from a grant listed to reading, revoking and extending it; from a
/// user saved to their tokens, sign-in link and disabling; from a token
/// issued to revoking it; from a SCIM connection made to deleting it; from
/// a configuration saved to its outbox. Clients may follow them, and the
/// conformance test's stateful phase does.
const LINKS: &[LinkSpec] = &[
    link(
        ("post", "/api/v1/requests"),
        "GetRequest",
        REQUEST,
        "id",
        "$response.body#/id",
    ),
    link(
        ("post", "/api/v1/requests"),
        "ApproveRequest",
        ("post", "/api/v1/requests/{id}/approve"),
        "id",
        "$response.body#/id",
    ),
    link(
        ("post", "/api/v1/requests"),
        "DenyRequest",
        ("post", "/api/v1/requests/{id}/deny"),
        "id",
        "$response.body#/id",
    ),
    link(
        ("post", "/api/v1/requests"),
        "CancelRequest",
        ("post", "/api/v1/requests/{id}/cancel"),
        "id",
        "$response.body#/id",
    ),
    link(
        ("post", "/api/v1/requests/{id}/approve"),
        "GetRequest",
        REQUEST,
        "id",
        "$response.body#/id",
    ),
    link(
        ("get", "/api/v1/requests"),
        "GetFirstRequest",
        REQUEST,
        "id",
        "$response.body#/items/0/id",
    ),
    link(
        ("get", "/api/v1/grants"),
        "GetFirstGrant",
        GRANT,
        "id",
        "$response.body#/items/0/id",
    ),
    link(
        ("get", "/api/v1/grants"),
        "RevokeFirstGrant",
        ("post", "/api/v1/grants/{id}/revoke"),
        "id",
        "$response.body#/items/0/id",
    ),
    link(
        ("get", "/api/v1/grants"),
        "ExtendFirstGrant",
        ("post", "/api/v1/grants/{id}/extend"),
        "id",
        "$response.body#/items/0/id",
    ),
    link(
        USER,
        "IssueToken",
        ("post", "/api/v1/admin/users/{id}/tokens"),
        "id",
        "$response.body#/id",
    ),
    link(
        USER,
        "IssueSignInLink",
        ("post", "/api/v1/admin/users/{id}/sign-in-link"),
        "id",
        "$response.body#/id",
    ),
    link(
        USER,
        "DisableUser",
        ("post", "/api/v1/admin/users/{id}/disable"),
        "id",
        "$response.body#/id",
    ),
    link(
        ("post", "/api/v1/admin/users/{id}/tokens"),
        "ListTheirTokens",
        ("get", "/api/v1/admin/tokens"),
        "user",
        "$response.body#/user/id",
    ),
    link(
        ("post", "/api/v1/admin/scim/connections"),
        "DeleteConnection",
        ("delete", "/api/v1/admin/scim/connections/{name}"),
        "name",
        "$response.body#/connection/name",
    ),
    link(
        ("put", "/api/v1/admin/configurations/{id}"),
        "GetOutbox",
        ("get", "/api/v1/admin/outbox/{configuration}"),
        "configuration",
        "$response.body#/id",
    ),
];

/// The JSON pointer to an operation in the document.
fn operation_pointer((method, path): (&str, &str)) -> String {
    format!("/paths/{}/{method}", path.replace('~', "~0").replace('/', "~1"))
}

/// An `operationRef`: the operation's pointer as a URI fragment.
fn operation_ref(operation: (&str, &str)) -> String {
    format!("#{}", operation_pointer(operation))
}

/// Adds [`LINKS`] to each operation's first success response. (Written
/// into the JSON: utoipa 5.5 serialises its `Link` with snake_case field
/// names, `operation_ref`, which no OpenAPI reader knows.)
fn add_links(doc: &mut serde_json::Value) {
    for spec in LINKS {
        let Some(responses) = doc
            .pointer_mut(&format!("{}/responses", operation_pointer(spec.from)))
            .and_then(serde_json::Value::as_object_mut)
        else {
            continue;
        };
        let Some((_, success)) = responses.iter_mut().find(|(status, _)| status.starts_with('2')) else {
            continue;
        };
        let link = serde_json::json!({
            "operationRef": operation_ref(spec.to),
            "parameters": { spec.parameter: spec.value },
        });
        if let Some(response) = success.as_object_mut() {
            let links = response
                .entry("links")
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let Some(links) = links.as_object_mut() {
                links.insert(spec.name.to_owned(), link);
            }
        }
    }
}

/// The document as served, made once: generated, then linked.
pub fn document_json() -> &'static serde_json::Value {
    static DOCUMENT: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        add_links(&mut doc);
        doc
    })
}

pub async fn document() -> Json<&'static serde_json::Value> {
    Json(document_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every link starts at an operation's success, names an operation of
    /// the document and one of its parameters, as an OpenAPI reader sees it.
    #[test]
    fn every_link_joins_two_operations_of_the_document() {
        let doc = document_json();
        let operation = |(method, path): (&str, &str)| {
            doc.pointer(&operation_pointer((method, path)))
                .unwrap_or_else(|| panic!("no operation {method} {path}"))
        };
        for spec in LINKS {
            let responses = operation(spec.from)["responses"].as_object().unwrap();
            let link = responses
                .iter()
                .filter(|(status, _)| status.starts_with('2'))
                .find_map(|(_, r)| r["links"].get(spec.name))
                .unwrap_or_else(|| panic!("{}: not on a success of {:?}", spec.name, spec.from));
            let target = link["operationRef"].as_str().unwrap();
            assert_eq!(target, operation_ref(spec.to));
            assert_eq!(link["parameters"][spec.parameter], spec.value);
            let to = operation(spec.to);
            let names: Vec<&str> = to["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert!(
                names.contains(&spec.parameter),
                "{}: {:?} has no parameter `{}` (it has {names:?})",
                spec.name,
                spec.to,
                spec.parameter
            );
        }
        assert_eq!(
            operation_ref(("get", "/api/v1/requests/{id}")),
            "#/paths/~1api~1v1~1requests~1{id}/get"
        );
    }
}
