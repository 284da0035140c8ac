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

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use jitgate_shared::v1::api::{DevicePoll, DeviceStarted, Role, SessionView, SsoProviderView, TokenSet};
use sha2::{Digest, Sha256};

use super::auth::{hash_token, random_token, TOKEN_PREFIX};
use super::{require_role, Broker, ServiceError};
use crate::audit::{Actor, AuditEntry, AuditEvent};
use crate::config::{OidcProviderConfig, SamlProviderConfig, SsoConfig};
use crate::domain::session::{LoginClient, LoginOutcome, PendingLogin, Session, UsedAssertion};
use crate::domain::user::{ApiToken, TokenKind, User};
use crate::identity::oidc::{is_loopback, issuer_of, OidcError, OidcProvider, OidcSettings};
use crate::identity::saml::{AttributeNames, SamlError, SamlProvider};
use crate::identity::sso::{self, ClaimRules, SignInClaims, SignInError};
use crate::store::{Change, SessionFilter, TokenFilter};

/// Prefix of refresh tokens (recognisable by secret scanners).
pub const REFRESH_PREFIX: &str = "jgr_";
/// How long a started sign-in may take.
const LOGIN_TTL: Duration = Duration::minutes(10);
/// How long the CLI has to exchange its one-time code.
const EXCHANGE_TTL: Duration = Duration::minutes(2);

/// The identity providers and session lifetimes.
#[derive(Debug, Clone)]
pub struct Sso {
    providers: BTreeMap<String, Arc<OidcProvider>>,
    saml: BTreeMap<String, Arc<LazySaml>>,
    /// (name, email domains), in configuration order, for routing.
    routes: Vec<(String, Vec<String>)>,
    pub session_ttl: Duration,
    pub access_ttl: Duration,
    /// Device sign-ins under way, by the hash of their handle. In memory: a
    /// restart loses them, and people start again.
    devices: Arc<std::sync::Mutex<HashMap<String, DeviceLogin>>>,
}

/// At most this many device sign-ins are under way at once (each holds a
/// task polling its provider); past it, new ones are refused until some
/// finish or expire.
pub const MAX_DEVICE_LOGINS: usize = 1000;

/// Forgets expired device sign-ins and says whether one more fits.
fn room_for_device_login(devices: &mut HashMap<String, DeviceLogin>, now: DateTime<Utc>) -> bool {
    devices.retain(|_, d| now < d.expires_at);
    devices.len() < MAX_DEVICE_LOGINS
}

