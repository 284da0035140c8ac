//! Approvals where people are: Slack, against a contract fake of its Web
//! API. A request posts to its routed channel and to each eligible
//! approver by direct message; a click approves through the same review
//! service as the console, and every copy is updated; what must be
//! refused (the requester or their second account, an unmapped member, a
//! bad signature, an old one, a replay) is refused and audited; deny asks
//! for a reason; extend from the ending-soon message; Slack down or rate
//! limiting loses nothing and delays no grant.

use std::collections::BTreeSet;
use std::time::Duration;

use jitgate_shared::v1::api::{GrantState, RequestState};
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::catalog_with_mailboxes;
use jitgate_tests::slack_fake::{Member, Posted, SlackFake};
use reqwest::StatusCode;
use tempfile::TempDir;

use crate::support::{broker_with, eventually, request};

fn member(id: &str, email: &str) -> Member {
    Member {
        id: id.into(),
        email: email.into(),
        confirmed: true,
    }
}

/// The fixtures' people in Slack: `erin` is alice's second account;
/// `U0NOBODY` has no jitgate account; `U0UNCONF` has carol's address
/// without Slack having confirmed it.
fn members() -> Vec<Member> {
    let mut m: Vec<Member> = ["alice", "bob", "carol", "dave", "erin"]
        .iter()
        .map(|who| {
            member(
                &format!("U0{}", who.to_uppercase()),
                &format!("{who}@example.com"),
            )
        })
        .collect();
    m.push(member("U0NOBODY", "nobody@example.com"));
    m.push(Member {
        confirmed: false,
        ..member("U0UNCONF", "Carol@Example.com")
    });
    m
}

struct Setup {
    b: TestBroker,
    slack: SlackFake,
    _dir: TempDir,
}

