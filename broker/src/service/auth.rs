//! Bearer tokens for local accounts. Only a token's SHA-256 is stored; the
//! token itself is shown once when issued.

use base64::Engine;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Broker, ServiceError};
use crate::domain::session::Session;
use crate::domain::user::{ApiToken, TokenKind, User};

/// Prefix that makes jitgate tokens recognisable (and findable by secret
/// scanners).
pub const TOKEN_PREFIX: &str = "jg_";

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// 256 random bits, base64url, after `prefix`.
pub fn random_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// A new random API token and its stored form.
pub fn new_token(user: &User, now: DateTime<Utc>, ttl: chrono::Duration) -> (String, ApiToken) {
    let token = random_token(TOKEN_PREFIX);
    let stored = ApiToken {
        hash: hash_token(&token),
        user: user.id.clone(),
        created_at: now,
        expires_at: now + ttl,
        session: None,
        kind: TokenKind::Access,
    };
    (token, stored)
}

/// The same answer for every refused token, so callers learn nothing about
/// which tokens exist.
fn refused() -> ServiceError {
    ServiceError::Unauthenticated("invalid or expired token".into())
}

impl Broker {
    /// The user a bearer token belongs to. The same message for every
    /// failure, so callers learn nothing about which tokens exist.
    #[tracing::instrument(skip_all)]
    pub async fn authenticate(&self, token: &str) -> Result<User, ServiceError> {
        let stored = self.live_access_token(token).await?;
        let user = self.store.user(&stored.user).await?.ok_or_else(refused)?;
        if user.disabled {
            return Err(refused());
        }
        Ok(user)
    }

    /// The stored access token `token` names, while it is valid. Tokens
    /// refused are counted (`sign_ins{method="token",result="failed"}`):
    /// many of them are someone guessing.
    async fn live_access_token(&self, token: &str) -> Result<ApiToken, ServiceError> {
        let now = self.clock.now();
        let stored = if token.starts_with(TOKEN_PREFIX) {
            self.store.token(&hash_token(token)).await?
        } else {
            None
        };
        match stored {
            Some(stored) if stored.is_valid_at(now) && stored.kind == TokenKind::Access => Ok(stored),
            _ => {
                self.metrics.sign_in("token", false);
                Err(refused())
            }
        }
    }

    /// The user and live sign-in session of a browser's session token (the
    /// console's forms are bound to the session). Refused like
    /// [`Broker::authenticate`], and for tokens of no session (API tokens).
    #[tracing::instrument(skip_all)]
    pub async fn authenticate_browser(&self, token: &str) -> Result<(User, Session), ServiceError> {
        let stored = self.live_access_token(token).await?;
        let session = stored.session.as_deref().ok_or_else(refused)?;
        let (session, user) = tokio::try_join!(self.store.session(session), self.store.user(&stored.user))?;
        let now = self.clock.now();
        let session = session.filter(|s| s.is_live(now)).ok_or_else(refused)?;
        let user = user.filter(|u| !u.disabled).ok_or_else(refused)?;
        Ok((user, session))
    }
}
