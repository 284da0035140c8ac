//! `/api/v1/admin`: configurations, resources, users, policies, outbox,
//! and `explain` (how a resource would be elevated, without acting).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jitgate_shared::v1::api::{
    AuditChainView, AuditLogPage, Configuration, ExplainView, ForceCloseBody, GrantView, IssuedToken,
    NotificationEndpointView, PolicyStatus, Resource, ScimConnectionBody, ScimConnectionCreated,
    ScimConnectionView, SignInLinkIssued, TokenView, UserBody, UserView,
};
use jitgate_shared::v1::signing::CommandBody;
use jitgate_shared::v1::{ConfigId, ErrorBody, ResourceId, UserId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{path_id, Body, Caller, Params, PathParam};
use super::AppState;
use crate::audit::Actor;
use crate::service::admin::UserOutcome;

fn same_id<T: PartialEq + std::fmt::Display>(path: &T, body: &T) -> Result<(), ApiError> {
    if path == body {
        Ok(())
    } else {
        Err(ApiError::invalid(
            "id",
            format!("the body's id `{body}` differs from the path's `{path}`"),
        ))
    }
}

#[utoipa::path(get, path = "/api/v1/admin/configurations", tag = "admin",
    responses((status = 200, body = Vec<Configuration>)), security(("bearer" = [])))]
pub async fn list_configurations(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<Configuration>>, ApiError> {
    Ok(Json(s.broker.list_configurations(&user).await?))
}

#[utoipa::path(put, path = "/api/v1/admin/configurations/{id}", tag = "admin", request_body = Configuration,
    params(("id" = ConfigId, Path, description = "Configuration id")),
    responses((status = 200, body = Configuration), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_configuration(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
    Body(body): Body<Configuration>,
) -> Result<Json<Configuration>, ApiError> {
    let id: ConfigId = path_id("id", &id)?;
    same_id(&id, &body.id)?;
    Ok(Json(s.broker.put_configuration(&user, body).await?))
}

#[utoipa::path(get, path = "/api/v1/admin/resources", tag = "admin",
    responses((status = 200, body = Vec<Resource>)), security(("bearer" = [])))]
pub async fn list_resources(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<Resource>>, ApiError> {
    Ok(Json(s.broker.list_resources(&user).await?))
}

#[utoipa::path(put, path = "/api/v1/admin/resources/{id}", tag = "admin", request_body = Resource,
    params(("id" = ResourceId, Path, description = "Resource id")),
    responses((status = 200, body = Resource), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_resource(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
    Body(body): Body<Resource>,
) -> Result<Json<Resource>, ApiError> {
    let id: ResourceId = path_id("id", &id)?;
    same_id(&id, &body.id)?;
    Ok(Json(s.broker.put_resource(&user, body).await?))
}

#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin",
    responses((status = 200, body = Vec<UserView>)), security(("bearer" = [])))]
