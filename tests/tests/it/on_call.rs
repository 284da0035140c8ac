//! On call, against contract fakes of PagerDuty's and Opsgenie's on-call
//! endpoints: whoever is on call on a workflow's schedule (mapped by
//! verified email) is approved without review where the workflow says
//! so, and Cedar sees `context.on_call`; a lookup that fails never
//! approves.

use std::time::Duration;

use jitgate_shared::v1::api::RequestState;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::CATALOG;
use jitgate_tests::on_call_fake::OnCallFake;
use tempfile::TempDir;

use crate::support::{ask, broker_with, eventually, request, status};

/// The fixtures, with bob's address, and frank: a contractor who may ask
/// for `auto-admin` only while on call.
fn catalog() -> String {
    format!(
        "{}\n[[users]]\nid = \"frank\"\nemail = \"frank@example.com\"\nroles = [\"requester\"]\ngroups = [\"contractors\"]\n",
        CATALOG.replace("id = \"bob\"\n", "id = \"bob\"\nemail = \"bob@example.com\"\n")
    )
}

const ON_CALL_POLICY: &str = r#"
@id("contractors-on-call")
permit (
  principal in Jitgate::Group::"contractors",
  action == Jitgate::Action::"request",
  resource == Jitgate::Resource::"auto-admin"
) when { context.on_call };
"#;

const ROUTES: &str = r#"
[resource.dev-admin]
on_call = "pd:PSCHED1"
auto_approve_on_call = true

[resource.auto-admin]
on_call = "og:ops-schedule"
"#;

async fn setup(cache: &str) -> (TestBroker, OnCallFake, TempDir) {
    let fake = OnCallFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = fake.config(dir.path(), cache);
    let b = broker_with(dir.path(), &catalog(), ON_CALL_POLICY, ROUTES, &config).await;
    (b, fake, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoever_is_on_call_is_approved_without_review() {
    let (b, pd, _dir) = setup("1s").await;
    pd.set_on_call("PSCHED1", &["Alice@Example.com"]);
    let mine = request(&b.client("alice"), "dev-admin", 600).await;
    assert_eq!(mine.state, RequestState::Active, "alice is on call");
    assert_eq!(mine.approvals_required, 0);
    let theirs = request(&b.client("bob"), "dev-admin", 600).await;
    assert_eq!(theirs.state, RequestState::Pending, "bob is not");
    let page = b
        .client("admin")
        .audit_log(&[("kind", "request_created".into())])
        .await
        .unwrap();
    let on_call: Vec<bool> = page
        .records
        .iter()
        .map(|r| r["event"]["on_call"].as_bool().unwrap_or(false))
        .collect();
    assert_eq!(on_call, [false, true], "newest first: bob's, then alice's");

    // The provider fails: nobody is taken for on call, nothing approves.
    pd.set_failing(true);
    let calls = pd.calls();
    let failed = eventually(Duration::from_secs(30), "a lookup past the cache", || async {
        let r = request(&b.client("alice"), "dev-admin", 600).await;
        (pd.calls() > calls).then_some(r)
    })
    .await;
    assert_eq!(
        failed.state,
        RequestState::Pending,
        "a failed lookup never approves"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cedar_sees_whether_the_requester_is_on_call() {
    let (b, og, _dir) = setup("1s").await;
    og.set_on_call("ops-schedule", &["someone@example.com"]);
    let frank = b.client("frank");
    let (code, message) = status(frank.create_request(&ask("auto-admin", 600)).await);
    assert_eq!(code, reqwest::StatusCode::FORBIDDEN, "{message}");
    og.set_on_call("ops-schedule", &["frank@example.com"]);
    let r = eventually(
        Duration::from_secs(30),
        "frank on call (past the cache)",
        || async { frank.create_request(&ask("auto-admin", 600)).await.ok() },
    )
    .await;
    assert_eq!(r.state, RequestState::Active);
    // Opsgenie down: frank may no longer ask.
    og.set_failing(true);
    let calls = og.calls();
    eventually(
        Duration::from_secs(30),
        "refused once the lookup fails",
        || async {
            let refused = frank.create_request(&ask("auto-admin", 600)).await.is_err();
            (og.calls() > calls && refused).then_some(())
        },
    )
    .await;
}
