//! SAML providers: IdP metadata read lazily (the IdP may be down when the
//! broker starts), the SP metadata, and the assertion consumer (SP- and
//! IdP-initiated), with replayed assertions refused.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use jitgate_shared::v1::api::Role;

use super::providers::SsoConfigError;
use super::{refused, Finished};
use crate::config::SamlProviderConfig;
use crate::domain::session::{LoginOutcome, UsedAssertion};
use crate::identity::oidc::is_loopback;
use crate::identity::saml::{AttributeNames, SamlProvider};
use crate::identity::sso::ClaimRules;
use crate::service::auth::hash_token;
use crate::service::{Broker, ServiceError};
use crate::store::Change;

/// A SAML provider whose IdP metadata is read on first use (from a URL,
/// the IdP may be down when the broker starts).
#[derive(Debug)]
pub(super) struct LazySaml {
    pub(super) config: SamlProviderConfig,
    pub(super) public_url: String,
    pub(super) provider: tokio::sync::OnceCell<Arc<SamlProvider>>,
}

impl LazySaml {
    pub(super) async fn get(&self) -> Result<&Arc<SamlProvider>, SsoConfigError> {
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
        Duration::from_std(p.clock_skew).unwrap_or(Duration::minutes(2)),
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

impl Broker {
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
        let finished = self.finish_saml_response(name, saml_response, relay_state).await;
        self.metrics.sign_in("saml", finished.is_ok());
        finished
    }

    async fn finish_saml_response(
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SsoConfig;
    use crate::service::sign_in::Sso;

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
                clock_skew: std::time::Duration::from_secs(120),
            }],
            ..SsoConfig::default()
        }
    }

    async fn load(config: &SsoConfig) -> Result<Sso, SsoConfigError> {
        Sso::from_config(config, "https://broker:8443").await
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
