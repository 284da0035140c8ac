//! The channels the broker configuration sets up (`[notify.email]`,
//! `[[notify.webhook]]`), their secrets read once at start, and the one
//! [`Channels::deliver`] the delivery service calls for a notification.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::email::{Mail, Mailer};
use super::queue::{DeliveryError, Notification, Receipt};
use super::route::Address;
use super::slack::api::{Posted, SlackApi};
use super::slack::{blocks, verify};
use super::webhook::Endpoint;
use crate::config::NotifyConfig;
use crate::console::text::Lang;

/// Ready channels. Absent ones deliver nothing: the router queues no
/// notification for them.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    email: Option<Mailer>,
    webhooks: BTreeMap<String, Endpoint>,
    slack: Option<std::sync::Arc<Slack>>,
    teams: BTreeMap<String, super::teams::Workflow>,
    /// The console's base URL, for links, and the CloudEvents `source`.
    public_url: String,
    /// The longest pause between tries of one notification.
    retry_cap: std::time::Duration,
}

/// A channel that could not be set up, named.
#[derive(Debug, thiserror::Error)]
#[error("notify.{channel}: {message}")]
pub struct ChannelError {
    pub channel: String,
    pub message: String,
}

/// A secret from a file (trailing newline trimmed), else from `env`.
fn secret(file: Option<&std::path::Path>, env: &str) -> Result<Option<String>, String> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| Some(s.trim_end().to_owned()))
            .map_err(|e| format!("{}: {e}", path.display())),
        None => Ok(std::env::var(env).ok().filter(|s| !s.is_empty())),
    }
}

/// A Slack app: its API, its signing secret, and the members found by
/// email so far.
pub struct Slack {
    pub api: SlackApi,
    signing_secret: Vec<u8>,
    /// People are also told by direct message.
    pub direct_messages: bool,
    /// Email (lower case) → member id, as `users.lookupByEmail` said.
    members: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

impl std::fmt::Debug for Slack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("Slack")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Slack {
    /// Checks that a request came from Slack (see [`verify`]).
    pub fn verify(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), verify::Refusal> {
        verify::verify(&self.signing_secret, timestamp, signature, body, now)
    }

    /// The member id of the person with `email`.
    async fn member(&self, email: &str) -> Result<String, DeliveryError> {
        let key = email.to_lowercase();
        if let Some(id) = jitgate_shared::sync::lock(&self.members).get(&key) {
            return Ok(id.clone());
        }
        let user = self
            .api
            .user_by_email(email)
            .await?
            .ok_or_else(|| DeliveryError::refused(format!("no Slack member has the address {email}")))?;
        jitgate_shared::sync::lock(&self.members).insert(key, user.id.clone());
        Ok(user.id)
    }
}

/// `JITGATE_WEBHOOK_{NAME}_SECRET`.
pub fn webhook_secret_env(name: &str) -> String {
    format!("JITGATE_WEBHOOK_{}_SECRET", name.to_uppercase().replace('-', "_"))
}

impl Channels {
    /// Sets up every configured channel, reading secrets.
    pub fn new(config: &NotifyConfig, public_url: &str) -> Result<Channels, ChannelError> {
        let email = match &config.email {
            Some(email) => {
                let fail = |message: String| ChannelError {
                    channel: "email".into(),
                    message,
                };
                let password =
                    secret(email.password_file.as_deref(), "JITGATE_SMTP_PASSWORD").map_err(fail)?;
                Some(Mailer::new(email, password).map_err(fail)?)
            }
            None => None,
        };
        let mut webhooks = BTreeMap::new();
        for w in &config.webhook {
            let fail = |message: String| ChannelError {
                channel: format!("webhook `{}`", w.name),
                message,
            };
            let secrets = if w.secret_files.is_empty() {
                secret(None, &webhook_secret_env(&w.name))
                    .map_err(fail)?
                    .into_iter()
                    .collect()
            } else {
                w.secret_files
                    .iter()
                    .map(|f| secret(Some(f), "").map(Option::unwrap_or_default))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(fail)?
            };
            if secrets.is_empty() {
                return Err(fail(format!(
                    "no signing secret: set secret_files or {}",
                    webhook_secret_env(&w.name)
                )));
            }
            webhooks.insert(w.name.clone(), Endpoint::new(w, &secrets).map_err(fail)?);
        }
        let slack = match &config.slack {
            Some(s) => {
                let fail = |message: String| ChannelError {
                    channel: "slack".into(),
                    message,
                };
                let token = secret(s.bot_token_file.as_deref(), "JITGATE_SLACK_BOT_TOKEN")
                    .map_err(fail)?
                    .ok_or_else(|| {
                        fail("no bot token: set bot_token_file or JITGATE_SLACK_BOT_TOKEN".into())
                    })?;
                let signing_secret = secret(s.signing_secret_file.as_deref(), "JITGATE_SLACK_SIGNING_SECRET")
                    .map_err(fail)?
                    .ok_or_else(|| {
                        fail(
                            "no signing secret: set signing_secret_file or JITGATE_SLACK_SIGNING_SECRET"
                                .into(),
                        )
                    })?;
                Some(std::sync::Arc::new(Slack {
                    api: SlackApi::new(s, token).map_err(fail)?,
                    signing_secret: signing_secret.into_bytes(),
                    direct_messages: s.direct_messages,
                    members: Default::default(),
                }))
            }
            None => None,
        };
        let mut teams = BTreeMap::new();
        for t in &config.teams {
            let fail = |message: String| ChannelError {
                channel: format!("teams `{}`", t.name),
                message,
            };
            let env = format!("JITGATE_TEAMS_{}_URL", t.name.to_uppercase().replace('-', "_"));
            let url = secret(t.url_file.as_deref(), &env)
                .map_err(fail)?
                .ok_or_else(|| fail(format!("no workflow URL: set url_file or {env}")))?;
            teams.insert(
                t.name.clone(),
                super::teams::Workflow::new(t, &url).map_err(fail)?,
            );
        }
        Ok(Channels {
            email,
            webhooks,
            slack,
            teams,
            public_url: public_url.trim_end_matches('/').to_owned(),
            retry_cap: config.retry_cap,
        })
    }