/// A device sign-in the broker is polling the provider for; forgotten
/// when it expires, or once its outcome was fetched.
#[derive(Debug, Clone)]
struct DeviceLogin {
    expires_at: DateTime<Utc>,
    interval: u64,
    /// `None` while the person has not answered.
    outcome: Option<Result<Box<TokenSet>, String>>,
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
    pub async fn from_config(
        config: &SsoConfig,
        session_ttl: std::time::Duration,
        access_ttl: std::time::Duration,
        public_url: &str,
    ) -> Result<Self, SsoConfigError> {
        let mut sso = Sso {
            session_ttl: Duration::from_std(session_ttl).unwrap_or(Duration::hours(12)),
            access_ttl: Duration::from_std(access_ttl).unwrap_or(Duration::minutes(15)),
            ..Sso::default()
        };
        for p in &config.oidc {
            let settings = settings_of(p, public_url)?;
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
}

fn settings_of(p: &OidcProviderConfig, public_url: &str) -> Result<OidcSettings, SsoConfigError> {
    let fail = |error: String| SsoConfigError::Provider {
        provider: p.name.clone(),
        error,
    };
    let env = format!(
        "JITGATE_OIDC_{}_CLIENT_SECRET",
        p.name.to_uppercase().replace('-', "_")
    );
    let client_secret = match (&p.client_secret_file, std::env::var(&env)) {
        (_, Ok(secret)) if !secret.is_empty() => secret,
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|e| fail(format!("client secret file {}: {e}", file.display())))?
            .trim()
            .to_owned(),
        (None, _) => {
            return Err(fail(format!(
                "no client secret: set `client_secret_file` or {env}"
            )))
        }
    };
    let issuer = if p.issuer.is_empty() {
        issuer_of(&p.discovery_url)
            .ok_or_else(|| {
                fail(format!(
                    "`{}` does not end in /.well-known/openid-configuration",
                    p.discovery_url
                ))
            })?
            .to_owned()
    } else {
        if !p.discovery_url.is_empty() && issuer_of(&p.discovery_url) != Some(p.issuer.as_str()) {
            return Err(fail(format!(
                "discovery_url `{}` is not the issuer `{}`'s",
                p.discovery_url, p.issuer
            )));
        }
        p.issuer.clone()
    };
    let ca_pem = match &p.ca_file {
        Some(f) => Some(std::fs::read(f).map_err(|e| fail(format!("CA file {}: {e}", f.display())))?),
        None => None,
    };
    Ok(OidcSettings {
        name: p.name.clone(),
        issuer,
        client_id: p.client_id.clone(),
        client_secret,
        callback_url: if p.callback_url.is_empty() {
            format!("{public_url}/auth/oidc/callback")
        } else {
            p.callback_url.clone()
        },
        audiences: p.audiences.clone(),
        signing_algorithms: p.signing_algorithms.clone(),
        scopes: p.scopes.clone(),
        rules: ClaimRules {
            provider: p.name.clone(),
            key_claim: p.key_claim.clone(),
            groups_claim: p.groups_claim.clone(),
            role_claim: p.role_claim.clone(),
            default_role: p.default_role().map_err(|e| fail(e.to_string()))?,
            email_domains: p.email_domains.clone(),
            trust_unverified_email: p.trust_unverified_email,
        },
        ca_pem,
    })
}

/// A SAML provider whose IdP metadata is read on first use (from a URL,
/// the IdP may be down when the broker starts).
#[derive(Debug)]
struct LazySaml {
    config: SamlProviderConfig,
    public_url: String,
    provider: tokio::sync::OnceCell<Arc<SamlProvider>>,
}

impl LazySaml {
    async fn get(&self) -> Result<&Arc<SamlProvider>, SsoConfigError> {
        self.provider
            .get_or_try_init(|| async { saml_provider(&self.config, &self.public_url).await.map(Arc::new) })
            .await
    }
}

async fn saml_provider(p: &SamlProviderConfig, public_url: &str) -> Result<SamlProvider, SsoConfigError> {
    let fail = |error: String| SsoConfigError::Provider {
        provider: p.name.clone(),
        error,
    };
    let metadata = match (&p.idp_metadata_file, p.idp_metadata_url.as_str()) {
        (Some(file), _) => std::fs::read_to_string(file)
            .map_err(|e| fail(format!("IdP metadata {}: {e}", file.display())))?,
        (None, url) if !url.is_empty() => {
            let parsed =
                reqwest::Url::parse(url).map_err(|e| fail(format!("idp_metadata_url `{url}`: {e}")))?;
            if parsed.scheme() != "https" && !is_loopback(&parsed) {
                return Err(fail(format!("idp_metadata_url `{url}` must be https")));
            }
            reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(15))
                .build()
                .map_err(|e| fail(e.to_string()))?
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|e| fail(format!("IdP metadata from {url}: {e}")))?
                .text()
                .await
                .map_err(|e| fail(format!("IdP metadata from {url}: {e}")))?
        }
        _ => return Err(fail("needs `idp_metadata_file` or `idp_metadata_url`".into())),
    };
    let skew = humantime::parse_duration(&p.clock_skew)
        .map_err(|e| fail(format!("clock_skew `{}`: {e}", p.clock_skew)))?;
    let default_role = if p.default_role.is_empty() {
        None
    } else {
        Some(
            Role::ALL
                .into_iter()
                .find(|r| r.as_str() == p.default_role)
                .ok_or_else(|| fail(format!("default_role `{}` is not a role", p.default_role)))?,
        )
    };
    let entity_id = if p.entity_id.is_empty() {
        format!("{public_url}/auth/saml/{}/metadata", p.name)
    } else {
        p.entity_id.clone()
    };
    Ok(SamlProvider::new(
        &p.name,
        &metadata,
        entity_id,
        format!("{public_url}/auth/saml/{}/acs", p.name),
        Duration::from_std(skew).unwrap_or(Duration::minutes(2)),
        ClaimRules {
            provider: p.name.clone(),
            key_claim: "sub".into(),
            groups_claim: "groups".into(),
            role_claim: "role".into(),
            default_role,
            email_domains: p.email_domains.clone(),
            // A SAML assertion has no verified flag: the IdP that signs it
            // vouches for the attributes it asserts.
            trust_unverified_email: true,
        },
        AttributeNames {
            email: p.email_attribute.clone(),
            name: p.name_attribute.clone(),
            role: p.role_attribute.clone(),
            groups: p.groups_attribute.clone(),
        },
    )?)
}

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

