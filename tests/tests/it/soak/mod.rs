//! The chaos soak: requesters and approvers work the API while the broker
//! is SIGKILLed and restarted at random, an agent is SIGKILLed and
//! restarted, both agents reach the hub through fault proxies (connections
//! dropped, cut and delayed), the sandbox tenants throttle and fail a share
//! of calls, and the directory deprovisions people in the middle. At
//! checkpoints and at the end it checks both promises from what the tenants
//! went through ([`invariants`]) and that the broker's memory and open files
//! stay flat.
//!
//! Two forms: one broker (on the embedded store, or on PostgreSQL when
//! `JITGATE_TEST_STORE=postgres`), killed and restarted; and three brokers
//! on one PostgreSQL database, agents knowing every hub, the second and
//! third killed at random while the first lives through the whole run (its
//! footprint is the one that shows growth: a killed broker starts afresh).
//! Where one broker is killed, its footprint after each restart shows that
//! recovery does not grow with the history either.
//!
//! Not part of the ordinary passes (`#[ignore]`): `scripts/soak` runs it,
//! for 3 minutes in CI and as long as asked on demand
//! (`scripts/soak --duration 1h`). `JITGATE_SOAK_SEED` replays a run's
//! choices (the faults' timing still varies with the machine).

mod invariants;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use jitgate_broker::cli::client::{ApiClient, ClientError};
use jitgate_shared::v1::api::{EndReason, GrantState, GrantView, RequestView};
use jitgate_shared::v1::{GrantId, UserId};
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::{all_grants, all_requests, TestBroker};
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::proxy::FaultProxy;
use jitgate_tests::scim::Directory;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{ask, eventually};
use invariants::{check_approvals, check_tenant, quantile, ApprovalReport, TenantReport};

/// The fixtures' catalogue (`aws-test`: `auto-admin` auto-approved,
/// `dev-admin` one approval, `prod-admin` two; alice requests, bob requests
/// and approves, carol, dave and erin, alice's second account, approve)
/// with an Entra configuration beside it, whose resources need none and
/// two; the fixtures' policies and workflows.
fn catalog() -> String {
    format!(
        r#"{CATALOG}
[[configurations]]
id = "entra-test"
kind = "entra_id"
identity_mode = {{ mode = "direct" }}

[[resources]]
id = "entra-ops"
configuration = "entra-test"
group = "auto"
target = {{ kind = "entra_group_membership", group_id = "0b4f4a7e-0000-4000-8000-000000000001" }}

[[resources]]
id = "entra-prod"
configuration = "entra-test"
group = "prod"
target = {{ kind = "entra_group_membership", group_id = "0b4f4a7e-0000-4000-8000-000000000002" }}
"#
    )
}

const RESOURCES: [&str; 5] = ["auto-admin", "dev-admin", "prod-admin", "entra-ops", "entra-prod"];
/// Approver accounts; erin is alice's second account, bob also requests.
const APPROVERS: [&str; 4] = ["bob", "carol", "dave", "erin"];
/// People the directory provisions (requesters); the last two are
/// deprovisioned during the run.
const DIRECTORY_PEOPLE: usize = 8;
/// Grant windows, in seconds: short, so many end during the run.
const WINDOW: std::ops::RangeInclusive<u64> = 3..=15;
const CHECKPOINT_EVERY: Duration = Duration::from_secs(20);

/// What happened, counted as it happened.
#[derive(Debug, Default)]
struct Tally {
    requests: AtomicUsize,
    approvals: AtomicUsize,
    denials: AtomicUsize,
    early_ends: AtomicUsize,
    own_approvals_refused: AtomicUsize,
    second_approvals_refused: AtomicUsize,
    /// Calls that found no broker (killed, or not yet back).
    calls_while_down: AtomicUsize,
    /// Calls a broker answered 503, to try again later (its store had no
    /// connection free in time).
    calls_answered_busy: AtomicUsize,
    broker_kills: AtomicUsize,
    agent_kills: AtomicUsize,
    deprovisioned: AtomicUsize,
}

/// What every task shares: clients for the broker as it is now (its API
/// port changes on each restart), the tally, findings, and the stop flag.
struct Shared {
    clients: RwLock<Arc<HashMap<String, ApiClient>>>,
    person_of: HashMap<String, String>,
    tally: Tally,
    findings: Mutex<Vec<String>>,
    /// Accounts whose calls were refused as unauthenticated (only the
    /// deprovisioned may be).
    shut_out: Mutex<Vec<String>>,
    stopping: AtomicBool,
}