pub async fn list_users(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<UserView>>, ApiError> {
    Ok(Json(s.broker.list_users(&user).await?))
}

#[utoipa::path(put, path = "/api/v1/admin/users/{id}", tag = "admin", request_body = UserBody,
    params(("id" = UserId, Path, description = "User id")),
    responses(
        (status = 201, description = "Created, with the user's first token (shown once)", body = IssuedToken),
        (status = 200, description = "Updated", body = UserView),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn put_user(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
    Body(body): Body<UserBody>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let id: UserId = path_id("id", &id)?;
    same_id(&id, &body.id)?;
    Ok(match s.broker.put_user(&user, body).await? {
        UserOutcome::Created(issued) => (StatusCode::CREATED, Json(issued)).into_response(),
        UserOutcome::Updated(view) => Json(view).into_response(),
    })
}

#[utoipa::path(post, path = "/api/v1/admin/users/{id}/tokens", tag = "admin",
    params(("id" = UserId, Path, description = "User id")),
    responses((status = 201, body = IssuedToken), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn issue_token(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let id: UserId = path_id("id", &id)?;
    Ok((StatusCode::CREATED, Json(s.broker.issue_token(&user, &id).await?)))
}

/// A one-time sign-in link to the console for a local account (one with
/// no identity provider), valid 15 minutes.
#[utoipa::path(post, path = "/api/v1/admin/users/{id}/sign-in-link", tag = "admin",
    params(("id" = UserId, Path, description = "User id")),
    responses((status = 201, body = SignInLinkIssued), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The account is disabled or signs in through a provider", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn issue_sign_in_link(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<(StatusCode, Json<SignInLinkIssued>), ApiError> {
    let id: UserId = path_id("id", &id)?;
    Ok((
        StatusCode::CREATED,
        Json(s.broker.issue_sign_in_link(&user, &id).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/admin/policies", tag = "admin",
    responses((status = 200, body = PolicyStatus)), security(("bearer" = [])))]
pub async fn policy_status(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<PolicyStatus>, ApiError> {
    Ok(Json(s.broker.policy_status(&user).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/policies/reload", tag = "admin",
    responses((status = 200, body = PolicyStatus),
        (status = 400, description = "Invalid; the previous policies stay in force", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reload_policies(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<PolicyStatus>, ApiError> {
    crate::service::require_admin(&user)?;
    Ok(Json(
        s.broker.reload_policies(Actor::User(user.id.clone())).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OutboxQuery {
    /// At most this many commands; default 1000.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/admin/outbox/{configuration}", tag = "admin",
    params(("configuration" = ConfigId, Path, description = "Configuration id"), OutboxQuery),
    responses((status = 200, description = "Queued commands, revokes first", body = Vec<CommandBody>)),
    security(("bearer" = [])))]
pub async fn outbox(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(configuration): PathParam<String>,
    Params(q): Params<OutboxQuery>,
) -> Result<Json<Vec<CommandBody>>, ApiError> {
    let configuration: ConfigId = path_id("configuration", &configuration)?;
    let limit = q.limit.unwrap_or(1000).clamp(1, 100_000);
    Ok(Json(s.broker.outbox(&user, &configuration, limit).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// Only this user's tokens.
    pub user: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/admin/tokens", tag = "admin", params(TokenQuery),
    responses((status = 200, description = "Live API tokens, never the tokens themselves", body = Vec<TokenView>),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(s): State<AppState>,
    Caller(user): Caller,
    Params(q): Params<TokenQuery>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let target: Option<UserId> = q.user.as_deref().map(|u| path_id("user", u)).transpose()?;
    Ok(Json(s.broker.list_tokens(&user, target.as_ref()).await?))
}

#[utoipa::path(delete, path = "/api/v1/admin/tokens/{id}", tag = "admin",
    params(("id" = String, Path, description = "Token id: the first 16 hex digits of its SHA-256")),
    responses((status = 200, body = TokenView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<TokenView>, ApiError> {
    Ok(Json(s.broker.revoke_token(&user, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/users/{id}/disable", tag = "admin",
    params(("id" = UserId, Path, description = "User id")),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable_user(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<UserView>, ApiError> {
    let id: UserId = path_id("id", &id)?;
    Ok(Json(s.broker.disable_user(&user, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/revokes/{command}/force-close", tag = "admin",
    request_body = ForceCloseBody,
    params(("command" = String, Path, description = "Id of a queued revoke command")),
    responses((status = 200, description = "Closed; the grant it ended, if it has one", body = Option<GrantView>),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn force_close_revoke(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(command): PathParam<String>,
    Body(body): Body<ForceCloseBody>,
) -> Result<Json<Option<GrantView>>, ApiError> {
    Ok(Json(s.broker.force_close_revoke(&user, &command, body).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExplainQuery {
    /// The resource to explain.
    pub resource: String,
    /// The user it would be elevated for.
    pub user: String,
}

#[utoipa::path(get, path = "/api/v1/admin/explain", tag = "admin",
    params(ExplainQuery),
    responses((status = 200, description = "The chain, the plan and the agents that would act; nothing is done", body = ExplainView),
        (status = 404, description = "Unknown resource or user", body = ErrorBody),
        (status = 409, description = "The chain does not resolve; the message names the path walked", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn explain(
    State(s): State<AppState>,
    Caller(user): Caller,
    Params(q): Params<ExplainQuery>,
) -> Result<Json<ExplainView>, ApiError> {
    let resource: ResourceId = path_id("resource", &q.resource)?;
    let subject: UserId = path_id("user", &q.user)?;
    Ok(Json(s.broker.explain(&user, &resource, &subject).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/scim/connections", tag = "admin", request_body = ScimConnectionBody,
    responses((status = 201, body = ScimConnectionCreated), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_scim_connection(
    State(s): State<AppState>,
    Caller(user): Caller,
    Body(body): Body<ScimConnectionBody>,
) -> Result<(StatusCode, Json<ScimConnectionCreated>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.broker.create_scim_connection(&user, body).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/admin/scim/connections", tag = "admin",
    responses((status = 200, body = Vec<ScimConnectionView>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_scim_connections(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<ScimConnectionView>>, ApiError> {
    Ok(Json(s.broker.list_scim_connections(&user).await?))
}

#[utoipa::path(delete, path = "/api/v1/admin/scim/connections/{name}", tag = "admin",
    params(("name" = String, Path, description = "Connection name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_scim_connection(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(name): PathParam<String>,
) -> Result<StatusCode, ApiError> {
    s.broker.delete_scim_connection(&user, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The audit log's filter and page, every field optional: the API's query
/// and the console's filter form.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default, deny_unknown_fields)]
pub struct AuditParams {
    /// Acted or acted on by this person (any of their linked accounts), or
    /// about their requests and grants.
    pub person: String,
    /// About this resource, its requests and their grants.
    pub resource: String,
    /// A record kind, like `grant_ended`.
    pub kind: String,
    /// At or after (RFC 3339).
    pub since: String,
    /// Before (RFC 3339).
    pub until: String,
    /// Only records before this sequence number (a page's `next_before`).
    #[serde(skip_serializing)]
    pub before: Option<u64>,
    /// Records wanted, 1 to 1000 (default 100).
    #[serde(skip_serializing)]
    pub limit: Option<usize>,
}

impl AuditParams {
    /// The filter asked for, or what is wrong with it (naming the field
    /// and the value).
    pub fn filter(&self) -> Result<crate::audit::query::AuditFilter, String> {
        crate::audit::query::FilterText {
            person: &self.person,
            resource: &self.resource,
            kind: &self.kind,
            since: &self.since,
            until: &self.until,
        }
        .parse()
    }

    /// The filter as a query string, without the page (`before`,
    /// `limit`): for links to other pages of the same records.
    pub fn query_string(&self) -> String {
        serde_urlencoded::to_string(self).unwrap_or_default()
    }
}

#[utoipa::path(get, path = "/api/v1/admin/audit", tag = "admin",
    params(AuditParams),
    responses((status = 200, description = "Matching records, newest first", body = AuditLogPage),
        (status = 400, description = "A filter field is malformed; the message names it", body = ErrorBody),
        (status = 403, description = "Not an admin or auditor", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_log(
    State(s): State<AppState>,
    Caller(user): Caller,
    Params(q): Params<AuditParams>,
) -> Result<Json<AuditLogPage>, ApiError> {
    let query = crate::service::audit::AuditQuery {
        filter: q.filter().map_err(|e| ApiError::invalid("filter", e))?,
        before: q.before,
        limit: q.limit.unwrap_or(0),
    };
    let page = s.broker.audit_log(&user, &query).await?;
    Ok(Json(AuditLogPage {
        records: page
            .records
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<_, _>>()
            .map_err(|e| {
                crate::service::ServiceError::Unavailable(format!("writing an audit record: {e}"))
            })?,
        next_before: page.next_before,
        searched_to: page.searched_to,
        head: page.head,
    }))
}

#[utoipa::path(get, path = "/api/v1/admin/audit/export", tag = "admin",
    params(AuditParams),
    responses((status = 200, description = "Matching records, oldest first, as JSON lines; unfiltered, the whole chain (`jitgate-broker audit verify --input` checks it)", content_type = "application/jsonl", body = String),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_export(
    State(s): State<AppState>,
    Caller(user): Caller,
    Params(q): Params<AuditParams>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let filter = q.filter().map_err(|e| ApiError::invalid("filter", e))?;
    let stream = s.broker.audit_export(&user, filter).await?;
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/jsonl")],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

#[utoipa::path(get, path = "/api/v1/admin/notifications", tag = "admin",
    responses((status = 200, description = "Notification delivery per address (email, webhook)", body = [NotificationEndpointView]),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn notifications(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<NotificationEndpointView>>, ApiError> {
    Ok(Json(s.broker.notification_status(&user).await?))
}

#[utoipa::path(get, path = "/api/v1/admin/audit/chain", tag = "admin",
    responses((status = 200, description = "The broker's latest check of its audit chain", body = AuditChainView),
        (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn audit_chain(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<AuditChainView>, ApiError> {
    let status = s.broker.audit_chain_status(&user)?;
    let (checked_at, report) = status.last.unzip();
    Ok(Json(AuditChainView {
        checked_at,
        records_verified: report.as_ref().map_or(0, |r| r.records),
        signed_head: report.as_ref().and_then(|r| r.anchor.as_ref().map(|a| a.seq)),
        broken: report.and_then(|r| r.broken.map(|b| b.to_string())),
        running: status.running,
    }))
}
