//! The agent's Entra side against the Graph contract fake: the real
//! `azure_identity` credential over HTTPS, trusting the fake's test CA
//! explicitly.

use std::time::Duration;

use jitgate_agent::provider::entra::credential::{self, EntraAuth, EntraCredentialSettings};
use jitgate_agent::provider::ProviderError;
use jitgate_shared::v1::protocol::FailureKind;
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::POLICY;
use jitgate_tests::graph_fake::{App, GraphFake, ManagedIdentity};

use crate::agents::{applied, removed, FAST};
use crate::support::request;

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
        assert_eq!(e.kind(), FailureKind::Unauthorised);
        assert!(e.reason().contains(code), "{e}");
        assert!(e.reason().contains(tenant) && e.reason().contains(client), "{e}");
        assert!(!e.reason().contains(secret), "no secret in the message: {e}");
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

/// Builds the credential for `auth` and gets one Graph token with it.
async fn sign_in(fake: &GraphFake, auth: EntraAuth) -> Result<(), ProviderError> {
    let s = EntraCredentialSettings {
        auth,
        ..settings(fake, TENANT, CLIENT, "unused")
    };
    let c = credential::credential(&s)?;
    credential::check(c.as_ref(), credential::GRAPH_SCOPE, &s).await
}

fn certificate(pem_file: &std::path::Path) -> EntraAuth {
    EntraAuth::ClientCertificate {
        client_id: CLIENT.into(),
        pem_file: pem_file.to_owned(),
    }
}

#[tokio::test]
async fn a_client_certificate_signs_an_assertion_entra_accepts_and_an_unregistered_one_is_refused() {
    let (cert, key) = certificate_pem();
    let (other_cert, other_key) = certificate_pem();
    let f = GraphFake::start(vec![App {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        certificate_pem: Some(cert.clone()),
        ..App::default()
    }])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, content: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    };
    let good = file("agent.pem", format!("{cert}{key}"));
    sign_in(&f, certificate(&good)).await.unwrap();

    // Another certificate: Entra does not know its thumbprint.
    let other = file("other.pem", format!("{other_cert}{other_key}"));
    let e = sign_in(&f, certificate(&other)).await.unwrap_err();
    assert!(
        e.reason().contains("AADSTS700027") && e.reason().contains("other.pem"),
        "{e}"
    );
    assert!(!e.reason().contains("PRIVATE KEY"), "{e}");

    // The registered certificate with a key that is not its own: the
    // signature does not verify.
    let mismatched = file("mismatched.pem", format!("{cert}{other_key}"));
    let e = sign_in(&f, certificate(&mismatched)).await.unwrap_err();
    assert!(e.reason().contains("invalid signature"), "{e}");

    // A file without a key fails before any request, naming the file.
    let requests = f.token_requests();
    let no_key = file("no-key.pem", cert.clone());
    let e = sign_in(&f, certificate(&no_key)).await.unwrap_err();
    assert!(
        e.reason().contains("no-key.pem") && e.reason().contains("private key"),
        "{e}"
    );
    assert_eq!(f.token_requests(), requests);
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
    let workload = |content: &str| {
        let token_file = dir.path().join(format!("token-{}", content.len()));
        std::fs::write(&token_file, content).unwrap();
        EntraAuth::WorkloadIdentity {
            client_id: CLIENT.into(),
            token_file,
        }
    };
    sign_in(&f, workload("eyJhbGciOi.projected-service-account-token.sig"))
        .await
        .unwrap();
    let e = sign_in(&f, workload("a-token-of-another-issuer"))
        .await
        .unwrap_err();
    assert!(
        e.reason().contains("AADSTS700213") && e.reason().contains("workload identity"),
        "{e}"
    );
}

/// A catalogue with one Entra configuration whose resources are the fake's
/// group (auto-approved) and the same group with sign-in sessions ended on
/// revoke.
fn entra_catalog(group: &str) -> String {
    format!(
        r#"
[[configurations]]
id = "entra-test"
kind = "entra_id"
identity_mode = {{ mode = "direct" }}

[[resources]]
id = "entra-admins"
configuration = "entra-test"
group = "auto"
target = {{ kind = "entra_group_membership", group_id = "{group}" }}

[[resources]]
id = "entra-admins-ending-sessions"
configuration = "entra-test"
group = "end-sessions"
target = {{ kind = "entra_pim_group", group_id = "{group}" }}

[[users]]
id = "alice"
email = "alice@contoso.com"
roles = ["requester"]
groups = ["developers"]

[[users]]
id = "admin"
roles = ["admin", "auditor"]
"#
    )
}

const ENTRA_WORKFLOWS: &str = r#"
[defaults]
approvals_required = 1
max_duration = "1h"
default_duration = "10m"

[group.auto]
auto_approve = true
approvals_required = 0

