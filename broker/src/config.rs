//! Broker configuration, layered: built-in defaults < file < environment <
//! flags. Unknown keys in the file are refused. Every key is documented in
//! `deploy/broker.example.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Address the REST API listens on.
    pub listen: SocketAddr,
    /// Where the store and the broker CA live.
    pub data_dir: PathBuf,
    /// Directory of `*.cedar` policies and `workflows.toml`.
    pub policy_dir: PathBuf,
    /// DNS names and IP addresses in the API's TLS certificate.
    pub server_names: Vec<String>,
    /// Serve plain HTTP. Only behind a TLS-terminating proxy on the same host.
    pub insecure_plain_http: bool,
    /// Lifetime of API tokens for local accounts, like "30d" or "12h".
    pub token_ttl: String,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers, and how
    /// long a kept-alive connection may wait idle for the next request,
    /// like "10s".
    pub header_read_timeout: String,
    /// How often the audit chain's head is signed (and at shutdown), like
    /// "1m": records after the last anchor are what a cut-off tail could
    /// lose unnoticed.
    pub audit_anchor_interval: String,
    /// Sign-in requests (`/auth/*`) one client may make a minute.
    pub sign_ins_per_minute: u32,
    /// Refused bearer tokens one client may present a minute; past that its
    /// tokens are refused unread until the quota refills.
    pub failed_tokens_per_minute: u32,
    pub log_format: LogFormat,
    /// Address the agent hub (mutually authenticated websockets) listens on.
    pub hub_listen: SocketAddr,
    /// The hub's address as agents reach it, told to them at enrollment.
    /// Empty: `wss://{first server name}:{hub port}`.
    pub hub_url: String,
    /// Heartbeat interval on agent sessions; two missed and the agent is offline.
    pub agent_heartbeat: String,
    /// Lifetime of agent client certificates; agents renew at two thirds.
    pub agent_cert_ttl: String,
    /// New agents wait for an admin's approval before they may connect.
    pub agent_approval: bool,
    /// Reconciliation revokes entitlements found in a tenant that jitgate
    /// did not grant (otherwise it only reports them).
    pub remove_unexpected: bool,
    /// How often each agent session compares the tenant with the grants
    /// (besides at every connect), like "10m".
    pub reconcile_interval: String,
    /// The REST API's URL as people and directories reach it (SCIM base
    /// URL, SSO callbacks). Empty: `https://{first server name}:{port}`.
    pub public_url: String,
    /// Sign-in through identity providers.
    pub sso: SsoConfig,
}

/// `[sso]`: sessions, and the OIDC providers people sign in with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsoConfig {
    /// How long a sign-in lasts at most; refreshing stops after it.
    pub session_ttl: String,
    /// Lifetime of the tokens (CLI) and web sessions a sign-in or a refresh
    /// issues.
    pub access_ttl: String,
    /// OIDC providers, `[[sso.oidc]]`.
    pub oidc: Vec<OidcProviderConfig>,
    /// SAML 2.0 identity providers, `[[sso.saml]]`.
    pub saml: Vec<SamlProviderConfig>,
}

/// One SAML 2.0 identity provider (`[[sso.saml]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlProviderConfig {
    pub name: String,
    /// The IdP's metadata, from a file...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp_metadata_file: Option<PathBuf>,
    /// ...or a URL, read at start-up.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub idp_metadata_url: String,
    /// Our entity id. Default `{public_url}/auth/saml/{name}/metadata`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub entity_id: String,
    #[serde(default = "default_email_attribute")]
    pub email_attribute: String,
    #[serde(default = "default_name_attribute")]
    pub name_attribute: String,
    #[serde(default = "default_role_attribute")]
    pub role_attribute: String,
    #[serde(default = "default_groups_claim")]
    pub groups_attribute: String,
    #[serde(default = "default_role")]
    pub default_role: String,
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Clock skew allowed on NotBefore and NotOnOrAfter.
    #[serde(default = "default_clock_skew")]
    pub clock_skew: String,
}

fn default_email_attribute() -> String {
    "email".into()
}

fn default_name_attribute() -> String {
    "name".into()
}

fn default_role_attribute() -> String {
    "role".into()
}

