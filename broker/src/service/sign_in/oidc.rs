//! OpenID Connect providers: their settings from the configuration, and
//! the provider's redirect back to the broker.

use super::providers::SsoConfigError;
use super::{refused, Finished};
use crate::config::OidcProviderConfig;
use crate::domain::session::{LoginClient, LoginOutcome};
use crate::identity::oidc::{issuer_of, OidcError, OidcSettings};
use crate::identity::sso::ClaimRules;
use crate::service::auth::hash_token;
use crate::service::{Broker, ServiceError};

pub(super) fn settings_of(p: &OidcProviderConfig, public_url: &str) -> Result<OidcSettings, SsoConfigError> {
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

impl Broker {
    /// The provider's redirect: `state` and `code`, or an `error`.
    #[tracing::instrument(skip_all)]
    pub async fn finish_login(
        &self,
        state: &str,
        code: Option<&str>,
        error: Option<(&str, Option<&str>)>,
    ) -> Result<Finished, ServiceError> {
        let finished = self.finish_oidc(state, code, error).await;
        self.metrics.sign_in("oidc", finished.is_ok());
        finished
    }

    async fn finish_oidc(
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
            .filter(|p| {
                p.outcome == LoginOutcome::Waiting
                    && now < p.expires_at
                    && !matches!(p.client, LoginClient::Link { .. })
            })
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
}
