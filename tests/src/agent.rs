//! A gateway agent process under test: enrolled with a join token against a
//! [`TestBroker`], running the sandbox provider with its simulated tenant in
//! a file the test can read.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use jitgate_shared::v1::api::CreateJoinTokenBody;
use jitgate_shared::v1::{AgentId, ConfigId, Entitlement};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::bin;
use crate::broker::TestBroker;

/// One change of the sandbox tenant.
#[derive(Debug, Clone)]
pub struct TenantChange {
    pub op: String,
    pub entitlement: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug)]
pub struct TestAgent {
    dir: TempDir,
    child: Option<Child>,
    pub id: AgentId,
    args: Vec<String>,
    /// `--provider ...` and its flags; the sandbox in `tenant_file` unless
    /// set by [`start_provider`](Self::start_provider).
    provider: Vec<String>,
    env: Vec<(String, String)>,
    starts: usize,
    /// Where strace records the system calls, when run under it.
    trace: Option<PathBuf>,
}

impl TestAgent {
    /// Makes a join token as admin and runs `jitgate-agent enroll`.
    /// `hub_url` overrides where it connects (a fault proxy).
    pub async fn enroll(broker: &TestBroker, configuration: &str, hub_url: Option<&str>) -> Self {
        let issued = broker
            .client("admin")
            .create_join_token(&CreateJoinTokenBody {
                configuration: ConfigId::new(configuration).unwrap(),
                ttl_seconds: None,
            })
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(bin("jitgate-agent"));
        cmd.arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["enroll", "--broker", &broker.url, "--token", &issued.token])
            .args(["--ca-fingerprint", &issued.ca_fingerprint]);
        if let Some(url) = hub_url {
            cmd.args(["--hub-url", url]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "enroll failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let id = stdout
            .split("enrolled agent ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        Self {
            dir,
            child: None,
            id,
            args: Vec::new(),
            provider: Vec::new(),
            env: Vec::new(),
            starts: 0,
            trace: None,
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn tenant_file(&self) -> PathBuf {
        self.dir.path().join("tenant.json")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(format!("agent-{}.log", self.starts))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs the agent under strace from its next start on, recording its
    /// system calls into `trace`.
    pub fn trace_into(&mut self, trace: &std::path::Path) {
        self.trace = Some(trace.to_owned());
    }

    /// Starts `jitgate-agent run --provider sandbox` with `extra` flags.
    /// Reconnects within a second unless `extra` says otherwise.
    pub async fn start(&mut self, extra: &[&str]) {
        self.args = extra.iter().map(|s| (*s).to_owned()).collect();
        if !extra.contains(&"--reconnect-max") {
            self.args.extend(["--reconnect-max".to_owned(), "1s".to_owned()]);
        }
        self.spawn();
    }

    /// Starts `jitgate-agent run` with `provider` (`--provider KIND` and
    /// its flags) and `env`, reconnecting within a second.
    pub async fn start_provider(&mut self, provider: &[&str], env: &[(&str, &str)]) {
        self.provider = provider.iter().map(|s| (*s).to_owned()).collect();
        self.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.start(&[]).await;
    }

    fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let provider = if self.provider.is_empty() {
            vec![
                "--provider".to_owned(),
                "sandbox".to_owned(),
                "--sandbox-state".to_owned(),
                self.tenant_file().display().to_string(),
            ]
        } else {
            self.provider.clone()
        };
        let program = bin("jitgate-agent");
        let mut command = match &self.trace {
            Some(trace) => crate::traced(&program, trace),
            None => Command::new(&program),
        };
        let child = command
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("run")
            .args(provider)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("RUST_LOG", "info,jitgate_agent=debug")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Waits until this run of the agent has a session with the broker.
    pub async fn connected(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.log().contains("connected to the broker") {
            assert!(
                tokio::time::Instant::now() < deadline,
                "agent did not connect:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL: nothing of the agent's shutdown runs.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// Waits for this run to exit by itself (a start-up failure), at most
    /// `within`.
    pub async fn exit_status(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("the agent was started");
        tokio::time::timeout(within, child.wait())
            .await
            .unwrap_or_else(|_| panic!("the agent still runs:\n{}", self.log()))
            .unwrap()
    }

    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn();
    }

    /// What the simulated tenant holds now.
    pub fn tenant(&self) -> BTreeSet<Entitlement> {
        match std::fs::read_to_string(self.tenant_file()) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => BTreeSet::new(),
        }
    }

    /// Every change the simulated tenant went through, in order: `apply`
    /// or `remove`, and the principal it was for.
    pub fn tenant_changes(&self) -> Vec<(String, String)> {
        let log = std::fs::read_to_string(self.tenant_file().with_extension("log")).unwrap_or_default();
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                (
                    v["op"].as_str().unwrap_or_default().to_owned(),
                    v["principal"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    /// Every change the simulated tenant went through, in order: what
    /// (`apply` or `remove`), to which entitlement (principal and target,
    /// as JSON) and when.
    pub fn tenant_log(&self) -> Vec<TenantChange> {
        let log = std::fs::read_to_string(self.tenant_file().with_extension("log")).unwrap_or_default();
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| TenantChange {
                op: v["op"].as_str().unwrap_or_default().to_owned(),
                entitlement: format!("{} {}", v["principal"], v["target"]),
                at: serde_json::from_value(v["at"].clone()).unwrap(),
            })
            .collect()
    }

    /// `jitgate-agent status` output (reads the journal; the agent must be stopped).
    pub fn status(&self) -> String {
        let out = std::process::Command::new(bin("jitgate-agent"))
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("status")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
    }
}
