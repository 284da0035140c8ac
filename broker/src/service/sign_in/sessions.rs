//! A session's tokens: issued at sign-in, renewed with a refresh token
//! (through the provider for OIDC), ended by sign-out, an admin or the
//! provider's refusal; expired ones swept.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{Role, SessionView, TokenSet};

use super::refused;
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::session::Session;
use crate::domain::user::{ApiToken, TokenKind, User};
use crate::identity::oidc::OidcError;
use crate::identity::sso::{self, SignInClaims};
use crate::service::auth::{hash_token, random_token, TOKEN_PREFIX};
use crate::service::{require_role, Broker, ServiceError};
use crate::store::{Change, SessionFilter, TokenFilter};

/// Prefix of refresh tokens (recognisable by secret scanners).
pub const REFRESH_PREFIX: &str = "jgr_";

impl Broker {
    /// A new access token and refresh token for a live session; earlier
    /// refresh tokens of the session stop working.
    pub(super) async fn issue_tokens(
        &self,
        user: &User,
        session: &Session,
        now: DateTime<Utc>,
    ) -> Result<TokenSet, ServiceError> {
        let mut change = Change::default();
        let tokens = self.new_tokens(user, session, now, &mut change);
        self.commit(change).await?;
        Ok(tokens)
    }

    /// A new access token and refresh token for a live session, staged into
    /// `change`. (Spent refresh tokens are deleted by whoever spends them;
    /// expired tokens by [`Broker::sweep_sign_ins`].)
    fn new_tokens(
        &self,
        user: &User,
        session: &Session,
        now: DateTime<Utc>,
        change: &mut Change,
    ) -> TokenSet {
        let access = random_token(TOKEN_PREFIX);
        let refresh = random_token(REFRESH_PREFIX);
        let expires_at = (now + self.sso.access_ttl).min(session.expires_at);
        change.tokens.push(ApiToken {
            hash: hash_token(&access),
            user: user.id.clone(),
            created_at: now,
            expires_at,
            session: Some(session.id.clone()),
            kind: TokenKind::Access,
        });
        change.tokens.push(ApiToken {
            hash: hash_token(&refresh),
            user: user.id.clone(),
            created_at: now,
            expires_at: session.expires_at,
            session: Some(session.id.clone()),
            kind: TokenKind::Refresh,
        });
        TokenSet {
            access_token: access,
            expires_at,
            refresh_token: refresh,
            session_expires_at: session.expires_at,
            session: session.id.clone(),
            user: user.view(),
        }
    }

    /// Renews a session's tokens through its provider.
    #[tracing::instrument(skip_all)]
    pub async fn refresh_session(&self, refresh_token: &str) -> Result<TokenSet, ServiceError> {
        let refreshed = self.refresh(refresh_token).await;
        self.metrics.sign_in("refresh", refreshed.is_ok());
        refreshed
    }

    async fn refresh(&self, refresh_token: &str) -> Result<TokenSet, ServiceError> {
        let refuse = || ServiceError::Unauthenticated("invalid or expired refresh token".into());
        if !refresh_token.starts_with(REFRESH_PREFIX) {
            return Err(refuse());
        }
        let now = self.clock.now();
        let stored = self
            .store
            .token(&hash_token(refresh_token))
            .await?
            .filter(|t| t.kind == TokenKind::Refresh && t.is_valid_at(now))
            .ok_or_else(refuse)?;
        let session_id = stored.session.clone().ok_or_else(refuse)?;
        let session = self
            .store
            .session(&session_id)
            .await?
            .filter(|s| s.is_live(now))
            .ok_or_else(refuse)?;
        let user = self.store.user(&session.user).await?.ok_or_else(refuse)?;
        if user.disabled {
            return Err(refuse());
        }
        let mut change = Change::default();
        let mut next = session.clone();
        let no_back_channel = session.provider == crate::domain::session::LINK_PROVIDER
            || self.sso.saml.contains_key(&session.provider);
        let user = if no_back_channel {
            // SAML and sign-in links have no provider to ask again: the
            // session's tokens are renewed until the session ends
            // (`session_ttl`); deprovisioning or an admin ends it sooner.
            user
        } else {
            self.renew_at_provider(user, &mut next, &mut change, now).await?
        };
        next.refreshed_at = Some(now);
        change.sessions.push(next.clone());
        // The presented refresh token is spent, in the same commit as its
        // successor is made.
        change.delete_tokens.push(stored.hash);
        let tokens = self.new_tokens(&user, &next, now, &mut change);
        self.commit(change).await?;
        Ok(tokens)
    }

