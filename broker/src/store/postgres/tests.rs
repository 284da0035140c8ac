//! What only a shared database has to show: several brokers writing at the
//! same moment through their own connections. (Everything a single store
//! must do is the conformance suite's.)

use std::sync::Arc;

use jitgate_shared::v1::api::CommandOp;

use super::scratch::ScratchDatabase;
use super::PgStore;
use crate::audit::ChainVerifier;
use crate::store::conformance::{aws, entry, uid, user};
use crate::store::{Change, Store};
use crate::testing::command;

async fn two_brokers(db: &ScratchDatabase) -> (Arc<PgStore>, Arc<PgStore>) {
    let a = PgStore::open(&db.settings(), true).await.unwrap();
    let b = PgStore::open(&db.settings(), false).await.unwrap();
    (Arc::new(a), Arc::new(b))
}

/// Both brokers read one record at one version and write it at once:
/// exactly one wins, the other is told to re-read, and the loser's audit
/// record is not in the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_two_brokers_writing_one_record_wins() {
    let db = ScratchDatabase::create().await.unwrap();
    let (a, b) = two_brokers(&db).await;
    a.commit(Change {
        users: vec![user("alice")],
        ..Change::default()
    })
    .await
    .unwrap();
    for round in 0..20 {
        let read_a = a.user(&uid("alice")).await.unwrap().unwrap();
        let read_b = b.user(&uid("alice")).await.unwrap().unwrap();
        assert_eq!(read_a.version, read_b.version);
        let write = |u| Change {
            users: vec![u],
            audit: vec![entry()],
            ..Change::default()
        };
        let (ra, rb) = tokio::join!(a.commit(write(read_a)), b.commit(write(read_b)));
        let won = [&ra, &rb].iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {ra:?} {rb:?}");
        let lost = if ra.is_ok() { rb } else { ra };
        assert!(lost.unwrap_err().is_conflict());
    }
    assert_eq!(a.user(&uid("alice")).await.unwrap().unwrap().version, 21);
    assert_eq!(b.audit_head().await.unwrap().seq, 20);
}

/// Many changes from both brokers at once extend one audit chain: no
/// sequence number twice, none skipped, every hash links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_appending_at_once_keep_one_audit_chain() {
    let db = ScratchDatabase::create().await.unwrap();
    let (a, b) = two_brokers(&db).await;
    let mut writers = tokio::task::JoinSet::new();
    for i in 0..64 {
        let store: Arc<dyn Store> = if i % 2 == 0 { a.clone() } else { b.clone() };
        writers.spawn(async move {
            store
                .commit(Change {
                    audit: vec![entry(), entry()],
                    ..Change::default()
                })
                .await
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap().unwrap();
    }
    let mut verifier = ChainVerifier::default();
    for record in a.audit(1, 1000).await.unwrap() {
        verifier.check(&record).unwrap();
    }
    assert_eq!(verifier.verified(), 128);
    assert_eq!(b.audit_head().await.unwrap().seq, 128);
}

/// Both brokers queue a command for one entitlement at once: the outbox
/// never holds two for it; a loser is told to re-read, and queueing again
/// supersedes the winner's command, as the queue rules say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_queueing_one_entitlement_at_once_leave_one_command() {
    let db = ScratchDatabase::create().await.unwrap();
    let (a, b) = two_brokers(&db).await;
    for round in 0..20 {
        let queue = |id: String| Change {
            commands: vec![command(&id, "admins", CommandOp::Grant)],
            ..Change::default()
        };
        let (ra, rb) = tokio::join!(
            a.commit(queue(format!("a-{round}"))),
            b.commit(queue(format!("b-{round}")))
        );
        for r in [&ra, &rb] {
            if let Err(e) = r {
                assert!(e.is_conflict(), "round {round}: {e}");
            }
        }
        if rb.is_err() {
            b.commit(queue(format!("b-{round}"))).await.unwrap();
        } else if ra.is_err() {
            a.commit(queue(format!("a-{round}"))).await.unwrap();
        }
        let queued = a.outbox(&aws(), 10).await.unwrap();
        assert_eq!(queued.len(), 1, "round {round}: {queued:?}");
    }
}

