//! Test support shared by unit tests: a broker over a real store in a
//! temporary directory, a manual clock, a small catalogue and three people
//! who may request and approve.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{CreateRequestBody, Role, UserBody};
use jitgate_shared::v1::{ResourceId, UserId};

use crate::audit::Actor;
use crate::clock::ManualClock;
use crate::domain::policy::{Policies, PolicySource};
use crate::domain::user::User;
use crate::quickstart::Seed;
use crate::service::Broker;
use crate::store::sled::SledStore;
use crate::store::Store;

pub(crate) const CATALOG: &str = r#"
[[configurations]]
id = "aws"
kind = "aws_identity_center"
identity_mode = { mode = "direct" }

[[resources]]
id = "auto"
configuration = "aws"
group = "auto"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "A" }

[[resources]]
id = "dev"
configuration = "aws"
group = "dev"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "D" }

[[resources]]
id = "ticketed"
configuration = "aws"
group = "ticketed"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "T" }

# The same entitlement as `dev`, behind two approvals: grants of both
# overlap on one lease.
[[resources]]
id = "prod"
configuration = "aws"
group = "prod"
target = { kind = "aws_account_assignment", account_id = "111122223333", permission_set = "D" }
"#;

pub(crate) const POLICY: &str = r#"
permit (principal in Jitgate::Group::"people", action == Jitgate::Action::"request", resource);
permit (principal in Jitgate::Group::"people", action == Jitgate::Action::"approve", resource);
"#;

pub(crate) const WORKFLOWS: &str = r#"
[defaults]
max_duration = "1h"
pending_ttl = "10m"
extension = { allowed = true, requires_approval = false, max_total = "1h" }
[group.auto]
auto_approve = true
cap_session_duration = true
end_sign_in_sessions = true
approvals_required = 0
[group.prod]
approvals_required = 2
[group.ticketed]
auto_approve = true
approvals_required = 0
ticket_pattern = "OPS-[0-9]+"

"#;

/// Opens the embedded store at `dir` once a handle this process just
/// dropped has let go of it: sled lets go of its file lock when its
/// background flusher stops, a moment after the last handle is dropped (a
/// new process never waits).
pub async fn open_sled_when_free(dir: &std::path::Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(dir) {
            Ok(store) => return store,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => tokio::task::yield_now().await,
        }
    }
}

pub fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap()
}

/// Which store a harness runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sled,
    Postgres,
}

/// Where a harness's store keeps its state (a directory, a database),
/// kept for as long as the harness lives.
type Backing = Box<dyn std::any::Any + Send + Sync>;

impl Backend {
    async fn open(self) -> (Arc<dyn Store>, Backing) {
        match self {
            Backend::Sled => {
                let dir = tempfile::tempdir().unwrap();
                let store = Arc::new(SledStore::open(dir.path()).unwrap());
                (store, Box::new(dir))
            }
            Backend::Postgres => {
                let db = crate::store::postgres::scratch::ScratchDatabase::create()
                    .await
                    .unwrap();
                let store = crate::store::postgres::PgStore::open(&db.settings(), true)
                    .await
                    .unwrap();
                (Arc::new(store), Box::new(db))
            }
        }
    }
}

pub struct Harness {
    _backing: Backing,
    pub broker: Broker,
    pub clock: Arc<ManualClock>,
    pub users: Vec<User>,
}

/// A harness on the embedded store.
pub async fn harness() -> Harness {
    harness_on(Backend::Sled).await
}

pub async fn harness_on(backend: Backend) -> Harness {
    let (store, backing) = backend.open().await;
    let clock = Arc::new(ManualClock::new(t0()));
    let seed = Seed::parse(CATALOG, "test").unwrap();
    let seeding = Broker::without_policies(store.clone(), clock.clone());
    seed.apply(&seeding).await.unwrap();
    for name in ["ann", "ben", "cat"] {
        seeding
            .save_user(
                Actor::System,
                UserBody {
                    id: UserId::new(name).unwrap(),
                    display_name: String::new(),
                    email: None,
                    roles: [Role::Requester, Role::Approver].into(),
                    groups: ["people".to_owned()].into(),
                    person: None,
                },
            )
            .await
            .unwrap();
    }
    let broker = start(store.clone(), clock.clone()).await;
    let mut users = Vec::new();
    for name in ["ann", "ben", "cat"] {
        users.push(store.user(&UserId::new(name).unwrap()).await.unwrap().unwrap());
    }
    Harness {
        _backing: backing,
        broker,
        clock,
        users,
    }
}

/// A broker over `store`, as a process starting on it would be: policies
/// loaded, keys made, nothing in memory from before.
pub async fn start(store: Arc<dyn Store>, clock: Arc<ManualClock>) -> Broker {
    let sources = vec![
        PolicySource {
            path: "p.cedar".into(),
            text: POLICY.into(),
        },
        PolicySource {
            path: "workflows.toml".into(),
            text: WORKFLOWS.into(),
        },
    ];
    let seeding = Broker::without_policies(store, clock);
    let catalog = seeding.catalog().await.unwrap();
    crate::tls::install_crypto_provider();
    let keys = crate::service::BrokerKeys {
        ca: Arc::new(crate::tls::BrokerCa::generate(t0()).unwrap()),
        commands: Arc::new(jitgate_shared::v1::signing::CommandSigner::from_secret(&[7; 32])),
        audit: Arc::new(crate::audit::anchor::AnchorSigner::from_secret(&[8; 32])),
    };
    seeding
        .with_policies("p".into(), Policies::load(&sources, &catalog).unwrap())
        .with_keys(keys)
}

impl Harness {
    /// Runs every job that is due, as the scheduler would.
    pub async fn drain(&self) {
        while self.broker.run_due_jobs().await.unwrap().more {}
    }

    /// The broker stops and starts again on the same store: what it kept
    /// in memory (agent claims, backoffs, metrics) is gone.
    pub async fn restart(&mut self) {
        self.broker = start(self.broker.store().clone(), self.clock.clone()).await;
        self.broker.count_failing_revokes().await.unwrap();
    }
}

pub fn body(resource: &str, seconds: u64) -> CreateRequestBody {
    CreateRequestBody {
        resource: ResourceId::new(resource).unwrap(),
        duration_seconds: Some(seconds),
        justification: None,
        ticket: None,
        starts_at: None,
        break_glass: false,
    }
}

/// A command for the `aws` configuration: `alice` in the IAM group `group`,
/// valid for ten minutes from a fixed instant.
pub fn command(id: &str, group: &str, op: jitgate_shared::v1::api::CommandOp) -> crate::outbox::Command {
    let t = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
    crate::outbox::Command {
        id: id.into(),
        op,
        grant: jitgate_shared::v1::GrantId::generate(),
        entitlement: jitgate_shared::v1::Entitlement {
            configuration: jitgate_shared::v1::ConfigId::new("aws").unwrap(),
            target: jitgate_shared::v1::Target::AwsIamGroupMembership {
                group_name: group.into(),
            },
            principal: "alice".into(),
        },
        not_before: t,
        not_after: t + chrono::Duration::seconds(600),
        issued_at: t,
        cap_session_duration: false,
        end_sign_in_sessions: false,
        provision_on_demand: None,
    }
}