    pub fn has_email(&self) -> bool {
        self.email.is_some()
    }

    pub fn has_webhook(&self, name: &str) -> bool {
        self.webhooks.contains_key(name)
    }

    pub fn has_teams(&self, name: &str) -> bool {
        self.teams.contains_key(name)
    }

    pub fn slack(&self) -> Option<&std::sync::Arc<Slack>> {
        self.slack.as_ref()
    }

    /// The longest pause between tries of one notification.
    pub fn retry_cap(&self) -> std::time::Duration {
        if self.retry_cap.is_zero() {
            super::queue::MOST_PAUSE
        } else {
            self.retry_cap
        }
    }

    /// The console's base URL.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether anything is set up at all (else the router need not run).
    pub fn any(&self) -> bool {
        self.email.is_some() || !self.webhooks.is_empty() || self.slack.is_some() || !self.teams.is_empty()
    }

    /// Delivers one notification, once; where it landed, for messages
    /// changed later.
    pub async fn deliver(
        &self,
        n: &Notification,
        now: DateTime<Utc>,
    ) -> Result<Option<Receipt>, DeliveryError> {
        let slack = || {
            self.slack
                .as_ref()
                .ok_or_else(|| DeliveryError::retryable("[notify.slack] is not configured on this broker"))
        };
        let lang_of =
            |language: &Option<String>| language.as_deref().and_then(Lang::from_code).unwrap_or(Lang::En);
        let receipt = |p: Posted| {
            Some(Receipt {
                channel: p.channel,
                ts: p.ts,
            })
        };
        match &n.address {
            Address::SlackChannel { channel } => {
                let message = blocks::message(&n.event, Lang::En, &self.public_url);
                Ok(receipt(slack()?.api.post_message(channel, &message).await?))
            }
            Address::SlackPerson { email, language } => {
                let slack = slack()?;
                let member = slack.member(email).await?;
                let message = blocks::message(&n.event, lang_of(language), &self.public_url);
                Ok(receipt(slack.api.post_message(&member, &message).await?))
            }
            Address::SlackCopy {
                channel,
                ts,
                language,
            } => {
                let message = blocks::message(&n.event, lang_of(language), &self.public_url);
                let posted = Posted {
                    channel: channel.clone(),
                    ts: ts.clone(),
                };
                slack()?.api.update(&posted, &message).await?;
                Ok(None)
            }
            _ => self.deliver_once(n, now).await.map(|()| None),
        }
    }

    async fn deliver_once(&self, n: &Notification, now: DateTime<Utc>) -> Result<(), DeliveryError> {
        match &n.address {
            Address::Email { to, name, language } => {
                let mailer = self.email.as_ref().ok_or_else(|| {
                    DeliveryError::retryable("[notify.email] is not configured on this broker")
                })?;
                let lang = language.as_deref().and_then(Lang::from_code).unwrap_or(Lang::En);
                let mail = Mail::of(&n.event, lang, &self.public_url);
                mailer.send(&n.id, to, name, &mail).await
            }
            Address::Webhook { endpoint } => {
                let hook = self.webhooks.get(endpoint).ok_or_else(|| {
                    DeliveryError::retryable(format!("webhook `{endpoint}` is not configured on this broker"))
                })?;
                hook.send(&n.event, &self.public_url, now).await
            }
            Address::Teams { workflow } => {
                let teams = self.teams.get(workflow).ok_or_else(|| {
                    DeliveryError::retryable(format!(
                        "Teams workflow `{workflow}` is not configured on this broker"
                    ))
                })?;
                teams.send(&n.event, &self.public_url).await
            }
            Address::SlackChannel { .. } | Address::SlackPerson { .. } | Address::SlackCopy { .. } => Err(
                DeliveryError::refused("a Slack address reached the mail and webhook delivery"),
            ),
        }
    }
}
