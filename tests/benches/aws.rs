//! Identity Center provider throughput against a real moto server, within
//! the per-tenant budget. Prints, in one run, the sustained assignment
//! operations per second and API calls per second against the configured
//! budget (target: calls at least 90% of the budget without a throttling
//! storm), first with a clean tenant, then with 2% of calls throttled.
//!
//! Run: `cargo bench -p jitgate-tests --bench aws` (`-- --quick` for a
//! shorter run). moto comes from `./scripts/test-tools`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jitgate_agent::provider::aws::identity_center::{
    IdentityCenter, IdentityCenterSettings, PrincipalAttribute,
};
use jitgate_agent::provider::budget::{Budget, BudgetSettings};
use jitgate_agent::provider::Provider;
use jitgate_shared::v1::{ConfigId, Entitlement, Target};
use jitgate_tests::http_faults::HttpFaultProxy;
use jitgate_tests::moto::{self, Moto};

/// The budget: Identity Center allows about 20 calls per second.
const RATE: u32 = 18;
const WORKERS: usize = 12;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let run_for = Duration::from_secs(if quick { 5 } else { 20 });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = Moto::start().await;
        m.permission_set("Admin").await;
        for i in 0..WORKERS {
            m.user(&format!("user{i}"), &format!("user{i}@example.com")).await;
        }
        let proxy = HttpFaultProxy::start(&m.url).await;
        println!(
            "Identity Center provider against moto, budget {RATE} calls/s, {WORKERS} principals cycling"
        );
        phase(&proxy, "clean tenant", 0, run_for).await;
        phase(&proxy, "2% of calls throttled", 20, run_for).await;
    });
}

async fn phase(proxy: &HttpFaultProxy, name: &str, throttle_permille: u64, run_for: Duration) {
    proxy
        .faults
        .throttle_permille
        .store(throttle_permille, Ordering::Relaxed);
    let budget = Arc::new(Budget::new(BudgetSettings {
        rate: NonZeroU32::new(RATE).unwrap(),
        operations: 5,
        throttle_pause: Duration::from_millis(500),
        throttle_pause_max: Duration::from_secs(20),
    }));
    let sdk = moto::sdk_for(&proxy.url).await;
    let p = Arc::new(
        IdentityCenter::connect(
            ConfigId::new("aws-bench").unwrap(),
            &sdk,
            IdentityCenterSettings {
                instance_arn: None,
                principal_attribute: PrincipalAttribute::Email,
                operation_timeout: Duration::from_secs(30),
            },
            budget.clone(),
        )
        .await
        .unwrap(),
    );
    // Warm the caches (permission set, principals) outside the window.
    for i in 0..WORKERS {
        let e = entitlement(i);
        let _ = p.remove(&e).await;
    }
    let before = budget.stats();
    proxy.reset();
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let (p, stop, ops) = (p.clone(), stop.clone(), ops.clone());
        workers.push(tokio::spawn(async move {
            let e = entitlement(i);
            let mut grant = true;
            while !stop.load(Ordering::Relaxed) {
                let r = if grant {
                    p.apply(&e).await
                } else {
                    p.remove(&e).await
                };
                match r {
                    Ok(_) => {
                        ops.fetch_add(1, Ordering::Relaxed);
                        grant = !grant;
                    }
                    Err(err) if err.retryable() => {
                        tokio::time::sleep(err.retry_after().unwrap_or(Duration::from_millis(100))).await;
                    }
                    Err(err) => panic!("{err}"),
                }
            }
        }));
    }
    tokio::time::sleep(run_for).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let after = budget.stats();
    for w in workers {
        w.await.unwrap();
    }
    let calls = (after.calls - before.calls) as f64 / elapsed.as_secs_f64();
    let ops = ops.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64();
    println!("\n== {name} ({:.0} s)", elapsed.as_secs_f64());
    println!(
        "  assignment operations   {ops:.2}/s (create or delete, each checked first and polled to SUCCEEDED)"
    );
    println!(
        "  API calls               {calls:.2}/s of a {RATE}/s budget = {:.0}% (target >= 90%)",
        100.0 * calls / RATE as f64
    );
    println!(
        "  throttled               {} calls; peak {} requests in any second at the tenant",
        after.throttled - before.throttled,
        proxy.peak(Duration::from_secs(1))
    );
}

fn entitlement(i: usize) -> Entitlement {
    Entitlement {
        configuration: ConfigId::new("aws-bench").unwrap(),
        target: Target::AwsAccountAssignment {
            account_id: "111122223333".into(),
            permission_set: "Admin".into(),
        },
        principal: format!("user{i}@example.com"),
    }
}
