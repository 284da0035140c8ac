//! What the store benchmarks share: the catalogue and policies, a broker
//! over a store, its requester, active grants written by the services'
//! own domain code, and a start-up as `serve` does it.
#![allow(dead_code)] // each benchmark uses its part

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use jitgate_broker::audit::{Actor, AuditEntry, AuditEvent};
use jitgate_broker::clock::{Clock, SystemClock};
use jitgate_broker::domain::grant::Grant;
use jitgate_broker::domain::job::{Job, JobKind};
use jitgate_broker::domain::lease::Lease;
use jitgate_broker::domain::policy::{Policies, PolicySource};
use jitgate_broker::domain::request::NewRequest;
use jitgate_broker::metrics::Metrics;
use jitgate_broker::outbox::command;
use jitgate_broker::quickstart::Seed;
use jitgate_broker::service::{catalog_of, Broker, PolicyHolder, Settings};
use jitgate_broker::store::{Change, Store};
use jitgate_shared::v1::api::{CreateRequestBody, RequestKind};
use jitgate_shared::v1::{Entitlement, GrantId, RequestId, ResourceId, UserId};

pub const CATALOG: &str = r#"
[[configurations]]
id = "aws-bench"
kind = "aws_identity_center"
identity_mode = { mode = "direct" }

[[resources]]
id = "bench-admin"
configuration = "aws-bench"
group = "bench"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "Admin" }

[[users]]
id = "alice"
email = "alice@example.com"
roles = ["requester"]
groups = ["developers"]
"#;

pub const POLICY: &str = r#"
permit (principal in Jitgate::Group::"developers", action == Jitgate::Action::"request", resource);
permit (principal in Jitgate::Group::"sre", action == Jitgate::Action::"approve", resource);
"#;

pub const WORKFLOWS: &str =
    "[defaults]\napprovals_required = 1\nmax_duration = \"8h\"\njustification_required = true\n";

pub fn sources() -> Vec<PolicySource> {
    vec![
        PolicySource {
            path: "bench.cedar".into(),
            text: POLICY.into(),
        },
        PolicySource {
            path: "workflows.toml".into(),
            text: WORKFLOWS.into(),
        },
    ]
}

pub async fn broker_over(store: Arc<dyn Store>) -> Broker {
    let seed = Seed::parse(CATALOG, "bench").unwrap();
    let seeding = Broker::without_policies(store, Arc::new(SystemClock));
    seed.apply(&seeding).await.unwrap();
    let catalog = seeding.catalog().await.unwrap();
    seeding.with_policies("bench".into(), Policies::load(&sources(), &catalog).unwrap())
}

/// A broker over `store` with the seed loaded, its requester and what she
/// asks for.
pub struct Requester {
    pub broker: Broker,
    pub alice: jitgate_broker::domain::user::User,
    pub body: CreateRequestBody,
}

pub async fn requester(store: Arc<dyn Store>) -> Requester {
    let broker = broker_over(store.clone()).await;
    let alice = store.user(&UserId::new("alice").unwrap()).await.unwrap().unwrap();
    let body = CreateRequestBody {
        resource: ResourceId::new("bench-admin").unwrap(),
        duration_seconds: Some(1800),
        justification: Some("benchmark".into()),
        ticket: None,
        starts_at: None,
        break_glass: false,
    };
    Requester { broker, alice, body }
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "MET"
    } else {
        "NOT MET"
    }
}

/// A requester's account (not stored), its own person.
pub fn account(id: &str, now: DateTime<Utc>) -> jitgate_broker::domain::user::User {
    jitgate_broker::domain::user::User {
        id: UserId::new(id).unwrap(),
        version: 0,
        display_name: id.to_owned(),
        email: None,
        email_verified: false,
        roles: [jitgate_shared::v1::api::Role::Requester].into(),
        groups: Default::default(),
        person: id.to_owned(),
        disabled: false,
        created_at: now,
        provisioned_by: None,
        identities: Default::default(),
        language: None,
    }
}

