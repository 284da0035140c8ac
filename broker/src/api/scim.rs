//! The SCIM 2.0 endpoints under `/scim/v2` (RFC 7644), for directories such
//! as Entra ID. Every request carries a provisioning connection's bearer
//! token; answers and errors are `application/scim+json`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use scim_v2::filter::{AttrPath, Filter};
use scim_v2::models::others::{PatchOp, PatchOperation};
use serde_json::{json, Map, Value};

use super::AppState;
use crate::identity::scim::document::{parse_attribute_path, project};
use crate::identity::scim::schema::{
    resource_type, schema, schema_document, schemas, service_provider_config, LIST_RESPONSE_SCHEMA,
    MAX_RESULTS,
};
use crate::identity::scim::{ScimConnection, ScimError, ScimKind, ScimResource};

const SCIM_JSON: &str = "application/scim+json";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ServiceProviderConfig", get(service_provider))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(one_resource_type))
        .route("/Schemas", get(all_schemas))
        .route("/Schemas/{id}", get(one_schema))
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/Groups", get(list_groups).post(create_group))
        .route("/Groups/.search", post(search_groups))
        .route(
            "/Groups/{id}",
            get(get_group)
                .put(replace_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/.search", post(search_everything))
        .fallback(not_found)
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        scim_json(status, self.body())
    }
}

fn scim_json(status: StatusCode, body: Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// The provisioning connection the bearer token belongs to.
#[derive(Debug)]
pub struct Directory(pub ScimConnection);

impl FromRequestParts<AppState> for Directory {
    type Rejection = ScimError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ScimError> {
        let token = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .ok_or_else(|| ScimError::unauthorized("missing `Authorization: Bearer <SCIM token>` header"))?;
        Ok(Directory(state.broker.scim_authenticate(token.trim()).await?))
    }
}

/// A JSON object body, whatever the content type says (directories send
/// `application/scim+json`).
pub fn object_body(bytes: &[u8]) -> Result<Map<String, Value>, ScimError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ScimError::invalid_syntax("the body must be a JSON object")),
        Err(e) => Err(ScimError::invalid_syntax(format!("the body is not JSON: {e}"))),
    }
}

/// List parameters: from the query string (GET) or a SearchRequest body.
#[derive(Debug, Default)]
pub struct ListParams {
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
    pub attributes: Vec<AttrPath>,
    pub excluded: Vec<AttrPath>,
}

impl ListParams {
    fn parse(get: impl Fn(&str) -> Option<String>) -> Result<Self, ScimError> {
        let filter = match get("filter") {
            Some(raw) if !raw.trim().is_empty() => Some(raw.parse::<Filter>().map_err(|e| {
                ScimError::bad(
                    scim_v2::models::errors::ScimType::InvalidFilter,
                    format!("filter `{raw}`: {e}"),
                )
            })?),
            _ => None,
        };
        let number = |name: &str, default: usize| -> Result<usize, ScimError> {
            match get(name) {
                None => Ok(default),
                Some(raw) => raw
                    .trim()
                    .parse::<i64>()
                    .map(|n| usize::try_from(n.max(0)).unwrap_or(0))
                    .map_err(|_| ScimError::invalid_value(format!("`{name}` must be a number, not `{raw}`"))),
            }
        };
        let paths = |name: &str| -> Result<Vec<AttrPath>, ScimError> {
            get(name)
                .map(|raw| {
                    raw.split(',')
                        .filter(|s| !s.trim().is_empty())
                        .map(parse_attribute_path)
                        .collect()
                })
                .unwrap_or(Ok(Vec::new()))
        };
        let params = ListParams {
            filter,
            start_index: number("startIndex", 1)?.max(1),
            count: number("count", MAX_RESULTS)?.min(MAX_RESULTS),
            attributes: paths("attributes")?,
            excluded: paths("excludedAttributes")?,
        };
        if !params.attributes.is_empty() && !params.excluded.is_empty() {
            return Err(ScimError::invalid_value(
                "`attributes` and `excludedAttributes` may not be used together",
            ));
        }
        Ok(params)
    }

    /// From a list's query string (names without regard to case).
    pub fn from_query(query: &HashMap<String, String>) -> Result<Self, ScimError> {
        Self::parse(|name| {
            query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        })
    }

