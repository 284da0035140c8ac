//! The agent hub refuses what it must, and survives what it refuses: raw
//! TLS and websocket clients with good and bad credentials and frames.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use jitgate_shared::v1::protocol::{self, AgentMessage, BrokerMessage, ErrorKind, FailureKind, VERSION};
use jitgate_shared::v1::ConfigId;
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use crate::agents::FAST;
use crate::support::eventually;

pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

fn roots(b: &TestBroker) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(b.ca()).unwrap()).unwrap();
    roots
}

fn with_cert(
    b: &TestBroker,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> rustls::ClientConfig {
    rustls::ClientConfig::builder()
        .with_root_certificates(roots(b))
        .with_client_auth_cert(chain, key)
        .unwrap()
}

pub(crate) fn agent_tls(b: &TestBroker, agent: &TestAgent) -> rustls::ClientConfig {
    let pem = std::fs::read(agent.state_dir().join("credentials.pem")).unwrap();
    let chain = CertificateDer::pem_slice_iter(&pem).map(Result::unwrap).collect();
    with_cert(b, chain, PrivateKeyDer::from_pem_slice(&pem).unwrap())
}

pub(crate) async fn dial(b: &TestBroker, tls: rustls::ClientConfig) -> Result<Ws, String> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let addr = b.hub_url.trim_start_matches("wss://").to_owned();
    let tcp = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/v1/agent"), stream)
        .await
        .map_err(|e| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => format!(
                "http {}: {}",
                r.status(),
                String::from_utf8_lossy(r.body().as_deref().unwrap_or_default())
            ),
            e => format!("ws: {e}"),
        })?;
    Ok(ws)
}

/// A session of a newly enrolled agent of `configuration`, past its
/// welcome.
pub(crate) async fn welcomed(b: &TestBroker, configuration: &str) -> Ws {
    let agent = TestAgent::enroll(b, configuration, None).await;
    let mut ws = dial(b, agent_tls(b, &agent)).await.unwrap();
    assert!(matches!(
        hello(&mut ws, configuration).await,
        BrokerMessage::Welcome { .. }
    ));
    ws
}

pub(crate) async fn hello(ws: &mut Ws, configuration: &str) -> BrokerMessage {
    let hello = AgentMessage::Hello {
        version: VERSION,
        configuration: ConfigId::new(configuration).unwrap(),
        capabilities: Default::default(),
        agent_version: "test".into(),
    };
    ws.send(Message::text(protocol::encode(&hello))).await.unwrap();
    next(ws).await.expect("an answer to hello")
}

async fn next(ws: &mut Ws) -> Option<BrokerMessage> {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .ok()??
        {
            Ok(Message::Text(t)) => return Some(protocol::decode(t.as_bytes()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Reads frames until one matches, or the session ends.
async fn until(ws: &mut Ws, want: impl Fn(&BrokerMessage) -> bool) -> Option<BrokerMessage> {
    while let Some(m) = next(ws).await {
        if want(&m) {
            return Some(m);
        }
    }
    None
}

fn ca_signed(
    b: &TestBroker,
    uri: &str,
    expired: bool,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let ca_key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(b.path("data/ca.key")).unwrap()).unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(b.ca()).unwrap(), ca_key).unwrap();
    leaf(&issuer, uri, expired)
}

fn leaf<K: rcgen::SigningKey>(
    issuer: &rcgen::Issuer<'_, K>,
    uri: &str,
    expired: bool,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    if expired {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2020, 1, 2);
    }
    let cert = params.signed_by(&key, issuer).unwrap();
    (
        vec![cert.der().clone()],
        PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes()).unwrap(),
    )
}

