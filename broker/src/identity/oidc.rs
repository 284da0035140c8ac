//! OpenID Connect relying party, on the `openidconnect` crate: discovery,
//! the authorization code flow with PKCE, state and nonce, ID token
//! verification (signature with the allowed algorithms only, issuer,
//! audience, expiry, nonce) against the provider's JWKS, fetched again when
//! a token names a key we do not have (key rotation), and refresh.
//!
//! HTTP goes through the broker's reqwest, never following redirects (the
//! crate's SSRF advice); plain `http://` is accepted only for loopback
//! providers (tests, local development).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use base64::Engine;
use chrono::{DateTime, Utc};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJwsSigningAlgorithm, CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use super::sso::ClaimRules;
use jitgate_shared::error_chain;

/// Suffix of a discovery document's URL.
const DISCOVERY_SUFFIX: &str = "/.well-known/openid-configuration";

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("provider `{provider}`: discovery at {url} failed: {error}")]
    Discovery {
        provider: String,
        url: String,
        error: String,
    },
    #[error("provider `{provider}`: {error}")]
    Config { provider: String, error: String },
    #[error("provider `{provider}` refused the {what}: {error}")]
    Refused {
        provider: String,
        what: &'static str,
        error: String,
    },
    #[error("provider `{provider}` could not be reached: {error}")]
    Transport { provider: String, error: String },
    #[error("provider `{provider}` answered without an ID token")]
    NoIdToken { provider: String },
    #[error("ID token from `{provider}` refused: {reason}")]
    Rejected { provider: String, reason: String },
}

/// What a provider is, as configured.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub callback_url: String,
    pub audiences: Vec<String>,
    pub signing_algorithms: Vec<String>,
    pub scopes: Vec<String>,
    pub rules: ClaimRules,
    /// Extra CA certificates (PEM) to trust.
    pub ca_pem: Option<Vec<u8>>,
}

/// A verified sign-in: the ID token's claims and what the provider gave to
/// refresh it with.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub refresh_token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

pub struct OidcProvider {
    settings: OidcSettings,
    http: reqwest::Client,
    metadata: ArcSwapOption<CoreProviderMetadata>,
    /// RFC 8628 `device_authorization_endpoint`, when discovery names one.
    device_endpoint: ArcSwapOption<String>,
    /// Serialises discovery and key fetches; when the last one happened.
    fetched: Mutex<Option<Instant>>,
}

/// A device sign-in started at the provider: what to show the person.
#[derive(Debug, Clone)]
pub struct DeviceStart {
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub interval: Duration,
    pub expires_in: Duration,
    details: openidconnect::core::CoreDeviceAuthorizationResponse,
}

impl std::fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcProvider")
            .field("name", &self.settings.name)
            .field("issuer", &self.settings.issuer)
            .finish_non_exhaustive()
    }
}

/// A URL on this machine (`127.0.0.1`, `[::1]`, `localhost`): where plain
/// http is accepted.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"))
}

/// The issuer a discovery URL belongs to.
pub fn issuer_of(discovery_url: &str) -> Option<&str> {
    discovery_url.strip_suffix(DISCOVERY_SUFFIX)
}

async fn send(http: reqwest::Client, request: HttpRequest) -> Result<HttpResponse, HttpError> {
    let (parts, body) = request.into_parts();
    let response = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(error_chain(&e)))?;
    let mut out = openidconnect::http::Response::builder().status(response.status());
    for (k, v) in response.headers() {
        out = out.header(k, v);
    }
    let bytes = response.bytes().await.map_err(|e| HttpError(e.to_string()))?;
    out.body(bytes.to_vec()).map_err(|e| HttpError(e.to_string()))
}

/// The client `from_provider_metadata` makes: authorization endpoint set,
/// token and userinfo endpoints as discovery says.
type Rp = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

type HttpFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

