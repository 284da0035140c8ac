//! Block Kit, typed: the blocks jitgate's Slack messages and its deny
//! modal are made of, and the message of each event. Every copy of a
//! request's message is later replaced (`chat.update`) by the message of
//! the event that decided it, so rendering is one function of the event.

use serde::{Deserialize, Serialize};

use crate::console::text::Lang;
use crate::notify::event::{Event, EventKind};
use crate::notify::shown::Shown;
use jitgate_shared::v1::api::RequestState;

/// A text object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum Text {
    #[serde(rename = "plain_text")]
    Plain { text: String },
    #[serde(rename = "mrkdwn")]
    Markdown { text: String },
}

impl Text {
    pub fn plain(text: impl Into<String>) -> Text {
        Text::Plain { text: text.into() }
    }
    pub fn markdown(text: impl Into<String>) -> Text {
        Text::Markdown { text: text.into() }
    }
}

/// An interactive element.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Element {
    Button {
        text: Text,
        action_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        value: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        /// `primary` or `danger`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        style: Option<String>,
    },
    PlainTextInput {
        action_id: String,
        #[serde(default)]
        multiline: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_length: Option<u32>,
    },
}

/// A layout block.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Header {
        text: Text,
    },
    Section {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        text: Option<Text>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fields: Vec<Text>,
    },
    Context {
        elements: Vec<Text>,
    },
    Actions {
        block_id: String,
        elements: Vec<Element>,
    },
    Input {
        block_id: String,
        label: Text,
        element: Element,
    },
}

/// A modal view (`views.open`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modal {
    #[serde(rename = "type")]
    pub kind: String,
    pub callback_id: String,
    pub private_metadata: String,
    pub title: Text,
    pub submit: Text,
    pub close: Text,
    pub blocks: Vec<Block>,
}

/// What interactive elements are named: the interaction handler reads
/// them back.
pub mod ids {
    pub const ACTIONS_BLOCK: &str = "jitgate";
    pub const APPROVE: &str = "approve";
    pub const DENY: &str = "deny";
    pub const EXTEND: &str = "extend";
    pub const OPEN: &str = "open";
    /// The deny modal, and its reason field (block and action).
    pub const DENY_MODAL: &str = "jitgate_deny";
    pub const REASON: &str = "reason";
}

