//! Sign-in through identity providers, sessions and their tokens.
//!
//! 1. `start_login` routes the person to a provider (by email domain, or by
//!    name), stores a pending login (state hash, nonce, PKCE verifier, where
//!    it ends) and returns the provider's authorization URL.
//! 2. `finish_login` (the provider's redirect) uses the pending login once,
//!    exchanges the code, verifies the ID token, creates or reconciles the
//!    user just in time, and opens a session. A browser gets cookies; a CLI
//!    gets a one-time code on its loopback listener, which it exchanges
//!    with its own PKCE verifier (`exchange_login`).
//! 3. Tokens are short-lived; `refresh_session` renews them through the
//!    provider (which may refuse: the person was disabled there), until the
//!    session's end. Admins list and end sessions; ending one ends its
//!    tokens at once.
//!
//! Here: the steps every provider shares (starting, closing and completing
//! a login, the CLI's exchange, the just-in-time user and its session).
//! - `providers`: the configured providers and routing to them.
//! - `oidc`: OpenID Connect providers and their redirect.
//! - `saml`: SAML providers, their metadata and assertion consumer.
//! - `device`: device sign-ins, polled by tasks the server shuts down.
//! - `link`: one-time sign-in links for local accounts (no provider).
//! - `sessions`: tokens, refresh, sign-out, the sweep, admin views.

mod device;
mod link;
mod oidc;
mod providers;
mod saml;
mod sessions;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jitgate_shared::v1::api::TokenSet;
use sha2::{Digest, Sha256};

pub use device::{DeviceLogins, MAX_DEVICE_LOGINS};
pub use link::{LINK_PATH, LINK_TTL};
pub use providers::{Sso, SsoConfigError};
pub use sessions::REFRESH_PREFIX;

use super::auth::{hash_token, random_token};
use super::{Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::domain::session::{LoginClient, LoginOutcome, PendingLogin, Session};
use crate::domain::user::User;
use crate::identity::oidc::is_loopback;
use crate::identity::sso::{self, ClaimRules, SignInClaims, SignInError};
use crate::store::Change;

/// How long a started sign-in may take.
const LOGIN_TTL: Duration = Duration::minutes(10);
/// How long the CLI has to exchange its one-time code.
const EXCHANGE_TTL: Duration = Duration::minutes(2);

/// Where a finished sign-in goes.
#[derive(Debug)]
pub enum Finished {
    /// Redirect the browser to the CLI's loopback listener.
    Cli { redirect: String },
    /// Set the session cookies, then go to `return_to`.
    Web {
        tokens: Box<TokenSet>,
        return_to: String,
    },
}

pub(super) fn refused(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Unauthenticated(format!("sign-in refused: {e}"))
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The CLI's listener must be on this machine: `http://127.0.0.1`,
/// `http://[::1]` or `http://localhost`, any port.
fn check_loopback(redirect_uri: &str) -> Result<(), ServiceError> {
    let ok = reqwest::Url::parse(redirect_uri)
        .is_ok_and(|u| u.scheme() == "http" && is_loopback(&u) && u.fragment().is_none());
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            "redirect_uri",
            format!("`{redirect_uri}` is not a loopback URL (http://127.0.0.1:PORT/...)"),
        ))
    }
}

