//! A broker process under test.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use jitgate_broker::cli::client::{ApiClient, ClientError};
use jitgate_broker::store::postgres::scratch::ScratchDatabase;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::bin;

/// Which store test brokers run on: `JITGATE_TEST_STORE=postgres` puts
/// each on a database of its own (from `scripts/with-test-database`); the
/// embedded store otherwise.
pub fn on_postgres() -> bool {
    match std::env::var("JITGATE_TEST_STORE").as_deref() {
        Ok("postgres") => true,
        Ok("sled") | Ok("") | Err(_) => false,
        Ok(other) => panic!("JITGATE_TEST_STORE=`{other}`: sled or postgres"),
    }
}

/// Where a test broker's state is: the database (on PostgreSQL), the data
/// directory (CA, keys, the embedded store) and the policies.
struct Store {
    database_url: Option<String>,
    data_dir: PathBuf,
    policy_dir: PathBuf,
}

#[derive(Debug)]
pub struct TestBroker {
    dir: TempDir,
    /// With `JITGATE_TEST_STORE=postgres`: the broker's database, kept
    /// to be dropped with it.
    _database: Option<ScratchDatabase>,
    /// The database's URL (a peer's is its first broker's).
    database_url: Option<String>,
    /// Data and policy directories: this broker's own, or a peer's first
    /// broker's (the CA and keys every broker shares).
    data_dir: PathBuf,
    policy_dir: PathBuf,
    child: Option<Child>,
    pub url: String,
    tokens: HashMap<String, String>,
    starts: usize,
    /// `wss://127.0.0.1:PORT` of the agent hub; the port is kept across
    /// restarts so enrolled agents find it again.
    pub hub_url: String,
    hub_port: u16,
    extra: Vec<String>,
    log_filter: String,
    /// Where strace records the system calls, when run under it.
    trace: Option<PathBuf>,
}

/// A test that fails shows what its brokers warned of: their log goes with
/// their temporary directory.
impl Drop for TestBroker {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let troubles = self.log_troubles(40);
            if !troubles.is_empty() {
                eprintln!(
                    "--- broker {} (start {}): its last warnings and errors\n{}",
                    self.url,
                    self.starts,
                    troubles.join("\n")
                );
            }
        }
    }
}

