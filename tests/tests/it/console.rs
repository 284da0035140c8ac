//! The web console in real browsers (Chromium through ChromeDriver): two
//! people side by side, with and without JavaScript, in Japanese; forms
//! without their token and self-approval refused; axe-core on every page;
//! screenshots of every page under `target/console-screenshots/`.

use std::time::Duration;

use jitgate_broker::console::text::{entries, EN, JA};
use jitgate_shared::v1::UserId;
use jitgate_tests::agent::TestAgent;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::browser::{Browser, Driver, Settings};
use jitgate_tests::fixtures::{policies, CATALOG};

use crate::agents::FAST;
use crate::support::eventually;

async fn link(b: &TestBroker, user: &str) -> String {
    b.client("admin")
        .sign_in_link(&UserId::new(user).unwrap())
        .await
        .unwrap()
        .url
}

async fn signed_in(driver: &Driver, b: &TestBroker, user: &str, settings: Settings) -> Browser {
    let mut browser = driver.browser(settings).await;
    browser.sign_in(&link(b, user).await).await;
    browser
}

/// A broker with the standard catalogue and a sandbox agent for it.
async fn broker_with_agent() -> (TestBroker, TestAgent) {
    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let mut agent = TestAgent::enroll(&b, "aws-test", None).await;
    agent.start(&[]).await;
    agent.connected().await;
    (b, agent)
}

/// Fills and sends the request form for `resource`; returns the request's id
/// from the page it lands on.
async fn request_in(browser: &Browser, resource: &str, justification: &str) -> String {
    browser
        .open(&format!("/console/requests/new?resource={resource}"))
        .await;
    browser
        .wait_for("#justification")
        .await
        .send_keys(justification)
        .await
        .unwrap();
    browser.click("#submit-request").await;
    browser
        .wait_for("#request")
        .await
        .attr("data-request")
        .await
        .unwrap()
        .expect("the request's id")
}

/// axe-core finds nothing serious on the page; then screenshots.
async fn check_page(browser: &Browser, name: &str) {
    let violations = browser.accessibility_violations().await;
    assert!(violations.is_empty(), "{name}: {violations:#?}");
    browser.screenshots(name).await;
}