/// Two brokers claiming due jobs at once never both get one; a claim
/// that runs out lets the other take the job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn due_jobs_are_claimed_by_one_broker_until_its_claim_runs_out() {
    use crate::domain::job::{Job, JobKind};
    let db = ScratchDatabase::create().await.unwrap();
    let (a, b) = two_brokers(&db).await;
    // Due-ness is by the instant given; claims by the database's clock.
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    let jobs: Vec<Job> = (0..40)
        .map(|i| Job {
            due: now - chrono::Duration::seconds(i),
            kind: JobKind::ExpireGrant(jitgate_shared::v1::GrantId::generate()),
        })
        .collect();
    a.commit(Change {
        schedule: jobs.clone(),
        ..Change::default()
    })
    .await
    .unwrap();
    let (ca, cb) = tokio::join!(a.claim_due_jobs(now, 25), b.claim_due_jobs(now, 25));
    let (ca, cb) = (ca.unwrap(), cb.unwrap());
    assert_eq!(ca.len() + cb.len(), 40, "every due job claimed once");
    assert!(ca.iter().all(|j| !cb.contains(j)), "no job claimed by both");
    assert!(ca.windows(2).all(|w| w[0] <= w[1]), "earliest first");
    // Its own claims come back to the claimant (a failed change is retried
    // at once); the other broker gets nothing while they last.
    assert_eq!(a.claim_due_jobs(now, 100).await.unwrap().len(), ca.len());
    assert!(b
        .claim_due_jobs(now, 100)
        .await
        .unwrap()
        .iter()
        .all(|j| cb.contains(j)));
    // A claim that ran out is anyone's.
    let client = db_client(&db).await;
    client
        .execute("UPDATE jobs SET claimed_until = now() - interval '1 second'", &[])
        .await
        .unwrap();
    assert_eq!(b.claim_due_jobs(now, 100).await.unwrap().len(), 40);
}

async fn db_client(db: &ScratchDatabase) -> tokio_postgres::Client {
    super::scratch::connect_to(&db.url()).await.unwrap()
}

async fn next<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> T {
    tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
        .await
        .expect("nothing heard within 10 s")
        .unwrap()
}

/// A command one broker queues wakes the others when it commits; a store
/// is not told of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_commands_wake_the_other_brokers() {
    use crate::store::OutboxWake;
    let db = ScratchDatabase::create().await.unwrap();
    let (a, b) = two_brokers(&db).await;
    let mut at_a = a.announcements().unwrap().outboxes;
    let mut at_b = b.announcements().unwrap().outboxes;
    // Listening started: whatever came before is unknown.
    assert_eq!(next(&mut at_a).await, OutboxWake::All);
    assert_eq!(next(&mut at_b).await, OutboxWake::All);
    a.commit(Change {
        commands: vec![command("g1", "admins", CommandOp::Grant)],
        ..Change::default()
    })
    .await
    .unwrap();
    // A failed change announces nothing.
    let mut stale = user("alice");
    stale.version = 5;
    let failed = a
        .commit(Change {
            users: vec![stale],
            commands: vec![command("g2", "other", CommandOp::Grant)],
            ..Change::default()
        })
        .await;
    assert!(failed.is_err());
    b.commit(Change {
        commands: vec![command("g3", "third", CommandOp::Grant)],
        ..Change::default()
    })
    .await
    .unwrap();
    assert_eq!(next(&mut at_b).await, OutboxWake::Configuration(aws()));
    // b's own commit is not announced to b; a hears of it, and only of it.
    assert_eq!(next(&mut at_a).await, OutboxWake::Configuration(aws()));
    assert!(at_a.try_recv().is_err());
    assert!(at_b.try_recv().is_err());
}

/// A committed change tells the other brokers what it touched and whose,
/// for their live pages; a store is not told of its own, and listening
/// starts with "anything may have changed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_changes_reach_the_other_brokers_pages() {
    use crate::store::changed::{Changed, Topic};
    let db = ScratchDatabase::create().await.unwrap();
    let (a, b) = two_brokers(&db).await;
    let mut at_a = a.announcements().unwrap().changes;
    let mut at_b = b.announcements().unwrap().changes;
    assert_eq!(next(&mut at_a).await, Changed::anything());
    assert_eq!(next(&mut at_b).await, Changed::anything());
    let alice = user("alice");
    let request = crate::store::conformance::request(&alice, 0);
    let grant = crate::store::conformance::grant(&request, 0);
    a.commit(Change {
        users: vec![alice.clone()],
        requests: vec![request],
        grants: vec![grant],
        ..Change::default()
    })
    .await
    .unwrap();
    // A change no page shows is not announced.
    a.commit(Change {
        audit: vec![entry()],
        ..Change::default()
    })
    .await
    .unwrap();
    let heard = next(&mut at_b).await;
    assert_eq!(heard.topics, [Topic::Requests, Topic::Grants].into());
    assert_eq!(heard.people, [alice.id].into());
    assert!(!heard.everyone);
    assert!(at_a.try_recv().is_err(), "a store is not told of its own");
    assert!(at_b.try_recv().is_err());
}

