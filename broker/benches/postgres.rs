//! The PostgreSQL store's benchmark. Prints, in one run, each result beside
//! a floor measured on the same database server in the same run:
//!
//! 1. durable request creation per second, one client, against a raw
//!    single-row insert + commit;
//! 2. lateness from `ends_at` to the revoke being committed to the outbox
//!    when 10,000 grants end at the same instant, against one batch insert
//!    of 10,000 outbox-sized rows + commit;
//! 3. restart with 100,000 active grants: time until a broker is ready to
//!    serve against reading every row of the database once.
//!
//! The server is `JITGATE_TEST_DATABASE_URL`, else 127.0.0.1:5432 (run
//! under `scripts/with-test-database` to have one made); each part gets a
//! database of its own. Run: `scripts/with-test-database cargo bench -p
//! jitgate-broker --bench postgres` (`-- --quick` for a smaller run,
//! `-- --only N` for one part).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use jitgate_broker::store::postgres::scratch::{connect_to, ScratchDatabase};
use jitgate_broker::store::postgres::PgStore;

use support::{active_grants, broker_over, expire_all, ready, requester, verdict, Requester};

async fn client(db: &ScratchDatabase) -> tokio_postgres::Client {
    connect_to(&db.url()).await.unwrap()
}

async fn store_on(db: &ScratchDatabase) -> Arc<PgStore> {
    Arc::new(PgStore::open(&db.settings(), true).await.unwrap())
}

/// Part 1: durable request creation against raw single-row insert +
/// commit, alternating in rounds so drift affects both alike.
async fn creation(n: usize) {
    const ROUNDS: usize = 5;
    let per_round = n / ROUNDS;
    let db = ScratchDatabase::create().await.unwrap();
    let raw = client(&db).await;
    raw.batch_execute("CREATE TABLE raw (k text PRIMARY KEY, v bytea NOT NULL)")
        .await
        .unwrap();
    let insert = raw
        .prepare("INSERT INTO raw (k, v) VALUES ($1, $2)")
        .await
        .unwrap();
    let value = vec![7u8; 600];
    let store = store_on(&db).await;
    let Requester { broker, alice, body } = requester(store).await;
    let (mut raw_time, mut created_time) = (Duration::ZERO, Duration::ZERO);
    for round in 0..ROUNDS {
        let t = Instant::now();
        for i in 0..per_round {
            // Outside a transaction block each statement commits (and
            // waits for its WAL flush).
            raw.execute(&insert, &[&format!("k{round}-{i}"), &value])
                .await
                .unwrap();
        }
        raw_time += t.elapsed();
        let t = Instant::now();
        for _ in 0..per_round {
            broker.create_request(&alice, body.clone()).await.unwrap();
        }
        created_time += t.elapsed();
    }
    let total = (per_round * ROUNDS) as f64;
    let (raw, created) = (total / raw_time.as_secs_f64(), total / created_time.as_secs_f64());
    println!(
        "1. durable request creation on PostgreSQL, one client ({ROUNDS} alternating rounds of {per_round})"
    );
    println!("   raw single-row insert + commit:  {raw:>8.0} /s  (baseline)");
    println!("   durable request creation:        {created:>8.0} /s  (committed before returning)");
    println!(
        "   ratio {:.2}× (issue 20's target on sled: ≥ 0.6× {})",
        created / raw,
        verdict(created / raw >= 0.6)
    );
}

/// Part 2: lateness of revokes when `n` grants end at the same instant.
async fn lateness(n: usize) {
    let db = ScratchDatabase::create().await.unwrap();
    let store = store_on(&db).await;
    let broker = broker_over(store.clone()).await;
    // Writing the grants takes a while on a database: end well after.
    let t = Instant::now();
    let end = Utc::now() + chrono::Duration::seconds(600);
    active_grants(store.as_ref(), n, |_| end).await;
    let setup = t.elapsed();
    let end = Utc::now() + chrono::Duration::seconds(2);
    {
        // Move every window's end to `end`, as if written just before.
        let c = client(&db).await;
        c.execute(
            "UPDATE jobs SET due = $1, doc = json_build_object('due', $2::text, 'kind', doc->'kind')",
            &[&end, &end.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)],
        )
        .await
        .unwrap();
    }

    // Floor: one batch insert of n outbox-sized rows, one commit.
    let raw = client(&db).await;
    raw.batch_execute("CREATE TABLE raw_outbox (seq bigint PRIMARY KEY, doc bytea NOT NULL)")
        .await
        .unwrap();
    let seqs: Vec<i64> = (0..n as i64).collect();
    let docs: Vec<Vec<u8>> = (0..n).map(|_| vec![7u8; 400]).collect();
    let t = Instant::now();
    raw.execute(
        "INSERT INTO raw_outbox (seq, doc) SELECT * FROM unnest($1::bigint[], $2::bytea[])",
        &[&seqs, &docs],
    )
    .await
    .unwrap();
    let floor = t.elapsed();

    let pct = expire_all(&broker, n, end).await;
    let floor_ms = floor.as_secs_f64() * 1000.0;
    println!(
        "2. revoke lateness on PostgreSQL, {n} grants ending at the same instant (written in {setup:.1?})"
    );
    println!("   baseline: one batch insert of {n} outbox-sized rows + commit: {floor_ms:.1} ms");
    println!(
        "   lateness ends_at → revoke committed: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
    println!(
        "   ratio p99 to the floor: {:.1}× (issue 20's target on sled: ≤ 3× {})",
        pct(0.99) / floor_ms,
        verdict(pct(0.99) <= 3.0 * floor_ms)
    );
}

/// Part 3: restart with `n` active grants: a new store handle on the
/// database, ready as `serve` would be, against reading every row once.
async fn restart(n: usize) {
    let db = ScratchDatabase::create().await.unwrap();
    {
        let store = store_on(&db).await;
        broker_over(store.clone()).await;
        let t = Instant::now();
        active_grants(store.as_ref(), n, |i| {
            Utc::now() + chrono::Duration::hours(1) + chrono::Duration::milliseconds(i as i64)
        })
        .await;
        println!(
            "3. restart on PostgreSQL with {n} active grants (written in {:.1?})",
            t.elapsed()
        );
    }
    let t = Instant::now();
    let store = store_on(&db).await;
    ready(store).await;
    let ready_ms = t.elapsed().as_secs_f64() * 1000.0;
    let c = client(&db).await;
    let tables: Vec<String> = c
        .query("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let t = Instant::now();
    let mut rows = 0usize;
    for table in &tables {
        rows += c
            .query(&format!("SELECT * FROM {table}"), &[])
            .await
            .unwrap()
            .len();
    }
    let scan_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("   baseline: read every row of every table: {scan_ms:.0} ms ({rows} rows)");
    println!(
        "   broker ready: {ready_ms:.0} ms; ratio {:.2}× (issue 20's target on sled: ≤ 0.3× {})",
        ready_ms / scan_ms,
        verdict(ready_ms <= 0.3 * scan_ms)
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse::<usize>().expect("--only takes a part number"));
    let (creations, ending, restored) = if quick {
        (300, 2_000, 10_000)
    } else {
        (2_000, 10_000, 100_000)
    };
    let runs = |part: usize| only.is_none_or(|o| o == part);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        if runs(1) {
            creation(creations).await;
        }
        if runs(2) {
            lateness(ending).await;
        }
        if runs(3) {
            restart(restored).await;
        }
    });
}
