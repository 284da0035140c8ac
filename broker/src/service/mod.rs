//! Services: the only place that combines pure domain logic, the store, the
//! policies and the clock. HTTP handlers and the scheduler call these.
//!
//! - [`requests`]: create, review, cancel, read requests.
//! - [`grants`]: open and close windows, leases, commands, extension.
//! - [`admin`]: configurations, resources, users, tokens, policies, the
//!   outbox, force-closing a failing revoke, anchoring the audit chain.
//! - [`agents`]: join tokens and agent enrollment.
//! - [`audit`]: reading, downloading and checking the audit log online.
//! - [`auth`]: bearer tokens.
//! - [`delivery`]: agents' answers, self-revoke reports, reconciliation.
//! - [`scim`]: SCIM provisioning connections and resources.
//! - [`deprovision`]: ending a user's access at once (a directory's
//!   deactivation, an admin disabling an account).
//! - [`sign_in`]: sign-in through identity providers, sessions, tokens.
//! - [`live`]: connected agents and their outboxes' claims, in memory.
//!
//! `promises` (tests only) is the model-based test of the two promises
//! over these services.

pub mod admin;
pub mod agents;
pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod chain;
pub mod chat;
pub mod contact;
pub mod delivery;
pub mod deprovision;
mod error;
pub mod feed;
pub mod grants;
pub mod live;
pub mod notify;
pub mod observe;
pub mod policies;
pub mod requests;
pub mod scim;
pub mod sign_in;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::Notify;

pub use error::ServiceError;
pub use policies::PolicyHolder;

use crate::clock::Clock;
use crate::domain::policy::{Catalog, CatalogEntry, Policies};
use crate::domain::user::User;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tls::BrokerCa;
use jitgate_shared::v1::signing::CommandSigner;

/// Every item of a newest-first paged listing that the listing's filter
/// keeps, read page by page (`id` names an item for the next page).
async fn all_pages<T, F, Fut>(id: impl Fn(&T) -> String, mut page: F) -> Result<Vec<T>, ServiceError>
where
    F: FnMut(crate::store::PageQuery) -> Fut,
    Fut: Future<Output = Result<Vec<T>, crate::store::StoreError>>,
{
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let items = page(crate::store::PageQuery::new(
            after.clone(),
            crate::store::MAX_PAGE,
        ))
        .await?;
        let full = items.len() == crate::store::MAX_PAGE;
        after = items.last().map(&id);
        found.extend(items);
        if !full {
            return Ok(found);
        }
    }
}

impl Broker {
    /// Every grant `filter` matches.
    pub(crate) async fn grants_where(
        &self,
        filter: &crate::store::GrantFilter,
    ) -> Result<Vec<crate::domain::grant::Grant>, ServiceError> {
        all_pages(
            |g: &crate::domain::grant::Grant| g.id.to_string(),
            |page| async move { self.store.grants(&page, filter).await },
        )
        .await
    }

    /// The person a new account with a vouched-for `email` belongs to
    /// (local, SCIM, OIDC or SAML: one person, one voice); see
    /// [`person_for_new_account`](crate::domain::user::person_for_new_account).
    pub(crate) async fn person_for_new_account(
        &self,
        id: &jitgate_shared::v1::UserId,
        email: Option<&str>,
    ) -> Result<String, ServiceError> {
        if email.is_none() {
            return Ok(id.to_string());
        }
        let users = self.store.users().await?;
        Ok(crate::domain::user::person_for_new_account(&users, id, email))
    }

    /// Every request `filter` matches.
    pub(crate) async fn requests_where(
        &self,
        filter: &crate::store::RequestFilter,
    ) -> Result<Vec<crate::domain::request::Request>, ServiceError> {
        all_pages(
            |r: &crate::domain::request::Request| r.id.to_string(),
            |page| async move { self.store.requests(&page, filter).await },
        )
        .await
    }
}

/// How often a conflicting compare-and-set is retried with fresh reads before
/// the caller is told to try again.
pub(crate) const CONFLICT_RETRIES: usize = 16;

#[derive(Debug, Clone)]
pub struct Broker {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) policies: Arc<PolicyHolder>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    /// Woken when a job is scheduled earlier than the scheduler's next wake.
    pub(crate) scheduler: Arc<Notify>,
    pub(crate) settings: Settings,
    /// Signs agent certificates and commands; absent in offline tools.
    pub(crate) keys: Option<BrokerKeys>,
    /// Connected agents and outbox signals.
    pub(crate) live: Arc<live::Live>,
    /// Identity providers and session lifetimes.
    pub(crate) sso: Arc<sign_in::Sso>,
    /// Notification channels (mail, webhooks, Slack, Teams).
    pub(crate) channels: Arc<crate::notify::channels::Channels>,
    /// On-call schedules workflows name.
    pub(crate) on_call: Arc<crate::on_call::OnCall>,
}

/// The broker's signing keys: its CA and its command-signing key.
#[derive(Debug, Clone)]
pub struct BrokerKeys {
    pub ca: Arc<BrokerCa>,
    pub commands: Arc<CommandSigner>,
    /// Signs the audit chain's head.
    pub audit: Arc<crate::audit::anchor::AnchorSigner>,
}

/// Service settings from the broker configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Lifetime of API tokens issued to local accounts.
    pub token_ttl: chrono::Duration,
    /// Lifetime of agent client certificates.
    pub agent_cert_ttl: chrono::Duration,
    /// New agents wait for an admin's approval before they may connect.
    pub agent_approval: bool,
    /// Where agents connect (`wss://host:port`), told to them at enrollment.
    pub hub_url: String,
    /// Reconciliation queues revokes for entitlements found in a tenant that
    /// jitgate did not grant.
    pub remove_unexpected: bool,
    /// The REST API's URL as people and directories reach it
    /// (`https://host:port`, no trailing slash): SCIM locations, SSO
    /// callbacks.
    pub public_url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            token_ttl: chrono::Duration::days(30),
            agent_cert_ttl: chrono::Duration::hours(24),
            agent_approval: false,
            hub_url: String::new(),
            remove_unexpected: false,
            public_url: "https://localhost:8443".into(),
        }
    }
}