    /// From a `.search` request's SearchRequest body.
    pub fn from_search(bytes: &[u8]) -> Result<Self, ScimError> {
        let body = object_body(bytes)?;
        Self::parse(|name| {
            body.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .and_then(|(_, v)| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    Value::Array(items) => Some(
                        items
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    _ => None,
                })
        })
    }
}

fn representation(state: &AppState, r: &ScimResource, params: &ListParams) -> Value {
    let base = state.broker.scim_base();
    Value::Object(project(
        r.kind,
        r.render(&base),
        &params.attributes,
        &params.excluded,
    ))
}

async fn list(
    state: &AppState,
    conn: &ScimConnection,
    kind: ScimKind,
    params: ListParams,
) -> Result<Response, ScimError> {
    let page = state
        .broker
        .scim_list(
            conn,
            kind,
            params.filter.as_ref(),
            params.start_index,
            params.count,
        )
        .await?;
    let resources: Vec<Value> = page
        .resources
        .iter()
        .map(|r| representation(state, r, &params))
        .collect();
    Ok(list_response(page.total, page.start_index, resources))
}

fn one(state: &AppState, status: StatusCode, r: &ScimResource, params: &ListParams) -> Response {
    let body = representation(state, r, params);
    let location = body["meta"]["location"].as_str().map(str::to_owned);
    let mut response = scim_json(status, body);
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(LOCATION, l);
    }
    response
}

async fn get_one(
    state: AppState,
    conn: ScimConnection,
    kind: ScimKind,
    id: String,
    query: HashMap<String, String>,
) -> Result<Response, ScimError> {
    let params = ListParams::from_query(&query)?;
    let r = state.broker.scim_get(&conn, kind, &id).await?;
    Ok(one(&state, StatusCode::OK, &r, &params))
}

async fn create(
    state: AppState,
    conn: ScimConnection,
    kind: ScimKind,
    body: Bytes,
) -> Result<Response, ScimError> {
    let r = state
        .broker
        .scim_create(&conn, kind, &object_body(&body)?)
        .await?;
    Ok(one(&state, StatusCode::CREATED, &r, &ListParams::default()))
}

async fn replace(
    state: AppState,
    conn: ScimConnection,
    kind: ScimKind,
    id: String,
    body: Bytes,
) -> Result<Response, ScimError> {
    let r = state
        .broker
        .scim_replace(&conn, kind, &id, &object_body(&body)?)
        .await?;
    Ok(one(&state, StatusCode::OK, &r, &ListParams::default()))
}

async fn patch(
    state: AppState,
    conn: ScimConnection,
    kind: ScimKind,
    id: String,
    body: Bytes,
) -> Result<Response, ScimError> {
    let operations = patch_operations(&body)?;
    let r = state.broker.scim_patch(&conn, kind, &id, &operations).await?;
    Ok(one(&state, StatusCode::OK, &r, &ListParams::default()))
}

/// The operations of a PATCH body (RFC 7644 §3.5.2): a PatchOp with at
/// least one.
pub fn patch_operations(body: &[u8]) -> Result<Vec<PatchOperation>, ScimError> {
    let op: PatchOp =
        serde_json::from_slice(body).map_err(|e| ScimError::invalid_syntax(format!("not a PatchOp: {e}")))?;
    if op.operations.is_empty() {
        return Err(ScimError::invalid_syntax(
            "a PatchOp needs at least one operation",
        ));
    }
    Ok(op.operations)
}

