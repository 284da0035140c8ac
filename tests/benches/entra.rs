//! Entra provider throughput against the Graph contract fake, within the
//! per-tenant budget. Prints, in one run, sustained group-membership
//! changes per second against the configured write budget (target: at
//! least 90% of it without a 429 storm), with the fake enforcing a Graph
//! style per-app write limit above the budget; then the same budget set
//! above the fake's limit, to show throttling stays bounded; and, as the
//! baseline, the provider and fake with no budget and no limit.
//!
//! Run: `cargo bench -p jitgate-tests --bench entra` (`-- --quick` for a
//! shorter run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use jitgate_agent::provider::entra::Entra;
use jitgate_agent::provider::{Effect, Provider, Window};
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use jitgate_tests::graph_fake::{App, GraphFake};

const TENANT: &str = "11111111-2222-3333-4444-555555555555";
const CLIENT: &str = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
const WORKERS: usize = 16;
/// The agent's write budget, and the fake's per-app write limit above it.
const BUDGET: u32 = 20;
const GRAPH_LIMIT: u32 = 25;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run_for = Duration::from_secs(if quick { 5 } else { 20 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!("Entra provider against the Graph fake, {WORKERS} principals cycling membership of one group");
        let baseline = phase("baseline: no budget, no Graph limit", 100_000, None, run_for).await;
        let within = phase(
            &format!("budget {BUDGET} writes/s, Graph limit {GRAPH_LIMIT}/s"),
            BUDGET,
            Some(GRAPH_LIMIT),
            run_for,
        )
        .await;
        println!(
            "  -> {:.1}% of the budget (target >= 90%), {} answered 429; baseline capacity is {:.1}x the budget",
            100.0 * within.changes_per_second / f64::from(BUDGET),
            within.throttled,
            baseline.changes_per_second / f64::from(BUDGET),
        );
        let over = phase(
            &format!("budget {} writes/s set above the Graph limit {GRAPH_LIMIT}/s", BUDGET * 2),
            BUDGET * 2,
            Some(GRAPH_LIMIT),
            run_for,
        )
        .await;
        println!(
            "  -> {:.1}% of the Graph limit; {:.1}% of writes answered 429 (pauses keep it from becoming a storm)",
            100.0 * over.changes_per_second / f64::from(GRAPH_LIMIT),
            100.0 * over.throttled as f64 / (over.writes + over.throttled).max(1) as f64,
        );
    });
}

struct Measured {
    changes_per_second: f64,
    writes: u64,
    throttled: u64,
}

async fn phase(name: &str, budget: u32, graph_limit: Option<u32>, run_for: Duration) -> Measured {
    let f = GraphFake::start(vec![App {
        tenant: TENANT.into(),
        client_id: CLIENT.into(),
        secret: "bench".into(),
        ..App::default()
    }])
    .await;
    f.set(|s| s.write_limit = graph_limit);
    let group = f.add_group("bench");
    for i in 0..WORKERS {
        f.add_user(&format!("user{i}@contoso.com"), None);
    }
    let mut settings = f.provider_settings(TENANT, CLIENT, "bench", budget);
    settings.budget.operations = WORKERS;
    settings.budget.throttle_pause = Duration::from_millis(500);
    settings.budget.throttle_pause_max = Duration::from_secs(30);
    let p = Arc::new(
        Entra::connect(ConfigId::new("entra-bench").unwrap(), settings)
            .await
            .unwrap(),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let changes = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..WORKERS)
        .map(|i| {
            let (p, stop, changes, failures) = (p.clone(), stop.clone(), changes.clone(), failures.clone());
            let e = Entitlement {
                configuration: ConfigId::new("entra-bench").unwrap(),
                target: Target::EntraGroupMembership {
                    group_id: group.clone(),
                },
                principal: format!("user{i}@contoso.com"),
            };
            tokio::spawn(async move {
                let window = Window {
                    until: Utc::now() + chrono::Duration::hours(1),
                    cap_session_duration: false,
                    provision_on_demand: None,
                };
                let mut grant = true;
                while !stop.load(Ordering::Relaxed) {
                    let r = if grant {
                        p.apply_for(&e, &window).await
                    } else {
                        p.remove(&e).await
                    };
                    match r {
                        Ok(Effect::Changed) => {
                            changes.fetch_add(1, Ordering::Relaxed);
                            grant = !grant;
                        }
                        Ok(Effect::Unchanged) => grant = !grant,
                        Err(err) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(err.retry_after().unwrap_or(Duration::from_millis(100))).await;
                        }
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = f.stats();
    let changed = changes.load(Ordering::Relaxed);
    let measured = Measured {
        changes_per_second: changed as f64 / elapsed,
        writes: stats.writes,
        throttled: stats.throttled,
    };
    println!(
        "{name}: {changed} membership changes in {elapsed:.1} s = {:.1}/s; Graph saw {} requests, {} writes \
         (peak {} in one second), {} answered 429; {} operations failed back to the caller",
        measured.changes_per_second,
        stats.requests,
        stats.writes,
        stats.peak_writes_per_second,
        stats.throttled,
        failures.load(Ordering::Relaxed),
    );
    measured
}