    /// Refreshes an OIDC session at its provider: a refusal ends the
    /// session; new ID token claims reconcile the user (staged into
    /// `change`, as is a rotated provider refresh token in `session`).
    async fn renew_at_provider(
        &self,
        user: User,
        session: &mut Session,
        change: &mut Change,
        now: DateTime<Utc>,
    ) -> Result<User, ServiceError> {
        let provider = self.provider(&session.provider)?.clone();
        let Some(idp_refresh) = session.idp_refresh_token.clone() else {
            return Err(ServiceError::Unauthenticated(format!(
                "`{}` gave no refresh token at sign-in; sign in again",
                session.provider
            )));
        };
        let (claims, rotated) = match provider.refresh(&idp_refresh, now).await {
            Ok(v) => v,
            Err(e @ (OidcError::Transport { .. } | OidcError::Discovery { .. })) => {
                return Err(ServiceError::Unavailable(e.to_string()))
            }
            Err(e) => {
                // The provider refused: the person lost access there.
                self.end_session(session, Actor::System, now).await?;
                return Err(ServiceError::Unauthenticated(format!("session ended: {e}")));
            }
        };
        if rotated.is_some() {
            session.idp_refresh_token = rotated;
        }
        let Some(claims) = claims else {
            return Ok(user);
        };
        let rules = provider.rules();
        let result = SignInClaims::read(&claims, rules)
            .and_then(|c| sso::roles_for(&c, rules).map(|r| (c, r)))
            .and_then(|(c, r)| sso::reconcile(&user, &c, r, provider.name()));
        match result {
            Ok(next) if next != user => {
                change.users.push(next.clone());
                Ok(next)
            }
            Ok(_) => Ok(user),
            Err(e) => {
                self.end_session(session, Actor::System, now).await?;
                Err(refused(e))
            }
        }
    }

    /// Ends a session and every token of it.
    pub(super) async fn end_session(
        &self,
        session: &Session,
        actor: Actor,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let mut ended = session.clone();
        ended.ended_at = Some(now);
        ended.idp_refresh_token = None;
        let mut change = Change::default();
        let tokens = self
            .store
            .tokens(&TokenFilter {
                session: Some(session.id.clone()),
                ..TokenFilter::default()
            })
            .await?;
        change.delete_tokens.extend(tokens.into_iter().map(|t| t.hash));
        change.sessions.push(ended);
        change.audit.push(AuditEntry {
            at: now,
            actor,
            event: AuditEvent::SessionEnded {
                session: session.id.clone(),
                user: session.user.clone(),
            },
        });
        self.commit(change).await?;
        Ok(())
    }

    /// Signs the caller out: the session of `token` ends.
    pub async fn logout(&self, caller: &User, token: &str) -> Result<(), ServiceError> {
        let stored = self.store.token(&hash_token(token)).await?;
        let now = self.clock.now();
        match stored.and_then(|t| t.session) {
            Some(id) => {
                if let Some(session) = self.store.session(&id).await?.filter(|s| s.ended_at.is_none()) {
                    self.end_session(&session, Actor::User(caller.id.clone()), now)
                        .await?;
                }
                Ok(())
            }
            None => Err(ServiceError::invalid(
                "token",
                "this token belongs to no sign-in session (an admin issued it)",
            )),
        }
    }

