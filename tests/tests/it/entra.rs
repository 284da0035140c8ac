//! The agent's Entra side against the Graph contract fake: the real
//! `azure_identity` credential over HTTPS, trusting the fake's test CA
//! explicitly.

use jitgate_agent::provider::entra::credential::{self, EntraAuth, EntraCredentialSettings};
use jitgate_tests::graph_fake::{App, GraphFake};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";

fn settings(fake: &GraphFake, tenant: &str, client_id: &str, secret: &str) -> EntraCredentialSettings {
    EntraCredentialSettings {
        tenant_id: tenant.into(),
        auth: EntraAuth::ClientSecret {
            client_id: client_id.into(),
            secret: secret.into(),
        },
        authority_host: Some(fake.url.clone()),
        extra_ca_pem: Some(fake.ca_pem.clone().into_bytes()),
        retries: false,
    }
}

async fn fake() -> GraphFake {
    GraphFake::start(vec![App {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        secret: "s3cret-value".into(),
        ..App::default()
    }])
    .await
}

#[tokio::test]
async fn the_azure_identity_credential_gets_and_caches_a_token_from_the_fake_over_https() {
    let f = fake().await;
    let s = settings(&f, TENANT, CLIENT, "s3cret-value");
    let c = credential::credential(&s).unwrap();
    let first = c.get_token(&[credential::GRAPH_SCOPE], None).await.unwrap();
    let again = c.get_token(&[credential::GRAPH_SCOPE], None).await.unwrap();
    assert_eq!(first.token.secret(), again.token.secret(), "cached by the crate");
    assert_eq!(f.token_requests(), 1);
    credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
        .await
        .unwrap();
}

#[tokio::test]
async fn bad_credentials_fail_at_start_up_naming_the_credential_and_tenant() {
    let f = fake().await;
    for (tenant, client, secret, code) in [
        (TENANT, CLIENT, "wrong", "AADSTS7000215"),
        (
            TENANT,
            "00000000-0000-0000-0000-000000000000",
            "s3cret-value",
            "AADSTS700016",
        ),
        (
            "99999999-2222-3333-4444-555555555555",
            CLIENT,
            "s3cret-value",
            "AADSTS90002",
        ),
    ] {
        let s = settings(&f, tenant, client, secret);
        let c = credential::credential(&s).unwrap();
        let e = credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
            .await
            .unwrap_err();
        assert!(!e.retryable);
        assert!(e.reason.contains(code), "{e}");
        assert!(e.reason.contains(tenant) && e.reason.contains(client), "{e}");
        assert!(!e.reason.contains(secret), "no secret in the message: {e}");
    }
}

#[tokio::test]
async fn the_fakes_certificate_is_refused_unless_its_ca_is_trusted() {
    let f = fake().await;
    let s = EntraCredentialSettings {
        extra_ca_pem: None,
        ..settings(&f, TENANT, CLIENT, "s3cret-value")
    };
    let c = credential::credential(&s).unwrap();
    assert!(credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
        .await
        .is_err());
    assert_eq!(f.token_requests(), 0, "nothing reached the fake");
}

fn certificate_pem() -> (String, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jitgate-agent");
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn with_auth(fake: &GraphFake, auth: EntraAuth) -> EntraCredentialSettings {
    EntraCredentialSettings {
        auth,
        ..settings(fake, TENANT, CLIENT, "unused")
    }
}

#[tokio::test]
async fn a_client_certificate_signs_an_assertion_entra_accepts_and_an_unregistered_one_is_refused() {
    let (cert, key) = certificate_pem();
    let f = GraphFake::start(vec![App {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        certificate_pem: Some(cert.clone()),
        ..App::default()
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("agent.pem");
    std::fs::write(&good, format!("{cert}{key}")).unwrap();
    let s = with_auth(
        &f,
        EntraAuth::ClientCertificate {
            client_id: CLIENT.into(),
            pem_file: good,
        },
    );
    let c = credential::credential(&s).unwrap();
    credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
        .await
        .unwrap();

    // Another certificate: Entra does not know its thumbprint.
    let (other_cert, other_key) = certificate_pem();
    let other = dir.path().join("other.pem");
    std::fs::write(&other, format!("{other_cert}{other_key}")).unwrap();
    let s = with_auth(
        &f,
        EntraAuth::ClientCertificate {
            client_id: CLIENT.into(),
            pem_file: other.clone(),
        },
    );
    let c = credential::credential(&s).unwrap();
    let e = credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
        .await
        .unwrap_err();
    assert!(
        e.reason.contains("AADSTS700027") && e.reason.contains("other.pem"),
        "{e}"
    );
    assert!(!e.reason.contains("PRIVATE KEY"), "{e}");

    // The registered certificate with a key that is not its own: the
    // signature does not verify.
    let mismatched = dir.path().join("mismatched.pem");
    std::fs::write(&mismatched, format!("{cert}{other_key}")).unwrap();
    let s = with_auth(
        &f,
        EntraAuth::ClientCertificate {
            client_id: CLIENT.into(),
            pem_file: mismatched,
        },
    );
    let c = credential::credential(&s).unwrap();
    let e = credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
        .await
        .unwrap_err();
    assert!(e.reason.contains("invalid signature"), "{e}");

    // A file without a key fails before any request, naming the file.
    let no_key = dir.path().join("no-key.pem");
    std::fs::write(&no_key, &cert).unwrap();
    let s = with_auth(
        &f,
        EntraAuth::ClientCertificate {
            client_id: CLIENT.into(),
            pem_file: no_key,
        },
    );
    let e = credential::credential(&s).unwrap_err();
    assert!(
        e.reason.contains("no-key.pem") && e.reason.contains("private key"),
        "{e}"
    );
}

#[tokio::test]
async fn workload_identity_presents_the_projected_token_file() {
    let f = GraphFake::start(vec![App {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        federated_token: Some("eyJhbGciOi.projected-service-account-token.sig".into()),
        ..App::default()
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("azure-identity-token");
    std::fs::write(&file, "eyJhbGciOi.projected-service-account-token.sig").unwrap();
    let s = with_auth(
        &f,
        EntraAuth::WorkloadIdentity {
            client_id: CLIENT.into(),
            token_file: file,
        },
    );
    let c = credential::credential(&s).unwrap();
    credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
        .await
        .unwrap();

    let other = tempfile::tempdir().unwrap();
    let wrong = other.path().join("token");
    std::fs::write(&wrong, "a-token-of-another-issuer").unwrap();
    let s = with_auth(
        &f,
        EntraAuth::WorkloadIdentity {
            client_id: CLIENT.into(),
            token_file: wrong,
        },
    );
    let c = credential::credential(&s).unwrap();
    let e = credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s)
        .await
        .unwrap_err();
    assert!(
        e.reason.contains("AADSTS700213") && e.reason.contains("workload identity"),
        "{e}"
    );
}
