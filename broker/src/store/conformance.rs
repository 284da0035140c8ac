//! What every [`Store`] backend must do, whatever it stores in: each method
//! round-trips what a change wrote, compare-and-set refuses a stale or
//! second create, a change writing one key twice is refused whole, lists
//! page newest first and match the typed queries, the outbox keeps the
//! shared queue rules, and everything survives a restart.
//!
//! A backend runs the whole suite with one line:
//! `conformance!(name, |dir| open the backend in dir);` (see the bottom).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use jitgate_shared::v1::api::{
    AgentState, CommandOp, ConfigKind, Configuration, CreateRequestBody, GrantState, IdentityMode,
    RequestKind, RequestState, Role,
};
use jitgate_shared::v1::protocol::Outcome;
use jitgate_shared::v1::{AgentId, ConfigId, Entitlement, GrantId, RequestId, ResourceId, Target, UserId};

use super::{
    Change, GrantFilter, PageQuery, RequestFilter, ScimFilter, SessionFilter, Store, StoreError, TokenFilter,
};
use crate::audit::{Actor, AuditEntry, AuditEvent, ChainVerifier};
use crate::domain::agent::{Agent, JoinToken};
use crate::domain::catalog::StoredConfiguration;
use crate::domain::grant::Grant;
use crate::domain::job::{Job, JobKind};
use crate::domain::lease::Lease;
use crate::domain::policy::Workflow;
use crate::domain::request::{NewRequest, Request};
use crate::domain::session::{LoginClient, LoginOutcome, PendingLogin, Session};
use crate::domain::user::{ApiToken, User};
use crate::identity::scim::{ScimConnection, ScimKind, ScimResource};
use crate::outbox::{Command, CommandResult};
use crate::testing::command;

/// A backend under test, with state of its own: `open` opens it, and
/// opens it again on the same state after the last handle is dropped.
#[async_trait::async_trait]
pub trait Fixture: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

pub(crate) fn t(s: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + s, 0).unwrap()
}

pub(crate) fn uid(s: &str) -> UserId {
    UserId::new(s).unwrap()
}

pub(crate) fn aws() -> ConfigId {
    ConfigId::new("aws").unwrap()
}

pub(crate) fn config(id: &str) -> StoredConfiguration {
    StoredConfiguration {
        version: 0,
        config: Configuration {
            id: ConfigId::new(id).unwrap(),
            kind: ConfigKind::AwsIam,
            display_name: String::new(),
            tenant: Default::default(),
            identity_mode: IdentityMode::Direct,
            enabled: true,
        },
    }
}

pub(crate) fn user(id: &str) -> User {
    User {
        id: uid(id),
        version: 0,
        display_name: id.into(),
        email: None,
        email_verified: true,
        roles: [Role::Requester].into(),
        groups: Default::default(),
        person: id.into(),
        disabled: false,
        created_at: t(0),
        provisioned_by: None,
        identities: Default::default(),
        language: None,
    }
}

pub(crate) fn entitlement(group: &str, who: &str) -> Entitlement {
    Entitlement {
        configuration: aws(),
        target: Target::AwsIamGroupMembership {
            group_name: group.into(),
        },
        principal: who.into(),
    }
}

pub(crate) fn request(requester: &User, at: i64) -> Request {
    let body = CreateRequestBody {
        resource: ResourceId::new("admins").unwrap(),
        duration_seconds: Some(600),
        justification: Some("conformance".into()),
        ticket: None,
        starts_at: None,
        break_glass: false,
    };
    NewRequest {
        id: RequestId::generate(),
        kind: RequestKind::Access,
        requester,
        body: &body,
        workflow: &Workflow::builtin(),
        permitted: true,
        on_call: false,
        now: t(at),
    }
    .build()
    .unwrap()
}

pub(crate) fn grant(request: &Request, at: i64) -> Grant {
    Grant::for_request(
        GrantId::generate(),
        request,
        entitlement("admins", request.requester.as_str()),
        t(at),
    )
}

pub(crate) fn entry() -> AuditEntry {
    AuditEntry {
        at: t(0),
        actor: Actor::System,
        event: AuditEvent::ConfigurationSaved { configuration: aws() },
    }
}

