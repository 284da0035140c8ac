//! The Graph endpoints the `entra` provider uses, as Microsoft documents
//! them (v1.0): request bodies checked, OData error bodies, `@odata.nextLink`
//! paging; every call authenticated by a token from [`super::token`], and
//! passed through the fake's switches first (server errors, throttling).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::directory::{parse_filter, Action, Assignment, GraphError, User};
use super::{uuid_like, Shared};

const GRAPH: &str = "https://graph.microsoft.com/v1.0";

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        let id = uuid_like();
        (
            self.status,
            Json(json!({
                "error": {
                    "code": self.code,
                    "message": self.message,
                    "innerError": {
                        "date": Utc::now().format("%Y-%m-%dT%H:%M:%S").to_string(),
                        "request-id": id,
                        "client-request-id": id,
                    }
                }
            })),
        )
            .into_response()
    }
}

/// Runs before every Graph call: counts it, applies the switches (server
/// errors, forced and rate-based throttling of writes) and checks the
/// bearer token.
pub async fn gate(State(s): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let write = request.method() != Method::GET;
    s.count(|st| st.requests += 1);
    if s.switch(|sw| (sw.fail_next > 0).then(|| sw.fail_next -= 1))
        .is_some()
    {
        s.count(|st| st.server_errors += 1);
        return GraphError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Please retry.",
        )
        .into_response();
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if let Err(e) = s.check_token(token) {
        return e.into_response();
    }
    if write {
        if let Some(retry_after) = s.admit_write() {
            s.count(|st| st.throttled += 1);
            let mut response = GraphError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequests",
                "Too many requests. Please try again later.",
            )
            .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
    }
    next.run(request).await
}

type Params = Query<HashMap<String, String>>;

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id,
        "userPrincipalName": u.user_principal_name,
        "mail": u.mail,
        "displayName": u.display_name,
    })
}

/// `GET /users/{id | userPrincipalName}`.
pub async fn get_user(State(s): State<Arc<Shared>>, Path(key): Path<String>) -> Response {
    let now = Utc::now();
    let dir = s.directory.lock().unwrap();
    match dir.user(&key, now) {
        Ok(u) => {
            let mut body = user_json(u);
            body["@odata.context"] = json!(format!("{GRAPH}/$metadata#users/$entity"));
            Json(body).into_response()
        }
        Err(e) => e.into_response(),
    }
}