impl Broker {
    /// Starts a sign-in; returns the provider's authorization URL.
    #[tracing::instrument(skip(self, client, email), fields(provider = ?provider))]
    pub async fn start_login(
        &self,
        email: Option<&str>,
        provider: Option<&str>,
        client: LoginClient,
    ) -> Result<(String, String), ServiceError> {
        if let LoginClient::Cli {
            redirect_uri,
            code_challenge,
        } = &client
        {
            check_loopback(redirect_uri)?;
            let ok = code_challenge.len() == 43
                && code_challenge
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(ServiceError::invalid(
                    "code_challenge",
                    "must be the base64url S256 of a PKCE verifier (43 characters)",
                ));
            }
        }
        let name = self.route(email, provider)?;
        let now = self.clock.now();
        let state = random_token("");
        let (nonce, verifier, url) = match self.sso.saml.get(name) {
            // SAML: the AuthnRequest id plays the nonce (InResponseTo).
            Some(lazy) => {
                let saml = lazy
                    .get()
                    .await
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
                let request_id = format!("id-{}", random_token(""));
                let url = saml
                    .authn_redirect(&request_id, &state)
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
                (request_id, String::new(), url)
            }
            None => {
                let oidc = self.provider(name)?;
                let nonce = random_token("");
                let verifier = random_token("");
                let url = oidc
                    .authorization_url(&state, &nonce, &verifier, email)
                    .await
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
                (nonce, verifier, url)
            }
        };
        let mut change = Change::default();
        change.pending_logins.push(PendingLogin {
            key: hash_token(&state),
            version: 0,
            provider: name.to_owned(),
            nonce,
            pkce_verifier: verifier,
            client,
            created_at: now,
            expires_at: now + LOGIN_TTL,
            outcome: LoginOutcome::Waiting,
        });
        self.commit(change).await?;
        Ok((url, name.to_owned()))
    }

    /// Marks a pending login used (once: a second use is refused). Returns
    /// it as stored.
    pub(super) async fn close_login(&self, pending: &PendingLogin) -> Result<PendingLogin, ServiceError> {
        let mut closed = pending.clone();
        closed.outcome = LoginOutcome::Closed;
        let mut change = Change::default();
        change.pending_logins.push(closed.clone());
        self.commit(change)
            .await
            .map(|committed| committed.stored(closed))
            .map_err(|e| match e {
                ServiceError::Store(s) if s.is_conflict() => refused("sign-in state already used"),
                other => other,
            })
    }

    /// Audits a refused sign-in that reached a provider.
    async fn audit_refusal<T>(
        &self,
        provider: &str,
        outcome: Result<T, ServiceError>,
        now: DateTime<Utc>,
    ) -> Result<T, ServiceError> {
        match outcome {
            Ok(v) => Ok(v),
            Err(e) => {
                tracing::warn!(provider, error = %e, "sign-in refused");
                let mut change = Change::default();
                change.audit.push(AuditEntry {
                    at: now,
                    actor: Actor::System,
                    event: AuditEvent::SignInRefused {
                        provider: provider.to_owned(),
                        reason: e.to_string(),
                    },
                });
                self.commit(change).await?;
                Err(e)
            }
        }
    }

    /// Ends a signed-in login where it started: cookies for a browser, a
    /// one-time code on the CLI's loopback listener.
    pub(super) async fn complete_login(
        &self,
        pending: PendingLogin,
        state: &str,
        user: &User,
        session: &Session,
        now: DateTime<Utc>,
    ) -> Result<Finished, ServiceError> {
        match pending.client.clone() {
            LoginClient::Web { return_to } => {
                let tokens = self.issue_tokens(user, session, now).await?;
                Ok(Finished::Web {
                    tokens: Box::new(tokens),
                    return_to,
                })
            }
            LoginClient::Link { .. } => Err(refused("a sign-in link is not a provider's sign-in")),
            LoginClient::Cli { redirect_uri, .. } => {
                let code = random_token("");
                let mut signed_in = pending;
                signed_in.outcome = LoginOutcome::SignedIn {
                    code_hash: hash_token(&code),
                    session: session.id.clone(),
                };
                signed_in.expires_at = now + EXCHANGE_TTL;
                let mut change = Change::default();
                change.pending_logins.push(signed_in);
                self.commit(change).await?;
                let sep = if redirect_uri.contains('?') { '&' } else { '?' };
                Ok(Finished::Cli {
                    redirect: format!("{redirect_uri}{sep}code={code}&state={state}"),
                })
            }
        }
    }

    /// The CLI's exchange of its one-time code, proven with its verifier.
    #[tracing::instrument(skip_all)]
    pub async fn exchange_login(
        &self,
        state: &str,
        code: &str,
        verifier: &str,
    ) -> Result<TokenSet, ServiceError> {
        let now = self.clock.now();
        let refuse = || refused("unknown, expired or already used sign-in code");
        let pending = self
            .store
            .pending_login(&hash_token(state))
            .await?
            .filter(|p| now < p.expires_at)
            .ok_or_else(refuse)?;
        let (LoginClient::Cli { code_challenge, .. }, LoginOutcome::SignedIn { code_hash, session }) =
            (&pending.client, &pending.outcome)
        else {
            return Err(refuse());
        };
        if *code_hash != hash_token(code) {
            return Err(refuse());
        }
        if s256(verifier) != *code_challenge {
            return Err(refused("the code verifier does not match the login's challenge"));
        }
        let session = self.store.session(session).await?.ok_or_else(refuse)?;
        let mut closed = pending.clone();
        closed.outcome = LoginOutcome::Closed;
        let mut change = Change::default();
        change.pending_logins.push(closed);
        self.commit(change).await.map_err(|e| match e {
            ServiceError::Store(s) if s.is_conflict() => refuse(),
            other => other,
        })?;
        let user = self.store.user(&session.user).await?.ok_or_else(refuse)?;
        self.issue_tokens(&user, &session, now).await
    }

    /// Creates or reconciles the user of verified claims and opens a
    /// session.
    pub(crate) async fn sign_in(
        &self,
        rules: &ClaimRules,
        claims: &serde_json::Map<String, serde_json::Value>,
        idp_refresh_token: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<(User, Session), ServiceError> {
        let claims = SignInClaims::read(claims, rules).map_err(refused)?;
        sso::check_domain(&claims, rules).map_err(refused)?;
        let roles = sso::roles_for(&claims, rules).map_err(refused)?;
        let name = rules.provider.as_str();
        let users = self.store.users().await?;
        let known = users
            .iter()
            .find(|u| u.identities.get(name) == Some(&claims.key))
            .or_else(|| {
                // A user a directory provisioned (SCIM) with this verified
                // email, not yet signed in here. `claims.email` is verified
                // (SignInClaims::read drops an unverified one).
                users.iter().find(|u| {
                    u.provisioned_by.is_some()
                        && !u.identities.contains_key(name)
                        && claims.email.is_some()
                        && u.verified_email() == claims.email
                })
            });
        let (user, created) = match known {
            Some(u) => (sso::reconcile(u, &claims, roles, name).map_err(refused)?, false),
            None => {
                let id = sso::user_id_candidates(&claims, name)
                    .into_iter()
                    .find(|id| !users.iter().any(|u| &u.id == id))
                    .ok_or_else(|| {
                        refused(SignInError::MissingKeyClaim {
                            provider: name.to_owned(),
                            claim: rules.key_claim.clone(),
                        })
                    })?;
                // `claims.email` is verified; `users` are already loaded.
                let person =
                    crate::domain::user::person_for_new_account(&users, &id, claims.email.as_deref());
                (sso::new_user(id, person, &claims, roles, name, now), true)
            }
        };
        let session = new_session(&user, name, idp_refresh_token, now, self.sso.session_ttl);
        let mut change = Change::default();
        change.audit.push(signed_in(&user, &session, created, now));
        let previous = known.cloned();
        if previous.as_ref() != Some(&user) {
            change.users.push(user.clone());
        }
        change.sessions.push(session.clone());
        let session = self.commit(change).await?.stored(session);
        tracing::info!(user = %user.id, provider = name, created, "signed in");
        Ok((user, session))
    }
}

