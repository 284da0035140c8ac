//! The REST API against its own OpenAPI document: schemathesis generates
//! requests for every operation from the document (examples, coverage,
//! fuzzing, and stateful sequences following its links), as each role,
//! and checks every response: no 5xx, status codes, content types,
//! headers and bodies as documented, input the document forbids refused,
//! authentication not ignored.
//!
//! Not yet checked: that every request the document allows is accepted
//! (`positive_data_acceptance`). The document cannot say what the broker
//! checks against its state (a body's id that differs from the path's, an
//! unknown resource or configuration, an integer sent as `1.0`), and those
//! requests are refused with 400. Hooks (`tests/tools/schemathesis/`) fill
//! in what the state asks for in the cases the document allows (a resource
//! of the catalogue, the path's id in the body) and keep the run from
//! revoking, disabling or demoting the callers it runs as; with them the
//! stateful phase follows 3 to 7 of the document's 83 links per role
//! (most of the 68 it infers join operations no real sequence joins).
//!
//! Every status the document lists must be answered: the runs reach 183
//! of 298 (on 2026-12-07); the rest need state the runs do not make (a
//! grant to extend, an enrolled agent, a signed-in session), a client over
//! its quota (lifted here), a body past the limit or a sign-in provider
//! that does not answer, and hand-written probes (`probes`) reach those
//! on a broker of their own. What was answered, counted over both, is
//! printed (`--no-capture`).

mod coverage;
mod probes;

use std::process::Stdio;

use jitgate_shared::v1::UserId;
use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::{test_tool, workspace};

#[tokio::test(flavor = "multi_thread")]
async fn the_api_conforms_to_its_openapi_document_as_every_role() {
    // The client quotas are checked elsewhere (api_input); here they would
    // answer most generated requests with 429.
    let unlimited = [
        "--sign-ins-per-minute",
        "1000000",
        "--failed-tokens-per-minute",
        "1000000",
    ];
    let b = TestBroker::start_with(CATALOG, &policies(), &unlimited).await;
    // The callers' accounts and tokens, which the run must not revoke,
    // disable or demote (see the hooks), and a spare of each to act on.
    let admin = b.client("admin");
    let callers = ["admin", "carol", "alice"];
    let mut keep_tokens = Vec::new();
    for user in callers {
        keep_tokens.extend(admin.tokens(Some(user)).await.unwrap().into_iter().map(|t| t.id));
    }
    let spare_user = UserId::new("dave").unwrap();
    admin.issue_token(&spare_user).await.unwrap();
    let spare_token = admin.tokens(Some("dave")).await.unwrap().remove(0).id;
    let tools = workspace().join("tests/tools/schemathesis");
    let reports = b.path("schemathesis");
    let mut failed = Vec::new();
    for (role, user) in [("admin", "admin"), ("approver", "carol"), ("requester", "alice")] {
        let out = tokio::process::Command::new(test_tool("schemathesis"))
            .arg("--config-file")
            .arg(tools.join("schemathesis.toml"))
            .arg("run")
            .arg(format!("{}/api/v1/openapi.json", b.url))
            .arg("--tls-verify")
            .arg(b.ca())
            .args(["-H", &format!("Authorization: Bearer {}", b.token(user))])
            .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
            // One worker: with two, Hypothesis describing a filter while
            // the other thread parses crashed once in CI with CPython
            // 3.11's "AST constructor recursion depth mismatch" (Debian
            // 12's Python; the parser is not safe across threads there).
            .args(["--seed", "1", "--workers", "1"])
            // The broker closes a keep-alive connection that waits longer
            // than `header_read_timeout` for its next request; a request
            // sent on it as it closes is sent again, as HTTP clients do
            // (RFC 9112 §9.3.1).
            .args(["--request-retries", "2"])
            .args(["--report", "junit,har", "--report-dir"])
            .arg(reports.join(role))
            .arg("--report-har-path")
            .arg(reports.join(format!("{role}.har")))
            .env("NO_COLOR", "1")
            // What the broker's state asks of a request, and the callers spared.
            .env("PYTHONPATH", &tools)
            .env("SCHEMATHESIS_HOOKS", "jitgate_hooks")
            .env("JITGATE_KEEP_USERS", callers.join(","))
            .env("JITGATE_KEEP_TOKENS", keep_tokens.join(","))
            .env("JITGATE_SPARE_USER", spare_user.as_str())
            .env("JITGATE_SPARE_TOKEN_ID", &spare_token)
            // Its cache (`.schemathesis/`) stays with the broker's files.
            .current_dir(b.dir())
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        println!(
            "── {role} ({user}) ──\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() {
            failed.push(role);
        }
    }
    assert!(
        failed.is_empty(),
        "schemathesis found failures as {failed:?} (output above)"
    );
    let mut answered = coverage::from_har(&reports, &["admin", "approver", "requester"]);
    let probed = probes::run().await;
    println!(
        "distinct statuses answered: {} by the runs, {} by the probes",
        answered.count(),
        probed.count()
    );
    answered.extend(probed);
    let never = coverage::never_answered(&answered);
    assert!(
        never.is_empty(),
        "{} documented statuses were never answered, by the runs or the probes: reach each or take it out of the document:\n  {}",
        never.len(),
        never.join("\n  ")
    );
}
