//! Decisions made in chat. A Slack interaction is checked (signature, age,
//! replay) and acknowledged at once; then the Slack user is mapped to a
//! jitgate account by the email address Slack confirmed, and what they
//! asked for goes through the same services as the console and the API
//! ([`Broker::review_request`], [`Broker::extend_grant`]): Cedar, no
//! self-approval and one vote per person hold whatever the channel.
//! Everything refused is audited (`chat_action_refused`) and told to the
//! person privately.

use std::sync::Arc;

use jitgate_shared::v1::api::{Decision, ExtendBody, ReviewBody, Role};
use jitgate_shared::v1::{GrantId, RequestId};

use super::{Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::session::UsedAssertion;
use crate::domain::user::{account_for_email, normalise_email, User};
use crate::notify::channels::Slack;
use crate::notify::slack::blocks::deny_modal;
use crate::notify::slack::interaction::{self, Intent, Interaction};
use crate::notify::slack::verify::MOST_SKEW;
use crate::store::Change;

/// The chat a refusal is recorded for.
const SLACK: &str = "slack";

impl Intent {
    fn action(&self) -> &'static str {
        match self {
            Intent::Approve { .. } => "approve",
            Intent::AskWhyDeny { .. } | Intent::Deny { .. } => "deny",
            Intent::Extend { .. } => "extend",
        }
    }
}

/// A refusal, as the audit log keeps it.
struct Refused<'a> {
    chat_user: Option<&'a str>,
    user: Option<&'a User>,
    action: &'a str,
    request: Option<RequestId>,
    grant: Option<GrantId>,
    reason: String,
}

impl Broker {
    /// The Slack app, when `[notify.slack]` is set.
    pub fn slack(&self) -> Option<&Arc<Slack>> {
        self.channels.slack()
    }

    async fn refuse(&self, r: Refused<'_>) {
        let entry = AuditEntry {
            at: self.clock.now(),
            actor: r.user.map_or(Actor::System, |u| Actor::User(u.id.clone())),
            event: AuditEvent::ChatActionRefused {
                channel: SLACK.into(),
                chat_user: r.chat_user.map(str::to_owned),
                user: r.user.map(|u| u.id.clone()),
                action: r.action.into(),
                request: r.request,
                grant: r.grant,
                reason: r.reason.clone(),
            },
        };
        tracing::warn!(action = r.action, chat_user = ?r.chat_user, reason = %r.reason, "chat action refused");
        let change = Change {
            audit: vec![entry],
            ..Change::default()
        };
        if let Err(e) = self.store.commit(change).await {
            tracing::error!(error = %e, "recording a refused chat action failed");
        }
    }