pub(crate) fn token(hash: &str, user: &str, session: Option<&str>, expires: i64) -> ApiToken {
    ApiToken {
        hash: hash.into(),
        user: uid(user),
        created_at: t(0),
        expires_at: t(expires),
        session: session.map(str::to_owned),
        kind: Default::default(),
    }
}

pub(crate) fn session(id: &str, user: &str, expires: i64, ended: Option<i64>) -> Session {
    Session {
        id: id.into(),
        version: 0,
        user: uid(user),
        provider: "idp".into(),
        idp_refresh_token: None,
        created_at: t(0),
        expires_at: t(expires),
        refreshed_at: None,
        ended_at: ended.map(t),
        csrf_secret: String::new(),
    }
}

pub(crate) fn login(key: &str, expires: i64) -> PendingLogin {
    PendingLogin {
        key: key.into(),
        version: 0,
        provider: "idp".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        client: LoginClient::Web {
            return_to: "/".into(),
        },
        created_at: t(0),
        expires_at: t(expires),
        outcome: LoginOutcome::Waiting,
    }
}

pub(crate) fn scim(id: &str, kind: ScimKind, doc: serde_json::Value) -> ScimResource {
    ScimResource {
        id: id.into(),
        version: 0,
        connection: "okta".into(),
        kind,
        doc: doc.as_object().unwrap().clone(),
        user: None,
        created_at: t(0),
        modified_at: t(0),
    }
}

/// Every record kind a change writes comes back from its getter and its
/// list, at version 1.
pub async fn every_record_round_trips(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let alice = user("alice");
    let r = request(&alice, 0);
    let g = grant(&r, 0);
    let lease = Lease::new(g.entitlement.clone()).hold(g.id, g.ends_at).0;
    let agent = AgentId::generate();
    let join = JoinToken {
        hash: "join".into(),
        version: 0,
        configuration: aws(),
        created_by: uid("admin"),
        created_at: t(0),
        expires_at: t(600),
        used_at: None,
        used_by: None,
    };
    let change = Change {
        configurations: vec![config("aws")],
        users: vec![alice.clone()],
        tokens: vec![token("h1", "alice", None, 600)],
        requests: vec![r.clone()],
        grants: vec![g.clone()],
        leases: vec![lease.clone()],
        join_tokens: vec![join],
        agents: vec![Agent {
            id: agent,
            version: 0,
            configuration: aws(),
            state: AgentState::Pending,
            enrolled_at: t(0),
            certificate_not_after: t(3600),
        }],
        scim_connections: vec![ScimConnection {
            name: "okta".into(),
            version: 0,
            token_hash: "x".into(),
            default_roles: Default::default(),
            created_at: t(0),
        }],
        scim_resources: vec![
            scim("u1", ScimKind::User, serde_json::json!({"userName": "Ann"})),
            scim(
                "g1",
                ScimKind::Group,
                serde_json::json!({"displayName": "ops", "members": [{"value": "u1"}]}),
            ),
        ],
        pending_logins: vec![login("pl", 60)],
        sessions: vec![session("s1", "alice", 600, None)],
        audit: vec![entry()],
        ..Change::default()
    };
    store.commit(change).await.unwrap();

    let c = store.configuration(&aws()).await.unwrap().unwrap();
    assert_eq!((c.version, c.config.id.clone()), (1, aws()));
    assert_eq!(store.configurations().await.unwrap(), [c]);
    let u = store.user(&alice.id).await.unwrap().unwrap();
    assert_eq!(u.version, 1);
    assert_eq!(store.users().await.unwrap(), [u]);
    assert_eq!(store.token("h1").await.unwrap().unwrap().user, alice.id);
    assert_eq!(store.request(r.id).await.unwrap().unwrap().version, 1);
    assert_eq!(store.grant(g.id).await.unwrap().unwrap().version, 1);
    assert_eq!(store.lease(&lease.key).await.unwrap().unwrap().version, 1);
    assert_eq!(store.held_leases(&aws()).await.unwrap().len(), 1);
    assert!(store
        .held_leases(&ConfigId::new("entra").unwrap())
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.join_token("join").await.unwrap().unwrap().version, 1);
    assert_eq!(store.agent(agent).await.unwrap().unwrap().version, 1);
    assert_eq!(store.agents().await.unwrap().len(), 1);
    assert_eq!(store.scim_connection("okta").await.unwrap().unwrap().version, 1);
    assert_eq!(store.scim_connections().await.unwrap().len(), 1);
    let ann = store.scim_resource("okta", ScimKind::User, "u1").await.unwrap();
    assert_eq!(ann.unwrap().version, 1);
    let named = store.scim_named("okta", ScimKind::User, "ANN").await.unwrap();
    assert_eq!(named.len(), 1, "names match without regard to case");
    let with_member = ScimFilter {
        member: Some("u1".into()),
    };
    let groups = store.scim_resources("okta", ScimKind::Group, &with_member).await;
    assert_eq!(groups.unwrap().len(), 1);
    let none = ScimFilter {
        member: Some("u2".into()),
    };
    assert!(store
        .scim_resources("okta", ScimKind::Group, &none)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.pending_login("pl").await.unwrap().unwrap().version, 1);
    assert!(store.expired_logins(t(60)).await.unwrap().is_empty());
    assert_eq!(store.expired_logins(t(61)).await.unwrap().len(), 1);
    assert_eq!(store.session("s1").await.unwrap().unwrap().version, 1);
    assert_eq!(store.audit(1, 10).await.unwrap().len(), 1);
    assert_eq!(store.audit_head().await.unwrap().seq, 1);
    assert!(store.audit_anchor().await.unwrap().is_none());

    // Deletions.
    store
        .commit(Change {
            delete_tokens: vec!["h1".into()],
            delete_pending_logins: vec!["pl".into()],
            delete_scim_resources: vec![store
                .scim_resource("okta", ScimKind::User, "u1")
                .await
                .unwrap()
                .unwrap()],
            delete_scim_connections: vec!["okta".into()],
            ..Change::default()
        })
        .await
        .unwrap();
    assert!(store.token("h1").await.unwrap().is_none());
    assert!(store.pending_login("pl").await.unwrap().is_none());
    assert!(store.scim_connection("okta").await.unwrap().is_none());
    assert!(store
        .scim_named("okta", ScimKind::User, "ann")
        .await
        .unwrap()
        .is_empty());
}