/// A PostgreSQL server reached over TLS: answers the client's SSLRequest
/// with `S`, completes the handshake with `tls`, and relays to the real
/// server (`upstream`: a host or socket directory, and port) in plain text.
async fn tls_front(tls: Arc<rustls::ServerConfig>, upstream: (String, u16)) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// Length 8, then the SSLRequest code 80877103.
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let (tls, (host, port)) = (tls.clone(), upstream.clone());
            tokio::spawn(async move {
                let mut request = [0u8; 8];
                if client.read_exact(&mut request).await.is_err() || request != SSL_REQUEST {
                    return;
                }
                if client.write_all(b"S").await.is_err() {
                    return;
                }
                let Ok(mut secured) = tokio_rustls::TlsAcceptor::from(tls).accept(client).await else {
                    return;
                };
                if host.starts_with('/') {
                    let path = format!("{host}/.s.PGSQL.{port}");
                    if let Ok(mut up) = tokio::net::UnixStream::connect(path).await {
                        let _ = tokio::io::copy_bidirectional(&mut secured, &mut up).await;
                    }
                } else if let Ok(mut up) = tokio::net::TcpStream::connect((host.as_str(), port)).await {
                    let _ = tokio::io::copy_bidirectional(&mut secured, &mut up).await;
                }
            });
        }
    });
    port
}

/// With `sslmode=require` the server's certificate must chain to the CA
/// file (or the system's roots) and name the host: a server with another
/// CA's certificate, or with one for another name, is refused before
/// anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_database_verifies_the_servers_certificate_and_name() {
    crate::tls::install_crypto_provider();
    // Certificates are checked against the wall clock.
    #[allow(clippy::disallowed_methods)]
    let now = chrono::Utc::now();
    let db = ScratchDatabase::create().await.unwrap();
    let (host, port) = db.server();
    let ours = crate::tls::BrokerCa::generate(now).unwrap();
    let theirs = crate::tls::BrokerCa::generate(now).unwrap();
    let mut server = (*ours.api_server_config(&["127.0.0.1".into()], now).unwrap()).clone();
    server.alpn_protocols.clear();
    let front = tls_front(Arc::new(server), (host.to_owned(), port)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = |name: &str, pem: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, pem).unwrap();
        Some(path)
    };
    let settings = |host: &str, ca_file: Option<std::path::PathBuf>| super::PgSettings {
        url: format!("{} sslmode=require", db.url_at(host, front)),
        ca_file,
        ..db.settings()
    };

    let store = PgStore::open(&settings("127.0.0.1", ca_file("ours.pem", ours.cert_pem())), true)
        .await
        .unwrap();
    store
        .commit(Change {
            users: vec![user("alice")],
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(store.user(&uid("alice")).await.unwrap().unwrap().version, 1);

    let refused = [
        (
            "another CA",
            settings("127.0.0.1", ca_file("theirs.pem", theirs.cert_pem())),
        ),
        ("the system's roots", settings("127.0.0.1", None)),
        (
            "another name",
            settings("localhost", ca_file("ours.pem", ours.cert_pem())),
        ),
    ];
    for (what, settings) in refused {
        let err = PgStore::open(&settings, true).await.unwrap_err();
        let said = format!("{err}: {:?}", std::error::Error::source(&err));
        assert!(said.contains("cannot reach the database"), "{what}: {said}");
        assert!(said.contains("InvalidCertificate"), "{what}: {said}");
    }
    let empty = ca_file("empty.pem", "");
    let err = PgStore::open(&settings("127.0.0.1", empty), true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("holds no certificate"), "{err}");
}
