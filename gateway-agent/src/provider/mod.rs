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
use jitgate_shared::v1::{ConfigId, Entitlement, Target};

/// Refuses an entitlement of another configuration than the one this
/// agent serves (the executor refuses such commands first; providers check
/// again).
pub fn check_configuration(serves: &ConfigId, e: &Entitlement) -> Result<(), ProviderError> {
    if &e.configuration == serves {
        return Ok(());
    }
    Err(ProviderError::permanent(format!(
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

/// A failure from the tenant's API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ProviderError {
    pub reason: String,
    /// Worth trying again (throttling, a timeout, a 5xx).
    pub retryable: bool,
    /// What the tenant asked for (Retry-After), if it did.
    pub retry_after: Option<Duration>,
}

impl ProviderError {
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retryable: false,
            retry_after: None,
        }
    }

    pub fn transient(reason: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self {
            reason: reason.into(),
            retryable: true,
            retry_after,
        }
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