#[tokio::test]
async fn alice_requests_bob_approves_live_and_alice_ends_it_early() {
    let (b, agent) = broker_with_agent().await;
    let driver = Driver::start().await;

    let mut bob = driver.browser(Settings::default()).await;
    let bob_link = link(&b, "bob").await;
    bob.client.goto(&bob_link).await.unwrap();
    check_page(&bob, "sign-in-link").await;
    bob.sign_in(&bob_link).await;
    bob.open("/console/inbox").await;
    bob.wait_for("#inbox-empty").await;
    check_page(&bob, "inbox-empty").await;

    let alice = signed_in(&driver, &b, "alice", Settings::default()).await;
    check_page(&alice, "home-empty").await;
    alice.open("/console/catalogue").await;
    alice.wait_for("[data-resource=dev-admin]").await;
    check_page(&alice, "catalogue").await;
    alice.open("/console/requests/new?resource=dev-admin").await;
    alice.wait_for("#request-form").await;
    check_page(&alice, "request-form").await;
    let id = request_in(&alice, "dev-admin", "rotate the dev database password").await;
    alice.wait_for_text("#request-state", "pending").await;

    // Bob's inbox, open all along, shows it without a reload.
    let card = format!("#inbox [data-request='{id}']");
    bob.wait_for(&card).await;
    let shown = bob.text(&card).await;
    assert!(shown.contains("rotate the dev database password"), "{shown}");
    assert!(
        shown.contains("sre-approve"),
        "the policy that lets bob approve: {shown}"
    );
    assert!(shown.contains("0 / 1"), "N-of-M progress: {shown}");
    check_page(&bob, "inbox").await;
    bob.click(&format!("{card} button[value=approve]")).await;
    bob.wait_for("#inbox-empty").await;

    // Alice's page, open all along, shows the grant applied and counting down.
    alice.wait_for_text("#grant-progress", "in effect").await;
    let left = alice.text(".countdown").await;
    assert!(left.contains(':'), "a countdown: {left}");
    check_page(&alice, "request-active").await;
    alice.open("/console/").await;
    alice.wait_for("#grants [data-grant]").await;
    check_page(&alice, "home-active").await;
    assert_eq!(agent.tenant().len(), 1, "the sandbox tenant holds it");

    alice.open(&format!("/console/requests/{id}")).await;
    alice.click_and_confirm("button.end-grant").await;
    alice.wait_for_text("#request-state", "ended early").await;
    eventually(
        Duration::from_secs(10),
        "the tenant no longer holds it",
        || async { agent.tenant().is_empty().then_some(()) },
    )
    .await;
    alice.wait_for_text("#timeline", "Removed from the tenant").await;
    check_page(&alice, "request-ended").await;
    bob.open("/console/inbox").await;
    bob.wait_for("#decisions").await;
    check_page(&bob, "inbox-decisions").await;

    // Signing out ends the session at the broker: the old cookie is refused.
    let cookie = alice.cookie("jitgate_session").await;
    alice.click("button.link").await;
    alice.wait_for_text("h1", "Sign in to jitgate").await;
    let status = page_status(&b, &alice.base, "/console/", &cookie).await;
    assert_eq!(
        status, 303,
        "a signed-out session's cookie is sent to renew or sign in"
    );
    let whoami = raw(&b)
        .get(format!("{}/api/v1/whoami", alice.base))
        .header("cookie", format!("jitgate_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(whoami.status(), 401);
    check_page(&alice, "signed-out").await;
    alice.close().await;
    bob.close().await;
}

/// A client for the broker's own certificate, following no redirects.
fn raw(b: &TestBroker) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(b.ca()).unwrap()).unwrap();
    reqwest::Client::builder()
        .add_root_certificate(ca)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page_status(b: &TestBroker, base: &str, path: &str, cookie: &str) -> u16 {
    raw(b)
        .get(format!("{base}{path}"))
        .header("cookie", format!("jitgate_session={cookie}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn post_form(b: &TestBroker, base: &str, path: &str, cookie: &str, form: &[(&str, &str)]) -> u16 {
    raw(b)
        .post(format!("{base}{path}"))
        .header("cookie", format!("jitgate_session={cookie}"))
        .form(form)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn forms_without_their_token_and_self_approval_are_refused() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let driver = Driver::start().await;
    let alice = signed_in(&driver, &b, "alice", Settings::default()).await;
    let base = alice.base.clone();
    let alice_cookie = alice.cookie("jitgate_session").await;
    let alice_csrf = alice.csrf().await;
    let requests_before = b.client("admin").requests(&[]).await.unwrap().items.len();

    // No token, another session's token, a made-up one: refused, nothing made.
    let bob = signed_in(&driver, &b, "bob", Settings::default()).await;
    let bob_csrf = bob.csrf().await;
    for (what, token) in [
        ("none", None),
        ("bob's", Some(bob_csrf.as_str())),
        ("made up", Some("x")),
    ] {
        let mut form = vec![("resource", "dev-admin"), ("justification", "forged")];
        if let Some(t) = token {
            form.push(("csrf", t));
        }
        let status = post_form(&b, &base, "/console/requests", &alice_cookie, &form).await;
        assert_eq!(status, 403, "a form with {what} token");
    }
    assert_eq!(
        b.client("admin").requests(&[]).await.unwrap().items.len(),
        requests_before,
        "no forged form made a request"
    );
    // With its token, the same form works.
    let status = post_form(
        &b,
        &base,
        "/console/requests",
        &alice_cookie,
        &[
            ("csrf", &alice_csrf),
            ("resource", "dev-admin"),
            ("justification", "real"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let id = b.client("admin").requests(&[]).await.unwrap().items[0].id;

    // Erin is Alice's person (linked accounts): the request is not in her
    // inbox, and forcing the review is refused.
    let erin = signed_in(&driver, &b, "erin", Settings::default()).await;
    erin.open("/console/inbox").await;
    erin.wait_for("#inbox-empty").await;
    let erin_cookie = erin.cookie("jitgate_session").await;
    let erin_csrf = erin.csrf().await;
    let review = format!("/console/requests/{id}/review");
    let status = post_form(
        &b,
        &base,
        &review,
        &erin_cookie,
        &[("csrf", &erin_csrf), ("decision", "approve")],
    )
    .await;
    assert_eq!(status, 403, "self-approval through a linked account");
    // Nor may Alice review her own, even with a well-formed form.
    alice.open(&format!("/console/requests/{id}")).await;
    assert!(
        alice
            .client
            .find(fantoccini::Locator::Css("button[value=approve]"))
            .await
            .is_err(),
        "no approve button on one's own request"
    );
    let status = post_form(
        &b,
        &base,
        &review,
        &alice_cookie,
        &[("csrf", &alice_csrf), ("decision", "approve")],
    )
    .await;
    assert_eq!(status, 403, "self-approval");
    let r = b.client("admin").request(id).await.unwrap();
    assert!(r.reviews.is_empty(), "no review counted: {:?}", r.reviews);

    // Bob's token does not work with Bob's decision posted by Alice's cookie.
    let status = post_form(
        &b,
        &base,
        &review,
        &alice_cookie,
        &[("csrf", &bob_csrf), ("decision", "approve")],
    )
    .await;
    assert_eq!(status, 403);
    // Pages without a session go to renew it, then to sign in.
    let status = page_status(&b, &base, "/console/inbox", "jg_forged").await;
    assert_eq!(status, 303);
    for browser in [alice, bob, erin] {
        browser.close().await;
    }
}

#[tokio::test]
async fn the_whole_flow_works_without_javascript() {
    let (b, agent) = broker_with_agent().await;
    let driver = Driver::start().await;
    let no_js = Settings {
        javascript: false,
        ..Settings::default()
    };
    let alice = signed_in(&driver, &b, "alice", no_js).await;
    let bob = signed_in(&driver, &b, "bob", no_js).await;
    let id = request_in(&alice, "dev-admin", "no script here").await;
    bob.open("/console/inbox").await;
    bob.click(&format!("#inbox [data-request='{id}'] button[value=approve]"))
        .await;
    bob.wait_for("#inbox-empty").await;
    eventually(Duration::from_secs(10), "the grant applied", || async {
        (agent.tenant().len() == 1).then_some(())
    })
    .await;
    alice.open(&format!("/console/requests/{id}")).await;
    alice.wait_for_text("#grant-progress", "in effect").await;
    alice.click_and_confirm("button.end-grant").await;
    alice.wait_for_text("#request-state", "ended early").await;
    eventually(
        Duration::from_secs(10),
        "the tenant no longer holds it",
        || async { agent.tenant().is_empty().then_some(()) },
    )
    .await;
    alice.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_japanese_session_shows_japanese_on_every_page() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let driver = Driver::start().await;
    let ja = Settings::japanese();
    let mut bob = driver.browser(ja).await;
    let bob_link = link(&b, "bob").await;
    bob.client.goto(&bob_link).await.unwrap();
    assert_japanese(&bob, "sign-in-link").await;
    bob.sign_in(&bob_link).await;
    assert_japanese(&bob, "home").await;
    bob.open("/console/catalogue").await;
    assert_japanese(&bob, "catalogue").await;
    bob.open("/console/requests/new?resource=prod-admin").await;
    assert_japanese(&bob, "request-form").await;
    let id = request_in(&bob, "prod-admin", "本番の確認").await;
    assert_japanese(&bob, "request").await;
    bob.open("/console/").await;
    assert_japanese(&bob, "home-pending").await;
    bob.open("/console/inbox").await;
    assert_japanese(&bob, "inbox").await;

    // Carol, in Japanese too, sees Bob's request and approves it.
    let carol = signed_in(&driver, &b, "carol", ja).await;
    carol.open("/console/inbox").await;
    carol
        .click(&format!("#inbox [data-request='{id}'] button[value=approve]"))
        .await;
    carol.wait_for("#decisions").await;
    assert_japanese(&carol, "inbox-decided").await;
    carol.open("/console/no-such-page").await;
    assert_japanese(&carol, "not-found").await;
    let admin = signed_in(&driver, &b, "admin", ja).await;
    admin.open("/console/admin/agents").await;
    assert_japanese(&admin, "admin-agents").await;
    admin.open("/console/admin/users").await;
    assert_japanese(&admin, "admin-users").await;
    admin.open("/console/admin/configurations").await;
    assert_japanese(&admin, "admin-configurations").await;
    admin.open("/console/audit?person=bob").await;
    admin.wait_for("#records").await;
    assert_japanese(&admin, "audit").await;
    admin.close().await;
    // The choice in the footer beats the browser's language.
    carol
        .open("/console/language?lang=en&return_to=/console/inbox")
        .await;
    carol.wait_for_text("h1", EN.inbox_title).await;
    bob.close().await;
    carol.close().await;
}

/// The page is in Japanese: `<html lang="ja">`, its heading from the
/// Japanese strings, and no English string of the console on it.
async fn assert_japanese(browser: &Browser, name: &str) {
    browser.wait_for("main").await;
    let lang = browser
        .wait_for("html")
        .await
        .attr("lang")
        .await
        .unwrap()
        .unwrap_or_default();
    assert_eq!(lang, "ja", "{name}");
    let text = browser
        .client
        .find(fantoccini::Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let japanese: Vec<&str> = entries(&JA).into_iter().map(|(_, s)| s).collect();
    let h1 = browser.text("h1").await;
    assert!(
        japanese.iter().any(|j| h1.contains(j)),
        "{name}: heading `{h1}` is not from the Japanese strings"
    );
    for (key, english) in entries(&EN) {
        if english.len() >= 5 && text.contains(english) {
            panic!("{name}: English `{english}` ({key}) on a Japanese page:\n{text}");
        }
    }
    check_page(browser, &format!("ja-{name}")).await;
}

#[tokio::test]
async fn the_admin_enrolls_an_agent_with_the_command_the_console_shows() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let driver = Driver::start().await;
    let admin = signed_in(&driver, &b, "admin", Settings::default()).await;
    admin.open("/console/admin/agents").await;
    admin.wait_for("#join-token-form").await;
    check_page(&admin, "admin-agents-empty").await;
    admin.click("#make-join-token").await;
    let command = admin.text("#enroll-command").await;
    check_page(&admin, "admin-join-token").await;

    // Run exactly what the page says, with this build's agent and a state
    // directory of the test's own.
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words.first(), Some(&"jitgate-agent"), "{command}");
    let state = tempfile::tempdir().unwrap();
    let mut args: Vec<String> = words[1..].iter().map(|w| (*w).to_owned()).collect();
    let at = args.iter().position(|a| a == "--state-dir").expect("--state-dir") + 1;
    args[at] = state.path().join("state").display().to_string();
    let out = std::process::Command::new(jitgate_tests::bin("jitgate-agent"))
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{command}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    admin.open("/console/admin/agents").await;
    let row = admin.wait_for("#agents [data-configuration=aws-test]").await;
    let agent = row.attr("data-agent").await.unwrap().unwrap();
    if admin
        .client
        .find(fantoccini::Locator::Css("#agents button[value=approve]"))
        .await
        .is_ok()
    {
        admin.click("#agents button[value=approve]").await;
    }
    admin
        .wait_for_text(&format!("#agents [data-agent='{agent}']"), "active")
        .await;
    let listed = b.client("admin").agents().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id.to_string(), agent);
    check_page(&admin, "admin-agents").await;
    // Alice is not an admin: the page is refused.
    let alice = signed_in(&driver, &b, "alice", Settings::default()).await;
    alice.open("/console/admin/agents").await;
    alice.wait_for(".notice.bad").await;
    admin.close().await;
    alice.close().await;
}

#[tokio::test]
async fn the_admin_ends_a_session_revokes_a_token_and_disables_an_account() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let driver = Driver::start().await;
    let bob = signed_in(&driver, &b, "bob", Settings::default()).await;
    let admin = signed_in(&driver, &b, "admin", Settings::default()).await;
    admin.open("/console/admin/users").await;
    let erin = admin.text("#users [data-user=erin]").await;
    assert!(erin.contains("alice"), "erin is alice's person: {erin}");
    check_page(&admin, "admin-users").await;

    // Bob's browser session ends at once.
    admin.click("#sessions [data-user=bob] button").await;
    admin.wait_gone("#sessions [data-user=bob]").await;
    bob.open("/console/").await;
    bob.wait_for("a.button[href^='/auth/login'], p.muted").await;
    assert!(
        bob.client
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/console/sign-in"),
        "bob is sent to sign in again"
    );

    // Alice's API token stops working.
    assert!(b.client("alice").whoami().await.is_ok());
    admin.click("#tokens [data-user=alice] button").await;
    admin.wait_gone("#tokens [data-user=alice]").await;
    assert!(b.client("alice").whoami().await.is_err(), "revoked token refused");

    // Carol is disabled.
    admin.click_and_confirm("#users [data-user=carol] button").await;
    admin.wait_for_text("#users [data-user=carol]", "disabled").await;
    assert!(
        b.client("carol").whoami().await.is_err(),
        "disabled account refused"
    );
    let users = b.client("admin").users().await.unwrap();
    assert!(users.iter().any(|u| u.id.as_str() == "carol" && u.disabled));
    admin.close().await;
    bob.close().await;
}

#[tokio::test]
async fn a_failing_revoke_is_shown_on_the_agents_page_and_closed_there() {
    use futures_util::SinkExt;
    use jitgate_shared::v1::api::CommandOp;
    use jitgate_shared::v1::protocol::{self, AgentMessage, FailureKind, Outcome};
    use tokio_tungstenite::tungstenite::Message;

    use crate::hub::{agent_tls, dial, hello, next_command};

    let b = TestBroker::start_with(CATALOG, &policies(), FAST).await;
    let agent = TestAgent::enroll(&b, "aws-test", None).await;
    let mut ws = dial(&b, agent_tls(&b, &agent)).await.unwrap();
    hello(&mut ws, "aws-test").await;
    let grant = crate::support::request(&b.client("bob"), "auto-admin", 600)
        .await
        .grant
        .unwrap();
    let granted = next_command(&mut ws, CommandOp::Grant).await;
    let applied = AgentMessage::Result {
        command: granted.id,
        outcome: Outcome::Applied,
    };
    ws.send(Message::text(protocol::encode(&applied))).await.unwrap();
    b.client("bob").revoke(grant, None).await.unwrap();
    let revoke = next_command(&mut ws, CommandOp::Revoke).await;
    let refused = AgentMessage::Result {
        command: revoke.id.clone(),
        outcome: Outcome::failed(
            FailureKind::Rejected,
            "AccessDeniedException: DeleteAccountAssignment",
            None,
        ),
    };
    ws.send(Message::text(protocol::encode(&refused))).await.unwrap();

    let driver = Driver::start().await;
    let admin = signed_in(&driver, &b, "admin", Settings::default()).await;
    let card = format!("#failing [data-command='{}']", revoke.id);
    eventually(
        Duration::from_secs(10),
        "the failing revoke on the page",
        || async {
            admin.open("/console/admin/agents").await;
            let shown = admin.client.find(fantoccini::Locator::Css(&card)).await.is_ok();
            shown.then_some(())
        },
    )
    .await;
    let shown = admin.text(&card).await;
    assert!(shown.contains("AccessDeniedException"), "{shown}");
    let queued = admin.text("#outboxes [data-configuration=aws-test]").await;
    assert!(queued.contains('1'), "the revoke is queued: {queued}");
    check_page(&admin, "admin-failing-revoke").await;
    admin
        .wait_for(&format!("{card} input[name=reason]"))
        .await
        .send_keys("removed in the AWS console")
        .await
        .unwrap();
    admin.click_and_confirm(&format!("{card} button")).await;
    admin
        .wait_for_text("#delivery-h + table + h3 + p", "No revoke is failing")
        .await;
    let closed = b.client("admin").grant(grant).await.unwrap();
    assert!(
        closed.revoke_failing.is_none() && closed.removed_at.is_some(),
        "{closed:?}"
    );
    drop(ws);
    admin.close().await;
}

#[tokio::test]
async fn the_admin_sees_how_a_federated_resource_would_be_elevated() {
    let b = crate::chains::broker().await;
    let driver = Driver::start().await;
    let admin = signed_in(&driver, &b, "admin", Settings::default()).await;
    admin.open("/console/admin/configurations").await;
    admin
        .wait_for("[data-configuration=aws-fed] [data-resource=fed-admin]")
        .await;
    let explain = "/console/admin/configurations?resource=fed-admin&user=alice";
    // With no agent where it is applied, the page says so, naming the path.
    admin.open(explain).await;
    let refused = admin.text("#explain-h ~ p.notice.bad").await;
    assert!(refused.contains("no enrolled agent for `entra`"), "{refused}");
    let _entra = TestAgent::enroll(&b, "entra", None).await;
    admin.open(explain).await;
    let explained = admin.text("#explained").await;
    assert!(explained.contains("aws-fed → entra"), "the chain: {explained}");
    assert!(explained.contains("alice@example.com"), "{explained}");
    check_page(&admin, "admin-configurations-explain").await;
    admin.close().await;
}

#[tokio::test]
async fn the_auditor_filters_downloads_and_sees_the_chain_checked() {
    use crate::support::ask;
    use jitgate_tests::tamper::AuditStore;
    let mut b = TestBroker::start(CATALOG, &policies()).await;
    let r = b
        .client("alice")
        .create_request(&ask("dev-admin", 600))
        .await
        .unwrap();
    b.client("bob").approve(r.id, Some("ok".into())).await.unwrap();
    b.client("bob")
        .create_request(&ask("dev-admin", 600))
        .await
        .unwrap();

    let driver = Driver::start().await;
    let mut admin = signed_in(&driver, &b, "admin", Settings::default()).await;
    admin.open("/console/audit").await;
    admin.wait_for("#records [data-kind=request_created]").await;
    // The check at start, or the one asked for here, says intact.
    admin.click("#check-now").await;
    eventually(Duration::from_secs(30), "the chain check", || async {
        admin.open("/console/audit").await;
        admin.text("#chain-status").await.contains("Intact").then_some(())
    })
    .await;
    check_page(&admin, "audit").await;

    // Alice: her request, Bob's review of it, her grant; not Bob's request.
    admin.type_into("#person", "alice").await;
    admin.click("#filter").await;
    admin.wait_for_address("person=alice").await;
    admin.wait_for("#records [data-kind=request_reviewed]").await;
    assert_eq!(admin.count("#records [data-kind=request_created]").await, 1);
    assert!(admin.count("#records [data-kind=grant_scheduled]").await >= 1);
    check_page(&admin, "audit-filtered").await;
    admin.open("/console/audit?kind=signed_in").await;
    let rows = admin.count("#records tbody tr").await;
    assert!(rows >= 1 && rows == admin.count("#records [data-kind=signed_in]").await);
    admin.open("/console/audit?since=yesterday").await;
    let refused = admin.text("#filter-error").await;
    assert!(refused.contains("since `yesterday`"), "{refused}");

    // The download, unfiltered, is the whole chain: it verifies offline.
    let cookie = admin.cookie("jitgate_session").await;
    let export = raw(&b)
        .get(format!("{}/console/audit/export", admin.base))
        .header("cookie", format!("jitgate_session={cookie}"))
        .send()
        .await
        .unwrap();
    assert_eq!(export.status(), 200);
    let disposition = export.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"jitgate-audit-"),
        "{disposition}"
    );
    let file = b.path("download.jsonl");
    std::fs::write(&file, export.bytes().await.unwrap()).unwrap();
    let out = b.offline(&["audit", "verify", "--input", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Only admins and auditors.
    let alice = signed_in(&driver, &b, "alice", Settings::default()).await;
    let alice_cookie = alice.cookie("jitgate_session").await;
    for path in ["/console/audit", "/console/audit/export"] {
        assert_eq!(
            page_status(&b, &alice.base, path, &alice_cookie).await,
            403,
            "{path}"
        );
    }
    alice.close().await;

    // Someone edits a record behind the broker's back: after a restart the
    // page says where the chain broke.
    b.stop().await;
    let db = AuditStore::of(&b).await;
    let mut edited = db.last().await;
    edited.actor = jitgate_broker::audit::Actor::System;
    db.put(&edited).await;
    drop(db);
    b.restart().await;
    // The broker listens on a new port; the session cookie (host-wide)
    // still signs the admin in.
    admin.base = b.url.clone();
    let said = eventually(Duration::from_secs(30), "the broken chain shown", || async {
        admin.open("/console/audit").await;
        let text = admin.text("#chain-status").await;
        text.contains("BROKEN").then_some(text)
    })
    .await;
    assert!(
        said.contains(&format!("record {}: content does not match its hash", edited.seq)),
        "{said}"
    );
    check_page(&admin, "audit-broken").await;
    admin.close().await;
}

#[tokio::test]
async fn the_language_a_person_chooses_follows_them_to_another_browser() {
    let b = TestBroker::start(CATALOG, &policies()).await;
    let driver = Driver::start().await;
    let ja = Settings::japanese();
    let first = signed_in(&driver, &b, "carol", ja).await;
    first.wait_for_text("h1", JA.home_title).await;
    first.select("#lang", "en").await;
    first.click("footer form.lang button").await;
    first.wait_for_text("h1", EN.home_title).await;
    first.close().await;
    // A fresh Japanese browser, no cookie: her choice, not the browser's.
    let second = signed_in(&driver, &b, "carol", ja).await;
    second.wait_for_text("h1", EN.home_title).await;
    second.close().await;
}

#[tokio::test]
async fn an_inbox_open_on_one_broker_hears_of_a_request_made_through_another() {
    use crate::support::ask;
    let first = TestBroker::start_on_postgres(CATALOG, &policies(), &[]).await;
    let second = TestBroker::start_peer(&first, &[]).await;
    let driver = Driver::start().await;
    let bob = signed_in(&driver, &second, "bob", Settings::default()).await;
    bob.open("/console/inbox").await;
    bob.wait_for("#inbox-empty").await;
    // Through the other broker's API; the page open on this one is told
    // by the database, without a reload.
    let r = first
        .client("alice")
        .create_request(&ask("dev-admin", 600))
        .await
        .unwrap();
    bob.wait_for(&format!("#inbox [data-request='{}']", r.id)).await;
    first.client("carol").approve(r.id, None).await.unwrap();
    bob.wait_gone(&format!("#inbox [data-request='{}']", r.id)).await;
    bob.close().await;
}
