//! What Slack sends when someone clicks a button of a jitgate message or
//! submits the deny modal (`application/x-www-form-urlencoded` with one
//! field, `payload`, holding JSON), typed, and what the person asked for.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::blocks::ids;

#[derive(Debug, Clone, Deserialize)]
pub struct UserRef {
    pub id: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ActionPayload {
    pub action_id: String,
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct InputValue {
    #[serde(default)]
    pub value: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ViewState {
    /// Block id → action id → what was typed.
    #[serde(default)]
    pub values: BTreeMap<String, BTreeMap<String, InputValue>>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ViewPayload {
    pub callback_id: String,
    #[serde(default)]
    pub private_metadata: String,
    #[serde(default)]
    pub state: ViewState,
}

/// One interaction payload.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Payload {
    BlockActions {
        user: UserRef,
        #[serde(default)]
        trigger_id: String,
        #[serde(default)]
        response_url: Option<String>,
        actions: Vec<ActionPayload>,
    },
    ViewSubmission {
        user: UserRef,
        view: ViewPayload,
    },
    /// Anything else Slack may send (shortcuts, closed modals): ignored.
    #[serde(other)]
    Other,
}

/// What the person asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Approve {
        request: String,
    },
    /// The Deny button: ask why first (a modal).
    AskWhyDeny {
        request: String,
        trigger_id: String,
    },
    /// The deny modal submitted.
    Deny {
        request: String,
        reason: Option<String>,
    },
    Extend {
        grant: String,
    },
}

/// One interaction, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interaction {
    /// The Slack user who acted.
    pub user: String,
    pub intent: Intent,
    /// Where to tell them privately how it went (button clicks only).
    pub response_url: Option<String>,
}

/// Reads a form-encoded body; `None` for interactions jitgate does not
/// act on (the link button, other payload types). The error names what
/// is wrong.
pub fn read(body: &[u8]) -> Result<Option<Interaction>, String> {
    let form: BTreeMap<String, String> =
        serde_urlencoded::from_bytes(body).map_err(|e| format!("not a form: {e}"))?;
    let json = form.get("payload").ok_or("no `payload` field")?;
    let payload: Payload = serde_json::from_str(json).map_err(|e| format!("payload: {e}"))?;
    Ok(match payload {
        Payload::BlockActions {
            user,
            trigger_id,
            response_url,
            actions,
        } => {
            let Some(action) = actions.into_iter().next() else {
                return Err("payload: no action".into());
            };
            let value = || {
                action
                    .value
                    .clone()
                    .ok_or_else(|| format!("action `{}` without a value", action.action_id))
            };
            let intent = match action.action_id.as_str() {
                ids::APPROVE => Intent::Approve { request: value()? },
                ids::DENY => Intent::AskWhyDeny {
                    request: value()?,
                    trigger_id,
                },
                ids::EXTEND => Intent::Extend { grant: value()? },
                _ => return Ok(None),
            };
            Some(Interaction {
                user: user.id,
                intent,
                response_url,
            })
        }
        Payload::ViewSubmission { user, view } if view.callback_id == ids::DENY_MODAL => {
            let reason = view
                .state
                .values
                .get(ids::REASON)
                .and_then(|b| b.get(ids::REASON))
                .and_then(|v| v.value.clone())
                .map(|r| r.trim().to_owned())
                .filter(|r| !r.is_empty());
            Some(Interaction {
                user: user.id,
                intent: Intent::Deny {
                    request: view.private_metadata,
                    reason,
                },
                response_url: None,
            })
        }
        Payload::ViewSubmission { .. } | Payload::Other => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(payload: serde_json::Value) -> Vec<u8> {
        serde_urlencoded::to_string([("payload", payload.to_string())])
            .unwrap()
            .into_bytes()
    }

    #[test]
    fn button_clicks_and_the_modal_are_read() {
        let click = |action: &str| {
            form(serde_json::json!({
                "type": "block_actions",
                "user": {"id": "U1", "username": "bob"},
                "trigger_id": "t1",
                "response_url": "https://hooks.slack.com/actions/x",
                "actions": [{"action_id": action, "value": "r1", "type": "button"}],
            }))
        };
        let approve = read(&click("approve")).unwrap().unwrap();
        assert_eq!(approve.user, "U1");
        assert_eq!(approve.intent, Intent::Approve { request: "r1".into() });
        assert_eq!(
            approve.response_url.as_deref(),
            Some("https://hooks.slack.com/actions/x")
        );
        assert_eq!(
            read(&click("deny")).unwrap().unwrap().intent,
            Intent::AskWhyDeny {
                request: "r1".into(),
                trigger_id: "t1".into()
            }
        );
        assert_eq!(read(&click("open")).unwrap(), None);
        let submitted = form(serde_json::json!({
            "type": "view_submission",
            "user": {"id": "U2"},
            "view": {"callback_id": "jitgate_deny", "private_metadata": "r1",
                     "state": {"values": {"reason": {"reason": {"type": "plain_text_input", "value": " not now "}}}}},
        }));
        assert_eq!(
            read(&submitted).unwrap().unwrap().intent,
            Intent::Deny {
                request: "r1".into(),
                reason: Some("not now".into())
            }
        );
        let other = form(serde_json::json!({"type": "view_closed", "user": {"id": "U2"}}));
        assert_eq!(read(&other).unwrap(), None);
    }

    #[test]
    fn malformed_bodies_are_named() {
        assert!(read(b"payload=%7B").unwrap_err().starts_with("payload:"));
        assert!(read(b"nothing=1").unwrap_err().contains("payload"));
        let no_value = form(serde_json::json!({
            "type": "block_actions", "user": {"id": "U1"},
            "actions": [{"action_id": "approve"}],
        }));
        assert!(read(&no_value).unwrap_err().contains("without a value"));
        let no_action =
            form(serde_json::json!({"type": "block_actions", "user": {"id": "U1"}, "actions": []}));
        assert!(read(&no_action).unwrap_err().contains("no action"));
    }
}