fn default_clock_skew() -> String {
    "2m".into()
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            session_ttl: "12h".into(),
            access_ttl: "15m".into(),
            oidc: Vec::new(),
            saml: Vec::new(),
        }
    }
}

/// One OIDC provider (`[[sso.oidc]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// Names the provider (in sessions, audit, `--provider`).
    pub name: String,
    /// The provider's discovery document
    /// (`https://idp/.well-known/openid-configuration`); the issuer is
    /// taken from it. Give this or `issuer`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub discovery_url: String,
    /// The expected issuer (`iss`); discovery must agree with it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    pub client_id: String,
    /// A file holding the client secret (or env
    /// `JITGATE_OIDC_{NAME}_CLIENT_SECRET`, NAME upper-cased, `-` as `_`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Where the provider sends people back. Default
    /// `{public_url}/auth/oidc/callback`; register it with the provider.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub callback_url: String,
    /// Audiences accepted besides the client id.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// The claim that identifies a person at this provider.
    #[serde(default = "default_key_claim")]
    pub key_claim: String,
    /// Signature algorithms accepted; unsigned tokens are always refused.
    #[serde(default = "default_algorithms")]
    pub signing_algorithms: Vec<String>,
    /// The claim listing the person's groups (for policies and approvers).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// The claim naming jitgate roles (a string or a list).
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The role of someone whose role claim is missing or names no known
    /// role (requester, approver, admin, auditor); "" means such people get
    /// no access.
    #[serde(default = "default_role")]
    pub default_role: String,
    /// Email domains this provider signs in; people are routed to it by
    /// them, and it may not sign in anyone else. Empty: any domain (only
    /// sensible with one provider).
    #[serde(default)]
    pub email_domains: Vec<String>,
    /// Use the token's `email` even when the provider does not say
    /// `email_verified: true`. Off by default: an unverified email does not
    /// route, link accounts or name anyone in a cloud. Turn it on only for
    /// a provider that never sets the claim and lets nobody choose their
    /// own email (a risk: whoever can set an email there can be taken for
    /// its owner).
    #[serde(default)]
    pub trust_unverified_email: bool,
    /// Scopes asked for.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// A PEM file of CA certificates to trust for this provider, besides the
    /// system's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

