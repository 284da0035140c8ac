//! `[sso]`: sign-in sessions and the identity providers people sign in
//! with (`[[sso.oidc]]`, `[[sso.saml]]`).

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{within, ConfigError};

/// `[sso]`: sessions, and the OIDC providers people sign in with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SsoConfig {
    /// How long a sign-in lasts at most; refreshing stops after it.
    #[serde(with = "humantime_serde")]
    pub session_ttl: Duration,
    /// Lifetime of the tokens (CLI) and web sessions a sign-in or a refresh
    /// issues.
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
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
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
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

fn default_clock_skew() -> Duration {
    Duration::from_secs(120)
}

impl Default for SsoConfig {
    fn default() -> Self {
        Self {
            session_ttl: Duration::from_secs(12 * 3600),
            access_ttl: Duration::from_secs(15 * 60),
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

impl SsoConfig {
    /// Provider names unique and well formed, each provider complete,
    /// lifetimes and clock skews within bounds, email domains reserved when
    /// there are several providers.
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        within(
            "sso.session_ttl",
            self.session_ttl,
            Duration::from_secs(60),
            Duration::from_secs(30 * 86_400),
        )?;
        within(
            "sso.access_ttl",
            self.access_ttl,
            Duration::from_secs(10),
            Duration::from_secs(86_400),
        )?;
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
            if name == crate::domain::session::LINK_PROVIDER {
                return Err(format!(
                    "`{name}` is reserved for one-time sign-in links; name the provider otherwise"
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
        for p in &self.oidc {
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
        for p in &self.saml {
            provider_name(&p.name, &mut names).map_err(invalid)?;
            if p.idp_metadata_file.is_none() == p.idp_metadata_url.is_empty() {
                return Err(invalid(format!(
                    "SAML provider `{}` needs one of `idp_metadata_file` and `idp_metadata_url`",
                    p.name
                )));
            }
            within(
                "sso.saml.clock_skew",
                p.clock_skew,
                Duration::ZERO,
                Duration::from_secs(600),
            )?;
        }
        let domains: Vec<(&str, &Vec<String>)> = self
            .oidc
            .iter()
            .map(|p| (p.name.as_str(), &p.email_domains))
            .chain(self.saml.iter().map(|p| (p.name.as_str(), &p.email_domains)))
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
}
