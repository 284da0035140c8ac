//! A Teams Workflows webhook ("When a Teams webhook request is received")
//! over HTTPS with a test CA: it takes a message with one Adaptive Card
//! attached, answers 202 as Workflows does, and keeps what it got; and
//! the check of those cards with the Adaptive Cards library's own parser
//! at the schema version Teams renders everywhere
//! (`tests/tools/teams/check-card.js`).

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Json;
use serde_json::Value;

use crate::test_ca::TestCa;
use crate::workspace;

#[derive(Clone)]
pub struct TeamsFake {
    pub url: String,
    pub ca_pem: String,
    received: Arc<Mutex<Vec<Value>>>,
    _task: Arc<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for TeamsFake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamsFake").field("url", &self.url).finish()
    }
}

async fn take(State(received): State<Arc<Mutex<Vec<Value>>>>, Json(body): Json<Value>) -> StatusCode {
    received.lock().unwrap().push(body);
    StatusCode::ACCEPTED
}

impl TeamsFake {
    pub async fn start() -> TeamsFake {
        let ca = TestCa::new("Teams fake");
        let received = Arc::new(Mutex::new(Vec::new()));
        let router = axum::Router::new()
            .route("/workflows/{id}/triggers/manual/paths/invoke", post(take))
            .with_state(received.clone());
        let (url, task) = ca.serve(router).await;
        TeamsFake {
            url,
            ca_pem: ca.ca_pem.clone(),
            received,
            _task: Arc::new(task),
        }
    }

    /// `[[notify.teams]]` named `name` posting here; its URL and CA are
    /// written into `dir`.
    pub fn config(&self, name: &str, dir: &std::path::Path) -> String {
        let url = dir.join(format!("teams-{name}.url"));
        std::fs::write(
            &url,
            format!(
                "{}/workflows/abc123/triggers/manual/paths/invoke?api-version=1&sig=test-signature\n",
                self.url
            ),
        )
        .unwrap();
        let ca = dir.join("teams-ca.pem");
        std::fs::write(&ca, &self.ca_pem).unwrap();
        format!(
            "[[notify.teams]]\nname = \"{name}\"\nurl_file = \"{}\"\nca_file = \"{}\"\n",
            url.display(),
            ca.display()
        )
    }

    pub fn received(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

/// What the Adaptive Cards parser, reading at schema `version`, finds
/// wrong with each payload (one list per payload; empty: none).
pub fn card_problems(payloads: &[Value], version: &str) -> Vec<Vec<String>> {
    let script = workspace().join("target/test-tools/teams/check-card.js");
    assert!(
        script.exists(),
        "{} is missing: install the test peers with ./scripts/test-tools (scripts/test does)",
        script.display()
    );
    let mut child = std::process::Command::new("node")
        .arg(&script)
        .arg(version)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        for p in payloads {
            writeln!(stdin, "{p}").unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "check-card.js failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