fn default_key_claim() -> String {
    "sub".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_role_claim() -> String {
    "jitgate_role".into()
}

fn default_role() -> String {
    "requester".into()
}

impl OidcProviderConfig {
    /// `default_role` read: `None` for "".
    pub fn default_role(&self) -> Result<Option<jitgate_shared::v1::api::Role>, ConfigError> {
        if self.default_role.is_empty() {
            return Ok(None);
        }
        jitgate_shared::v1::api::Role::ALL
            .into_iter()
            .find(|r| r.as_str() == self.default_role)
            .map(Some)
            .ok_or_else(|| ConfigError::Invalid {
                key: "sso.oidc",
                message: format!(
                    "provider `{}`: default_role `{}` is not requester, approver, admin, auditor or \"\"",
                    self.name, self.default_role
                ),
            })
    }
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "offline_access"]
        .map(String::from)
        .to_vec()
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            data_dir: PathBuf::from("/var/lib/jitgate"),
            policy_dir: PathBuf::from("/etc/jitgate/policies"),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            insecure_plain_http: false,
            token_ttl: "30d".into(),
            max_body_bytes: crate::api::DEFAULT_MAX_BODY,
            header_read_timeout: "10s".into(),
            audit_anchor_interval: "1m".into(),
            sign_ins_per_minute: 60,
            failed_tokens_per_minute: 30,
            log_format: LogFormat::Text,
            hub_listen: SocketAddr::from(([127, 0, 0, 1], 8444)),
            hub_url: String::new(),
            agent_heartbeat: "5s".into(),
            agent_cert_ttl: "24h".into(),
            agent_approval: false,
            remove_unexpected: false,
            reconcile_interval: "10m".into(),
            public_url: String::new(),
            sso: SsoConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path}: {error}")]
    Parse { path: String, error: String },
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// Values from the environment and flags; `None` leaves the layer below.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Overrides {
    /// Address the REST API listens on [default: 127.0.0.1:8443].
    #[arg(long, env = "JITGATE_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Data directory (store, CA) [default: /var/lib/jitgate].
    #[arg(long, env = "JITGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Policy directory [default: /etc/jitgate/policies].
    #[arg(long, env = "JITGATE_POLICY_DIR")]
    pub policy_dir: Option<PathBuf>,
    /// A name for the TLS certificate; repeat for several [default: localhost, 127.0.0.1].
    #[arg(long = "server-name", env = "JITGATE_SERVER_NAMES", value_delimiter = ',')]
    pub server_names: Option<Vec<String>>,
    /// Serve plain HTTP (only behind a TLS-terminating proxy).
    #[arg(long, env = "JITGATE_INSECURE_PLAIN_HTTP", num_args = 0..=1, default_missing_value = "true")]
    pub insecure_plain_http: Option<bool>,
    /// API token lifetime for local accounts, like 30d [default: 30d].
    #[arg(long, env = "JITGATE_TOKEN_TTL")]
    pub token_ttl: Option<String>,
    /// Largest accepted request body in bytes [default: 65536].
    #[arg(long, env = "JITGATE_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Log format [default: text].
    #[arg(long, env = "JITGATE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Address the agent hub listens on [default: 127.0.0.1:8444].
    #[arg(long, env = "JITGATE_HUB_LISTEN")]
    pub hub_listen: Option<SocketAddr>,
    /// The hub's URL as agents reach it [default: wss://{first server name}:{hub port}].
    #[arg(long, env = "JITGATE_HUB_URL")]
    pub hub_url: Option<String>,
    /// Heartbeat interval on agent sessions, like 5s [default: 5s].
    #[arg(long, env = "JITGATE_AGENT_HEARTBEAT")]
    pub agent_heartbeat: Option<String>,
    /// Lifetime of agent client certificates, like 24h [default: 24h].
    #[arg(long, env = "JITGATE_AGENT_CERT_TTL")]
    pub agent_cert_ttl: Option<String>,
    /// New agents wait for an admin's approval [default: false].
    #[arg(long, env = "JITGATE_AGENT_APPROVAL", num_args = 0..=1, default_missing_value = "true")]
    pub agent_approval: Option<bool>,
    /// Revoke entitlements found in a tenant that jitgate did not grant [default: false].
    #[arg(long, env = "JITGATE_REMOVE_UNEXPECTED", num_args = 0..=1, default_missing_value = "true")]
    pub remove_unexpected: Option<bool>,
    /// How long a client may take to send request headers (and stay idle between requests), like 10s [default: 10s].
    #[arg(long, env = "JITGATE_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<String>,
    /// How often the audit chain's head is signed, like 1m [default: 1m].
    #[arg(long, env = "JITGATE_AUDIT_ANCHOR_INTERVAL")]
    pub audit_anchor_interval: Option<String>,
    /// Sign-in requests one client may make a minute [default: 60].
    #[arg(long, env = "JITGATE_SIGN_INS_PER_MINUTE")]
    pub sign_ins_per_minute: Option<u32>,
    /// Refused bearer tokens one client may present a minute [default: 30].
    #[arg(long, env = "JITGATE_FAILED_TOKENS_PER_MINUTE")]
    pub failed_tokens_per_minute: Option<u32>,
    /// How often agent sessions reconcile the tenant with the grants, like 10m [default: 10m].
    #[arg(long, env = "JITGATE_RECONCILE_INTERVAL")]
    pub reconcile_interval: Option<String>,
    /// The API's URL as people and directories reach it [default: https://{first server name}:{port}].
    #[arg(long, env = "JITGATE_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl BrokerConfig {
    /// Defaults, then `file` if given, then `overrides`; then checked.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
                    path: path.display().to_string(),
                    error,
                })?;
                Self::parse(&text, &path.display().to_string())?
            }
            None => Self::default(),
        };
        let o = overrides.clone();
        if let Some(v) = o.listen {
            config.listen = v;
        }
        if let Some(v) = o.data_dir {
            config.data_dir = v;
        }
        if let Some(v) = o.policy_dir {
            config.policy_dir = v;
        }
        if let Some(v) = o.server_names {
            config.server_names = v;
        }
        if let Some(v) = o.insecure_plain_http {
            config.insecure_plain_http = v;
        }
        if let Some(v) = o.token_ttl {
            config.token_ttl = v;
        }
        if let Some(v) = o.max_body_bytes {
            config.max_body_bytes = v;
        }
        if let Some(v) = o.log_format {
            config.log_format = v;
        }
        if let Some(v) = o.hub_listen {
            config.hub_listen = v;
        }
        if let Some(v) = o.hub_url {
            config.hub_url = v;
        }
        if let Some(v) = o.agent_heartbeat {
            config.agent_heartbeat = v;
        }
        if let Some(v) = o.agent_cert_ttl {
            config.agent_cert_ttl = v;
        }
        if let Some(v) = o.agent_approval {
            config.agent_approval = v;
        }
        if let Some(v) = o.remove_unexpected {
            config.remove_unexpected = v;
        }
        if let Some(v) = &o.audit_anchor_interval {
            config.audit_anchor_interval = v.clone();
        }
        if let Some(v) = o.sign_ins_per_minute {
            config.sign_ins_per_minute = v;
        }
        if let Some(v) = o.failed_tokens_per_minute {
            config.failed_tokens_per_minute = v;
        }
        if let Some(v) = &o.header_read_timeout {
            config.header_read_timeout = v.clone();
        }
        if let Some(v) = &o.reconcile_interval {
            config.reconcile_interval = v.clone();
        }
        if let Some(v) = &o.public_url {
            config.public_url = v.clone();
        }
        config.check()?;
        Ok(config)
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            error: e.to_string(),
        })
    }

    fn check(&self) -> Result<(), ConfigError> {
        self.token_ttl()?;
        self.session_ttl()?;
        self.access_ttl()?;
        self.check_sso()?;
        self.agent_heartbeat()?;
        self.reconcile_interval()?;
        self.header_read_timeout()?;
        self.client_limits()?;
        self.audit_anchor_interval()?;
        self.agent_cert_ttl()?;
        if !self.hub_url.is_empty() && !self.hub_url.starts_with("wss://") {
            return Err(ConfigError::Invalid {
                key: "hub_url",
                message: format!("`{}` must start with wss://", self.hub_url),
            });
        }
        let url = &self.public_url;
        if !(url.is_empty() || url.starts_with("https://") || url.starts_with("http://")) {
            return Err(ConfigError::Invalid {
                key: "public_url",
                message: format!(
                    "`{}` must start with https:// (or http:// behind a proxy)",
                    self.public_url
                ),
            });
        }
        if self.server_names.is_empty() && !self.insecure_plain_http {
            return Err(ConfigError::Invalid {
                key: "server_names",
                message: "at least one name is needed for the TLS certificate".into(),
            });
        }
        if self.max_body_bytes < 1024 {
            return Err(ConfigError::Invalid {
                key: "max_body_bytes",
                message: format!("{} is too small; at least 1024", self.max_body_bytes),
            });
        }
        Ok(())
    }

    pub fn token_ttl(&self) -> Result<Duration, ConfigError> {
        duration(
            "token_ttl",
            &self.token_ttl,
            Duration::from_secs(1),
            Duration::from_secs(366 * 86_400),
        )
    }

    pub fn session_ttl(&self) -> Result<Duration, ConfigError> {
        duration(
            "sso.session_ttl",
            &self.sso.session_ttl,
            Duration::from_secs(60),
            Duration::from_secs(30 * 86_400),
        )
    }

    pub fn access_ttl(&self) -> Result<Duration, ConfigError> {
        duration(
            "sso.access_ttl",
            &self.sso.access_ttl,
            Duration::from_secs(10),
            Duration::from_secs(86_400),
        )
    }

    fn check_sso(&self) -> Result<(), ConfigError> {
        /// A well-formed provider name, not used before (OIDC and SAML
        /// names share one space: they route sign-ins).
        fn provider_name<'a>(
            name: &'a str,
            seen: &mut std::collections::BTreeSet<&'a str>,
        ) -> Result<(), String> {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(format!(
                    "`{name}` is not a provider name: lowercase letters, digits and `-`"
                ));
            }
            if !seen.insert(name) {
                return Err(format!("provider `{name}` is configured twice"));
            }
            Ok(())
        }
        let invalid = |message: String| ConfigError::Invalid {
            key: "sso.oidc",
            message,
        };
        let mut names = std::collections::BTreeSet::new();
        for p in &self.sso.oidc {
            provider_name(&p.name, &mut names).map_err(invalid)?;
            if p.discovery_url.is_empty() && p.issuer.is_empty() {
                return Err(invalid(format!(
                    "provider `{}` needs `discovery_url` or `issuer`",
                    p.name
                )));
            }
            p.default_role()?;
            if p.client_id.is_empty() {
                return Err(invalid(format!("provider `{}` needs `client_id`", p.name)));
            }
            if p.signing_algorithms.is_empty() {
                return Err(invalid(format!(
                    "provider `{}`: `signing_algorithms` is empty",
                    p.name
                )));
            }
            if let Some(alg) = p
                .signing_algorithms
                .iter()
                .find(|a| a.eq_ignore_ascii_case("none") || a.starts_with("HS"))
            {
                return Err(invalid(format!(
                    "provider `{}`: `{alg}` is not allowed (unsigned and shared-secret tokens are refused)",
                    p.name
                )));
            }
            if !p.scopes.iter().any(|s| s == "openid") {
                return Err(invalid(format!(
                    "provider `{}`: `scopes` must include `openid`",
                    p.name
                )));
            }
        }
        for p in &self.sso.saml {
            provider_name(&p.name, &mut names).map_err(invalid)?;
            if p.idp_metadata_file.is_none() == p.idp_metadata_url.is_empty() {
                return Err(invalid(format!(
                    "SAML provider `{}` needs one of `idp_metadata_file` and `idp_metadata_url`",
                    p.name
                )));
            }
            duration(
                "sso.saml.clock_skew",
                &p.clock_skew,
                Duration::ZERO,
                Duration::from_secs(600),
            )?;
        }
        let domains: Vec<(&str, &Vec<String>)> = self
            .sso
            .oidc
            .iter()
            .map(|p| (p.name.as_str(), &p.email_domains))
            .chain(self.sso.saml.iter().map(|p| (p.name.as_str(), &p.email_domains)))
            .collect();
        if domains.len() > 1 {
            if let Some((name, _)) = domains.iter().find(|(_, d)| d.is_empty()) {
                return Err(invalid(format!(
                    "provider `{name}` has no `email_domains`: with several providers each reserves its domains"
                )));
            }
        }
        Ok(())
    }

    pub fn agent_heartbeat(&self) -> Result<Duration, ConfigError> {
        duration(
            "agent_heartbeat",
            &self.agent_heartbeat,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )
    }

    /// The per-client quotas; each must be at least 1.
    pub fn client_limits(&self) -> Result<crate::api::limits::LimitSettings, ConfigError> {
        let at_least_one = |key: &'static str, v: u32| {
            std::num::NonZeroU32::new(v).ok_or_else(|| ConfigError::Invalid {
                key,
                message: "must be at least 1".into(),
            })
        };
        Ok(crate::api::limits::LimitSettings {
            sign_ins_per_minute: at_least_one("sign_ins_per_minute", self.sign_ins_per_minute)?,
            failed_tokens_per_minute: at_least_one(
                "failed_tokens_per_minute",
                self.failed_tokens_per_minute,
            )?,
        })
    }

    pub fn audit_anchor_interval(&self) -> Result<Duration, ConfigError> {
        duration(
            "audit_anchor_interval",
            &self.audit_anchor_interval,
            Duration::from_millis(100),
            Duration::from_secs(24 * 3600),
        )
    }

    pub fn header_read_timeout(&self) -> Result<Duration, ConfigError> {
        duration(
            "header_read_timeout",
            &self.header_read_timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )
    }

    pub fn reconcile_interval(&self) -> Result<Duration, ConfigError> {
        duration(
            "reconcile_interval",
            &self.reconcile_interval,
            Duration::from_millis(100),
            Duration::from_secs(24 * 3600),
        )
    }

    pub fn agent_cert_ttl(&self) -> Result<Duration, ConfigError> {
        duration(
            "agent_cert_ttl",
            &self.agent_cert_ttl,
            Duration::from_secs(60),
            Duration::from_secs(90 * 86_400),
        )
    }

    /// The API's URL as people reach it, for an API bound to `bound`.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        if !self.public_url.is_empty() {
            return self.public_url.trim_end_matches('/').to_owned();
        }
        let host = self
            .server_names
            .first()
            .map_or_else(|| bound.ip().to_string(), Clone::clone);
        let scheme = if self.insecure_plain_http { "http" } else { "https" };
        format!("{scheme}://{host}:{}", bound.port())
    }

    /// The hub URL agents are told, for a hub bound to `bound`.
    pub fn hub_url_for(&self, bound: SocketAddr) -> String {
        if !self.hub_url.is_empty() {
            return self.hub_url.clone();
        }
        let host = self
            .server_names
            .first()
            .map_or_else(|| bound.ip().to_string(), Clone::clone);
        format!("wss://{host}:{}", bound.port())
    }
}

