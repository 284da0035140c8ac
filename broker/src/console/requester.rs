//! The requester's pages: my access (grants with countdowns, pending and
//! recent requests), the catalogue, the request form, a request's page;
//! and their actions: request, cancel, end early, extend.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDateTime, Utc};
use jitgate_shared::v1::api::{
    CatalogueEntry, CreateRequestBody, ExtendBody, ExtendOutcome, GrantState, RequestState, RevokeBody,
};
use jitgate_shared::v1::{GrantId, RequestId, ResourceId};
use serde::Deserialize;

use super::csrf::Submitted;
use super::page::{self, see_other, Chrome, Here};
use super::text::Texts;
use super::view::{self, GrantRow, Moment, RequestRow};
use super::viewer::Viewer;
use crate::api::AppState;
use crate::service::grants::GrantQuery;
use crate::service::requests::RequestQuery;
use crate::service::ServiceError;

/// How many recent requests the home page lists.
const RECENT: usize = 10;

#[derive(Debug, Template)]
#[template(path = "console/home.html")]
pub struct HomePage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub grants: Vec<GrantRow>,
    pub pending: Vec<RequestRow>,
    pub recent: Vec<RequestRow>,
}

/// `GET /console/`: my access.
pub async fn home(State(s): State<AppState>, viewer: Viewer) -> Response {
    match home_page(&s, &viewer).await {
        Ok(p) => page::render(StatusCode::OK, &p),
        Err(e) => page::service_error(&viewer, e, "/console/"),
    }
}

async fn home_page(s: &AppState, viewer: &Viewer) -> Result<HomePage, ServiceError> {
    let b = &s.broker;
    let me = Some(viewer.user.id.clone());
    let grants = |state| GrantQuery {
        state: Some(state),
        user: me.clone(),
        after: None,
        limit: 200,
    };
    let (active, scheduled, requests) = tokio::try_join!(
        b.list_grants(&viewer.user, grants(GrantState::Active)),
        b.list_grants(&viewer.user, grants(GrantState::Scheduled)),
        b.list_requests(
            &viewer.user,
            RequestQuery {
                requester: me.clone(),
                limit: 200,
                ..RequestQuery::default()
            }
        ),
    )?;
    let room = b.extension_room(&active.items).await?;
    let now = b.clock().now();
    let t = viewer.lang.texts();
    let mut grants: Vec<GrantRow> = active
        .items
        .iter()
        .chain(&scheduled.items)
        .map(|g| GrantRow {
            extend_choices: view::extend_choices(viewer.lang, room.get(&g.id).copied()),
            ..view::grant_row(t, g, now)
        })
        .collect();
    grants.sort_by(|a, b| a.ends_at_iso.cmp(&b.ends_at_iso));
    let pending = requests
        .items
        .iter()
        .filter(|r| r.state == RequestState::Pending)
        .map(|r| view::request_row(viewer.lang, r))
        .collect();
    let recent = requests
        .items
        .iter()
        .filter(|r| r.state != RequestState::Pending)
        .take(RECENT)
        .map(|r| view::request_row(viewer.lang, r))
        .collect();
    Ok(HomePage {
        chrome: Chrome::of(viewer, Here::Home, t.home_title, "/console/").live("requests grants"),
        t,
        grants,
        pending,
        recent,
    })
}

/// A catalogue entry as the catalogue shows it.
#[derive(Debug)]
pub struct CatalogueItem {
    pub id: String,
    pub name: String,
    pub group: String,
    pub approvals: u32,
    pub approvers: String,
    pub default_duration: String,
    pub max_duration: String,
    pub ticket_pattern: Option<String>,
    pub break_glass: bool,
}

/// Resources of one configuration.
#[derive(Debug)]
pub struct CatalogueGroup {
    pub configuration: String,
    pub items: Vec<CatalogueItem>,
}

#[derive(Debug, Template)]
#[template(path = "console/catalogue.html")]
pub struct CataloguePage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub q: String,
    pub groups: Vec<CatalogueGroup>,
}

#[derive(Debug, Deserialize)]
pub struct Search {
    #[serde(default)]
    pub q: String,
}

fn matches(e: &CatalogueEntry, q: &str) -> bool {
    let q = q.trim().to_lowercase();
    q.is_empty()
        || [
            e.resource.id.as_str(),
            e.resource.display_name.as_str(),
            e.resource.group.as_deref().unwrap_or(""),
            e.configuration_name.as_str(),
        ]
        .iter()
        .any(|f| f.to_lowercase().contains(&q))
}

