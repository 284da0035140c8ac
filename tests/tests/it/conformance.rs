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
//! requests are refused with 400. For that reason too, the stateful phase
//! follows few of the document's links: a generated body seldom names a
//! resource of the catalogue, so a sequence seldom gets past its start.

use std::process::Stdio;

use jitgate_tests::broker::TestBroker;
use jitgate_tests::fixtures::{policies, CATALOG};
use jitgate_tests::test_tool;

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
    let reports = b.path("schemathesis");
    let mut failed = Vec::new();
    for (role, user) in [("admin", "admin"), ("approver", "carol"), ("requester", "alice")] {
        let out = tokio::process::Command::new(test_tool("schemathesis"))
            .arg("run")
            .arg(format!("{}/api/v1/openapi.json", b.url))
            .arg("--tls-verify")
            .arg(b.ca())
            .args(["-H", &format!("Authorization: Bearer {}", b.token(user))])
            .args(["--checks", "all", "--exclude-checks", "positive_data_acceptance"])
            .args(["--max-examples", "20", "--seed", "1", "--workers", "2"])
            // The broker closes a keep-alive connection that waits longer
            // than `header_read_timeout` for its next request; a request
            // sent on it as it closes is sent again, as HTTP clients do
            // (RFC 9112 §9.3.1).
            .args(["--request-retries", "2"])
            .args(["--report", "junit", "--report-dir"])
            .arg(reports.join(role))
            .env("NO_COLOR", "1")
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
}
