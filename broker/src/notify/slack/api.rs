//! The few Slack Web API methods jitgate calls, typed: `chat.postMessage`,
//! `chat.update`, `users.info`, `users.lookupByEmail`, `views.open`, and
//! replies to an interaction's `response_url`. Slack answers HTTP 429 with
//! `Retry-After` when rate limited, and HTTP 200 with `ok: false` and an
//! error code otherwise; both become a [`DeliveryError`] that says
//! whether to try again.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::blocks::{Block, Message, Modal};
use crate::config::SlackConfig;
use crate::notify::queue::DeliveryError;
use crate::notify::webhook::retry_after;

/// A Slack user as `users.info` and `users.lookupByEmail` give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackUser {
    pub id: String,
    #[serde(default)]
    pub deleted: bool,
    #[serde(default)]
    pub is_bot: bool,
    /// Slack confirmed the person owns the address.
    #[serde(default)]
    pub is_email_confirmed: bool,
    #[serde(default)]
    pub profile: Profile,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub real_name: Option<String>,
}

impl SlackUser {
    /// The address Slack vouches for: confirmed, of a person (not a bot),
    /// still a member.
    pub fn verified_email(&self) -> Option<&str> {
        let email = self.profile.email.as_deref()?;
        (self.is_email_confirmed && !self.deleted && !self.is_bot).then_some(email)
    }
}

/// Where a message was posted: what `chat.update` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Posted {
    pub channel: String,
    pub ts: String,
}

#[derive(Serialize)]
struct PostMessage<'a> {
    channel: &'a str,
    text: &'a str,
    blocks: &'a [Block],
    unfurl_links: bool,
}

#[derive(Serialize)]
struct Update<'a> {
    channel: &'a str,
    ts: &'a str,
    text: &'a str,
    blocks: &'a [Block],
}

#[derive(Serialize)]
struct OpenView<'a> {
    trigger_id: &'a str,
    view: &'a Modal,
}

/// What every method answers.
#[derive(Deserialize)]
struct Answer<T> {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
    #[serde(flatten)]
    body: Option<T>,
}

#[derive(Deserialize)]
struct UserAnswer {
    user: SlackUser,
}

#[derive(Deserialize)]
struct PostedAnswer {
    channel: String,
    ts: String,
}

#[derive(Deserialize)]
struct Nothing {}

/// Error codes that no retry will change: the message or its target is
/// wrong.
const FOR_GOOD: &[&str] = &[
    "channel_not_found",
    "is_archived",
    "msg_too_long",
    "invalid_blocks",
    "no_text",
    "message_not_found",
    "cant_update_message",
    "user_not_found",
    "users_not_found",
    "expired_trigger_id",
];

/// A Slack workspace, through the bot token.
#[derive(Clone)]
pub struct SlackApi {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for SlackApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        write!(f, "SlackApi({})", self.base)
    }
}

impl SlackApi {
    pub fn new(config: &SlackConfig, token: String) -> Result<SlackApi, String> {
        Ok(SlackApi {
            base: config.api_url.trim_end_matches('/').to_owned(),
            token,
            http: crate::tls::client::https_client(config.timeout, config.ca_file.as_deref())?,
        })
    }

    async fn answer<T: DeserializeOwned>(
        &self,
        method: &str,
        sent: reqwest::RequestBuilder,
    ) -> Result<T, DeliveryError> {
        let answer = sent
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| DeliveryError::retryable(format!("Slack {method}: {e}")))?;
        let status = answer.status();
        if !status.is_success() {
            return Err(DeliveryError {
                message: format!("Slack {method} answered {status}"),
                retryable: status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS,
                retry_after: retry_after(answer.headers()),
            });
        }
        let parsed: Answer<T> = answer
            .json()
            .await
            .map_err(|e| DeliveryError::retryable(format!("Slack {method}: unreadable answer: {e}")))?;
        match (parsed.ok, parsed.body) {
            (true, Some(body)) => Ok(body),
            (_, _) => {
                let code = parsed.error.unwrap_or_else(|| "no error code".into());
                let message = format!("Slack {method}: {code}");
                Err(if FOR_GOOD.contains(&code.as_str()) {
                    DeliveryError::refused(message)
                } else {
                    DeliveryError::retryable(message)
                })
            }
        }
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        body: &B,
    ) -> Result<T, DeliveryError> {
        let sent = self.http.post(format!("{}/{method}", self.base)).json(body);
        self.answer(method, sent).await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        method: &str,
        query: &[(&str, &str)],
    ) -> Result<T, DeliveryError> {
        let sent = self.http.get(format!("{}/{method}", self.base)).query(query);
        self.answer(method, sent).await
    }

    /// Posts `message` to a channel (an id, `#name`, or a person's user
    /// id for a direct message).
    pub async fn post_message(&self, channel: &str, message: &Message) -> Result<Posted, DeliveryError> {
        let body = PostMessage {
            channel,
            text: &message.text,
            blocks: &message.blocks,
            unfurl_links: false,
        };
        let posted: PostedAnswer = self.post("chat.postMessage", &body).await?;
        Ok(Posted {
            channel: posted.channel,
            ts: posted.ts,
        })
    }

    /// Replaces a message posted earlier.
    pub async fn update(&self, posted: &Posted, message: &Message) -> Result<(), DeliveryError> {
        let body = Update {
            channel: &posted.channel,
            ts: &posted.ts,
            text: &message.text,
            blocks: &message.blocks,
        };
        self.post::<_, Nothing>("chat.update", &body).await.map(|_| ())
    }

    pub async fn user(&self, id: &str) -> Result<SlackUser, DeliveryError> {
        let found: UserAnswer = self.get("users.info", &[("user", id)]).await?;
        Ok(found.user)
    }

    /// The member with `email`, if there is one.
    pub async fn user_by_email(&self, email: &str) -> Result<Option<SlackUser>, DeliveryError> {
        match self
            .get::<UserAnswer>("users.lookupByEmail", &[("email", email)])
            .await
        {
            Ok(found) => Ok(Some(found.user)),
            Err(e) if e.message.ends_with("users_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn open_view(&self, trigger_id: &str, modal: &Modal) -> Result<(), DeliveryError> {
        let body = OpenView {
            trigger_id,
            view: modal,
        };
        self.post::<_, Nothing>("views.open", &body).await.map(|_| ())
    }

    /// Tells only the person who clicked (`response_url` of their
    /// interaction), leaving the message as it is.
    pub async fn tell_privately(&self, response_url: &str, text: &str) -> Result<(), DeliveryError> {
        let body = serde_json::json!({
            "response_type": "ephemeral",
            "replace_original": false,
            "text": text,
        });
        let answer = self
            .http
            .post(response_url)
            .json(&body)
            .send()
            .await
            .map_err(|e| DeliveryError::retryable(format!("Slack response_url: {e}")))?;
        if answer.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryError::retryable(format!(
                "Slack response_url answered {}",
                answer.status()
            )))
        }
    }
}
