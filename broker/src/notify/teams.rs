//! Microsoft Teams: an Adaptive Card posted to a Teams Workflows webhook
//! ("When a Teams webhook request is received", then "Post card in a
//! chat or channel"). Teams renders cards of schema 1.4 on every client,
//! so cards keep to it; the buttons open the request's page in the
//! console (no bot framework, no actions taken from the card).

use serde::{Deserialize, Serialize};

use super::event::Event;
use super::queue::DeliveryError;
use super::shown::Shown;
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
    let shown = Shown::of(event, lang, public_url);
    let alarming = event.alarming();
    let card = Card {
        schema: "http://adaptivecards.io/schemas/adaptive-card.json".into(),
        kind: "AdaptiveCard".into(),
        version: CARD_VERSION.into(),
        body: vec![
            Element::TextBlock {
                text: literal(&shown.title),
                size: Some("Medium".into()),
                weight: Some("Bolder".into()),
                color: alarming.then(|| "Attention".into()),
                wrap: true,
            },
            Element::FactSet {
                facts: shown
                    .facts
                    .into_iter()
                    .map(|(title, value)| Fact {
                        title: title.to_owned(),
                        value: literal(&value),
                    })
                    .collect(),
            },
        ],
        actions: vec![Action::OpenUrl {
            title: shown.link_label.to_owned(),
            url: shown.link,
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
        Ok(Workflow {
            name: config.name.clone(),
            url,
            http: crate::tls::client::https_client(config.timeout, config.ca_file.as_deref())?,
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
