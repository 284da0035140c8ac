//! Agent channel benchmark. Prints, in one run, each result beside its
//! baseline measured in the same process:
//!
//! 1. grant round trip: from the broker sending a signed command on the
//!    hub to the agent's answer arriving (the broker's
//!    `jitgate_command_round_trip_seconds`), with the sandbox at zero
//!    latency, against a bare mutual-TLS websocket echo of a frame of the
//!    same size on the same machine plus one agent journal flush (the
//!    agent's durable floor); target: at most 1.5×.
//! 2. 10,000 agents connected at once: broker resident memory (target
//!    under 500 MiB), and the time until all of them are connected again
//!    after a broker restart (target: under 10 s).
//! 3. the whole system: requests made and approved through the API by 16
//!    clients for 60 s, their grants applied by a sandbox agent, against
//!    request creation alone by the same clients in the same run; target:
//!    at least 0.5×.
//!
//! Broker and agents are the release builds (the benchmark builds them
//! first); the broker runs as its own process so its memory is its own.
//! The agents are real agents (journal, sandbox, channel) with the
//! default reconnect settings: part 1's in this process, part 2's in
//! client processes of 2,500 each (this benchmark started again with
//! `--serve-agents`), since a process may hold 20,000 open files here.
//!
//! Run: `cargo bench -p jitgate-tests --bench agents` (add `-- --quick`
//! for a smaller, faster run, `-- --only 2` for one part).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use jitgate_agent::agent::Agent;
use jitgate_agent::channel::ChannelSettings;
use jitgate_agent::provider::sandbox::{Sandbox, SandboxSettings};
use jitgate_agent::state::StateDir;
use jitgate_broker::cli::client::ApiClient;
use jitgate_shared::v1::api::{CreateJoinTokenBody, CreateRequestBody};
use jitgate_shared::v1::protocol::{self, BrokerMessage, Outcome};
use jitgate_shared::v1::signing::CommandSigner;
use jitgate_shared::v1::{ConfigId, GrantId, ResourceId};
use jitgate_tests::broker::{all_grants, cpu_time_of, TestBroker};
use jitgate_tests::fixtures::{policies, reviewed_catalog, BULK_POLICY, CATALOG, REVIEWED_WORKFLOWS};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Brokers in this benchmark log what an operator would see.
const LOG: &str = "warn,jitgate_broker=info";

struct Options {
    quick: bool,
    only: Option<u32>,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().collect();
    Options {
        quick: args.iter().any(|a| a == "--quick"),
        only: args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok()),
    }
}

/// Builds the release binaries the harness runs.
fn build_binaries() {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "--bins",
            "-p",
            "jitgate-broker",
            "-p",
            "jitgate-agent",
        ])
        .current_dir(jitgate_tests::workspace())
        .status()
        .unwrap();
    assert!(status.success(), "building the release binaries failed");
}

fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let args: Vec<String> = std::env::args().collect();
    if let Some(list) = args
        .iter()
        .position(|a| a == SERVE_AGENTS)
        .and_then(|i| args.get(i + 1))
    {
        rt.block_on(serve_agents(std::path::Path::new(list)));
        return;
    }
    let opts = options();
    build_binaries();
    rt.block_on(async {
        if opts.only.is_none_or(|p| p == 1) {
            round_trip(if opts.quick { 200 } else { 1000 }).await;
        }
        if opts.only.is_none_or(|p| p == 2) {
            many_agents(if opts.quick { 1_000 } else { 10_000 }).await;
        }
        if opts.only.is_none_or(|p| p == 3) {
            whole_system(if opts.quick { 10 } else { 60 }).await;
        }
    });
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn summarize(mut samples: Vec<Duration>) -> Summary {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Summary {
        mean: samples.iter().sum::<Duration>() / samples.len() as u32,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

// ---------------------------------------------------------------- part 1

/// Part 1: the grant round trip against a bare echo.
async fn round_trip(cycles: usize) {
    println!("\n== 1. grant round trip (broker dispatch -> agent answer), {cycles} grant/revoke cycles");
    let b = TestBroker::start_logging(CATALOG, &policies(), &[], LOG).await;
    let alice = b.client("alice");
    // One grant queued while no agent is there gives the size of a real
    // command frame, then goes out when the agent connects.
    let first = alice
        .create_request(&ask("auto-admin"))
        .await
        .unwrap()
        .grant
        .unwrap();
    let frame = command_frame_len(&b).await;
    let root = tempfile::tempdir().unwrap();
    let state = enroll_many(&b, root.path(), 1).await.pop().unwrap();
    let agent = start_agent(state, None);
    assert!(all_connected(std::slice::from_ref(&agent), true, Duration::from_secs(20)).await);
    until(&b, first, |g| g.applied_at.is_some()).await;
    alice.revoke(first, None).await.unwrap();
    until(&b, first, |g| g.removed_at.is_some()).await;

    // Echo and commands alternate in rounds, so drift in the machine's
    // speed affects both alike.
    const ROUNDS: usize = 4;
    let echo_link = EchoLink::open(frame).await;
    let (mut echo_samples, mut observed) = (Vec::new(), Vec::new());
    let (mut commands, mut seconds) = (0.0, 0.0);
    for _ in 0..ROUNDS {
        echo_samples.extend(echo_link.round_trips(2 * cycles / ROUNDS).await);
        let before = round_trip_metric(&b).await;
        for _ in 0..cycles / ROUNDS {
            let started = Instant::now();
            let r = alice.create_request(&ask("auto-admin")).await.unwrap();
            let grant = r.grant.expect("auto-approved");
            until(&b, grant, |g| g.applied_at.is_some()).await;
            observed.push(started.elapsed());
            alice.revoke(grant, None).await.unwrap();
            until(&b, grant, |g| g.removed_at.is_some()).await;
        }
        let after = round_trip_metric(&b).await;
        commands += after.0 - before.0;
        seconds += after.1 - before.1;
    }
    assert!(
        commands >= (2 * (cycles / ROUNDS) * ROUNDS) as f64,
        "every grant and revoke answered"
    );
    let trip = Duration::from_secs_f64(seconds / commands);
    let echo = summarize(echo_samples);
    let seen = summarize(observed);

    let flush = flush_floor(root.path(), 2 * cycles).await;
    println!("  command frame                      {frame} bytes");
    println!(
        "  bare mTLS websocket echo           mean {}  p50 {}  p99 {}",
        ms(echo.mean),
        ms(echo.p50),
        ms(echo.p99)
    );
    println!(
        "  journal write + flush (sled)       mean {}  (the agent flushes once per command)",
        ms(flush)
    );
    println!(
        "  grant round trip (broker metric)   mean {}  over {commands} commands",
        ms(trip)
    );
    println!(
        "  request -> applied seen by client  mean {}  p50 {}  p99 {}  (API, policy, store, hub, agent, polling)",
        ms(seen.mean),
        ms(seen.p50),
        ms(seen.p99)
    );
    println!(
        "  ratio round trip / echo            {:.2}x  (target <= 2x)",
        trip.as_secs_f64() / echo.mean.as_secs_f64()
    );
    let floor = echo.mean + flush;
    println!(
        "  ratio round trip / (echo + one journal flush, the durable floor)  {:.2}x  (target <= 1.5x {})",
        trip.as_secs_f64() / floor.as_secs_f64(),
        if trip.as_secs_f64() <= 1.5 * floor.as_secs_f64() {
            "MET"
        } else {
            "NOT MET"
        }
    );
    agent.stop().await;
}

fn ask(resource: &str) -> CreateRequestBody {
    CreateRequestBody {
        resource: ResourceId::new(resource).unwrap(),
        duration_seconds: Some(3600),
        justification: Some("benchmark".into()),
        ticket: None,
        starts_at: None,
        break_glass: false,
    }
}

async fn until(b: &TestBroker, id: GrantId, done: impl Fn(&jitgate_shared::v1::api::GrantView) -> bool) {
    let admin = b.client("admin");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if done(&admin.grant(id).await.unwrap()) {
            return;
        }
        assert!(Instant::now() < deadline, "grant {id} did not settle");
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// The size of a signed grant command as the hub sends it, from the one
/// command in the outbox, signed with a throwaway key of the same kind.
async fn command_frame_len(b: &TestBroker) -> usize {
    let queued = b.client("admin").outbox("aws-test", 1).await.unwrap();
    let body = queued.first().expect("a queued grant command");
    let signed = CommandSigner::from_secret(&[7; 32]).sign(body);
    protocol::encode(&BrokerMessage::Command { command: signed }).len()
}

/// The broker's count and sum of command round trips so far.
async fn round_trip_metric(b: &TestBroker) -> (f64, f64) {
    (
        b.metric("jitgate_command_round_trip_seconds_count")
            .await
            .unwrap_or(0.0),
        b.metric("jitgate_command_round_trip_seconds_sum")
            .await
            .unwrap_or(0.0),
    )
}

type EchoWs = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// A websocket echo over mutual TLS with the same crates and key types as
/// the hub, in this process: the floor any command round trip stands on.
struct EchoLink {
    ws: tokio::sync::Mutex<EchoWs>,
    payload: String,
    server: tokio::task::JoinHandle<()>,
}

impl EchoLink {
    async fn open(frame: usize) -> Self {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::from_ca_cert_der(ca_cert.der(), ca_key).unwrap();
        let leaf = |san: rcgen::SanType| {
            let key = rcgen::KeyPair::generate().unwrap();
            let mut params = rcgen::CertificateParams::default();
            params.subject_alt_names = vec![san];
            let cert = params.signed_by(&key, &issuer).unwrap();
            (
                vec![cert.der().clone()],
                PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
        };
        let (server_chain, server_key) = leaf(rcgen::SanType::IpAddress([127, 0, 0, 1].into()));
        let (client_chain, client_key) =
            leaf(rcgen::SanType::URI("urn:jitgate:agent:echo".try_into().unwrap()));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca_cert.der().to_vec())).unwrap();
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder(roots.clone())
            .build()
            .unwrap();
        let server = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(server_chain, server_key)
            .unwrap();
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_client_auth_cert(client_chain, client_key)
            .unwrap();

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let tls = acceptor.accept(tcp).await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tls).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        let tcp = TcpStream::connect(addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let (ws, _) = tokio_tungstenite::client_async(format!("wss://{addr}/echo"), tls)
            .await
            .unwrap();
        Self {
            ws: tokio::sync::Mutex::new(ws),
            payload: "x".repeat(frame),
            server,
        }
    }

    /// `n` frames sent one after another, each after the previous echo.
    async fn round_trips(&self, n: usize) -> Vec<Duration> {
        let mut ws = self.ws.lock().await;
        let mut samples = Vec::with_capacity(n);
        for _ in 0..n {
            let started = Instant::now();
            ws.send(Message::text(self.payload.clone())).await.unwrap();
            let back = ws.next().await.unwrap().unwrap();
            samples.push(started.elapsed());
            assert_eq!(back.len(), self.payload.len());
        }
        samples
    }
}

impl Drop for EchoLink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---------------------------------------------------------------- part 2

/// Agents per client process: each keeps a journal and a socket open, and
/// a process may hold 20,000 open files here.
const AGENTS_PER_PROCESS: usize = 2_500;

/// Part 2: `n` agents connected at once, spread over client processes.
async fn many_agents(n: usize) {
    let processes = n.div_ceil(AGENTS_PER_PROCESS);
    println!("\n== 2. {n} agents connected at once, run by {processes} client process(es)");
    let mut b = TestBroker::start_logging(CATALOG, &policies(), &[], LOG).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (idle_rss, _) = b.memory_kib();

    let root = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let states = enroll_many(&b, root.path(), n).await;
    println!(
        "  enrolled                           {n} agents in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let fleet = Fleet::start(root.path(), &states, processes);
    let connected = fleet.all(true, Duration::from_secs(300)).await;
    println!(
        "  first connection of all            {:.2} s",
        started.elapsed().as_secs_f64()
    );
    assert!(connected, "not every agent connected");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let online = b.metric("jitgate_agents_online").await.unwrap_or(0.0);
    let (rss, peak) = b.memory_kib();
    println!(
        "  broker resident memory, idle       {:.1} MiB",
        idle_rss as f64 / 1024.0
    );
    println!(
        "  broker resident memory, {n} online  {:.1} MiB (peak {:.1} MiB; {:.1} KiB per agent; target < 500 MiB); broker counts {online} online",
        rss as f64 / 1024.0,
        peak as f64 / 1024.0,
        rss.saturating_sub(idle_rss) as f64 / n as f64
    );

    let restart = Instant::now();
    b.stop().await;
    let stopped = restart.elapsed();
    assert!(
        fleet.all(false, Duration::from_secs(60)).await,
        "agents noticed the broker gone"
    );
    let respawn = Instant::now();
    let fleet_cpu = fleet.cpu_time();
    b.restart().await;
    let broker_cpu = b.cpu_time();
    let listening = respawn.elapsed();
    let back = fleet.all(true, Duration::from_secs(300)).await;
    let reconnected = respawn.elapsed();
    assert!(back, "not every agent reconnected");
    let cores = |used: Duration| used.as_secs_f64() / reconnected.as_secs_f64();
    let (broker_busy, fleet_busy) = (
        cores(b.cpu_time() - broker_cpu),
        cores(fleet.cpu_time() - fleet_cpu),
    );
    println!(
        "  broker restart                     stopped in {:.2} s, listening {:.2} s after start",
        stopped.as_secs_f64(),
        listening.as_secs_f64()
    );
    println!(
        "  all {n} reconnected                {:.2} s after the broker started  (target < 10 s; agents back off up to 5 s)",
        reconnected.as_secs_f64()
    );
    println!(
        "  cores busy meanwhile               broker {broker_busy:.2}, agent processes {fleet_busy:.2} (of {})",
        std::thread::available_parallelism().map_or(0, usize::from)
    );
    fleet.stop().await;
}

/// Agents run by client processes (this benchmark started again with
/// `--serve-agents FILE`), each telling on its standard output how many
/// of its agents are connected.
struct Fleet {
    children: Vec<tokio::process::Child>,
    connected: Arc<Vec<AtomicUsize>>,
    total: usize,
}

impl Fleet {
    /// Runs the agents of `states` in `processes` client processes.
    fn start(root: &std::path::Path, states: &[StateDir], processes: usize) -> Fleet {
        let per = states.len().div_ceil(processes.max(1));
        let chunks: Vec<&[StateDir]> = states.chunks(per).collect();
        let connected: Arc<Vec<AtomicUsize>> = Arc::new(chunks.iter().map(|_| AtomicUsize::new(0)).collect());
        let mut children = Vec::new();
        for (i, chunk) in chunks.iter().enumerate() {
            let list = root.join(format!("fleet-{i}.txt"));
            let dirs: Vec<String> = chunk.iter().map(|s| s.dir.display().to_string()).collect();
            std::fs::write(&list, dirs.join("\n")).unwrap();
            let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
                .arg(SERVE_AGENTS)
                .arg(&list)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            let stdout = child.stdout.take().unwrap();
            let counts = connected.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Ok(k) = line.trim().parse() {
                        counts[i].store(k, Ordering::Relaxed);
                    }
                }
            });
            children.push(child);
        }
        Fleet {
            children,
            connected,
            total: states.len(),
        }
    }

    /// CPU time the client processes have used so far.
    fn cpu_time(&self) -> Duration {
        self.children
            .iter()
            .filter_map(tokio::process::Child::id)
            .map(|pid| cpu_time_of(&format!("/proc/{pid}/stat")))
            .sum()
    }

    fn connected(&self) -> usize {
        self.connected.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Waits until every agent is connected (`want`) or none is.
    async fn all(&self, want: bool, limit: Duration) -> bool {
        let target = if want { self.total } else { 0 };
        let deadline = Instant::now() + limit;
        while self.connected() != target {
            if Instant::now() > deadline {
                println!(
                    "  {} of {} connected, waiting for {target}",
                    self.connected(),
                    self.total
                );
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        true
    }

    /// Closes the client processes' input: each stops its agents and exits.
    async fn stop(self) {
        for mut child in self.children {
            drop(child.stdin.take());
            let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
        }
    }
}

/// The flag that makes this benchmark a client process of [`Fleet`].
const SERVE_AGENTS: &str = "--serve-agents";

/// A client process: runs the agents whose state directories `list`
/// names (one a line), prints how many are connected whenever that
/// changes, and stops them when its standard input closes.
async fn serve_agents(list: &std::path::Path) {
    let agents: Vec<Agent> = std::fs::read_to_string(list)
        .unwrap()
        .lines()
        .map(|dir| start_agent(StateDir::new(dir), None))
        .collect();
    let closed = tokio::task::spawn_blocking(|| {
        use std::io::Read;
        let mut buf = [0u8; 64];
        while matches!(std::io::stdin().read(&mut buf), Ok(k) if k > 0) {}
    });
    tokio::pin!(closed);
    let mut told = usize::MAX;
    loop {
        let now = agents.iter().filter(|a| *a.connected.borrow()).count();
        if now != told {
            println!("{now}");
            told = now;
        }
        tokio::select! {
            _ = &mut closed => break,
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    for agent in agents {
        agent.stop().await;
    }
}

// ---------------------------------------------------------------- part 3

/// Requesters and resources of part 3: every approved request is an
/// entitlement of its own until `WHOLE_USERS * WHOLE_RESOURCES`.
const WHOLE_USERS: usize = 200;
const WHOLE_RESOURCES: usize = 500;
/// Clients at once in part 3, each with an approver of its own.
const WORKERS: usize = 16;

/// Part 3: the whole system for `seconds`: requests made and approved
/// through the API and their grants applied by a sandbox agent, against
/// request creation alone in the same run.
async fn whole_system(seconds: u64) {
    println!(
        "\n== 3. whole system, {seconds} s each: approvals -> grants applied by an agent, against request creation alone ({WORKERS} clients)"
    );
    let policies = [("p.cedar", BULK_POLICY), ("workflows.toml", REVIEWED_WORKFLOWS)];
    let catalog = reviewed_catalog(WHOLE_USERS, WHOLE_RESOURCES, WORKERS);
    let b = TestBroker::start_logging(&catalog, &policies, &[], LOG).await;
    let root = tempfile::tempdir().unwrap();
    let state = enroll_many(&b, root.path(), 1).await.pop().unwrap();
    let agent = start_agent(state, None);
    assert!(all_connected(std::slice::from_ref(&agent), true, Duration::from_secs(20)).await);
    let requesters: Vec<ApiClient> = (0..WHOLE_USERS).map(|u| b.client(&format!("u{u}"))).collect();
    let approvers: Vec<ApiClient> = (0..WORKERS).map(|a| b.client(&format!("a{a}"))).collect();
    let span = Duration::from_secs(seconds);
    // Request `i` is requester `i mod users`'s, for resource `i / users`.
    let body = |i: usize| ask(&format!("r{}", (i / WHOLE_USERS) % WHOLE_RESOURCES));

    // Where the two cores go: the broker, and this process (the clients
    // and the agent).
    let cpu = Cpu::start(&b);
    // The floor: requests made and left pending.
    let created = for_each_worker(span, |_, i| {
        let (client, body) = (&requesters[i % WHOLE_USERS], body(i));
        async move {
            client.create_request(&body).await.unwrap();
        }
    })
    .await;
    let floor = created as f64 / span.as_secs_f64();
    let creating = cpu.cores(&b);

    let cpu = Cpu::start(&b);
    let from = chrono::Utc::now();
    let approved = for_each_worker(span, |w, i| {
        let (client, approver, body) = (&requesters[i % WHOLE_USERS], &approvers[w], body(i));
        async move {
            let asked = client.create_request(&body).await.unwrap();
            approver.approve(asked.id, None).await.unwrap();
        }
    })
    .await;
    let to = chrono::Utc::now();
    let approving = cpu.cores(&b);
    assert!(
        approved <= WHOLE_USERS * WHOLE_RESOURCES,
        "more approvals than distinct entitlements: raise WHOLE_USERS or WHOLE_RESOURCES"
    );
    let grants = all_grants(&b.client("admin")).await;
    let applied = grants
        .iter()
        .filter(|g| g.applied_at.is_some_and(|at| at >= from && at <= to))
        .count();
    let rate = applied as f64 / span.as_secs_f64();
    println!("  request creation alone             {floor:.0}/s (floor)");
    println!(
        "  approved, then applied by the agent {rate:.0}/s  ({:.2}× the floor; target ≥ 0.5×); {:.0} approvals/s, {} approved but not applied when the run ended",
        rate / floor,
        approved as f64 / span.as_secs_f64(),
        approved.saturating_sub(applied)
    );
    println!(
        "  cores busy, broker / clients and agent: {:.2} / {:.2} creating, {:.2} / {:.2} approving and applying",
        creating.0, creating.1, approving.0, approving.1
    );
    agent.stop().await;
}

/// CPU time of the broker and of this process from a moment on.
struct Cpu {
    at: Instant,
    broker: Duration,
    here: Duration,
}

impl Cpu {
    fn start(b: &TestBroker) -> Cpu {
        Cpu {
            at: Instant::now(),
            broker: b.cpu_time(),
            here: cpu_time_of("/proc/self/stat"),
        }
    }

    /// Cores the broker and this process kept busy on average since.
    fn cores(&self, b: &TestBroker) -> (f64, f64) {
        let wall = self.at.elapsed().as_secs_f64();
        (
            (b.cpu_time() - self.broker).as_secs_f64() / wall,
            (cpu_time_of("/proc/self/stat") - self.here).as_secs_f64() / wall,
        )
    }
}

/// Runs [`WORKERS`] clients for `span`: worker `w` runs `job(w, i)` for
/// each next `i` of a count they share. Returns how many jobs ran.
async fn for_each_worker<F, Fut>(span: Duration, job: F) -> usize
where
    F: Fn(usize, usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let next = AtomicUsize::new(0);
    let deadline = Instant::now() + span;
    futures::future::join_all((0..WORKERS).map(|w| {
        let (next, job) = (&next, &job);
        async move {
            while Instant::now() < deadline {
                job(w, next.fetch_add(1, Ordering::Relaxed)).await;
            }
        }
    }))
    .await;
    next.load(Ordering::Relaxed)
}

/// Starts an agent in this process with default channel settings and a
/// zero-latency sandbox kept in memory (or in `tenant`).
fn start_agent(state: StateDir, tenant: Option<std::path::PathBuf>) -> Agent {
    let sandbox = Sandbox::open(
        ConfigId::new("aws-test").unwrap(),
        SandboxSettings {
            state_file: tenant,
            ..SandboxSettings::default()
        },
    )
    .unwrap();
    Agent::start(
        state,
        Arc::new(sandbox),
        ChannelSettings::default(),
        Duration::from_secs(2),
        Arc::new(jitgate_agent::clock::SystemClock),
    )
    .unwrap()
}

/// The mean time of one durable journal write (insert, then flush) on the
/// same disk: what the agent pays once per command, so that a crash loses
/// no deadline.
async fn flush_floor(dir: &std::path::Path, n: usize) -> Duration {
    let journal = jitgate_agent::journal::Journal::open(&dir.join("flush-floor")).unwrap();
    let started = Instant::now();
    for i in 0..n {
        journal
            .put_result(
                &format!("command-{i}"),
                &Outcome::Applied,
                chrono::Utc::now(),
                chrono::Utc::now(),
            )
            .unwrap();
        journal.flush().await.unwrap();
    }
    started.elapsed() / n as u32
}

/// Enrolls `n` agents with the library, `limit` at a time.
async fn enroll_many(b: &TestBroker, root: &std::path::Path, n: usize) -> Vec<StateDir> {
    let admin = b.client("admin");
    let mut tasks = futures::stream::iter((0..n).map(|i| {
        let admin = admin.clone();
        let url = b.url.clone();
        let dir = root.join(format!("agent-{i}"));
        async move {
            let issued = admin
                .create_join_token(&CreateJoinTokenBody {
                    configuration: ConfigId::new("aws-test").unwrap(),
                    ttl_seconds: None,
                })
                .await
                .unwrap();
            let state = StateDir::new(dir);
            state.create().unwrap();
            jitgate_agent::enroll::enroll(&state, &url, &issued.token, &issued.ca_fingerprint, None)
                .await
                .unwrap();
            state
        }
    }))
    .buffer_unordered(16);
    let mut states = Vec::with_capacity(n);
    while let Some(state) = tasks.next().await {
        states.push(state);
    }
    states
}

/// Waits until every agent's connection state is `want`.
async fn all_connected(agents: &[Agent], want: bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if agents.iter().all(|a| *a.connected.borrow() == want) {
            return true;
        }
        if Instant::now() > deadline {
            let n = agents.iter().filter(|a| *a.connected.borrow() == want).count();
            println!("  only {n} of {} reached connected={want}", agents.len());
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