#[tokio::test]
async fn the_hub_refuses_bad_credentials_and_keeps_serving() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let agent = TestAgent::enroll(&b, "aws-test", None).await;
    let uri = format!("spiffe://jitgate/configuration/aws-test/agent/{}", agent.id);

    // Credentials the hub refuses, each for its own reason (the TLS alert
    // it sends, or the HTTP refusal of the upgrade).
    let anonymous = rustls::ClientConfig::builder()
        .with_root_certificates(roots(&b))
        .with_no_client_auth();
    let rogue_key = rcgen::KeyPair::generate().unwrap();
    let mut rogue = rcgen::CertificateParams::default();
    rogue.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let rogue_cert = rogue.self_signed(&rogue_key).unwrap();
    let rogue_issuer = rcgen::Issuer::from_ca_cert_der(rogue_cert.der(), rogue_key).unwrap();
    let stranger = format!("spiffe://jitgate/configuration/aws-test/agent/{}", uuid_v7());
    let signed = |(chain, key)| with_cert(&b, chain, key);
    let refusals = [
        ("no client certificate", anonymous, "CertificateRequired"),
        (
            "the same agent's name from another CA",
            signed(leaf(&rogue_issuer, &uri, false)),
            "UnknownCA",
        ),
        (
            "an expired certificate",
            signed(ca_signed(&b, &uri, true)),
            "CertificateExpired",
        ),
        (
            "a valid certificate of an agent never enrolled",
            signed(ca_signed(&b, &stranger, false)),
            "not enrolled",
        ),
    ];
    for (what, tls, reason) in refusals {
        let e = dial(&b, tls).await.map(|_| ()).unwrap_err();
        assert!(e.contains(reason), "{what}: refused for `{e}`, not for {reason}");
    }

    // The enrolled agent's own certificate works; a hello for another
    // configuration is refused.
    let mut ws = dial(&b, agent_tls(&b, &agent)).await.unwrap();
    match hello(&mut ws, "entra-prod").await {
        BrokerMessage::Error { code, .. } => assert_eq!(code, ErrorKind::WrongConfiguration),
        m => panic!("expected a refusal, got {m:?}"),
    }
    let mut ws = dial(&b, agent_tls(&b, &agent)).await.unwrap();
    assert!(matches!(
        hello(&mut ws, "aws-test").await,
        BrokerMessage::Welcome { .. }
    ));

    // Malformed frames are answered and the session goes on.
    for bad in [
        "{not json",
        r#"{"type":"self_destruct"}"#,
        r#"{"type":"heartbeat","seq":"x"}"#,
    ] {
        ws.send(Message::text(bad)).await.unwrap();
        let e = until(&mut ws, |m| matches!(m, BrokerMessage::Error { .. })).await;
        assert!(e.is_some(), "answered {bad}");
    }
    ws.send(Message::binary(vec![1, 2, 3])).await.unwrap();
    assert!(until(&mut ws, |m| matches!(m, BrokerMessage::Error { .. }))
        .await
        .is_some());
    assert!(
        until(&mut ws, |m| matches!(m, BrokerMessage::Heartbeat { .. }))
            .await
            .is_some(),
        "still alive after bad frames"
    );

    // An oversized frame ends that session, not the hub.
    let huge = format!(
        r#"{{"type":"error","message":"{}"}}"#,
        "x".repeat(protocol::MAX_FRAME_BYTES + 1)
    );
    let _ = ws.send(Message::text(huge)).await;
    assert!(until(&mut ws, |_| false).await.is_none(), "session closed");
    let mut again = dial(&b, agent_tls(&b, &agent)).await.unwrap();
    assert!(matches!(
        hello(&mut again, "aws-test").await,
        BrokerMessage::Welcome { .. }
    ));

    // Revoked: the live session ends at once, later handshakes are refused.
    b.client("admin").revoke_agent(agent.id).await.unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(2), until(&mut again, |_| false))
            .await
            .is_ok(),
        "session closed on revocation"
    );
    let e = dial(&b, agent_tls(&b, &agent)).await.unwrap_err();
    assert!(e.contains("403") && e.contains("revoked"), "{e}");
    eventually(Duration::from_secs(3), "offline", || async {
        (!b.client("admin").agents().await.unwrap()[0].online).then_some(())
    })
    .await;
}

fn uuid_v7() -> String {
    jitgate_shared::v1::AgentId::generate().to_string()
}

/// As [`until`], sending heartbeats meanwhile so the session is not closed
/// as silent; gives up after 15 s.
async fn until_alive(ws: &mut Ws, want: impl Fn(&BrokerMessage) -> bool) -> Option<BrokerMessage> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seq = 0;
    while tokio::time::Instant::now() < deadline {
        seq += 1;
        let beat = AgentMessage::Heartbeat { seq };
        ws.send(Message::text(protocol::encode(&beat))).await.ok()?;
        match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(Message::Text(t)))) => {
                let m: BrokerMessage = protocol::decode(t.as_bytes()).unwrap();
                if want(&m) {
                    return Some(m);
                }
            }
            Ok(Some(Ok(Message::Close(_)) | Err(_)) | None) => return None,
            Ok(Some(Ok(_))) => {}
        }
    }
    None
}

