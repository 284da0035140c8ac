//! `/api/v1/requests` and `/api/v1/whoami`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use jitgate_shared::v1::api::{
    CatalogueEntry, CreateRequestBody, Decision, Identified, InboxEntry, Page, RequestState, RequestView,
    ReviewBody, UserView,
};
use jitgate_shared::v1::{ErrorBody, RequestId, UserId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{path_id, Body, Caller, OptionalBody, Params, PathParam};
use super::AppState;
use crate::service::requests::RequestQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListRequests {
    /// Only requests in this state.
    pub state: Option<RequestState>,
    /// Only requests by this user (approvers, admins and auditors; others
    /// always see their own).
    pub requester: Option<UserId>,
    /// Continue after this request id (the `next` of the previous page).
    pub after: Option<RequestId>,
    /// Page size, 1 to 500; default 100.
    pub limit: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "people",
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn whoami(Caller(user): Caller) -> Json<UserView> {
    Json(user.view())
}

/// The resources the caller may request, with the workflow each goes
/// through and who could approve it.
#[utoipa::path(get, path = "/api/v1/catalogue", tag = "requests",
    responses((status = 200, body = Vec<CatalogueEntry>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn catalogue(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<CatalogueEntry>>, ApiError> {
    Ok(Json(s.broker.catalogue(&user).await?))
}

/// Pending requests the caller may review, oldest first (never their own).
#[utoipa::path(get, path = "/api/v1/inbox", tag = "requests",
    responses((status = 200, body = Vec<InboxEntry>), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn inbox(
    State(s): State<AppState>,
    Caller(user): Caller,
) -> Result<Json<Vec<InboxEntry>>, ApiError> {
    Ok(Json(s.broker.inbox(&user).await?))
}

#[utoipa::path(post, path = "/api/v1/requests", tag = "requests", request_body = CreateRequestBody,
    responses(
        (status = 201, description = "Created; approved at once when auto-approve or break-glass applies", body = RequestView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "The resource cannot be granted now: its configuration is disabled, or its chain has no way through"),
        (status = 413, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<AppState>,
    Caller(user): Caller,
    Body(body): Body<CreateRequestBody>,
) -> Result<(StatusCode, Json<RequestView>), ApiError> {
    let view = s.broker.create_request(&user, body).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(get, path = "/api/v1/requests", tag = "requests", params(ListRequests),
    responses((status = 200, body = Page<RequestView>), (status = 400, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<AppState>,
    Caller(user): Caller,
    Params(q): Params<ListRequests>,
) -> Result<Json<Page<RequestView>>, ApiError> {
    let query = RequestQuery {
        state: q.state,
        requester: q.requester,
        after: q.after,
        limit: q.limit.unwrap_or(100),
    };
    Ok(Json(s.broker.list_requests(&user, query).await?))
}

#[utoipa::path(get, path = "/api/v1/requests/{id}", tag = "requests",
    params(("id" = RequestId, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<RequestView>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.get_request(&user, id).await?))
}

#[utoipa::path(get, path = "/api/v1/ids/{id}", tag = "requests",
    params(("id" = RequestId, Path, description = "A request or grant id (a UUID)")),
    responses((status = 200, description = "The request or grant the id names", body = Identified),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn identify(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<Identified>, ApiError> {
    let id: RequestId = path_id("id", &id)?;
    Ok(Json(s.broker.identify(&user, id.as_uuid()).await?))
}

async fn review(
    s: AppState,
    user: Caller,
    id: String,
    decision: Decision,
    body: ReviewBody,
) -> Result<Json<RequestView>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.review_request(&user.0, id, decision, body).await?))
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/approve", tag = "requests", request_body = Option<ReviewBody>,
    params(("id" = RequestId, Path, description = "Request id")),
    responses((status = 200, body = RequestView),
        (status = 403, description = "Own request, or not an approver", body = ErrorBody),
        (status = 409, description = "Already decided, reviewed or expired", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(s): State<AppState>,
    user: Caller,
    PathParam(id): PathParam<String>,
    OptionalBody(body): OptionalBody<ReviewBody>,
) -> Result<Json<RequestView>, ApiError> {
    review(s, user, id, Decision::Approve, body).await
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/deny", tag = "requests", request_body = Option<ReviewBody>,
    params(("id" = RequestId, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn deny(
    State(s): State<AppState>,
    user: Caller,
    PathParam(id): PathParam<String>,
    OptionalBody(body): OptionalBody<ReviewBody>,
) -> Result<Json<RequestView>, ApiError> {
    review(s, user, id, Decision::Deny, body).await
}

#[utoipa::path(post, path = "/api/v1/requests/{id}/cancel", tag = "requests",
    params(("id" = RequestId, Path, description = "Request id")),
    responses((status = 200, body = RequestView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(s): State<AppState>,
    Caller(user): Caller,
    PathParam(id): PathParam<String>,
) -> Result<Json<RequestView>, ApiError> {
    let id = path_id("id", &id)?;
    Ok(Json(s.broker.cancel_request(&user, id).await?))
}
