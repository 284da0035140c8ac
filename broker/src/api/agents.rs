//! `/api/v1/agents/enroll` and the admin side of agents.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jitgate_shared::v1::api::{AgentView, CreateJoinTokenBody, EnrollBody, Enrolled, JoinTokenIssued};
use jitgate_shared::v1::ErrorBody;

use super::error::ApiError;
use super::extract::{path_id, Body, Caller, PathParam};
use super::limits::{presenting_token, Client};
use super::AppState;

#[utoipa::path(post, path = "/api/v1/admin/join-tokens", tag = "agents", request_body = CreateJoinTokenBody,
    responses((status = 201, description = "A one-time join token, shown once", body = JoinTokenIssued),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_join_token(
    State(s): State<AppState>,
    Caller(user): Caller,
    Body(body): Body<CreateJoinTokenBody>,
) -> Result<(StatusCode, Json<JoinTokenIssued>), ApiError> {
    Ok((
        StatusCode::CREATED,
        Json(s.broker.create_join_token(&user, body).await?),
    ))
}

/// The join token in the body is the credential; no bearer token. Refused
/// join tokens count against the client's quota as refused bearer tokens do.
#[utoipa::path(post, path = "/api/v1/agents/enroll", tag = "agents", request_body = EnrollBody,
    responses((status = 201, description = "Enrolled: the agent's client certificate", body = Enrolled),
        (status = 400, description = "The CSR is malformed or its signature does not verify", body = ErrorBody),
        (status = 401, description = "Unknown, expired or already used join token", body = ErrorBody)))]
pub async fn enroll(
    State(s): State<AppState>,
    Client(client): Client,
    Body(body): Body<EnrollBody>,
) -> Result<(StatusCode, Json<Enrolled>), ApiError> {
    let enrolled = presenting_token(&s.limits, client, s.broker.enroll(body)).await?;
    Ok((StatusCode::CREATED, Json(enrolled)))
}

#[utoipa::path(get, path = "/api/v1/admin/agents", tag = "agents",
    responses((status = 200, body = Vec<AgentView>), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(State(s): State<AppState>, Caller(user): Caller) -> Result<Json<Vec<AgentView>>, ApiError> {
    Ok(Json(s.broker.list_agents(&user).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/agents/{id}/revoke", tag = "agents",
    params(("id" = jitgate_shared::v1::AgentId, Path, description = "Agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<AgentView>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.revoke_agent(&user, id).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/agents/{id}/approve", tag = "agents",
    params(("id" = jitgate_shared::v1::AgentId, Path, description = "Agent id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody),
        (status = 409, description = "The agent is not pending approval", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<AgentView>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.approve_agent(&user, id).await?))
}