/// Downstream confirmation over the wire: the broker asks the agent of the
/// configuration where a federated resource is used, and only that agent's
/// answer counts.
#[tokio::test]
async fn only_the_downstream_configurations_agent_confirms_a_federated_grant() {
    let b = TestBroker::start_with(
        &crate::chains::catalog(),
        &[
            ("access.cedar", jitgate_tests::fixtures::POLICY),
            ("workflows.toml", crate::chains::WORKFLOWS),
        ],
        FAST,
    )
    .await;
    let mut entra = TestAgent::enroll(&b, "entra", None).await;
    entra.start(&[]).await;
    entra.connected().await;
    let downstream = TestAgent::enroll(&b, "aws-fed", None).await;
    let other = TestAgent::enroll(&b, "entra2", None).await;
    let id = b
        .client("alice")
        .create_request(&crate::support::ask("fed-admin", 600))
        .await
        .unwrap()
        .grant
        .unwrap();
    let g = crate::agents::applied(&b, id).await;
    let confirm = jitgate_shared::v1::Entitlement {
        configuration: ConfigId::new("aws-fed").unwrap(),
        target: jitgate_shared::v1::Target::AwsAccountAssignment {
            account_id: "111122223333".into(),
            permission_set: "AdminAccess".into(),
        },
        principal: "alice@example.com".into(),
    };

    // An agent of another configuration claims it held: ignored.
    let mut liar = dial(&b, agent_tls(&b, &other)).await.unwrap();
    assert!(matches!(
        hello(&mut liar, "entra2").await,
        BrokerMessage::Welcome { .. }
    ));
    let claim = AgentMessage::Holdings {
        request: 2,
        held: vec![confirm.clone()],
        absent: vec![],
    };
    liar.send(Message::text(protocol::encode(&claim))).await.unwrap();
    let asked = tokio::time::timeout(
        Duration::from_secs(3),
        until(&mut liar, |m| matches!(m, BrokerMessage::Check { .. })),
    )
    .await;
    // Timed out, or the silent session was closed: either way, no check.
    assert!(
        !matches!(asked, Ok(Some(_))),
        "no check is asked of a configuration the grant is not used in: {asked:?}"
    );
    assert!(b.client("admin").grant(id).await.unwrap().effective_at.is_none());

    // The downstream agent is asked, and its answer counts.
    let mut ws = dial(&b, agent_tls(&b, &downstream)).await.unwrap();
    assert!(matches!(
        hello(&mut ws, "aws-fed").await,
        BrokerMessage::Welcome { .. }
    ));
    let asked = until_alive(&mut ws, |m| matches!(m, BrokerMessage::Check { .. }))
        .await
        .expect("a check");
    let BrokerMessage::Check {
        request,
        entitlements,
    } = asked
    else {
        unreachable!()
    };
    assert_eq!(entitlements, vec![confirm.clone()]);
    assert!(b.client("admin").grant(id).await.unwrap().effective_at.is_none());
    let answer = AgentMessage::Holdings {
        request,
        held: vec![confirm],
        absent: vec![],
    };
    ws.send(Message::text(protocol::encode(&answer))).await.unwrap();
    let g2 = eventually(Duration::from_secs(5), "effective", || async {
        let g = b.client("admin").grant(id).await.unwrap();
        g.effective_at.is_some().then_some(g)
    })
    .await;
    assert!(g2.effective_at >= g.applied_at);
}

#[tokio::test]
async fn an_agent_revoked_between_handshake_and_hello_gets_no_session() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let agent = TestAgent::enroll(&b, "aws-test", None).await;
    let mut ws = dial(&b, agent_tls(&b, &agent)).await.unwrap();
    b.client("admin").revoke_agent(agent.id).await.unwrap();
    match hello(&mut ws, "aws-test").await {
        BrokerMessage::Error { code, message } => {
            assert_eq!(code, ErrorKind::Refused, "{message}");
            assert!(message.contains("revoked"), "{message}");
        }
        m => panic!("a revoked agent was welcomed: {m:?}"),
    }
    assert!(
        until(&mut ws, |_| false).await.is_none(),
        "and the session is closed"
    );
    assert!(!b.client("admin").agents().await.unwrap()[0].online);
}

