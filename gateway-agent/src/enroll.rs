//! `jitgate-agent enroll`: make a key pair here, send a CSR with a one-time
//! join token, keep the certificate the broker signs.
//!
//! Before anything is sent, the broker's TLS certificate must chain to a CA
//! whose SHA-256 fingerprint is the one given with the join token (like
//! kubeadm's discovery hash), so a token never goes to an impostor.

use std::sync::Arc;

use jitgate_shared::error_chain;
use jitgate_shared::v1::api::{EnrollBody, Enrolled};
use jitgate_shared::v1::ErrorBody;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

use crate::state::{new_key_and_csr, Identity, StateDir, StateError};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("--ca-fingerprint must be 64 hex characters (SHA-256), got `{0}`")]
    BadFingerprint(String),
    #[error("--broker `{0}` is not an https:// URL: the join token and the agent's certificate must not travel in the clear")]
    NotHttps(String),
    #[error("{0} is already enrolled; use another --state-dir or remove it first")]
    AlreadyEnrolled(String),
    #[error("cannot reach the broker at {url}: {error}")]
    Unreachable { url: String, error: String },
    #[error("the broker refused enrollment ({status}): {message}")]
    Refused { status: u16, message: String },
    #[error("making a key and CSR: {0}")]
    Key(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// Enrolls against `broker_url` with `token`, trusting only a CA with
/// `ca_fingerprint`. Writes identity, credentials and CA into `state`.
pub async fn enroll(
    state: &StateDir,
    broker_url: &str,
    token: &str,
    ca_fingerprint: &str,
    hub_url_override: Option<String>,
) -> Result<Identity, EnrollError> {
    if !broker_url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
    {
        return Err(EnrollError::NotHttps(broker_url.to_owned()));
    }
    if state.is_enrolled() {
        return Err(EnrollError::AlreadyEnrolled(state.dir.display().to_string()));
    }
    let fingerprint = parse_fingerprint(ca_fingerprint)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = Arc::new(PinnedCa {
        fingerprint,
        provider: provider.clone(),
    });
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EnrollError::Key(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| EnrollError::Unreachable {
            url: broker_url.to_owned(),
            error: e.to_string(),
        })?;
    let (key_pem, csr_pem) = new_key_and_csr().map_err(|e| EnrollError::Key(e.to_string()))?;
    let url = format!("{}/api/v1/agents/enroll", broker_url.trim_end_matches('/'));
    let response = client
        .post(&url)
        .json(&EnrollBody {
            token: token.to_owned(),
            csr_pem,
        })
        .send()
        .await
        .map_err(|e| EnrollError::Unreachable {
            url: url.clone(),
            error: error_chain(&e),
        })?;
    let status = response.status();
    if !status.is_success() {
        let message = response
            .json::<ErrorBody>()
            .await
            .map_or_else(|_| status.to_string(), |b| b.message);
        return Err(EnrollError::Refused {
            status: status.as_u16(),
            message,
        });
    }
    let enrolled: Enrolled = response.json().await.map_err(|e| EnrollError::Unreachable {
        url: url.clone(),
        error: e.to_string(),
    })?;
    let identity = Identity {
        agent: enrolled.agent.id,
        configuration: enrolled.agent.configuration.clone(),
        hub_url: hub_url_override.unwrap_or(enrolled.hub_url),
        command_public_key: enrolled.command_public_key,
        command_key_id: enrolled.command_key_id,
    };
    identity.verifier(&state.identity_path())?;
    state.create()?;
    state.save_ca(&enrolled.ca_pem)?;
    state.save_credentials(&enrolled.certificate_pem, &key_pem)?;
    // Written last: its presence means "enrolled".
    state.save_identity(&identity)?;
    Ok(identity)
}

fn parse_fingerprint(text: &str) -> Result<[u8; 32], EnrollError> {
    let clean: String = text.chars().filter(|c| *c != ':').collect();
    hex::decode(&clean)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| EnrollError::BadFingerprint(text.to_owned()))
}

/// Trusts a server whose chain includes a CA with the pinned fingerprint and
/// whose leaf verifies against that CA (names, dates, signatures).
#[derive(Debug)]
struct PinnedCa {
    fingerprint: [u8; 32],
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.fingerprint)
            .ok_or_else(|| {
                rustls::Error::General(
                    "the broker's CA does not have the fingerprint given with the join token".into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_http_broker_is_refused_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        for url in ["http://127.0.0.1:8443", "ws://broker", "127.0.0.1:8443", ""] {
            let err = enroll(&state, url, "jgj_token", &"ab".repeat(32), None)
                .await
                .unwrap_err();
            assert!(matches!(err, EnrollError::NotHttps(_)), "{url}: {err}");
        }
        assert!(!dir.path().join("state").exists(), "nothing was written");
    }

    #[test]
    fn fingerprints_are_checked_for_shape() {
        let hex64 = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&hex64).unwrap(), [0xab; 32]);
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons).unwrap(), [0xab; 32]);
        assert!(matches!(
            parse_fingerprint("abc"),
            Err(EnrollError::BadFingerprint(_))
        ));
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