/// Compare-and-set: a second create and a stale update conflict, and a
/// conflicting change in a batch fails alone, leaving nothing behind.
pub async fn versions_conflict(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let create = Change {
        users: vec![user("alice")],
        ..Change::default()
    };
    let committed = store.commit(create.clone()).await.unwrap();
    assert_eq!(
        committed.version_of(&user("alice")),
        Some(1),
        "commit says what it stored"
    );
    assert_eq!(committed.version_of(&user("bob")), None);
    let err = store.commit(create).await.unwrap_err();
    assert!(
        matches!(
            &err,
            StoreError::Conflict {
                record: "user",
                expected: 0,
                found: 1,
                ..
            }
        ),
        "{err}"
    );
    let read = store.user(&uid("alice")).await.unwrap().unwrap();
    let update = Change {
        users: vec![read],
        audit: vec![entry()],
        ..Change::default()
    };
    let results = store.commit_all(vec![update.clone(), update]).await;
    let stored = results[0].as_ref().unwrap().stored(user("alice"));
    assert!(results[1].as_ref().unwrap_err().is_conflict());
    assert_eq!(stored.version, 2);
    assert_eq!(store.user(&uid("alice")).await.unwrap().unwrap().version, 2);
    assert_eq!(
        store.audit(1, 10).await.unwrap().len(),
        1,
        "the failed change left no audit"
    );
}