    /// Deletes sign-ins that were started and never finished (or finished
    /// and never exchanged) once expired, and expired tokens (refused
    /// anyway). Returns how many.
    pub async fn sweep_sign_ins(&self) -> Result<usize, ServiceError> {
        let now = self.clock.now();
        let logins = self.store.expired_logins(now).await?;
        let tokens = self
            .store
            .tokens(&TokenFilter {
                expired_at: Some(now),
                ..TokenFilter::default()
            })
            .await?;
        let assertions = self.store.expired_assertions(now).await?;
        let change = Change {
            delete_pending_logins: logins.into_iter().map(|p| p.key).collect(),
            delete_tokens: tokens.into_iter().map(|t| t.hash).collect(),
            delete_used_assertions: assertions.into_iter().map(|a| a.key).collect(),
            ..Change::default()
        };
        let n = change.delete_pending_logins.len()
            + change.delete_tokens.len()
            + change.delete_used_assertions.len();
        if n > 0 {
            self.commit(change).await?;
        }
        Ok(n)
    }

    /// Sessions (live ones unless `all`), of one user or everyone.
    pub async fn list_sessions(
        &self,
        actor: &User,
        user: Option<&str>,
        all: bool,
    ) -> Result<Vec<SessionView>, ServiceError> {
        require_role(actor, Role::Admin)?;
        let now = self.clock.now();
        // No account has an id that is not well formed: nothing to list.
        let Ok(user) = user.map(jitgate_shared::v1::UserId::new).transpose() else {
            return Ok(Vec::new());
        };
        Ok(self
            .store
            .sessions(&SessionFilter {
                user,
                not_ended: false,
                live_at: (!all).then_some(now),
            })
            .await?
            .iter()
            .map(Session::view)
            .collect())
    }

    /// An admin ends a session: its tokens stop working at once.
    #[tracing::instrument(skip(self, actor), fields(user = %actor.id))]
    pub async fn revoke_session(&self, actor: &User, id: &str) -> Result<SessionView, ServiceError> {
        require_role(actor, Role::Admin)?;
        let now = self.clock.now();
        let session = self
            .store
            .session(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("session", id))?;
        if session.ended_at.is_none() {
            self.end_session(&session, Actor::User(actor.id.clone()), now)
                .await?;
        }
        let ended = self.store.session(id).await?.unwrap_or(session);
        Ok(ended.view())
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use crate::clock::Clock;
    use crate::domain::session::{LoginClient, LoginOutcome, PendingLogin};
    use crate::domain::user::{ApiToken, TokenKind};
    use crate::store::Change;
    use crate::testing::harness;

    #[tokio::test]
    async fn expired_sign_ins_and_tokens_are_swept_and_live_ones_kept() {
        let h = harness().await;
        let now = h.clock.now();
        let pending = |key: &str, ttl: Duration| PendingLogin {
            key: key.into(),
            version: 0,
            provider: "corp".into(),
            nonce: "n".into(),
            pkce_verifier: "v".into(),
            client: LoginClient::Web {
                return_to: "/".into(),
            },
            created_at: now,
            expires_at: now + ttl,
            outcome: LoginOutcome::Waiting,
        };
        let token = |hash: &str, ttl: Duration| ApiToken {
            hash: hash.into(),
            user: h.users[0].id.clone(),
            created_at: now,
            expires_at: now + ttl,
            session: Some("s".into()),
            kind: TokenKind::Access,
        };
        let change = Change {
            pending_logins: vec![
                pending("old", Duration::minutes(10)),
                pending("new", Duration::hours(2)),
            ],
            tokens: vec![
                token("spent", Duration::minutes(15)),
                token("live", Duration::hours(2)),
            ],
            ..Change::default()
        };
        h.broker.commit(change).await.unwrap();
        assert_eq!(h.broker.sweep_sign_ins().await.unwrap(), 0);
        h.clock.advance(Duration::hours(1));
        assert_eq!(h.broker.sweep_sign_ins().await.unwrap(), 2);
        let store = h.broker.store();
        assert!(store.pending_login("old").await.unwrap().is_none());
        assert!(store.pending_login("new").await.unwrap().is_some());
        assert!(store.token("spent").await.unwrap().is_none());
        assert!(store.token("live").await.unwrap().is_some());
    }
}
