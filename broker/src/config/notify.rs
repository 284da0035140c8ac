//! `[notify]`: the channels notifications go out through (`[notify.email]`,
//! `[[notify.webhook]]`) and when grants' ending-soon warnings leave.
//! Which events go where is in `workflows.toml` (see
//! [`crate::notify::route`]).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{check_https, check_name, within, ConfigError};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// How long before a grant's window ends its `grant_ending_soon`
    /// event is raised, like "10m".
    #[serde(with = "humantime_serde")]
    pub ending_soon: Duration,
    /// The longest pause between tries of a notification that keeps
    /// failing (pauses grow from a few seconds up to it), like "15m".
    #[serde(with = "humantime_serde")]
    pub retry_cap: Duration,
    /// How long no agent of a configuration may be connected to any broker
    /// before its `agent_offline` event is raised, like "3m". Brokers
    /// record each configuration's last contact in the store every
    /// quarter of it.
    #[serde(with = "humantime_serde")]
    pub agent_offline_after: Duration,
    /// Mail over SMTP; without it, person destinations (`requester`,
    /// `approvers`) and `email:` destinations get nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    /// Outbound webhooks, `[[notify.webhook]]`, named by `webhook:NAME`
    /// destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook: Vec<WebhookConfig>,
    /// A Slack app: messages with Approve / Deny buttons, direct messages
    /// to people; `slack:CHANNEL` destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slack: Option<SlackConfig>,
    /// Microsoft Teams Workflows webhooks, `[[notify.teams]]`, named by
    /// `teams:NAME` destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub teams: Vec<TeamsConfig>,
}

/// One Teams Workflows webhook (`[[notify.teams]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamsConfig {
    /// Named by `teams:NAME` in `workflows.toml`.
    pub name: String,
    /// A file holding the workflow's HTTP POST URL, which carries its
    /// signature (or env `JITGATE_TEAMS_{NAME}_URL`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `[notify.slack]`: a Slack app's bot token and signing secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The Web API's base URL.
    #[serde(default = "default_slack_api")]
    pub api_url: String,
    /// A file holding the bot token, `xoxb-...` (or env
    /// `JITGATE_SLACK_BOT_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot_token_file: Option<PathBuf>,
    /// A file holding the app's signing secret, which signs interactions
    /// (or env `JITGATE_SLACK_SIGNING_SECRET`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing_secret_file: Option<PathBuf>,
    /// People (`requester`, `approvers`) are also told by direct message,
    /// found by their email address.
    #[serde(default = "default_true")]
    pub direct_messages: bool,
    /// PEM certificates to trust for the API besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one API call may take.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_slack_api() -> String {
    "https://slack.com/api".into()
}

fn default_true() -> bool {
    true
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            ending_soon: Duration::from_secs(10 * 60),
            retry_cap: crate::notify::queue::MOST_PAUSE,
            agent_offline_after: Duration::from_secs(3 * 60),
            email: None,
            webhook: Vec::new(),
            slack: None,
            teams: Vec::new(),
        }
    }
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS, which must succeed (port
    /// 587).
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// No TLS: only for a relay on the same host.
    None,
}

/// `[notify.email]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The SMTP server's host name (checked against its certificate).
    pub smtp_host: String,
    /// Default: 587 with STARTTLS, 465 with implicit TLS, 25 without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp_port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: SmtpTls,
    /// PEM certificates to trust for the server besides the system's
    /// (a company CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// The account to authenticate as; none: no authentication.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// A file holding the password (or env `JITGATE_SMTP_PASSWORD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_file: Option<PathBuf>,
    /// The sender, like "jitgate <jitgate@example.com>".
    pub from: String,
    /// How long one message may take to send.
    #[serde(default = "default_send_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_tls() -> SmtpTls {
    SmtpTls::Starttls
}

fn default_send_timeout() -> Duration {
    Duration::from_secs(30)
}

impl EmailConfig {
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        })
    }
}

