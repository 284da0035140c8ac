//! `/api/v1/grants`.

use axum::extract::State;
use axum::Json;
use jitgate_shared::v1::api::{ExtendBody, ExtendOutcome, GrantState, GrantView, Page, RevokeBody};
use jitgate_shared::v1::{ErrorBody, GrantId, UserId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{path_id, Body, Caller, OptionalBody, Params, PathParam};
use super::AppState;
use crate::service::grants::GrantQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListGrants {
    pub state: Option<GrantState>,
    /// Only this user's grants (approvers, admins and auditors).
    pub user: Option<UserId>,
    pub after: Option<GrantId>,
    /// Page size, 1 to 500; default 100.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/grants", tag = "grants", params(ListGrants),
    responses((status = 200, body = Page<GrantView>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    Caller(user): Caller,
    Params(q): Params<ListGrants>,
) -> Result<Json<Page<GrantView>>, ApiError> {
    let query = GrantQuery {
        state: q.state,
        user: q.user,
        after: q.after,
        limit: q.limit.unwrap_or(100),
    };
    Ok(Json(s.broker.list_grants(&user, query).await?))
}

#[utoipa::path(get, path = "/api/v1/grants/{id}", tag = "grants",
    params(("id" = GrantId, Path, description = "Grant id")),
    responses((status = 200, body = GrantView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<GrantView>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.get_grant(&user, id).await?))
}

#[utoipa::path(post, path = "/api/v1/grants/{id}/revoke", tag = "grants", request_body = Option<RevokeBody>,
    params(("id" = GrantId, Path, description = "Grant id")),
    responses((status = 200, description = "Ended; a revoke is queued when no other grant holds the entitlement", body = GrantView),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
    OptionalBody(body): OptionalBody<RevokeBody>,
) -> Result<Json<GrantView>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.revoke_grant(&user, id, body).await?))
}

#[utoipa::path(post, path = "/api/v1/grants/{id}/extend", tag = "grants", request_body = ExtendBody,
    params(("id" = GrantId, Path, description = "Grant id")),
    responses((status = 200, body = ExtendOutcome), (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn extend(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
    Body(body): Body<ExtendBody>,
) -> Result<Json<ExtendOutcome>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.extend_grant(&user, id, body).await?))
}
