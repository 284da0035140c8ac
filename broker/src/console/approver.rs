//! The approver's pages: the inbox (what I may review, oldest first, with
//! the requester's history, the policy that lets me approve, N-of-M
//! progress and the chain) and my recent decisions; and the review action,
//! through the same service as the API and chat.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use jitgate_shared::v1::api::{Decision, InboxEntry, ReviewBody};
use jitgate_shared::v1::RequestId;
use serde::Deserialize;

use super::csrf::Submitted;
use super::page::{self, see_other, Chrome, Here};
use super::text::{Lang, Texts};
use super::view::{self, RequestRow};
use super::viewer::Viewer;
use crate::api::AppState;
use crate::service::requests::RequestQuery;
use crate::service::ServiceError;

/// How many of my decisions the inbox lists.
const DECISIONS: usize = 10;

/// A request waiting for review, as the inbox shows it.
#[derive(Debug)]
pub struct InboxItem {
    pub row: RequestRow,
    pub requester: String,
    pub requester_name: String,
    pub justification: Option<String>,
    pub ticket: Option<String>,
    pub expires: String,
    pub policies: String,
    pub reviewed: bool,
    pub chain: String,
    pub history: Vec<RequestRow>,
}

fn item(lang: Lang, e: &InboxEntry) -> InboxItem {
    let r = &e.request;
    InboxItem {
        row: view::request_row(lang, r),
        requester: r.requester.to_string(),
        requester_name: e.requester_name.clone(),
        justification: r.justification.clone(),
        ticket: r.ticket.clone(),
        expires: view::at_text(r.pending_expires_at),
        policies: e.approving_policies.join(", "),
        reviewed: e.reviewed,
        chain: view::chain_text(&e.chain),
        history: e.history.iter().map(|h| view::request_row(lang, h)).collect(),
    }
}

#[derive(Debug, Template)]
#[template(path = "console/inbox.html")]
pub struct InboxPage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub items: Vec<InboxItem>,
    pub decisions: Vec<(RequestRow, &'static str)>,
}

/// `GET /console/inbox`.
pub async fn inbox(State(s): State<AppState>, viewer: Viewer) -> Response {
    match inbox_page(&s, &viewer).await {
        Ok(p) => page::render(StatusCode::OK, &p),
        Err(e) => page::service_error(&viewer, e, "/console/"),
    }
}

async fn inbox_page(s: &AppState, viewer: &Viewer) -> Result<InboxPage, ServiceError> {
    let (entries, recent) = tokio::try_join!(
        s.broker.inbox(&viewer.user),
        s.broker.list_requests(
            &viewer.user,
            RequestQuery {
                limit: 200,
                ..RequestQuery::default()
            }
        )
    )?;
    let t = viewer.lang.texts();
    let decisions = recent
        .items
        .iter()
        .filter_map(|r| {
            let mine = r.reviews.iter().find(|v| v.reviewer == viewer.user.id)?;
            let decided = match mine.decision {
                Decision::Approve => t.ev_approved_by,
                Decision::Deny => t.ev_denied_by,
            };
            Some((view::request_row(viewer.lang, r), decided))
        })
        .take(DECISIONS)
        .collect();
    Ok(InboxPage {
        chrome: Chrome::of(viewer, Here::Inbox, t.inbox_title, "/console/inbox").live("requests"),
        t,
        items: entries.iter().map(|e| item(viewer.lang, e)).collect(),
        decisions,
    })
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Deny,
}

#[derive(Debug, Deserialize)]
pub struct ReviewFields {
    pub decision: Verdict,
    #[serde(default)]
    pub comment: String,
    /// Where to go next (the inbox, or the request's page).
    #[serde(default)]
    pub back: Option<String>,
}

/// `POST /console/requests/{id}/review`: approve or deny. Self-approval
/// and double votes are refused by the service whatever the page showed.
pub async fn review(
    State(s): State<AppState>,
    Path(id): Path<String>,
    form: Submitted<ReviewFields>,
) -> Response {
    let Submitted { viewer, form } = form;
    let back = match form.back.as_deref() {
        Some("request") => format!("/console/requests/{id}"),
        _ => "/console/inbox".to_owned(),
    };
    let decision = match form.decision {
        Verdict::Approve => Decision::Approve,
        Verdict::Deny => Decision::Deny,
    };
    let body = ReviewBody {
        comment: Some(form.comment.trim().to_owned()).filter(|c| !c.is_empty()),
    };
    let outcome = match id.parse::<RequestId>() {
        Ok(rid) => s.broker.review_request(&viewer.user, rid, decision, body).await,
        Err(_) => Err(ServiceError::not_found("request", &id)),
    };
    match outcome {
        Ok(_) => see_other(&back),
        Err(e) => page::service_error(&viewer, e, &back),
    }
}
