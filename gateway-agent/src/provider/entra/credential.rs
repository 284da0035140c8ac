//! The agent's Entra credential, built with `azure_identity`: the crate
//! requests, caches and refreshes tokens. Four ways to sign in: a client
//! secret, a client certificate, workload identity federation (a projected
//! Kubernetes service-account token) and a managed identity. Authority
//! host configurable for sovereign clouds (and test peers); extra trusted
//! CAs only when given.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use azure_core::cloud::{CloudConfiguration, CustomConfiguration};
use azure_core::credentials::{Secret, TokenCredential};
use azure_core::http::{ClientOptions, RetryOptions, Transport};
use azure_identity::{
    ClientAssertionCredential, ClientAssertionCredentialOptions, ClientSecretCredential,
    ClientSecretCredentialOptions, ManagedIdentityCredential, ManagedIdentityCredentialOptions,
    UserAssignedId, WorkloadIdentityCredential, WorkloadIdentityCredentialOptions,
};

use super::certificate::CertificateAssertion;

use crate::provider::ProviderError;

/// The public cloud's authority host.
pub const PUBLIC_AUTHORITY: &str = "https://login.microsoftonline.com";

/// The scope of Microsoft Graph application permissions.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// How the agent signs in to Entra.
#[derive(Clone)]
pub enum EntraAuth {
    /// An app registration's client secret.
    ClientSecret { client_id: String, secret: String },
    /// An app registration's certificate: a PEM file with the certificate
    /// and its RSA private key. The agent signs a client assertion with it.
    ClientCertificate { client_id: String, pem_file: PathBuf },
    /// Workload identity federation: the app trusts tokens of an external
    /// issuer (a Kubernetes service account's projected token, re-read
    /// from `token_file` as it rotates).
    WorkloadIdentity { client_id: String, token_file: PathBuf },
    /// The managed identity of the Azure resource the agent runs on
    /// (App Service, Functions, virtual machines): system-assigned, or the
    /// user-assigned one with this client id.
    ManagedIdentity { client_id: Option<String> },
}

impl std::fmt::Debug for EntraAuth {
    // Secrets and keys never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntraAuth::ClientSecret { client_id, .. } => write!(f, "client secret of app {client_id}"),
            EntraAuth::ClientCertificate { client_id, pem_file } => {
                write!(f, "certificate {} of app {client_id}", pem_file.display())
            }
            EntraAuth::WorkloadIdentity {
                client_id,
                token_file,
            } => {
                write!(
                    f,
                    "workload identity of app {client_id} ({})",
                    token_file.display()
                )
            }
            EntraAuth::ManagedIdentity { client_id: None } => write!(f, "system-assigned managed identity"),
            EntraAuth::ManagedIdentity { client_id: Some(id) } => {
                write!(f, "user-assigned managed identity {id}")
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct EntraCredentialSettings {
    pub tenant_id: String,
    pub auth: EntraAuth,
    /// `https://login.microsoftonline.com` unless set (sovereign clouds:
    /// `https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`).
    pub authority_host: Option<String>,
    /// PEM certificates to trust besides the system's (a TLS-inspecting
    /// proxy, or a test peer).
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Let the crate retry token requests (on in production).
    pub retries: bool,
}

/// An HTTP client trusting the system's CAs and the extra ones.
pub fn http_client(
    settings: &EntraCredentialSettings,
    timeout: Duration,
) -> Result<reqwest::Client, ProviderError> {
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(pem) = &settings.extra_ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ProviderError::rejected(format!("Entra extra CA: {e}")))?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| ProviderError::rejected(format!("Entra HTTP client: {e}")))
}

/// Builds the credential; nothing is requested yet.
pub fn credential(settings: &EntraCredentialSettings) -> Result<Arc<dyn TokenCredential>, ProviderError> {
    let mut options = ClientOptions::default();
    if let Some(host) = &settings.authority_host {
        let mut custom = CustomConfiguration::default();
        custom.authority_host = host.clone();
        options.cloud = Some(Arc::new(CloudConfiguration::from(custom)));
    }
    if settings.extra_ca_pem.is_some() {
        let client = http_client(settings, Duration::from_secs(30))?;
        options.transport = Some(Transport::new(Arc::new(client)));
    }
    if !settings.retries {
        options.retry = RetryOptions::none();
    }
    let tenant = &settings.tenant_id;
    let made: azure_core::Result<Arc<dyn TokenCredential>> = match &settings.auth {
        EntraAuth::ClientSecret { client_id, secret } => ClientSecretCredential::new(
            tenant,
            client_id.clone(),
            Secret::new(secret.clone()),
            Some(ClientSecretCredentialOptions {
                client_options: options,
            }),
        )
        .map(|c| c as Arc<dyn TokenCredential>),
        EntraAuth::ClientCertificate { client_id, pem_file } => {
            let pem = std::fs::read(pem_file).map_err(|e| {
                ProviderError::rejected(format!("Entra client certificate {}: {e}", pem_file.display()))
            })?;
            let authority = settings
                .authority_host
                .as_deref()
                .unwrap_or(PUBLIC_AUTHORITY)
                .trim_end_matches('/');
            let audience = format!("{authority}/{tenant}/oauth2/v2.0/token");
            let assertion = CertificateAssertion::from_pem(&pem, client_id, &audience).map_err(|e| {
                ProviderError::rejected(format!("Entra client certificate {}: {e}", pem_file.display()))
            })?;
            ClientAssertionCredential::new(
                tenant.clone(),
                client_id.clone(),
                assertion,
                Some(ClientAssertionCredentialOptions {
                    client_options: options,
                }),
            )
            .map(|c| c as Arc<dyn TokenCredential>)
        }
        EntraAuth::WorkloadIdentity {
            client_id,
            token_file,
        } => WorkloadIdentityCredential::new(Some(WorkloadIdentityCredentialOptions {
            credential_options: ClientAssertionCredentialOptions {
                client_options: options,
            },
            client_id: Some(client_id.clone()),
            tenant_id: Some(tenant.clone()),
            token_file_path: Some(token_file.clone()),
        }))
        .map(|c| c as Arc<dyn TokenCredential>),
        EntraAuth::ManagedIdentity { client_id } => {
            ManagedIdentityCredential::new(Some(ManagedIdentityCredentialOptions {
                user_assigned_id: client_id.clone().map(UserAssignedId::ClientId),
                client_options: options,
            }))
            .map(|c| c as Arc<dyn TokenCredential>)
        }
    };
    made.map_err(|e| failed(settings, e))
}

/// The first line of a credential error: it carries Entra's AADSTS code;
/// the rest is boilerplate.
pub(crate) fn first_line(e: &azure_core::Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_owned()
}

/// Gets one token for `scope` (Graph's, [`GRAPH_SCOPE`] in the public
/// cloud), so a bad credential stops the agent at start-up with a message
/// naming the credential and the tenant.
pub async fn check(
    credential: &dyn TokenCredential,
    scope: &str,
    settings: &EntraCredentialSettings,
) -> Result<(), ProviderError> {
    credential
        .get_token(&[scope], None)
        .await
        .map(drop)
        .map_err(|e| failed(settings, e))
}

fn failed(settings: &EntraCredentialSettings, e: azure_core::Error) -> ProviderError {
    let first = first_line(&e);
    ProviderError::unauthorised(format!(
        "Entra credential ({:?}) for tenant {} failed: {first}",
        settings.auth, settings.tenant_id
    ))
}
