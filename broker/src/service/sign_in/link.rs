//! One-time sign-in links for local accounts: the quickstart's demo users
//! and break-glass admins, who have no identity provider. An admin (or the
//! operator on the broker's host) makes a link; whoever opens it within
//! [`LINK_TTL`] signs in as that account, once. Accounts that sign in
//! through a provider never get one: the provider stays the only way in.

use chrono::{DateTime, Duration, Utc};
use jitgate_shared::v1::api::{Role, SignInLinkIssued, TokenSet};
use jitgate_shared::v1::UserId;

use super::{new_session, refused, signed_in};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::session::{LoginClient, LoginOutcome, PendingLogin, LINK_PROVIDER};
use crate::domain::user::User;
use crate::service::auth::{hash_token, random_token};
use crate::service::{require_role, Broker, ServiceError};
use crate::store::Change;

/// How long a sign-in link may wait to be opened.
pub const LINK_TTL: Duration = Duration::minutes(15);

/// Prefix of sign-in links' secrets (recognisable by secret scanners).
const LINK_PREFIX: &str = "jgl_";

/// The console path a link opens (its secret follows).
pub const LINK_PATH: &str = "/console/link/";

impl Broker {
    /// A sign-in link for `id`, made by an admin through the API.
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id, target = %id))]
    pub async fn issue_sign_in_link(
        &self,
        actor: &User,
        id: &UserId,
    ) -> Result<SignInLinkIssued, ServiceError> {
        require_role(actor, Role::Admin)?;
        self.issue_sign_in_link_as(Actor::User(actor.id.clone()), id)
            .await
    }

    /// A sign-in link for `id`, made by `actor` (the operator's command
    /// line is [`Actor::System`]).
    pub async fn issue_sign_in_link_as(
        &self,
        actor: Actor,
        id: &UserId,
    ) -> Result<SignInLinkIssued, ServiceError> {
        let user = self
            .store
            .user(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("user", id))?;
        if user.disabled {
            return Err(ServiceError::Conflict(format!(
                "{id} is disabled; enable the account before making a sign-in link"
            )));
        }
        if let Some(provider) = user.identities.keys().next() {
            return Err(ServiceError::Conflict(format!(
                "{id} signs in through `{provider}`; sign-in links are for local accounts only"
            )));
        }
        let now = self.clock.now();
        let secret = random_token(LINK_PREFIX);
        let expires_at = now + LINK_TTL;
        let mut change = Change::default();
        change.pending_logins.push(PendingLogin {
            key: hash_token(&secret),
            version: 0,
            provider: LINK_PROVIDER.to_owned(),
            nonce: String::new(),
            pkce_verifier: String::new(),
            client: LoginClient::Link {
                user: user.id.clone(),
            },
            created_at: now,
            expires_at,
            outcome: LoginOutcome::Waiting,
        });
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::SignInLinkIssued {
                user: user.id.clone(),
                expires_at,
            },
        });
        self.commit(change).await?;
        let base = self.settings.public_url.trim_end_matches('/');
        Ok(SignInLinkIssued {
            user: user.view(),
            url: format!("{base}{LINK_PATH}{secret}"),
            expires_at,
        })
    }

    /// Whose link `secret` is, while it can still be used (the console asks
    /// before using it: link previewers must not spend it).
    pub async fn sign_in_link_user(&self, secret: &str) -> Result<User, ServiceError> {
        let (_, user) = self.live_link(secret, self.clock.now()).await?;
        Ok(user)
    }

    /// Spends a sign-in link: a new session for its account, once.
    #[tracing::instrument(skip_all)]
    pub async fn redeem_sign_in_link(&self, secret: &str) -> Result<TokenSet, ServiceError> {
        let redeemed = self.redeem_link(secret).await;
        self.metrics.sign_in("link", redeemed.is_ok());
        redeemed
    }

    async fn redeem_link(&self, secret: &str) -> Result<TokenSet, ServiceError> {
        let now = self.clock.now();
        let (pending, user) = self.live_link(secret, now).await?;
        self.close_login(&pending).await?;
        let session = new_session(&user, LINK_PROVIDER, None, now, self.sso.session_ttl);
        let mut change = Change::default();
        change.audit.push(signed_in(&user, &session, false, now));
        change.sessions.push(session.clone());
        let session = self.commit(change).await?.stored(session);
        tracing::info!(user = %user.id, "signed in with a link");
        self.issue_tokens(&user, &session, now).await
    }

    async fn live_link(
        &self,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<(PendingLogin, User), ServiceError> {
        let refuse = || refused("unknown, expired or already used sign-in link");
        if !secret.starts_with(LINK_PREFIX) {
            return Err(refuse());
        }
        let pending = self
            .store
            .pending_login(&hash_token(secret))
            .await?
            .filter(|p| p.outcome == LoginOutcome::Waiting && now < p.expires_at)
            .ok_or_else(refuse)?;
        let LoginClient::Link { user } = &pending.client else {
            return Err(refuse());
        };
        let user = self
            .store
            .user(user)
            .await?
            .filter(|u| !u.disabled && u.identities.is_empty())
            .ok_or_else(refuse)?;
        Ok((pending, user))
    }
}