/// `GET /console/catalogue?q=`: what I may request.
pub async fn catalogue(State(s): State<AppState>, viewer: Viewer, Query(search): Query<Search>) -> Response {
    let entries = match s.broker.catalogue(&viewer.user).await {
        Ok(e) => e,
        Err(e) => return page::service_error(&viewer, e, "/console/"),
    };
    let t = viewer.lang.texts();
    let mut groups: Vec<CatalogueGroup> = Vec::new();
    for e in entries.iter().filter(|e| matches(e, &search.q)) {
        let item = CatalogueItem {
            id: e.resource.id.to_string(),
            name: if e.resource.display_name.is_empty() {
                e.resource.id.to_string()
            } else {
                e.resource.display_name.clone()
            },
            group: e.resource.group.clone().unwrap_or_default(),
            approvals: e.workflow.approvals_required,
            approvers: if e.approvers.is_empty() {
                t.nobody.to_owned()
            } else {
                e.approvers
                    .iter()
                    .map(|u| u.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            default_duration: viewer.lang.duration(e.workflow.default_duration_seconds),
            max_duration: viewer.lang.duration(e.workflow.max_duration_seconds),
            ticket_pattern: e.workflow.ticket_pattern.clone(),
            break_glass: e.workflow.break_glass,
        };
        match groups.last_mut() {
            Some(g) if g.configuration == e.configuration_name => g.items.push(item),
            _ => groups.push(CatalogueGroup {
                configuration: e.configuration_name.clone(),
                items: vec![item],
            }),
        }
    }
    page::render(
        StatusCode::OK,
        &CataloguePage {
            chrome: Chrome::of(&viewer, Here::Catalogue, t.catalogue_title, "/console/catalogue"),
            t,
            q: search.q,
            groups,
        },
    )
}

#[derive(Debug, Template)]
#[template(path = "console/request_form.html")]
pub struct RequestForm {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub resource: String,
    pub resource_name: String,
    pub durations: Vec<(u64, String, bool)>,
    pub justification_required: bool,
    pub justification: String,
    pub ticket_pattern: Option<String>,
    pub ticket: String,
    pub starts_at: String,
    pub break_glass_allowed: bool,
    pub break_glass: bool,
    pub approvals: u32,
    pub error: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct NewRequest {
    pub resource: String,
}

/// The form's fields as sent (kept to show again with an error).
#[derive(Debug, Default, Deserialize)]
pub struct RequestFields {
    pub resource: String,
    #[serde(default)]
    pub duration_seconds: String,
    #[serde(default)]
    pub justification: String,
    #[serde(default)]
    pub ticket: String,
    #[serde(default)]
    pub starts_at: String,
    #[serde(default)]
    pub break_glass: Option<String>,
}

async fn request_form(
    s: &AppState,
    viewer: &Viewer,
    fields: &RequestFields,
    error: Option<String>,
) -> Result<RequestForm, ServiceError> {
    let entries = s.broker.catalogue(&viewer.user).await?;
    let entry = entries
        .into_iter()
        .find(|e| e.resource.id.as_str() == fields.resource)
        .ok_or_else(|| ServiceError::not_found("resource you may request", &fields.resource))?;
    let t = viewer.lang.texts();
    let w = &entry.workflow;
    Ok(RequestForm {
        chrome: Chrome::of(viewer, Here::Catalogue, t.new_request_title, "/console/catalogue"),
        t,
        resource: entry.resource.id.to_string(),
        resource_name: if entry.resource.display_name.is_empty() {
            entry.resource.id.to_string()
        } else {
            entry.resource.display_name.clone()
        },
        durations: view::duration_choices(
            viewer.lang,
            w.default_duration_seconds,
            w.max_duration_seconds,
            fields.duration_seconds.parse().ok(),
        ),
        justification_required: w.justification_required,
        justification: fields.justification.clone(),
        ticket_pattern: w.ticket_pattern.clone(),
        ticket: fields.ticket.clone(),
        starts_at: fields.starts_at.clone(),
        break_glass_allowed: w.break_glass,
        break_glass: fields.break_glass.is_some(),
        approvals: w.approvals_required,
        error,
    })
}

/// `GET /console/requests/new?resource=`: the request form.
pub async fn new_request(State(s): State<AppState>, viewer: Viewer, Query(q): Query<NewRequest>) -> Response {
    let fields = RequestFields {
        resource: q.resource,
        ..RequestFields::default()
    };
    match request_form(&s, &viewer, &fields, None).await {
        Ok(p) => page::render(StatusCode::OK, &p),
        Err(e) => page::service_error(&viewer, e, "/console/catalogue"),
    }
}

/// The form's fields as the API's request body; a field that does not
/// parse is named.
fn request_body(f: &RequestFields) -> Result<CreateRequestBody, ServiceError> {
    let resource =
        ResourceId::new(f.resource.clone()).map_err(|e| ServiceError::invalid("resource", e.to_string()))?;
    let duration_seconds = match f.duration_seconds.trim() {
        "" => None,
        d => Some(d.parse::<u64>().map_err(|_| {
            ServiceError::invalid("duration_seconds", format!("`{d}` is not a number of seconds"))
        })?),
    };
    let starts_at = match f.starts_at.trim() {
        "" => None,
        s => Some(parse_start(s)?),
    };
    let text = |s: &str| Some(s.trim().to_owned()).filter(|s| !s.is_empty());
    Ok(CreateRequestBody {
        resource,
        duration_seconds,
        justification: text(&f.justification),
        ticket: text(&f.ticket),
        starts_at,
        break_glass: f.break_glass.is_some(),
    })
}

/// A start time from `<input type="datetime-local">` (read as UTC) or RFC 3339.
fn parse_start(s: &str) -> Result<DateTime<Utc>, ServiceError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            ServiceError::invalid(
                "starts_at",
                format!("`{s}` is not a date and time like 2026-12-01T09:30 (UTC)"),
            )
        })
}