/// `GET /users?$filter=mail eq '...'`.
pub async fn list_users(State(s): State<Arc<Shared>>, Query(q): Params) -> Response {
    let Some(filter) = q.get("$filter") else {
        return GraphError::bad_request("This fake lists users only with a $filter on mail.").into_response();
    };
    let clauses = match parse_filter(filter) {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let Some(mail) = clauses.get("mail").filter(|_| clauses.len() == 1) else {
        return GraphError::bad_request(format!("Unsupported filter: {filter}")).into_response();
    };
    let dir = s.directory.lock().unwrap();
    let value: Vec<Value> = dir
        .users_by_mail(mail, Utc::now())
        .into_iter()
        .map(user_json)
        .collect();
    Json(json!({ "@odata.context": format!("{GRAPH}/$metadata#users"), "value": value })).into_response()
}

/// `GET /groups/{id}/members`, paged by `$top` (default 100, at most 999)
/// with an opaque `$skiptoken` in `@odata.nextLink`.
pub async fn members(
    State(s): State<Arc<Shared>>,
    Path(group): Path<String>,
    Query(q): Params,
    axum::extract::OriginalUri(request_uri): axum::extract::OriginalUri,
) -> Response {
    let page = match q.get("$top").map(|t| t.parse::<usize>()) {
        None => s.switch(|sw| sw.page_size),
        Some(Ok(n @ 1..=999)) => n.min(s.switch(|sw| sw.page_size)),
        Some(_) => return GraphError::bad_request("Invalid page size specified: '$top'.").into_response(),
    };
    let skip = match q.get("$skiptoken").map(|t| t.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) => n,
        Some(Err(_)) => return GraphError::bad_request("Invalid $skiptoken.").into_response(),
    };
    let dir = s.directory.lock().unwrap();
    let all = match dir.members(&group, Utc::now()) {
        Ok(m) => m,
        Err(e) => return e.into_response(),
    };
    let value: Vec<Value> = all
        .iter()
        .skip(skip)
        .take(page)
        .map(|u| {
            let mut v = user_json(u);
            v["@odata.type"] = json!("#microsoft.graph.user");
            v
        })
        .collect();
    let mut body = json!({
        "@odata.context": format!("{GRAPH}/$metadata#directoryObjects"),
        "value": value,
    });
    if skip + page < all.len() {
        body["@odata.nextLink"] = json!(format!(
            "{}{}?$top={page}&$skiptoken={}",
            s.base_url(),
            request_uri.path(),
            skip + page
        ));
    }
    Json(body).into_response()
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, GraphError> {
    serde_json::from_slice(body).map_err(|e| GraphError::bad_request(format!("Invalid request body: {e}")))
}

#[derive(Deserialize)]
struct Reference {
    #[serde(rename = "@odata.id")]
    odata_id: String,
}

/// `POST /groups/{id}/members/$ref` with `{"@odata.id": ".../directoryObjects/{id}"}`.
pub async fn add_member(State(s): State<Arc<Shared>>, Path(group): Path<String>, body: Bytes) -> Response {
    let result = parse::<Reference>(&body).and_then(|r| {
        let member = r
            .odata_id
            .split_once("/directoryObjects/")
            .map(|(_, id)| id.to_owned())
            .filter(|id| !id.is_empty() && !id.contains('/'))
            .ok_or_else(|| GraphError::bad_request(format!("Invalid object identifier '{}'.", r.odata_id)))?;
        s.directory
            .lock()
            .unwrap()
            .add_member(&group, &member, Utc::now())
    });
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `DELETE /groups/{id}/members/{member}/$ref`.
pub async fn remove_member(
    State(s): State<Arc<Shared>>,
    Path((group, member)): Path<(String, String)>,
) -> Response {
    match s
        .directory
        .lock()
        .unwrap()
        .remove_member(&group, &member, Utc::now())
    {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /users/{id}/revokeSignInSessions`.
pub async fn revoke_sign_in_sessions(State(s): State<Arc<Shared>>, Path(user): Path<String>) -> Response {
    match s
        .directory
        .lock()
        .unwrap()
        .revoke_sign_in_sessions(&user, Utc::now())
    {
        Ok(()) => Json(json!({
            "@odata.context": format!("{GRAPH}/$metadata#Edm.Boolean"),
            "value": true,
        }))
        .into_response(),
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expiration {
    #[serde(rename = "type")]
    kind: String,
    end_date_time: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleInfo {
    start_date_time: Option<DateTime<Utc>>,
    expiration: Option<Expiration>,
}

/// `unifiedRoleAssignmentScheduleRequest` and
/// `privilegedAccessGroupAssignmentScheduleRequest`, the fields they share
/// and the ones of each.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleRequest {
    action: String,
    principal_id: String,
    justification: Option<String>,
    schedule_info: Option<ScheduleInfo>,
    // Directory roles.
    role_definition_id: Option<String>,
    directory_scope_id: Option<String>,
    // PIM for Groups.
    group_id: Option<String>,
    access_id: Option<String>,
}

impl ScheduleRequest {
    fn assignment(&self, pim: bool, now: DateTime<Utc>) -> Result<(Action, Assignment), GraphError> {
        let action = Action::parse(&self.action)?;
        let missing = |field: &str| {
            GraphError::bad_request(format!("The request is missing the required property '{field}'."))
        };
        let (resource, scope) = if pim {
            (
                self.group_id.clone().ok_or_else(|| missing("groupId"))?,
                self.access_id.clone().ok_or_else(|| missing("accessId"))?,
            )
        } else {
            (
                self.role_definition_id
                    .clone()
                    .ok_or_else(|| missing("roleDefinitionId"))?,
                self.directory_scope_id
                    .clone()
                    .ok_or_else(|| missing("directoryScopeId"))?,
            )
        };
        let info = self.schedule_info.as_ref();
        let start = info.and_then(|i| i.start_date_time).unwrap_or(now);
        let end = match info.and_then(|i| i.expiration.as_ref()) {
            None => None,
            Some(e) if e.kind == "noExpiration" => None,
            Some(e) if e.kind == "afterDateTime" => {
                let end = e
                    .end_date_time
                    .ok_or_else(|| missing("scheduleInfo.expiration.endDateTime"))?;
                if end <= start {
                    return Err(GraphError::bad_request(
                        "The schedule's end is not after its start.",
                    ));
                }
                Some(end)
            }
            Some(e) => {
                return Err(GraphError::bad_request(format!(
                    "Expiration type '{}' is not implemented by this fake.",
                    e.kind
                )))
            }
        };
        if action != Action::AdminRemove && self.justification.as_deref().is_none_or(str::is_empty) {
            // The default role settings require a justification on assignment.
            return Err(GraphError::new(
                StatusCode::BAD_REQUEST,
                "JustificationRule",
                "Justification is required by policy.",
            ));
        }
        Ok((
            action,
            Assignment {
                id: uuid_like(),
                principal_id: self.principal_id.clone(),
                resource,
                scope,
                start,
                end,
            },
        ))
    }
}

async fn schedule_request(s: &Shared, pim: bool, body: &Bytes) -> Response {
    let now = Utc::now();
    let result = parse::<ScheduleRequest>(body).and_then(|r| {
        let (action, wanted) = r.assignment(pim, now)?;
        let status = s
            .directory
            .lock()
            .unwrap()
            .schedule(pim, action, wanted.clone(), now)?;
        Ok((r, wanted, status))
    });
    let (r, a, status) = match result {
        Ok(ok) => ok,
        Err(e) => return e.into_response(),
    };
    let expiration = match a.end {
        Some(end) => json!({ "type": "afterDateTime", "endDateTime": end }),
        None => json!({ "type": "noExpiration" }),
    };
    let (context, resource) = if pim {
        (
            "identityGovernance/privilegedAccess/group/assignmentScheduleRequests",
            json!({ "groupId": a.resource, "accessId": a.scope }),
        )
    } else {
        (
            "roleManagement/directory/roleAssignmentScheduleRequests",
            json!({ "roleDefinitionId": a.resource, "directoryScopeId": a.scope, "appScopeId": null }),
        )
    };
    let mut body = json!({
        "@odata.context": format!("{GRAPH}/$metadata#{context}/$entity"),
        "id": uuid_like(),
        "status": status,
        "createdDateTime": now,
        "completedDateTime": now,
        "action": r.action,
        "principalId": a.principal_id,
        "isValidationOnly": false,
        "targetScheduleId": a.id,
        "justification": r.justification,
        "scheduleInfo": { "startDateTime": a.start, "recurrence": null, "expiration": expiration },
    });
    if let (Some(b), Some(extra)) = (body.as_object_mut(), resource.as_object()) {
        b.extend(extra.clone());
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

/// `POST /roleManagement/directory/roleAssignmentScheduleRequests`.
pub async fn role_request(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    schedule_request(&s, false, &body).await
}

/// `POST /identityGovernance/privilegedAccess/group/assignmentScheduleRequests`.
pub async fn pim_group_request(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    schedule_request(&s, true, &body).await
}

fn instances(s: &Shared, pim: bool, q: &HashMap<String, String>) -> Result<Value, GraphError> {
    let (resource_key, scope_key) = if pim {
        ("groupId", "accessId")
    } else {
        ("roleDefinitionId", "directoryScopeId")
    };
    let clauses = match q.get("$filter") {
        Some(f) => parse_filter(f)?,
        None if pim => {
            // Graph requires a groupId or principalId filter here.
            return Err(GraphError::bad_request(
                "Either groupId or principalId must be specified in the filter.",
            ));
        }
        None => Default::default(),
    };
    if let Some(bad) = clauses
        .keys()
        .find(|k| ![resource_key, scope_key, "principalId"].contains(&k.as_str()))
    {
        return Err(GraphError::bad_request(format!(
            "Unsupported filter property '{bad}'."
        )));
    }
    let now = Utc::now();
    let dir = s.directory.lock().unwrap();
    let list = if pim { &dir.pim_groups } else { &dir.roles };
    let value: Vec<Value> = list
        .iter()
        .filter(|a| a.active_at(now))
        .filter(|a| clauses.get(resource_key).is_none_or(|v| *v == a.resource))
        .filter(|a| clauses.get(scope_key).is_none_or(|v| *v == a.scope))
        .filter(|a| clauses.get("principalId").is_none_or(|v| *v == a.principal_id))
        .map(|a| {
            json!({
                "id": a.id,
                "principalId": a.principal_id,
                resource_key: a.resource,
                scope_key: a.scope,
                "startDateTime": a.start,
                "endDateTime": a.end,
                "assignmentType": "assigned",
                "memberType": "direct",
            })
        })
        .collect();
    let context = if pim {
        "identityGovernance/privilegedAccess/group/assignmentScheduleInstances"
    } else {
        "roleManagement/directory/roleAssignmentScheduleInstances"
    };
    Ok(json!({ "@odata.context": format!("{GRAPH}/$metadata#{context}"), "value": value }))
}

/// `GET /roleManagement/directory/roleAssignmentScheduleInstances?$filter=...`.
pub async fn role_instances(State(s): State<Arc<Shared>>, Query(q): Params) -> Response {
    match instances(&s, false, &q) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `GET /identityGovernance/privilegedAccess/group/assignmentScheduleInstances?$filter=...`.
pub async fn pim_group_instances(State(s): State<Arc<Shared>>, Query(q): Params) -> Response {
    match instances(&s, true, &q) {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Anything else: Graph's answer for a segment it does not know.
pub async fn unknown(axum::extract::OriginalUri(uri): axum::extract::OriginalUri) -> Response {
    GraphError::bad_request(format!("Resource not found for the segment '{}'.", uri.path())).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JobSubject {
    object_id: String,
    object_type_name: String,
    links: Option<LinkedObjects>,
}

#[derive(Deserialize)]
struct LinkedObjects {
    #[serde(default)]
    members: Vec<JobSubject>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationParameters {
    rule_id: String,
    subjects: Vec<JobSubject>,
}

#[derive(Deserialize)]
struct ProvisionOnDemandBody {
    parameters: Vec<ApplicationParameters>,
}

/// `POST /servicePrincipals/{id}/synchronization/jobs/{job}/provisionOnDemand`:
/// groups with the members to provision; answers a `stringKeyStringValuePair`.
pub async fn provision_on_demand(
    State(s): State<Arc<Shared>>,
    Path((sp, job)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let now = Utc::now();
    let result = parse::<ProvisionOnDemandBody>(&body).and_then(|b| {
        let dir = s.directory.lock().unwrap();
        let mut requests = Vec::new();
        for p in &b.parameters {
            if p.rule_id.is_empty() {
                return Err(GraphError::bad_request("ruleId is required."));
            }
            for subject in &p.subjects {
                if subject.object_type_name != "Group" {
                    return Err(GraphError::bad_request(format!(
                        "This fake provisions groups; got objectTypeName '{}'.",
                        subject.object_type_name
                    )));
                }
                dir.group(&subject.object_id, now)?;
                let mut members = Vec::new();
                for m in subject.links.iter().flat_map(|l| &l.members) {
                    if m.object_type_name != "User" {
                        return Err(GraphError::bad_request(
                            "Group members to provision must be users.",
                        ));
                    }
                    dir.user(&m.object_id, now)?;
                    members.push(m.object_id.clone());
                }
                requests.push(super::ProvisionRequest {
                    rule_id: p.rule_id.clone(),
                    group: subject.object_id.clone(),
                    members,
                });
            }
        }
        if requests.is_empty() {
            return Err(GraphError::bad_request(
                "parameters must name at least one subject.",
            ));
        }
        Ok(requests)
    });
    let requests = match result {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let mut jobs = s.provisioning.lock().unwrap();
    let Some(received) = jobs.get_mut(&(sp.clone(), job.clone())) else {
        return GraphError::not_found(&job).into_response();
    };
    received.extend(requests);
    Json(json!({
        "@odata.context": format!("{GRAPH}/$metadata#microsoft.graph.stringKeyStringValuePair"),
        "key": "Microsoft.Identity.Health.CPP.Common.DataContracts.SyncFabric.StatusInfo",
        "value": "[{\"provisioningSteps\":[]}]",
    }))
    .into_response()
}
