//! The README's first command: `jitgate-broker quickstart` starts a broker
//! and one sandbox agent per configuration, prints where it listens and
//! writes the CLI's settings; the walkthrough it prints then works.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use jitgate_broker::cli::client::ApiClient;
use jitgate_shared::v1::api::{CreateRequestBody, RequestState};
use jitgate_tests::{bin, workspace};

use crate::support::eventually;

/// Kills the quickstart (and with it its agents) however the test ends.
struct Running(std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sandbox agents running with state under `dir`.
fn agents_under(dir: &std::path::Path) -> usize {
    let dir = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).into_owned())
        .filter(|c| c.contains("jitgate-agent") && c.contains(&dir))
        .count()
}

/// `export NAME=value` lines of the env file.
fn exported(env: &str, name: &str) -> String {
    env.lines()
        .find_map(|l| l.strip_prefix(&format!("export {name}=")))
        .unwrap_or_else(|| panic!("{name} is not in the env file:\n{env}"))
        .to_owned()
}

#[tokio::test]
async fn the_quickstart_runs_the_walkthrough_it_prints() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(bin("jitgate-broker"))
        .arg("quickstart")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--policy-dir")
        .arg(workspace().join("policies"))
        .arg("--catalog")
        .arg(workspace().join("deploy/quickstart/catalog.toml"))
        .args(["--listen", "127.0.0.1:0", "--hub-listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    // The greeting, read on a thread (a blocking pipe) until its last line.
    let greeting = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            text.push_str(&line);
            text.push('\n');
            if line.starts_with("Stop with Ctrl-C") {
                break;
            }
        }
        text
    });
    let greeting = tokio::time::timeout(Duration::from_secs(60), greeting)
        .await
        .expect("the quickstart greets within a minute")
        .unwrap();
    assert!(greeting.contains("Demo users: alice (requester)"), "{greeting}");
    let env_file = dir.path().join("data/env.sh");
    assert!(
        greeting.contains(&format!("source {}", env_file.canonicalize().unwrap().display())),
        "{greeting}"
    );

    // The settings it wrote are the ones the walkthrough uses.
    let env = std::fs::read_to_string(&env_file).unwrap();
    let server = exported(&env, "JITGATE_SERVER");
    assert!(greeting.contains(&format!("broker on {server}")), "{greeting}");
    let ca = exported(&env, "JITGATE_CA_CERT");
    let client = |who: &str| {
        ApiClient::new(
            &server,
            Some(exported(&env, &format!("{who}_TOKEN"))),
            Some(ca.as_ref()),
        )
        .unwrap()
    };

    // Every configuration's sandbox agent is online.
    let admin = client("ADMIN");
    let configurations = admin.configurations().await.unwrap();
    assert!(!configurations.is_empty());
    eventually(Duration::from_secs(30), "every sandbox agent online", || async {
        let agents = admin.agents().await.unwrap();
        configurations
            .iter()
            .all(|c| agents.iter().any(|a| a.configuration == c.id && a.online))
            .then_some(())
    })
    .await;

    // The walkthrough: alice asks, bob approves, the agent applies it.
    let request = client("ALICE")
        .create_request(&CreateRequestBody {
            resource: "aws-dev-admin".parse().unwrap(),
            duration_seconds: Some(120),
            justification: Some("try jitgate".into()),
            ticket: None,
            starts_at: None,
            break_glass: false,
        })
        .await
        .unwrap();
    assert_eq!(request.state, RequestState::Pending);
    let approved = client("BOB").approve(request.id, None).await.unwrap();
    let grant = approved.grant.expect("approved into a grant");
    let alice = client("ALICE");
    eventually(
        Duration::from_secs(30),
        "the grant applied by the sandbox agent",
        || async { alice.grant(grant).await.unwrap().applied_at },
    )
    .await;
    assert_eq!(agents_under(dir.path()), configurations.len());

    // Ctrl-C (SIGTERM here) stops the broker cleanly and its agents with it.
    let mut running = running;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(running.0.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let exited = tokio::task::spawn_blocking(move || {
        let status = running.0.wait();
        (running, status)
    });
    let (_running, status) = tokio::time::timeout(Duration::from_secs(30), exited)
        .await
        .expect("the quickstart stops on SIGTERM")
        .unwrap();
    assert!(status.unwrap().success());
    eventually(Duration::from_secs(10), "the sandbox agents gone", || async {
        (agents_under(dir.path()) == 0).then_some(())
    })
    .await;
}