/// `POST /console/requests`: asks for access; the request's page next, or
/// the form again saying what was refused.
pub async fn create_request(State(s): State<AppState>, form: Submitted<RequestFields>) -> Response {
    let Submitted { viewer, form } = form;
    let outcome = match request_body(&form) {
        Ok(body) => s.broker.create_request(&viewer.user, body).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(request) => see_other(&format!("/console/requests/{}", request.id)),
        Err(e @ (ServiceError::NotFound { .. } | ServiceError::Store(_) | ServiceError::Unavailable(_))) => {
            page::service_error(&viewer, e, "/console/catalogue")
        }
        Err(refused) => {
            let message = refused.to_string();
            let status = crate::api::error::ApiError::from(refused).status;
            match request_form(&s, &viewer, &form, Some(message)).await {
                Ok(p) => page::render(status, &p),
                Err(e) => page::service_error(&viewer, e, "/console/catalogue"),
            }
        }
    }
}

#[derive(Debug, Template)]
#[template(path = "console/request.html")]
pub struct RequestPage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub id: String,
    pub row: RequestRow,
    pub requester: String,
    pub principal: String,
    pub justification: Option<String>,
    pub ticket: Option<String>,
    pub moments: Vec<Moment>,
    pub grant: Option<GrantRow>,
    pub chain: String,
    pub can_cancel: bool,
    pub can_end: bool,
    pub can_review: bool,
}

/// `GET /console/requests/{id}`: a request's timeline, and its grant.
pub async fn request_page(State(s): State<AppState>, viewer: Viewer, Path(id): Path<String>) -> Response {
    match request_view(&s, &viewer, &id).await {
        Ok(p) => page::render(StatusCode::OK, &p),
        Err(e) => page::service_error(&viewer, e, "/console/"),
    }
}

async fn request_view(s: &AppState, viewer: &Viewer, id: &str) -> Result<RequestPage, ServiceError> {
    let id: RequestId = id.parse().map_err(|_| ServiceError::not_found("request", id))?;
    let b = &s.broker;
    let request = b.get_request(&viewer.user, id).await?;
    let grant = match request.grant {
        Some(g) => Some(b.get_grant(&viewer.user, g).await?),
        None => None,
    };
    let room = b.extension_room(grant.as_slice()).await?;
    let now = b.clock().now();
    let t = viewer.lang.texts();
    let mine = request.requester == viewer.user.id;
    let open = grant.as_ref().is_some_and(|g| g.state != GrantState::Ended);
    // The requester or an admin may cancel the request or end its grant.
    let may_act = mine || viewer.user.has_role(jitgate_shared::v1::api::Role::Admin);
    Ok(RequestPage {
        chrome: Chrome::of(
            viewer,
            Here::Home,
            t.request_title,
            &format!("/console/requests/{id}"),
        )
        .live("requests grants"),
        t,
        id: id.to_string(),
        row: view::request_row(viewer.lang, &request),
        requester: request.requester.to_string(),
        principal: request.principal.clone(),
        justification: request.justification.clone(),
        ticket: request.ticket.clone(),
        moments: view::timeline(t, &request, grant.as_ref(), now),
        chain: grant
            .as_ref()
            .map(|g| view::chain_text(&g.chain))
            .unwrap_or_default(),
        grant: grant.as_ref().map(|g| GrantRow {
            // Only its holder extends a grant.
            extend_choices: match mine {
                true => view::extend_choices(viewer.lang, room.get(&g.id).copied()),
                false => Vec::new(),
            },
            ..view::grant_row(t, g, now)
        }),
        can_cancel: may_act
            && matches!(request.state, RequestState::Pending | RequestState::Approved)
            && !open,
        can_end: open && may_act,
        can_review: request.state == RequestState::Pending && !mine,
    })
}

