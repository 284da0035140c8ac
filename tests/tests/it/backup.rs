//! `jitgate-broker backup` and `restore`: a backup taken from a running
//! broker while requests are being made restores into a new data
//! directory with every grant made before it began, nothing the broker
//! never had, the same keys, and an audit chain that verifies; a store of
//! a newer format is refused at start.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use jitgate_shared::v1::GrantId;
use jitgate_tests::broker::{all_grants, on_postgres, TestBroker};
use jitgate_tests::fixtures::{policies, CATALOG};

use crate::support::request;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn a_backup_taken_while_requests_are_made_restores_every_grant_and_a_verified_chain() {
    let mut b = TestBroker::start(CATALOG, &policies()).await;
    let output = b.path("jitgate.backup");
    if on_postgres() {
        let out = b.offline(&["backup", "--output", output.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("pg_dump"), "{}", stderr(&out));
        return;
    }

    // Requests keep coming while the backup is taken.
    let acknowledged: Arc<Mutex<Vec<GrantId>>> = Arc::default();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let maker = {
        let (client, acknowledged) = (b.client("bob"), acknowledged.clone());
        tokio::spawn(async move {
            loop {
                let r = request(&client, "auto-admin", 600).await;
                acknowledged.lock().unwrap().push(r.grant.unwrap());
                if *stopped.borrow_and_update() {
                    return;
                }
            }
        })
    };
    crate::support::eventually(std::time::Duration::from_secs(30), "requests made", || async {
        (acknowledged.lock().unwrap().len() >= 20).then_some(())
    })
    .await;
    let before: BTreeSet<GrantId> = acknowledged.lock().unwrap().iter().copied().collect();
    let out = b.offline(&["backup", "--output", output.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("from the running broker"), "{said}");
    stop.send(true).unwrap();
    maker.await.unwrap();
    let after: BTreeSet<GrantId> = acknowledged.lock().unwrap().iter().copied().collect();
    assert!(after.len() > before.len(), "requests went on during the backup");
    let had: BTreeSet<GrantId> = all_grants(&b.client("admin"))
        .await
        .iter()
        .map(|g| g.id)
        .collect();
    b.stop().await;

    // The file is the owner's alone, and never written over.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&output).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let again = b.offline(&["backup", "--output", output.to_str().unwrap()]);
    assert!(
        !again.status.success() && stderr(&again).contains("exists"),
        "{}",
        stderr(&again)
    );

    // Restored where the broker's data was, the original kept aside.
    let data = b.data_dir();
    let original = b.path("original-data");
    std::fs::rename(&data, &original).unwrap();
    let out = b.offline(&["restore", "--input", output.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("the audit chain verifies"));
    for key in ["ca.pem", "ca.key", "command.key", "audit.key"] {
        assert_eq!(read(&data.join(key)), read(&original.join(key)), "{key}");
    }
    let verified = b.offline(&["audit", "verify"]);
    assert!(verified.status.success(), "{}", stderr(&verified));
    // A second restore over it is refused.
    let over = b.offline(&["restore", "--input", output.to_str().unwrap()]);
    assert!(
        !over.status.success() && stderr(&over).contains("not empty"),
        "{}",
        stderr(&over)
    );

    // The broker starts on it with everything acknowledged before the
    // backup began, and nothing it never had.
    b.restart().await;
    let restored: BTreeSet<GrantId> = all_grants(&b.client("admin"))
        .await
        .iter()
        .map(|g| g.id)
        .collect();
    let missing: Vec<_> = before.difference(&restored).collect();
    assert!(missing.is_empty(), "grants lost: {missing:?}");
    let invented: Vec<_> = restored.difference(&had).collect();
    assert!(invented.is_empty(), "grants the broker never had: {invented:?}");
    // It goes on granting.
    let r = request(&b.client("bob"), "auto-admin", 600).await;
    assert!(r.grant.is_some());
}

#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_at_start() {
    if on_postgres() {
        // PostgreSQL's schema version is checked the same way
        // (`database::a_broker_runs_only_on_the_schema_it_knows`).
        return;
    }
    let mut b = TestBroker::start(CATALOG, &policies()).await;
    b.stop().await;
    let store = b.data_dir().join(jitgate_broker::store::sled::STORE_DIR);
    let newer = jitgate_broker::store::sled::FORMAT + 1;
    jitgate_broker::store::sled::mark_format(&store, newer).unwrap();
    let out = b.offline(&["serve", "--listen", "127.0.0.1:0", "--hub-listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!("of format {newer}, newer than this broker's")),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_keys_command_makes_a_data_directory_s_keys_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("keys");
    let keys = || {
        let out = std::process::Command::new(jitgate_tests::bin("jitgate-broker"))
            .args(["keys", "--data-dir"])
            .arg(&data)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let first = keys();
    assert_eq!(first.len(), 64, "a SHA-256 fingerprint: {first}");
    let key = read(&data.join("command.key"));
    assert_eq!(keys(), first, "made once, then kept");
    assert_eq!(read(&data.join("command.key")), key);
    use std::os::unix::fs::PermissionsExt;
    for private in ["ca.key", "command.key", "audit.key"] {
        let mode = std::fs::metadata(data.join(private))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{private}");
    }
}