/// Text people typed, safe in `mrkdwn` (Slack's three control
/// characters escaped).
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Slack refuses texts past its limits: keep within them.
fn clip(text: &str, most: usize) -> String {
    if text.chars().count() <= most {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(most.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// A message: the notification text (shown where blocks are not) and
/// its blocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub text: String,
    pub blocks: Vec<Block>,
}

/// The message of `event` in `lang`; buttons act on the request (or
/// grant) while it can still be acted on, and only where its workflow
/// lets chat do so.
pub fn message(event: &Event, lang: Lang, public_url: &str) -> Message {
    let t = lang.texts();
    let shown = Shown::of(event, lang, public_url);
    let mut blocks = vec![Block::Header {
        text: Text::plain(clip(&shown.title, 150)),
    }];
    // A section holds at most ten fields of at most 2,000 characters.
    for chunk in shown.facts.chunks(10) {
        blocks.push(Block::Section {
            text: None,
            fields: chunk
                .iter()
                .map(|(label, value)| Text::markdown(format!("*{label}*\n{}", clip(&escape(value), 1900))))
                .collect(),
        });
    }
    let mut buttons = Vec::new();
    let pending = event
        .request
        .as_ref()
        .filter(|r| r.state == RequestState::Pending);
    let asks_review = matches!(event.kind, EventKind::RequestCreated | EventKind::RequestReviewed);
    if let Some(r) = pending.filter(|_| asks_review && event.chat.approve) {
        buttons.push(Element::Button {
            text: Text::plain(t.approve),
            action_id: ids::APPROVE.into(),
            value: Some(r.id.to_string()),
            url: None,
            style: Some("primary".into()),
        });
        buttons.push(Element::Button {
            text: Text::plain(t.deny),
            action_id: ids::DENY.into(),
            value: Some(r.id.to_string()),
            url: None,
            style: Some("danger".into()),
        });
    }
    if let (EventKind::GrantEndingSoon, Some(g), true) = (event.kind, &event.grant, event.chat.extend) {
        buttons.push(Element::Button {
            text: Text::plain(t.extend),
            action_id: ids::EXTEND.into(),
            value: Some(g.id.to_string()),
            url: None,
            style: Some("primary".into()),
        });
    }
    buttons.push(Element::Button {
        text: Text::plain(shown.link_label),
        action_id: ids::OPEN.into(),
        value: None,
        url: Some(shown.link.clone()),
        style: None,
    });
    blocks.push(Block::Actions {
        block_id: ids::ACTIONS_BLOCK.into(),
        elements: buttons,
    });
    Message {
        // The fallback text is read as mrkdwn too.
        text: clip(&escape(&shown.headline), 3000),
        blocks,
    }
}

/// The modal asking why a request is denied; the request rides in its
/// private metadata.
pub fn deny_modal(request: &str, lang: Lang) -> Modal {
    let t = lang.texts();
    Modal {
        kind: "modal".into(),
        callback_id: ids::DENY_MODAL.into(),
        private_metadata: request.to_owned(),
        title: Text::plain(clip(t.slack_deny_title, 24)),
        submit: Text::plain(clip(t.deny, 24)),
        close: Text::plain(clip(t.slack_cancel, 24)),
        blocks: vec![Block::Input {
            block_id: ids::REASON.into(),
            label: Text::plain(t.comment),
            element: Element::PlainTextInput {
                action_id: ids::REASON.into(),
                multiline: true,
                max_length: Some(1000),
            },
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::event::{ChatActions, GrantFacts};
    use jitgate_shared::v1::GrantId;

    fn event(kind: EventKind, state: RequestState, chat: ChatActions) -> Event {
        let mut e = crate::notify::event::sample();
        (e.kind, e.chat) = (kind, chat);
        let r = e.request.as_mut().unwrap();
        r.state = state;
        r.requester.name = "Alice <@U123>".into();
        r.justification = Some("INC-1 & <!channel>".into());
        r.approvals_required = 2;
        e.grant = Some(GrantFacts {
            id: GrantId::generate(),
            starts_at: e.at,
            ends_at: e.at,
        });
        e
    }

    fn action_ids(m: &Message) -> Vec<String> {
        m.blocks
            .iter()
            .filter_map(|b| match b {
                Block::Actions { elements, .. } => Some(elements.iter().filter_map(|e| match e {
                    Element::Button { action_id, .. } => Some(action_id.clone()),
                    Element::PlainTextInput { .. } => None,
                })),
                _ => None,
            })
            .flatten()
            .collect()
    }

    const CHAT: ChatActions = ChatActions {
        approve: true,
        extend: true,
    };

    #[test]
    fn a_pending_request_gets_buttons_where_chat_may_approve() {
        let e = event(EventKind::RequestCreated, RequestState::Pending, CHAT);
        assert_eq!(
            action_ids(&message(&e, Lang::En, "https://j")),
            ["approve", "deny", "open"]
        );
        let no_chat = ChatActions {
            approve: false,
            extend: false,
        };
        let e = event(EventKind::RequestCreated, RequestState::Pending, no_chat);
        assert_eq!(action_ids(&message(&e, Lang::En, "https://j")), ["open"]);
        let e = event(EventKind::RequestApproved, RequestState::Active, CHAT);
        assert_eq!(
            action_ids(&message(&e, Lang::En, "https://j")),
            ["open"],
            "decided: no buttons"
        );
        let e = event(EventKind::GrantEndingSoon, RequestState::Active, CHAT);
        assert_eq!(
            action_ids(&message(&e, Lang::En, "https://j")),
            ["extend", "open"]
        );
    }

    #[test]
    fn agents_offline_open_the_agents_page_and_act_on_nothing() {
        let e = crate::notify::event::sample_agent_offline();
        let m = message(&e, Lang::En, "https://j");
        assert_eq!(action_ids(&m), ["open"]);
        let json = serde_json::to_string(&m).unwrap();
        assert!(json.contains("https://j/console/admin/agents"), "{json}");
        assert!(json.contains("AGENTS OFFLINE: AWS prod"), "{json}");
    }

    #[test]
    fn what_people_typed_cannot_mention_or_link() {
        let e = event(EventKind::RequestCreated, RequestState::Pending, CHAT);
        let json = serde_json::to_string(&message(&e, Lang::En, "https://j")).unwrap();
        assert!(
            !json.contains("<!channel>") && !json.contains("<@U123>"),
            "{json}"
        );
        assert!(json.contains("&lt;!channel&gt;") && json.contains("INC-1 &amp;"));
    }

    #[test]
    fn blocks_serialize_as_block_kit() {
        let e = event(EventKind::RequestCreated, RequestState::Pending, CHAT);
        let json = serde_json::to_value(message(&e, Lang::En, "https://j")).unwrap();
        assert_eq!(json["blocks"][0]["type"], "header");
        assert_eq!(json["blocks"][0]["text"]["type"], "plain_text");
        let actions = json["blocks"].as_array().unwrap().last().unwrap();
        assert_eq!(actions["type"], "actions");
        assert_eq!(actions["elements"][0]["type"], "button");
        assert_eq!(actions["elements"][0]["style"], "primary");
        let modal = serde_json::to_value(deny_modal("r1", Lang::En)).unwrap();
        assert_eq!(modal["type"], "modal");
        assert_eq!(modal["blocks"][0]["element"]["type"], "plain_text_input");
        assert!(modal["title"]["text"].as_str().unwrap().chars().count() <= 24);
    }
}