/// A change writing one record, or one entitlement's outbox entry, twice is
/// refused whole.
pub async fn a_key_written_twice_is_refused_whole(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let twice = Change {
        configurations: vec![config("aws"), config("aws")],
        audit: vec![entry()],
        ..Change::default()
    };
    let err = store.commit(twice).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::WrittenTwice { record: "configuration", id } if id == "aws"),
        "{err}"
    );
    let commands = Change {
        users: vec![user("alice")],
        commands: vec![
            command("g1", "admins", CommandOp::Grant),
            command("r1", "admins", CommandOp::Revoke),
        ],
        ..Change::default()
    };
    let err = store.commit(commands).await.unwrap_err();
    assert!(matches!(err, StoreError::WrittenTwice { .. }), "{err}");
    assert!(store.configuration(&aws()).await.unwrap().is_none());
    assert!(store.user(&uid("alice")).await.unwrap().is_none());
    assert!(store.audit(1, 10).await.unwrap().is_empty());
    assert!(store.outbox(&aws(), 10).await.unwrap().is_empty());
}

/// What `list` gives, read a page of one at a time (each page after the
/// last one's `id`), each item seen as `view` shows it.
async fn one_at_a_time<T, V, Fut>(
    list: impl Fn(PageQuery) -> Fut,
    id: impl Fn(&T) -> String,
    view: impl Fn(&T) -> V,
) -> Vec<V>
where
    Fut: std::future::Future<Output = Result<Vec<T>, StoreError>>,
{
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = list(PageQuery::new(after.take(), 1)).await.unwrap();
        let Some(last) = page.last() else {
            return seen;
        };
        after = Some(id(last));
        seen.extend(page.iter().map(&view));
    }
}

