//! Providers act on one tenant: apply an entitlement, remove it, list who
//! holds the targets jitgate manages. Every operation is idempotent: applying
//! what is there or removing what is not is a success that says so.
//!
//! [`sandbox`] is a simulated tenant for the quickstart and tests; [`aws`]
//! acts on AWS Identity Center and IAM, [`entra`] on Entra ID through
//! Microsoft Graph, each within a per-tenant [`budget`].

pub mod aws;
pub mod budget;
pub mod cache;
pub mod entra;
pub mod sandbox;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use jitgate_shared::v1::protocol::{FailureKind, Outcome};
use jitgate_shared::v1::{ConfigId, Entitlement, Target};

/// Refuses an entitlement of another configuration than the one this
/// agent serves (the executor refuses such commands first; providers check
/// again).
pub fn check_configuration(serves: &ConfigId, e: &Entitlement) -> Result<(), ProviderError> {
    if &e.configuration == serves {
        return Ok(());
    }
    Err(ProviderError::rejected(format!(
        "entitlement for configuration {}, this agent serves {serves}",
        e.configuration
    )))
}

/// The grant window an entitlement is applied for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub until: DateTime<Utc>,
    /// Keep sessions issued from the entitlement no longer than the window
    /// where the cloud allows it.
    pub cap_session_duration: bool,
    /// Ask the directory to provision the change to a federated tenant at
    /// once (Entra: `provisionOnDemand`).
    pub provision_on_demand: Option<jitgate_shared::v1::signing::ProvisionOnDemand>,
}

/// How an entitlement is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ending {
    /// Also end the principal's sign-in sessions where the cloud allows it
    /// (the workflow's `end_sign_in_sessions`).
    pub end_sign_in_sessions: bool,
}

/// Whether an operation changed the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Changed,
    Unchanged,
}

/// A failure from the tenant's API or of the request itself, by kind
/// ([`FailureKind`]): the kind alone decides whether the broker sends the
/// command again and how long the agent waits before retrying a
/// self-revoke. The message names what failed for the people reading it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProviderError {
    kind: FailureKind,
    reason: String,
    retry_after: Option<Duration>,
}

impl ProviderError {
    /// A failure of `kind` (see the named constructors below).
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
            retry_after: None,
        }
    }

    /// No answer: connection failure, timeout, a server error.
    pub fn transport(reason: impl Into<String>) -> Self {
        Self::new(FailureKind::Transport, reason)
    }

    /// The tenant did not take the agent's credential.
    pub fn unauthorised(reason: impl Into<String>) -> Self {
        Self::new(FailureKind::Unauthorised, reason)
    }

    /// Slow down, for at least `retry_after` when the tenant (or its
    /// budget) said how long.
    pub fn throttled(reason: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            ..Self::new(FailureKind::Throttled, reason)
        }
    }

    /// An earlier change to the same thing is still running.
    pub fn busy(reason: impl Into<String>) -> Self {
        Self::new(FailureKind::Busy, reason)
    }

    /// Something the entitlement names is not in the tenant.
    pub fn not_found(reason: impl Into<String>) -> Self {
        Self::new(FailureKind::NotFound, reason)
    }

    /// Refused as it stands; asking again will not help.
    pub fn rejected(reason: impl Into<String>) -> Self {
        Self::new(FailureKind::Rejected, reason)
    }

    /// The same error, its message prefixed with what was being done.
    pub fn context(self, doing: impl std::fmt::Display) -> Self {
        Self {
            reason: format!("{doing}: {}", self.reason),
            ..self
        }
    }

    pub fn kind(&self) -> FailureKind {
        self.kind
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// Whether the same call may succeed later unchanged.
    pub fn retryable(&self) -> bool {
        self.kind.retryable()
    }

    /// The pause the tenant asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// How the broker hears of it.
    pub fn outcome(&self) -> Outcome {
        Outcome::failed(self.kind, self.reason.clone(), self.retry_after)
    }
}

#[async_trait]
pub trait Provider: Send + Sync + Debug + 'static {
    /// Entitlement kinds this provider handles, plus `list`.
    fn capabilities(&self) -> BTreeSet<String>;
    async fn apply(&self, entitlement: &Entitlement) -> Result<Effect, ProviderError>;
    /// Applies for a grant window: providers that can bound sessions to it
    /// do so when asked; the rest just apply.
    async fn apply_for(&self, entitlement: &Entitlement, window: &Window) -> Result<Effect, ProviderError> {
        let _ = window;
        self.apply(entitlement).await
    }
    async fn remove(&self, entitlement: &Entitlement) -> Result<Effect, ProviderError>;
    /// Removes, ending sessions too when asked and the provider can; the
    /// rest just remove.
    async fn remove_for(&self, entitlement: &Entitlement, ending: &Ending) -> Result<Effect, ProviderError> {
        let _ = ending;
        self.remove(entitlement).await
    }
    /// Every principal holding one of `targets` now.
    async fn list(&self, targets: &[Target]) -> Result<Vec<Entitlement>, ProviderError>;
    /// Whether the principal effectively holds the entitlement now, by any
    /// route the tenant offers (Identity Center: assigned directly or
    /// through a group it belongs to, as a directory's provisioning makes
    /// it). Confirms that a federated elevation took effect downstream.
    /// By default: the principal is among those `list` finds.
    async fn holds(&self, entitlement: &Entitlement) -> Result<bool, ProviderError> {
        let found = self.list(std::slice::from_ref(&entitlement.target)).await?;
        Ok(found.iter().any(|e| e == entitlement))
    }
}
