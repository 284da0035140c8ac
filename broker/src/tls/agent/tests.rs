use std::sync::Arc;

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::tls::install_crypto_provider;

fn identity() -> AgentIdentity {
    AgentIdentity {
        agent: AgentId::generate(),
        configuration: ConfigId::new("entra-main").unwrap(),
    }
}

/// What an agent does locally: a key pair and a CSR; here the CSR also asks
/// for names it must not get.
fn agent_key_and_csr() -> (KeyPair, String) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["broker.example".to_owned()]).unwrap();
    params.subject_alt_names.push(SanType::URI(
        "spiffe://jitgate/configuration/aws-prod/agent/00000000-0000-7000-8000-000000000000"
            .try_into()
            .unwrap(),
    ));
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    (key, csr)
}

fn client_config(ca: &BrokerCa, auth: Option<(String, &KeyPair)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert_der().clone()).unwrap();
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    Arc::new(match auth {
        Some((cert_pem, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
            let key = PrivateKeyDer::try_from(key.serialize_der()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    })
}

/// A real handshake over an in-memory stream; the server's view of it.
async fn handshake(
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
) -> Result<AgentIdentity, String> {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let connector = tokio_rustls::TlsConnector::from(client);
    let server_side = async move {
        let mut stream = acceptor.accept(a).await.map_err(|e| e.to_string())?;
        let certs = stream
            .get_ref()
            .1
            .peer_certificates()
            .ok_or("no client certificate")?;
        let id = AgentIdentity::from_cert(&certs[0]).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(id)
    };
    let client_side = async move {
        let name = ServerName::try_from("localhost").unwrap();
        if let Ok(mut s) = connector.connect(name, b).await {
            let _ = s.write_all(b"hello").await;
            let _ = s.flush().await;
            let mut buf = [0u8; 1];
            let _ = s.read(&mut buf).await;
        }
    };
    let (result, ()) = tokio::join!(server_side, client_side);
    result
}

#[tokio::test]
async fn a_valid_agent_certificate_is_accepted_and_names_the_agent() {
    install_crypto_provider();
    let now = SystemClock.now();
    let ca = BrokerCa::generate(now).unwrap();
    let (key, csr) = agent_key_and_csr();
    let id = identity();
    let cert = ca
        .issue_agent_cert(&csr, &id, now, chrono::Duration::hours(24))
        .unwrap();
    // The broker decides the names, not the CSR.
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let raw = der.as_ref();
    assert!(
        !raw.windows(14).any(|w| w == b"broker.example"),
        "CSR's DNS name was copied"
    );
    assert!(
        !raw.windows(8).any(|w| w == b"aws-prod"),
        "CSR's identity was copied"
    );
    assert_eq!(AgentIdentity::from_cert(&der).unwrap(), id);
    let server = ca.hub_server_config(&["localhost".into()], now).unwrap();
    let seen = handshake(server, client_config(&ca, Some((cert, &key))))
        .await
        .unwrap();
    assert_eq!(seen, id);
}

#[tokio::test]
async fn no_certificate_wrong_ca_and_expired_are_refused() {
    install_crypto_provider();
    let now = SystemClock.now();
    let ca = BrokerCa::generate(now).unwrap();
    let server = ca.hub_server_config(&["localhost".into()], now).unwrap();

    // Each refusal comes from the TLS handshake itself.
    let none = handshake(server.clone(), client_config(&ca, None)).await;
    assert_eq!(none, Err("peer sent no certificates".to_owned()));

    let other = BrokerCa::generate(now).unwrap();
    let (key, csr) = agent_key_and_csr();
    let foreign = other
        .issue_agent_cert(&csr, &identity(), now, chrono::Duration::hours(24))
        .unwrap();
    let wrong_ca = handshake(server.clone(), client_config(&ca, Some((foreign, &key)))).await;
    let err = wrong_ca.unwrap_err();
    assert!(err.starts_with("invalid peer certificate"), "{err}");

    let (key, csr) = agent_key_and_csr();
    let two_days_ago = now - chrono::Duration::days(2);
    let expired = ca
        .issue_agent_cert(&csr, &identity(), two_days_ago, chrono::Duration::hours(24))
        .unwrap();
    let result = handshake(server, client_config(&ca, Some((expired, &key)))).await;
    let err = result.unwrap_err();
    assert!(
        err.starts_with("invalid peer certificate: certificate expired"),
        "{err}"
    );
}

#[test]
fn a_csr_with_a_broken_signature_is_refused() {
    install_crypto_provider();
    let now = SystemClock.now();
    let ca = BrokerCa::generate(now).unwrap();
    let (_, csr) = agent_key_and_csr();
    // Flip one byte inside the base64 body: the CSR no longer verifies (or
    // no longer parses); either way no certificate is issued.
    let mut bytes = csr.into_bytes();
    let at = bytes.len() / 2;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(bytes).unwrap();
    assert!(ca
        .issue_agent_cert(&tampered, &identity(), now, chrono::Duration::hours(1))
        .is_err());
    assert!(ca
        .issue_agent_cert("not a csr", &identity(), now, chrono::Duration::hours(1))
        .is_err());
}

#[test]
fn identities_must_be_well_formed() {
    assert!(AgentIdentity::parse("spiffe://jitgate/configuration/aws/agent/not-a-uuid").is_none());
    assert!(AgentIdentity::parse(
        "spiffe://jitgate/configuration/Bad Name/agent/00000000-0000-7000-8000-000000000000"
    )
    .is_none());
    assert!(AgentIdentity::parse(
        "spiffe://other/configuration/aws/agent/00000000-0000-7000-8000-000000000000"
    )
    .is_none());
    let id = identity();
    assert_eq!(AgentIdentity::parse(&id.uri()), Some(id));
}
