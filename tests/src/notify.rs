//! Receivers of the broker's notifications, real programs on loopback:
//! an SMTP server (aiosmtpd, `tests/tools/notify/smtp.py`) and a webhook
//! endpoint that verifies Standard Webhooks signatures with the reference
//! library (`tests/tools/notify/webhook.py`). Each records what it got as
//! JSON lines, and goes down (temporary failures) while a `down` file
//! exists.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::port::ReservedPort;
use crate::test_ca::TestCa;
use crate::{test_tool, workspace};

/// A Python test peer, started and waited for.
#[derive(Debug)]
struct Peer {
    dir: TempDir,
    child: Child,
    port: u16,
}

impl Peer {
    /// Starts the peer on a port reserved for it and waits until it serves.
    async fn start(script: &str, name: &str, env: &[(&str, String)]) -> Peer {
        let dir = tempfile::tempdir().unwrap();
        TestCa::new(name).write(dir.path());
        let socket = ReservedPort::new();
        let log = std::fs::File::create(dir.path().join("peer.log")).unwrap();
        let mut command = Command::new(test_tool("python"));
        command
            .arg(workspace().join("tests/tools/notify").join(script))
            .env(format!("{}_DIR", name.to_uppercase()), dir.path())
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true);
        socket.pass_to(&mut command);
        let child = command.spawn().unwrap();
        let mut me = Peer {
            dir,
            child,
            port: socket.port(),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !me.log().contains("listening on") {
            if let Some(status) = me.child.try_wait().unwrap() {
                panic!("the {name} peer exited with {status}:\n{}", me.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the {name} peer did not start:\n{}",
                me.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        me
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("peer.log")).unwrap_or_default()
    }

    fn records(&self, file: &str) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join(file))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn set_down(&self, down: bool) {
        let flag = self.dir.path().join("down");
        if down {
            std::fs::write(flag, "").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// How the SMTP peer protects its connections.
#[derive(Debug, Clone, Copy)]
pub enum SmtpTls {
    Starttls,
    Implicit,
}

/// The SMTP server.
#[derive(Debug)]
pub struct TestSmtp {
    peer: Peer,
    tls: SmtpTls,
}

/// The password the SMTP peer accepts for `jitgate`.
pub const SMTP_PASSWORD: &str = "correct horse battery staple";

impl TestSmtp {
    pub async fn start(tls: SmtpTls) -> TestSmtp {
        let mode = match tls {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Implicit => "implicit",
        };
        let env = [
            ("SMTP_TLS", mode.to_owned()),
            ("SMTP_PASSWORD", SMTP_PASSWORD.to_owned()),
        ];
        TestSmtp {
            peer: Peer::start("smtp.py", "smtp", &env).await,
            tls,
        }
    }

    /// `[notify.email]` for a broker sending here; the password file is
    /// written beside the peer's files.
    pub fn config(&self) -> String {
        let password = self.peer.path().join("smtp.password");
        std::fs::write(&password, format!("{SMTP_PASSWORD}\n")).unwrap();
        let tls = match self.tls {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Implicit => "implicit",
        };
        format!(
            "[notify.email]\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\ntls = \"{tls}\"\nca_file = \"{}\"\nusername = \"jitgate\"\npassword_file = \"{}\"\nfrom = \"jitgate <jitgate@example.com>\"\ntimeout = \"5s\"\n",
            self.peer.port,
            self.peer.ca_file().display(),
            password.display()
        )
    }

    /// Every message accepted: envelope (`from`, `to`), `subject`,
    /// `message_id`, `parts` by content type, `tls`, `authenticated`.
    pub fn messages(&self) -> Vec<Value> {
        self.peer.records("mail.jsonl")
    }

    /// While down, messages are answered 451 (try again later).
    pub fn set_down(&self, down: bool) {
        self.peer.set_down(down)
    }
}

/// The webhook receiver.
#[derive(Debug)]
pub struct TestWebhook {
    peer: Peer,
    /// The secret the receiver verifies with (`whsec_...`).
    pub secret: String,
}

/// A new Standard Webhooks secret.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

impl TestWebhook {
    pub async fn start() -> TestWebhook {
        let secret = new_secret();
        let env = [("WEBHOOK_SECRET", secret.clone())];
        TestWebhook {
            peer: Peer::start("webhook.py", "webhook", &env).await,
            secret,
        }
    }

    /// `[[notify.webhook]]` named `name` for a broker posting here, signing
    /// with `secrets` (files written beside the peer's).
    pub fn config(&self, name: &str, secrets: &[&str]) -> String {
        let files: Vec<String> = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let path = self.peer.path().join(format!("{name}-{i}.whsec"));
                std::fs::write(&path, s).unwrap();
                format!("\"{}\"", path.display())
            })
            .collect();
        format!(
            "[[notify.webhook]]\nname = \"{name}\"\nurl = \"https://127.0.0.1:{}/hooks/jitgate\"\nsecret_files = [{}]\nca_file = \"{}\"\ntimeout = \"5s\"\n",
            self.peer.port,
            files.join(", "),
            self.peer.ca_file().display()
        )
    }

    /// Every delivery: `verified`, `webhook_id`, `content_type`,
    /// `signatures` (how many), `event` (the CloudEvent).
    pub fn received(&self) -> Vec<Value> {
        self.peer.records("received.jsonl")
    }

    /// While down, deliveries are answered 503 with Retry-After: 1.
    pub fn set_down(&self, down: bool) {
        self.peer.set_down(down)
    }
}