/// A call's outcome as the soak cares about it.
enum Answer<T> {
    Done(T),
    /// No broker answered: counted, tried again later.
    Down,
    Refused(StatusCode),
}

impl<T> Answer<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Answer<U> {
        match self {
            Answer::Done(v) => Answer::Done(f(v)),
            Answer::Down => Answer::Down,
            Answer::Refused(s) => Answer::Refused(s),
        }
    }
}

impl Shared {
    fn client(&self, user: &str) -> ApiClient {
        self.clients.read().unwrap()[user].clone()
    }

    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    fn find(&self, finding: String) {
        println!("FINDING: {finding}");
        self.findings.lock().unwrap().push(finding);
    }

    fn person<'a>(&'a self, user: &'a str) -> &'a str {
        self.person_of.get(user).map_or(user, String::as_str)
    }

    /// Sorts a result: a 5xx is a finding (the broker must never fail a
    /// caller with its own error, whatever else fails), but for 503, the
    /// broker telling the caller to try again later, as when it is down.
    fn answer<T>(&self, what: &str, r: Result<T, ClientError>) -> Answer<T> {
        match r {
            Ok(v) => Answer::Done(v),
            Err(e) => match e.status() {
                None => {
                    self.tally.calls_while_down.fetch_add(1, Ordering::Relaxed);
                    Answer::Down
                }
                Some(StatusCode::SERVICE_UNAVAILABLE) => {
                    self.tally.calls_answered_busy.fetch_add(1, Ordering::Relaxed);
                    Answer::Down
                }
                Some(s) => {
                    if s.is_server_error() {
                        self.find(format!("{what}: {e}"));
                    }
                    Answer::Refused(s)
                }
            },
        }
    }
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn pause(rng: &mut StdRng, ms: std::ops::Range<u64>) -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(rng.gen_range(ms)))
}

/// One requester: asks for random resources with short windows and now and
/// then ends one of its grants early; stops when shut out.
async fn requester(shared: Arc<Shared>, user: String, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut mine: Vec<(GrantId, DateTime<Utc>)> = Vec::new();
    while !shared.stopping() {
        let client = shared.client(&user);
        let now = Utc::now();
        mine.retain(|(_, ends)| *ends > now);
        let answer = if !mine.is_empty() && rng.gen_bool(0.2) {
            let (id, _) = mine.swap_remove(rng.gen_range(0..mine.len()));
            let r = client.revoke(id, Some("done early".into())).await;
            shared
                .answer("ending a grant early", r)
                .map(|_| bump(&shared.tally.early_ends))
        } else {
            let resource = RESOURCES.choose(&mut rng).unwrap();
            let seconds = rng.gen_range(WINDOW);
            let r = client.create_request(&ask(resource, seconds)).await;
            shared.answer("creating a request", r).map(|r: RequestView| {
                bump(&shared.tally.requests);
                if let Some(g) = r.grant {
                    mine.push((g, now + TimeDelta::seconds(seconds as i64)));
                }
            })
        };
        if let Answer::Refused(StatusCode::UNAUTHORIZED) = answer {
            shared.shut_out.lock().unwrap().push(user.clone());
            return;
        }
        pause(&mut rng, 100..400).await;
    }
}

/// Approvers working the pending requests: a random approver account for
/// each, which is sometimes the requester's own person (must be refused);
/// after approving a request that needs two, sometimes the same account
/// again (must be refused); now and then a denial.
async fn approvers(shared: Arc<Shared>, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    while !shared.stopping() {
        let query = [("state", "pending".to_owned()), ("limit", "500".to_owned())];
        let listed = shared.client("admin").requests(&query).await;
        let mut pending = match shared.answer("listing pending requests", listed) {
            Answer::Done(page) => page.items,
            _ => Vec::new(),
        };
        pending.shuffle(&mut rng);
        for r in pending {
            if shared.stopping() {
                return;
            }
            let account = *APPROVERS.choose(&mut rng).unwrap();
            let own = shared.person(account) == shared.person(r.requester.as_str());
            let client = shared.client(account);
            if !own && rng.gen_bool(0.05) {
                if let Answer::Done(_) = shared.answer("denying", client.deny(r.id, None).await) {
                    bump(&shared.tally.denials);
                }
                continue;
            }
            match shared.answer("approving", client.approve(r.id, None).await) {
                Answer::Done(_) if own => shared.find(format!(
                    "{account} approved request {} of {}, their own person",
                    r.id, r.requester
                )),
                Answer::Refused(_) if own => bump(&shared.tally.own_approvals_refused),
                Answer::Done(after) => {
                    bump(&shared.tally.approvals);
                    if after.approvals_required > 1 && rng.gen_bool(0.5) {
                        match shared.answer("approving again", client.approve(r.id, None).await) {
                            Answer::Done(_) => {
                                shared.find(format!("{account} approved request {} twice", r.id))
                            }
                            Answer::Refused(_) => bump(&shared.tally.second_approvals_refused),
                            Answer::Down => {}
                        }
                    }
                }
                _ => {}
            }
        }
        pause(&mut rng, 100..300).await;
    }
}