#[tokio::test]
async fn an_inventory_of_ten_thousand_holders_arrives_in_pages_and_is_reconciled() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut ws = welcomed(&b, "aws-test").await;
    let Some(BrokerMessage::List { request, targets }) =
        until(&mut ws, |m| matches!(m, BrokerMessage::List { .. })).await
    else {
        panic!("no inventory asked for")
    };
    let holders: Vec<jitgate_shared::v1::Entitlement> = (0..10_000)
        .map(|i| jitgate_shared::v1::Entitlement {
            configuration: ConfigId::new("aws-test").unwrap(),
            target: targets[0].clone(),
            principal: format!("user{i}@example.com"),
        })
        .collect();
    let pages = jitgate_agent::channel::inventory_pages(request, holders);
    assert!(pages.len() > 1, "paged");
    for page in &pages {
        let frame = protocol::encode(page);
        assert!(frame.len() < protocol::MAX_FRAME_BYTES, "each page fits a frame");
        ws.send(Message::text(frame)).await.unwrap();
    }
    assert!(
        until_alive(&mut ws, |m| matches!(m, BrokerMessage::Heartbeat { .. }))
            .await
            .is_some(),
        "the session lives on"
    );
    let drift = eventually(Duration::from_secs(10), "reconciled", || async {
        b.client("admin").agents().await.unwrap()[0].drift.clone()
    })
    .await;
    assert_eq!(drift.unexpected.len(), 10_000, "every holder was reconciled");
}

#[tokio::test]
async fn a_self_revoke_report_that_does_not_match_its_grant_is_refused() {
    use jitgate_shared::v1::protocol::Outcome;
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let agent = TestAgent::enroll(&b, "aws-test", None).await;
    // A real grant of alice's, to name in the reports.
    let r = crate::support::request(&b.client("bob"), "auto-admin", 600).await;
    let grant = b.client("admin").grant(r.grant.unwrap()).await.unwrap();
    let mut ws = dial(&b, agent_tls(&b, &agent)).await.unwrap();
    assert!(matches!(
        hello(&mut ws, "aws-test").await,
        BrokerMessage::Welcome { .. }
    ));
    let report = |entitlement: jitgate_shared::v1::Entitlement| AgentMessage::SelfRevoked {
        command: "forged".into(),
        grant: grant.id,
        entitlement,
        deadline: chrono::Utc::now(),
        at: chrono::Utc::now(),
        outcome: Outcome::Revoked,
    };
    let mut other_config = grant.entitlement.clone();
    other_config.configuration = ConfigId::new("entra-prod").unwrap();
    let mut other_principal = grant.entitlement.clone();
    other_principal.principal = "carol@example.com".into();
    for (forged, kind, why) in [
        (other_config, ErrorKind::WrongConfiguration, "configuration"),
        (other_principal, ErrorKind::Refused, "does not hold"),
    ] {
        ws.send(Message::text(protocol::encode(&report(forged))))
            .await
            .unwrap();
        match until_alive(&mut ws, |m| {
            matches!(
                m,
                BrokerMessage::Error { .. } | BrokerMessage::Acknowledged { .. }
            )
        })
        .await
        {
            Some(BrokerMessage::Error { code, message }) => {
                assert_eq!(code, kind, "{message}");
                assert!(message.contains(why), "{why}: {message}");
            }
            m => panic!("{why}: a mismatched report was taken: {m:?}"),
        }
    }
    let still = b.client("admin").grant(grant.id).await.unwrap();
    assert!(still.removed_at.is_none(), "nothing marked removed");
}

