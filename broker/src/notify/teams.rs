//! Microsoft Teams: an Adaptive Card posted to a Teams Workflows webhook
//! ("When a Teams webhook request is received", then "Post card in a
//! chat or channel"). Teams renders cards of schema 1.4 on every client,
//! so cards keep to it; the buttons open the request's page in the
//! console (no bot framework, no actions taken from the card).

use serde::{Deserialize, Serialize};

use super::event::Event;
use super::queue::DeliveryError;
use super::webhook::retry_after;
use crate::console::text::Lang;

/// The Adaptive Card schema version the cards declare and keep to.
pub const CARD_VERSION: &str = "1.4";

/// A card element, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Element {
    TextBlock {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weight: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        color: Option<String>,
        wrap: bool,
    },
    FactSet {
        facts: Vec<Fact>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    pub title: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Action {
    #[serde(rename = "Action.OpenUrl")]
    OpenUrl { title: String, url: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Card {
    #[serde(rename = "$schema")]
    pub schema: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
    pub body: Vec<Element>,
    pub actions: Vec<Action>,
}

/// What a Workflows webhook takes: a message with one card attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    #[serde(rename = "type")]
    pub kind: String,
    pub attachments: Vec<Attachment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    pub content_type: String,
    pub content_url: Option<String>,
    pub content: Card,
}

/// Adaptive Card text is Markdown: what people typed is shown as typed.
fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(
            c,
            '\\' | '*' | '_' | '[' | ']' | '(' | ')' | '#' | '`' | '<' | '>' | '~' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The card of `event`.
pub fn card(event: &Event, lang: Lang, public_url: &str) -> Payload {
    let t = lang.texts();
    let r = &event.request;
    let mut facts = vec![
        (t.requester, r.requester.name.clone()),
        (t.col_resource, r.resource_name.clone()),
        (t.duration, lang.duration(r.duration_seconds)),
        (
            t.col_approvals,
            format!("{} / {}", r.approvals, r.approvals_required),
        ),
    ];
    if let Some(j) = &r.justification {
        facts.push((t.justification, j.clone()));
    }
    if let Some(ticket) = &r.ticket {
        facts.push((t.ticket, ticket.clone()));
    }
    if !r.chain.is_empty() {
        facts.push((t.chain, r.chain.join(" → ")));
    }
    if let Some(g) = &event.grant {
        let at = |d: chrono::DateTime<chrono::Utc>| d.format("%Y-%m-%d %H:%M UTC").to_string();
        facts.push((t.window, format!("{} – {}", at(g.starts_at), at(g.ends_at))));
    }
    if let Some(v) = &event.review {
        let by = match v.decision {
            jitgate_shared::v1::api::Decision::Approve => t.ev_approved_by,
            jitgate_shared::v1::api::Decision::Deny => t.ev_denied_by,
        };
        facts.push((by, v.reviewer.name.clone()));
        if let Some(c) = &v.comment {
            facts.push((t.comment, c.clone()));
        }
    }
    if let Some(d) = &event.detail {
        facts.push((t.mail_detail, d.clone()));
    }
    let alarming = r.break_glass || event.kind == super::event::EventKind::RevokeFailing;
    let card = Card {
        schema: "http://adaptivecards.io/schemas/adaptive-card.json".into(),
        kind: "AdaptiveCard".into(),
        version: CARD_VERSION.into(),
        body: vec![
            Element::TextBlock {
                text: literal(&format!("{}: {}", lang.event_kind(event.kind), r.resource_name)),
                size: Some("Medium".into()),
                weight: Some("Bolder".into()),
                color: alarming.then(|| "Attention".into()),
                wrap: true,
            },
            Element::FactSet {
                facts: facts
                    .into_iter()
                    .map(|(title, value)| Fact {
                        title: title.to_owned(),
                        value: literal(&value),
                    })
                    .collect(),
            },
        ],
        actions: vec![Action::OpenUrl {
            title: t.mail_open.to_owned(),
            url: format!("{}/console/requests/{}", public_url.trim_end_matches('/'), r.id),
        }],
    };
    Payload {
        kind: "message".into(),
        attachments: vec![Attachment {
            content_type: "application/vnd.microsoft.card.adaptive".into(),
            content_url: None,
            content: card,
        }],
    }
}

/// One Workflows webhook.
#[derive(Clone)]
pub struct Workflow {
    pub name: String,
    url: reqwest::Url,
    http: reqwest::Client,
}

impl std::fmt::Debug for Workflow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the workflow's signature: never shown.
        write!(f, "TeamsWorkflow({})", self.name)
    }
}

impl Workflow {
    pub fn new(config: &crate::config::TeamsConfig, url: &str) -> Result<Workflow, String> {
        let url = reqwest::Url::parse(url.trim()).map_err(|e| format!("the workflow URL: {e}"))?;
        if url.scheme() != "https" && !crate::identity::oidc::is_loopback(&url) {
            return Err("the workflow URL must be https://".into());
        }
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.timeout);
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("ca_file {}: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        Ok(Workflow {
            name: config.name.clone(),
            url,
            http: builder.build().map_err(|e| e.to_string())?,
        })
    }

    /// Posts the card; Workflows answers 202 once it took it.
    pub async fn send(&self, event: &Event, public_url: &str) -> Result<(), DeliveryError> {
        let answer = self
            .http
            .post(self.url.clone())
            .json(&card(event, Lang::En, public_url))
            .send()
            .await
            .map_err(|e| DeliveryError::retryable(format!("Teams workflow `{}`: {e}", self.name)))?;
        let status = answer.status();
        if status.is_success() {
            return Ok(());
        }
        Err(DeliveryError {
            message: format!("Teams workflow `{}` answered {status}", self.name),
            retryable: status.is_server_error()
                || status == reqwest::StatusCode::TOO_MANY_REQUESTS
                || status == reqwest::StatusCode::REQUEST_TIMEOUT,
            retry_after: retry_after(answer.headers()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_people_typed_is_shown_as_typed() {
        assert_eq!(
            literal("**x** [a](http://b)"),
            "\\*\\*x\\*\\* \\[a\\]\\(http://b\\)"
        );
    }
}