/// A broker's resident memory (KiB) and open files at one moment.
#[derive(Debug, Clone, Copy)]
struct Footprint {
    at: Duration,
    broker: usize,
    rss_kib: u64,
    open_files: usize,
}

fn footprints(brokers: &[TestBroker], at: Duration) -> Vec<Footprint> {
    brokers
        .iter()
        .enumerate()
        .map(|(broker, b)| Footprint {
            at,
            broker,
            rss_kib: b.memory_kib().0,
            open_files: b.open_files(),
        })
        .collect()
}

/// What one checkpoint found.
struct Checked {
    tenants: Vec<TenantReport>,
    approvals: ApprovalReport,
    grants: Vec<GrantView>,
}

/// Reads both tenants' histories, then every grant and request, and checks
/// them.
async fn checkpoint(shared: &Shared, agents: &[&TestAgent]) -> Checked {
    let logs: Vec<_> = agents.iter().map(|a| a.tenant_log()).collect();
    let now = Utc::now();
    let admin = shared.client("admin");
    let grants = all_grants(&admin).await;
    let tenants: Vec<TenantReport> = logs.iter().map(|log| check_tenant(log, &grants, now)).collect();
    let approvals = check_approvals(&all_requests(&admin).await, &shared.person_of);
    for finding in tenants
        .iter()
        .flat_map(|t| &t.findings)
        .chain(&approvals.findings)
    {
        shared.find(finding.clone());
    }
    Checked {
        tenants,
        approvals,
        grants,
    }
}

/// A client for every account, spread over the brokers (admin, who
/// checks, on the first).
fn clients_for(
    brokers: &[TestBroker],
    directory_tokens: &HashMap<String, String>,
) -> Arc<HashMap<String, ApiClient>> {
    let catalogued = ["admin", "alice", "bob", "carol", "dave", "erin"];
    let mut clients = HashMap::new();
    for (i, user) in catalogued.iter().enumerate() {
        clients.insert((*user).to_owned(), brokers[i % brokers.len()].client(user));
    }
    let mut directory: Vec<_> = directory_tokens.iter().collect();
    directory.sort();
    for (i, (user, token)) in directory.into_iter().enumerate() {
        let b = &brokers[i % brokers.len()];
        let client = ApiClient::new(&b.url, Some(token.clone()), Some(&b.ca())).unwrap();
        clients.insert(user.clone(), client);
    }
    Arc::new(clients)
}

fn soak_length() -> Duration {
    let seconds = std::env::var("JITGATE_SOAK_SECONDS").map_or(180, |s| {
        s.parse()
            .unwrap_or_else(|_| panic!("JITGATE_SOAK_SECONDS: `{s}` is not a number of seconds"))
    });
    Duration::from_secs(seconds)
}