/// Lists come newest first, page after an id, and return exactly what the
/// typed queries match.
pub async fn lists_page_newest_first_and_match_the_queries(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut requests = Vec::new();
    let mut grants = Vec::new();
    for i in 0..6 {
        let who = if i % 2 == 0 { &alice } else { &bob };
        let mut r = request(who, i);
        if i >= 4 {
            r.state = RequestState::Approved;
        }
        let mut g = grant(&r, i);
        if i == 5 {
            g.state = GrantState::Ended;
            g.ended_at = Some(t(100));
        }
        requests.push(r);
        grants.push(g);
    }
    store
        .commit(Change {
            requests: requests.clone(),
            grants: grants.clone(),
            tokens: vec![
                token("h1", "alice", Some("s1"), 600),
                token("h2", "alice", None, 60),
                token("h3", "bob", None, 600),
            ],
            sessions: vec![
                session("s1", "alice", 600, None),
                session("s2", "alice", 600, Some(10)),
                session("s3", "bob", 60, None),
            ],
            ..Change::default()
        })
        .await
        .unwrap();

    let newest_first: Vec<GrantId> = grants.iter().rev().map(|g| g.id).collect();
    let all = GrantFilter::default();
    let first = store
        .grants(&PageQuery::new(None::<String>, 4), &all)
        .await
        .unwrap();
    assert_eq!(first.iter().map(|g| g.id).collect::<Vec<_>>(), newest_first[..4]);
    let rest = store
        .grants(&PageQuery::new(Some(first[3].id), 4), &all)
        .await
        .unwrap();
    assert_eq!(rest.iter().map(|g| g.id).collect::<Vec<_>>(), newest_first[4..]);

    let grant_queries = [
        GrantFilter {
            user: Some(uid("alice")),
            ..GrantFilter::default()
        },
        GrantFilter::open(),
        GrantFilter {
            ended_since: Some(t(101)),
            ..GrantFilter::default()
        },
        GrantFilter {
            revoke_failing: true,
            ..GrantFilter::default()
        },
    ];
    for q in grant_queries {
        let got = store
            .grants(&PageQuery::new(None::<String>, 100), &q)
            .await
            .unwrap();
        let want: Vec<_> = grants
            .iter()
            .rev()
            .filter(|g| q.matches(g))
            .map(|g| g.id)
            .collect();
        assert_eq!(got.iter().map(|g| g.id).collect::<Vec<_>>(), want, "{q:?}");
    }
    // One person's grants and requests, a page of one at a time (the
    // embedded store reads them through its indexes by user), and as they
    // are after a later write.
    let mut ended = grants[0].clone();
    ended.state = GrantState::Ended;
    ended.ended_at = Some(t(50));
    ended.version = 1;
    let mut cancelled = requests[0].clone();
    cancelled.state = RequestState::Cancelled;
    cancelled.version = 1;
    store
        .commit(Change {
            grants: vec![ended.clone()],
            requests: vec![cancelled.clone()],
            ..Change::default()
        })
        .await
        .unwrap();
    grants[0] = ended;
    requests[0] = cancelled;
    for who in ["alice", "bob", "carol"] {
        let of = GrantFilter {
            user: Some(uid(who)),
            ..GrantFilter::default()
        };
        let got = one_at_a_time(
            |page| {
                let (store, of) = (&store, &of);
                async move { store.grants(&page, of).await }
            },
            |g: &Grant| g.id.to_string(),
            |g| (g.id, g.state),
        )
        .await;
        let want: Vec<_> = grants
            .iter()
            .rev()
            .filter(|g| of.matches(g))
            .map(|g| (g.id, g.state))
            .collect();
        assert_eq!(got, want, "grants of {who}");
        let of = RequestFilter {
            requester: Some(uid(who)),
            ..RequestFilter::default()
        };
        let got = one_at_a_time(
            |page| {
                let (store, of) = (&store, &of);
                async move { store.requests(&page, of).await }
            },
            |r: &Request| r.id.to_string(),
            |r| (r.id, r.state),
        )
        .await;
        let want: Vec<_> = requests
            .iter()
            .rev()
            .filter(|r| of.matches(r))
            .map(|r| (r.id, r.state))
            .collect();
        assert_eq!(got, want, "requests of {who}");
    }
    let request_queries = [
        RequestFilter {
            requester: Some(uid("bob")),
            states: vec![RequestState::Approved],
            resource: None,
        },
        RequestFilter {
            requester: None,
            states: vec![RequestState::Pending, RequestState::Approved],
            resource: None,
        },
        RequestFilter {
            resource: Some(ResourceId::new("admins").unwrap()),
            ..RequestFilter::default()
        },
        RequestFilter {
            resource: Some(ResourceId::new("other").unwrap()),
            ..RequestFilter::default()
        },
    ];
    for q in request_queries {
        let got = store
            .requests(&PageQuery::new(None::<String>, 100), &q)
            .await
            .unwrap();
        let want: Vec<_> = requests
            .iter()
            .rev()
            .filter(|r| q.matches(r))
            .map(|r| r.id)
            .collect();
        assert_eq!(got.iter().map(|r| r.id).collect::<Vec<_>>(), want, "{q:?}");
    }
    let hashes = |ts: Vec<ApiToken>| {
        let mut h: Vec<String> = ts.into_iter().map(|t| t.hash).collect();
        h.sort();
        h
    };
    let by_session = TokenFilter {
        session: Some("s1".into()),
        ..TokenFilter::default()
    };
    assert_eq!(hashes(store.tokens(&by_session).await.unwrap()), ["h1"]);
    let expired = TokenFilter {
        expired_at: Some(t(60)),
        ..TokenFilter::default()
    };
    assert_eq!(hashes(store.tokens(&expired).await.unwrap()), ["h2"]);
    let live_of_alice = TokenFilter {
        user: Some(uid("alice")),
        valid_at: Some(t(60)),
        ..TokenFilter::default()
    };
    assert_eq!(hashes(store.tokens(&live_of_alice).await.unwrap()), ["h1"]);
    let by_id = TokenFilter {
        id: Some("h3".into()),
        ..TokenFilter::default()
    };
    assert_eq!(hashes(store.tokens(&by_id).await.unwrap()), ["h3"]);
    let ids = |ss: Vec<Session>| {
        let mut i: Vec<String> = ss.into_iter().map(|s| s.id).collect();
        i.sort();
        i
    };
    let live = SessionFilter {
        live_at: Some(t(60)),
        ..SessionFilter::default()
    };
    assert_eq!(ids(store.sessions(&live).await.unwrap()), ["s1"]);
    let open_of_alice = SessionFilter {
        user: Some(uid("alice")),
        not_ended: true,
        live_at: None,
    };
    assert_eq!(ids(store.sessions(&open_of_alice).await.unwrap()), ["s1"]);
}