/// `POST /console/requests/{id}/cancel`.
pub async fn cancel_request(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Submitted<super::viewer::Nothing>,
) -> Response {
    let viewer = form.viewer;
    let back = format!("/console/requests/{id}");
    let outcome = match id.parse::<RequestId>() {
        Ok(rid) => s.broker.cancel_request(&viewer.user, rid).await.map(|_| ()),
        Err(_) => Err(ServiceError::not_found("request", &id)),
    };
    match outcome {
        Ok(()) => see_other(&back),
        Err(e) => page::service_error(&viewer, e, &back),
    }
}

/// `POST /console/grants/{id}/end`: ends a grant early.
pub async fn end_grant(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Submitted<super::viewer::Nothing>,
) -> Response {
    let viewer = form.viewer;
    let outcome = match id.parse::<GrantId>() {
        Ok(gid) => {
            s.broker
                .revoke_grant(&viewer.user, gid, RevokeBody::default())
                .await
        }
        Err(_) => Err(ServiceError::not_found("grant", &id)),
    };
    match outcome {
        Ok(g) => see_other(&format!("/console/requests/{}", g.request)),
        Err(e) => page::service_error(&viewer, e, "/console/"),
    }
}

#[derive(Debug, Deserialize)]
pub struct ExtendFields {
    pub duration_seconds: u64,
}

/// `POST /console/grants/{id}/extend`: at once, or an extension request
/// for approval.
pub async fn extend_grant(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Submitted<ExtendFields>,
) -> Response {
    let Submitted { viewer, form } = form;
    let body = ExtendBody {
        duration_seconds: form.duration_seconds,
        justification: None,
        ticket: None,
    };
    let outcome = match id.parse::<GrantId>() {
        Ok(gid) => s.broker.extend_grant(&viewer.user, gid, body).await,
        Err(_) => Err(ServiceError::not_found("grant", &id)),
    };
    match outcome {
        Ok(ExtendOutcome::Extended { grant }) => see_other(&format!("/console/requests/{}", grant.request)),
        Ok(ExtendOutcome::PendingApproval { request }) => {
            see_other(&format!("/console/requests/{}", request.id))
        }
        Err(e) => page::service_error(&viewer, e, "/console/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_become_the_api_body_or_name_the_bad_one() {
        let f = RequestFields {
            resource: "prod-admin".into(),
            duration_seconds: "3600".into(),
            justification: "  deploy  ".into(),
            ticket: String::new(),
            starts_at: "2026-12-01T09:30".into(),
            break_glass: Some("on".into()),
        };
        let body = request_body(&f).unwrap();
        assert_eq!(body.duration_seconds, Some(3600));
        assert_eq!(body.justification.as_deref(), Some("deploy"));
        assert_eq!(body.ticket, None);
        assert!(body.break_glass);
        assert_eq!(body.starts_at.unwrap().to_rfc3339(), "2026-12-01T09:30:00+00:00");
        for (field, bad) in [
            (
                "duration_seconds",
                RequestFields {
                    duration_seconds: "an hour".into(),
                    ..RequestFields {
                        resource: "r".into(),
                        ..Default::default()
                    }
                },
            ),
            (
                "starts_at",
                RequestFields {
                    starts_at: "tomorrow".into(),
                    ..RequestFields {
                        resource: "r".into(),
                        ..Default::default()
                    }
                },
            ),
        ] {
            match request_body(&bad) {
                Err(ServiceError::Invalid { field: Some(f), .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