/// Starts an agent for `configuration` that reaches every broker's hub
/// through a fault proxy of its own (10% of new connections dropped, 10% of
/// live ones cut each second, 5 ms added to every chunk), its sandbox
/// throttling 10% of calls and failing 5%.
async fn agent_behind_faults(brokers: &[TestBroker], configuration: &str) -> (TestAgent, Vec<FaultProxy>) {
    let mut proxies = Vec::new();
    for b in brokers {
        let proxy = FaultProxy::start(b.hub_url.trim_start_matches("wss://").parse().unwrap()).await;
        proxy.faults.drop_new_permille.store(100, Ordering::Relaxed);
        proxy.faults.cut_permille.store(100, Ordering::Relaxed);
        proxy.faults.cut_every_ms.store(1000, Ordering::Relaxed);
        proxy.faults.delay_ms.store(5, Ordering::Relaxed);
        proxies.push(proxy);
    }
    let hubs: Vec<String> = proxies.iter().map(|p| format!("wss://{}", p.addr)).collect();
    let mut agent = TestAgent::enroll(&brokers[0], configuration, Some(&hubs.join(","))).await;
    agent
        .start(&["--sandbox-throttle-rate", "0.1", "--sandbox-failure-rate", "0.05"])
        .await;
    agent.connected().await;
    (agent, proxies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the chaos soak runs on its own: scripts/soak"]
async fn chaos_soak_keeps_both_promises() {
    let b = TestBroker::start_with(&catalog(), &policies(), crate::agents::FAST).await;
    soak(vec![b]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the chaos soak runs on its own: scripts/soak"]
async fn chaos_soak_with_three_brokers_on_postgres() {
    let first = TestBroker::start_on_postgres(&catalog(), &policies(), crate::agents::FAST).await;
    let second = TestBroker::start_peer(&first, crate::agents::FAST).await;
    let third = TestBroker::start_peer(&first, crate::agents::FAST).await;
    soak(vec![first, second, third]).await;
}

async fn soak(mut brokers: Vec<TestBroker>) {
    let length = soak_length();
    let seed = std::env::var("JITGATE_SOAK_SEED").map_or_else(
        |_| rand::random(),
        |s| {
            s.parse()
                .unwrap_or_else(|_| panic!("JITGATE_SOAK_SEED: `{s}` is not a number"))
        },
    );
    println!(
        "soak: {} broker(s), {} s, seed {seed} (JITGATE_SOAK_SEED replays it)",
        brokers.len(),
        length.as_secs()
    );
    let mut rng = StdRng::seed_from_u64(seed);
    let b = &brokers[0];
    let mut directory = Directory::connect(b, "entra").await;
    let mut members = Vec::new();
    for i in 0..DIRECTORY_PEOPLE {
        let id = directory
            .create_user(&format!("dir{i}@example.com"), &format!("Dir{i}"), "Person")
            .await;
        members.push((format!("dir{i}@example.com"), id));
    }
    let member_refs: Vec<_> = members.iter().map(|(_, id)| json!({"value": id})).collect();
    let (code, body) = directory
        .post(
            "/Groups",
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                   "displayName": "developers", "members": member_refs}),
        )
        .await;
    assert_eq!(code, StatusCode::CREATED, "{body}");
    let admin = b.client("admin");
    let mut directory_tokens = HashMap::new();
    for (user, _) in &members {
        let issued = admin.issue_token(&UserId::new(user).unwrap()).await.unwrap();
        directory_tokens.insert(user.clone(), issued.token);
    }
    let person_of = admin
        .users()
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.id.to_string(), u.person))
        .collect();

    let (mut aws, aws_proxies) = agent_behind_faults(&brokers, "aws-test").await;
    let (mut entra, entra_proxies) = agent_behind_faults(&brokers, "entra-test").await;

    let shared = Arc::new(Shared {
        clients: RwLock::new(clients_for(&brokers, &directory_tokens)),
        person_of,
        tally: Tally::default(),
        findings: Mutex::default(),
        shut_out: Mutex::default(),
        stopping: AtomicBool::new(false),
    });
    let requesters: Vec<String> = ["alice", "bob"]
        .into_iter()
        .map(str::to_owned)
        .chain(members.iter().map(|(u, _)| u.clone()))
        .collect();
    let mut workers = tokio::task::JoinSet::new();
    for user in &requesters {
        workers.spawn(requester(shared.clone(), user.clone(), rng.gen()));
    }
    for _ in 0..2 {
        workers.spawn(approvers(shared.clone(), rng.gen()));
    }

    // The conductor: faults and checkpoints, one at a time, at random
    // moments until the end.
    let started = Instant::now();
    let end = started + length;
    let mut next_broker_kill = started + Duration::from_secs(rng.gen_range(20..40));
    let mut next_agent_kill = started + Duration::from_secs(rng.gen_range(15..35));
    let mut next_checkpoint = started + CHECKPOINT_EVERY;
    // The last two people the directory made: deactivated a third of the
    // way in, deleted two thirds in.
    let victims = &members[members.len() - 2..];
    let mut deprovisions = vec![
        (started + length * 2 / 3, &victims[1], true),
        (started + length / 3, &victims[0], false),
    ];
    let mut kept = Vec::new();
    let mut downtimes = Vec::new();
    let mut checkpoints = 0;
    loop {
        let next_deprovision = deprovisions.last().map_or(end, |(at, _, _)| *at);
        let next = end
            .min(next_broker_kill)
            .min(next_agent_kill)
            .min(next_checkpoint)
            .min(next_deprovision);
        tokio::time::sleep_until(next.into()).await;
        if next == end {
            break;
        } else if next == next_broker_kill {
            let down = Instant::now();
            let victim = if brokers.len() > 1 {
                rng.gen_range(1..brokers.len())
            } else {
                0
            };
            brokers[victim].kill().await;
            brokers[victim].restart().await;
            downtimes.push(down.elapsed());
            *shared.clients.write().unwrap() = clients_for(&brokers, &directory_tokens);
            directory.base = format!("{}/scim/v2", brokers[0].url);
            bump(&shared.tally.broker_kills);
            next_broker_kill = Instant::now() + Duration::from_secs(rng.gen_range(20..40));
        } else if next == next_agent_kill {
            let agent = if rng.gen_bool(0.5) { &mut aws } else { &mut entra };
            agent.restart().await;
            bump(&shared.tally.agent_kills);
            next_agent_kill = Instant::now() + Duration::from_secs(rng.gen_range(15..35));
        } else if next == next_deprovision {
            let (_, (user, id), delete) = deprovisions.pop().unwrap();
            let (code, body) = if delete {
                directory.delete(&format!("/Users/{id}")).await
            } else {
                directory
                    .patch(
                        &format!("/Users/{id}"),
                        json!([{"op": "Replace", "path": "active", "value": "False"}]),
                    )
                    .await
            };
            assert!(code.is_success(), "deprovisioning {user}: {code} {body}");
            let refused = shared.client(user).whoami().await;
            assert_eq!(
                refused.err().and_then(|e| e.status()),
                Some(StatusCode::UNAUTHORIZED),
                "{user} is shut out once deprovisioned"
            );
            bump(&shared.tally.deprovisioned);
        } else {
            let checked = checkpoint(&shared, &[&aws, &entra]).await;
            checkpoints += 1;
            let now = footprints(&brokers, started.elapsed());
            println!(
                "[{:>4} s] {} grants ({} active), held: aws {} entra {}, {} approved by people; brokers: {}",
                started.elapsed().as_secs(),
                checked.grants.len(),
                checked
                    .grants
                    .iter()
                    .filter(|g| g.state == GrantState::Active)
                    .count(),
                checked.tenants[0].held,
                checked.tenants[1].held,
                checked.approvals.approved,
                now.iter()
                    .map(|f| format!("{} MiB {} files", f.rss_kib / 1024, f.open_files))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            kept.extend(now);
            next_checkpoint = Instant::now() + CHECKPOINT_EVERY;
        }
    }

    // Stop the load; every window is short, so all grants end soon after.
    shared.stopping.store(true, Ordering::Relaxed);
    while workers.join_next().await.is_some() {}
    let admin = shared.client("admin");
    eventually(Duration::from_secs(60), "every grant to end", || async {
        let grants = all_grants(&admin).await;
        grants.iter().all(|g| g.state == GrantState::Ended).then_some(())
    })
    .await;
    eventually(Duration::from_secs(30), "both tenants to be empty", || async {
        (aws.tenant().is_empty() && entra.tenant().is_empty()).then_some(())
    })
    .await;
    let last = checkpoint(&shared, &[&aws, &entra]).await;
    kept.extend(footprints(&brokers, started.elapsed()));
    for configuration in ["aws-test", "entra-test"] {
        eventually(Duration::from_secs(30), "every command settled", || async {
            admin
                .outbox(configuration, 100)
                .await
                .unwrap()
                .is_empty()
                .then_some(())
        })
        .await;
    }
    for b in &mut brokers {
        b.stop().await;
    }
    let verified = brokers[0].offline(&["audit", "verify"]);
    let audit = String::from_utf8_lossy(&verified.stdout).into_owned();
    if !verified.status.success() {
        shared.find(format!(
            "the audit chain does not verify: {audit}{}",
            String::from_utf8_lossy(&verified.stderr)
        ));
    }

    // The report.
    let t = &shared.tally;
    let n = |c: &AtomicUsize| c.load(Ordering::Relaxed);
    let lateness: Vec<TimeDelta> = last.tenants.iter().flat_map(|r| r.lateness.clone()).collect();
    let cut = |ps: &[FaultProxy]| {
        ps.iter()
            .fold((0, 0), |(d, c), p| (d + n(&p.stats.dropped), c + n(&p.stats.cut)))
    };
    let ((aws_dropped, aws_cut), (entra_dropped, entra_cut)) = (cut(&aws_proxies), cut(&entra_proxies));
    println!(
        "\n== soak report ({} s, seed {seed}) ==",
        started.elapsed().as_secs()
    );
    let ended_by = |reason| {
        last.grants
            .iter()
            .filter(|g| g.end_reason == Some(reason))
            .count()
    };
    println!(
        "operations: {} requests, {} approvals, {} denials, {} grants ended early, {} grants in all \
         ({} ended by deprovisioning)",
        n(&t.requests),
        n(&t.approvals),
        n(&t.denials),
        n(&t.early_ends),
        last.grants.len(),
        ended_by(EndReason::Deprovisioned),
    );
    println!(
        "refused as they must be: {} approvals of one's own person, {} second approvals by one account",
        n(&t.own_approvals_refused),
        n(&t.second_approvals_refused)
    );
    println!(
        "faults: {} broker SIGKILLs (down {:?} at most), {} agent SIGKILLs, {} people deprovisioned, \
         connections dropped/cut: aws {aws_dropped}/{aws_cut}, entra {entra_dropped}/{entra_cut}; \
         sandbox throttling 10% and failing 5% of calls; {} calls found no broker, {} were answered 503 (busy)",
        n(&t.broker_kills),
        downtimes.iter().max().copied().unwrap_or_default(),
        n(&t.agent_kills),
        n(&t.deprovisioned),
        n(&t.calls_while_down),
        n(&t.calls_answered_busy),
    );
    println!(
        "invariants at {} checkpoints and the end: {} applies and {} removals, each held only under a grant, \
         removed after their grant's end by p50 {} ms, p99 {} ms, max {} ms (allowed {} ms); \
         {} requests approved by people ({} by two), every approver distinct and not the requester; audit: {}",
        checkpoints,
        last.tenants.iter().map(|r| r.applies).sum::<usize>(),
        lateness.len(),
        quantile(&lateness, 0.5).num_milliseconds(),
        quantile(&lateness, 0.99).num_milliseconds(),
        quantile(&lateness, 1.0).num_milliseconds(),
        invariants::SLACK.num_milliseconds(),
        last.approvals.approved,
        last.approvals.approved_by_several,
        audit.trim()
    );
    for fp in &kept {
        println!(
            "broker {} at {:>4} s: {} MiB resident, {} open files",
            fp.broker,
            fp.at.as_secs(),
            fp.rss_kib / 1024,
            fp.open_files
        );
    }

    let findings = shared.findings.lock().unwrap().clone();
    assert!(
        findings.is_empty(),
        "{} findings:\n{}",
        findings.len(),
        findings.join("\n")
    );
    let shut_out = shared.shut_out.lock().unwrap().clone();
    assert!(
        shut_out.iter().all(|u| victims.iter().any(|(v, _)| v == u)),
        "only the deprovisioned are shut out: {shut_out:?}"
    );
    assert!(
        n(&t.broker_kills) >= 1 && n(&t.agent_kills) >= 1,
        "faults were injected"
    );
    assert!(
        n(&t.own_approvals_refused) >= 1 && last.approvals.approved_by_several >= 1,
        "the approval rules were exercised"
    );
    assert!(
        lateness.len() >= 10,
        "grants were applied and removed: {}",
        lateness.len()
    );
    assert!(
        ended_by(EndReason::Deprovisioned) >= 1,
        "deprovisioning ended grants that were active"
    );
    for (broker, b) in brokers.iter().enumerate() {
        let theirs: Vec<Footprint> = kept.iter().filter(|f| f.broker == broker).copied().collect();
        // An embedded store's page cache fills up to its bound as history
        // grows: that much is a cache filling, not growth per operation.
        let cache_kib = match b.database_url() {
            Some(_) => 0,
            None => jitgate_broker::store::sled::CACHE_BYTES / 1024,
        };
        flat(&theirs, cache_kib);
    }
}

/// Memory and open files flat: nothing grows with the work done. A
/// broker's first footprint is the baseline; later ones may exceed it by a
/// margin that allows for caches filling (`cache_kib`: the bounded caches
/// the first footprint may not have filled yet), not for growth per
/// operation.
fn flat(footprints: &[Footprint], cache_kib: u64) {
    let (first, rest) = footprints.split_first().expect("a footprint was taken");
    for fp in rest {
        assert!(
            fp.open_files <= first.open_files + 64,
            "open files grew: {first:?} then {fp:?}"
        );
        assert!(
            fp.rss_kib <= first.rss_kib * 2 + 64 * 1024 + cache_kib,
            "memory grew: {first:?} then {fp:?}"
        );
    }
}