/// The outbox keeps the shared queue rules: revokes first, newest per
/// entitlement, an id queued once; settled commands leave and their
/// results stay.
pub async fn the_outbox_keeps_the_queue_rules(fixture: &dyn Fixture) {
    let store = fixture.open().await;
    let queue = |commands: Vec<Command>| Change {
        commands,
        ..Change::default()
    };
    store
        .commit(queue(vec![
            command("a-grant", "a", CommandOp::Grant),
            command("b-grant", "b", CommandOp::Grant),
        ]))
        .await
        .unwrap();
    store
        .commit(queue(vec![command("a-revoke", "a", CommandOp::Revoke)]))
        .await
        .unwrap();
    store
        .commit(queue(vec![command("a-grant", "a", CommandOp::Grant)]))
        .await
        .unwrap();
    let ids = |cs: Vec<Command>| cs.into_iter().map(|c| c.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.outbox(&aws(), 10).await.unwrap()),
        ["a-revoke", "b-grant"]
    );
    assert_eq!(ids(store.outbox(&aws(), 1).await.unwrap()), ["a-revoke"]);
    assert!(
        store.queued_command("a-grant").await.unwrap().is_none(),
        "superseded"
    );
    let b = store.queued_command("b-grant").await.unwrap().unwrap();
    let result = CommandResult {
        command: b.id.clone(),
        configuration: aws(),
        grant: b.grant,
        op: b.op,
        agent: AgentId::generate(),
        outcome: Outcome::Applied,
        at: t(1),
    };
    store
        .commit(Change {
            delivered: vec![b.id.clone()],
            results: vec![result.clone()],
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(ids(store.outbox(&aws(), 10).await.unwrap()), ["a-revoke"]);
    assert_eq!(store.command_result("b-grant").await.unwrap(), Some(result));
    store.commit(queue(vec![b])).await.unwrap();
    assert_eq!(
        ids(store.outbox(&aws(), 10).await.unwrap()),
        ["a-revoke"],
        "a settled id is not queued again"
    );
}

/// Jobs come due in order; jobs, the outbox and the audit chain survive a
/// restart, and the chain continues after it.
pub async fn state_survives_a_restart(fixture: &dyn Fixture) {
    let jobs: Vec<Job> = (0..5)
        .map(|i| Job {
            due: t(10 * (5 - i)),
            kind: JobKind::ExpireGrant(GrantId::generate()),
        })
        .collect();
    {
        let store = fixture.open().await;
        store
            .commit(Change {
                schedule: jobs,
                commands: vec![command("r1", "a", CommandOp::Revoke)],
                audit: vec![entry(), entry()],
                ..Change::default()
            })
            .await
            .unwrap();
    }
    let store = fixture.open().await;
    assert_eq!(store.job_count().await.unwrap(), 5);
    assert_eq!(store.next_due().await.unwrap(), Some(t(10)));
    let due = store.due_jobs(t(30), 100).await.unwrap();
    assert_eq!(
        due.iter().map(|j| j.due).collect::<Vec<_>>(),
        [t(10), t(20), t(30)]
    );
    assert_eq!(store.due_jobs(t(30), 2).await.unwrap().len(), 2);
    assert!(store.due_jobs(t(9), 10).await.unwrap().is_empty());
    store
        .commit(Change {
            unschedule: due,
            commands: vec![command("r2", "b", CommandOp::Revoke)],
            audit: vec![entry()],
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(store.job_count().await.unwrap(), 2);
    let ids: Vec<_> = store
        .outbox(&aws(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["r1", "r2"], "queue order continues after the restart");
    let mut v = ChainVerifier::default();
    for r in store.audit(1, 100).await.unwrap() {
        v.check(&r).unwrap();
    }
    assert_eq!(v.verified(), 3);
}

fn notification(event: &str, to: &str, due: i64) -> crate::notify::queue::Notification {
    let mut sample = crate::notify::event::sample();
    sample.id = event.to_owned();
    let address = crate::notify::route::Address::Webhook { endpoint: to.into() };
    crate::notify::queue::Notification::new(sample, address, t(due))
}

/// Notifications come due in order of their due time, move when claimed
/// and leave the due list when settled or deleted (and survive a
/// restart); a second create of one id and a stale cursor conflict.
pub async fn the_notification_queue_keeps_its_order(fixture: &dyn Fixture) {
    use crate::notify::queue::Cursor;
    let ids = |ns: Vec<crate::notify::queue::Notification>| ns.into_iter().map(|n| n.id).collect::<Vec<_>>();
    let mut ops = notification("e2", "ops", 20);
    let about = RequestId::generate();
    ops.event.request.as_mut().unwrap().id = about;
    let mut siem = notification("e1", "siem", 30);
    siem.event.request.as_mut().unwrap().id = about;
    {
        let store = fixture.open().await;
        let queued = vec![siem, notification("e2", "siem", 10), ops];
        let cursor = Cursor {
            name: Cursor::NOTIFY.into(),
            version: 0,
            seq: 7,
        };
        store
            .commit(Change {
                notifications: queued,
                cursors: vec![cursor],
                ..Change::default()
            })
            .await
            .unwrap();
    }
    let store = fixture.open().await;
    assert_eq!(
        ids(store.due_notifications(t(25), 10).await.unwrap()),
        ["e2/webhook:siem", "e2/webhook:ops"]
    );
    assert_eq!(store.due_notifications(t(100), 1).await.unwrap().len(), 1);
    let err = store
        .commit(Change {
            notifications: vec![notification("e1", "siem", 0)],
            ..Change::default()
        })
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");

    // Claimed: due again later; settled: no longer due, still kept.
    let first = store.notification("e2/webhook:siem").await.unwrap().unwrap();
    let claimed = first.claim(t(15));
    let c = store
        .commit(Change {
            notifications: vec![claimed.clone()],
            ..Change::default()
        })
        .await
        .unwrap();
    let claimed = c.stored(claimed);
    assert_eq!(
        ids(store.due_notifications(t(25), 10).await.unwrap()),
        ["e2/webhook:ops"]
    );
    let stale = store
        .commit(Change {
            notifications: vec![first.claim(t(16))],
            ..Change::default()
        })
        .await
        .unwrap_err();
    assert!(stale.is_conflict(), "a second claim of the same try conflicts");
    store
        .commit(Change {
            notifications: vec![claimed.delivered(t(16), None)],
            delete_notifications: vec!["e2/webhook:ops".into()],
            ..Change::default()
        })
        .await
        .unwrap();
    assert_eq!(
        ids(store.due_notifications(t(1000), 10).await.unwrap()),
        ["e1/webhook:siem"]
    );
    assert_eq!(
        ids(store.notifications().await.unwrap()),
        ["e1/webhook:siem", "e2/webhook:siem"]
    );
    assert!(store.notification("e2/webhook:ops").await.unwrap().is_none());
    assert_eq!(
        ids(store.notifications_about(about).await.unwrap()),
        ["e1/webhook:siem"],
        "a request's notifications, the deleted one gone"
    );

    let cursor = store.cursor(Cursor::NOTIFY).await.unwrap().unwrap();
    assert_eq!((cursor.seq, cursor.version), (7, 1));
    let advance = |seq| Change {
        cursors: vec![Cursor {
            seq,
            ..cursor.clone()
        }],
        ..Change::default()
    };
    store.commit(advance(9)).await.unwrap();
    assert!(store.commit(advance(8)).await.unwrap_err().is_conflict());
    assert_eq!(store.cursor(Cursor::NOTIFY).await.unwrap().unwrap().seq, 9);

    // About no request (agents offline): queued and deleted like any.
    let mut offline = notification("e3", "siem", 40);
    offline.event = crate::notify::event::sample_agent_offline();
    let id = offline.id.clone();
    store
        .commit(Change {
            notifications: vec![offline],
            ..Change::default()
        })
        .await
        .unwrap();
    assert!(store.notification(&id).await.unwrap().is_some());
    assert_eq!(store.notifications_about(about).await.unwrap().len(), 1);
    store
        .commit(Change {
            delete_notifications: vec![id.clone()],
            ..Change::default()
        })
        .await
        .unwrap();
    assert!(store.notification(&id).await.unwrap().is_none());
}

/// One-time proofs past their expiry are listed, and go when deleted.
pub async fn expired_assertions_are_swept(fixture: &dyn Fixture) {
    use crate::domain::session::UsedAssertion;
    let store = fixture.open().await;
    let used = |key: &str, expires: i64| UsedAssertion {
        key: key.into(),
        version: 0,
        expires_at: t(expires),
    };
    store
        .commit(Change {
            used_assertions: vec![used("saml/a", 10), used("slack/b", 20), used("slack/c", 30)],
            ..Change::default()
        })
        .await
        .unwrap();
    let mut expired: Vec<String> = store
        .expired_assertions(t(25))
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.key)
        .collect();
    expired.sort();
    assert_eq!(expired, ["saml/a", "slack/b"]);
    store
        .commit(Change {
            delete_used_assertions: expired,
            ..Change::default()
        })
        .await
        .unwrap();
    assert!(store.expired_assertions(t(25)).await.unwrap().is_empty());
    assert_eq!(store.expired_assertions(t(31)).await.unwrap().len(), 1);
    // Still used: a second write of a kept one conflicts.
    let again = store
        .commit(Change {
            used_assertions: vec![used("slack/c", 30)],
            ..Change::default()
        })
        .await;
    assert!(again.unwrap_err().is_conflict());
}

/// Last contacts are listed and kept with compare-and-set.
pub async fn last_contacts_keep_to_their_versions(fixture: &dyn Fixture) {
    use crate::domain::contact::LastContact;
    let store = fixture.open().await;
    let contact = |config: &str, version, at| LastContact {
        configuration: jitgate_shared::v1::ConfigId::new(config).unwrap(),
        version,
        at: t(at),
    };
    store
        .commit(Change {
            last_contacts: vec![contact("aws", 0, 10), contact("entra", 0, 20)],
            ..Change::default()
        })
        .await
        .unwrap();
    let refresh = Change {
        last_contacts: vec![contact("aws", 1, 30)],
        ..Change::default()
    };
    store.commit(refresh.clone()).await.unwrap();
    // Another broker wrote it since: its write stands.
    assert!(store.commit(refresh).await.unwrap_err().is_conflict());
    let mut listed: Vec<(String, u64, i64)> = store
        .last_contacts()
        .await
        .unwrap()
        .into_iter()
        .map(|c| {
            (
                c.configuration.to_string(),
                c.version,
                c.at.timestamp() - t(0).timestamp(),
            )
        })
        .collect();
    listed.sort();
    assert_eq!(listed, [("aws".into(), 2, 30), ("entra".into(), 1, 20)]);
}

/// Runs every case of the suite against a backend: `$fixture` is an
/// async function making a fresh [`Fixture`].
macro_rules! conformance {
    ($backend:ident, $fixture:path) => {
        mod $backend {
            use crate::store::conformance as suite;

            conformance!(@cases $fixture; every_record_round_trips, versions_conflict,
                a_key_written_twice_is_refused_whole, lists_page_newest_first_and_match_the_queries,
                the_outbox_keeps_the_queue_rules, state_survives_a_restart,
                the_notification_queue_keeps_its_order, expired_assertions_are_swept,
                last_contacts_keep_to_their_versions);
        }
    };
    (@cases $fixture:path; $($case:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let fixture = $fixture().await;
                suite::$case(&fixture).await
            }
        )+
    };
}

mod backends {
    use std::sync::Arc;

    use super::Fixture;
    use crate::store::postgres::scratch::ScratchDatabase;
    use crate::store::postgres::PgStore;
    use crate::store::Store;

    struct Sled(tempfile::TempDir);

    async fn sled_fixture() -> Sled {
        Sled(tempfile::tempdir().unwrap())
    }

    #[async_trait::async_trait]
    impl Fixture for Sled {
        async fn open(&self) -> Arc<dyn Store> {
            Arc::new(crate::testing::open_sled_when_free(self.0.path()).await)
        }
    }

    struct Postgres(ScratchDatabase);

    async fn postgres_fixture() -> Postgres {
        Postgres(ScratchDatabase::create().await.unwrap())
    }

    #[async_trait::async_trait]
    impl Fixture for Postgres {
        async fn open(&self) -> Arc<dyn Store> {
            Arc::new(PgStore::open(&self.0.settings(), true).await.unwrap())
        }
    }

    conformance!(sled, super::sled_fixture);
    conformance!(postgres, super::postgres_fixture);
}