    /// Checks that `body` came from Slack, now and once, and reads it.
    /// `Ok(None)`: nothing to act on (the link button). Refusals are
    /// audited; the error says why.
    pub async fn slack_interaction(
        &self,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<Option<Interaction>, ServiceError> {
        let slack = self
            .slack()
            .ok_or_else(|| ServiceError::not_found("integration", "slack"))?;
        let now = self.clock.now();
        let unread = |reason: String| Refused {
            chat_user: None,
            user: None,
            action: "unread",
            request: None,
            grant: None,
            reason,
        };
        if let Err(why) = slack.verify(timestamp, signature, body, now) {
            self.refuse(unread(why.to_string())).await;
            return Err(ServiceError::Unauthenticated(format!(
                "not a Slack request: {why}"
            )));
        }
        // A signature is seen once: a replay within the five minutes it
        // would pass is refused.
        let seen = Change {
            used_assertions: vec![UsedAssertion {
                key: format!(
                    "{SLACK}/{}",
                    super::auth::hash_token(signature.unwrap_or_default())
                ),
                version: 0,
                expires_at: now + chrono::Duration::seconds(2 * MOST_SKEW),
            }],
            ..Change::default()
        };
        match self.store.commit(seen).await {
            Ok(_) => {}
            Err(e) if e.is_conflict() => {
                self.refuse(unread("the request was replayed".into())).await;
                return Err(ServiceError::Unauthenticated(
                    "this Slack request was already received".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        match interaction::read(body) {
            Ok(read) => Ok(read),
            Err(why) => {
                self.refuse(unread(why.clone())).await;
                Err(ServiceError::invalid("payload", why))
            }
        }
    }

    /// The jitgate account of a Slack member: one whose verified email is
    /// the address Slack confirmed, preferring one that `fits`.
    async fn account_of(
        &self,
        slack: &Slack,
        member: &str,
        fits: impl Fn(&User) -> bool,
    ) -> Result<User, String> {
        let who = slack
            .api
            .user(member)
            .await
            .map_err(|e| format!("looking the member up failed: {e}"))?;
        let email = who
            .verified_email()
            .map(normalise_email)
            .ok_or("Slack has no confirmed email address for this member")?;
        let users = self.store.users().await.map_err(|e| e.to_string())?;
        account_for_email(&users, &email, fits)
            .cloned()
            .ok_or_else(|| format!("no jitgate account has the verified email {email}"))
    }

    /// Does what a verified interaction asks (after Slack was answered).
    pub async fn act_in_slack(&self, interaction: Interaction) {
        let Some(slack) = self.slack().cloned() else {
            return;
        };
        let Interaction {
            user: member,
            intent,
            response_url,
        } = interaction;
        let tell = |text: String| {
            let (slack, url) = (slack.clone(), response_url.clone());
            async move {
                if let Some(url) = url {
                    if let Err(e) = slack.api.tell_privately(&url, &text).await {
                        tracing::warn!(error = %e, "telling a Slack member privately failed");
                    }
                }
            }
        };
        if let Intent::AskWhyDeny { request, trigger_id } = &intent {
            // Slack's trigger lasts three seconds: the modal first, the
            // person when they submit it.
            let lang = crate::console::text::Lang::En;
            if let Err(e) = slack.api.open_view(trigger_id, &deny_modal(request, lang)).await {
                tracing::warn!(error = %e, "opening the deny modal failed");
                tell(format!("jitgate could not open the deny form: {e}")).await;
            }
            return;
        }
        let (request, grant) = match &intent {
            Intent::Approve { request } | Intent::Deny { request, .. } => {
                (request.parse::<RequestId>().ok(), None)
            }
            Intent::Extend { grant } => (None, grant.parse::<GrantId>().ok()),
            Intent::AskWhyDeny { .. } => (None, None),
        };
        let action = intent.action();
        fn refused<'a>(
            member: &'a str,
            user: Option<&'a User>,
            action: &'a str,
            (request, grant): (Option<RequestId>, Option<GrantId>),
            reason: String,
        ) -> Refused<'a> {
            Refused {
                chat_user: Some(member),
                user,
                action,
                request,
                grant,
                reason,
            }
        }
        let subject = (request, grant);
        let wants_approver = !matches!(intent, Intent::Extend { .. });
        let user = match self
            .account_of(&slack, &member, |u| !wants_approver || u.has_role(Role::Approver))
            .await
        {
            Ok(u) => u,
            Err(why) => {
                self.refuse(refused(&member, None, action, subject, why.clone()))
                    .await;
                tell(format!("jitgate refused: {why}")).await;
                return;
            }
        };
        let outcome = match (&intent, request, grant) {
            (Intent::Approve { .. }, Some(id), _) => self
                .review_request(&user, id, Decision::Approve, ReviewBody { comment: None })
                .await
                .map(|_| "You approved the request.".to_owned()),
            (Intent::Deny { reason, .. }, Some(id), _) => self
                .review_request(
                    &user,
                    id,
                    Decision::Deny,
                    ReviewBody {
                        comment: reason.clone(),
                    },
                )
                .await
                .map(|_| "You denied the request.".to_owned()),
            (Intent::Extend { .. }, _, Some(id)) => self.extend_from_chat(&user, id).await,
            _ => Err(ServiceError::invalid("value", "not a request or grant id")),
        };
        match outcome {
            Ok(done) => tell(done).await,
            Err(e) => {
                self.refuse(refused(&member, Some(&user), action, subject, e.to_string()))
                    .await;
                tell(format!("jitgate refused: {e}")).await;
            }
        }
    }

    /// Extends a grant by its workflow's default duration (or what is
    /// left of its longest total), with the request's justification.
    async fn extend_from_chat(&self, user: &User, id: GrantId) -> Result<String, ServiceError> {
        let grant = self.get_grant(user, id).await?;
        let room = self.extension_room(std::slice::from_ref(&grant)).await?;
        let left = room.get(&id).copied().unwrap_or(0);
        if left == 0 {
            return Err(ServiceError::invalid(
                "grant",
                "its window cannot be extended further (the workflow's longest total is reached, or extensions are off)",
            ));
        }
        let request = self.get_request(user, grant.request).await?;
        let (resource, kind) = self.resource_and_kind(&grant.resource).await?;
        let workflow = self
            .policies
            .current()
            .workflow(&super::requests::resource_facts(&resource, kind));
        let by = workflow.default_duration.as_secs().clamp(1, left);
        let body = ExtendBody {
            duration_seconds: by,
            justification: request.justification.clone(),
            ticket: request.ticket.clone(),
        };
        self.extend_grant(user, id, body).await?;
        Ok(format!(
            "You asked to extend the access by {}.",
            crate::console::text::Lang::En.duration(by)
        ))
    }
}