/// A humantime duration ("30d", "5s") between `min` and `max`.
fn duration(key: &'static str, text: &str, min: Duration, max: Duration) -> Result<Duration, ConfigError> {
    let d = humantime::parse_duration(text).map_err(|e| ConfigError::Invalid {
        key,
        message: format!("`{text}` is not a duration like \"30d\" or \"5s\": {e}"),
    })?;
    if d < min || d > max {
        return Err(ConfigError::Invalid {
            key,
            message: format!(
                "`{text}` must be between {} and {}",
                humantime::format_duration(min),
                humantime::format_duration(max)
            ),
        });
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn sign_in_providers_are_checked_at_load() {
        let bad = |toml: &str| {
            BrokerConfig::parse(toml, "t")
                .unwrap()
                .check()
                .unwrap_err()
                .to_string()
        };
        let oidc = "[[sso.oidc]]\nname = \"corp\"\nissuer = \"https://idp\"\nclient_id = \"c\"\nemail_domains = [\"a.example\"]\n";
        assert!(bad(&format!("{oidc}[[sso.saml]]\nname = \"corp\"\nidp_metadata_url = \"https://x\"\nemail_domains = [\"b.example\"]\n"))
            .contains("configured twice"));
        assert!(bad("[[sso.saml]]\nname = \"okta\"\n").contains("idp_metadata_file"));
        assert!(bad(&format!(
            "{oidc}[[sso.saml]]\nname = \"okta\"\nidp_metadata_url = \"https://x\"\n"
        ))
        .contains("email_domains"));
        assert!(bad("[[sso.oidc]]\nname = \"corp\"\nissuer = \"https://idp\"\nclient_id = \"c\"\nsigning_algorithms = [\"none\"]\n")
            .contains("`none` is not allowed"));
        assert!(bad("[[sso.oidc]]\nname = \"corp\"\nissuer = \"https://idp\"\nclient_id = \"c\"\ndefault_role = \"root\"\n")
            .contains("default_role `root`"));
    }

    use super::*;

    #[test]
    fn the_example_file_documents_every_key_and_parses() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/broker.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let parsed = BrokerConfig::parse(&text, path).unwrap();
        let defaults = toml::to_string(&BrokerConfig::default()).unwrap();
        for line in defaults.lines().filter(|l| l.contains(" = ")) {
            let key = line.split(" = ").next().unwrap();
            assert!(text.contains(&format!("{key} = ")), "`{key}` is not in {path}");
        }
        assert_eq!(parsed.token_ttl().unwrap(), Duration::from_secs(30 * 86400));
    }

    #[test]
    fn layers_apply_in_order_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("broker.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\ntoken_ttl = \"1h\"\n").unwrap();
        let o = Overrides {
            token_ttl: Some("2h".into()),
            ..Overrides::default()
        };
        let c = BrokerConfig::load(Some(&file), &o).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.token_ttl().unwrap(), Duration::from_secs(7200));
        assert_eq!(c.server_names, BrokerConfig::default().server_names);

        std::fs::write(&file, "listn = \"127.0.0.1:9000\"\n").unwrap();
        let err = BrokerConfig::load(Some(&file), &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("unknown field `listn`"), "{err}");

        let bad = Overrides {
            token_ttl: Some("forever".into()),
            ..Overrides::default()
        };
        let err = BrokerConfig::load(None, &bad).unwrap_err();
        assert!(err.to_string().starts_with("token_ttl: `forever`"), "{err}");
        assert!(err.to_string().contains("like \"30d\""), "{err}");
        let huge = Overrides {
            token_ttl: Some("100000years".into()),
            ..Overrides::default()
        };
        let err = BrokerConfig::load(None, &huge).unwrap_err();
        assert!(err.to_string().contains("must be between 1s and"), "{err}");
    }
}
