//! The audit log page, for admins and auditors: records newest first,
//! filtered by person, resource, record kind and time, a page at a time;
//! the broker's latest check of the chain, with "check now"; and the
//! download of what the filter matches.

use std::collections::HashMap;

use askama::Template;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use jitgate_shared::v1::UserId;
use serde::Deserialize;

use super::csrf::Submitted;
use super::page::{self, see_other, Chrome, Here};
use super::text::{Lang, Texts};
use super::view::at_text;
use super::viewer::{url_escape, Viewer};
use crate::api::AppState;
use crate::audit::verify::ChainStatus;
use crate::audit::{Actor, AuditEvent, AuditRecord};
use crate::service::audit::AuditQuery;

/// Records the page shows at a time.
pub const PAGE: usize = 50;

/// The filter form, as sent (every field may be empty): the API's query.
pub type AuditForm = crate::api::admin::AuditParams;

/// One record as the page shows it.
#[derive(Debug)]
pub struct AuditRow {
    pub seq: u64,
    pub at: String,
    pub actor: String,
    /// The actor's records (empty for the broker or a directory).
    pub actor_link: String,
    pub kind: &'static str,
    pub kind_name: &'static str,
    /// What the record is about: label, text, link (empty: none).
    pub about: Vec<(&'static str, String, String)>,
    /// The event as logged.
    pub detail: String,
}

/// Shapes a record for the page; `names` maps accounts to display names.
pub fn audit_row(lang: Lang, record: &AuditRecord, names: &HashMap<String, String>) -> AuditRow {
    let t = lang.texts();
    let name_of = |id: &UserId| match names.get(id.as_str()) {
        Some(name) if name != id.as_str() => format!("{name} ({id})"),
        _ => id.to_string(),
    };
    let person_link = |u: &UserId| format!("/console/audit?person={}", url_escape(u.as_str()));
    let (actor, actor_link) = match &record.actor {
        Actor::User(u) => (name_of(u), person_link(u)),
        Actor::System => (t.audit_system.to_owned(), String::new()),
        Actor::Directory(d) => (format!("{} {d}", t.audit_directory), String::new()),
    };
    let s = record.event.subjects();
    let mut about = Vec::new();
    if let Some(u) = s.user {
        about.push((t.col_user, name_of(u), person_link(u)));
    }
    if let Some(r) = s.resource {
        about.push((
            t.col_resource,
            r.to_string(),
            format!("/console/audit?resource={}", url_escape(r.as_str())),
        ));
    }
    for r in &s.requests {
        about.push((
            t.about_request,
            short(&r.to_string()),
            format!("/console/requests/{r}"),
        ));
    }
    for g in &s.grants {
        about.push((t.about_grant, short(&g.to_string()), String::new()));
    }
    if let Some(c) = s.configuration {
        about.push((t.col_configuration, c.to_string(), String::new()));
    }
    if let Some(a) = s.agent {
        about.push((t.about_agent, short(&a.to_string()), String::new()));
    }
    let kind = record.event.kind();
    AuditRow {
        seq: record.seq,
        at: record.at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
        actor,
        actor_link,
        kind,
        kind_name: lang.audit_kind(kind),
        about,
        detail: serde_json::to_string(&record.event).unwrap_or_default(),
    }
}

/// The first block of a UUID: enough to tell records apart on a page (the
/// full id is in the details and the link).
fn short(id: &str) -> String {
    id.split('-').next().unwrap_or(id).to_owned()
}

/// The chain check as the page shows it.
#[derive(Debug)]
pub struct ChainRow {
    /// `ok`, `bad` or `` (not checked, or under way).
    pub class: &'static str,
    pub text: String,
}

pub fn chain_row(t: &Texts, status: &ChainStatus) -> ChainRow {
    let mut parts = Vec::new();
    let mut class = "";
    if let Some((at, report)) = &status.last {
        match &report.broken {
            Some(e) => {
                class = "bad";
                parts.push(format!(
                    "{}: {e} ({} {}; {} {})",
                    t.chain_broken,
                    report.records,
                    t.chain_records_verified,
                    t.chain_checked_at,
                    at_text(*at)
                ));
            }
            None => {
                class = "ok";
                let anchor = match &report.anchor {
                    Some(a) => format!("{} {} ({})", t.chain_signed_head, a.seq, at_text(a.at)),
                    None => t.chain_not_signed.to_owned(),
                };
                parts.push(format!(
                    "{}: {} {}; {anchor}; {} {}",
                    t.chain_intact,
                    report.records,
                    t.chain_records_verified,
                    t.chain_checked_at,
                    at_text(*at)
                ));
            }
        }
    }
    if let Some((done, of)) = status.running {
        parts.push(format!("{}: {done} {} {of}…", t.chain_running, t.chain_of));
    }
    if parts.is_empty() {
        parts.push(t.chain_not_checked.to_owned());
    }
    ChainRow {
        class,
        text: parts.join(" · "),
    }
}

#[derive(Debug, Template)]
#[template(path = "console/audit.html")]
pub struct AuditPage {
    pub chrome: Chrome,
    pub t: &'static Texts,
    pub form: AuditForm,
    pub kinds: Vec<(&'static str, &'static str)>,
    pub people: Vec<(String, String)>,
    pub resources: Vec<String>,
    pub error: Option<String>,
    pub rows: Vec<AuditRow>,
    pub chain: ChainRow,
    /// The query string of the filter (for the download and paging links).
    pub query: String,
    pub older: Option<u64>,
    pub searched_to: u64,
    pub paged: bool,
}

/// `GET /console/audit`: the log, filtered.
pub async fn audit(State(s): State<AppState>, viewer: Viewer, Query(form): Query<AuditForm>) -> Response {
    let b = &s.broker;
    let chain = match b.audit_chain_status(&viewer.user) {
        Ok(c) => c,
        Err(e) => return page::service_error(&viewer, e, "/console/"),
    };
    let (users, resources) =
        match tokio::try_join!(b.list_users(&viewer.user), b.list_resources(&viewer.user)) {
            Ok(v) => v,
            Err(e) => return page::service_error(&viewer, e, "/console/"),
        };
    let t = viewer.lang.texts();
    let (mut status, mut error, mut found) = (StatusCode::OK, None, None);
    match form.filter() {
        Err(e) => (status, error) = (StatusCode::BAD_REQUEST, Some(e)),
        Ok(filter) => {
            let query = AuditQuery {
                filter,
                before: form.before,
                limit: PAGE,
            };
            match b.audit_log(&viewer.user, &query).await {
                Ok(p) => found = Some(p),
                Err(e) => {
                    let e = crate::api::error::ApiError::from(e);
                    (status, error) = (e.status, Some(e.body.message));
                }
            }
        }
    }
    let names: HashMap<String, String> = users
        .iter()
        .map(|u| (u.id.to_string(), u.display_name.clone()))
        .collect();
    let found = found.unwrap_or_default();
    page::render(
        status,
        &AuditPage {
            chrome: Chrome::of(&viewer, Here::Admin, t.nav_audit, "/console/audit"),
            t,
            query: form.query_string(),
            form,
            kinds: AuditEvent::KINDS
                .iter()
                .map(|k| (*k, viewer.lang.audit_kind(k)))
                .collect(),
            people: users
                .iter()
                .map(|u| (u.id.to_string(), u.display_name.clone()))
                .collect(),
            resources: resources.iter().map(|r| r.id.to_string()).collect(),
            error,
            rows: found
                .records
                .iter()
                .map(|r| audit_row(viewer.lang, r, &names))
                .collect(),
            chain: chain_row(t, &chain),
            older: found.next_before,
            searched_to: found.searched_to,
            paged: found.next_before.is_some(),
        },
    )
}

/// `GET /console/audit/export`: what the filter matches, as JSON lines.
pub async fn export(State(s): State<AppState>, viewer: Viewer, Query(form): Query<AuditForm>) -> Response {
    let back = format!("/console/audit?{}", form.query_string());
    let filter = match form.filter() {
        Ok(f) => f,
        Err(e) => {
            let chrome = Chrome::of(&viewer, Here::Admin, viewer.lang.texts().nav_audit, &back);
            return page::error(chrome, StatusCode::BAD_REQUEST, e, &back);
        }
    };
    let stream = match s.broker.audit_export(&viewer.user, filter).await {
        Ok(stream) => stream,
        Err(e) => return page::service_error(&viewer, e, &back),
    };
    let name = format!(
        "attachment; filename=\"jitgate-audit-{}.jsonl\"",
        s.broker.clock.now().format("%Y%m%dT%H%M%SZ")
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/jsonl"));
    if let Ok(v) = HeaderValue::from_str(&name) {
        headers.insert(CONTENT_DISPOSITION, v);
    }
    response
}

/// The "check now" form: nothing but its token.
#[derive(Debug, Deserialize)]
pub struct CheckForm {}

/// `POST /console/audit/check`: check the chain now.
pub async fn check_now(State(s): State<AppState>, form: Submitted<CheckForm>) -> Response {
    let viewer = form.viewer;
    match s.broker.request_audit_check(&viewer.user) {
        Ok(_) => see_other("/console/audit"),
        Err(e) => page::service_error(&viewer, e, "/console/audit"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEntry, AuditHead};
    use chrono::DateTime;

    fn form(pairs: &[(&str, &str)]) -> AuditForm {
        serde_urlencoded::from_str(&serde_urlencoded::to_string(pairs).unwrap()).unwrap()
    }

    #[test]
    fn the_form_reads_into_a_filter_and_names_what_is_wrong() {
        let f = form(&[
            ("person", " alice "),
            ("kind", "grant_ended"),
            ("since", "2026-11-29T09:30"),
            ("until", "2026-11-29T10:00:00Z"),
            ("resource", ""),
        ])
        .filter()
        .unwrap();
        assert_eq!(f.person.unwrap().as_str(), "alice");
        assert_eq!(f.kind, Some("grant_ended"));
        assert_eq!(f.since.unwrap().to_rfc3339(), "2026-11-29T09:30:00+00:00");
        assert!(f.resource.is_none());
        assert!(form(&[]).filter().unwrap().is_empty());

        let e = form(&[("since", "yesterday")]).filter().unwrap_err();
        assert!(
            e.contains("since `yesterday`") && e.contains("2026-11-29T09:30"),
            "{e}"
        );
        let e = form(&[("kind", "<script>")]).filter().unwrap_err();
        assert!(e.contains("unknown audit record kind"), "{e}");
        let e = form(&[("since", "2026-11-29T10:00"), ("until", "2026-11-29T09:00")])
            .filter()
            .unwrap_err();
        assert!(e.contains("is not before"), "{e}");
        let e = form(&[("person", "not a/valid id")]).filter().unwrap_err();
        assert!(e.starts_with("person `not a/valid id`"), "{e}");
    }

    #[test]
    fn paging_links_keep_the_filter_but_not_the_page() {
        let f = form(&[("person", "alice"), ("kind", "signed_in"), ("before", "40")]);
        assert_eq!(f.before, Some(40));
        let q = f.query_string();
        assert!(q.contains("person=alice") && q.contains("kind=signed_in"), "{q}");
        assert!(!q.contains("before"), "{q}");
    }

    #[test]
    fn a_row_names_the_actor_and_links_what_the_record_is_about() {
        let request = jitgate_shared::v1::RequestId::generate();
        let (record, _) = AuditHead::default().append(AuditEntry {
            at: DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            actor: Actor::User("bob".parse().unwrap()),
            event: AuditEvent::RequestCreated {
                request,
                resource: "aws-admin".parse().unwrap(),
                duration_seconds: 600,
                justification: Some("<b>fix</b>".into()),
                ticket: None,
                break_glass: false,
                on_call: false,
            },
        });
        let names = HashMap::from([("bob".to_owned(), "Bob B".to_owned())]);
        let row = audit_row(Lang::Ja, &record, &names);
        assert_eq!(row.actor, "Bob B (bob)");
        assert_eq!(row.actor_link, "/console/audit?person=bob");
        assert_eq!(row.kind_name, "申請作成");
        assert!(row
            .about
            .iter()
            .any(|(_, text, link)| text == "aws-admin" && link == "/console/audit?resource=aws-admin"));
        assert!(row
            .about
            .iter()
            .any(|(_, _, link)| link == &format!("/console/requests/{request}")));
        assert!(
            row.detail.contains("<b>fix</b>"),
            "escaped by the template, not here"
        );
    }

    #[test]
    fn the_chain_row_says_intact_broken_running_or_not_checked() {
        use crate::audit::verify::{Broken, ChainReport};
        use crate::audit::ChainBreak;
        let t = Lang::En.texts();
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert_eq!(chain_row(t, &ChainStatus::default()).text, t.chain_not_checked);
        let intact = ChainStatus {
            last: Some((
                at,
                ChainReport {
                    records: 12,
                    anchor: None,
                    broken: None,
                },
            )),
            running: Some((2_000, 14_000)),
        };
        let row = chain_row(t, &intact);
        assert_eq!(row.class, "ok");
        assert!(
            row.text
                .starts_with("Intact: 12 records verified; no signed head yet"),
            "{}",
            row.text
        );
        assert!(row.text.contains("Checking: 2000 of 14000"), "{}", row.text);
        let broken = ChainStatus {
            last: Some((
                at,
                ChainReport {
                    records: 6,
                    anchor: None,
                    broken: Some(Broken::Chain(ChainBreak::Tampered { seq: 7 })),
                },
            )),
            running: None,
        };
        let row = chain_row(t, &broken);
        assert_eq!(row.class, "bad");
        assert!(
            row.text
                .contains("BROKEN: record 7: content does not match its hash"),
            "{}",
            row.text
        );
    }
}