[group.end-sessions]
auto_approve = true
approvals_required = 0
end_sign_in_sessions = true
"#;

/// `jitgate-agent run --provider entra ...` against the fake; the files
/// live in `dir`.
pub(crate) fn agent_args(f: &GraphFake, dir: &std::path::Path, auth: &[&str]) -> Vec<String> {
    let ca = dir.join("graph-ca.pem");
    std::fs::write(&ca, &f.ca_pem).unwrap();
    let mut args: Vec<String> = [
        "--provider",
        "entra",
        "--entra-tenant-id",
        TENANT,
        "--entra-authority-host",
        &f.url,
        "--entra-graph-url",
        &f.url,
        "--entra-extra-ca",
        &ca.display().to_string(),
        "--entra-replication-wait",
        "2s",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    args.extend(auth.iter().map(|s| (*s).to_owned()));
    args
}

#[tokio::test]
async fn a_request_approved_through_the_api_becomes_a_group_membership_and_is_removed_at_expiry() {
    let f = fake().await;
    let alice = f.add_user("alice@contoso.com", Some("alice@contoso.com"));
    let group = f.add_group("Cloud admins");
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "s3cret-value\n").unwrap();
    let b = TestBroker::start_with(
        &entra_catalog(&group),
        &[("access.cedar", POLICY), ("workflows.toml", ENTRA_WORKFLOWS)],
        FAST,
    )
    .await;
    let mut agent = TestAgent::enroll(&b, "entra-test", None).await;
    let secret = secret_file.display().to_string();
    let args = agent_args(
        &f,
        dir.path(),
        &["--entra-client-id", CLIENT, "--entra-client-secret-file", &secret],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    agent.start_provider(&args, &[]).await;
    agent.connected().await;

    let id = request(&b.client("alice"), "entra-admins", 3)
        .await
        .grant
        .unwrap();
    applied(&b, id).await;
    assert_eq!(
        f.members(&group),
        vec![alice.clone()],
        "agent log:\n{}",
        agent.log()
    );
    let g = removed(&b, id, Duration::from_secs(10)).await;
    assert!(g.removed_at.unwrap() >= g.ends_at);
    assert!(f.members(&group).is_empty());
    assert_eq!(f.sessions_revoked(&alice), 0);

    // PIM for Groups with sign-in sessions ended: Entra holds the end date
    // too, and the revoke ends her sessions.
    let id = request(&b.client("alice"), "entra-admins-ending-sessions", 3)
        .await
        .grant
        .unwrap();
    let g = applied(&b, id).await;
    let pim = f.pim_group_assignments();
    assert_eq!(pim.len(), 1, "agent log:\n{}", agent.log());
    assert!(pim[0].end.unwrap() >= g.ends_at);
    removed(&b, id, Duration::from_secs(10)).await;
    assert!(f.pim_group_assignments().is_empty());
    assert_eq!(f.sessions_revoked(&alice), 1);
    assert!(!agent.log().contains("s3cret-value"), "no secret in the log");
}

#[tokio::test]
async fn the_agent_signs_in_with_a_managed_identity_or_stops_naming_it() {
    let f = fake().await;
    let endpoint = f.enable_managed_identity(ManagedIdentity {
        header: "identity-header-secret".into(),
        client_id: "cccccccc-0000-0000-0000-000000000001".into(),
        user_assigned: true,
    });
    let b = TestBroker::start_with(
        &entra_catalog("00000000-0000-0000-0000-000000000000"),
        &[("access.cedar", POLICY), ("workflows.toml", ENTRA_WORKFLOWS)],
        FAST,
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // An agent signing in as the managed identity `client_id`.
    let start = |client_id: &'static str| {
        let (b, f, dir, endpoint) = (&b, &f, dir.path(), endpoint.clone());
        async move {
            let mut agent = TestAgent::enroll(b, "entra-test", None).await;
            let args = agent_args(
                f,
                dir,
                &["--entra-auth", "managed-identity", "--entra-client-id", client_id],
            );
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let env = [
                ("IDENTITY_ENDPOINT", endpoint.as_str()),
                ("IDENTITY_HEADER", "identity-header-secret"),
            ];
            agent.start_provider(&args, &env).await;
            agent
        }
    };
    let agent = start("cccccccc-0000-0000-0000-000000000001").await;
    agent.connected().await;
    assert_eq!(f.token_requests(), 1);

    // Another identity than the resource has: the agent stops at start-up.
    let mut wrong = start("dddddddd-0000-0000-0000-000000000002").await;
    let status = wrong.exit_status(Duration::from_secs(20)).await;
    assert!(!status.success());
    let log = wrong.log();
    assert!(
        log.contains("user-assigned managed identity dddddddd-0000-0000-0000-000000000002")
            && log.contains(TENANT),
        "{log}"
    );
}