async fn setup(routes: &str, notify: &str) -> Setup {
    let slack = SlackFake::start(members()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[notify]\n{notify}\n{}", slack.config(dir.path()));
    let b = broker_with(dir.path(), &catalog_with_mailboxes(), "", routes, &config).await;
    Setup { b, slack, _dir: dir }
}

impl Setup {
    async fn click(&self, member: &str, action: &str, value: &str) -> StatusCode {
        let body = self.slack.click_body(member, action, value);
        SlackFake::send_signed(&self.b.url, &self.b.ca(), &body).await
    }

    async fn refusals(&self) -> Vec<serde_json::Value> {
        let page = self
            .b
            .client("admin")
            .audit_log(&[("kind", "chat_action_refused".into())])
            .await
            .unwrap();
        page.records
    }
}

/// Where each message went: channel names the broker used, DMs as `D` and
/// the member id.
fn channels(messages: &[Posted]) -> BTreeSet<String> {
    messages.iter().map(|m| m.channel.clone()).collect()
}

const PROD_CHANNEL: &str = "[group.prod.notify]\n\"slack:C0PRODAPPROVALS\" = [\"request_created\"]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_click_approves_and_every_copy_shows_who_decided() {
    let s = setup(PROD_CHANNEL, "").await;
    let asked = request(&s.b.client("alice"), "prod-admin", 600).await;
    // The channel, and each approver who may approve by DM: not alice, not
    // erin (alice's second account).
    let posted = eventually(Duration::from_secs(30), "the request's messages", || async {
        let m = s.slack.messages();
        (m.len() >= 4).then_some(m)
    })
    .await;
    assert_eq!(
        channels(&posted),
        BTreeSet::from(["C0PRODAPPROVALS", "DU0BOB", "DU0CAROL", "DU0DAVE"].map(String::from))
    );
    for m in &posted {
        assert_eq!(m.buttons(), ["approve", "deny", "open"], "{:?}", m.latest());
        let text = m.latest().to_string();
        assert!(
            text.contains("0 / 2") && text.contains("integration test"),
            "{text}"
        );
    }

    // One of two approvals: every copy shows the progress, buttons stay.
    assert_eq!(
        s.click("U0CAROL", "approve", &asked.id.to_string()).await,
        StatusCode::OK
    );
    eventually(Duration::from_secs(30), "every copy at 1 of 2", || async {
        s.slack
            .messages()
            .iter()
            .filter(|m| m.channel != "DU0ALICE")
            .all(|m| m.versions.len() >= 2 && m.latest().to_string().contains("1 / 2"))
            .then_some(())
    })
    .await;
    // The second approval decides: no buttons left on any copy.
    assert_eq!(
        s.click("U0DAVE", "approve", &asked.id.to_string()).await,
        StatusCode::OK
    );
    let r = eventually(Duration::from_secs(30), "approved", || async {
        let r = s.b.client("alice").request(asked.id).await.unwrap();
        (r.state == RequestState::Active).then_some(r)
    })
    .await;
    assert_eq!(r.reviews.len(), 2);
    eventually(Duration::from_secs(30), "every copy decided", || async {
        s.slack
            .messages()
            .iter()
            .filter(|m| posted.iter().any(|p| p.ts == m.ts))
            .all(|m| m.buttons() == ["open"] && m.latest().to_string().contains("Request approved"))
            .then_some(())
    })
    .await;
    // The requester hears the outcome by DM.
    eventually(Duration::from_secs(30), "alice told", || async {
        s.slack
            .messages_in("DU0ALICE")
            .iter()
            .any(|m| m.latest().to_string().contains("Request approved"))
            .then_some(())
    })
    .await;
    let told: Vec<String> = s
        .slack
        .responses()
        .iter()
        .map(|r| r["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        told.iter().filter(|t| t.contains("You approved")).count(),
        2,
        "{told:?}"
    );
    assert!(s.refusals().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_clicks_are_audited_and_change_nothing() {
    let s = setup("", "").await;
    let asked = request(&s.b.client("alice"), "dev-admin", 600).await;
    let id = asked.id.to_string();
    // The requester, and her second account; a member without a jitgate
    // account; a member whose address Slack has not confirmed.
    for member in ["U0ALICE", "U0ERIN", "U0NOBODY", "U0UNCONF"] {
        assert_eq!(s.click(member, "approve", &id).await, StatusCode::OK, "{member}");
    }
    let refusals = eventually(Duration::from_secs(30), "four refusals", || async {
        let r = s.refusals().await;
        (r.len() >= 4).then_some(r)
    })
    .await;
    let reasons: Vec<String> = refusals
        .iter()
        .map(|r| r["event"]["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(reasons.iter().any(|r| r.contains("own request")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("same person")), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r.contains("no jitgate account")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("no confirmed email")),
        "{reasons:?}"
    );
    assert!(refusals.iter().all(|r| r["event"]["channel"] == "slack"));
    assert!(refusals.iter().all(|r| r["event"]["request"] == id.as_str()));

    // Not Slack's: a wrong signature, one six minutes old, a replay.
    let body = s.slack.click_body("U0BOB", "approve", &id);
    let now = chrono::Utc::now().timestamp();
    let forged = SlackFake::sign(&format!("{body}&x=1"), now);
    assert_eq!(
        SlackFake::deliver(&s.b.url, &s.b.ca(), &body, now, &forged).await,
        StatusCode::UNAUTHORIZED
    );
    let old = now - 6 * 60;
    assert_eq!(
        SlackFake::deliver(&s.b.url, &s.b.ca(), &body, old, &SlackFake::sign(&body, old)).await,
        StatusCode::UNAUTHORIZED
    );
    let signature = SlackFake::sign(&body, now);
    assert_eq!(
        SlackFake::deliver(&s.b.url, &s.b.ca(), &body, now, &signature).await,
        StatusCode::OK
    );
    assert_eq!(
        SlackFake::deliver(&s.b.url, &s.b.ca(), &body, now, &signature).await,
        StatusCode::UNAUTHORIZED,
        "a replay"
    );
    let refusals = eventually(Duration::from_secs(30), "seven refusals", || async {
        let r = s.refusals().await;
        (r.len() >= 7).then_some(r)
    })
    .await;
    let unread: Vec<String> = refusals
        .iter()
        .filter(|r| r["event"]["action"] == "unread")
        .map(|r| r["event"]["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(unread.len(), 3, "{unread:?}");
    assert!(unread.iter().any(|r| r.contains("does not match")));
    assert!(unread.iter().any(|r| r.contains("360 s")));
    assert!(unread.iter().any(|r| r.contains("replayed")));
    // Only bob's one genuine click counted.
    let r = eventually(Duration::from_secs(30), "bob's approval", || async {
        let r = s.b.client("alice").request(asked.id).await.unwrap();
        (r.state != RequestState::Pending).then_some(r)
    })
    .await;
    assert_eq!(r.reviews.len(), 1);
    assert_eq!(r.reviews[0].reviewer.as_str(), "bob");
    let told = s.slack.responses();
    assert!(
        told.iter()
            .filter(|t| t["text"].as_str().unwrap().starts_with("jitgate refused"))
            .count()
            >= 4
    );
    assert!(told.iter().all(|t| t["response_type"] == "ephemeral"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_asks_for_a_reason_and_records_it() {
    let s = setup(PROD_CHANNEL, "").await;
    let asked = request(&s.b.client("alice"), "prod-admin", 600).await;
    let id = asked.id.to_string();
    eventually(Duration::from_secs(30), "the channel's message", || async {
        (!s.slack.messages_in("C0PRODAPPROVALS").is_empty()).then_some(())
    })
    .await;
    assert_eq!(s.click("U0BOB", "deny", &id).await, StatusCode::OK);
    let view = eventually(Duration::from_secs(30), "the deny modal", || async {
        s.slack.views().into_iter().next()
    })
    .await;
    assert_eq!(view["view"]["callback_id"], "jitgate_deny");
    assert_eq!(view["view"]["private_metadata"], id.as_str());
    assert_eq!(
        s.b.client("alice").request(asked.id).await.unwrap().state,
        RequestState::Pending,
        "opening the form decides nothing"
    );
    let body = s
        .slack
        .deny_submission_body("U0BOB", &id, "not during the freeze");
    assert_eq!(
        SlackFake::send_signed(&s.b.url, &s.b.ca(), &body).await,
        StatusCode::OK
    );
    let r = eventually(Duration::from_secs(30), "denied", || async {
        let r = s.b.client("alice").request(asked.id).await.unwrap();
        (r.state == RequestState::Denied).then_some(r)
    })
    .await;
    assert_eq!(r.reviews[0].comment.as_deref(), Some("not during the freeze"));
    eventually(Duration::from_secs(30), "the channel's copy denied", || async {
        let m = s.slack.messages_in("C0PRODAPPROVALS");
        let latest = m.first()?.latest().to_string();
        (latest.contains("Request denied") && latest.contains("not during the freeze")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_from_the_ending_soon_message() {
    let s = setup("", "ending_soon = \"10s\"").await;
    let asked = request(&s.b.client("alice"), "dev-admin", 30).await;
    s.b.client("carol").approve(asked.id, None).await.unwrap();
    let grant =
        s.b.client("alice")
            .request(asked.id)
            .await
            .unwrap()
            .grant
            .unwrap();
    let before = s.b.client("alice").grant(grant).await.unwrap().ends_at;
    let warning = eventually(Duration::from_secs(60), "the ending-soon DM", || async {
        s.slack
            .messages_in("DU0ALICE")
            .into_iter()
            .find(|m| m.buttons().contains(&"extend".to_owned()))
    })
    .await;
    assert!(warning.latest().to_string().contains("ends soon"));
    assert_eq!(
        s.click("U0ALICE", "extend", &grant.to_string()).await,
        StatusCode::OK
    );
    let after = eventually(Duration::from_secs(30), "a later end", || async {
        let g = s.b.client("alice").grant(grant).await.unwrap();
        (g.ends_at > before).then_some(g)
    })
    .await;
    assert_eq!(after.state, GrantState::Active);
    // Someone else cannot extend alice's grant from chat.
    assert_eq!(
        s.click("U0BOB", "extend", &grant.to_string()).await,
        StatusCode::OK
    );
    eventually(Duration::from_secs(30), "bob refused", || async {
        s.refusals()
            .await
            .iter()
            .any(|r| r["event"]["action"] == "extend" && r["event"]["user"] == "bob")
            .then_some(())
    })
    .await;
}

/// How long Slack stays down in the outage test: 30 s here and in CI;
/// `JITGATE_TEST_SLACK_OUTAGE=300` for the five-minute form.
fn outage() -> Duration {
    let secs = std::env::var("JITGATE_TEST_SLACK_OUTAGE")
        .ok()
        .map(|s| s.parse().expect("JITGATE_TEST_SLACK_OUTAGE is seconds"))
        .unwrap_or(30);
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slack_down_or_rate_limiting_loses_nothing_and_delays_no_grant() {
    // Tries at most 2 s apart, so the test waits for the messages, not
    // for the backoff.
    let s = setup(PROD_CHANNEL, "retry_cap = \"2s\"").await;
    let outage = outage();
    s.slack.set_down(true);
    let down_until = tokio::time::Instant::now() + outage;
    let alice = s.b.client("alice");
    // Requests keep coming and being decided while Slack is away; each
    // grant starts at once.
    let mut asked = Vec::new();
    while tokio::time::Instant::now() < down_until {
        let r = request(&alice, "dev-admin", 600).await;
        let approved = s.b.client("carol").approve(r.id, None).await.unwrap();
        assert_eq!(approved.state, RequestState::Active);
        assert_eq!(
            alice.grant(approved.grant.unwrap()).await.unwrap().state,
            GrantState::Active
        );
        asked.push(r.id.to_string());
        // One request every few seconds through the outage.
        let next = tokio::time::Instant::now() + (outage / 6).max(Duration::from_secs(1));
        tokio::time::sleep_until(next.min(down_until)).await;
    }
    assert!(s.slack.messages().is_empty());
    assert!(
        s.b.metric("jitgate_notifications_failed_total")
            .await
            .unwrap_or(0.0)
            >= 1.0
    );
    // Back, but rate limited for a while: everything still arrives.
    s.slack.rate_limit(3);
    s.slack.set_down(false);
    eventually(Duration::from_secs(120), "the held-back messages", || async {
        let m = s.slack.messages();
        let every_outcome = asked.iter().all(|id| {
            m.iter().any(|m| {
                let text = m.latest().to_string();
                m.channel == "DU0ALICE" && text.contains("Request approved") && text.contains(id.as_str())
            })
        });
        let asked_bob = asked.iter().all(|id| {
            m.iter()
                .any(|m| m.channel == "DU0BOB" && m.versions[0].to_string().contains(id.as_str()))
        });
        (every_outcome && asked_bob).then_some(())
    })
    .await;
    let status = s.b.client("admin").notification_status().await.unwrap();
    assert!(status.iter().all(|e| e.given_up == 0), "{status:?}");
}
