//! The identity providers people sign in with, by name, and routing to
//! them by email domain; session lifetimes.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use jitgate_shared::v1::api::{Role, SsoProviderView};

use super::device::DeviceLogins;
use super::saml::LazySaml;
use crate::config::SsoConfig;
use crate::domain::user::User;
use crate::identity::oidc::{OidcError, OidcProvider};
use crate::identity::saml::{SamlError, SamlProvider};
use crate::identity::sso::{self, SignInError};
use crate::service::{require_role, Broker, ServiceError};

/// The identity providers and session lifetimes.
#[derive(Debug, Clone)]
pub struct Sso {
    pub(super) providers: BTreeMap<String, Arc<OidcProvider>>,
    pub(super) saml: BTreeMap<String, Arc<LazySaml>>,
    /// (name, email domains), in configuration order, for routing.
    pub(super) routes: Vec<(String, Vec<String>)>,
    pub session_ttl: Duration,
    pub access_ttl: Duration,
    /// Device sign-ins under way.
    pub(super) devices: Arc<DeviceLogins>,
}

impl Default for Sso {
    fn default() -> Self {
        Self {
            devices: Arc::default(),
            providers: BTreeMap::new(),
            saml: BTreeMap::new(),
            routes: Vec::new(),
            session_ttl: Duration::hours(12),
            access_ttl: Duration::minutes(15),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SsoConfigError {
    #[error("sso.oidc `{provider}`: {error}")]
    Provider { provider: String, error: String },
    #[error(transparent)]
    Oidc(#[from] OidcError),
    #[error(transparent)]
    Saml(#[from] SamlError),
}

impl Sso {
    /// Providers from the configuration; client secrets from their files or
    /// `JITGATE_OIDC_{NAME}_CLIENT_SECRET`.
    pub async fn from_config(config: &SsoConfig, public_url: &str) -> Result<Self, SsoConfigError> {
        let mut sso = Sso {
            session_ttl: Duration::from_std(config.session_ttl).unwrap_or(Duration::hours(12)),
            access_ttl: Duration::from_std(config.access_ttl).unwrap_or(Duration::minutes(15)),
            ..Sso::default()
        };
        for p in &config.oidc {
            let settings = super::oidc::settings_of(p, public_url)?;
            sso.routes.push((p.name.clone(), p.email_domains.clone()));
            sso.providers.insert(p.name.clone(), OidcProvider::new(settings)?);
        }
        for p in &config.saml {
            let lazy = LazySaml {
                config: p.clone(),
                public_url: public_url.to_owned(),
                provider: tokio::sync::OnceCell::new(),
            };
            if p.idp_metadata_file.is_some() {
                // A file is there now: a mistake in it stops the start.
                lazy.get().await?;
            }
            sso.routes.push((p.name.clone(), p.email_domains.clone()));
            sso.saml.insert(p.name.clone(), Arc::new(lazy));
        }
        Ok(sso)
    }

    pub fn provider_names(&self) -> Vec<String> {
        self.routes.iter().map(|(n, _)| n.clone()).collect()
    }

    /// Device sign-ins under way, and the tasks polling for them.
    pub fn device_logins(&self) -> &DeviceLogins {
        &self.devices
    }
}

impl Broker {
    /// This broker with identity providers.
    pub fn with_sso(mut self, sso: Sso) -> Self {
        self.sso = Arc::new(sso);
        self
    }

    pub fn sso(&self) -> &Sso {
        &self.sso
    }

    pub(super) fn provider(&self, name: &str) -> Result<&Arc<OidcProvider>, ServiceError> {
        self.sso
            .providers
            .get(name)
            .ok_or_else(|| ServiceError::not_found("sign-in provider", name))
    }

    /// The provider that signs in `email` (or the one named).
    pub(super) fn route(&self, email: Option<&str>, provider: Option<&str>) -> Result<&str, ServiceError> {
        sso::route(&self.sso.routes, email, provider).map_err(|e| match e {
            // The broker's state, not the request, is what is missing.
            SignInError::NoProviders => ServiceError::Conflict(e.to_string()),
            SignInError::UnknownProvider { name, .. } => ServiceError::not_found("sign-in provider", name),
            _ => ServiceError::Invalid {
                field: Some(if provider.is_some() { "provider" } else { "email" }),
                message: e.to_string(),
            },
        })
    }

    pub(super) async fn saml(&self, name: &str) -> Result<Arc<SamlProvider>, ServiceError> {
        let lazy = self
            .sso
            .saml
            .get(name)
            .ok_or_else(|| ServiceError::not_found("SAML provider", name))?;
        lazy.get()
            .await
            .cloned()
            .map_err(|e| ServiceError::Unavailable(e.to_string()))
    }

    /// The providers people sign in with, and what to register at each.
    pub fn list_sso_providers(&self, actor: &User) -> Result<Vec<SsoProviderView>, ServiceError> {
        require_role(actor, Role::Admin)?;
        Ok(self
            .sso
            .routes
            .iter()
            .map(
                |(name, domains)| match (self.sso.providers.get(name), self.sso.saml.get(name)) {
                    (Some(oidc), _) => SsoProviderView {
                        name: name.clone(),
                        kind: "oidc".into(),
                        email_domains: domains.clone(),
                        callback_url: Some(oidc.callback_url().to_owned()),
                        entity_id: None,
                        acs_url: None,
                        metadata_url: None,
                    },
                    (None, lazy) => {
                        let base = lazy.map(|l| l.public_url.clone()).unwrap_or_default();
                        let entity = lazy
                            .map(|l| l.config.entity_id.clone())
                            .filter(|e| !e.is_empty())
                            .unwrap_or_else(|| format!("{base}/auth/saml/{name}/metadata"));
                        SsoProviderView {
                            name: name.clone(),
                            kind: "saml".into(),
                            email_domains: domains.clone(),
                            callback_url: None,
                            entity_id: Some(entity),
                            acs_url: Some(format!("{base}/auth/saml/{name}/acs")),
                            metadata_url: Some(format!("{base}/auth/saml/{name}/metadata")),
                        }
                    }
                },
            )
            .collect())
    }
}