impl OidcProvider {
    /// A provider; its discovery document is fetched on first use (and
    /// again when that failed), so the broker starts while a provider is
    /// down.
    pub fn new(settings: OidcSettings) -> Result<Arc<Self>, OidcError> {
        let config = |error: String| OidcError::Config {
            provider: settings.name.clone(),
            error,
        };
        let issuer = reqwest::Url::parse(&settings.issuer)
            .map_err(|e| config(format!("issuer `{}`: {e}", settings.issuer)))?;
        if issuer.scheme() != "https" && !is_loopback(&issuer) {
            return Err(config(format!(
                "issuer `{}` must be https (plain http only on loopback)",
                settings.issuer
            )));
        }
        RedirectUrl::new(settings.callback_url.clone()).map_err(|e| config(format!("callback URL: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(15));
        if let Some(pem) = &settings.ca_pem {
            for cert in
                reqwest::Certificate::from_pem_bundle(pem).map_err(|e| config(format!("CA file: {e}")))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| config(e.to_string()))?;
        Ok(Arc::new(Self {
            settings,
            http,
            metadata: ArcSwapOption::empty(),
            device_endpoint: ArcSwapOption::empty(),
            fetched: Mutex::new(None),
        }))
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    pub fn callback_url(&self) -> &str {
        &self.settings.callback_url
    }

    pub fn rules(&self) -> &ClaimRules {
        &self.settings.rules
    }

    fn http(&self) -> impl Fn(HttpRequest) -> HttpFuture + '_ {
        |request| Box::pin(send(self.http.clone(), request))
    }

    /// Fetches the discovery document and keys: when we have none yet, or
    /// (`stale_since`) when ours were fetched before that instant. Fetches
    /// are serialised, so many sign-ins meeting a new key fetch it once.
    async fn discover(&self, stale_since: Option<Instant>) -> Result<Arc<CoreProviderMetadata>, OidcError> {
        let mut fetched = self.fetched.lock().await;
        if let Some(current) = self.metadata.load_full() {
            let fresh_enough = match stale_since {
                None => true,
                Some(since) => fetched.is_some_and(|at| at >= since),
            };
            if fresh_enough {
                return Ok(current);
            }
        }
        let issuer = IssuerUrl::new(self.settings.issuer.clone()).map_err(|e| OidcError::Config {
            provider: self.settings.name.clone(),
            error: format!("issuer: {e}"),
        })?;
        let metadata = CoreProviderMetadata::discover_async(issuer, &self.http())
            .await
            .map_err(|e| OidcError::Discovery {
                provider: self.settings.name.clone(),
                url: format!("{}{DISCOVERY_SUFFIX}", self.settings.issuer),
                error: error_chain(&e),
            })?;
        tracing::info!(provider = %self.settings.name, keys = metadata.jwks().keys().len(), "provider metadata and keys fetched");
        // The device endpoint is not in the core metadata type.
        let raw: Option<serde_json::Value> = match self
            .http
            .get(format!("{}{DISCOVERY_SUFFIX}", self.settings.issuer))
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        let device = raw
            .as_ref()
            .and_then(|v| v.get("device_authorization_endpoint"))
            .and_then(Value::as_str)
            .map(|s| Arc::new(s.to_owned()));
        self.device_endpoint.store(device);
        let metadata = Arc::new(metadata);
        self.metadata.store(Some(metadata.clone()));
        *fetched = Some(Instant::now());
        Ok(metadata)
    }

    fn client(&self, metadata: &CoreProviderMetadata) -> Result<Rp, OidcError> {
        let redirect =
            RedirectUrl::new(self.settings.callback_url.clone()).map_err(|e| OidcError::Config {
                provider: self.settings.name.clone(),
                error: format!("callback URL: {e}"),
            })?;
        Ok(CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        )
        .set_redirect_uri(redirect))
    }

    /// Where to send the person: the provider's authorization endpoint with
    /// our state, nonce and PKCE challenge (S256 of `pkce_verifier`).
    pub async fn authorization_url(
        &self,
        state: &str,
        nonce: &str,
        pkce_verifier: &str,
        login_hint: Option<&str>,
    ) -> Result<String, OidcError> {
        let metadata = self.discover(None).await?;
        let client = self.client(&metadata)?;
        let (state, nonce) = (state.to_owned(), nonce.to_owned());
        let challenge =
            PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(pkce_verifier.to_owned()));
        let mut request = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                move || CsrfToken::new(state),
                move || Nonce::new(nonce),
            )
            .set_pkce_challenge(challenge);
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint);
        }
        if self.settings.scopes.iter().any(|s| s == "offline_access") {
            // Refresh tokens are only issued with consent (OIDC Core §11).
            request = request.add_extra_param("prompt", "consent");
        }
        Ok(request.url().0.to_string())
    }

    /// Exchanges an authorization code and verifies the ID token.
    pub async fn exchange_code(
        &self,
        code: &str,
        pkce_verifier: &str,
        nonce: &str,
        now: DateTime<Utc>,
    ) -> Result<Verified, OidcError> {
        let metadata = self.discover(None).await?;
        let client = self.client(&metadata)?;
        let response = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| self.token_error("authorization code", e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.to_owned()))
            .request_async(&self.http())
            .await
            .map_err(|e| self.token_failure("authorization code", e))?;
        let id_token = response.id_token().cloned().ok_or_else(|| OidcError::NoIdToken {
            provider: self.settings.name.clone(),
        })?;
        let nonce = Nonce::new(nonce.to_owned());
        let claims = self.verify(metadata, &id_token, Some(&nonce), now).await?;
        Ok(Verified {
            claims,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    /// Refreshes at the provider; the claims of a new ID token when it sent
    /// one.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        now: DateTime<Utc>,
    ) -> Result<(Option<Map<String, Value>>, Option<String>), OidcError> {
        let metadata = self.discover(None).await?;
        let client = self.client(&metadata)?;
        let response = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.to_owned()))
            .map_err(|e| self.token_error("refresh token", e.to_string()))?
            .request_async(&self.http())
            .await
            .map_err(|e| self.token_failure("refresh token", e))?;
        let claims = match response.id_token() {
            Some(id_token) => Some(self.verify(metadata, id_token, None, now).await?),
            None => None,
        };
        Ok((claims, response.refresh_token().map(|t| t.secret().clone())))
    }

    /// Starts the device flow (RFC 8628) for a machine without a browser.
    pub async fn start_device(&self, login_hint: Option<&str>) -> Result<DeviceStart, OidcError> {
        let metadata = self.discover(None).await?;
        let endpoint = self
            .device_endpoint
            .load_full()
            .ok_or_else(|| OidcError::Config {
                provider: self.settings.name.clone(),
                error: "the provider offers no device flow (no device_authorization_endpoint)".into(),
            })?;
        let url = openidconnect::DeviceAuthorizationUrl::new((*endpoint).clone()).map_err(|e| {
            OidcError::Config {
                provider: self.settings.name.clone(),
                error: format!("device endpoint: {e}"),
            }
        })?;
        let client = self.client(&metadata)?.set_device_authorization_url(url);
        let mut request = client.exchange_device_code();
        for scope in self.settings.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(hint) = login_hint {
            request = request.add_extra_param("login_hint", hint.to_owned());
        }
        let details: openidconnect::core::CoreDeviceAuthorizationResponse = request
            .request_async(&self.http())
            .await
            .map_err(|e| self.token_failure("device authorization", e))?;
        Ok(DeviceStart {
            user_code: details.user_code().secret().clone(),
            verification_uri: details.verification_uri().to_string(),
            verification_uri_complete: details.verification_uri_complete().map(|u| u.secret().clone()),
            interval: details.interval(),
            expires_in: details.expires_in(),
            details,
        })
    }

    /// Polls the provider until the person approved the device (or it
    /// expired, or was denied), then verifies the ID token.
    pub async fn finish_device(
        &self,
        start: &DeviceStart,
        now: impl Fn() -> DateTime<Utc>,
    ) -> Result<Verified, OidcError> {
        let metadata = self.discover(None).await?;
        let client = self.client(&metadata)?;
        let response = client
            .exchange_device_access_token(&start.details)
            .map_err(|e| self.token_error("device code", e.to_string()))?
            .request_async(&self.http(), tokio::time::sleep, Some(start.expires_in))
            .await
            .map_err(|e| self.token_failure("device code", e))?;
        let id_token = response.id_token().cloned().ok_or_else(|| OidcError::NoIdToken {
            provider: self.settings.name.clone(),
        })?;
        let claims = self.verify(metadata, &id_token, None, now()).await?;
        Ok(Verified {
            claims,
            refresh_token: response.refresh_token().map(|t| t.secret().clone()),
        })
    }

    fn token_error(&self, what: &'static str, e: String) -> OidcError {
        OidcError::Refused {
            provider: self.settings.name.clone(),
            what,
            error: e,
        }
    }

    /// A request to the token or device endpoint that failed: an OAuth
    /// error in the answer is the provider refusing `what`; no answer, or
    /// one that is no OAuth answer at all (a proxy's error page), is the
    /// provider out of reach, which refuses nothing (a session stays, the
    /// caller may try again).
    fn token_failure<RE, T>(
        &self,
        what: &'static str,
        e: RequestTokenError<RE, openidconnect::StandardErrorResponse<T>>,
    ) -> OidcError
    where
        RE: std::error::Error + 'static,
        T: openidconnect::ErrorResponseType + std::fmt::Display + 'static,
    {
        match e {
            RequestTokenError::ServerResponse(r) => self.token_error(
                what,
                match r.error_description() {
                    Some(d) => format!("{} ({d})", r.error()),
                    None => r.error().to_string(),
                },
            ),
            other => OidcError::Transport {
                provider: self.settings.name.clone(),
                error: format!("{what}: {}", error_chain(&other)),
            },
        }
    }

    /// Verifies an ID token; a key we do not know makes us fetch the
    /// provider's keys again once.
    async fn verify(
        &self,
        metadata: Arc<CoreProviderMetadata>,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        now: DateTime<Utc>,
    ) -> Result<Map<String, Value>, OidcError> {
        let started = Instant::now();
        match self.verify_with(&metadata, id_token, nonce, now) {
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                tracing::info!(provider = %self.settings.name, "ID token signed by a key we do not have; fetching the provider's keys");
                let fresh = self.discover(Some(started)).await?;
                self.verify_with(&fresh, id_token, nonce, now)
            }
            other => other,
        }
        .map_err(|e| OidcError::Rejected {
            provider: self.settings.name.clone(),
            reason: rejection(&e),
        })?;
        // Verified: read every claim (key, groups and role claims are ours to
        // choose) from the payload the signature covers.
        let jwt = id_token.to_string();
        let payload = jwt.split('.').nth(1).unwrap_or_default();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload.trim_end_matches('='))
            .map_err(|e| OidcError::Rejected {
                provider: self.settings.name.clone(),
                reason: format!("payload: {e}"),
            })?;
        serde_json::from_slice(&bytes).map_err(|e| OidcError::Rejected {
            provider: self.settings.name.clone(),
            reason: format!("payload: {e}"),
        })
    }

    /// Checks an ID token as text (a compact JWS, as a token response
    /// carries it) against `metadata` and its keys, offline: what a
    /// sign-in does once it has the provider's keys. No key refresh.
    pub fn check_id_token(
        &self,
        metadata: &CoreProviderMetadata,
        id_token: &str,
        nonce: &Nonce,
        now: DateTime<Utc>,
    ) -> Result<(), OidcError> {
        let reject = |reason: String| OidcError::Rejected {
            provider: self.settings.name.clone(),
            reason,
        };
        let token: CoreIdToken = id_token
            .parse()
            .map_err(|e| reject(format!("not a compact JWS: {e}")))?;
        self.verify_with(metadata, &token, Some(nonce), now)
            .map_err(|e| reject(rejection(&e)))
    }

    fn verify_with(
        &self,
        metadata: &CoreProviderMetadata,
        id_token: &CoreIdToken,
        nonce: Option<&Nonce>,
        now: DateTime<Utc>,
    ) -> Result<(), ClaimsVerificationError> {
        let algorithms: Vec<CoreJwsSigningAlgorithm> = self
            .settings
            .signing_algorithms
            .iter()
            .filter_map(|a| serde_json::from_value(Value::String(a.clone())).ok())
            .collect();
        let audiences = self.settings.audiences.clone();
        let client = CoreClient::from_provider_metadata(
            metadata.clone(),
            ClientId::new(self.settings.client_id.clone()),
            Some(ClientSecret::new(self.settings.client_secret.clone())),
        );
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(algorithms)
            .set_time_fn(move || now)
            .set_other_audience_verifier_fn(move |aud| audiences.iter().any(|a| a == aud.as_str()));
        match nonce {
            Some(n) => id_token.claims(&verifier, n).map(|_| ()),
            None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())).map(|_| ()),
        }
    }
}

/// What to tell people (and the log) about a refused ID token.
fn rejection(e: &ClaimsVerificationError) -> String {
    use ClaimsVerificationError as C;
    use SignatureVerificationError as S;
    match e {
        C::Expired(m) => format!("expired ({m})"),
        C::InvalidAudience(m) => format!("wrong audience ({m})"),
        C::InvalidIssuer(m) => format!("wrong issuer ({m})"),
        C::InvalidNonce(m) => format!("wrong or replayed nonce ({m})"),
        C::SignatureVerification(S::NoSignature) => "unsigned token (alg none)".into(),
        C::SignatureVerification(S::NoMatchingKey) => "signed by a key the provider does not publish".into(),
        C::SignatureVerification(S::DisallowedAlg(a)) => format!("signature algorithm {a} is not allowed"),
        C::SignatureVerification(other) => format!("bad signature ({other})"),
        other => other.to_string(),
    }
}