fn refused(e: impl std::fmt::Display) -> ServiceError {
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
    /// This broker with identity providers.
    pub fn with_sso(mut self, sso: Sso) -> Self {
        self.sso = Arc::new(sso);
        self
    }

    pub fn sso(&self) -> &Sso {
        &self.sso
    }

    fn provider(&self, name: &str) -> Result<&Arc<OidcProvider>, ServiceError> {
        self.sso
            .providers
            .get(name)
            .ok_or_else(|| ServiceError::not_found("sign-in provider", name))
    }

    /// The provider that signs in `email` (or the one named).
    fn route(&self, email: Option<&str>, provider: Option<&str>) -> Result<&str, ServiceError> {
        sso::route(&self.sso.routes, email, provider).map_err(|e| ServiceError::Invalid {
            field: Some(if provider.is_some() { "provider" } else { "email" }),
            message: e.to_string(),
        })
    }

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

    /// The provider's redirect: `state` and `code`, or an `error`.
    #[tracing::instrument(skip_all)]
    pub async fn finish_login(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<(&str, Option<&str>)>,
    ) -> Result<Finished, ServiceError> {
        let now = self.clock.now();
        let pending = self
            .store
            .pending_login(&hash_token(state))
            .await?
            .filter(|p| p.outcome == LoginOutcome::Waiting && now < p.expires_at)
            .ok_or_else(|| refused("unknown, expired or already used sign-in state"))?;
        let pending = self.close_login(&pending).await?;
        let provider = self.provider(&pending.provider)?.clone();
        let outcome = async {
            if let Some((error, description)) = error {
                return Err(refused(format!(
                    "provider `{}` answered {error}{}",
                    pending.provider,
                    description.map(|d| format!(": {d}")).unwrap_or_default()
                )));
            }
            let code = code.ok_or_else(|| refused("the provider sent no code"))?;
            let verified = provider
                .exchange_code(code, &pending.pkce_verifier, &pending.nonce, now)
                .await
                .map_err(|e| match e {
                    OidcError::Transport { .. } | OidcError::Discovery { .. } => {
                        ServiceError::Unavailable(e.to_string())
                    }
                    other => refused(other),
                })?;
            self.sign_in(provider.rules(), &verified.claims, verified.refresh_token, now)
                .await
        }
        .await;
        let (user, session) = self.audit_refusal(&pending.provider, outcome, now).await?;
        self.complete_login(pending, state, &user, &session, now).await
    }

    /// Marks a pending login used (once: a second use is refused). Returns
    /// it as stored.
    async fn close_login(&self, pending: &PendingLogin) -> Result<PendingLogin, ServiceError> {
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
    async fn complete_login(
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

    async fn saml(&self, name: &str) -> Result<Arc<SamlProvider>, ServiceError> {
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

    /// The SP metadata of SAML provider `name`.
    pub async fn saml_metadata(&self, name: &str) -> Result<String, ServiceError> {
        let saml = self.saml(name).await?;
        saml.metadata_xml()
            .map_err(|e| ServiceError::Unavailable(e.to_string()))
    }

    /// A SAML response posted to the assertion consumer of provider `name`:
    /// SP-initiated when `relay_state` names a pending login of it,
    /// IdP-initiated (a browser session) otherwise.
    #[tracing::instrument(skip(self, saml_response, relay_state))]
    pub async fn finish_saml(
        &self,
        name: &str,
        saml_response: &str,
        relay_state: Option<&str>,
    ) -> Result<Finished, ServiceError> {
        let saml = self.saml(name).await?;
        let now = self.clock.now();
        let pending =
            match relay_state.filter(|r| !r.is_empty()) {
                Some(state) => self.store.pending_login(&hash_token(state)).await?.filter(|p| {
                    p.provider == name && p.outcome == LoginOutcome::Waiting && now < p.expires_at
                }),
                None => None,
            };
        let pending = match pending {
            Some(p) => Some(self.close_login(&p).await?),
            None => None,
        };
        let outcome = async {
            let verified = saml
                .verify(saml_response, pending.as_ref().map(|p| p.nonce.as_str()))
                .map_err(refused)?;
            self.use_assertion(name, &verified.id, verified.not_on_or_after, now)
                .await?;
            self.sign_in(&saml.rules, &verified.claims, None, now).await
        }
        .await;
        let (user, session) = self.audit_refusal(name, outcome, now).await?;
        match (pending, relay_state) {
            (Some(p), Some(state)) => self.complete_login(p, state, &user, &session, now).await,
            _ => {
                let tokens = self.issue_tokens(&user, &session, now).await?;
                Ok(Finished::Web {
                    tokens: Box::new(tokens),
                    return_to: "/auth/signed-in".into(),
                })
            }
        }
    }

    /// Records an assertion id as used until it expires; a second use is a
    /// replay.
    async fn use_assertion(
        &self,
        provider: &str,
        id: &str,
        not_on_or_after: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), ServiceError> {
        let mut change = Change::default();
        change.used_assertions.push(UsedAssertion {
            key: format!("{provider}/{}", hash_token(id)),
            version: 0,
            expires_at: not_on_or_after.unwrap_or(now + Duration::hours(1)),
        });
        self.commit(change).await.map(|_| ()).map_err(|e| match e {
            ServiceError::Store(s) if s.is_conflict() => {
                refused(format!("assertion `{id}` was already used (replayed)"))
            }
            other => other,
        })
    }

    /// Starts a device sign-in: the broker polls the provider in the
    /// background while the person approves on another device.
    #[tracing::instrument(skip(self, email))]
    pub async fn start_device_login(
        &self,
        email: Option<&str>,
        provider: Option<&str>,
    ) -> Result<DeviceStarted, ServiceError> {
        let name = self.route(email, provider)?;
        if self.sso.saml.contains_key(name) {
            return Err(ServiceError::invalid(
                "provider",
                format!("`{name}` is a SAML provider: the device flow is OIDC only; use `jitgate login` with a browser"),
            ));
        }
        let oidc = self.provider(name)?.clone();
        let full = || {
            ServiceError::Unavailable("too many device sign-ins are under way; try again in a minute".into())
        };
        // Checked before asking the provider, and again when adding.
        let room = self
            .sso
            .devices
            .lock()
            .map(|mut d| room_for_device_login(&mut d, self.clock.now()))
            .unwrap_or(false);
        if !room {
            return Err(full());
        }
        let start = oidc.start_device(email).await.map_err(|e| match e {
            OidcError::Config { .. } => ServiceError::Invalid {
                field: Some("provider"),
                message: e.to_string(),
            },
            other => ServiceError::Unavailable(other.to_string()),
        })?;
        let now = self.clock.now();
        let handle = random_token("");
        let key = hash_token(&handle);
        let expires_at = now + Duration::from_std(start.expires_in).unwrap_or(LOGIN_TTL);
        let interval = start.interval.as_secs().max(1);
        let mut devices = self
            .sso
            .devices
            .lock()
            .map_err(|_| ServiceError::Unavailable("device sign-ins are unavailable".into()))?;
        if !room_for_device_login(&mut devices, now) {
            return Err(full());
        }
        devices.insert(
            key.clone(),
            DeviceLogin {
                expires_at,
                interval,
                outcome: None,
            },
        );
        drop(devices);
        let broker = self.clone();
        let shown = start.clone();
        tokio::spawn(async move {
            let clock = broker.clock.clone();
            let outcome = async {
                let verified = oidc
                    .finish_device(&start, || clock.now())
                    .await
                    .map_err(|e| e.to_string())?;
                let now = broker.clock.now();
                let (user, session) = broker
                    .sign_in(oidc.rules(), &verified.claims, verified.refresh_token, now)
                    .await
                    .map_err(|e| e.to_string())?;
                broker
                    .issue_tokens(&user, &session, now)
                    .await
                    .map(Box::new)
                    .map_err(|e| e.to_string())
            }
            .await;
            if let Err(e) = &outcome {
                tracing::warn!(provider = %oidc.name(), error = %e, "device sign-in ended without a session");
            }
            if let Ok(mut devices) = broker.sso.devices.lock() {
                if let Some(d) = devices.get_mut(&key) {
                    d.outcome = Some(outcome);
                }
            }
        });
        Ok(DeviceStarted {
            handle,
            provider: name.to_owned(),
            user_code: shown.user_code,
            verification_uri: shown.verification_uri,
            verification_uri_complete: shown.verification_uri_complete,
            interval_seconds: interval,
            expires_at,
        })
    }

    /// Where a device sign-in is; its tokens are handed out once.
    pub fn poll_device_login(&self, handle: &str) -> Result<DevicePoll, ServiceError> {
        let refuse = |m: String| ServiceError::Unauthenticated(m);
        let now = self.clock.now();
        let key = hash_token(handle);
        let mut devices = self
            .sso
            .devices
            .lock()
            .map_err(|_| ServiceError::Unavailable("device sign-ins are unavailable".into()))?;
        devices.retain(|_, d| now < d.expires_at);
        let Some(login) = devices.get(&key).cloned() else {
            return Err(refuse("unknown or expired device sign-in; start again".into()));
        };
        match login.outcome {
            None => Ok(DevicePoll::Pending {
                interval_seconds: login.interval,
            }),
            Some(outcome) => {
                devices.remove(&key);
                match outcome {
                    Ok(tokens) => Ok(DevicePoll::SignedIn { tokens }),
                    Err(e) => Err(refused(e)),
                }
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
        let session = Session {
            id: uuid::Uuid::now_v7().to_string(),
            version: 0,
            user: user.id.clone(),
            provider: name.to_owned(),
            idp_refresh_token,
            created_at: now,
            expires_at: now + self.sso.session_ttl,
            refreshed_at: None,
            ended_at: None,
        };
        let mut change = Change::default();
        change.audit.push(AuditEntry {
            at: now,
            actor: Actor::User(user.id.clone()),
            event: AuditEvent::SignedIn {
                user: user.id.clone(),
                provider: name.to_owned(),
                session: session.id.clone(),
                created,
                roles: user.roles.iter().map(|r| r.as_str().to_owned()).collect(),
            },
        });
        let previous = known.cloned();
        if previous.as_ref() != Some(&user) {
            change.users.push(user.clone());
        }
        change.sessions.push(session.clone());
        let session = self.commit(change).await?.stored(session);
        tracing::info!(user = %user.id, provider = name, created, "signed in");
        Ok((user, session))
    }

    /// A new access token and refresh token for a live session; earlier
    /// refresh tokens of the session stop working.
    async fn issue_tokens(
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
        let user = if self.sso.saml.contains_key(&session.provider) {
            // SAML has no back channel to ask the IdP again: the session's
            // tokens are renewed until the session ends (`session_ttl`);
            // deprovisioning or an admin ends it sooner.
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
    async fn end_session(
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
        let change = Change {
            delete_pending_logins: logins.into_iter().map(|p| p.key).collect(),
            delete_tokens: tokens.into_iter().map(|t| t.hash).collect(),
            ..Change::default()
        };
        let n = change.delete_pending_logins.len() + change.delete_tokens.len();
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
    use super::*;
    use crate::clock::Clock;
    use crate::testing::harness;

    #[test]
    fn device_sign_ins_are_capped_and_expired_ones_make_room() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let login = |expires_at| DeviceLogin {
            expires_at,
            interval: 5,
            outcome: None,
        };
        let mut devices: HashMap<String, DeviceLogin> = (0..MAX_DEVICE_LOGINS)
            .map(|i| (i.to_string(), login(now + Duration::minutes(10))))
            .collect();
        assert!(!room_for_device_login(&mut devices, now), "full");
        // One of them expires: it is forgotten and makes room.
        devices.insert("0".into(), login(now - Duration::seconds(1)));
        devices.insert("old".into(), login(now - Duration::seconds(1)));
        assert!(room_for_device_login(&mut devices, now));
        assert_eq!(devices.len(), MAX_DEVICE_LOGINS - 1);
        assert!(!devices.contains_key("old"), "expired ones are forgotten");
    }

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

#[cfg(test)]
mod saml_config_tests {
    use super::*;
    use crate::config::SsoConfig;

    fn saml(file: Option<std::path::PathBuf>, url: &str) -> SsoConfig {
        SsoConfig {
            saml: vec![SamlProviderConfig {
                name: "okta".into(),
                idp_metadata_file: file,
                idp_metadata_url: url.into(),
                entity_id: String::new(),
                email_attribute: "email".into(),
                name_attribute: "name".into(),
                role_attribute: "role".into(),
                groups_attribute: "groups".into(),
                default_role: "requester".into(),
                email_domains: vec!["example.org".into()],
                clock_skew: "2m".into(),
            }],
            ..SsoConfig::default()
        }
    }

    async fn load(config: &SsoConfig) -> Result<Sso, SsoConfigError> {
        let hour = std::time::Duration::from_secs(3600);
        Sso::from_config(config, hour, hour, "https://broker:8443").await
    }

    #[tokio::test]
    async fn idp_metadata_is_imported_from_a_file_at_start_and_a_bad_one_stops_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("idp.xml");
        std::fs::write(&file, crate::identity::saml::tests::metadata_with_cert()).unwrap();
        let sso = load(&saml(Some(file), "")).await.unwrap();
        let provider = sso.saml["okta"].provider.get().expect("read at start");
        assert_eq!(provider.acs_url, "https://broker:8443/auth/saml/okta/acs");
        assert_eq!(provider.entity_id, "https://broker:8443/auth/saml/okta/metadata");

        let missing = dir.path().join("nope.xml");
        let err = load(&saml(Some(missing.clone()), ""))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(&missing.display().to_string()), "{err}");
        let garbage = dir.path().join("garbage.xml");
        std::fs::write(&garbage, "<html/>").unwrap();
        let err = load(&saml(Some(garbage), "")).await.unwrap_err().to_string();
        assert!(err.contains("okta") && err.contains("metadata"), "{err}");
        // A URL is read on first use: the broker starts while the IdP is down.
        let sso = load(&saml(None, "http://127.0.0.1:9/metadata")).await.unwrap();
        assert!(sso.saml["okta"].provider.get().is_none());
    }
}
