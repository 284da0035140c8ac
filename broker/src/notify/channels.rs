//! The channels the broker configuration sets up (`[notify.email]`,
//! `[[notify.webhook]]`), their secrets read once at start, and the one
//! [`Channels::deliver`] the delivery service calls for a notification.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::email::{Mail, Mailer};
use super::queue::{DeliveryError, Notification};
use super::route::Address;
use super::webhook::Endpoint;
use crate::config::NotifyConfig;
use crate::console::text::Lang;

/// Ready channels. Absent ones deliver nothing: the router queues no
/// notification for them.
#[derive(Debug, Clone, Default)]
pub struct Channels {
    email: Option<Mailer>,
    webhooks: BTreeMap<String, Endpoint>,
    /// The console's base URL, for links, and the CloudEvents `source`.
    public_url: String,
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
        Ok(Channels {
            email,
            webhooks,
            public_url: public_url.trim_end_matches('/').to_owned(),
        })
    }

    pub fn has_email(&self) -> bool {
        self.email.is_some()
    }

    pub fn has_webhook(&self, name: &str) -> bool {
        self.webhooks.contains_key(name)
    }

    /// Whether anything is set up at all (else the router need not run).
    pub fn any(&self) -> bool {
        self.email.is_some() || !self.webhooks.is_empty()
    }

    /// Delivers one notification, once.
    pub async fn deliver(&self, n: &Notification, now: DateTime<Utc>) -> Result<(), DeliveryError> {
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
        }
    }
}
