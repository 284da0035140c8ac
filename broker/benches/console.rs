//! Console page renders, server side: every page a requester, an
//! approver and an auditor open, with 10,000 requests, 1,000 active grants
//! and some 30,000 audit records in the store, through the broker's own router (no TLS, no network), beside a
//! bare `GET /healthz` through the same router in the same run. Issue 17's
//! target: p95 under 30 ms for every page, pages under 100 KB.
//!
//! `cargo bench -p jitgate-broker --bench console` (`-- --quick`: 2,000
//! requests, 200 grants).
// A benchmark reads the wall clock.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::panic,
    clippy::disallowed_methods
)]

mod support;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use jitgate_broker::api::{limits::ClientLimits, router, AppState, DEFAULT_MAX_BODY};
use jitgate_broker::audit::{Actor, AuditEntry, AuditEvent};
use jitgate_broker::quickstart::Seed;
use jitgate_broker::store::{Change, Store};
use jitgate_shared::v1::api::{EndReason, Role, UserBody};
use jitgate_shared::v1::{RequestId, UserId};
use tower::ServiceExt;

use support::{access_request, account, active_grants, broker_over, verdict, CATALOG};

/// Renders of each page measured.
const RENDERS: usize = 200;

/// `n` requests of the users `u0..u{people}` and of alice: pending ones
/// (`pending` of them, alice's among them) and ended ones.
async fn requests(store: &dyn Store, n: usize, pending: usize, people: usize) -> Vec<RequestId> {
    let seed = Seed::parse(CATALOG, "bench").unwrap();
    let resource = &seed.resources[0];
    let workflow = jitgate_broker::domain::policy::Workflow {
        approvals_required: 1,
        ..jitgate_broker::domain::policy::Workflow::builtin()
    };
    let now = Utc::now();
    let mut ids = Vec::new();
    let mut batch = Vec::new();
    for i in 0..n {
        let id = if i % 10 == 0 {
            "alice".to_owned()
        } else {
            format!("u{}", i % people)
        };
        let stored = store.user(&UserId::new(&id).unwrap()).await.unwrap();
        let account = stored.unwrap_or_else(|| account(&id, now));
        let justification = format!("request {i}");
        let request = access_request(
            &account,
            &resource.id,
            1800,
            Some(justification.clone()),
            &workflow,
            now,
        );
        let request = if i < pending {
            request
        } else {
            request.ended(EndReason::Expired)
        };
        ids.push(request.id);
        // What the log holds for such a request: made, approved, ended.
        let audit = [
            AuditEvent::RequestCreated {
                request: request.id,
                resource: resource.id.clone(),
                duration_seconds: 1800,
                justification: Some(justification),
                ticket: None,
                break_glass: false,
                on_call: false,
            },
            AuditEvent::RequestApproved { request: request.id },
            AuditEvent::RequestCancelled { request: request.id },
        ]
        .into_iter()
        .map(|event| AuditEntry {
            at: now,
            actor: Actor::User(account.id.clone()),
            event,
        })
        .collect();
        batch.push(Change {
            requests: vec![request],
            audit,
            ..Change::default()
        });
        if batch.len() == 1000 || i + 1 == n {
            for r in store.commit_all(std::mem::take(&mut batch)).await {
                r.unwrap();
            }
        }
    }
    ids
}

async fn person(broker: &jitgate_broker::service::Broker, id: &str, roles: &[Role], group: &str) {
    broker
        .save_user(
            Actor::System,
            UserBody {
                id: UserId::new(id).unwrap(),
                display_name: format!("{id} (bench)"),
                email: None,
                roles: roles.iter().copied().collect(),
                groups: [group.to_owned()].into(),
                person: None,
            },
        )
        .await
        .unwrap();
}

/// A browser session cookie for `id`, through a sign-in link.
async fn cookie(broker: &jitgate_broker::service::Broker, id: &str) -> String {
    let link = broker
        .issue_sign_in_link_as(Actor::System, &UserId::new(id).unwrap())
        .await
        .unwrap();
    let secret = link.url.rsplit('/').next().unwrap();
    let tokens = broker.redeem_sign_in_link(secret).await.unwrap();
    format!("jitgate_session={}", tokens.access_token)
}