/// Reads commands until one with `op`, answering the others as applied.
pub(crate) async fn next_command(
    ws: &mut Ws,
    op: jitgate_shared::v1::api::CommandOp,
) -> jitgate_shared::v1::signing::CommandBody {
    loop {
        let Some(BrokerMessage::Command { command }) =
            until_alive(ws, |m| matches!(m, BrokerMessage::Command { .. })).await
        else {
            panic!("no {op:?} command came")
        };
        let body: jitgate_shared::v1::signing::CommandBody = serde_json::from_str(&command.body).unwrap();
        if body.op == op {
            return body;
        }
        let answer = AgentMessage::Result {
            command: body.id,
            outcome: jitgate_shared::v1::protocol::Outcome::Applied,
        };
        ws.send(Message::text(protocol::encode(&answer))).await.unwrap();
    }
}

#[tokio::test]
async fn a_revoke_the_agent_refuses_stays_queued_is_surfaced_and_leaves_only_by_force_close() {
    use jitgate_shared::v1::api::CommandOp;
    use jitgate_shared::v1::protocol::Outcome;
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let admin = b.client("admin");
    let mut ws = welcomed(&b, "aws-test").await;

    let r = crate::support::request(&b.client("bob"), "auto-admin", 600).await;
    let grant_id = r.grant.unwrap();
    let granted = next_command(&mut ws, CommandOp::Grant).await;
    let applied = AgentMessage::Result {
        command: granted.id,
        outcome: Outcome::Applied,
    };
    ws.send(Message::text(protocol::encode(&applied))).await.unwrap();
    b.client("bob").revoke(grant_id, None).await.unwrap();

    // The agent cannot remove it (its role lost the permission).
    let refusal = || {
        Outcome::failed(
            FailureKind::Rejected,
            "AccessDeniedException: not authorized to DeleteAccountAssignment",
            None,
        )
    };
    let revoke = next_command(&mut ws, CommandOp::Revoke).await;
    let answer = AgentMessage::Result {
        command: revoke.id.clone(),
        outcome: refusal(),
    };
    ws.send(Message::text(protocol::encode(&answer))).await.unwrap();
    let failing = eventually(Duration::from_secs(10), "surfaced", || async {
        admin.grant(grant_id).await.unwrap().revoke_failing
    })
    .await;
    assert_eq!(failing.command, revoke.id);
    assert!(failing.reason.contains("AccessDenied"), "{failing:?}");
    assert_eq!(b.metric("jitgate_revokes_failing").await, Some(1.0));
    assert!(
        crate::support::outbox(&admin)
            .await
            .iter()
            .any(|c| c.id == revoke.id),
        "still queued"
    );
    let out = b.cli("admin", &["grants"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("revoke_failing"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // It is tried again, and refused again.
    let again = next_command(&mut ws, CommandOp::Revoke).await;
    assert_eq!(again.id, revoke.id);
    let answer = AgentMessage::Result {
        command: again.id.clone(),
        outcome: refusal(),
    };
    ws.send(Message::text(protocol::encode(&answer))).await.unwrap();
    eventually(Duration::from_secs(10), "counted", || async {
        (admin.grant(grant_id).await.unwrap().revoke_failing?.attempts >= 2).then_some(())
    })
    .await;

    // Only an admin saying it was removed by hand closes it.
    let out = b.cli(
        "admin",
        &[
            "admin",
            "force-close",
            &revoke.id,
            "--reason",
            "removed in the AWS console",
        ],
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let closed = admin.grant(grant_id).await.unwrap();
    assert!(
        closed.revoke_failing.is_none() && closed.removed_at.is_some(),
        "{closed:?}"
    );
    assert!(crate::support::outbox(&admin).await.is_empty());
    assert_eq!(b.metric("jitgate_revokes_failing").await, Some(0.0));
    let out = b.cli(
        "admin",
        &["admin", "force-close", &revoke.id, "--reason", "again"],
    );
    assert!(!out.status.success(), "nothing left to close");
    let (code, _) = crate::support::status(
        b.client("bob")
            .force_close_revoke(&revoke.id, "not an admin")
            .await,
    );
    assert_eq!(code, reqwest::StatusCode::FORBIDDEN);
    drop(ws);
    let mut b = b;
    b.stop().await;
    let export = String::from_utf8_lossy(&b.offline(&["audit", "export"]).stdout).into_owned();
    assert!(export.contains("\"revoke_failed\""), "audited");
    assert!(
        export.contains("removed in the AWS console"),
        "the reason is audited"
    );
}
