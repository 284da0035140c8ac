//! Sign-in sessions and the logins on their way to becoming one.

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::SessionView;
use jitgate_shared::v1::UserId;
use serde::{Deserialize, Serialize};

/// The provider name of sessions opened with a one-time sign-in link
/// (reserved: no identity provider may take it).
pub const LINK_PROVIDER: &str = "link";

/// A sign-in started and not yet finished: what the callback must match.
/// Kept under the SHA-256 of its `state`; written with compare-and-set, so
/// a state is used once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingLogin {
    /// Hex SHA-256 of the state sent to the provider.
    pub key: String,
    pub version: u64,
    pub provider: String,
    pub nonce: String,
    pub pkce_verifier: String,
    pub client: LoginClient,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub outcome: LoginOutcome,
}

/// Who started the sign-in, and so where it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginClient {
    /// `jitgate login`: the browser goes back to the CLI's loopback
    /// listener with a one-time code, which the CLI exchanges with the
    /// verifier of `code_challenge` (S256).
    Cli {
        redirect_uri: String,
        code_challenge: String,
    },
    /// A browser: the session arrives as cookies.
    Web { return_to: String },
    /// A one-time sign-in link made for a local account (no identity
    /// provider): whoever opens it within its time signs in as `user`,
    /// once. Only the link's SHA-256 is stored (as the login's key).
    Link { user: UserId },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginOutcome {
    /// Sent to the provider; the callback has not come.
    Waiting,
    /// Signed in; a CLI still has to exchange the code (its SHA-256 here).
    SignedIn { code_hash: String, session: String },
    /// Done (exchanged, or a web sign-in), or refused: never again.
    Closed,
}

/// A person signed in through a provider. Its tokens are short-lived and
/// renewed through the provider until `expires_at`; ending it ends them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: String,
    pub version: u64,
    pub user: UserId,
    pub provider: String,
    /// The provider's refresh token (a secret: never logged or shown).
    pub idp_refresh_token: Option<String>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub refreshed_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The console's cross-site request forgery token for this session (a
    /// secret: every console form carries it). Empty for sessions made
    /// before the console, whose forms are refused until signed in again.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub csrf_secret: String,
}

impl Session {
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.ended_at.is_none() && now < self.expires_at
    }

    pub fn view(&self) -> SessionView {
        SessionView {
            id: self.id.clone(),
            user: self.user.clone(),
            provider: self.provider.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
            refreshed_at: self.refreshed_at,
            ended_at: self.ended_at,
        }
    }
}

/// A one-time proof seen once (a SAML assertion id, a Slack request's
/// signature); kept until it would expire anyway, so a replay is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedAssertion {
    /// `{provider}/{sha256 of the id}`.
    pub key: String,
    pub version: u64,
    pub expires_at: DateTime<Utc>,
}