/// A new session of `user` through `provider`, with its console secret.
fn new_session(
    user: &User,
    provider: &str,
    idp_refresh_token: Option<String>,
    now: DateTime<Utc>,
    ttl: Duration,
) -> Session {
    Session {
        id: uuid::Uuid::now_v7().to_string(),
        version: 0,
        user: user.id.clone(),
        provider: provider.to_owned(),
        idp_refresh_token,
        created_at: now,
        expires_at: now + ttl,
        refreshed_at: None,
        ended_at: None,
        csrf_secret: random_token(""),
    }
}

/// The audit record of a session opened.
fn signed_in(user: &User, session: &Session, created: bool, now: DateTime<Utc>) -> AuditEntry {
    AuditEntry {
        at: now,
        actor: Actor::User(user.id.clone()),
        event: AuditEvent::SignedIn {
            user: user.id.clone(),
            provider: session.provider.clone(),
            session: session.id.clone(),
            created,
            roles: user.roles.iter().map(|r| r.as_str().to_owned()).collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_listener_must_be_loopback() {
        for ok in [
            "http://127.0.0.1:9/callback",
            "http://localhost:1234/cb",
            "http://[::1]:80/x",
        ] {
            check_loopback(ok).unwrap();
        }
        for bad in [
            "https://127.0.0.1:9/cb",
            "http://evil.example/cb",
            "http://127.0.0.1.evil.example/",
            "javascript:x",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }
}