/// An access request of `account` for `resource`, built by the domain code
/// the services use.
pub fn access_request(
    account: &jitgate_broker::domain::user::User,
    resource: &ResourceId,
    seconds: u64,
    justification: Option<String>,
    workflow: &jitgate_broker::domain::policy::Workflow,
    now: DateTime<Utc>,
) -> jitgate_broker::domain::request::Request {
    let body = CreateRequestBody {
        resource: resource.clone(),
        duration_seconds: Some(seconds),
        justification,
        ticket: None,
        starts_at: None,
        break_glass: false,
    };
    NewRequest {
        id: RequestId::generate(),
        kind: RequestKind::Access,
        requester: account,
        body: &body,
        workflow,
        permitted: true,
        on_call: false,
        now,
    }
    .build()
    .unwrap()
}

/// Writes `n` active grants ending at `ends_at(i)`, built by the same domain
/// code the services use, in batches of 1,000 changes per flush.
pub async fn active_grants(store: &dyn Store, n: usize, ends_at: impl Fn(usize) -> DateTime<Utc>) {
    let seed = Seed::parse(CATALOG, "bench").unwrap();
    let resource = &seed.resources[0];
    let now = Utc::now();
    let workflow = jitgate_broker::domain::policy::Workflow {
        auto_approve: true,
        approvals_required: 0,
        max_duration: Duration::from_secs(86_400 * 30),
        ..jitgate_broker::domain::policy::Workflow::builtin()
    };
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let account = account(&format!("u{i}"), now);
        let user = account.id.clone();
        let end = ends_at(i);
        let seconds = u64::try_from((end - now).num_seconds().max(1)).unwrap();
        let request = access_request(&account, &resource.id, seconds, None, &workflow, now);
        let entitlement = Entitlement {
            configuration: resource.configuration.clone(),
            target: resource.target.clone(),
            principal: user.to_string(),
        };
        let mut grant =
            Grant::for_request(GrantId::generate(), &request, entitlement.clone(), now).activate();
        grant.ends_at = end;
        let (lease, effect) = Lease::new(entitlement).hold(grant.id, grant.ends_at);
        let command = command::for_effect(&lease, effect, grant.id, now, now).unwrap();
        batch.push(Change {
            requests: vec![request.with_grant(grant.id, true)],
            schedule: vec![Job {
                due: grant.ends_at,
                kind: JobKind::ExpireGrant(grant.id),
            }],
            grants: vec![grant],
            leases: vec![lease],
            commands: vec![command],
            audit: vec![AuditEntry {
                at: now,
                actor: Actor::System,
                event: AuditEvent::RequestApproved { request: request.id },
            }],
            ..Change::default()
        });
        if batch.len() == 1000 || i + 1 == n {
            for r in store.commit_all(std::mem::take(&mut batch)).await {
                r.unwrap();
            }
        }
    }
}

/// What `serve` does before it is ready, on an existing store: the
/// catalogue, policies, a broker, and the next due job.
pub async fn ready(store: Arc<dyn Store>) -> Broker {
    let catalog = catalog_of(store.as_ref()).await.unwrap();
    let policies = Policies::load(&sources(), &catalog).unwrap();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let holder = Arc::new(PolicyHolder::new("bench".into(), policies, clock.now()));
    let broker = Broker::new(
        store.clone(),
        holder,
        clock,
        Arc::new(Metrics::new()),
        Settings::default(),
    );
    assert!(store.next_due().await.unwrap().is_some());
    broker
}

/// The scheduler's loop over `n` grants ending at `end`: sleeps until
/// then, runs due jobs until every expiry ran. Returns the lateness
/// (`ends_at` → revoke durably queued) at a quantile, in milliseconds.
pub async fn expire_all(broker: &Broker, n: usize, end: DateTime<Utc>) -> impl Fn(f64) -> f64 {
    let wait = (end - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait).await;
    let mut late_ms: Vec<f64> = Vec::with_capacity(n);
    while late_ms.len() < n {
        let run = broker.run_due_jobs().await.unwrap();
        late_ms.extend(run.lateness.iter().map(|s| s * 1000.0));
        if run.done == 0 && !run.more {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    late_ms.sort_by(f64::total_cmp);
    move |p: f64| late_ms[((late_ms.len() as f64 * p).ceil() as usize).saturating_sub(1)]
}
