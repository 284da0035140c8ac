//! Ending a user's access at once: when a directory deactivates or deletes
//! them (SCIM), and wherever else a user is taken out.
//!
//! One change, committed before the caller hears back: every active or
//! scheduled grant ends (revokes queued for the agents at once), every open
//! request is cancelled, every sign-in session ends and every API token is
//! deleted, the user is disabled,
//! and all of it is audited in one record.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{EndReason, RequestState};

use super::{Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::user::User;
use crate::scheduler::jobs;
use crate::store::{Change, GrantFilter, RequestFilter, SessionFilter, TokenFilter};

/// How a user was taken out, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deprovisioning {
    /// `active: false`.
    Deactivated,
    /// The directory deleted them.
    Deleted,
    /// An admin disabled the account.
    Disabled,
}

impl Deprovisioning {
    fn label(self) -> &'static str {
        match self {
            Deprovisioning::Deactivated => "deactivated",
            Deprovisioning::Deleted => "deleted",
            Deprovisioning::Disabled => "disabled by an admin",
        }
    }
}

impl Broker {
    /// An admin disables an account: its access ends as when a directory
    /// deactivates it (grants end with their revokes queued, requests
    /// cancelled, sessions and tokens end), in one durable change.
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id, target = %id))]
    pub async fn disable_user(
        &self,
        actor: &User,
        id: &jitgate_shared::v1::UserId,
    ) -> Result<jitgate_shared::v1::api::UserView, ServiceError> {
        super::require_role(actor, jitgate_shared::v1::api::Role::Admin)?;
        super::retry_conflicts(|| async {
            let user = self
                .store
                .user(id)
                .await?
                .ok_or_else(|| ServiceError::not_found("user", id))?;
            if user.disabled {
                return Ok(user.view());
            }
            let now = self.clock.now();
            let mut change = Change::default();
            let disabled = self
                .end_access(
                    &user,
                    Deprovisioning::Disabled,
                    Actor::User(actor.id.clone()),
                    &mut change,
                    now,
                )
                .await?;
            let view = disabled.view();
            change.users.push(disabled);
            self.commit(change).await?;
            Ok(view)
        })
        .await
    }

    /// Stages the end of `user`'s access into `change` and returns the user
    /// as it must be written (disabled). Grants already ended and requests
    /// already closed are left as they are.
    pub(crate) async fn end_access(
        &self,
        user: &User,
        how: Deprovisioning,
        actor: Actor,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<User, ServiceError> {
        let id = user.id.clone();
        let open_grants = self
            .grants_where(&GrantFilter {
                user: Some(id.clone()),
                ..GrantFilter::open()
            })
            .await?;
        let mut grants_ended = Vec::with_capacity(open_grants.len());
        let mut requests_closed = BTreeSet::new();
        for grant in open_grants {
            grants_ended.push(grant.id);
            if let Some(request) = self.store.request(grant.request).await? {
                if !request.state.is_terminal() {
                    requests_closed.insert(request.id);
                    change.unschedule.push(jobs::expire_pending(&request));
                    change.requests.push(request.ended(EndReason::Deprovisioned));
                }
            }
            self.close_window(grant, EndReason::Deprovisioned, None, actor.clone(), change, now)
                .await?;
        }
        let open_requests = self
            .requests_where(&RequestFilter {
                requester: Some(id.clone()),
                states: vec![RequestState::Pending, RequestState::Approved],
                resource: None,
            })
            .await?;
        let mut requests_cancelled = Vec::new();
        for request in open_requests {
            if requests_closed.contains(&request.id) {
                continue;
            }
            change.unschedule.push(jobs::expire_pending(&request));
            requests_cancelled.push(request.id);
            change.requests.push(request.ended(EndReason::Cancelled));
        }
        let sessions = self
            .store
            .sessions(&SessionFilter {
                user: Some(id.clone()),
                not_ended: true,
                live_at: None,
            })
            .await?;
        for mut session in sessions {
            session.ended_at = Some(now);
            session.idp_refresh_token = None;
            change.audit.push(AuditEntry {
                at: now,
                actor: actor.clone(),
                event: AuditEvent::SessionEnded {
                    session: session.id.clone(),
                    user: user.id.clone(),
                },
            });
            change.sessions.push(session);
        }
        let tokens = self
            .store
            .tokens(&TokenFilter {
                user: Some(id.clone()),
                ..TokenFilter::default()
            })
            .await?;
        let tokens_revoked = tokens.len();
        change.delete_tokens.extend(tokens.into_iter().map(|t| t.hash));
        tracing::info!(
            user = %user.id,
            how = how.label(),
            grants = grants_ended.len(),
            requests = requests_cancelled.len(),
            tokens = tokens_revoked,
            "user deprovisioned"
        );
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::UserDeprovisioned {
                user: user.id.clone(),
                how: how.label().into(),
                grants_ended,
                requests_cancelled,
                tokens_revoked,
            },
        });
        let mut disabled = user.clone();
        disabled.disabled = true;
        Ok(disabled)
    }
}
