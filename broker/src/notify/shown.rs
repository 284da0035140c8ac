//! What a message of an event shows, whatever the channel: a title, a
//! headline, the facts as label and value in the reader's language, and
//! the link to the request's page. Mail, Slack and Teams lay these out
//! each their own way (and escape them for their own markup).

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::Decision;

use super::event::{ConfigurationFacts, Event, RequestFacts};
use crate::console::text::Lang;

/// One event, ready to lay out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    /// The kind and the resource: `Request approved: AWS prod admin`.
    pub title: String,
    /// The title and who asked.
    pub headline: String,
    /// Label and value, in order.
    pub facts: Vec<(&'static str, String)>,
    /// The request's page in the console (the agents page for
    /// `agent_offline`).
    pub link: String,
    pub link_label: &'static str,
}

fn at(d: DateTime<Utc>) -> String {
    d.format("%Y-%m-%d %H:%M UTC").to_string()
}

impl Shown {
    pub fn of(event: &Event, lang: Lang, public_url: &str) -> Shown {
        match (&event.request, &event.configuration) {
            (Some(r), _) => Self::of_request(event, r, lang, public_url),
            (None, Some(c)) => Self::of_configuration(event, c, lang, public_url),
            (None, None) => Shown {
                title: lang.event_kind(event.kind).to_owned(),
                headline: lang.event_kind(event.kind).to_owned(),
                facts: Vec::new(),
                link: format!("{}/console", public_url.trim_end_matches('/')),
                link_label: lang.texts().mail_open,
            },
        }
    }

    fn of_configuration(event: &Event, c: &ConfigurationFacts, lang: Lang, public_url: &str) -> Shown {
        let t = lang.texts();
        let name = if c.name.is_empty() {
            c.id.to_string()
        } else {
            c.name.clone()
        };
        let title = format!("{}: {name}", lang.event_kind(event.kind));
        Shown {
            headline: format!("{title} — {}", t.agents_waiting),
            title,
            facts: vec![
                (t.col_configuration, format!("{name} ({})", c.id)),
                (t.last_contact, at(c.last_contact)),
                (t.col_agents, c.agents.to_string()),
                (t.mail_detail, t.agents_waiting.to_owned()),
            ],
            link: format!("{}/console/admin/agents", public_url.trim_end_matches('/')),
            link_label: t.mail_open_agents,
        }
    }

    fn of_request(event: &Event, r: &RequestFacts, lang: Lang, public_url: &str) -> Shown {
        let t = lang.texts();
        let title = format!("{}: {}", lang.event_kind(event.kind), r.resource_name);
        let mut facts = vec![
            (
                t.requester,
                match &r.requester.email {
                    Some(email) => format!("{} <{email}>", r.requester.name),
                    None => r.requester.name.clone(),
                },
            ),
            (t.col_resource, format!("{} ({})", r.resource_name, r.resource)),
            (t.duration, lang.duration(r.duration_seconds)),
        ];
        if r.break_glass {
            facts.push((t.break_glass_flag, "⚠".into()));
        }
        if let Some(j) = &r.justification {
            facts.push((t.justification, j.clone()));
        }
        if let Some(ticket) = &r.ticket {
            facts.push((t.ticket, ticket.clone()));
        }
        facts.push((
            t.col_approvals,
            format!("{} / {}", r.approvals, r.approvals_required),
        ));
        if !r.chain.is_empty() {
            facts.push((t.chain, r.chain.join(" → ")));
        }
        if let Some(g) = &event.grant {
            facts.push((t.window, format!("{} – {}", at(g.starts_at), at(g.ends_at))));
        }
        if let Some(v) = &event.review {
            let by = match v.decision {
                Decision::Approve => t.ev_approved_by,
                Decision::Deny => t.ev_denied_by,
            };
            facts.push((by, format!("{} · {}", v.reviewer.name, at(event.at))));
            if let Some(c) = &v.comment {
                facts.push((t.comment, c.clone()));
            }
        }
        if let Some(d) = &event.detail {
            facts.push((t.mail_detail, d.clone()));
        }
        Shown {
            headline: format!("{title} — {}", r.requester.name),
            title,
            facts,
            link: format!("{}/console/requests/{}", public_url.trim_end_matches('/'), r.id),
            link_label: t.mail_open,
        }
    }
}
