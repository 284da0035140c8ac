//! Notifications against real receivers: mail through an SMTP server
//! (aiosmtpd: STARTTLS or implicit TLS, AUTH), webhooks through an HTTPS
//! endpoint verifying Standard Webhooks signatures with the reference
//! library; outages that lose nothing and delay no grant; a broker
//! SIGKILLed with notifications queued delivers each after restart.

use std::collections::BTreeSet;
use std::time::Duration;

use jitgate_shared::v1::api::{GrantState, RequestState};
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::catalog_with_mailboxes;
use jitgate_tests::notify::{new_secret, SmtpTls, TestSmtp, TestWebhook};
use serde_json::Value;
use tempfile::TempDir;

use crate::support::{broker_with, eventually, request};

/// A broker with the fixtures' policies, `routes` added to
/// workflows.toml, and `config` as its configuration file.
async fn broker(routes: &str, config: &str) -> (TestBroker, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let b = broker_with(dir.path(), &catalog_with_mailboxes(), "", routes, config).await;
    (b, dir)
}

fn recipients(mails: &[Value], subject_has: &str) -> BTreeSet<String> {
    mails
        .iter()
        .filter(|m| m["subject"].as_str().unwrap().contains(subject_has))
        .flat_map(|m| m["to"].as_array().unwrap().clone())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_tells_approvers_and_the_requester_in_both_parts() {
    let smtp = TestSmtp::start(SmtpTls::Starttls).await;
    let routes = "[group.prod.notify]\n\"email:security@example.com\" = [\"request_created\"]\n";
    let (b, _dir) = broker(routes, &smtp.config()).await;

    let asked = request(&b.client("alice"), "dev-admin", 600).await;
    // Everyone who may approve, by mail: not alice, nor erin (alice's
    // second account); the prod-only security desk hears nothing of dev.
    let mails = eventually(Duration::from_secs(30), "mail to the approvers", || async {
        let mails = smtp.messages();
        (recipients(&mails, "New access request").len() >= 3).then_some(mails)
    })
    .await;
    assert_eq!(
        recipients(&mails, "New access request"),
        BTreeSet::from([
            "bob@example.com".into(),
            "carol@example.com".into(),
            "dave@example.com".into()
        ])
    );
    let link = format!("{}/console/requests/{}", b.url, asked.id);
    for m in &mails {
        assert_eq!(m["content_type"], "multipart/alternative", "{m}");
        assert!(
            m["tls"].as_bool().unwrap() && m["authenticated"].as_bool().unwrap(),
            "{m}"
        );
        let (plain, html) = (
            m["parts"]["text/plain"].as_str().unwrap(),
            m["parts"]["text/html"].as_str().unwrap(),
        );
        for part in [plain, html] {
            assert!(part.contains(&link), "{part}");
            assert!(
                part.contains("alice@example.com") && part.contains("integration test"),
                "{part}"
            );
            // Approving is a form on the request's page, never a link.
            assert!(!part.contains("/review") && !part.contains("/approve"), "{part}");
        }
        assert!(html.contains("<table") && !plain.contains("<table"));
        assert!(m["message_id"].as_str().unwrap().ends_with("@jitgate.notify>"));
    }

    // The outcome goes to the requester.
    b.client("carol")
        .approve(asked.id, Some("ok".into()))
        .await
        .unwrap();
    eventually(Duration::from_secs(30), "the outcome mailed to alice", || async {
        recipients(&smtp.messages(), "Request approved")
            .contains("alice@example.com")
            .then_some(())
    })
    .await;
    let approved = smtp
        .messages()
        .into_iter()
        .find(|m| m["subject"].as_str().unwrap().contains("Request approved"))
        .unwrap();
    assert!(approved["parts"]["text/plain"]
        .as_str()
        .unwrap()
        .contains("carol"));

    // A prod request also reaches the security desk.
    request(&b.client("alice"), "prod-admin", 600).await;
    eventually(Duration::from_secs(30), "mail to the security desk", || async {
        recipients(&smtp.messages(), "prod-admin")
            .contains("security@example.com")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_goes_over_implicit_tls_and_waits_out_a_down_server() {
    let smtp = TestSmtp::start(SmtpTls::Implicit).await;
    smtp.set_down(true);
    let (b, _dir) = broker("", &smtp.config()).await;
    let asked = request(&b.client("alice"), "dev-admin", 600).await;
    eventually(Duration::from_secs(30), "a refused try", || async {
        b.metric("jitgate_notifications_failed_total")
            .await
            .filter(|n| *n >= 1.0)
    })
    .await;
    assert!(smtp.messages().is_empty());
    smtp.set_down(false);
    let mails = eventually(
        Duration::from_secs(60),
        "mail after the server is back",
        || async {
            let mails = smtp.messages();
            (recipients(&mails, "New access request").len() >= 3).then_some(mails)
        },
    )
    .await;
    assert!(mails.iter().all(|m| m["tls"].as_bool().unwrap()));
    assert!(mails.iter().all(|m| m["parts"]["text/plain"]
        .as_str()
        .unwrap()
        .contains(&asked.id.to_string())));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_signed_cloud_events_and_an_outage_delays_no_grant() {
    let hook = TestWebhook::start().await;
    // Rotating: the broker signs with a new secret and the receiver's.
    let config = hook.config("siem", &[&new_secret(), &hook.secret]);
    let routes = "[defaults.notify]\n\"webhook:siem\" = [\"*\"]\n";
    let (b, _dir) = broker(routes, &config).await;

    let asked = request(&b.client("alice"), "dev-admin", 600).await;
    let first = eventually(Duration::from_secs(30), "the request's event", || async {
        hook.received().into_iter().next()
    })
    .await;
    assert_eq!(first["verified"], true, "{first}");
    assert_eq!(first["signatures"], 2);
    assert_eq!(first["content_type"], "application/cloudevents+json");
    let event = &first["event"];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "jitgate.request_created");
    assert_eq!(event["id"], first["webhook_id"]);
    assert_eq!(event["source"], b.url.as_str());
    assert_eq!(event["subject"], asked.id.to_string());
    assert_eq!(event["data"]["request"]["requester"]["id"], "alice");
    assert_eq!(event["data"]["request"]["justification"], "integration test");

    // The receiver goes down: the approval and the grant go on.
    hook.set_down(true);
    let approved = b.client("carol").approve(asked.id, None).await.unwrap();
    assert_eq!(approved.state, RequestState::Active);
    let grant = b.client("alice").grant(approved.grant.unwrap()).await.unwrap();
    assert_eq!(grant.state, GrantState::Active);
    // Failed tries are recorded, and shown per address.
    let siem = eventually(Duration::from_secs(30), "failed tries while down", || async {
        let status = b.client("admin").notification_status().await.unwrap();
        status
            .into_iter()
            .find(|s| s.address == "webhook:siem" && s.failing >= 1)
    })
    .await;
    assert!(siem.delivered >= 1, "{siem:?}");
    assert!(siem.last_error.as_deref().unwrap().contains("503"), "{siem:?}");
    assert!(b.metric("jitgate_notifications_failed_total").await.unwrap() >= 1.0);
    let before = hook.received().len();
    hook.set_down(false);
    let kinds = eventually(Duration::from_secs(60), "the events held back", || async {
        let kinds: BTreeSet<String> = hook
            .received()
            .iter()
            .map(|r| r["event"]["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        [
            "jitgate.request_reviewed",
            "jitgate.request_approved",
            "jitgate.grant_active",
        ]
        .iter()
        .all(|k| kinds.contains(*k))
        .then_some(kinds)
    })
    .await;
    assert!(hook.received().len() > before, "{kinds:?}");
    let received = hook.received();
    assert!(received.iter().all(|r| r["verified"] == true), "{received:?}");
    let ids: Vec<&str> = received
        .iter()
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    let distinct: BTreeSet<&&str> = ids.iter().collect();
    assert_eq!(
        ids.len(),
        distinct.len(),
        "no event twice without a crash: {ids:?}"
    );
    let status = eventually(Duration::from_secs(30), "nothing left queued", || async {
        let status = b.client("admin").notification_status().await.unwrap();
        status
            .into_iter()
            .find(|s| s.address == "webhook:siem" && s.queued == 0)
    })
    .await;
    assert_eq!(status.delivered as usize, ids.len());
    // Only admins and auditors see delivery.
    assert!(b.client("alice").notification_status().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_about_to_end_is_announced_then_its_end() {
    let hook = TestWebhook::start().await;
    let config = format!(
        "[notify]\nending_soon = \"10s\"\n{}",
        hook.config("siem", &[&hook.secret])
    );
    let routes = "[defaults.notify]\n\"webhook:siem\" = [\"grant_ending_soon\", \"grant_ended\"]\n";
    let (b, _dir) = broker(routes, &config).await;
    let asked = request(&b.client("alice"), "auto-admin", 14).await;
    let grant = asked.grant.unwrap().to_string();
    let types = eventually(Duration::from_secs(60), "the warning, then the end", || async {
        let types: Vec<String> = hook
            .received()
            .iter()
            .filter(|r| r["event"]["data"]["grant"]["id"] == grant.as_str())
            .map(|r| r["event"]["type"].as_str().unwrap().to_owned())
            .collect();
        (types.len() >= 2).then_some(types)
    })
    .await;
    assert_eq!(types, ["jitgate.grant_ending_soon", "jitgate.grant_ended"]);
    let warning = &hook.received()[0]["event"];
    assert!(
        warning["id"].as_str().unwrap().starts_with("ending-soon-"),
        "{warning}"
    );
    assert_eq!(warning["data"]["detail"], Value::Null);
    assert_eq!(hook.received()[1]["event"]["data"]["detail"], "expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_without_agents_is_announced_once_per_episode() {
    let hook = TestWebhook::start().await;
    let config = format!(
        "[notify]\nagent_offline_after = \"3s\"\n{}",
        hook.config("siem", &[&hook.secret])
    );
    let routes = "[defaults.notify]\n\"webhook:siem\" = [\"agent_offline\"]\n";
    let (b, _dir) = broker(routes, &config).await;
    let offline = |count: usize| {
        let hook = &hook;
        async move {
            eventually(Duration::from_secs(60), "agent_offline events", || async {
                let events: Vec<Value> = hook
                    .received()
                    .into_iter()
                    .filter(|r| r["event"]["type"] == "jitgate.agent_offline")
                    .collect();
                (events.len() >= count).then_some(events)
            })
            .await
        }
    };
    let online = || async {
        eventually(Duration::from_secs(20), "the agent online", || async {
            let agents = b.client("admin").agents().await.unwrap();
            agents.iter().any(|a| a.online).then_some(())
        })
        .await
    };

    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent.start(&[]).await;
    online().await;
    agent.kill().await;
    let first = offline(1).await;
    let event = &first[0]["event"];
    assert_eq!(first[0]["verified"], true, "{event}");
    assert_eq!(event["subject"], "aws-test");
    assert_eq!(event["data"]["configuration"]["id"], "aws-test");
    assert_eq!(event["data"]["configuration"]["agents"], 1);
    assert_eq!(event["data"]["request"], Value::Null);
    assert!(
        event["id"]
            .as_str()
            .unwrap()
            .starts_with("agent-offline-aws-test-"),
        "{event}"
    );

    // Back, then gone again: a second episode, told once more; the first
    // was told once however many checks saw it.
    agent.restart().await;
    online().await;
    agent.kill().await;
    let both = offline(2).await;
    assert_eq!(both.len(), 2, "{both:?}");
    let ids: BTreeSet<&str> = both.iter().map(|r| r["event"]["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    let contact = |r: &Value| {
        chrono::DateTime::parse_from_rfc3339(
            r["event"]["data"]["configuration"]["last_contact"]
                .as_str()
                .unwrap(),
        )
        .unwrap()
    };
    assert!(contact(&both[1]) > contact(&both[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_notifications_survive_sigkill_and_each_is_delivered() {
    const REQUESTS: usize = 100;
    let hook = TestWebhook::start().await;
    hook.set_down(true);
    let config = hook.config("siem", &[&hook.secret]);
    let routes =
        "[defaults.notify]\n\"webhook:siem\" = [\"request_created\"]\napprovers = []\nrequester = []\n";
    let (mut b, _dir) = broker(routes, &config).await;
    let alice = b.client("alice");
    let mut asked = BTreeSet::new();
    for _ in 0..REQUESTS {
        asked.insert(request(&alice, "dev-admin", 600).await.id.to_string());
    }
    // Every one queued, tried (the receiver answers 503) and waiting for
    // its next try in the store before the kill.
    eventually(Duration::from_secs(60), "a recorded try of each", || async {
        let status = b.client("admin").notification_status().await.unwrap();
        status.into_iter().find(|s| {
            s.address == "webhook:siem" && s.queued == REQUESTS as u64 && s.failing == REQUESTS as u64
        })
    })
    .await;
    b.kill().await;
    hook.set_down(false);
    b.restart().await;
    let delivered = eventually(Duration::from_secs(120), "every request's event", || async {
        let received = hook.received();
        let subjects: BTreeSet<String> = received
            .iter()
            .filter(|r| r["verified"] == true)
            .map(|r| r["event"]["subject"].as_str().unwrap().to_owned())
            .collect();
        (subjects.len() >= REQUESTS).then_some((received, subjects))
    })
    .await;
    let (received, subjects) = delivered;
    assert_eq!(subjects, asked, "exactly the requests made");
    // Deduplicated by event id, each arrived once.
    let ids: BTreeSet<&str> = received
        .iter()
        .filter(|r| r["verified"] == true)
        .map(|r| r["webhook_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), REQUESTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn teams_cards_keep_to_the_schema_teams_renders_and_open_the_console() {
    let teams = jitgate_tests::teams_fake::TeamsFake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let routes = "[defaults.notify]\n\"teams:ops\" = [\"request_created\", \"request_approved\"]\n";
    let (b, _config) = broker(routes, &teams.config("ops", dir.path())).await;
    let asked = request(&b.client("alice"), "dev-admin", 600).await;
    b.client("carol")
        .approve(asked.id, Some("*fine* [x](y)".into()))
        .await
        .unwrap();
    let cards = eventually(Duration::from_secs(30), "two cards", || async {
        let got = teams.received();
        (got.len() >= 2).then_some(got)
    })
    .await;
    let problems = jitgate_tests::teams_fake::card_problems(&cards, "1.4");
    assert!(problems.iter().all(Vec::is_empty), "{problems:?}");
    // A card from a newer schema would be caught.
    let mut newer = cards[0].clone();
    newer["attachments"][0]["content"]["body"][0]["type"] = "Table".into();
    assert!(!jitgate_tests::teams_fake::card_problems(&[newer], "1.4")[0].is_empty());
    let link = format!("{}/console/requests/{}", b.url, asked.id);
    for card in &cards {
        let content = &card["attachments"][0]["content"];
        assert_eq!(content["actions"][0]["type"], "Action.OpenUrl");
        assert_eq!(content["actions"][0]["url"], link.as_str());
    }
    let approved = cards[1]["attachments"][0]["content"].to_string();
    assert!(
        approved.contains("\\\\*fine\\\\*"),
        "what people typed stays text: {approved}"
    );
}
