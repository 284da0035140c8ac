//! Agent certificates: short-lived client certificates issued by the broker
//! CA from a CSR made on the agent (its key never leaves it), naming the
//! agent and its configuration in a URI subject alternative name. The hub
//! takes an agent's identity from its verified certificate, never from a
//! message.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::{AgentId, ConfigId};
use rcgen::{
    CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose,
    KeyUsagePurpose, SanType,
};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::FromDer;

use super::{offset, BrokerCa, TlsError};

/// URI prefix of the identity SAN; SPIFFE-shaped so mesh tooling reads it.
const IDENTITY_PREFIX: &str = "spiffe://jitgate/configuration/";

/// Who an agent is, as its certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentIdentity {
    pub agent: AgentId,
    pub configuration: ConfigId,
}

impl AgentIdentity {
    pub fn uri(&self) -> String {
        format!("{IDENTITY_PREFIX}{}/agent/{}", self.configuration, self.agent)
    }

    fn parse(uri: &str) -> Option<Self> {
        let rest = uri.strip_prefix(IDENTITY_PREFIX)?;
        let (configuration, agent) = rest.split_once("/agent/")?;
        Some(Self {
            agent: agent.parse().ok()?,
            configuration: configuration.parse().ok()?,
        })
    }

    /// The identity in a certificate the TLS layer already verified.
    pub fn from_cert(cert: &CertificateDer<'_>) -> Result<Self, TlsError> {
        let bad = |error: &str| TlsError::Cert {
            what: "agent certificate".into(),
            error: error.to_owned(),
        };
        let (_, parsed) = x509_parser::certificate::X509Certificate::from_der(cert.as_ref())
            .map_err(|e| bad(&e.to_string()))?;
        let san = parsed
            .subject_alternative_name()
            .map_err(|e| bad(&e.to_string()))?
            .ok_or_else(|| bad("no subject alternative name"))?;
        let mut identities = san.value.general_names.iter().filter_map(|n| match n {
            GeneralName::URI(uri) => Self::parse(uri),
            _ => None,
        });
        match (identities.next(), identities.next()) {
            (Some(id), None) => Ok(id),
            (None, _) => Err(bad("no jitgate agent identity")),
            (Some(_), Some(_)) => Err(bad("more than one jitgate agent identity")),
        }
    }
}

impl BrokerCa {
    /// Signs an agent's CSR. Only the CSR's public key is used (its
    /// signature proves possession of the private key); subject, names and
    /// validity come from the broker.
    pub fn issue_agent_cert(
        &self,
        csr_pem: &str,
        identity: &AgentIdentity,
        now: DateTime<Utc>,
        ttl: chrono::Duration,
    ) -> Result<String, TlsError> {
        let mut csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(|e| TlsError::Cert {
            what: "agent CSR".into(),
            error: e.to_string(),
        })?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("jitgate agent {}", identity.agent));
        let uri = identity
            .uri()
            .try_into()
            .map_err(|e: rcgen::Error| TlsError::Cert {
                what: "agent identity".into(),
                error: e.to_string(),
            })?;
        params.subject_alt_names = vec![SanType::URI(uri)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.not_before = offset(now - chrono::Duration::minutes(5));
        params.not_after = offset(now + ttl);
        csr.params = params;
        let cert = csr.signed_by(&self.issuer()?).map_err(|e| TlsError::Cert {
            what: "signing the agent certificate".into(),
            error: e.to_string(),
        })?;
        Ok(cert.pem())
    }

    /// TLS for the agent hub: the broker's server certificate, and client
    /// certificates required and verified against this CA.
    pub fn hub_server_config(
        &self,
        names: &[String],
        now: DateTime<Utc>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der().clone()).map_err(|e| TlsError::Cert {
            what: "broker CA as client root".into(),
            error: e.to_string(),
        })?;
        let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
            .build()
            .map_err(|e| TlsError::Cert {
                what: "client certificate verifier".into(),
                error: e.to_string(),
            })?;
        let (chain, key) = self.issue_server_cert(names, now)?;
        let config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Cert {
                what: "hub TLS configuration".into(),
                error: e.to_string(),
            })?;
        Ok(Arc::new(config))
    }
}

#[cfg(test)]
mod tests;
