//! Who is on call now, from PagerDuty or Opsgenie schedules that
//! workflows name (`on_call = "NAME:SCHEDULE"`), cached for a while, as
//! email addresses. It only ever adds a reason to approve: a lookup that
//! fails (a provider down, an unknown name, a bad answer) is "not on
//! call".
//!
//! - PagerDuty: `GET /oncalls?schedule_ids[]=ID&include[]=users&earliest=true`
//!   (`Authorization: Token token=...`), the users' `email`.
//! - Opsgenie: `GET /v2/schedules/ID/on-calls?scheduleIdentifierType=id&flat=true`
//!   (`Authorization: GenieKey ...`), `data.onCallRecipients` (usernames,
//!   which are email addresses).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Deserialize;

use crate::config::{OnCallConfig, OnCallProvider};
use crate::domain::user::{normalise_email, User};

/// A schedule a workflow names: `NAME:SCHEDULE`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScheduleRef {
    pub provider: String,
    pub schedule: String,
}

impl ScheduleRef {
    pub fn parse(text: &str) -> Result<ScheduleRef, String> {
        match text.split_once(':') {
            Some((p, s)) if !p.is_empty() && !s.is_empty() => Ok(ScheduleRef {
                provider: p.to_owned(),
                schedule: s.to_owned(),
            }),
            _ => Err(format!(
                "on_call `{text}` is not NAME:SCHEDULE (an [[on_call]] name of the broker configuration, then the schedule's id)"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OnCallError {
    #[error("no on-call provider `{0}` is configured ([[on_call]])")]
    Unknown(String),
    #[error("{provider}: {message}")]
    Provider { provider: String, message: String },
}

struct Account {
    config: OnCallConfig,
    token: String,
    http: reqwest::Client,
}

/// Who is on call on a schedule, as emails, and when it was asked.
type Answer = (Instant, Arc<BTreeSet<String>>);

/// On-call lookups with their cache.
#[derive(Default)]
pub struct OnCall {
    accounts: HashMap<String, Account>,
    cache: Mutex<HashMap<ScheduleRef, Answer>>,
}

impl std::fmt::Debug for OnCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the tokens.
        let names: Vec<&String> = self.accounts.keys().collect();
        f.debug_struct("OnCall").field("providers", &names).finish()
    }
}

#[derive(Deserialize)]
struct PagerDutyOnCalls {
    oncalls: Vec<PagerDutyOnCall>,
}

#[derive(Deserialize)]
struct PagerDutyOnCall {
    user: PagerDutyUser,
}

#[derive(Deserialize)]
struct PagerDutyUser {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct OpsgenieAnswer {
    data: OpsgenieOnCalls,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpsgenieOnCalls {
    #[serde(default)]
    on_call_recipients: Vec<String>,
}

/// `JITGATE_ON_CALL_{NAME}_TOKEN`.
fn token_env(name: &str) -> String {
    format!("JITGATE_ON_CALL_{}_TOKEN", name.to_uppercase().replace('-', "_"))
}

impl OnCall {
    /// Sets up every `[[on_call]]` account, reading tokens.
    pub fn new(configs: &[OnCallConfig]) -> Result<OnCall, OnCallError> {
        let mut accounts = HashMap::new();
        for c in configs {
            let fail = |message: String| OnCallError::Provider {
                provider: c.name.clone(),
                message,
            };
            let token = match &c.token_file {
                Some(path) => std::fs::read_to_string(path)
                    .map(|s| s.trim().to_owned())
                    .map_err(|e| fail(format!("{}: {e}", path.display())))?,
                None => std::env::var(token_env(&c.name))
                    .map_err(|_| fail(format!("no token: set token_file or {}", token_env(&c.name))))?,
            };
            let http = crate::tls::client::https_client(c.timeout, c.ca_file.as_deref()).map_err(fail)?;
            accounts.insert(
                c.name.clone(),
                Account {
                    config: c.clone(),
                    token,
                    http,
                },
            );
        }
        Ok(OnCall {
            accounts,
            cache: Mutex::default(),
        })
    }

    /// The (normalised) email addresses on call on `schedule` now.
    pub async fn on_call(&self, schedule: &ScheduleRef) -> Result<Arc<BTreeSet<String>>, OnCallError> {
        let account = self
            .accounts
            .get(&schedule.provider)
            .ok_or_else(|| OnCallError::Unknown(schedule.provider.clone()))?;
        if let Some((at, emails)) = jitgate_shared::sync::lock(&self.cache).get(schedule) {
            if at.elapsed() < account.config.cache {
                return Ok(emails.clone());
            }
        }
        let fail = |message: String| OnCallError::Provider {
            provider: schedule.provider.clone(),
            message,
        };
        let base = account.config.api_url().trim_end_matches('/');
        let emails: Vec<String> = match account.config.provider {
            OnCallProvider::Pagerduty => {
                let answer = account
                    .http
                    .get(format!("{base}/oncalls"))
                    .query(&[
                        ("schedule_ids[]", schedule.schedule.as_str()),
                        ("include[]", "users"),
                        ("earliest", "true"),
                    ])
                    .header("authorization", format!("Token token={}", account.token))
                    .header("accept", "application/vnd.pagerduty+json;version=2")
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| fail(e.to_string()))?;
                let body: PagerDutyOnCalls = answer
                    .json()
                    .await
                    .map_err(|e| fail(format!("unreadable answer: {e}")))?;
                body.oncalls.into_iter().filter_map(|o| o.user.email).collect()
            }
            OnCallProvider::Opsgenie => {
                let answer = account
                    .http
                    .get(format!("{base}/v2/schedules/{}/on-calls", schedule.schedule))
                    .query(&[("scheduleIdentifierType", "id"), ("flat", "true")])
                    .header("authorization", format!("GenieKey {}", account.token))
                    .send()
                    .await
                    .and_then(reqwest::Response::error_for_status)
                    .map_err(|e| fail(e.to_string()))?;
                let body: OpsgenieAnswer = answer
                    .json()
                    .await
                    .map_err(|e| fail(format!("unreadable answer: {e}")))?;
                body.data.on_call_recipients
            }
        };
        let emails = Arc::new(emails.iter().map(|e| normalise_email(e)).collect::<BTreeSet<_>>());
        jitgate_shared::sync::lock(&self.cache).insert(schedule.clone(), (Instant::now(), emails.clone()));
        Ok(emails)
    }

    /// Whether `user` is on call on `schedule` (by their verified email).
    /// Every failure is "no", logged.
    pub async fn is_on_call(&self, schedule: &ScheduleRef, user: &User) -> bool {
        let Some(email) = user.verified_email() else {
            return false;
        };
        match self.on_call(schedule).await {
            Ok(on_call) => on_call.contains(&email),
            Err(e) => {
                tracing::warn!(error = %e, schedule = %schedule.schedule, "on-call lookup failed; taken as not on call");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_are_named_with_their_provider() {
        let s = ScheduleRef::parse("pd:PABC123").unwrap();
        assert_eq!((s.provider.as_str(), s.schedule.as_str()), ("pd", "PABC123"));
        for bad in ["PABC123", ":P", "pd:", ""] {
            assert!(
                ScheduleRef::parse(bad).unwrap_err().contains("NAME:SCHEDULE"),
                "{bad}"
            );
        }
    }

    #[test]
    fn provider_answers_are_read() {
        let pd: PagerDutyOnCalls = serde_json::from_str(
            r#"{"oncalls":[{"escalation_level":1,"user":{"id":"P1","type":"user","email":"Alice@Example.com","name":"Alice"},"schedule":{"id":"S"}}],"limit":25,"offset":0,"more":false}"#,
        )
        .unwrap();
        assert_eq!(pd.oncalls[0].user.email.as_deref(), Some("Alice@Example.com"));
        let og: OpsgenieAnswer = serde_json::from_str(
            r#"{"data":{"_parent":{"id":"s","name":"ops","enabled":true},"onCallRecipients":["frank@example.com"]},"took":0.1,"requestId":"r"}"#,
        )
        .unwrap();
        assert_eq!(og.data.on_call_recipients, ["frank@example.com"]);
    }
}