impl Broker {
    pub fn new(
        store: Arc<dyn Store>,
        policies: Arc<PolicyHolder>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        settings: Settings,
    ) -> Self {
        Self {
            store,
            policies,
            clock,
            metrics,
            scheduler: Arc::new(Notify::new()),
            settings,
            keys: None,
            live: Arc::new(live::Live::default()),
            sso: Arc::new(sign_in::Sso::default()),
            channels: Arc::new(crate::notify::channels::Channels::default()),
            on_call: Arc::new(crate::on_call::OnCall::default()),
        }
    }

    /// This broker, reached by people at `url` (the links it makes point
    /// there): for offline commands, which have no listener of their own.
    pub fn with_public_url(mut self, url: String) -> Self {
        self.settings.public_url = url;
        self
    }

    /// This broker, signing agent certificates and commands with `keys`.
    pub fn with_keys(mut self, keys: BrokerKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    pub fn with_channels(mut self, channels: crate::notify::channels::Channels) -> Self {
        self.channels = Arc::new(channels);
        self
    }

    pub fn with_on_call(mut self, on_call: crate::on_call::OnCall) -> Self {
        self.on_call = Arc::new(on_call);
        self
    }

    /// A broker with no policies loaded, so it permits nothing: for loading
    /// catalogues and for offline commands, which never decide access.
    pub fn without_policies(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        let holder = PolicyHolder::new(std::path::PathBuf::new(), Policies::empty(), clock.now());
        Self::new(
            store,
            Arc::new(holder),
            clock,
            Arc::new(Metrics::new()),
            Settings::default(),
        )
    }

    /// The same broker (store, clock, metrics, settings) with `policies`
    /// from `dir` in force.
    pub fn with_policies(&self, dir: std::path::PathBuf, policies: Policies) -> Self {
        let holder = PolicyHolder::new(dir, policies, self.clock.now());
        Self {
            policies: Arc::new(holder),
            scheduler: Arc::new(Notify::new()),
            ..self.clone()
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The command-signing key, when this broker has its keys loaded.
    pub fn command_signer(&self) -> Option<&Arc<CommandSigner>> {
        self.keys.as_ref().map(|k| &k.commands)
    }

    pub fn live(&self) -> &Arc<live::Live> {
        &self.live
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Tells the sessions of these configurations to look at their outbox.
    pub(crate) fn signal_outboxes(
        &self,
        configurations: impl IntoIterator<Item = jitgate_shared::v1::ConfigId>,
    ) {
        for c in configurations {
            self.live.outbox_changed(&c);
        }
    }

    pub fn scheduler_notify(&self) -> &Arc<Notify> {
        &self.scheduler
    }

    /// The resources policies may name, from the store.
    pub async fn catalog(&self) -> Result<Catalog, ServiceError> {
        catalog_of(self.store.as_ref()).await
    }
}

/// The catalogue of resources policies may name.
pub async fn catalog_of(store: &dyn Store) -> Result<Catalog, ServiceError> {
    let resources = store
        .resources()
        .await?
        .into_iter()
        .map(|r| {
            (
                r.resource.id.to_string(),
                CatalogEntry {
                    group: r.resource.group.clone(),
                    configuration: r.resource.configuration.to_string(),
                },
            )
        })
        .collect();
    Ok(Catalog {
        resources,
        check_names: true,
    })
}

/// A page of `items` read with `query`: a full page points at the next one
/// through its last item's id.
pub(crate) fn page_of<T>(
    items: Vec<T>,
    query: &crate::store::PageQuery,
    id: impl Fn(&T) -> String,
) -> jitgate_shared::v1::api::Page<T> {
    let next = (items.len() == query.limit)
        .then(|| items.last().map(&id))
        .flatten();
    jitgate_shared::v1::api::Page { items, next }
}

/// Runs `attempt` again while it fails on a compare-and-set conflict: each
/// attempt re-reads and re-decides, so exactly one of racing writers wins
/// and the others see its outcome.
pub(crate) async fn retry_conflicts<T, F, Fut>(mut attempt: F) -> Result<T, ServiceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, ServiceError>>,
{
    for _ in 0..CONFLICT_RETRIES {
        match attempt().await {
            Err(ServiceError::Store(e)) if e.is_conflict() => {
                tracing::debug!(error = %e, "compare-and-set conflict; retrying");
                tokio::task::yield_now().await;
            }
            other => return other,
        }
    }
    Err(ServiceError::Conflict(
        "too many concurrent changes to the same record; try again".into(),
    ))
}

/// The caller must be an admin.
pub fn require_admin(actor: &User) -> Result<(), ServiceError> {
    require_role(actor, jitgate_shared::v1::api::Role::Admin)
}

/// Role guard used by services.
pub(crate) fn require_role(actor: &User, role: jitgate_shared::v1::api::Role) -> Result<(), ServiceError> {
    if actor.has_role(role) {
        Ok(())
    } else {
        Err(ServiceError::Forbidden(format!(
            "this needs the `{}` role; {} has {}",
            role.as_str(),
            actor.id,
            if actor.roles.is_empty() {
                "none".to_owned()
            } else {
                actor
                    .roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        )))
    }
}

#[cfg(test)]
mod audit_tests;
#[cfg(test)]
mod console_tests;
#[cfg(test)]
mod promises;
#[cfg(test)]
mod tests;
