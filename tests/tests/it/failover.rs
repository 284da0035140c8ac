//! Several brokers on one PostgreSQL database: any serves the API, any
//! holds agent sessions, and losing one loses no revoke. Three brokers, an
//! agent that knows every hub, 1,000 grants with staggered windows; the
//! broker holding the agent's session and job claims is SIGKILLed mid-run.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use jitgate_broker::cli::client::ApiClient;
use jitgate_broker::store::postgres::scratch::connect_to;
use jitgate_shared::v1::api::{EndReason, GrantState, RequestState};
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;

use crate::support::{all_grants, ask, bulk_catalog, eventually, past, BULK_POLICY, BULK_WORKFLOWS};

const USERS: usize = 50;
const RESOURCES: usize = 20;
/// The promise: no access outlives its window by more than this, whatever
/// fails.
const LATE_AT_MOST: chrono::TimeDelta = chrono::TimeDelta::seconds(5);
const FAST: &[&str] = &["--agent-heartbeat", "1s"];

/// The store instance a broker's log names (its name in job claims).
fn instance_of(b: &TestBroker) -> String {
    let log = b.log();
    let line = log
        .lines()
        .find(|l| l.contains("store: PostgreSQL"))
        .unwrap_or_else(|| panic!("no store line in the log:\n{log}"));
    line.split("instance=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap()
        .trim_matches('"')
        .to_owned()
}

#[tokio::test]
async fn losing_the_broker_holding_the_agent_and_the_job_claims_ends_every_grant_on_time() {
    let policies = [("p.cedar", BULK_POLICY), ("workflows.toml", BULK_WORKFLOWS)];
    let mut first = TestBroker::start_on_postgres(&bulk_catalog(USERS, RESOURCES), &policies, FAST).await;
    let second = TestBroker::start_peer(&first, FAST).await;
    let third = TestBroker::start_peer(&first, FAST).await;
    let hubs = format!("{},{},{}", first.hub_url, second.hub_url, third.hub_url);
    let mut agent = TestAgent::enroll(&first, "aws-test", Some(&hubs)).await;
    agent.start(&[]).await;
    agent.connected().await;
    assert!(
        first.log().contains("agent connected"),
        "the agent is on the first hub it knows"
    );

    // Requests through the two other brokers' APIs; the first holds the
    // agent's session and hears of the commands from the database.
    let clients: Vec<ApiClient> = (0..USERS)
        .map(|u| {
            let via = if u % 2 == 0 { &second } else { &third };
            via.client(&format!("u{u}"))
        })
        .collect();
    let jobs = (0..USERS * RESOURCES).map(|i| {
        let client = clients[i % USERS].clone();
        // Windows of 10 to 19 s: many end after the first broker is gone.
        let body = ask(&format!("r{}", i / USERS), 10 + (i % 10) as u64);
        async move { client.create_request(&body).await.unwrap() }
    });
    let created: Vec<_> = futures::stream::iter(jobs).buffer_unordered(16).collect().await;
    assert!(created.iter().all(|r| r.state == RequestState::Active));
    let admin = second.client("admin");
    let mut ends: Vec<_> = all_grants(&admin).await.iter().map(|g| g.ends_at).collect();
    assert_eq!(ends.len(), 1000);
    ends.sort();

    // Mid-run, at a moment the first broker holds claims on due jobs.
    past(ends[ends.len() / 20]).await;
    let db = connect_to(first.database_url().unwrap()).await.unwrap();
    let me = instance_of(&first);
    eventually(
        Duration::from_secs(20),
        "the first broker to hold job claims",
        || async {
            let row = db
                .query_one(
                    "SELECT count(*) FROM jobs WHERE claimed_by = $1 AND claimed_until > now()",
                    &[&me],
                )
                .await
                .unwrap();
            (row.get::<_, i64>(0) > 0).then_some(())
        },
    )
    .await;
    first.kill().await;
    let killed_at = chrono::Utc::now();

    let grants = eventually(Duration::from_secs(90), "every grant to end", || async {
        let g = all_grants(&admin).await;
        g.iter().all(|g| g.state == GrantState::Ended).then_some(g)
    })
    .await;
    assert!(grants.iter().any(|g| g.ends_at > killed_at + LATE_AT_MOST));
    // The other brokers took over the first's jobs when its claims ran out.
    let mut latest_end = chrono::TimeDelta::zero();
    for g in &grants {
        assert_eq!(g.end_reason, Some(EndReason::Expired), "{g:?}");
        let late = g.ended_at.unwrap() - g.ends_at;
        latest_end = latest_end.max(late);
        assert!(late <= LATE_AT_MOST, "ended {late} late: {g:?}");
    }
    println!("latest end by a broker: {latest_end} after the window's end");
    assert!(
        second.log().contains("agent connected") || third.log().contains("agent connected"),
        "the agent failed over to another broker"
    );
    // The tenant as the agent changed it: each entitlement applied once and
    // removed once, within 5 s of its window's end.
    eventually(Duration::from_secs(30), "the tenant emptied", || async {
        agent.tenant().is_empty().then_some(())
    })
    .await;
    let key = |g: &jitgate_shared::v1::api::GrantView| {
        let e = &g.entitlement;
        format!(
            "{} {}",
            serde_json::to_string(&e.principal).unwrap(),
            serde_json::to_string(&e.target).unwrap()
        )
    };
    let ends_of: BTreeMap<String, chrono::DateTime<chrono::Utc>> =
        grants.iter().map(|g| (key(g), g.ends_at)).collect();
    assert_eq!(ends_of.len(), 1000, "one entitlement per grant");
    let mut changes: BTreeMap<&str, Vec<&jitgate_tests::agent::TenantChange>> = BTreeMap::new();
    let log = agent.tenant_log();
    for change in &log {
        changes
            .entry(change.entitlement.as_str())
            .or_default()
            .push(change);
    }
    // What reached the tenant is exactly what the brokers recorded as
    // applied (a grant whose window closed before delivery never does), or
    // found present when it was removed: an agent's answer on its way to
    // the first broker when it was killed is lost, and when the window
    // closed before another broker sent the command again, what the record
    // has is the revoke's answer ("revoked", not "already absent") or the
    // agent's report that it removed the entitlement at its deadline.
    //
    // The tenant empties a moment before the record says why: the agent
    // answers a revoke, or reports a removal at a deadline, after acting,
    // and the broker stores it after that. So the record is read once every
    // command has settled, and again until it agrees or 30 s have passed.
    eventually(Duration::from_secs(60), "every command to settle", || async {
        let row = db.query_one("SELECT count(*) FROM outbox", &[]).await.unwrap();
        (row.get::<_, i64>(0) == 0).then_some(())
    })
    .await;
    let reached: std::collections::BTreeSet<String> = changes.keys().map(|k| (*k).to_owned()).collect();
    let settled_by = tokio::time::Instant::now() + Duration::from_secs(30);
    let (grants, applied) = loop {
        let grants = all_grants(&admin).await;
        let found_present: std::collections::BTreeSet<String> = db
            .query(
                "SELECT doc->'event'->>'grant' FROM audit \
                 WHERE doc->'event'->>'type' = 'agent_self_revoked' \
                 OR (doc->'event'->>'type' = 'command_settled' AND doc->'event'->>'op' = 'revoke' \
                 AND doc->'event'->'outcome'->>'outcome' = 'revoked')",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .collect();
        let applied: std::collections::BTreeSet<String> = grants
            .iter()
            .filter(|g| g.applied_at.is_some() || found_present.contains(&g.id.to_string()))
            .map(key)
            .collect();
        if applied == reached || tokio::time::Instant::now() >= settled_by {
            break (grants, applied);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let answers_lost = grants
        .iter()
        .filter(|g| g.applied_at.is_none() && applied.contains(&key(g)))
        .count();
    // For the next reader of a failure: what the record says of each
    // entitlement it does not count as applied though it was.
    for missing in reached.difference(&applied) {
        let grant = grants.iter().find(|g| key(g) == *missing);
        println!(
            "reached the tenant, not recorded as applied: {missing}\n  grant: {grant:?}\n  tenant: {:?}",
            changes.get(missing.as_str())
        );
    }
    assert_eq!(reached, applied, "the tenant and the brokers' record agree");
    // The first broker delivered what the others queued before it died:
    // they woke it through the database.
    let before_the_kill = log.iter().filter(|c| c.op == "apply" && c.at < killed_at).count();
    assert!(before_the_kill > 0, "nothing applied through the first broker");
    println!(
        "{} of 1000 grants reached the tenant, {before_the_kill} through the first broker, \
         {answers_lost} known applied only by their removal",
        applied.len()
    );
    let mut latest = chrono::TimeDelta::zero();
    for (entitlement, seen) in &changes {
        let ops: Vec<&str> = seen.iter().map(|c| c.op.as_str()).collect();
        assert_eq!(
            ops,
            ["apply", "remove"],
            "{entitlement}: applied or removed twice"
        );
        let ends = ends_of[*entitlement];
        let late = seen[1].at - ends;
        latest = latest.max(late);
        assert!(
            late <= LATE_AT_MOST,
            "{entitlement} removed {late} after its window ended at {ends}"
        );
    }
    println!("latest removal in the tenant: {latest} after the window's end");

    // One audit chain, whichever broker wrote each record.
    drop((second, third));
    let out = first.offline(&["audit", "verify"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && said.contains("audit chain intact"),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