/// CPU time (user + system) of the process whose `/proc/PID/stat` is at
/// `stat`; `/proc/self/stat` for this one.
pub fn cpu_time_of(stat: &str) -> Duration {
    let stat = std::fs::read_to_string(stat).unwrap();
    // Fields after the command name, which is in parentheses and may hold
    // spaces: utime and stime are the 12th and 13th of them, in clock
    // ticks (100 a second on Linux).
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// The log filter of test brokers: enough to read a failure.
pub const TEST_LOG: &str = "info,jitgate_broker=debug";

impl TestBroker {
    /// Loads `catalog` (TOML, as deploy/quickstart/catalog.toml) into a new
    /// data directory, writes `policies`, and starts `jitgate-broker serve`.
    pub async fn start(catalog: &str, policies: &[(&str, &str)]) -> Self {
        Self::start_with(catalog, policies, &[]).await
    }

    /// As [`start`](Self::start), with more `serve` flags.
    pub async fn start_with(catalog: &str, policies: &[(&str, &str)], extra: &[&str]) -> Self {
        Self::start_logging(catalog, policies, extra, TEST_LOG).await
    }

    /// As [`start_with`](Self::start_with), logging with `log_filter`
    /// (`RUST_LOG` syntax); benchmarks log less.
    pub async fn start_logging(
        catalog: &str,
        policies: &[(&str, &str)],
        extra: &[&str],
        log_filter: &str,
    ) -> Self {
        Self::start_full(catalog, policies, extra, log_filter, on_postgres()).await
    }

    /// As [`start_with`](Self::start_with), every run under strace,
    /// which records its system calls into `trace`.
    pub async fn start_traced(
        catalog: &str,
        policies: &[(&str, &str)],
        extra: &[&str],
        trace: &Path,
    ) -> Self {
        let mut me = Self::prepared(catalog, policies, extra, TEST_LOG, on_postgres()).await;
        me.trace = Some(trace.to_owned());
        me.spawn().await;
        me
    }

    /// As [`start`](Self::start), on a PostgreSQL database of its own
    /// whatever `JITGATE_TEST_STORE` says.
    pub async fn start_on_postgres(catalog: &str, policies: &[(&str, &str)], extra: &[&str]) -> Self {
        Self::start_full(catalog, policies, extra, TEST_LOG, true).await
    }

    async fn start_full(
        catalog: &str,
        policies: &[(&str, &str)],
        extra: &[&str],
        log_filter: &str,
        postgres: bool,
    ) -> Self {
        let mut me = Self::prepared(catalog, policies, extra, log_filter, postgres).await;
        me.spawn().await;
        me
    }

    /// A data directory with `catalog` loaded and `policies` written, the
    /// broker not started.
    async fn prepared(
        catalog: &str,
        policies: &[(&str, &str)],
        extra: &[&str],
        log_filter: &str,
        postgres: bool,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("policies")).unwrap();
        for (name, text) in policies {
            std::fs::write(dir.path().join("policies").join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("catalog.toml"), catalog).unwrap();
        let database = if postgres {
            Some(ScratchDatabase::create().await.unwrap())
        } else {
            None
        };
        let store = Store {
            database_url: database.as_ref().map(ScratchDatabase::url),
            data_dir: dir.path().join("data"),
            policy_dir: dir.path().join("policies"),
        };
        let mut me = Self::unstarted(dir, database, store, extra, log_filter);
        let out = me.offline(&["catalog", "load", me.path("catalog.toml").to_str().unwrap()]);
        assert!(
            out.status.success(),
            "catalog load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let (user, token) = line.split_once('\t').unwrap();
            me.tokens.insert(user.to_owned(), token.to_owned());
        }
        me
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone()
    }

    /// Another broker on `first`'s database, data directory (CA, keys)
    /// and policies, with its own ports and logs: several brokers serving
    /// one deployment. `first` must be on PostgreSQL.
    pub async fn start_peer(first: &TestBroker, extra: &[&str]) -> Self {
        assert!(first.database_url.is_some(), "peers share a PostgreSQL store");
        let store = Store {
            database_url: first.database_url.clone(),
            data_dir: first.data_dir.clone(),
            policy_dir: first.policy_dir.clone(),
        };
        let dir = tempfile::tempdir().unwrap();
        let mut me = Self::unstarted(dir, None, store, extra, &first.log_filter);
        me.tokens = first.tokens.clone();
        me.spawn().await;
        me
    }

    /// A broker in `dir` (its logs) on `store`, not started yet.
    fn unstarted(
        dir: TempDir,
        database: Option<ScratchDatabase>,
        store: Store,
        extra: &[&str],
        log_filter: &str,
    ) -> Self {
        Self {
            dir,
            _database: database,
            database_url: store.database_url,
            data_dir: store.data_dir,
            policy_dir: store.policy_dir,
            child: None,
            url: String::new(),
            tokens: HashMap::new(),
            starts: 0,
            hub_url: String::new(),
            hub_port: 0,
            extra: extra.iter().map(|s| (*s).to_owned()).collect(),
            log_filter: log_filter.to_owned(),
            trace: None,
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.data_dir.join("ca.pem")
    }

    fn log_path(&self) -> PathBuf {
        self.path(&format!("broker-{}.log", self.starts))
    }

    /// The broker's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The log's last `n` warnings and errors.
    pub fn log_troubles(&self, n: usize) -> Vec<String> {
        let log = self.log();
        let troubles: Vec<&str> = log
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        troubles[troubles.len().saturating_sub(n)..]
            .iter()
            .map(|l| (*l).to_owned())
            .collect()
    }

    async fn spawn(&mut self) {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path()).unwrap();
        let program = bin("jitgate-broker");
        let mut command = match &self.trace {
            Some(trace) => crate::traced(&program, trace),
            None => Command::new(&program),
        };
        let child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(self.data_dir())
            .arg("--policy-dir")
            .arg(&self.policy_dir)
            .args(["--server-name", "127.0.0.1", "--hub-listen"])
            .arg(format!("127.0.0.1:{}", self.hub_port))
            .args(&self.extra)
            .envs(self.store_env())
            .env("RUST_LOG", &self.log_filter)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(rest) = log.split("broker listening on ").nth(1) {
                self.url = rest.split_whitespace().next().unwrap().to_owned();
                let hub = log.split("agent hub listening on ").nth(1).unwrap();
                self.hub_url = hub.split_whitespace().next().unwrap().to_owned();
                self.hub_port = self.hub_url.rsplit(':').next().unwrap().parse().unwrap();
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("broker exited with {status} before listening:\n{log}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "broker did not start:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn token(&self, user: &str) -> &str {
        self.tokens
            .get(user)
            .unwrap_or_else(|| panic!("no token for {user}"))
    }

    /// A client authenticated as `user`.
    pub fn client(&self, user: &str) -> ApiClient {
        ApiClient::new(&self.url, Some(self.token(user).to_owned()), Some(&self.ca())).unwrap()
    }

    pub fn anonymous(&self) -> ApiClient {
        ApiClient::new(&self.url, None, Some(&self.ca())).unwrap()
    }

    /// What `/metrics` shows, if the broker answers.
    pub async fn metrics_text(&self) -> Option<String> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(self.ca()).ok()?).ok()?;
        let client = reqwest::Client::builder().tls_certs_only([ca]).build().ok()?;
        client
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    }

    /// The value of a Prometheus sample (`name` or `name{labels}`) on
    /// `/metrics`, summed over its label sets when `name` names several,
    /// if the broker answers and has it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = self.metrics_text().await?;
        let values: Vec<f64> = text
            .lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        (!values.is_empty()).then(|| values.iter().sum())
    }

    /// Resident and peak resident memory of the broker process, in KiB
    /// (from `/proc/PID/status`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// How many files the broker process has open now (`/proc/PID/fd`).
    pub fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, Iterator::count)
    }

    /// CPU time the broker process has used so far (user + system).
    pub fn cpu_time(&self) -> Duration {
        cpu_time_of(&format!("/proc/{}/stat", self.pid()))
    }

    pub fn pid(&self) -> u32 {
        let pid = self.child.as_ref().and_then(Child::id).unwrap();
        if self.trace.is_some() {
            crate::tracee_of(pid)
        } else {
            pid
        }
    }

    /// Sends a signal by name (`HUP`, `TERM`, `KILL`).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// SIGKILL: no shutdown code runs.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub async fn stop(&mut self) {
        if self.child.is_some() {
            self.signal("TERM");
            let status = self.child.take().unwrap().wait().await.unwrap();
            assert!(status.success(), "broker exited with {status}:\n{}", self.log());
        }
    }

    pub async fn restart(&mut self) {
        self.spawn().await;
    }

    /// The environment naming the broker's store, when it is not the
    /// embedded one in its data directory.
    fn store_env(&self) -> Vec<(&'static str, String)> {
        match &self.database_url {
            Some(url) => vec![
                ("JITGATE_STORE", "postgres".to_owned()),
                ("JITGATE_DATABASE_URL", url.clone()),
            ],
            None => Vec::new(),
        }
    }

    /// The broker's database URL, on PostgreSQL.
    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// Runs `jitgate-broker ARGS --data-dir DATA` on the broker's store
    /// (for offline commands).
    pub fn offline(&self, args: &[&str]) -> Output {
        std::process::Command::new(bin("jitgate-broker"))
            .args(args)
            .arg("--data-dir")
            .arg(self.data_dir())
            .envs(self.store_env())
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    /// Runs the `jitgate` CLI as `user`.
    pub fn cli(&self, user: &str, args: &[&str]) -> Output {
        std::process::Command::new(bin("jitgate"))
            .args(args)
            .env("JITGATE_SERVER", &self.url)
            .env("JITGATE_TOKEN", self.token(user))
            .env("JITGATE_CA_CERT", self.ca())
            .output()
            .unwrap()
    }

    pub fn write_policy(&self, name: &str, text: &str) {
        std::fs::write(self.policy_dir.join(name), text).unwrap();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

/// Every item of a listing, page by page: `fetch` gets a page's query
/// (`limit`, and `after` from the previous page's `next`).
async fn every_page<T, F, Fut>(mut fetch: F) -> Vec<T>
where
    F: FnMut(Vec<(&'static str, String)>) -> Fut,
    Fut: std::future::Future<Output = jitgate_shared::v1::api::Page<T>>,
{
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut query = vec![("limit", "500".to_owned())];
        if let Some(a) = after.take() {
            query.push(("after", a));
        }
        let page = fetch(query).await;
        out.extend(page.items);
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

/// Every grant, page by page.
pub async fn all_grants(admin: &ApiClient) -> Vec<jitgate_shared::v1::api::GrantView> {
    every_page(|q| async move { while_busy(|| admin.grants(&q)).await }).await
}

/// Every request, page by page.
pub async fn all_requests(admin: &ApiClient) -> Vec<jitgate_shared::v1::api::RequestView> {
    every_page(|q| async move { while_busy(|| admin.requests(&q)).await }).await
}

/// `call`'s answer, asked again while the broker says 503 (a store with
/// no connection free, whose `Retry-After` is 1 s) or does not answer in
/// the client's time, for up to a minute: under load a reader waits as a
/// client would, and only then fails.
async fn while_busy<T, Fut>(mut call: impl FnMut() -> Fut) -> T
where
    Fut: std::future::Future<Output = Result<T, ClientError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Ok(answer) => return answer,
            Err(e)
                if (matches!(e, ClientError::Transport { .. })
                    || e.status() == Some(reqwest::StatusCode::SERVICE_UNAVAILABLE))
                    && tokio::time::Instant::now() < deadline =>
            {
                eprintln!("the broker is busy ({e}); asking again in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}