/// One outbound webhook endpoint (`[[notify.webhook]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Named by `webhook:NAME` in `workflows.toml`.
    pub name: String,
    /// An `https://` URL (`http://` only to a loopback address).
    pub url: String,
    /// Files each holding a signing secret (`whsec_` and base64, as the
    /// Standard Webhooks tools make them); every one signs each message,
    /// so a receiver moving to a new secret accepts either. Or env
    /// `JITGATE_WEBHOOK_{NAME}_SECRET` (NAME upper-cased, `-` as `_`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_files: Vec<PathBuf>,
    /// PEM certificates to trust for the endpoint besides the system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one delivery may take.
    #[serde(default = "default_webhook_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(10)
}

impl NotifyConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        within(
            "notify.ending_soon",
            self.ending_soon,
            Duration::from_secs(10),
            Duration::from_secs(24 * 3600),
        )?;
        within(
            "notify.retry_cap",
            self.retry_cap,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        within(
            "notify.agent_offline_after",
            self.agent_offline_after,
            Duration::from_secs(2),
            Duration::from_secs(24 * 3600),
        )?;
        if let Some(email) = &self.email {
            let invalid = |message: String| ConfigError::Invalid {
                key: "notify.email",
                message,
            };
            if email.smtp_host.trim().is_empty() {
                return Err(invalid("smtp_host is empty".into()));
            }
            email
                .from
                .parse::<lettre::message::Mailbox>()
                .map_err(|e| invalid(format!("from `{}` is not a mailbox: {e}", email.from)))?;
            within(
                "notify.email.timeout",
                email.timeout,
                Duration::from_secs(1),
                Duration::from_secs(300),
            )?;
        }
        if let Some(slack) = &self.slack {
            check_https("notify.slack.api_url", &slack.api_url)?;
            within(
                "notify.slack.timeout",
                slack.timeout,
                Duration::from_secs(1),
                Duration::from_secs(60),
            )?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for t in &self.teams {
            check_name("notify.teams", &t.name, &mut seen)?;
            within(
                "notify.teams.timeout",
                t.timeout,
                Duration::from_secs(1),
                Duration::from_secs(60),
            )?;
        }
        let mut seen = std::collections::BTreeSet::new();
        for w in &self.webhook {
            check_name("notify.webhook", &w.name, &mut seen)?;
            check_https("notify.webhook.url", &w.url)?;
            within(
                "notify.webhook.timeout",
                w.timeout,
                Duration::from_secs(1),
                Duration::from_secs(60),
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, String> {
        let c: NotifyConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.check().map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_and_ports() {
        let c = parse("[email]\nsmtp_host = \"mail\"\nfrom = \"jitgate <j@example.com>\"\n").unwrap();
        let email = c.email.unwrap();
        assert_eq!((email.tls, email.port()), (SmtpTls::Starttls, 587));
        assert_eq!(c.ending_soon, Duration::from_secs(600));
    }

    #[test]
    fn bad_settings_are_named() {
        for (text, needle) in [
            ("[email]\nsmtp_host = \"m\"\nfrom = \"not a mailbox\"\n", "from `not a mailbox`"),
            ("[email]\nsmtp_host = \"\"\nfrom = \"j@example.com\"\n", "smtp_host"),
            ("[email]\nsmtp_host = \"m\"\nfrom = \"j@example.com\"\ntls = \"ssl\"\n", "ssl"),
            ("[[webhook]]\nname = \"siem\"\nurl = \"http://siem.example/x\"\n", "must be https://"),
            ("[[webhook]]\nname = \"Siem\"\nurl = \"https://siem.example/x\"\n", "lowercase"),
            (
                "[[webhook]]\nname = \"a\"\nurl = \"https://a\"\n[[webhook]]\nname = \"a\"\nurl = \"https://b\"\n",
                "named twice",
            ),
            ("ending_soon = \"1s\"\n", "notify.ending_soon"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
        assert!(parse("[[webhook]]\nname = \"t\"\nurl = \"http://127.0.0.1:9/x\"\n").is_ok());
    }
}
