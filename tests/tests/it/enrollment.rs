//! Enrolling a gateway agent with a one-time join token and a CSR.

use jitgate_broker::tls::agent::AgentIdentity;
use jitgate_shared::v1::api::{CreateJoinTokenBody, EnrollBody};
use jitgate_shared::v1::ConfigId;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use reqwest::StatusCode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};

use crate::support::{past, status};

/// What `jitgate-agent enroll` will do locally: a key that never leaves,
/// and a CSR for it.
fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["agent.local".to_owned()]).unwrap();
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn join(configuration: &str, ttl_seconds: Option<u64>) -> CreateJoinTokenBody {
    CreateJoinTokenBody {
        configuration: ConfigId::new(configuration).unwrap(),
        ttl_seconds,
    }
}

#[tokio::test]
async fn a_join_token_enrolls_exactly_one_agent() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let admin = b.client("admin");
    let issued = admin.create_join_token(&join("aws-test", None)).await.unwrap();
    // The token pins the broker CA the agent will trust.
    let ca_pem = std::fs::read(b.ca()).unwrap();
    let ca_der = CertificateDer::from_pem_slice(&ca_pem).unwrap();
    assert_eq!(
        issued.ca_fingerprint,
        hex::encode(Sha256::digest(ca_der.as_ref()))
    );

    // Eight agents race with one token: exactly one is enrolled.
    let anonymous = b.anonymous();
    let attempts = (0..8).map(|_| {
        let body = EnrollBody {
            token: issued.token.clone(),
            csr_pem: csr(),
        };
        let client = anonymous.clone();
        async move { client.enroll(&body).await }
    });
    let results = futures::future::join_all(attempts).await;
    let (ok, refused): (Vec<_>, Vec<_>) = results.into_iter().partition(Result::is_ok);
    assert_eq!(ok.len(), 1, "{refused:?}");
    for r in refused {
        let e = r.unwrap_err();
        assert_eq!(e.status(), Some(StatusCode::UNAUTHORIZED));
        assert!(e.to_string().contains("already used"), "{e}");
    }
    let enrolled = ok.into_iter().next().unwrap().unwrap();
    assert_eq!(enrolled.ca_pem.as_bytes(), ca_pem.as_slice());
    let cert = CertificateDer::from_pem_slice(enrolled.certificate_pem.as_bytes()).unwrap();
    let identity = AgentIdentity::from_cert(&cert).unwrap();
    assert_eq!(identity.agent, enrolled.agent.id);
    assert_eq!(identity.configuration.as_str(), "aws-test");
    assert!(
        !String::from_utf8_lossy(cert.as_ref()).contains("agent.local"),
        "the CSR does not choose names"
    );

    // The command key the agent pins verifies commands the broker signs.
    assert_eq!(enrolled.command_key_id.len(), 16);
    let key = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &enrolled.command_public_key,
    )
    .unwrap();
    let verifier =
        jitgate_shared::v1::signing::CommandVerifier::from_public(&key.try_into().unwrap()).unwrap();
    assert_eq!(verifier.key_id(), enrolled.command_key_id);

    let agents = admin.agents().await.unwrap();
    assert_eq!(agents.len(), 1);
    assert_eq!(agents[0].id, enrolled.agent.id);

    // Revocation: only admins; once; listed as revoked.
    let (code, _) = status(b.client("bob").revoke_agent(enrolled.agent.id).await);
    assert_eq!(code, StatusCode::FORBIDDEN);
    let revoked = admin.revoke_agent(enrolled.agent.id).await.unwrap();
    assert_eq!(revoked.state, jitgate_shared::v1::api::AgentState::Revoked);
    let (code, _) = status(admin.revoke_agent(enrolled.agent.id).await);
    assert_eq!(code, StatusCode::CONFLICT);
    assert_eq!(
        admin.agents().await.unwrap()[0].state,
        jitgate_shared::v1::api::AgentState::Revoked
    );
}

#[tokio::test]
async fn bad_tokens_bad_csrs_and_non_admins_are_refused() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let admin = b.client("admin");
    let anonymous = b.anonymous();

    let (code, msg) = status(b.client("alice").create_join_token(&join("aws-test", None)).await);
    assert_eq!(code, StatusCode::FORBIDDEN, "{msg}");
    let (code, msg) = status(admin.create_join_token(&join("gcp", None)).await);
    assert_eq!(code, StatusCode::BAD_REQUEST);
    assert!(msg.contains("unknown configuration `gcp`"), "{msg}");
    let (code, _) = status(admin.create_join_token(&join("aws-test", Some(0))).await);
    assert_eq!(code, StatusCode::BAD_REQUEST);

    let (code, _) = status(
        anonymous
            .enroll(&EnrollBody {
                token: "jgj_made_up".into(),
                csr_pem: csr(),
            })
            .await,
    );
    assert_eq!(code, StatusCode::UNAUTHORIZED);

    // A malformed CSR does not spend the token.
    let issued = admin.create_join_token(&join("aws-test", None)).await.unwrap();
    let (code, msg) = status(
        anonymous
            .enroll(&EnrollBody {
                token: issued.token.clone(),
                csr_pem: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            })
            .await,
    );
    assert_eq!(code, StatusCode::BAD_REQUEST, "{msg}");
    assert!(msg.contains("csr_pem"), "{msg}");
    anonymous
        .enroll(&EnrollBody {
            token: issued.token,
            csr_pem: csr(),
        })
        .await
        .unwrap();

    // An expired token is refused and says so.
    let short = admin.create_join_token(&join("aws-test", Some(1))).await.unwrap();
    past(short.expires_at).await;
    let (code, msg) = status(
        anonymous
            .enroll(&EnrollBody {
                token: short.token,
                csr_pem: csr(),
            })
            .await,
    );
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    assert!(msg.contains("expired"), "{msg}");
}