async fn delete(
    state: AppState,
    conn: ScimConnection,
    kind: ScimKind,
    id: String,
) -> Result<Response, ScimError> {
    state.broker.scim_delete(&conn, kind, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

macro_rules! resource_handlers {
    ($kind:expr, $list:ident, $search:ident, $create:ident, $get:ident, $replace:ident, $patch:ident, $delete:ident) => {
        async fn $list(
            State(state): State<AppState>,
            Directory(conn): Directory,
            Query(query): Query<HashMap<String, String>>,
        ) -> Result<Response, ScimError> {
            list(&state, &conn, $kind, ListParams::from_query(&query)?).await
        }

        async fn $search(
            State(state): State<AppState>,
            Directory(conn): Directory,
            body: Bytes,
        ) -> Result<Response, ScimError> {
            list(&state, &conn, $kind, ListParams::from_search(&body)?).await
        }

        async fn $create(
            State(state): State<AppState>,
            Directory(conn): Directory,
            body: Bytes,
        ) -> Result<Response, ScimError> {
            create(state, conn, $kind, body).await
        }

        async fn $get(
            State(state): State<AppState>,
            Directory(conn): Directory,
            Path(id): Path<String>,
            Query(query): Query<HashMap<String, String>>,
        ) -> Result<Response, ScimError> {
            get_one(state, conn, $kind, id, query).await
        }

        async fn $replace(
            State(state): State<AppState>,
            Directory(conn): Directory,
            Path(id): Path<String>,
            body: Bytes,
        ) -> Result<Response, ScimError> {
            replace(state, conn, $kind, id, body).await
        }

        async fn $patch(
            State(state): State<AppState>,
            Directory(conn): Directory,
            Path(id): Path<String>,
            body: Bytes,
        ) -> Result<Response, ScimError> {
            patch(state, conn, $kind, id, body).await
        }

        async fn $delete(
            State(state): State<AppState>,
            Directory(conn): Directory,
            Path(id): Path<String>,
        ) -> Result<Response, ScimError> {
            delete(state, conn, $kind, id).await
        }
    };
}

resource_handlers!(
    ScimKind::User,
    list_users,
    search_users,
    create_user,
    get_user,
    replace_user,
    patch_user,
    delete_user
);
resource_handlers!(
    ScimKind::Group,
    list_groups,
    search_groups,
    create_group,
    get_group,
    replace_group,
    patch_group,
    delete_group
);

/// `POST /.search` at the root: users and groups together (RFC 7644
/// §3.4.3), users first.
async fn search_everything(
    State(state): State<AppState>,
    Directory(conn): Directory,
    body: Bytes,
) -> Result<Response, ScimError> {
    let params = ListParams::from_search(&body)?;
    let mut found: Vec<ScimResource> = Vec::new();
    for kind in ScimKind::ALL {
        let page = state
            .broker
            .scim_list(&conn, kind, params.filter.as_ref(), 1, usize::MAX)
            .await?;
        found.extend(page.resources);
    }
    let total = found.len();
    let resources: Vec<Value> = found
        .iter()
        .skip(params.start_index - 1)
        .take(params.count)
        .map(|r| representation(&state, r, &params))
        .collect();
    Ok(list_response(total, params.start_index, resources))
}

fn list_response(total: usize, start_index: usize, resources: Vec<Value>) -> Response {
    scim_json(
        StatusCode::OK,
        json!({
            "schemas": [LIST_RESPONSE_SCHEMA],
            "totalResults": total,
            "startIndex": start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        }),
    )
}

async fn service_provider(State(state): State<AppState>, Directory(_): Directory) -> Response {
    scim_json(StatusCode::OK, service_provider_config(&state.broker.scim_base()))
}

fn list_of(resources: Vec<Value>) -> Response {
    list_response(resources.len(), 1, resources)
}

async fn resource_types(State(state): State<AppState>, Directory(_): Directory) -> Response {
    let base = state.broker.scim_base();
    list_of(ScimKind::ALL.iter().map(|k| resource_type(*k, &base)).collect())
}

async fn one_resource_type(
    State(state): State<AppState>,
    Directory(_): Directory,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let kind = ScimKind::ALL
        .into_iter()
        .find(|k| k.name().eq_ignore_ascii_case(&id))
        .ok_or_else(|| ScimError::not_found(format!("resource type `{id}` not found")))?;
    Ok(scim_json(
        StatusCode::OK,
        resource_type(kind, &state.broker.scim_base()),
    ))
}

async fn all_schemas(State(state): State<AppState>, Directory(_): Directory) -> Response {
    let base = state.broker.scim_base();
    list_of(schemas().iter().map(|s| schema_document(s, &base)).collect())
}

async fn one_schema(
    State(state): State<AppState>,
    Directory(_): Directory,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let s = schema(&id).ok_or_else(|| ScimError::not_found(format!("schema `{id}` not found")))?;
    Ok(scim_json(
        StatusCode::OK,
        schema_document(s, &state.broker.scim_base()),
    ))
}

async fn not_found() -> ScimError {
    ScimError::not_found("no such SCIM endpoint")
}