struct Measured {
    p50: Duration,
    p95: Duration,
    bytes: usize,
}

async fn measure(app: &axum::Router, path: &str, cookie: &str) -> Measured {
    let mut took = Vec::with_capacity(RENDERS);
    let mut bytes = 0;
    for _ in 0..RENDERS {
        let request = Request::get(path)
            .header(header::COOKIE, cookie)
            .body(Body::empty())
            .unwrap();
        let start = Instant::now();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        took.push(start.elapsed());
        assert_eq!(
            status,
            StatusCode::OK,
            "{path}: {}",
            String::from_utf8_lossy(&body)
        );
        bytes = body.len();
    }
    took.sort();
    Measured {
        p50: took[RENDERS / 2],
        p95: took[RENDERS * 95 / 100],
        bytes,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (n_requests, n_grants) = if quick { (2_000, 200) } else { (10_000, 1_000) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(jitgate_broker::server::open_sled(dir.path()).unwrap());
        let broker = broker_over(store.clone()).await;
        person(&broker, "bob", &[Role::Requester, Role::Approver], "sre").await;
        person(&broker, "auditor", &[Role::Auditor], "audit").await;
        let start = Instant::now();
        active_grants(store.as_ref(), n_grants, |i| Utc::now() + chrono::Duration::minutes(30 + i as i64 % 60)).await;
        let ids = requests(store.as_ref(), n_requests - n_grants, 50, n_grants).await;
        println!(
            "store: {} requests, {n_grants} active grants, written in {:.1} s",
            n_requests,
            start.elapsed().as_secs_f64()
        );
        let app = router(
            AppState {
                broker: broker.clone(),
                ready: Arc::new(AtomicBool::new(true)),
                limits: Arc::new(ClientLimits::new(Default::default())),
            },
            DEFAULT_MAX_BODY,
        );
        let alice = cookie(&broker, "alice").await;
        let bob = cookie(&broker, "bob").await;
        let auditor = cookie(&broker, "auditor").await;
        let head = store.audit_head().await.unwrap().seq;
        println!("audit log: {head} records");
        let floor = measure(&app, "/healthz", "").await;
        println!(
            "floor: GET /healthz p50 {:.3} ms, p95 {:.3} ms",
            ms(floor.p50),
            ms(floor.p95)
        );
        let request_page = format!("/console/requests/{}", ids[0]);
        let pages = [
            ("my access (alice)", "/console/", &alice),
            ("catalogue (alice)", "/console/catalogue", &alice),
            ("request form (alice)", "/console/requests/new?resource=bench-admin", &alice),
            ("a request (alice)", request_page.as_str(), &alice),
            ("inbox (bob)", "/console/inbox", &bob),
            ("agents (auditor)", "/console/admin/agents", &auditor),
            ("users (auditor)", "/console/admin/users", &auditor),
            ("configurations (aud.)", "/console/admin/configurations", &auditor),
            ("audit log (auditor)", "/console/audit", &auditor),
            ("audit: alice", "/console/audit?person=alice", &auditor),
            // A kind the log holds once: the search reads its whole budget.
            ("audit: rare kind", "/console/audit?kind=policies_loaded", &auditor),
        ];
        let mut all_met = true;
        for (name, path, cookie) in pages {
            let m = measure(&app, path, cookie).await;
            let met = m.p95 < Duration::from_millis(30) && m.bytes < 100 * 1024;
            all_met &= met;
            println!(
                "{name:<22} p50 {:>7.3} ms  p95 {:>7.3} ms ({:>5.1}× healthz p95)  {:>6} bytes  target p95 < 30 ms, < 100 KB: {}",
                ms(m.p50),
                ms(m.p95),
                ms(m.p95) / ms(floor.p95),
                m.bytes,
                verdict(met)
            );
        }
        println!("console pages: {}", verdict(all_met));
    });
}
