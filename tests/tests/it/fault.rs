//! A fault proxy between agent and broker: connections dropped and cut at
//! random while grants are applied and revoked. In the end everything is
//! revoked and nothing was applied twice.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::proxy::FaultProxy;

use crate::agents::{applied_within, removed, FAST};
use crate::support::{outbox, request};

/// Grant/revoke cycles in all, split over two principals.
const CYCLES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_percent_dropped_connections_over_1000_cycles_leave_nothing_applied() {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let hub: SocketAddr = b.hub_url.trim_start_matches("wss://").parse().unwrap();
    let proxy = FaultProxy::start(hub).await;
    // 30% of new connections dropped at once; every 300 ms each live
    // connection is cut with a 30% chance.
    let permille: u64 = std::env::var("FAULT_PERMILLE").map_or(300, |v| v.parse().unwrap());
    proxy.faults.drop_new_permille.store(permille, Ordering::Relaxed);
    proxy.faults.cut_permille.store(permille, Ordering::Relaxed);
    proxy.faults.cut_every_ms.store(300, Ordering::Relaxed);
    let mut agent = TestAgent::enroll(&b, "aws-test", Some(&format!("wss://{}", proxy.addr))).await;
    agent.start(&["--reconnect-max", "300ms"]).await;

    let agent_log = || agent.log();
    let started = Instant::now();
    let streams = ["alice", "bob"].map(|user| {
        let b = &b;
        let agent_log = &agent_log;
        async move {
            let client = b.client(user);
            for _ in 0..CYCLES / 2 {
                let id = request(&client, "auto-admin", 3600).await.grant.unwrap();
                if tokio::time::timeout(
                    Duration::from_secs(30),
                    applied_within(b, id, Duration::from_secs(60)),
                )
                .await
                .is_err()
                {
                    panic!("not applied; agent log:\n{}", agent_log());
                }
                client.revoke(id, None).await.unwrap();
                removed(b, id, Duration::from_secs(30)).await;
            }
        }
    });
    futures::future::join_all(streams).await;
    println!(
        "{CYCLES} cycles in {:?}; proxy accepted {}, dropped {}, cut {}",
        started.elapsed(),
        proxy.stats.accepted.load(Ordering::Relaxed),
        proxy.stats.dropped.load(Ordering::Relaxed),
        proxy.stats.cut.load(Ordering::Relaxed)
    );
    assert!(
        proxy.stats.dropped.load(Ordering::Relaxed) + proxy.stats.cut.load(Ordering::Relaxed) >= 10,
        "the proxy did break connections"
    );
    assert!(
        agent.tenant().is_empty(),
        "every entitlement revoked: {:?}",
        agent.tenant()
    );
    assert!(
        outbox(&b.client("admin")).await.is_empty(),
        "every command settled"
    );

    // Every change the tenant saw: per principal, apply and remove strictly
    // alternate (never applied twice), once per cycle.
    let changes = agent.tenant_changes();
    for principal in ["alice@example.com", "bob"] {
        let ops: Vec<&str> = changes
            .iter()
            .filter(|(_, p)| p == principal)
            .map(|(op, _)| op.as_str())
            .collect();
        assert_eq!(
            ops.len(),
            CYCLES,
            "{principal}: one apply and one remove per cycle"
        );
        for (i, op) in ops.iter().enumerate() {
            let want = if i % 2 == 0 { "apply" } else { "remove" };
            assert_eq!(*op, want, "{principal}: change {i} out of order");
        }
    }
}
